// The order runner over the scripted CA and the fake store: the whole flow, resuming from each
// recorded state without finalizing twice, CA failures, a lost lease, and a certificate issued
// for the wrong key.
#include "service/order_runner.h"

#include <atomic>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "acme/problem.h"
#include "acme/testing/scripted_server.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
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

  // Creates an order row with its job, the job's lease held here, and a CSR for `key`'s public
  // half (the test leaf key by default).
  storage::Lease NewOrderRow(std::vector<std::string> names = {"*.leaf.example.com",
                                                               "leaf.example.com"},
                             const crypto::PrivateKey& key = testing::TestLeafKey(),
                             bool prefer_dns01 = false, storage::AccountId account = 0) {
    auto csr = crypto::BuildCsr(names, key);
    EXPECT_TRUE(csr.ok());
    storage::NewOrder spec{account != 0 ? account : account_, names, "", "replica-1",
                           absl::Minutes(2)};
    spec.csr_der = csr.ok() ? *csr : "";
    spec.prefer_dns01 = prefer_dns01;
    spec.job_kind = "order_step";
    auto r = fx_.store().CreateOrJoinOrder(scope_, spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r->lease;
  }

  // An ephemeral account of the tenant as the issuer makes one: pending, its key stored.
  storage::AccountId EphemeralAccount() {
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    EXPECT_TRUE(key.ok());
    storage::PublicKeyInfo info{crypto::PublicJwk(key->public_key()).dump(),
                                crypto::Thumbprint(key->public_key())};
    auto account =
        fx_.store().CreateEphemeralAccount(scope_, ScriptedServer::Url("/dir"), *key, info);
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? account->id : 0;
  }

  // Steps the order as the engine would, moving the fake clock to each time a step asks for,
  // until it ends (its row) or a step stops short for the engine's backoff (that error).
  absl::StatusOr<storage::Order> RunToEnd(const storage::Lease& lease,
                                          OrderRunner* runner = nullptr) {
    if (runner == nullptr) runner = runner_.get();
    OrderJob job{scope_, lease};
    for (int step = 0; step < 50; ++step) {
      ASSIGN_OR_RETURN(OrderStepResult r, runner->Step(job));
      steps_.push_back(r);
      switch (r.kind) {
        case OrderStepResult::Kind::kFinished:
          return r.order;
        case OrderStepResult::Kind::kWaiting:
          job.failed_attempts = 0;
          fx_.clock().Set(r.at);
          break;
        case OrderStepResult::Kind::kHeld:
          return r.why;
        case OrderStepResult::Kind::kStopped:
          if (!r.quiet) return r.why;
          ++job.failed_attempts;
          fx_.clock().Set(r.at);
          break;
      }
    }
    return absl::DeadlineExceededError("the order did not end in 50 steps");
  }

  // Another runner over the same store and CA (another replica's, or this one's with other
  // options), with its own ACME clients.
  std::unique_ptr<OrderRunner> MakeRunner(
      const std::function<void(OrderRunner::Options&)>& adjust = nullptr) {
    AcmeClients::Options options;
    options.transport_instance = &ca_;
    options.client.clock = &fx_.clock();
    options.client.poll_interval = absl::Seconds(1);
    other_clients_.push_back(*AcmeClients::Create(options));
    OrderRunner::Options o =
        fx_.WithStore(OrderRunner::Options{.clients = other_clients_.back().get(),
                                           .clock = &fx_.clock()});
    if (adjust) adjust(o);
    auto runner = OrderRunner::Create(o);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? *std::move(runner) : nullptr;
  }

  // Scripts newOrder to answer order N (= 1, 2, ... per call) at /order/N with `status`, for
  // the identifiers asked for, whose finalize URL is /finalize/N.
  void ScriptNumberedNewOrders(const std::string& status) {
    ca_.On("POST", "/new-order", [this, status](const Call& c) {
      const int n = ++new_orders_;
      nlohmann::json o = NumberedOrder(n, status);
      o["identifiers"] = nlohmann::json::parse(c.jws->payload)["identifiers"];
      return ScriptedServer::Json(201, o,
                                  {{"Location", ScriptedServer::Url(absl::StrCat("/order/", n))}});
    });
  }
  static nlohmann::json NumberedOrder(int n, const std::string& status) {
    nlohmann::json o = ScriptedServer::Order(status);
    o["finalize"] = ScriptedServer::Url(absl::StrCat("/finalize/", n));
    return o;
  }

  // Takes the order's job over as another replica would once its lease expired.
  storage::Lease TakeOver(const storage::Lease& lease) {
    fx_.clock().Advance(absl::Minutes(3));
    auto claimed = fx_.store().ClaimJobs(
        {"replica-2", fx_.clock().Now(), 10, absl::Minutes(2), 0, 0, {"order_step"}});
    EXPECT_TRUE(claimed.ok() && claimed->jobs.size() == 1u);
    return claimed.ok() && !claimed->jobs.empty()
               ? storage::OrderLeaseOf(claimed->jobs[0].lease, lease.order)
               : lease;
  }

  // Runs a new order to valid; `outstanding` gets the ledger's outstanding authorizations,
  // which must be exactly one.
  void IssueKeepingOneAuthorization(std::vector<storage::Authorization>& outstanding) {
    auto order = RunToEnd(NewOrderRow());
    ASSERT_TRUE(order.ok()) << order.status();
    ASSERT_EQ(order->state, OrderState::kValid);
    auto authzs = fx_.store().ListOutstandingAuthorizations(scope_, {});
    ASSERT_TRUE(authzs.ok());
    ASSERT_EQ(authzs->size(), 1u);
    outstanding = *authzs;
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
  std::vector<OrderStepResult> steps_;  // every step RunToEnd took
  std::vector<std::unique_ptr<AcmeClients>> other_clients_;  // MakeRunner's
  std::atomic<int> new_orders_{0};                           // ScriptNumberedNewOrders'
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

  auto order = RunToEnd(NewOrderRow());
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  EXPECT_EQ(order->acme_url, ScriptedServer::Url("/order/1"));
  ASSERT_TRUE(order->certificate.has_value());
  auto cert = fx_.store().GetCertificate(scope_, *order->certificate);
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->serial, "8f00d1e2c3b4a59687");
  EXPECT_EQ(cert->identifiers, std::vector<std::string>({"*.leaf.example.com", "leaf.example.com"}));
  // The leaf names no CRL: stored as never to be read for one (no scan's transaction for it).
  EXPECT_EQ(cert->crl_next_check, cert->not_after);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/chall/1"), 1);
  // Challenges are cleaned up; the authorization went into the ledger and, by the tenant's
  // policy (deactivation after issuance, the default), was deactivated at the CA and there.
  EXPECT_THAT(fx_.store().LookupChallenge("tok-1"), StatusIs(absl::StatusCode::kNotFound));
  int deactivations = 0;
  for (const auto& call : ca_.calls()) {
    if (call.path == "/authz/1" && call.jws.has_value() &&
        absl::StrContains(call.jws->payload, "deactivated")) {
      ++deactivations;
    }
  }
  EXPECT_EQ(deactivations, 1);
  auto authzs = fx_.store().ListOutstandingAuthorizations(scope_, {});
  ASSERT_TRUE(authzs.ok());
  EXPECT_TRUE(authzs->empty());
}

// Issue 10: after finalize is answered, a step the engine keeps in memory leaves the order's
// processing state unwritten; the next step here records the certificate (valid) in its one
// transaction. Should the job leave memory instead, the write left behind is made first, and
// a step that loads the order then never finalizes again, even when the CA says ready.
class OrderRunnerDeferTest : public OrderRunnerTest {
 protected:
  // The CA: pending until the challenge is answered, then ready; finalize makes it processing,
  // and the order is valid once `issued`.
  void ScriptFinalizingCa() {
    ca_.On("POST", "/chall/1", [this](const Call&) {
      answered_ = true;
      return ScriptedServer::Json(200, {{"type", "http-01"},
                                        {"url", ScriptedServer::Url("/chall/1")},
                                        {"status", "processing"},
                                        {"token", "tok-1"}});
    });
    ca_.On("POST", "/authz/1",
           [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Authz("pending")); });
    ca_.On("POST", "/order/1", [this](const Call&) {
      const char* status = issued_      ? "valid"
                           : finalized_ ? after_finalize_
                           : answered_  ? "ready"
                                        : "pending";
      return ScriptedServer::Json(200, ScriptedServer::Order(status));
    });
    ca_.On("POST", "/finalize/1", [this](const Call&) {
      finalized_ = true;
      return ScriptedServer::Json(200, ScriptedServer::Order("processing"));
    });
  }
  // Steps as the engine would keep them, until the step that sent finalize.
  OrderStepResult StepToFinalize(OrderJob& job) {
    for (int i = 0; i < 20; ++i) {
      absl::StatusOr<OrderStepResult> step = runner_->Step(job);
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok()) return {};
      fx_.clock().Set(step->at);
      job.kept = true;
      if (step->kind != OrderStepResult::Kind::kWaiting || finalized_) return *step;
    }
    ADD_FAILURE() << "finalize never sent";
    return {};
  }
  OrderState Stored(const storage::Lease& lease) {
    auto row = fx_.store().GetOrder(scope_, lease.order);
    EXPECT_TRUE(row.ok()) << row.status();
    return row.ok() ? row->state : OrderState::kInvalid;
  }

  std::atomic<bool> answered_{false}, finalized_{false}, issued_{false};
  const char* after_finalize_ = "processing";
};

TEST_F(OrderRunnerDeferTest, AKeptStepRecordsProcessingWithTheCertificate) {
  ScriptFinalizingCa();
  const storage::Lease lease = NewOrderRow();
  OrderJob job{scope_, lease, 0, false, /*defers_writes=*/true};
  const OrderStepResult finalizing = StepToFinalize(job);
  ASSERT_EQ(finalizing.kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(finalizing.order.state, OrderState::kProcessing);  // as the step knows it
  EXPECT_TRUE(finalizing.unrecorded);
  EXPECT_EQ(Stored(lease), OrderState::kReady);  // not written

  issued_ = true;
  const int64_t before = fx_.fake_store().transactions();
  absl::StatusOr<OrderStepResult> done = runner_->Step(job);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->kind, OrderStepResult::Kind::kFinished);
  EXPECT_TRUE(done->certificate.has_value());
  EXPECT_EQ(fx_.fake_store().transactions() - before, 1);  // FinishOrder alone
  EXPECT_EQ(Stored(lease), OrderState::kValid);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
}

TEST_F(OrderRunnerDeferTest, TheWriteLeftBehindIsMadeBeforeTheOrderLeavesMemory) {
  ScriptFinalizingCa();
  const storage::Lease lease = NewOrderRow();
  OrderJob job{scope_, lease, 0, false, /*defers_writes=*/true};
  const OrderStepResult finalizing = StepToFinalize(job);
  ASSERT_TRUE(finalizing.unrecorded);
  ASSERT_OK(finalizing.unrecorded());  // the engine, as the job goes back to the store
  EXPECT_EQ(Stored(lease), OrderState::kProcessing);
  // A step that loads the order (not kept) finds the CA saying ready again: finalize was sent,
  // so it is not sent twice.
  after_finalize_ = "ready";
  job.kept = false;
  absl::StatusOr<OrderStepResult> again = runner_->Step(job);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
  issued_ = true;
  fx_.clock().Set(again->at);
  absl::StatusOr<OrderStepResult> done = runner_->Step(job);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->kind, OrderStepResult::Kind::kFinished);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
}

// What a waiting step leaves in memory for its next step here is dropped by the result's
// `forget` (the engine calls it, through SoonAt's unkept, when the job goes back to the store):
// before, it stayed a minute for every such order, about 5 KB each, so 10,000 orders waiting
// at a slow CA took some 50 MB. A step after the drop loads the order again.
TEST_F(OrderRunnerDeferTest, AWaitingStepsStateIsDroppedWhenItsJobGoesBackToTheStore) {
  ScriptFinalizingCa();
  const storage::Lease lease = NewOrderRow();
  OrderJob job{scope_, lease};
  absl::StatusOr<OrderStepResult> waiting = runner_->Step(job);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  ASSERT_EQ(waiting->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(runner_->loaded_in_memory(), 1u);
  ASSERT_TRUE(waiting->forget);
  waiting->forget();
  EXPECT_EQ(runner_->loaded_in_memory(), 0u);

  // The next step under the same lease finds nothing kept: it loads the order (one
  // transaction) before it looks at the CA.
  fx_.clock().Set(waiting->at);
  job.kept = true;
  const int64_t before = fx_.fake_store().transactions();
  absl::StatusOr<OrderStepResult> next = runner_->Step(job);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GE(fx_.fake_store().transactions() - before, 1);
}

// Without a caller that makes the left write (the default), every step writes what it learned.
TEST_F(OrderRunnerDeferTest, AStepWhoseCallerDefersNothingWritesProcessingAtOnce) {
  ScriptFinalizingCa();
  const storage::Lease lease = NewOrderRow();
  OrderJob job{scope_, lease};
  const OrderStepResult finalizing = StepToFinalize(job);
  EXPECT_FALSE(finalizing.unrecorded);
  EXPECT_EQ(Stored(lease), OrderState::kProcessing);
}

// Issue 11: the ledger shows the CA's state. An order the CA made valid has only valid
// authorizations (RFC 8555 §7.1.6), so a tenant that keeps its authorizations has them
// recorded valid, not left pending as they were answered.
// The challenge type a request asked for is the order's, stored with it: a runner that never saw
// the request (another replica's) answers as asked. This one has no DNS-01 configuration, so
// the order stops on that, and no HTTP-01 answer is sent in its place.
TEST_F(OrderRunnerTest, AStoredDns01PreferenceIsHonouredByAnyRunner) {
  auto order = RunToEnd(NewOrderRow({"leaf.example.com"}, testing::TestLeafKey(),
                                    /*prefer_dns01=*/true));
  const std::string said = order.ok() ? order->error : std::string(order.status().message());
  EXPECT_THAT(said, HasSubstr("dns-01"));
  EXPECT_EQ(ca_.CountCalls("POST", "/chall/1"), 0);
}

TEST_F(OrderRunnerTest, KeptAuthorizationsAreRecordedValidAfterIssuance) {
  auto tenant = fx_.store().GetTenant(scope_);
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  storage::TenantSpec spec = tenant->spec;
  spec.policy.deactivate_authorizations_after_issuance = false;
  ASSERT_TRUE(fx_.store().UpdateTenant(scope_, spec).ok());
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  std::vector<storage::Authorization> authzs;
  ASSERT_NO_FATAL_FAILURE(IssueKeepingOneAuthorization(authzs));
  EXPECT_EQ(std::string(storage::AuthorizationStatusName(authzs[0].record.status)), "valid");
}

// Issue 11: a deactivation after issuance the CA failed is not forgotten: the authorization
// stays outstanding in the ledger and a deactivate_authorization job for it is due at once.
TEST_F(OrderRunnerTest, ADeactivationTheCaFailedBecomesAJob) {
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  ca_.On("POST", "/authz/1", [](const Call& c) {
    if (c.jws.has_value() && absl::StrContains(c.jws->payload, "deactivated")) {
      return ScriptedServer::Problem(500, "serverInternal", "not now");
    }
    return ScriptedServer::Json(200, ScriptedServer::Authz("pending"));
  });
  std::vector<storage::Authorization> authzs;
  ASSERT_NO_FATAL_FAILURE(IssueKeepingOneAuthorization(authzs));
  auto claimed = fx_.store().ClaimJobs({"replica-2", fx_.clock().Now(), 10, absl::Minutes(2), 0,
                                        0, {kDeactivateAuthorizationJob}});
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->jobs.size(), 1u);
  EXPECT_EQ(claimed->jobs[0].job.subject, absl::StrCat(authzs[0].id));
  EXPECT_EQ(claimed->jobs[0].job.ca, ScriptedServer::Url("/dir"));
}

// Issue 11, item 7: an order of a tenant in ephemeral-account mode holds an account of its
// own. Its first step registers it at the CA (newAccount signed by the stored key, terms
// agreed); after the certificate is stored the account is deactivated at the CA with that key
// and recorded deactivated.
TEST_F(OrderRunnerTest, AnEphemeralAccountIsRegisteredByTheOrderAndDeactivatedAfterIssuance) {
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(201, {{"status", "valid"}}, {{"Location", ScriptedServer::Url("/acct/7")}});
  });
  std::vector<std::string> account_posts;
  ca_.On("POST", "/acct/7", [&](const Call& c) {
    account_posts.push_back(c.jws ? c.jws->payload : "");
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  const storage::AccountId ephemeral = EphemeralAccount();
  auto order = RunToEnd(NewOrderRow({"*.leaf.example.com", "leaf.example.com"},
                                    testing::TestLeafKey(), false, ephemeral));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 1);
  ASSERT_EQ(account_posts.size(), 1u);
  EXPECT_THAT(account_posts[0], HasSubstr("deactivated"));
  auto account = fx_.store().GetAccount(scope_, ephemeral);
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->account_url, ScriptedServer::Url("/acct/7"));
  EXPECT_EQ(account->status, storage::AccountStatus::kDeactivated);
  // The certificate names the account it was issued under.
  auto cert = fx_.store().GetCertificate(scope_, *order->certificate);
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->account, ephemeral);
}

// A deactivation the CA failed is not forgotten: a deactivate_ephemeral_account job is due at
// once, and its run (CloseEphemeralAccount) deactivates the account once the CA answers.
TEST_F(OrderRunnerTest, AnEphemeralAccountsFailedDeactivationBecomesAJobThatRetriesIt) {
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(201, {{"status", "valid"}}, {{"Location", ScriptedServer::Url("/acct/7")}});
  });
  bool ca_up = false;
  int deactivations = 0;
  ca_.On("POST", "/acct/7", [&](const Call& c) {
    if (c.jws && absl::StrContains(c.jws->payload, "deactivated")) ++deactivations;
    if (!ca_up) return ScriptedServer::Problem(503, "serverInternal", "not now");
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  const storage::AccountId ephemeral = EphemeralAccount();
  auto order = RunToEnd(NewOrderRow({"*.leaf.example.com", "leaf.example.com"},
                                    testing::TestLeafKey(), false, ephemeral));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  EXPECT_EQ(deactivations, 1);
  auto account = fx_.store().GetAccount(scope_, ephemeral);
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->status, storage::AccountStatus::kValid);
  auto claimed = fx_.store().ClaimJobs({"replica-2", fx_.clock().Now(), 10, absl::Minutes(2), 0,
                                        0, {kDeactivateEphemeralAccountJob}});
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->jobs.size(), 1u);
  EXPECT_EQ(claimed->jobs[0].job.subject, absl::StrCat(ephemeral));
  EXPECT_EQ(claimed->jobs[0].job.ca, ScriptedServer::Url("/dir"));
  // The job's run while the CA still fails is a failed attempt; once it answers, done.
  EXPECT_THAT(runner_->CloseEphemeralAccount(scope_, ephemeral),
              StatusIs(absl::StatusCode::kUnavailable));
  ca_up = true;
  ASSERT_TRUE(runner_->CloseEphemeralAccount(scope_, ephemeral).ok());
  EXPECT_EQ(deactivations, 3);
  account = fx_.store().GetAccount(scope_, ephemeral);
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->status, storage::AccountStatus::kDeactivated);
  // Done is done: a repeated run sends nothing.
  ASSERT_TRUE(runner_->CloseEphemeralAccount(scope_, ephemeral).ok());
  EXPECT_EQ(deactivations, 3);
}

// A failed order's ephemeral account is deactivated too; and an ephemeral account never sends
// `replaces` (RFC 9773 §5: only the account holding the replaced certificate may name it).
TEST_F(OrderRunnerTest, AFailedOrdersEphemeralAccountIsDeactivatedAndSendsNoReplaces) {
  ca_.directory()["renewalInfo"] = ScriptedServer::Url("/renewal-info");
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(201, {{"status", "valid"}}, {{"Location", ScriptedServer::Url("/acct/7")}});
  });
  ca_.On("POST", "/acct/7", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  std::string new_order;
  ca_.On("POST", "/new-order", [&](const Call& c) {
    new_order = c.jws ? c.jws->payload : "";
    return ScriptedServer::Problem(400, "rejectedIdentifier", "not today");
  });
  const storage::AccountId ephemeral = EphemeralAccount();
  auto csr = crypto::BuildCsr({"leaf.example.com"}, testing::TestLeafKey());
  ASSERT_TRUE(csr.ok());
  storage::NewOrder spec{ephemeral, {"leaf.example.com"}, "", "replica-1", absl::Minutes(2)};
  spec.csr_der = *csr;
  spec.job_kind = "order_step";
  spec.replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
  auto made = fx_.store().CreateOrJoinOrder(scope_, spec);
  ASSERT_TRUE(made.ok()) << made.status();
  auto order = RunToEnd(*made->lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(new_order, HasSubstr("identifiers"));
  EXPECT_THAT(new_order, ::testing::Not(HasSubstr("replaces")));
  EXPECT_EQ(ca_.CountCalls("POST", "/acct/7"), 1);
  auto account = fx_.store().GetAccount(scope_, ephemeral);
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->status, storage::AccountStatus::kDeactivated);
}

// A step that ended the order and died before closing its ephemeral account left the job: the
// next step, finding the order ended, closes the account.
TEST_F(OrderRunnerTest, AStepFindingTheOrderEndedClosesItsEphemeralAccount) {
  ca_.On("POST", "/acct/7", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  const storage::AccountId ephemeral = EphemeralAccount();
  ASSERT_TRUE(fx_.store().RecordAccountUrl(scope_, ephemeral, ScriptedServer::Url("/acct/7")).ok());
  storage::Lease lease = NewOrderRow({"*.leaf.example.com", "leaf.example.com"},
                                     testing::TestLeafKey(), false, ephemeral);
  ASSERT_TRUE(fx_.store()
                  .TransitionOrder(scope_, lease, OrderState::kInvalid, {"stopped here", ""})
                  .ok());
  auto step = runner_->Step({scope_, lease});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->kind, OrderStepResult::Kind::kFinished);
  EXPECT_EQ(ca_.CountCalls("POST", "/acct/7"), 1);
  auto account = fx_.store().GetAccount(scope_, ephemeral);
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->status, storage::AccountStatus::kDeactivated);
}

// The CA requires External Account Binding and the tenant keeps no EAB key: the order fails
// with that reason and how to keep one, and no account is registered.
TEST_F(OrderRunnerTest, AnEphemeralAccountAtACaRequiringEabFailsTheOrderClearly) {
  ca_.directory()["meta"]["externalAccountRequired"] = true;
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Problem(400, "accountDoesNotExist", "no such account");
  });
  const storage::AccountId ephemeral = EphemeralAccount();
  auto order = RunToEnd(NewOrderRow({"*.leaf.example.com", "leaf.example.com"},
                                    testing::TestLeafKey(), false, ephemeral));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("External Account Binding"));
  EXPECT_THAT(order->error, HasSubstr("SetEabKey"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 0);
  auto account = fx_.store().GetAccount(scope_, ephemeral);
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->status, storage::AccountStatus::kDeactivated);
  EXPECT_TRUE(account->account_url.empty());
}

// Issue 11: with the tenant's EAB key kept, an ephemeral account at a CA requiring External
// Account Binding is registered bound to it (RFC 8555 §7.3.4: an HMAC by the kept key over the
// account's own public key), and the order runs to its certificate.
TEST_F(OrderRunnerTest, AnEphemeralAccountIsBoundWithTheTenantsKeptEabKey) {
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  ca_.directory()["meta"]["externalAccountRequired"] = true;
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(201, {{"status", "valid"}},
                                {{"Location", ScriptedServer::Url("/acct/7")}});
  });
  ca_.On("POST", "/acct/7", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  const std::string mac(32, 'm');
  ASSERT_TRUE(fx_.store().KeepEabKey(scope_, ScriptedServer::Url("/dir"), "kid-9", mac).ok());
  const storage::AccountId ephemeral = EphemeralAccount();
  auto order = RunToEnd(NewOrderRow({"*.leaf.example.com", "leaf.example.com"},
                                    testing::TestLeafKey(), false, ephemeral));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  std::optional<crypto::ParsedJws> jws;
  for (const auto& call : ca_.calls()) {
    if (call.request.method == "POST" && call.path == "/new-acct") jws = call.jws;
  }
  ASSERT_TRUE(jws.has_value());
  auto eab = crypto::ParseJwsObject(nlohmann::json::parse(jws->payload)["externalAccountBinding"]);
  ASSERT_TRUE(eab.ok()) << eab.status();
  EXPECT_EQ(eab->header["kid"], "kid-9");
  EXPECT_EQ(eab->signature, crypto::HmacSha256(mac, eab->signing_input));
  // It binds the ephemeral account's key, the one that signed the request.
  EXPECT_EQ(nlohmann::json::parse(eab->payload), jws->header["jwk"]);
  auto audit = fx_.store().ListAudit(scope_, {"", 1000});
  ASSERT_TRUE(audit.ok());
  int uses = 0;
  for (const auto& r : audit->items) uses += r.event.action == "UseEabKey";
  EXPECT_EQ(uses, 1);
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
  auto order = RunToEnd(lease);
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
  auto order = RunToEnd(lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  ASSERT_TRUE(order->certificate.has_value());
  EXPECT_EQ(downloads, 2);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 0);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 0);
}

TEST_F(OrderRunnerTest, AResumedRunAfterTheAuthorizationsWereDeactivatedStoresTheCertificate) {
  // A replica downloaded the certificate, deactivated the order's authorization and died before
  // its finishing transaction. Pebble and Boulder then report the order "deactivated" (an order
  // with a deactivated authorization is), still with its certificate URL; the authorization
  // refuses a second deactivation.
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ASSERT_TRUE(fx_.store().TransitionOrder(scope_, lease, OrderState::kProcessing, {}).ok());
  ca_.On("POST", "/order/1", [](const Call&) {
    nlohmann::json order = ScriptedServer::Order("deactivated");
    order["certificate"] = ScriptedServer::Url("/cert/1");
    return ScriptedServer::Json(200, order);
  });
  ca_.On("POST", "/authz/1", [](const Call& c) {
    if (c.jws.has_value() && absl::StrContains(c.jws->payload, "deactivated")) {
      return ScriptedServer::Problem(400, "malformed",
                                     "Cannot deactivate an authorization with status deactivated");
    }
    return ScriptedServer::Json(200, ScriptedServer::Authz("deactivated"));
  });
  auto order = RunToEnd(lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  ASSERT_TRUE(order->certificate.has_value());
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 0);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 0);
  // The ledger knows the authorization is deactivated: nothing is left to deactivate later.
  auto authzs = fx_.store().ListOutstandingAuthorizations(scope_, {});
  ASSERT_TRUE(authzs.ok());
  EXPECT_TRUE(authzs->empty());
}

TEST_F(OrderRunnerTest, AnOrderDeactivatedBeforeItsCertificateEndsWithThatReason) {
  // Someone deactivated an authorization of an order in flight (a compromise response): the
  // CA reports the order deactivated with no certificate, which no later step can change.
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ca_.On("POST", "/order/1", [](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Order("deactivated"));
  });
  auto order = RunToEnd(lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("deactivated"));
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
  auto order = RunToEnd(lease);
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
  auto order = RunToEnd(lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
}

TEST_F(OrderRunnerTest, AStepThatLostItsLeaseLeavesTheNewOwnersChallengeAnswers) {
  storage::Lease lease = NewOrderRow();
  ca_.On("POST", "/chall/1", [&](const Call&) {
    // While this step answers, its lease expires and replica 2 claims the job; replica 2
    // publishes the same answer (the challenges table is shared) and goes on validating.
    TakeOver(lease);
    return ScriptedServer::Problem(400, "malformed", "the CA refuses this answer");
  });
  auto order = RunToEnd(lease);
  EXPECT_THAT(order, StatusIs(absl::StatusCode::kFailedPrecondition));
  // The stale step's cleanup is fenced: replica 2's published answer is still served.
  EXPECT_TRUE(fx_.store().LookupChallenge("tok-1").ok());
}

// Issue 10: no step waits for the CA. While the CA validates, each step says when to look again:
// a short first delay after the answers, then as long again as has passed (exponential), at most
// the cap; a CA's Retry-After always wins.
TEST_F(OrderRunnerTest, WhileTheCaValidatesStepsLookAgainWithBackoffAndNeverSleep) {
  auto runner = *OrderRunner::Create(fx_.WithStore(
      OrderRunner::Options{.clients = clients_.get(),
                           .clock = &fx_.clock(),
                           .poll_first_delay = absl::Milliseconds(100),
                           .poll_max_delay = absl::Seconds(2)}));
  storage::Lease lease = NewOrderRow();
  int polls = 0;
  std::string state = "pending";
  ca_.On("POST", "/order/1", [&](const Call&) {
    ++polls;
    if (polls == 8) state = "ready";
    nlohmann::json order = ScriptedServer::Order(state);
    if (polls == 6) {
      // One answer carries Retry-After: 30 (seconds).
      return ScriptedServer::Json(200, order, {{"Retry-After", "30"}});
    }
    return ScriptedServer::Json(200, order);
  });
  ca_.On("POST", "/finalize/1", [&](const Call&) {
    state = "valid";
    return ScriptedServer::Json(200, ScriptedServer::Order("processing"));
  });
  const absl::Time start = fx_.clock().Now();
  auto order = RunToEnd(lease, runner.get());
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  EXPECT_TRUE(fx_.clock().sleeps().empty());  // Nothing slept: every wait was a step's `at`.
  std::vector<absl::Duration> gaps;
  absl::Time last = start;
  for (const OrderStepResult& r : steps_) {
    if (r.kind != OrderStepResult::Kind::kWaiting) continue;
    gaps.push_back(r.at - last);
    last = r.at;
  }
  // Answered at `start`; then 100 ms, 100 ms (200 ms since), 200, 400, 800 ms, 1.6 s, the
  // Retry-After (30 s, above the cap), then the cap; after finalize (processing) the first
  // delay again.
  EXPECT_THAT(gaps, ::testing::ElementsAre(
                        absl::Milliseconds(100), absl::Milliseconds(100), absl::Milliseconds(200),
                        absl::Milliseconds(400), absl::Milliseconds(800),
                        absl::Milliseconds(1600), absl::Seconds(30), absl::Seconds(2),
                        absl::Milliseconds(100)));
}

// Issue 10: a step the engine kept on this replica (OrderJob::kept, the same lease) goes on from
// what the step before it loaded: a look while the CA validates costs no store transaction.
// Under another lease (a claim since, here or elsewhere) or when not kept, the step loads.
TEST_F(OrderRunnerTest, AKeptStepGoesOnFromMemoryAndAnyOtherStepLoads) {
  storage::Lease lease = NewOrderRow();
  ca_.On("POST", "/order/1", [&](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Order("pending"));
  });
  auto step = [&](bool kept, int64_t fencing_token) {
    storage::Lease l = lease;
    l.fencing_token = fencing_token;
    const int64_t before = fx_.fake_store().transactions();
    auto r = runner_->Step(OrderJob{scope_, l, 0, kept});
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.ok() ? r->kind : OrderStepResult::Kind::kStopped,
              OrderStepResult::Kind::kWaiting);
    return fx_.fake_store().transactions() - before;
  };
  EXPECT_GT(step(false, lease.fencing_token), 1);  // load, URL, ledger, answers
  EXPECT_EQ(step(true, lease.fencing_token), 0);
  EXPECT_EQ(step(true, lease.fencing_token), 0);
  EXPECT_EQ(step(true, lease.fencing_token + 1), 1);  // another lease: the load
  EXPECT_EQ(step(false, lease.fencing_token), 1);     // not kept: the load
}

// The HTTP-01 answers a step publishes are kept for this replica's responder until the order
// ends, and match what the store holds.
TEST_F(OrderRunnerTest, PublishedAnswersAreKeptForTheResponderUntilTheOrderEnds) {
  PublishedAnswers published;
  auto runner = MakeRunner([&](OrderRunner::Options& o) { o.published = &published; });
  storage::Lease lease = NewOrderRow();
  auto first = runner->Step(OrderJob{scope_, lease});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->kind, OrderStepResult::Kind::kWaiting);
  ASSERT_EQ(published.size(), 1u);
  int found = 0;
  for (const std::string token : {"tok-1", "tok-2"}) {
    std::optional<std::string> mine = published.Find(token);
    if (!mine.has_value()) continue;
    ++found;
    ASSERT_OK_AND_ASSIGN(std::string stored, fx_.store().LookupChallenge(token));
    EXPECT_EQ(*mine, stored);
  }
  EXPECT_EQ(found, 1);
  auto order = RunToEnd(lease, runner.get());
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid) << order->error;
  EXPECT_EQ(published.size(), 0u);
}

TEST_F(OrderRunnerTest, CaInvalidOrderIsRecordedInvalidWithTheReason) {
  ca_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Problem(400, "rejectedIdentifier", "a.example.com is forbidden");
  });
  auto order = RunToEnd(NewOrderRow());
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
  auto order = RunToEnd(NewOrderRow());
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
  auto order = RunToEnd(lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("badPublicKey"));
  EXPECT_THAT(order->error, HasSubstr("the key is on a blocklist"));
  EXPECT_EQ(order->problem_type, "urn:ietf:params:acme:error:badPublicKey");
}

// Issue 11 item 6: the steps of an order whose account was found hijacked end it at once,
// naming the hijack, even one finalized already: nothing more is signed for the account, so
// no retry could help.
TEST_F(OrderRunnerTest, AStepOfAHijackedAccountsOrderEndsItNamingTheHijack) {
  storage::Lease lease = NewOrderRow();
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ASSERT_TRUE(fx_.store().TransitionOrder(scope_, lease, OrderState::kProcessing, {}).ok());
  ASSERT_TRUE(fx_.store().MarkAccountHijacked(scope_, account_, "test: another key").ok());
  const int calls = static_cast<int>(ca_.calls().size());
  auto step = runner_->Step({scope_, lease});
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->kind, OrderStepResult::Kind::kFinished);
  EXPECT_EQ(step->order.state, OrderState::kInvalid);
  EXPECT_THAT(step->order.error, HasSubstr("hijacked"));
  EXPECT_EQ(static_cast<int>(ca_.calls().size()), calls);  // nothing sent
}

TEST_F(OrderRunnerTest, UnreachableCaLeavesTheOrderForALaterRun) {
  ca_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Problem(503, "serverInternal", "maintenance");
  });
  storage::Lease lease = NewOrderRow();
  auto order = RunToEnd(lease);
  EXPECT_THAT(order, StatusIs(absl::StatusCode::kUnavailable));
  auto row = fx_.store().GetOrder(scope_, lease.order);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->state, OrderState::kCreated);
}

TEST_F(OrderRunnerTest, ALostLeaseStopsTheStepWithoutCommitting) {
  storage::Lease lease = NewOrderRow();
  // The lease expires and another replica claims the job.
  storage::Lease taken = TakeOver(lease);
  EXPECT_EQ(taken.fencing_token, 2);
  auto order = RunToEnd(lease);
  EXPECT_THAT(order, StatusIs(absl::StatusCode::kFailedPrecondition, "lost"));
  auto row = fx_.store().GetOrder(scope_, lease.order);
  ASSERT_TRUE(row.ok());
  EXPECT_TRUE(row->acme_url.empty());
  auto job = fx_.store().GetJob(scope_, lease.job);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->lease_owner, "replica-2");
}

TEST_F(OrderRunnerTest, ACertificateForAnotherKeyIsNeverStored) {
  ca_.On("POST", "/order/1",
         [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
  auto other = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(other.ok());
  storage::Lease lease = NewOrderRow({"*.leaf.example.com", "leaf.example.com"}, *other);
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  auto order = RunToEnd(lease);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kInvalid);
  EXPECT_THAT(order->error, HasSubstr("another key"));
  auto certs = fx_.store().ListCertificates(scope_, {}, {});
  ASSERT_TRUE(certs.ok());
  EXPECT_TRUE(certs->items.empty());
}

TEST_F(OrderRunnerTest, ACertificateForOtherNamesIsNeverStored) {
  storage::Lease lease = NewOrderRow({"other.example.com"});
  ASSERT_TRUE(fx_.store().RecordOrderUrl(scope_, lease, ScriptedServer::Url("/order/1")).ok());
  ca_.On("POST", "/order/1",
         [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("valid")); });
  auto order = RunToEnd(lease);
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
    return RunToEnd(lease);
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
  auto order = RunToEnd(NewOrderRow());
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

// Issue 11: a rateLimited answer's Retry-After binds every replica. Replica A's newOrder is
// refused until an hour from now and A dies before the engine records the step; replica B,
// taking the job over once A's lease expired, sends no newOrder for that account and
// identifier set before the hour has passed (the hold is in the store), then sends it.
TEST_F(OrderRunnerTest, ARateLimitedNewOrderHoldsEveryReplicaUntilItsRetryAfter) {
  std::atomic<int> limited{1};
  ca_.On("POST", "/new-order", [&](const Call&) {
    if (limited-- > 0) {
      return ScriptedServer::Problem(429, "rateLimited", "too many new orders",
                                     {{"Retry-After", "3600"}});
    }
    return ScriptedServer::Json(201, ScriptedServer::Order("pending"),
                                {{"Location", ScriptedServer::Url("/order/1")}});
  });
  ca_.On("POST", "/order/1",
         [](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order("pending")); });
  const storage::Lease lease = NewOrderRow();
  const absl::Time until = fx_.clock().Now() + absl::Hours(1);

  auto first = runner_->Step({scope_, lease});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->kind, OrderStepResult::Kind::kStopped);
  EXPECT_EQ(first->at, until);
  EXPECT_THAT(first->why, StatusIs(absl::StatusCode::kResourceExhausted, "rateLimited"));
  ASSERT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  const storage::Lease taken = TakeOver(lease);
  std::unique_ptr<OrderRunner> replica_b = MakeRunner();
  for (absl::Time at : {fx_.clock().Now(), until - absl::Seconds(1)}) {
    fx_.clock().Set(at);
    auto held = replica_b->Step({scope_, taken});
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
    EXPECT_EQ(held->at, until);
    // A waiting caller hears RESOURCE_EXHAUSTED with the time it may retry.
    EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted,
                                    "no request sent to the CA until"));
    std::optional<acme::Problem> problem = acme::GetProblem(held->why);
    ASSERT_TRUE(problem.has_value());
    EXPECT_EQ(problem->retry_after, until);
    EXPECT_THAT(problem->detail, HasSubstr("too many new orders"));
  }
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  fx_.clock().Set(until);
  auto sent = replica_b->Step({scope_, taken});
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
  EXPECT_EQ(sent->order.acme_url, ScriptedServer::Url("/order/1"));
}

// The account's budget of new orders (a token bucket in the store): once it is empty, orders
// wait for the next token without a request to the CA and without failing, then proceed.
TEST_F(OrderRunnerTest, AnEmptyNewOrderBudgetHoldsOrdersUntilItRefills) {
  ScriptNumberedNewOrders("pending");  // each with /authz/1, for leaf.example.com
  // Two new orders per hour at this CA (one token every 30 minutes); the default elsewhere.
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_orders = {2, absl::Hours(1)};
  });
  std::vector<storage::Lease> leases;
  for (const char* name : {"a.example.com", "b.example.com", "c.example.com"}) {
    leases.push_back(NewOrderRow({"leaf.example.com", name}));
  }
  for (int i = 0; i < 2; ++i) {
    auto sent = runner->Step({scope_, leases[i]});
    ASSERT_TRUE(sent.ok()) << sent.status();
    EXPECT_EQ(sent->kind, OrderStepResult::Kind::kWaiting) << i;
  }
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
  auto held = runner->Step({scope_, leases[2]});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_EQ(held->at, fx_.clock().Now() + absl::Minutes(30));
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted, "budget of 2 new orders"));
  EXPECT_EQ(held->order.state, OrderState::kCreated);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
  // Another replica shares the budget: still empty a minute before the token.
  std::unique_ptr<OrderRunner> replica_b = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_orders = {2, absl::Hours(1)};
  });
  fx_.clock().Set(held->at - absl::Minutes(1));
  auto still = replica_b->Step({scope_, leases[2]});
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->kind, OrderStepResult::Kind::kHeld);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);

  fx_.clock().Set(held->at);
  auto proceeds = replica_b->Step({scope_, leases[2]});
  ASSERT_TRUE(proceeds.ok()) << proceeds.status();
  EXPECT_EQ(proceeds->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 3);
}

// A step's first load also admits its newOrder (the CA hold and the budgets): one transaction
// before the request, not two. The admission is the same: a spent budget holds the next order,
// found by that order's load alone.
TEST_F(OrderRunnerTest, AFirstStepAdmitsItsNewOrderInTheTransactionThatLoadsIt) {
  ScriptNumberedNewOrders("pending");
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_orders = {1, absl::Hours(1)};
  });
  const storage::Lease first = NewOrderRow({"leaf.example.com", "a.example.com"});
  const storage::Lease second = NewOrderRow({"leaf.example.com", "b.example.com"});
  int64_t before = fx_.fake_store().transactions();
  auto sent = runner->Step({scope_, first});
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->kind, OrderStepResult::Kind::kWaiting);
  // The load with the admission, then the order's start (URL, ledger and answers).
  EXPECT_EQ(fx_.fake_store().transactions() - before, 2);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  before = fx_.fake_store().transactions();
  auto held = runner->Step({scope_, second});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted, "budget of 1 new orders"));
  EXPECT_EQ(fx_.fake_store().transactions() - before, 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);
}

// Issue 10: an order made with its job taken by its creator (storage::NewOrder::claim) brings
// its first step's load with it (NewOrder::first_step, OrderRunner::Preload): that step sends
// its newOrder with the admission made then, and its only transaction is the order's start.
// A preloaded load under another lease is not used (the step loads the order itself), and the
// token its admission took goes back.
TEST_F(OrderRunnerTest, AFirstStepLoadedWithItsOrderNeedsNoTransactionOfItsOwn) {
  ScriptNumberedNewOrders("pending");
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_orders = {1, absl::Hours(1)};
  });
  storage::JobClaim claim;
  claim.owner = "replica-1";
  claim.max_jobs = 1;
  claim.lease_duration = absl::Minutes(2);
  claim.kinds = {"order_step"};
  // Made as the issuer makes it: with its CSR, its job taken and its first step loaded.
  auto made_with_step = [&](std::vector<std::string> names) {
    auto csr = crypto::BuildCsr(names, testing::TestLeafKey());
    EXPECT_TRUE(csr.ok());
    storage::NewOrder spec{account_, names, "", "replica-1", absl::Minutes(2)};
    spec.csr_der = csr.ok() ? *csr : "";
    spec.job_kind = "order_step";
    spec.job_ca = ScriptedServer::Url("/dir");
    spec.job_released = true;
    claim.now = fx_.clock().Now();
    spec.claim = claim;
    spec.first_step = runner->FirstStepAdmission();
    auto made = fx_.store().CreateOrJoinOrder(scope_, spec);
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? *std::move(made) : storage::CreateOrderResult{};
  };
  auto step_of = [&](const storage::CreateOrderResult& made, const storage::JobLease& lease) {
    return runner->Step({scope_, storage::OrderLeaseOf(lease, made.order.id)});
  };

  const storage::CreateOrderResult first = made_with_step({"leaf.example.com", "a.example.com"});
  ASSERT_TRUE(first.claimed.has_value() && first.first_step != nullptr);
  ASSERT_TRUE(first.first_step->admission.has_value());
  const std::vector<storage::CaBudget> budgets = first.first_step->admission_budgets;
  runner->Preload(scope_, *first.claimed, std::move(*first.first_step));
  int64_t before = fx_.fake_store().transactions();
  auto sent = step_of(first, first.claimed->lease);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->kind, OrderStepResult::Kind::kWaiting);
  // The order's start (URL, ledger and answers) alone: no load, no admission of its own.
  EXPECT_EQ(fx_.fake_store().transactions() - before, 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  // The next order's admission, made with it, found the budget of 1 empty: held, no load.
  ASSERT_OK(fx_.store().CompleteJob(first.claimed->lease));
  const storage::CreateOrderResult second = made_with_step({"leaf.example.com", "b.example.com"});
  ASSERT_TRUE(second.claimed.has_value() && second.first_step != nullptr);
  runner->Preload(scope_, *second.claimed, std::move(*second.first_step));
  before = fx_.fake_store().transactions();
  auto held = step_of(second, second.claimed->lease);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted, "budget of 1 new orders"));
  EXPECT_EQ(fx_.fake_store().transactions() - before, 0);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  // With a token back in the budget, a third takes it as it is made. Its job then runs under
  // a later claim's lease (released and claimed again): the preloaded load is not used, its
  // token goes back, and the step's own load takes it for the newOrder.
  ASSERT_OK(fx_.store().CompleteJob(second.claimed->lease));
  for (const storage::CaBudget& budget : budgets) {
    ASSERT_OK(fx_.store().ReturnCaBudgetToken(scope_, account_, budget));
  }
  const storage::CreateOrderResult third = made_with_step({"leaf.example.com", "c.example.com"});
  ASSERT_TRUE(third.claimed.has_value() && third.first_step != nullptr);
  ASSERT_TRUE(third.first_step->admission.has_value() && third.first_step->admission->take);
  EXPECT_TRUE(third.first_step->admission->take->taken);
  runner->Preload(scope_, *third.claimed, std::move(*third.first_step));
  ASSERT_OK(fx_.store().ReleaseJob(third.claimed->lease, fx_.clock().Now()));
  claim.now = fx_.clock().Now();
  ASSERT_OK_AND_ASSIGN(storage::JobClaimResult again, fx_.store().ClaimJobs(claim));
  ASSERT_EQ(again.jobs.size(), 1u);
  EXPECT_EQ(again.jobs[0].lease.fencing_token, 2);
  auto reloaded = step_of(third, again.jobs[0].lease);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
}

// Issue 11: a newOrder the CA answered with a problem made no order, so its budget token goes
// back: a CA refusing for a while does not drain the account's budget. A request whose fate is
// unknown (here a 502 page, no problem document) keeps its token spent.
TEST_F(OrderRunnerTest, ATokenForANewOrderTheCaRefusedGoesBackToTheBudget) {
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_orders = {2, absl::Hours(1)};
  });
  storage::Lease lease = NewOrderRow({"leaf.example.com"});
  // `n` steps, each sending a newOrder that fails with `answer` (none held by the budget).
  auto failing_steps = [&](int n, acme::HttpResponse answer) {
    ca_.On("POST", "/new-order", [answer](const Call&) { return answer; });
    for (int i = 0; i < n; ++i) {
      auto step = runner->Step({scope_, lease});
      ASSERT_TRUE(step.ok()) << step.status();
      EXPECT_NE(step->kind, OrderStepResult::Kind::kHeld) << i;
    }
  };
  failing_steps(3, ScriptedServer::Problem(503, "serverInternal", "try later"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 3);
  failing_steps(2, ScriptedServer::Raw(502, "text/html", "<html>bad gateway</html>"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 5);
  // The two unanswered requests spent the budget; the three refused ones did not.
  auto held = runner->Step({scope_, lease});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted, "budget of 2 new orders"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 5);
}

// Issue 11: the tenant's budget of certificates for one exact identifier set (Let's Encrypt:
// 5 per week) holds an order for a spent set, without a request, until its next token, while
// other sets go on; an order the CA made but never finalized gives its token back.
TEST_F(OrderRunnerTest, TheDuplicateCertificateBudgetHoldsASpentSetAndAFailedOrderGivesBack) {
  // Two certificates per set per two weeks: one token a week.
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].duplicate_certificates = {
        2, absl::Hours(24 * 14)};
  });
  storage::CaBudget duplicates{"duplicate_certificate", 2, absl::Hours(24 * 14)};
  duplicates.identifiers = {"a.example.com", "leaf.example.com"};
  const absl::Time drained_at = fx_.clock().Now();
  for (int i = 0; i < 2; ++i) {
    auto take = fx_.store().TakeCaBudgetToken(scope_, 0, duplicates, drained_at);
    ASSERT_TRUE(take.ok() && take->taken) << i;
  }
  ScriptNumberedNewOrders("pending");  // each with /authz/1, for leaf.example.com
  storage::Lease spent = NewOrderRow({"leaf.example.com", "a.example.com"});
  auto held = runner->Step({scope_, spent});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_EQ(held->at, drained_at + absl::Hours(24 * 7));
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted,
                                  "budget of 2 certificates for this exact set of identifiers"));
  EXPECT_EQ(held->order.state, OrderState::kCreated);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 0);
  // Another set has its own budget.
  auto other = runner->Step({scope_, NewOrderRow({"leaf.example.com", "b.example.com"})});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  // The CA makes the order invalid at once: no certificate, so the token comes back.
  ScriptNumberedNewOrders("invalid");
  auto failed = RunToEnd(NewOrderRow({"leaf.example.com", "c.example.com"}), runner.get());
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->state, OrderState::kInvalid);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
  duplicates.identifiers = {"c.example.com", "leaf.example.com"};
  auto left = fx_.store().TakeCaBudgetToken(scope_, 0, duplicates, fx_.clock().Now());
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_NEAR(left->tokens_left, 1, 1e-6);
}

// Issue 11: an ephemeral account is a new account at the CA: the fleet's new-account budget
// there (Let's Encrypt: 10 per IP per 3 hours) holds the order's first step, nothing sent,
// without a failed attempt, until the bucket has a token again.
TEST_F(OrderRunnerTest, AnEphemeralAccountWaitsForTheFleetsNewAccountBudget) {
  std::string state;
  testing::ScriptHappyCa(ca_, &state);
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(201, {{"status", "valid"}},
                                {{"Location", ScriptedServer::Url("/acct/7")}});
  });
  ca_.On("POST", "/acct/7", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_accounts = {1, absl::Hours(3)};
  });
  // Another tenant's replica opened an account at this CA a minute ago.
  const storage::CaBudget accounts{"new_account", 1, absl::Hours(3)};
  const absl::Time taken_at = fx_.clock().Now() - absl::Minutes(1);
  auto take = fx_.store().TakeCaDirectoryBudgetToken(ScriptedServer::Url("/dir"), accounts,
                                                     taken_at);
  ASSERT_TRUE(take.ok() && take->taken);
  const storage::Lease lease = NewOrderRow({"*.leaf.example.com", "leaf.example.com"},
                                           testing::TestLeafKey(), false, EphemeralAccount());
  auto held = runner->Step({scope_, lease});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_EQ(held->at, taken_at + absl::Hours(3));
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted, "1 new accounts per 3h"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 0);
  fx_.clock().Set(held->at);
  auto order = RunToEnd(lease, runner.get());
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state, OrderState::kValid);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 1);
}

// Issue 11: an order the CA keeps processing after finalize times out into stalled: a new
// order for the same names is made (not joined onto it) and runs to its certificate, and the
// stalled one is looked at again later from its stored URL and stored once the CA issues,
// finalized once only, even when the CA says ready again meanwhile.
TEST_F(OrderRunnerTest, AnOrderStuckInProcessingStallsStopsBlockingItsNamesAndResumesLater) {
  ScriptNumberedNewOrders("ready");
  std::string first_status = "processing";
  ca_.On("POST", "/order/1", [&](const Call&) {
    return ScriptedServer::Json(200, NumberedOrder(1, first_status));
  });
  ca_.On("POST", "/finalize/1",
         [](const Call&) { return ScriptedServer::Json(200, NumberedOrder(1, "processing")); });
  ca_.On("POST", "/order/2",
         [](const Call&) { return ScriptedServer::Json(200, NumberedOrder(2, "processing")); });
  ca_.On("POST", "/finalize/2",
         [](const Call&) { return ScriptedServer::Json(200, NumberedOrder(2, "processing")); });
  std::unique_ptr<OrderRunner> runner = MakeRunner([](OrderRunner::Options& o) {
    o.processing_timeout = absl::Minutes(2);
    o.stalled_look_interval = absl::Hours(1);
  });
  const storage::Lease stuck = NewOrderRow();
  const absl::Time finalized_at = fx_.clock().Now();
  absl::StatusOr<OrderStepResult> step = runner->Step({scope_, stuck});
  for (int i = 0; i < 100 && step.ok() && step->kind == OrderStepResult::Kind::kWaiting; ++i) {
    fx_.clock().Set(step->at);
    step = runner->Step({scope_, stuck});
  }
  ASSERT_TRUE(step.ok()) << step.status();
  ASSERT_EQ(step->kind, OrderStepResult::Kind::kHeld);
  EXPECT_GE(fx_.clock().Now() - finalized_at, absl::Minutes(2));
  EXPECT_EQ(step->at, fx_.clock().Now() + absl::Hours(1));
  EXPECT_THAT(step->why, StatusIs(absl::StatusCode::kUnavailable, "stalled"));
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
  auto row = fx_.store().GetOrder(scope_, stuck.order);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->state, OrderState::kProcessing);
  EXPECT_EQ(row->stalled_at, fx_.clock().Now());

  // A new request for the same names is not joined onto the stalled order: a new order goes to
  // the CA and is finalized. (The scripted CA has one certificate, which the stalled order gets
  // below; this one stays processing.)
  const storage::Lease fresh = NewOrderRow();
  EXPECT_NE(fresh.order, stuck.order);
  auto finalized = runner->Step({scope_, fresh});
  ASSERT_TRUE(finalized.ok()) << finalized.status();
  EXPECT_EQ(finalized->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(finalized->order.state, OrderState::kProcessing);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/2"), 1);

  // Looked at again: the CA says ready (a glitch after our finalize was answered). The stored
  // state says finalize was sent, so it is not sent again.
  first_status = "ready";
  fx_.clock().Set(step->at);
  auto again = runner->Step({scope_, stuck});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->kind, OrderStepResult::Kind::kHeld);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);

  // The CA issues at last: the next look stores the certificate, from the stored URL.
  first_status = "valid";
  fx_.clock().Set(again->at);
  auto done = runner->Step({scope_, stuck});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->kind, OrderStepResult::Kind::kFinished) << done->why;
  EXPECT_EQ(done->order.state, OrderState::kValid);
  EXPECT_TRUE(done->certificate.has_value());
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
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
