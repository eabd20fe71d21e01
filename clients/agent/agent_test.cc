// The agent against the in-process fake service, whose IssueCertificate signs the agent's CSR
// with a throwaway CA made by the openssl command.
#include "clients/agent/agent.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "acmevault/v1/certificate_service.pb.h"
#include "clients/testing/fake_service.h"
#include "common/testing/fake_clock.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::string(getenv("TEST_TMPDIR"));
    dir_ = tmp_ + "/out";
    ASSERT_EQ(std::system(absl::StrCat("rm -rf ", dir_, " && mkdir -p ", dir_, " && cd ", tmp_,
                                       " && openssl req -x509 -newkey ec -pkeyopt "
                                       "ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca "
                                       "-keyout ca.key -out ca.pem 2>/dev/null")
                              .c_str()),
              0);
    fake_ = clients::testing::FakeServer::Start();
    ASSERT_NE(fake_, nullptr);
    fake_->SetHandler("IssueCertificate", [this](const google::protobuf::Message& in,
                                                 google::protobuf::Message* out) {
      const auto& request = static_cast<const v1::IssueCertificateRequest&>(in);
      auto* response = static_cast<v1::IssueCertificateResponse*>(out);
      std::ofstream(tmp_ + "/csr.der", std::ios::binary) << request.csr();
      int rc = std::system(
          absl::StrCat("cd ", tmp_,
                       " && openssl req -inform DER -in csr.der -out csr.pem && openssl "
                       "x509 -req -in csr.pem -CA ca.pem -CAkey ca.key -days 1 "
                       "-copy_extensions copy -set_serial ",
                       ++serial_, " -out leaf.pem 2>/dev/null && cat leaf.pem ca.pem > chain.pem")
              .c_str());
      if (rc != 0) return grpc::Status(grpc::StatusCode::INTERNAL, "openssl failed");
      response->mutable_order()->set_state(v1::ORDER_STATE_VALID);
      response->mutable_certificate()->set_chain_pem(Read(tmp_ + "/chain.pem"));
      if (service_renew_at_) {
        response->mutable_certificate()->mutable_renew_at()->set_seconds(
            absl::ToUnixSeconds(*service_renew_at_));
      }
      return grpc::Status::OK;
    });
    auto client = clients::Client::Create(
        {.server = fake_->address(), .token = "host-token", .max_attempts = 2, .seed = 3});
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
  }

  AgentOptions Options() {
    return {.names = {"web.demo.example", "demo.example"},
            .out_dir = dir_,
            .on_renew = "echo \"$ACMEVAULT_SERIAL $ACMEVAULT_KEY_FILE\" >> " + tmp_ + "/hook.log",
            .seed = 5};
  }

  std::string tmp_, dir_;
  int serial_ = 4096;
  std::optional<absl::Time> service_renew_at_;  // the service's renewal hint, if any
  std::unique_ptr<clients::testing::FakeServer> fake_;
  std::unique_ptr<clients::Client> client_;
};

TEST_F(AgentTest, SendsOnlyACsrAndWritesKeyChainAndReadyFile) {
  Agent agent(Options(), client_.get());
  EXPECT_FALSE(agent.LoadExisting());
  ASSERT_TRUE(agent.Renew().ok()) << agent.state().last_error;

  auto calls = fake_->calls("IssueCertificate");
  ASSERT_THAT(calls, SizeIs(1));
  v1::IssueCertificateRequest sent;
  ASSERT_TRUE(sent.ParseFromString(calls[0].request));
  EXPECT_FALSE(sent.csr().empty());
  EXPECT_EQ(sent.key_algorithm(), v1::KEY_ALGORITHM_UNSPECIFIED);  // The key stays here.
  EXPECT_EQ(calls[0].authorization, "Bearer host-token");

  struct stat st;
  ASSERT_EQ(stat((dir_ + "/tls.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto chain = crypto::ParsePemChain(Read(dir_ + "/tls.crt"));
  ASSERT_TRUE(chain.ok());
  EXPECT_THAT(*chain, SizeIs(2));              // Leaf, then the CA.
  EXPECT_EQ(Read(dir_ + "/ready"), "1001\n");  // 4097 in hex.
  EXPECT_EQ(Read(tmp_ + "/hook.log"), "1001 " + dir_ + "/tls.key\n");
  AgentState s = agent.state();
  EXPECT_TRUE(s.ready);
  EXPECT_EQ(s.renewals, 1);
  // 2/3 of one day, less at most 10% of that.
  EXPECT_GT(s.renew_at, s.not_after - absl::Hours(24) + absl::Hours(14));
  EXPECT_LT(s.renew_at, s.not_after - absl::Hours(8) + absl::Minutes(1));
}

// The service's renewal hint (its tenant's policy) wins when earlier than the agent's own
// lifetime fraction, and only then.
TEST_F(AgentTest, RenewsAtTheServicesHintWhenItIsEarlier) {
  Agent agent(Options(), client_.get());
  service_renew_at_ = absl::Now() + absl::Hours(2);
  ASSERT_TRUE(agent.Renew().ok()) << agent.state().last_error;
  EXPECT_EQ(agent.state().renew_at, absl::FromUnixSeconds(absl::ToUnixSeconds(*service_renew_at_)));
  service_renew_at_ = absl::Now() + absl::Hours(23);  // later than 2/3 of a day: ignored
  ASSERT_TRUE(agent.Renew().ok()) << agent.state().last_error;
  AgentState s = agent.state();
  EXPECT_LT(s.renew_at, s.not_after - absl::Hours(8) + absl::Minutes(1));
}

TEST_F(AgentTest, KeepsTheLastGoodCertificateWhileTheServiceIsDown) {
  Agent agent(Options(), client_.get());
  ASSERT_TRUE(agent.Renew().ok());
  std::string key = Read(dir_ + "/tls.key"), crt = Read(dir_ + "/tls.crt");
  fake_->FailFirst("IssueCertificate", 100);
  absl::Status s = agent.Renew();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Read(dir_ + "/tls.key"), key);
  EXPECT_EQ(Read(dir_ + "/tls.crt"), crt);
  AgentState state = agent.state();
  EXPECT_TRUE(state.ready);
  EXPECT_EQ(state.failures, 1);
  EXPECT_THAT(state.last_error, HasSubstr("UNAVAILABLE"));
}

TEST_F(AgentTest, RefusesACertificateForAnotherKey) {
  v1::IssueCertificateResponse other;
  other.mutable_order()->set_state(v1::ORDER_STATE_VALID);
  Agent first(Options(), client_.get());
  ASSERT_TRUE(first.Renew().ok());
  other.mutable_certificate()->set_chain_pem(Read(dir_ + "/tls.crt"));
  fake_->SetResponse("IssueCertificate", other);  // The previous key's certificate.
  absl::Status s = first.Renew();
  EXPECT_THAT(s.message(), HasSubstr("not for this key"));
}

TEST_F(AgentTest, ARestartedAgentKeepsAValidCertificateInPlace) {
  {
    Agent agent(Options(), client_.get());
    ASSERT_TRUE(agent.Renew().ok());
  }
  Agent restarted(Options(), client_.get());
  EXPECT_TRUE(restarted.LoadExisting());
  EXPECT_TRUE(restarted.state().ready);
  EXPECT_EQ(restarted.state().serial, "1001");
  EXPECT_THAT(fake_->calls("IssueCertificate"), SizeIs(1));
  AgentOptions other_names = Options();
  other_names.names = {"other.demo.example"};
  EXPECT_FALSE(Agent(other_names, client_.get()).LoadExisting());
}

TEST_F(AgentTest, SignalsThePidInTheFile) {
  // The test process itself, with SIGUSR1 ignored so it survives.
  signal(SIGUSR1, SIG_IGN);
  std::ofstream(tmp_ + "/pid") << getpid() << "\n";
  AgentOptions o = Options();
  o.signal_pid_file = tmp_ + "/pid";
  o.signal = SIGUSR1;
  Agent agent(o, client_.get());
  EXPECT_TRUE(agent.Renew().ok());
  std::ofstream(tmp_ + "/pid") << "garbage\n";
  EXPECT_TRUE(agent.Renew().ok());  // A bad pid file is logged, not fatal.
}

}  // namespace
}  // namespace acmevault::agent
