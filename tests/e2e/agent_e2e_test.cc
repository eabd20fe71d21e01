// acmevault-agent end to end: the built agent against a real acmevaultd, the stack's
// PostgreSQL and the e2e Pebble. Its first certificate; a renewal forced by a renew fraction so
// small that every certificate is due as soon as it exists (Pebble 2.4.0 issues certificates
// for years); and a restart of acmevaultd during the agent's life, which the agent rides out
// on its last good certificate and recovers from.
#include <arpa/inet.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "acme/http.h"
#include "acme/testing/pebble.h"
#include "common/testing/stack_env.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace acmevault {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// A loopback port nobody listens on now (bound, then released).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Polls `done` every 200 ms for up to `limit`; true once it held.
template <typename F>
bool WaitFor(F done, absl::Duration limit) {
  for (absl::Time end = absl::Now() + limit; absl::Now() < end;) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return done();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class AgentE2eTest : public e2e::E2eFixture {
 protected:
  void SetUp() override {
    E2eFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // acmevaultd on a fixed gRPC port, so that the agent finds it again after a restart.
    grpc_port_ = FreePort();
    std::string config = std::regex_replace(
        e2e::ReadFile(daemon_config_), std::regex("grpc_listen_address: \"[^\"]*\""),
        absl::StrCat("grpc_listen_address: \"127.0.0.1:", grpc_port_, "\""));
    daemon_config_ = tmp_ + "/fixed-port.textproto";
    std::ofstream(daemon_config_) << config;
    RestartDaemon();
    ASSERT_EQ(daemon_->grpc_port(), grpc_port_);
  }

  void TearDown() override {
    StopAgent();
    E2eFixture::TearDown();
  }

  // Starts the agent for `names` with a host token of `t`; its directory is out_.
  void StartAgent(const TenantTokens& t, const std::vector<std::string>& names,
                  const std::vector<std::string>& extra = {}) {
    out_ = tmp_ + "/out-" + t.name;
    mkdir(out_.c_str(), 0755);
    const std::string token = tmp_ + "/host-token-" + t.name;
    std::ofstream(token) << t.host << "\n";
    listen_port_ = FreePort();
    std::vector<std::string> args = {
        "acmevault-agent",
        absl::StrCat("--server=127.0.0.1:", grpc_port_),
        "--token-file=" + token,
        "--names=" + absl::StrJoin(names, ","),
        "--out-dir=" + out_,
        absl::StrCat("--listen=127.0.0.1:", listen_port_),
        "--on-renew=echo $ACMEVAULT_SERIAL >> " + out_ + "/../renewed-" + t.name,
        "--retry-max-delay=2s"};
    args.insert(args.end(), extra.begin(), extra.end());
    renewed_ = out_ + "/../renewed-" + t.name;
    log_ = tmp_ + "/agent-" + t.name + ".log";
    agent_pid_ = fork();
    if (agent_pid_ == 0) {
      freopen(log_.c_str(), "w", stderr);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("clients/acmevault-agent", argv.data());
      _exit(127);
    }
  }

  // SIGTERM; the agent's exit status (-1 when none ran).
  int StopAgent() {
    if (agent_pid_ <= 0) return -1;
    kill(agent_pid_, SIGTERM);
    int status = 0;
    waitpid(agent_pid_, &status, 0);
    agent_pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  acme::HttpResponse AgentHttp(const std::string& path) {
    auto http = acme::CurlTransport::Create({.allow_http = true});
    auto r = (*http)->Send({"GET", absl::StrCat("http://127.0.0.1:", listen_port_, path), {}, ""});
    return r.ok() ? *r : acme::HttpResponse{};
  }

  std::set<std::string> Serials() {
    auto lines = Lines(e2e::ReadFile(renewed_));
    return {lines.begin(), lines.end()};
  }

  const std::string tmp_ = ::acmevault::testing::StackEnv("TEST_TMPDIR");
  int grpc_port_ = 0, listen_port_ = 0;
  pid_t agent_pid_ = 0;
  std::string out_, renewed_, log_;
};

TEST_F(AgentE2eTest, FirstCertificateIsWrittenWithAKeyThatNeverLeftTheAgent) {
  TenantTokens t = NewTenant();
  const std::vector<std::string> names = {absl::StrCat("web.", t.name, ".example"),
                                          absl::StrCat("api.", t.name, ".example")};
  StartAgent(t, names);
  ASSERT_TRUE(
      WaitFor([&] { return access((out_ + "/ready").c_str(), F_OK) == 0; }, absl::Seconds(90)))
      << e2e::ReadFile(log_);

  struct stat st;
  ASSERT_EQ(stat((out_ + "/tls.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto key = crypto::PrivateKey::FromPem(e2e::ReadFile(out_ + "/tls.key"));
  ASSERT_TRUE(key.ok());
  auto chain = crypto::ParsePemChain(e2e::ReadFile(out_ + "/tls.crt"));
  ASSERT_TRUE(chain.ok());
  ASSERT_GE(chain->size(), 2u);  // Leaf, then Pebble's intermediate.
  EXPECT_TRUE(chain->front().public_key.Equals(key->public_key()));
  std::vector<std::string> ders;
  for (const auto& c : *chain) ders.push_back(c.der);
  acme::testing::PebbleManagement pebble(
      ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_E2E_MANAGEMENT"),
      ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA"));
  auto root = pebble.Root(0);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_TRUE(crypto::VerifyChain(ders, *root, absl::Now()).ok());
  EXPECT_EQ(e2e::ReadFile(out_ + "/ready"), chain->front().serial_hex + "\n");

  // The service knows the certificate but never had its key.
  v1::GetCertificateRequest get;
  get.set_serial(chain->front().serial_hex);
  v1::Certificate stored;
  auto c = Ctx(t.host);
  ASSERT_TRUE(certs_->GetCertificate(c.get(), get, &stored).ok());
  EXPECT_FALSE(stored.service_holds_key());

  EXPECT_EQ(AgentHttp("/healthz").status, 200);
  EXPECT_EQ(AgentHttp("/readyz").status, 200);
  std::string metrics = AgentHttp("/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("\nacmevault_agent_ready 1\n"));
  EXPECT_THAT(metrics, HasSubstr("acmevault_agent_renewals_total{result=\"success\"} 1\n"));
  EXPECT_EQ(StopAgent(), 0);
}

TEST_F(AgentE2eTest, RenewsWhenDueAndRidesOutARestartOfTheService) {
  TenantTokens t = NewTenant();
  // Due a fraction of a second into a multi-year lifetime: every certificate is renewed as
  // soon as it is in place.
  StartAgent(t, {absl::StrCat("www.", t.name, ".example")}, {"--renew-fraction=0.00000001"});
  ASSERT_TRUE(WaitFor([&] { return Serials().size() >= 2; }, absl::Seconds(120)))
      << e2e::ReadFile(log_);  // A renewal, and its --on-renew ran.

  // acmevaultd goes away: the agent keeps the certificate in place and stays ready.
  daemon_.reset();
  std::string crt = e2e::ReadFile(out_ + "/tls.crt");
  ASSERT_TRUE(WaitFor(
      [&] {
        return AgentHttp("/metrics")
                   .body.find("acmevault_agent_renewals_total{result=\"failure\"} 0\n") ==
               std::string::npos;
      },
      absl::Seconds(60)))
      << e2e::ReadFile(log_);
  EXPECT_EQ(e2e::ReadFile(out_ + "/tls.crt"), crt);
  EXPECT_EQ(AgentHttp("/readyz").status, 200);
  EXPECT_THAT(e2e::ReadFile(log_), HasSubstr("keeping the certificate in place"));

  // Back on the same port: the agent recovers and renews again.
  std::set<std::string> before = Serials();
  daemon_ = e2e::Daemon::Start(daemon_config_, "a");
  ASSERT_NE(daemon_, nullptr);
  ASSERT_TRUE(WaitFor([&] { return Serials().size() > before.size(); }, absl::Seconds(120)))
      << e2e::ReadFile(log_);
  EXPECT_NE(e2e::ReadFile(out_ + "/tls.crt"), crt);
  EXPECT_EQ(StopAgent(), 0);
}

}  // namespace
}  // namespace acmevault
