// The CA's limits kept by two replicas over one PostgreSQL (docs/DESIGN.md "Retries that respect
// the CA"): a rateLimited answer's Retry-After stored by one replica's step holds the other's,
// and the account's new-order budget is one bucket for both engines.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "acme/problem.h"
#include "acme/testing/scripted_server.h"
#include "common/testing/eventually.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/account_keys.h"
#include "service/auth.h"
#include "service/issuer.h"
#include "service/order_runner.h"
#include "service/testing/fixture.h"
#include "service/testing/happy_ca.h"
#include "service/testing/issuing.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::testing::StatusIs;
using Call = ScriptedServer::Call;
using ::acmevault::testing::Eventually;

class CaLimitsReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto db = storage::testing::TestDatabase::Create(url);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto open = [this](const Clock* clock) -> std::unique_ptr<storage::Store> {
      auto store =
          db_->OpenStore(clock, storage::testing::TestKeks(storage::testing::KekText("k", 'k')));
      EXPECT_TRUE(store.ok()) << store.status();
      return store.ok() ? std::move(*store) : nullptr;
    };
    clock_.Set(testing::TestChainValidTime());
    fx_a_ = std::make_unique<testing::Fixture>(open, &clock_);
    fx_b_ = std::make_unique<testing::Fixture>(open, &clock_);
    tenant_ = fx_a_->AddTenant("acme-corp", {"*.example.com"}, ScriptedServer::Url("/dir"));
    scope_ = fx_a_->AdminScope(tenant_);
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    ASSERT_TRUE(key.ok());
    auto account = fx_a_->store().CreateAccount(scope_, ScriptedServer::Url("/dir"), *key,
                                                KeyInfo(key->public_key()),
                                                storage::KeyState::kActive);
    ASSERT_TRUE(account.ok()) << account.status();
    account_ = account->id;
    ASSERT_TRUE(
        fx_a_->store().RecordAccountUrl(scope_, account_, ScriptedServer::Url("/acct/1")).ok());
    AcmeClients::Options options;
    options.transport_instance = &ca_;
    options.client.clock = &clock_;
    clients_a_ = *AcmeClients::Create(options);
    clients_b_ = *AcmeClients::Create(options);
  }

  // newOrder answers order N (1, 2, ...) at /order/N for the identifiers asked for, in `status`,
  // and records the (fake) time of each request.
  void ScriptNewOrders(const std::string& status) {
    ca_.On("POST", "/new-order", [this, status](const Call& c) {
      absl::MutexLock lock(&mu_);
      const int n = static_cast<int>(new_order_times_.size()) + 1;
      new_order_times_.push_back(clock_.Now());
      nlohmann::json o = ScriptedServer::Order(status);
      o["identifiers"] = nlohmann::json::parse(c.jws->payload)["identifiers"];
      o["finalize"] = ScriptedServer::Url(absl::StrCat("/finalize/", n));
      return ScriptedServer::Json(201, o,
                                  {{"Location", ScriptedServer::Url(absl::StrCat("/order/", n))}});
    });
  }
  std::vector<absl::Time> NewOrderTimes() {
    absl::MutexLock lock(&mu_);
    return new_order_times_;
  }

  // An order row for `names` with its order_step job leased to "replica-a" (a CSR for the test
  // leaf key).
  storage::Lease NewOrderRow(const std::vector<std::string>& names) {
    auto csr = crypto::BuildCsr(names, testing::TestLeafKey());
    EXPECT_TRUE(csr.ok());
    storage::NewOrder spec{account_, names, "", "replica-a", absl::Minutes(2)};
    spec.csr_der = csr.ok() ? *csr : "";
    spec.job_kind = "order_step";
    auto r = fx_a_->store().CreateOrJoinOrder(scope_, spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->lease ? *r->lease : storage::Lease{};
  }

  acmevault::testing::FakeClock clock_;
  std::unique_ptr<storage::testing::TestDatabase> db_;
  std::unique_ptr<testing::Fixture> fx_a_, fx_b_;
  ScriptedServer ca_;
  std::unique_ptr<AcmeClients> clients_a_, clients_b_;
  storage::TenantId tenant_ = 0;
  storage::Scope scope_;
  storage::AccountId account_ = 0;
  absl::Mutex mu_;
  std::vector<absl::Time> new_order_times_ ABSL_GUARDED_BY(mu_);
};

// Replica A's newOrder is answered rateLimited for an hour, and A dies before the engine records
// the step; replica B, over its own connection to the same database, takes the job over once
// A's lease expired and sends no newOrder for that account and identifier set before the hour
// has passed.
TEST_F(CaLimitsReplicasTest, ARateLimitedAnswerOnOneReplicaHoldsTheOther) {
  std::atomic<int> limited{1};
  ca_.On("POST", "/new-order", [&](const Call&) {
    if (limited-- > 0) {
      return ScriptedServer::Problem(429, "rateLimited", "too many new orders",
                                     {{"Retry-After", "3600"}});
    }
    return ScriptedServer::Json(201, ScriptedServer::Order("processing"),
                                {{"Location", ScriptedServer::Url("/order/1")}});
  });
  auto runner_a = *OrderRunner::Create(fx_a_->WithStore(
      OrderRunner::Options{.clients = clients_a_.get(), .clock = &clock_}));
  auto runner_b = *OrderRunner::Create(fx_b_->WithStore(
      OrderRunner::Options{.clients = clients_b_.get(), .clock = &clock_}));
  const std::vector<std::string> names = {"*.leaf.example.com", "leaf.example.com"};
  const storage::Lease lease = NewOrderRow(names);
  const absl::Time until = clock_.Now() + absl::Hours(1);
  auto first = runner_a->Step({scope_, lease});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->kind, OrderStepResult::Kind::kStopped);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  // B's view of the database holds the hold.
  auto hold = fx_b_->store().GetCaHold(
      scope_, {account_, names, storage::CaRequest::kNewOrder}, clock_.Now());
  ASSERT_TRUE(hold.ok()) << hold.status();
  EXPECT_EQ(hold->until, until);

  clock_.Advance(absl::Minutes(3));
  auto claimed = fx_b_->store().ClaimJobs(
      {"replica-b", clock_.Now(), 10, absl::Minutes(2), 0, 0, {"order_step"}});
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->jobs.size(), 1u);
  const storage::Lease taken = storage::OrderLeaseOf(claimed->jobs[0].lease, lease.order);
  auto held = runner_b->Step({scope_, taken});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kind, OrderStepResult::Kind::kHeld);
  EXPECT_EQ(held->at, until);
  EXPECT_THAT(held->why, StatusIs(absl::StatusCode::kResourceExhausted, "until"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);

  clock_.Set(until);
  auto sent = runner_b->Step({scope_, taken});
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->kind, OrderStepResult::Kind::kWaiting);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 2);
}

// One new order per hour for the account, two replicas with engines: A's order takes the token;
// the caller of B's order hears RESOURCE_EXHAUSTED (the budget, with the time), its order waits
// without a request and without failing, and goes to the CA once the bucket has refilled.
TEST_F(CaLimitsReplicasTest, TwoReplicasShareOneNewOrderBudget) {
  ScriptNewOrders("processing");
  auto adjust = [](OrderRunner::Options& o) {
    o.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_orders = {1, absl::Hours(1)};
    // The CA keeps the orders processing: looked at rarely, never stalled here.
    o.poll_first_delay = o.poll_max_delay = absl::Hours(5);
    o.processing_timeout = absl::Hours(24);
  };
  auto a = testing::IssuingReplica::Create(
      *fx_a_, {.clients = clients_a_.get(), .replica_id = "a", .adjust_runner = adjust});
  auto b = testing::IssuingReplica::Create(
      *fx_b_, {.clients = clients_b_.get(), .replica_id = "b", .adjust_runner = adjust});
  a->Start();
  b->Start();
  auto auth_a = *Authenticator::Create({&fx_a_->store()});
  auto auth_b = *Authenticator::Create({&fx_b_->store()});
  const std::string token = fx_a_->AddToken(tenant_, storage::Role::kHost);
  const Caller host_a = *auth_a->Authenticate({"Bearer " + token, ""});
  const Caller host_b = *auth_b->Authenticate({"Bearer " + token, ""});
  auto request = [](const std::string& name) {
    IssueRequest r;
    r.identifiers = {"leaf.example.com", name};
    auto csr = crypto::BuildCsr(r.identifiers, testing::TestLeafKey());
    r.csr = csr.ok() ? *csr : "";
    r.deadline = absl::InfiniteFuture();
    r.max_wait = absl::Seconds(2);  // real time (the issuer's wait clock)
    return r;
  };

  // A's order takes the only token; its caller gets the order handle (the CA is working).
  auto first = a->issuer().Issue(host_a, request("a.example.com"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(Eventually([&] { return NewOrderTimes().size() == 1u; }));
  const absl::Time first_sent = NewOrderTimes()[0];

  // B's order finds the bucket empty: no request, and its caller is told when to retry. (A's
  // engine is stopped so that B's runs the step: a caller hears of a held step only on the
  // replica that ran it, as of a CA outage; elsewhere it gets the order's handle.)
  a->engine().Stop();
  auto second = b->issuer().Issue(host_b, request("b.example.com"));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted, "budget of 1 new orders"));
  ASSERT_FALSE(second.ok());
  std::optional<acme::Problem> problem = acme::GetProblem(second.status());
  ASSERT_TRUE(problem.has_value() && problem->retry_after.has_value());
  EXPECT_GE(*problem->retry_after, first_sent + absl::Hours(1) - absl::Seconds(1));
  EXPECT_EQ(NewOrderTimes().size(), 1u);

  // The caller hears of the held step before B's engine has stored its outcome (RetryAt the
  // refill); the clock moves only after that, or the stored outcome would meet a lease the
  // jump expired.
  ASSERT_TRUE(Eventually([&] { return b->engine().stats().rescheduled >= 1; }));
  // Once the token is there, the job is claimed again and sends the order.
  clock_.Set(*problem->retry_after);
  ASSERT_TRUE(Eventually([&] { return NewOrderTimes().size() == 2u; }));
  EXPECT_GE(NewOrderTimes()[1], first_sent + absl::Hours(1) - absl::Seconds(1));
  b->engine().Stop();
  // Held, not failed: no attempt counted against the order's job.
  EXPECT_EQ(a->engine().stats().retried + b->engine().stats().retried, 0);
  EXPECT_EQ(a->engine().stats().failed + b->engine().stats().failed, 0);
}

}  // namespace
}  // namespace acmevault::service
