// The acmevault binary run as a user runs it, against an in-process fake service: what it sends,
// what it prints and how it exits.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "acmevault/v1/account_service.pb.h"
#include "acmevault/v1/admin_service.pb.h"
#include "acmevault/v1/certificate_service.pb.h"
#include "clients/testing/fake_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::clients {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

namespace v1 = ::acmevault::v1;

struct Result {
  int exit_code = -1;
  std::string out, err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TmpDir() {
  const char* d = std::getenv("TEST_TMPDIR");
  return d ? d : "/tmp";
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = testing::FakeServer::Start();
    ASSERT_NE(fake_, nullptr);
    token_file_ = TmpDir() + "/token";
    std::ofstream(token_file_) << "secret-token\n";
  }

  // Runs the CLI with `args` after --server and --token_file (no shell, no terminal).
  Result Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"acmevault", "--server=" + fake_->address(),
                                     "--token_file=" + token_file_};
    argv.insert(argv.end(), args.begin(), args.end());
    return Exec(argv);
  }

  static Result Exec(const std::vector<std::string>& argv) {
    static int n = 0;
    std::string out = absl::StrCat(TmpDir(), "/out", ++n), err = absl::StrCat(out, ".err");
    pid_t pid = fork();
    if (pid == 0) {
      freopen(out.c_str(), "w", stdout);
      freopen(err.c_str(), "w", stderr);
      std::vector<char*> cargv;
      for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
      cargv.push_back(nullptr);
      execv("clients/acmevault", cargv.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = ReadFile(out);
    r.err = ReadFile(err);
    return r;
  }

  std::unique_ptr<testing::FakeServer> fake_;
  std::string token_file_;
};

// Regression: "--key_algorithm=rsa2048" was not a known spelling and silently asked for the
// tenant's default (P-256). It means RSA-2048; a spelling that means nothing is a usage error
// and nothing is sent.
TEST_F(CliTest, KeyAlgorithmSpellingsAreParsedOrRefused) {
  v1::IssueCertificateResponse issued;
  issued.mutable_order()->set_state(v1::ORDER_STATE_VALID);
  issued.mutable_certificate()->set_serial("ab");
  issued.set_private_key_pem("KEY");
  fake_->SetResponse("IssueCertificate", issued);
  Result ok = Cli({"issue", "--names=a.example", "--key_algorithm=rsa2048",
                   "--key_out=" + TmpDir() + "/rsa.key"});
  auto calls = fake_->calls("IssueCertificate");
  ASSERT_THAT(calls, SizeIs(1)) << ok.err;
  v1::IssueCertificateRequest sent;
  ASSERT_TRUE(sent.ParseFromString(calls[0].request));
  EXPECT_EQ(sent.key_algorithm(), v1::KEY_ALGORITHM_RSA_2048);
  struct stat st;
  ASSERT_EQ(stat((TmpDir() + "/rsa.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_THAT(ok.out, Not(HasSubstr("KEY")));

  Result bad = Cli({"issue", "--names=a.example", "--key_algorithm=rsa1024",
                    "--key_out=" + TmpDir() + "/bad.key"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("rsa1024"));
  EXPECT_THAT(bad.err, HasSubstr("p256"));
  EXPECT_THAT(fake_->calls("IssueCertificate"), SizeIs(1));
}

// Regression: a --csr_file that does not exist was read as an empty CSR and sent.
TEST_F(CliTest, MissingCsrFileIsAUsageErrorAndNothingIsSent) {
  Result r = Cli({"issue", "--names=a.example", "--csr_file=" + TmpDir() + "/no-such.csr"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no-such.csr"));
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

// Regression: a --token_file that does not exist (or is empty) ended as the service's refusal,
// exit 1 with "NOT_FOUND" and a hint to check a serial or id. It is an input file that cannot
// be read: a usage error, exit 2, before anything is sent.
TEST_F(CliTest, AnUnreadableTokenFileIsAUsageErrorAndNothingIsSent) {
  const std::string empty = TmpDir() + "/empty.token";
  std::ofstream(empty) << "\n";
  for (const std::string& file : {TmpDir() + "/no-such.token", empty}) {
    Result r =
        Exec({"acmevault", "--server=" + fake_->address(), "--token_file=" + file, "get-account"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(file));
    EXPECT_THAT(r.err, Not(HasSubstr("hint")));
  }
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

// Regression: errors showed the numeric code ("error: 7").
TEST_F(CliTest, ErrorsNameTheStatusAndSayWhatToDo) {
  fake_->SetError("GetAccount",
                  grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "role host may not"));
  Result r = Cli({"get-account"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(r.err, HasSubstr("role host may not"));
  EXPECT_THAT(r.err, HasSubstr("admin"));  // The hint: this needs an admin token.
  EXPECT_THAT(r.err, Not(HasSubstr("error: 7")));
}

// Regression: zero-valued fields vanished from the JSON ("{}").
TEST_F(CliTest, JsonShowsZeroValuedFields) {
  Result r = Cli({"--json", "deactivate-authorizations"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"deactivated\": 0"));
  EXPECT_THAT(r.out, HasSubstr("\"failed\": 0"));
}

// Regression: "acmevault --help" printed "No flags matched" and no commands.
TEST_F(CliTest, HelpListsEveryCommand) {
  Result r = Exec({"acmevault", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"create-tenant", "issue", "respond-to-compromise", "health",
                              "revoke-token", "bind-identity", "list-tenants"}) {
    EXPECT_THAT(r.out, HasSubstr(command));
  }
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
}

}  // namespace
}  // namespace acmevault::clients
