// The order runner over the scripted CA and the fake store: the whole flow, resuming from each
// recorded state without finalizing twice, CA failures, a lost lease, and a certificate issued
// for the wrong key.
#include "service/order_runner.h"

#include <atomic>
#include <fstream>
#include <sstream>

#include "acme/testing/scripted_server.h"
#include "crypto/jwk.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "service/testing/happy_ca.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::OrderState;
using storage::testing::StatusIs;
using ::testing::HasSubstr;
using Call = ScriptedServer::Call;



class OrderRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The scripted CA issues crypto/testdata/chain.pem, whose leaf the client checks against
    // this clock.
    fx_.clock().Set(testing::TestChainValidTime());
    tenant_ = fx_.AddTenant("acme-corp", {"*.example.com"}, ScriptedServer::Url("/dir"));
    scope_ = fx_.AdminScope(tenant_);
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    ASSERT_TRUE(key.ok());
    storage::PublicKeyInfo info{crypto::PublicJwk(key->public_key()).dump(),
                                crypto::Thumbprint(key->public_key())};
    auto account = fx_.store().CreateAccount(scope_, ScriptedServer::Url("/dir"), *key, info,
                                             storage::KeyState::kActive);
    ASSERT_TRUE(account.ok()) << account.status();
    account_ = account->id;
    ASSERT_TRUE(fx_.store().RecordAccountUrl(scope_, account_, ScriptedServer::Url("/acct/1")).ok());

    AcmeClients::Options options;
    options.transport_instance = &ca_;
    options.client.clock = &fx_.clock();
    options.client.poll_interval = absl::Seconds(1);
    auto clients = AcmeClients::Create(options);
    ASSERT_TRUE(clients.ok());
    clients_ = *std::move(clients);
    runner_ = *OrderRunner::Create(
        fx_.WithStore(OrderRunner::Options{.clients = clients_.get(), .clock = &fx_.clock()}));
  }

  // Creates an order row with its first lease.
  storage::Lease NewOrderRow() {
    auto r = fx_.store().CreateOrJoinOrder(
        scope_, {account_, {"*.leaf.example.com", "leaf.example.com"}, "", "replica-1", absl::Minutes(2)});
    EXPECT_TRUE(r.ok()) << r.status();
    return *r->lease;
  }

  OrderJob Job(const storage::Lease& lease, const crypto::PrivateKey& cert_key) {
    auto csr = crypto::BuildCsr({"*.leaf.example.com", "leaf.example.com"}, cert_key);
    EXPECT_TRUE(csr.ok());
    return OrderJob{scope_, lease, *csr};
  }

  // Scripts the CA's order as `*state` says (borrowed); finalize makes it valid.
  void ScriptOrderFollowing(std::string* state) {
    ca_.On("POST", "/order/1", [state](const Call&) {
      return ScriptedServer::Json(200, ScriptedServer::Order(*state));
    });
    ca_.On("POST", "/finalize/1", [state](const Call&) {
      *state = "valid";
      return ScriptedServer::Json(200, ScriptedServer::Order("processing"));
    });
  }

  // Pebble's answer to a response for a challenge it has already validated.
  static acme::HttpResponse AlreadyValidRefusal() {
    return ScriptedServer::Problem(400, "malformed",
                                   "Cannot update challenge with status valid, only status pending");
  }

  testing::Fixture fx_;
  ScriptedServer ca_;
  storage::TenantId tenant_ = 0;
  storage::Scope scope_;
  storage::AccountId account_ = 0;
  std::unique_ptr<AcmeClients> clients_;
  std::unique_ptr<OrderRunner> runner_;
};

TEST_F(OrderRunnerTest, RunsAnOrderToAStoredCertificate) {
  // The CA: order pending until the challenge is answered, then valid.
  std::atomic<bool> answered{false};
  ca_.On("POST", "/chall/1", [&](const Call&) {
    answered = true;
    return ScriptedServer::Json(200, {{"type", "http-01"}, {"url", ScriptedServer::Url("/chall/1")},
                                      {"status", "processing"}, {"token", "tok-1"}});
  });
  ca_.On("POST", "/order/1", [&](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Order(answered ? "ready" : "pending"));
  });
  ca_.On("POST", "/finalize/1", [&](const Call& c) {
    EXPECT_TRUE(nlohmann::json::parse(c.jws->payload).contains("csr"));
    ca_.On("POST", "/order/1",
           [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
    return ScriptedServer::Json(200, ScriptedServer::Order("processing"));
  });
  // While the CA validates, the key authorization must be in the challenges table.
  ca_.On("POST", "/authz/1", [&](const Call&) {
    if (answered) {
      auto ka = fx_.store().LookupChallenge("tok-1");
      EXPECT_TRUE(ka.ok()) << ka.status();
    }
    return ScriptedServer::Json(200, ScriptedServer::Authz("pending"));
  });

  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(NewOrderRow(), leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  EXPECT_EQ(order->acme_url, ScriptedServer::Url("/order/1"));
  ASSERT_TRUE(order->certificate.has_value());
  auto cert = fx_.store().GetCertificate(scope_, *order->certificate);
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->serial, "8f00d1e2c3b4a59687");
  EXPECT_EQ(cert->identifiers, std::vector<std::string>({"*.leaf.example.com", "leaf.example.com"}));
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/chall/1"), 1);
  // Challenges are cleaned up; the authorization is in the ledger.
  EXPECT_THAT(fx_.store().LookupChallenge("tok-1"), StatusIs(absl::StatusCode::kNotFound));
  auto authzs = fx_.store().ListOutstandingAuthorizations(scope_, {});
  ASSERT_TRUE(authzs.ok());
  ASSERT_EQ(authzs->size(), 1u);
  EXPECT_EQ((*authzs)[0].record.url, ScriptedServer::Url("/authz/1"));
}

TEST_F(OrderRunnerTest, ResumesAtTheCasStatusAndNeverFinalizesTwice) {
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ASSERT_TRUE(fx_.store().TransitionOrder(scope_, lease, OrderState::kProcessing, {}).ok());
  // A replica died after finalize: the CA says processing, then valid.
  int polls = 0;
  ca_.On("POST", "/order/1", [&](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Order(++polls < 3 ? "processing" : "valid"));
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 0);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 0);
}

TEST_F(OrderRunnerTest, AResumedRunWhoseFirstLookSaysValidRetriesAFailedDownload) {
  // A replica died right after finalize, before it recorded processing: the order row says
  // pending, the CA says valid; the first download then fails with a 404.
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ca_.On("POST", "/order/1",
         [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
  int downloads = 0;
  std::string chain = testing::ReadTestFile("crypto/testdata/chain.pem");
  ASSERT_FALSE(chain.empty());
  ca_.On("POST", "/cert/1", [&](const Call&) {
    if (++downloads == 1) {
      return ScriptedServer::Problem(404, "malformed", "Certificate not found");
    }
    return ScriptedServer::Raw(200, "application/pem-certificate-chain", chain);
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  ASSERT_TRUE(order->certificate.has_value());
  EXPECT_EQ(downloads, 2);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 0);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 0);
}

TEST_F(OrderRunnerTest, AResumedRunNeverAnswersAChallengeTheCaAlreadyValidated) {
  // Another replica answered; the CA validated the challenge but the authorization still says
  // pending (it turns valid a moment later). Answering again is refused by the CA.
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  std::string state = "pending";
  ca_.On("POST", "/authz/1", [&](const Call&) {
    nlohmann::json authz = ScriptedServer::Authz("pending");
    authz["challenges"][0]["status"] = "valid";
    state = "ready";
    return ScriptedServer::Json(200, authz);
  });
  ca_.On("POST", "/chall/1", [](const Call&) { return AlreadyValidRefusal(); });
  ScriptOrderFollowing(&state);
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  EXPECT_EQ(ca_.CountCalls("POST", "/chall/1"), 0);
}

TEST_F(OrderRunnerTest, AChallengeValidatedBetweenOurLookAndOurAnswerCountsAsAnswered) {
  // The authorization said the challenge was pending; by the time the answer arrives the CA has
  // validated it (another replica's answer): the refusal means done, not failure.
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  std::string state = "pending";
  ca_.On("POST", "/authz/1", [&](const Call&) {
    nlohmann::json authz = ScriptedServer::Authz(state == "pending" ? "pending" : "valid");
    if (state != "pending") authz["challenges"][0]["status"] = "valid";
    return ScriptedServer::Json(200, authz);
  });
  ca_.On("POST", "/chall/1", [&](const Call&) {
    state = "ready";
    return AlreadyValidRefusal();
  });
  ScriptOrderFollowing(&state);
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
}

TEST_F(OrderRunnerTest, ARunThatLostItsLeaseLeavesTheNewOwnersChallengeAnswers) {
  storage::Lease lease = NewOrderRow();
  ca_.On("POST", "/chall/1", [&](const Call&) {
    // While this run answers, its lease expires and replica 2 claims the order; replica 2
    // publishes the same answer (the challenges table is shared) and goes on validating.
    fx_.clock().Advance(absl::Minutes(3));
    auto claimed = fx_.store().ClaimStaleOrders("replica-2", absl::Minutes(2), 10);
    EXPECT_TRUE(claimed.ok() && claimed->size() == 1u);
    return ScriptedServer::Problem(400, "malformed", "the CA refuses this answer");
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  EXPECT_THAT(order, StatusIs(absl::StatusCode::kFailedPrecondition));
  // The stale run's cleanup is fenced: replica 2's published answer is still served.
  EXPECT_TRUE(fx_.store().LookupChallenge("tok-1").ok());
}

TEST_F(OrderRunnerTest, TheLeaseIsRenewedWhileTheCaTakesLong) {
  auto runner = *OrderRunner::Create(fx_.WithStore(
      OrderRunner::Options{.clients = clients_.get(),
                           .clock = &fx_.clock(),
                           .ca_timeout = absl::Minutes(5),
                           .lease_duration = absl::Minutes(1)}));
  storage::Lease lease = NewOrderRow();
  // The CA validates for four minutes (polled every second on the fake clock), then issues.
  const absl::Time ready_at = fx_.clock().Now() + absl::Minutes(4);
  int expired_polls = 0;
  std::string state = "pending";
  ca_.On("POST", "/order/1", [&](const Call&) {
    auto row = fx_.store().GetOrder(scope_, lease.order);
    if (row.ok() && !storage::IsTerminal(row->state) &&
        (!row->lease_expires_at || *row->lease_expires_at <= fx_.clock().Now())) {
      ++expired_polls;
    }
    if (state == "pending" && fx_.clock().Now() >= ready_at) state = "ready";
    return ScriptedServer::Json(200, ScriptedServer::Order(state));
  });
  ca_.On("POST", "/finalize/1", [&](const Call&) {
    state = "valid";
    return ScriptedServer::Json(200, ScriptedServer::Order("valid"));
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner->Run(Job(lease, leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  EXPECT_EQ(expired_polls, 0);
}

TEST_F(OrderRunnerTest, CaInvalidOrderIsRecordedInvalidWithTheReason) {
  ca_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Problem(400, "rejectedIdentifier", "a.example.com is forbidden");
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(NewOrderRow(), leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("rejectedIdentifier"));
  EXPECT_EQ(order->problem_type, "urn:ietf:params:acme:error:rejectedIdentifier");
}

TEST_F(OrderRunnerTest, ACaProblemIsRecordedWithItsTypeAndAClippedDetail) {
  const std::string page = "<html>" + std::string(5000, 'x') + "\xC3\xA9t\xC3\xA9</html>";
  ca_.On("POST", "/new-order", [&](const Call&) {
    return ScriptedServer::Problem(400, "rejectedIdentifier", page);
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(NewOrderRow(), leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("rejectedIdentifier"));
  EXPECT_THAT(order->error, HasSubstr("HTTP 400"));
  EXPECT_LT(order->error.size(), 600u);
}

TEST_F(OrderRunnerTest, AnOrderTheCaMarkedInvalidAfterFinalizeEndsInvalidWithTheCasProblem) {
  // A resumed run: the order was finalized; the CA has since given up on it. Its answer is
  // final (RFC 8555 §7.1.6: invalid is terminal), so the order must not wait for a later run.
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ASSERT_TRUE(fx_.store().TransitionOrder(scope_, lease, OrderState::kProcessing, {}).ok());
  ca_.On("POST", "/order/1", [](const Call&) {
    nlohmann::json order = ScriptedServer::Order("invalid");
    order["error"] = {{"type", "urn:ietf:params:acme:error:badPublicKey"},
                      {"detail", "the key is on a blocklist"},
                      {"status", 400}};
    return ScriptedServer::Json(200, order);
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("badPublicKey"));
  EXPECT_THAT(order->error, HasSubstr("the key is on a blocklist"));
  EXPECT_EQ(order->problem_type, "urn:ietf:params:acme:error:badPublicKey");
}

TEST_F(OrderRunnerTest, UnreachableCaLeavesTheOrderForALaterRun) {
  ca_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Problem(503, "serverInternal", "maintenance");
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  storage::Lease lease = NewOrderRow();
  auto order = runner_->Run(Job(lease, leaf_key));
  EXPECT_THAT(order, StatusIs(absl::StatusCode::kUnavailable));
  auto row = fx_.store().GetOrder(scope_, lease.order);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->state, OrderState::kCreated);
}

TEST_F(OrderRunnerTest, ALostLeaseStopsTheRunWithoutCommitting) {
  storage::Lease lease = NewOrderRow();
  // The lease expires and another replica claims the order.
  fx_.clock().Advance(absl::Minutes(3));
  auto claimed = fx_.store().ClaimStaleOrders("replica-2", absl::Minutes(2), 10);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 1u);
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(lease, leaf_key));
  EXPECT_THAT(order, StatusIs(absl::StatusCode::kFailedPrecondition, "lost"));
  auto row = fx_.store().GetOrder(scope_, lease.order);
  ASSERT_TRUE(row.ok());
  EXPECT_TRUE(row->acme_url.empty());
  EXPECT_EQ(row->lease_owner, "replica-2");
}

TEST_F(OrderRunnerTest, ACertificateForAnotherKeyIsNeverStored) {
  ca_.On("POST", "/order/1",
         [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
  auto other = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(other.ok());
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  auto order = runner_->Run(Job(lease, *other));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("another key"));
  auto certs = fx_.store().ListCertificates(scope_, {}, {});
  ASSERT_TRUE(certs.ok());
  EXPECT_TRUE(certs->items.empty());
}

TEST_F(OrderRunnerTest, ACertificateForOtherNamesIsNeverStored) {
  auto r = fx_.store().CreateOrJoinOrder(
      scope_, {account_, {"other.example.com"}, "", "replica-1", absl::Minutes(2)});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, *r->lease, ScriptedServer::Url("/order/1")).ok());
  ca_.On("POST", "/order/1",
         [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto csr = crypto::BuildCsr({"other.example.com"}, leaf_key);
  ASSERT_TRUE(csr.ok());
  auto order = runner_->Run(OrderJob{scope_, *r->lease, *csr});
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("other names [*.leaf.example.com, leaf.example.com]"));
}

// Issue 9, defect 11: what the CA sends is checked before it is stored, and a refusal ends the
// order as invalid with the reason (never valid, never a handle that stays FINALIZING), even
// once the CA has finalized it: asking again would get the same answer.
class OrderRunnerCheckTest : public OrderRunnerTest {
 protected:
  // An order the CA already finalized (a resumed run: the CA says valid at the first look), whose
  // download answers `chain`.
  absl::StatusOr<storage::Order> RunDownloading(const std::string& chain) {
    storage::Lease lease = NewOrderRow();
    EXPECT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
    ca_.On("POST", "/order/1",
           [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
    ca_.On("POST", "/cert/1", [chain](const Call&) {
      return ScriptedServer::Raw(200, "application/pem-certificate-chain", chain);
    });
    crypto::PrivateKey leaf_key = testing::TestLeafKey();
    return runner_->Run(Job(lease, leaf_key));
  }

  // Refused by the service itself: a reason, and no CA problem type.
  static void ExpectRefused(const storage::Order& order, const std::string& reason) {
    EXPECT_EQ(order.state, OrderState::kInvalid);
    EXPECT_THAT(order.error, HasSubstr(reason));
    EXPECT_EQ(order.problem_type, "");
  }

  void ExpectNoCertificate() {
    auto certs = fx_.store().ListCertificates(scope_, {}, {});
    ASSERT_TRUE(certs.ok());
    EXPECT_TRUE(certs->items.empty());
  }
};

TEST_F(OrderRunnerCheckTest, AChainBeyondTheBoundsEndsTheOrderInvalid) {
  const std::string chain = testing::ReadTestFile("crypto/testdata/chain.pem");
  ASSERT_FALSE(chain.empty());
  const std::string intermediate = testing::ReadTestFile("crypto/testdata/int.pem");
  std::string long_chain = chain;
  for (size_t i = 1; i < acme::kMaxChainCertificates; ++i) long_chain += intermediate;
  auto order = RunDownloading(long_chain);
  ASSERT_TRUE(order.ok()) << order.status();
  ExpectRefused(*order, "the chain has 11 certificates; at most 10");
  ExpectNoCertificate();
}

TEST_F(OrderRunnerCheckTest, AnExpiredLeafEndsTheOrderInvalid) {
  fx_.clock().Set(testing::TestChainValidTime() + absl::Hours(24 * 100));  // 2027-03-11.
  auto order = RunDownloading(testing::ReadTestFile("crypto/testdata/chain.pem"));
  ASSERT_TRUE(order.ok()) << order.status();
  ExpectRefused(*order,
                "the leaf is valid from 2026-11-22T08:12:29Z to 2027-02-20T08:12:29Z, not at "
                "2027-03-11");
  ExpectNoCertificate();
}

TEST_F(OrderRunnerCheckTest, ADownloadThatIsNotACertificateChainEndsTheOrderInvalid) {
  auto order = RunDownloading("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  ASSERT_TRUE(order.ok()) << order.status();
  ExpectRefused(*order, "INVALID_ARGUMENT: POST certificate");
  ExpectNoCertificate();
}

TEST_F(OrderRunnerCheckTest, AnAuthorizationForANameTheOrderDidNotAskForEndsTheOrderInvalid) {
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  ca_.On("POST", "/authz/1", [](const Call&) {
    nlohmann::json authz = ScriptedServer::Authz("pending");
    authz["identifier"]["value"] = "evil.example.net";
    return ScriptedServer::Json(200, authz);
  });
  crypto::PrivateKey leaf_key = testing::TestLeafKey();
  auto order = runner_->Run(Job(NewOrderRow(), leaf_key));
  ASSERT_TRUE(order.ok()) << order.status();
  ExpectRefused(*order, "evil.example.net, which the order does not name");
  EXPECT_EQ(ca_.CountCalls("POST", "/chall/1"), 0);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 0);
  // Nothing the CA named outside the order reaches the ledger.
  auto authzs = fx_.store().ListOutstandingAuthorizations(scope_, {});
  ASSERT_TRUE(authzs.ok());
  EXPECT_TRUE(authzs->empty());
  ExpectNoCertificate();
}

TEST_F(OrderRunnerTest, MissingCollaboratorsAreRefusedAtCreation) {
  EXPECT_THAT(
      OrderRunner::Create(fx_.WithStore(OrderRunner::Options{})),
      StatusIs(absl::StatusCode::kInvalidArgument, "OrderRunner: Options.clients is required"));
  auto no_challenges = fx_.WithStore(OrderRunner::Options{.clients = clients_.get()});
  no_challenges.challenges = nullptr;
  EXPECT_THAT(OrderRunner::Create(no_challenges),
              StatusIs(absl::StatusCode::kInvalidArgument, "Options.challenges"));
}

}  // namespace
}  // namespace acmevault::service
