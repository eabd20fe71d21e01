#include "clients/cli/commands.h"

#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "acmevault/v1/account_service.pb.h"
#include "acmevault/v1/admin_service.pb.h"
#include "acmevault/v1/certificate_service.pb.h"
#include "clients/testing/fake_service.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace acmevault::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Every RPC of every service in the public API has a command: a new RPC without one fails
// here. The services are read from the descriptor pool of the generated code, not listed by
// hand.
TEST(CommandsTest, EveryRpcHasACommand) {
  std::set<std::string> covered;
  for (const auto& c : Commands()) covered.insert(c.rpc);
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  int rpcs = 0;
  for (const char* file : {"acmevault/v1/account_service.proto", "acmevault/v1/admin_service.proto",
                           "acmevault/v1/certificate_service.proto"}) {
    const auto* f = pool->FindFileByName(file);
    ASSERT_NE(f, nullptr) << file;
    for (int s = 0; s < f->service_count(); ++s) {
      for (int m = 0; m < f->service(s)->method_count(); ++m) {
        ++rpcs;
        EXPECT_TRUE(covered.count(f->service(s)->method(m)->full_name()))
            << f->service(s)->method(m)->full_name() << " has no acmevault command";
      }
    }
  }
  EXPECT_EQ(rpcs, 21);
  // And no command names an RPC that does not exist.
  for (const auto& c : Commands()) {
    if (c.rpc.empty() || c.rpc.rfind("grpc.health", 0) == 0) continue;
    EXPECT_NE(pool->FindMethodByName(c.rpc), nullptr) << c.name << ": " << c.rpc;
  }
}

class RunCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = clients::testing::FakeServer::Start();
    ASSERT_NE(fake_, nullptr);
  }
  int Run(std::vector<std::string> args, bool terminal = false) {
    out_.str("");
    err_.str("");
    args.insert(args.begin(), "--server=" + fake_->address());
    Environment env{.getenv = [](const char* name) -> const char* {
                      return std::string(name) == "ACMEVAULT_TOKEN" ? "tok" : nullptr;
                    },
                    .out = out_,
                    .err = err_,
                    .terminal = terminal,
                    .clock = &clock_,
                    .zone = absl::UTCTimeZone()};
    return RunCli(args, env);
  }

  ::acmevault::testing::FakeClock clock_;
  std::unique_ptr<clients::testing::FakeServer> fake_;
  std::ostringstream out_, err_;
};

TEST_F(RunCliTest, EveryCommandHasHelpWithItsFlagsAndExitCodes) {
  for (const auto& c : Commands()) {
    EXPECT_EQ(Run({c.name, "--help"}), kExitOk) << c.name;
    EXPECT_THAT(out_.str(), HasSubstr("acmevault " + c.name + ": " + c.summary));
    for (const auto& f : c.flags) EXPECT_THAT(out_.str(), HasSubstr("--" + f.name));
    EXPECT_THAT(out_.str(), HasSubstr("Exit codes:"));
    EXPECT_EQ(Run({"help", c.name}), kExitOk);
  }
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

TEST_F(RunCliTest, UsageErrorsSendNothing) {
  EXPECT_EQ(Run({"frobnicate"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown command \"frobnicate\""));
  EXPECT_EQ(Run({"issue", "--names=a.example", "--bogus"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown flag --bogus"));
  EXPECT_EQ(Run({"create-token", "--tenant=t", "--role=root"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("one of host, admin, platform-admin"));
  EXPECT_EQ(Run({"revoke", "--serial=ab", "--reason=2"}), kExitUsage);
  EXPECT_EQ(Run({"issue", "--names=a.example"}), kExitUsage);  // No --key-out, no CSR.
  EXPECT_THAT(err_.str(), HasSubstr("--key-out"));
  EXPECT_EQ(Run({"get-tenant"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--name is required"));
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

TEST_F(RunCliTest, TableOfCertificatesWithRelativeExpiry) {
  v1::ListCertificatesResponse page;
  auto* c = page.add_certificates();
  c->set_serial("fa01");
  c->add_identifiers("www.demo.example");
  c->set_state(v1::CERTIFICATE_STATE_VALID);
  c->mutable_not_after()->set_seconds(absl::ToUnixSeconds(clock_.Now()) + 61 * 86400 + 60);
  fake_->SetResponse("ListCertificates", page);
  ASSERT_EQ(Run({"list-certificates"}), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("SERIAL  IDENTIFIERS       NOT BEFORE  NOT AFTER"));
  EXPECT_THAT(out_.str(), HasSubstr("fa01    www.demo.example  -           expires in 61 days"));
}

TEST_F(RunCliTest, UnreachableServiceIsExitThreeWithAHint) {
  fake_->FailFirst("GetAccount", 100);
  EXPECT_EQ(Run({"--timeout=2s", "get-account"}), kExitUnreachable);
  EXPECT_THAT(err_.str(), HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(err_.str(), HasSubstr("is acmevaultd running at " + fake_->address()));
  EXPECT_THAT(fake_->calls("GetAccount"), SizeIs(5));
}

TEST_F(RunCliTest, CertificateKeyTypesSetTheTenantsCertificateKeyPolicy) {
  v1::Tenant existing;
  existing.set_name("demo");
  existing.mutable_policy()->add_allowed_certificate_key_algorithms(v1::KEY_ALGORITHM_RSA_2048);
  fake_->SetResponse("GetTenant", existing);
  fake_->SetResponse("UpdateTenant", existing);
  ASSERT_EQ(Run({"update-tenant", "--name=demo", "--certificate-key-types=p384,rsa3072"}),
            kExitOk)
      << err_.str();
  v1::UpdateTenantRequest sent;
  ASSERT_TRUE(sent.ParseFromString(fake_->calls("UpdateTenant")[0].request));
  EXPECT_THAT(sent.policy().allowed_certificate_key_algorithms(),
              ElementsAre(v1::KEY_ALGORITHM_ECDSA_P384, v1::KEY_ALGORITHM_RSA_3072));
  ASSERT_EQ(Run({"update-tenant", "--name=demo", "--certificate-key-types=all"}), kExitOk);
  ASSERT_TRUE(sent.ParseFromString(fake_->calls("UpdateTenant")[1].request));
  EXPECT_THAT(sent.policy().allowed_certificate_key_algorithms(), IsEmpty());
  EXPECT_EQ(Run({"update-tenant", "--name=demo", "--certificate-key-types=p999"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--certificate-key-types"));
  EXPECT_THAT(fake_->calls("UpdateTenant"), SizeIs(2));
}

TEST_F(RunCliTest, CreateTokenPrintsTheTokenAlone) {
  v1::CreateTokenResponse t;
  t.set_token_id("demo:4");
  t.set_token("s3cret");
  fake_->SetResponse("CreateToken", t);
  ASSERT_EQ(Run({"create-token", "--tenant=demo", "--role=admin"}), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "s3cret\n");
  EXPECT_THAT(err_.str(), HasSubstr("token id demo:4"));
  v1::CreateTokenRequest sent;
  ASSERT_TRUE(sent.ParseFromString(fake_->calls("CreateToken")[0].request));
  EXPECT_EQ(sent.role(), v1::ROLE_ADMIN);
}

TEST_F(RunCliTest, IssueShowsProgressOnATerminal) {
  int answered = 0;
  fake_->SetHandler("IssueCertificate",
                    [&](const google::protobuf::Message&, google::protobuf::Message* out) {
                      auto* r = static_cast<v1::IssueCertificateResponse*>(out);
                      r->mutable_order()->set_id("12");
                      r->mutable_order()->set_state(++answered < 2 ? v1::ORDER_STATE_AUTHORIZING
                                                                   : v1::ORDER_STATE_VALID);
                      if (answered >= 2) {
                        r->mutable_certificate()->set_serial("ab");
                        r->mutable_certificate()->set_chain_pem("CHAIN\n");
                      }
                      return grpc::Status::OK;
                    });
  const std::string csr = std::string(getenv("TEST_TMPDIR")) + "/host.csr";
  FILE* f = fopen(csr.c_str(), "w");
  fputs("CSR", f);
  fclose(f);
  ASSERT_EQ(Run({"issue", "--names=a.example", "--csr-file", csr}, /*terminal=*/true), kExitOk)
      << err_.str();
  EXPECT_THAT(err_.str(), HasSubstr("order 12 authorizing"));
  EXPECT_THAT(out_.str(), HasSubstr("serial"));
  EXPECT_THAT(out_.str(), HasSubstr("CHAIN\n"));
}

}  // namespace
}  // namespace acmevault::cli
