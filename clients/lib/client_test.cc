#include "clients/lib/client.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "clients/testing/fake_service.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace acmevault::clients {
namespace {

using ::testing::AllOf;
using ::testing::Ge;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::Le;
using ::testing::SizeIs;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = testing::FakeServer::Start();
    ASSERT_NE(fake_, nullptr);
  }

  std::unique_ptr<Client> NewClient(ClientOptions o = {}) {
    o.server = fake_->address();
    o.clock = &clock_;
    o.seed = 1;
    o.backoff = {.initial_delay = absl::Seconds(1), .max_delay = absl::Seconds(8)};
    if (o.token.empty() && o.token_file.empty()) o.token = "tok";
    auto c = Client::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  absl::StatusOr<v1::Account> GetAccount(Client& c, CallOptions call = {}) {
    return c.Call(c.accounts(), &v1::AccountService::Stub::GetAccount, v1::GetAccountRequest(),
                  call);
  }

  ::acmevault::testing::FakeClock clock_;
  std::unique_ptr<testing::FakeServer> fake_;
};

TEST_F(ClientTest, RetriesUnavailableWithGrowingJitteredBackoff) {
  fake_->FailFirst("GetAccount", 3);
  v1::Account account;
  account.set_key_version(4);
  fake_->SetResponse("GetAccount", account);
  auto client = NewClient();
  absl::StatusOr<v1::Account> got = GetAccount(*client);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->key_version(), 4);
  EXPECT_THAT(fake_->calls("GetAccount"), SizeIs(4));
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(3));
  EXPECT_THAT(sleeps[0], AllOf(Ge(absl::Milliseconds(500)), Le(absl::Seconds(1))));
  EXPECT_THAT(sleeps[1], AllOf(Ge(absl::Seconds(1)), Le(absl::Seconds(2))));
  EXPECT_THAT(sleeps[2], AllOf(Ge(absl::Seconds(2)), Le(absl::Seconds(4))));
}

TEST_F(ClientTest, GivesUpAfterMaxAttemptsWithTheLastError) {
  fake_->FailFirst("GetAccount", 100);
  auto client = NewClient({.max_attempts = 3});
  absl::StatusOr<v1::Account> got = GetAccount(*client);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake_->calls("GetAccount"), SizeIs(3));
}

TEST_F(ClientTest, DoesNotRetryWhenTheCallSaysNotTo) {
  fake_->FailFirst("GetAccount", 1);
  auto client = NewClient();
  EXPECT_EQ(GetAccount(*client, {.retry = false}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake_->calls("GetAccount"), SizeIs(1));
}

TEST_F(ClientTest, OtherErrorsAreNotRetried) {
  fake_->SetError("GetAccount", grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "admin only"));
  auto client = NewClient();
  absl::StatusOr<v1::Account> got = GetAccount(*client);
  EXPECT_EQ(DescribeStatus(got.status()), "PERMISSION_DENIED: admin only");
  EXPECT_THAT(fake_->calls("GetAccount"), SizeIs(1));
}

TEST_F(ClientTest, EveryAttemptCarriesTheTokenAndADeadline) {
  const std::string path = std::string(getenv("TEST_TMPDIR")) + "/token";
  std::ofstream(path) << "one\n";
  auto client = NewClient({.token_file = path, .timeout = absl::Seconds(7)});
  ASSERT_TRUE(GetAccount(*client).ok());
  std::ofstream(path) << "rotated-token\n";  // Longer: the size changes too.
  ASSERT_TRUE(GetAccount(*client).ok());
  auto calls = fake_->calls("GetAccount");
  ASSERT_THAT(calls, SizeIs(2));
  EXPECT_EQ(calls[0].authorization, "Bearer one");
  EXPECT_EQ(calls[1].authorization, "Bearer rotated-token");
  // gRPC sends the timeout rounded up to its wire unit, so the server may see slightly more
  // than the 7 s that remained; a missing deadline reads -1.
  EXPECT_THAT(calls[0].deadline_seconds, AllOf(Gt(0.0), Le(7.5)));
}

TEST_F(ClientTest, AnUnreadableTokenFailsBeforeAnyCall) {
  auto client = NewClient({.token_file = "/nonexistent/token"});
  EXPECT_EQ(GetAccount(*client).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fake_->calls(), SizeIs(0));
}

TEST_F(ClientTest, ProblemDetailsReachTheStatus) {
  v1::AcmeProblem problem;
  problem.set_type("urn:ietf:params:acme:error:rejectedIdentifier");
  problem.set_detail("no");
  google::rpc::Status details;
  details.add_details()->PackFrom(problem);
  fake_->SetError("GetAccount", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "refused",
                                             details.SerializeAsString()));
  auto client = NewClient();
  absl::Status s = GetAccount(*client).status();
  EXPECT_THAT(s.message(), HasSubstr("rejectedIdentifier: no"));
  ASSERT_TRUE(AcmeProblemOf(s).has_value());
}

// One logical issuance: retries after UNAVAILABLE and repetitions while the order is pending
// all carry the same idempotency key, so they join the first order.
TEST_F(ClientTest, IssueKeepsOneIdempotencyKeyAcrossRetriesAndPolls) {
  fake_->FailFirst("IssueCertificate", 2);
  int answered = 0;
  fake_->SetHandler("IssueCertificate",
                    [&](const google::protobuf::Message&, google::protobuf::Message* out) {
                      auto* response = static_cast<v1::IssueCertificateResponse*>(out);
                      response->mutable_order()->set_id("12");
                      if (++answered < 3) {
                        response->mutable_order()->set_state(v1::ORDER_STATE_AUTHORIZING);
                      } else {
                        response->mutable_order()->set_state(v1::ORDER_STATE_VALID);
                        response->mutable_certificate()->set_serial("abc");
                      }
                      return grpc::Status::OK;
                    });
  auto client = NewClient();
  std::vector<v1::OrderState> seen;
  v1::IssueCertificateRequest request;
  request.add_identifiers("a.example");
  absl::StatusOr<v1::IssueCertificateResponse> got =
      client->Issue(request, {.progress = [&](const v1::Order& o) { seen.push_back(o.state()); }});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->certificate().serial(), "abc");
  EXPECT_THAT(seen, SizeIs(2));
  auto calls = fake_->calls("IssueCertificate");
  ASSERT_THAT(calls, SizeIs(5));
  std::string key;
  for (const auto& call : calls) {
    v1::IssueCertificateRequest sent;
    ASSERT_TRUE(sent.ParseFromString(call.request));
    if (key.empty()) key = sent.idempotency_key();
    EXPECT_EQ(sent.idempotency_key(), key);
    EXPECT_GT(sent.wait_seconds(), 0);
  }
  EXPECT_THAT(key, SizeIs(32));
  // A second issuance is another logical operation: another key.
  answered = 0;
  ASSERT_TRUE(client->Issue(request).ok());
  v1::IssueCertificateRequest next;
  ASSERT_TRUE(next.ParseFromString(fake_->calls("IssueCertificate").back().request));
  EXPECT_NE(next.idempotency_key(), key);
}

TEST_F(ClientTest, IssueKeepsTheCallersKeyAndReportsAFailedOrder) {
  v1::IssueCertificateResponse failed;
  failed.mutable_order()->set_id("7");
  failed.mutable_order()->set_state(v1::ORDER_STATE_INVALID);
  failed.mutable_order()->set_error("DNS problem");
  failed.mutable_order()->set_problem_type("urn:ietf:params:acme:error:dns");
  fake_->SetResponse("IssueCertificate", failed);
  auto client = NewClient();
  v1::IssueCertificateRequest request;
  request.set_idempotency_key("mine");
  absl::Status s = client->Issue(request).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(s.message(), "order 7 failed: DNS problem (urn:ietf:params:acme:error:dns)");
  v1::IssueCertificateRequest sent;
  ASSERT_TRUE(sent.ParseFromString(fake_->calls("IssueCertificate")[0].request));
  EXPECT_EQ(sent.idempotency_key(), "mine");
}

TEST_F(ClientTest, IssueGivesUpAfterMaxWaitNamingTheOrder) {
  v1::IssueCertificateResponse pending;
  pending.mutable_order()->set_id("9");
  pending.mutable_order()->set_state(v1::ORDER_STATE_FINALIZING);
  fake_->SetResponse("IssueCertificate", pending);
  auto client = NewClient();
  absl::Status s = client->Issue({}, {.max_wait = absl::Seconds(30)}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("order 9 is still finalizing"));
}

TEST_F(ClientTest, TlsOptionsAreChecked) {
  EXPECT_EQ(Client::Create({.tls_cert = "c.pem", .tls_key = "k.pem"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Create({.tls_ca = "/nonexistent/ca.pem"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, HealthCheck) {
  grpc::health::v1::HealthCheckResponse serving;
  serving.set_status(grpc::health::v1::HealthCheckResponse::SERVING);
  fake_->SetResponse("Check", serving);
  auto client = NewClient();
  auto got = client->Call(client->health(), &grpc::health::v1::Health::Stub::Check,
                          grpc::health::v1::HealthCheckRequest());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace acmevault::clients
