#include "service/policy_scheduler.h"

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "acme/client.h"
#include "acme/testing/scripted_server.h"
#include "common/testing/stack_env.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "common/testing/eventually.h"
#include "gtest/gtest.h"
#include "service/account_keys.h"
#include "service/accounts.h"
#include "service/renewal_policy.h"
#include "service/renewer.h"
#include "service/testing/happy_ca.h"
#include "service/testing/fixture.h"
#include "service/testing/issuing.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::KeyState;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Call = ScriptedServer::Call;

using ::acmevault::testing::Eventually;
using ::acmevault::testing::kPatience;

// Moves the fake clock on a second at a time, waking `engine` each time, until `done`: past a
// failed job's backoff however late its outcome was stored (a test sees the failure counted
// before the engine stores the outcome, whose backoff then counts from the clock of that
// moment). Bounded like Eventually.
template <typename Predicate>
bool AdvanceUntil(acmevault::testing::FakeClock& clock, Engine& engine, Predicate done) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    clock.Advance(absl::Seconds(1));
    engine.Wake();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

// A scripted CA that knows each account's key, as a real one does: newAccount registers the
// request's key (or, with onlyReturnExisting, finds the account that has it), keyChange moves
// the account to the inner request's key. Optionally the first keyChange stalls until released
// and is then refused, as a request a crashed replica never got across.
class KeyCa {
 public:
  explicit KeyCa(ScriptedServer& ca) {
    ca.On("POST", "/new-acct", [this](const Call& c) { return NewAccount(c); });
    ca.On("POST", "/key-change", [this](const Call& c) { return KeyChange(c); });
  }

  // The thumbprint of the key the CA holds for `account_url` ("" if none).
  std::string KeyOf(const std::string& account_url) {
    absl::MutexLock lock(&mu_);
    auto it = keys_.find(account_url);
    return it == keys_.end() ? "" : it->second;
  }
  int key_changes() {
    absl::MutexLock lock(&mu_);
    return key_changes_;
  }
  // The next `n` keyChanges are answered 503 and not applied.
  void FailKeyChanges(int n) {
    absl::MutexLock lock(&mu_);
    fail_ = n;
  }
  void StallFirstKeyChange(absl::Notification* entered, absl::Notification* release) {
    absl::MutexLock lock(&mu_);
    stall_entered_ = entered;
    stall_release_ = release;
  }

 private:
  static std::string ThumbprintOf(const nlohmann::json& jwk) {
    auto key = crypto::PublicKeyFromJwk(jwk);
    return key.ok() ? crypto::Thumbprint(*key) : "";
  }

  acme::HttpResponse NewAccount(const Call& c) {
    const std::string key = ThumbprintOf(c.jws->header["jwk"]);
    auto payload = nlohmann::json::parse(c.jws->payload, nullptr, false);
    const bool only_existing = payload.is_object() && payload.value("onlyReturnExisting", false);
    absl::MutexLock lock(&mu_);
    for (const auto& [url, k] : keys_) {
      if (k == key) return ScriptedServer::Json(200, {{"status", "valid"}}, {{"Location", url}});
    }
    if (only_existing) {
      return ScriptedServer::Problem(400, "accountDoesNotExist", "no account has this key");
    }
    const std::string url = ScriptedServer::Url(absl::StrCat("/acct/", keys_.size() + 1));
    keys_[url] = key;
    return ScriptedServer::Json(201, {{"status", "valid"}}, {{"Location", url}});
  }

  acme::HttpResponse KeyChange(const Call& c) {
    absl::Notification* entered = nullptr;
    absl::Notification* release = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (fail_ > 0) {
        --fail_;
        return ScriptedServer::Raw(503, "text/plain", "busy");
      }
      std::swap(entered, stall_entered_);
      std::swap(release, stall_release_);
    }
    if (entered != nullptr) {
      entered->Notify();
      release->WaitForNotification();
      return ScriptedServer::Problem(400, "malformed", "too late");
    }
    auto inner = crypto::ParseJws(c.jws->payload);
    if (!inner.ok()) return ScriptedServer::Problem(400, "malformed", "no inner JWS");
    const std::string account = c.jws->header.value("kid", "");
    absl::MutexLock lock(&mu_);
    if (!keys_.count(account)) return ScriptedServer::Problem(400, "accountDoesNotExist", "?");
    keys_[account] = ThumbprintOf(inner->header["jwk"]);
    ++key_changes_;
    return ScriptedServer::Json(200, {{"status", "valid"}});
  }

  absl::Mutex mu_;
  std::map<std::string, std::string> keys_ ABSL_GUARDED_BY(mu_);  // account URL -> thumbprint
  int key_changes_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification* stall_entered_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Notification* stall_release_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// The algorithms replicas were asked to make certificate keys of (they all make the test key).
absl::Mutex generated_mu;
std::vector<crypto::KeyAlgorithm>& Generated() {
  static auto* generated = new std::vector<crypto::KeyAlgorithm>;
  return *generated;
}

Caller AdminOf(storage::TenantId tenant) {
  Caller c;
  c.identity.tenant = tenant;
  c.identity.role = storage::Role::kAdmin;
  c.name = "test-admin";
  return c;
}

// One replica: issuing machinery (its engine; certificate keys are the test chain's key, which
// the scripted CA certifies), an AccountManager and a Renewer that register the rotation and
// renewal jobs on that engine, and a policy scheduler.
struct Replica {
  Replica(testing::Fixture& fx, ScriptedServer& ca, const std::string& id, Metrics* metrics) {
    AcmeClients::Options client_options;
    client_options.transport_instance = &ca;
    client_options.client.clock = &fx.clock();
    clients = *AcmeClients::Create(client_options);
    issuing = testing::IssuingReplica::Create(
        fx, {.clients = clients.get(),
             .replica_id = id,
             .adjust_issuer =
                 [](Issuer::Options& o) {
                   o.generate_key = [](crypto::KeyAlgorithm algorithm) {
                     absl::MutexLock lock(&generated_mu);
                     Generated().push_back(algorithm);
                     return testing::TestLeafKey();
                   };
                 },
             .adjust_engine = [](Engine::Options& o) { o.initial_backoff = absl::Seconds(1); }});
    accounts = *AccountManager::Create(fx.WithStore(AccountManager::Options{
        .clients = clients.get(),
        .issuer = &issuing->issuer(),
        .engine = &issuing->engine(),
        .notices = &issuing->notices(),
        .metrics = metrics,
        .clock = &fx.clock()}));
    renewer = *Renewer::Create(fx.WithStore(Renewer::Options{
        .issuer = &issuing->issuer(),
        .engine = &issuing->engine(),
        .metrics = metrics,
        .clock = &fx.clock()}));
    scheduler = *PolicyScheduler::Create(
        fx.WithStore(PolicyScheduler::Options{.engine = &issuing->engine(),
                                              .metrics = metrics,
                                              .clock = &fx.clock(),
                                              .rotation_spread = absl::ZeroDuration(),
                                              .renewal_spread = absl::ZeroDuration(),
                                              .clients = clients.get(),
                                              .crl_transport = &ca,
                                              .jitter_seed = 7}));
  }
  ~Replica() {
    scheduler.reset();
    accounts.reset();  // stops the engine before the issuing machinery goes
    renewer.reset();
    issuing.reset();
  }

  std::unique_ptr<AcmeClients> clients;
  std::unique_ptr<testing::IssuingReplica> issuing;
  std::unique_ptr<AccountManager> accounts;
  std::unique_ptr<Renewer> renewer;
  std::unique_ptr<PolicyScheduler> scheduler;
};

// Tenants and their accounts, over one store.
class PolicyTestBase : public ::testing::Test {
 protected:
  // A tenant whose account keys are `algorithm` and may be `max_age` old, with an account made
  // now (its first key of `key`).
  storage::TenantId AddTenantWithAccount(testing::Fixture& fx, AccountManager& accounts,
                                         const std::string& name, absl::Duration max_age,
                                         crypto::KeyAlgorithm key = crypto::KeyAlgorithm::kEcdsaP256) {
    storage::TenantSpec spec;
    spec.name = name;
    spec.allowed_identifiers = {"*.example.com"};
    spec.acme_directory_url = ScriptedServer::Url("/dir");
    spec.policy.max_key_age = max_age;
    auto tenant = fx.store().CreateTenant({"test", "test"}, spec);
    EXPECT_TRUE(tenant.ok()) << tenant.status();
    if (!tenant.ok()) return 0;
    CreateAccountSpec account{{"mailto:pki@example.com"}, true};
    account.key_algorithm = key;
    auto view = accounts.CreateAccount(AdminOf(tenant->id), account);
    EXPECT_TRUE(view.ok()) << view.status();
    return tenant->id;
  }

  static std::vector<KeyState> States(testing::Fixture& fx, storage::TenantId tenant) {
    std::vector<KeyState> out;
    auto accounts = fx.store().ListAccounts(fx.AdminScope(tenant));
    if (!accounts.ok() || accounts->empty()) return out;
    auto keys = fx.store().ListKeys(fx.AdminScope(tenant), accounts->back().id);
    if (keys.ok()) {
      for (const auto& k : *keys) out.push_back(k.state);
    }
    return out;
  }

  static AccountView View(AccountManager& accounts, storage::TenantId tenant) {
    auto view = accounts.GetAccount(AdminOf(tenant));
    EXPECT_TRUE(view.ok()) << view.status();
    return view.ok() ? *view : AccountView{};
  }

  // The audit rows of `action` of a tenant, as "detail (actor rpc)".
  static std::vector<std::string> Audited(testing::Fixture& fx, storage::TenantId tenant,
                                          const std::string& action) {
    std::vector<std::string> out;
    auto audit = fx.store().ListAudit(fx.AdminScope(tenant), {"", 1000});
    if (audit.ok()) {
      for (const auto& r : audit->items) {
        if (r.event.action == action) {
          out.push_back(absl::StrCat(r.event.detail, " (", r.actor.rpc, ")"));
        }
      }
    }
    return out;
  }

  static std::vector<std::string> RotationAudits(testing::Fixture& fx, storage::TenantId tenant) {
    std::vector<std::string> out;
    for (const auto& row : Audited(fx, tenant, "Rollover")) {
      if (absl::StrContains(row, kRotateJob)) out.push_back(row);
    }
    return out;
  }
};

// ---------------------------------------------------------------------------------------------
// One replica over the in-memory store

class PolicySchedulerTest : public PolicyTestBase {
 protected:
  void SetUp() override {
    replica_ = std::make_unique<Replica>(fx_, ca_, "a", &metrics_);
    accounts_ = replica_->accounts.get();
    scheduler_ = replica_->scheduler.get();
  }

  testing::Fixture fx_;
  ScriptedServer ca_;
  KeyCa key_ca_{ca_};
  Metrics metrics_;
  std::unique_ptr<Replica> replica_;
  AccountManager* accounts_ = nullptr;
  PolicyScheduler* scheduler_ = nullptr;
};

TEST_F(PolicySchedulerTest, RotatesKeysPastTheirAgeOrOfAnotherAlgorithmToTheKeyTheCaHolds) {
  const auto due = AddTenantWithAccount(fx_, *accounts_, "due", absl::Hours(24));
  const auto fresh = AddTenantWithAccount(fx_, *accounts_, "fresh", absl::Hours(24 * 30));
  const auto rsa = AddTenantWithAccount(fx_, *accounts_, "rsa", absl::Hours(24 * 30),
                                        crypto::KeyAlgorithm::kRsa2048);
  const auto off = AddTenantWithAccount(fx_, *accounts_, "off", absl::Hours(24));
  ASSERT_OK(fx_.store().DisableTenant(fx_.AdminScope(off)));
  fx_.clock().Advance(absl::Hours(48));

  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.tenants, 3);  // the disabled one is not read
  EXPECT_EQ(scan.keys, 3);
  EXPECT_EQ(scan.rotations_scheduled, 2);
  EXPECT_EQ(scan.errors, 0);
  replica_->issuing->Start();
  ASSERT_TRUE(Eventually([&] {
    return States(fx_, due) == std::vector{KeyState::kRetired, KeyState::kActive} &&
           States(fx_, rsa) == std::vector{KeyState::kRetired, KeyState::kActive};
  }));
  EXPECT_THAT(States(fx_, fresh), ElementsAre(KeyState::kActive));
  EXPECT_THAT(States(fx_, off), ElementsAre(KeyState::kActive));
  EXPECT_EQ(key_ca_.key_changes(), 2);
  for (auto tenant : {due, rsa}) {
    AccountView view = View(*accounts_, tenant);
    // The CA holds the key the vault calls active.
    EXPECT_EQ(key_ca_.KeyOf(view.account.account_url), view.active_key.public_key.thumbprint);
    EXPECT_EQ(view.active_key.algorithm, crypto::KeyAlgorithm::kEcdsaP256);
  }
  // Audited as the job ends, just after the keys changed.
  EXPECT_TRUE(Eventually([&] {
    return RotationAudits(fx_, due).size() == 1u && RotationAudits(fx_, rsa).size() == 1u;
  }));
  EXPECT_THAT(RotationAudits(fx_, due),
              ElementsAre(HasSubstr("policy: key age 48h")));
  EXPECT_THAT(RotationAudits(fx_, rsa),
              ElementsAre(HasSubstr("policy: algorithm rsa-2048 -> ecdsa-p256")));
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(), "acmevault_account_key_rotations_total{"
                                                "outcome=\"rotated\",tenant=\"due\"} 1");
  }));
  const std::string text = metrics_.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_account_key_age_seconds{tenant=\"fresh\"} 172800"));
}

TEST_F(PolicySchedulerTest, ARotationScheduledAgainAfterItRanChangesNothing) {
  const auto due = AddTenantWithAccount(fx_, *accounts_, "due", absl::Hours(24));
  fx_.clock().Advance(absl::Hours(25));
  // Two scans before any job runs (two replicas' scans): one open job.
  ASSERT_OK(scheduler_->ScanOnce().status());
  ASSERT_OK(scheduler_->ScanOnce().status());
  replica_->issuing->Start();
  ASSERT_TRUE(Eventually([&] { return States(fx_, due).size() == 2; }));
  // A scan that read the old key before the rotation ended schedules it once more.
  const AccountView view = View(*accounts_, due);
  ASSERT_OK_AND_ASSIGN(storage::Job job,
                       replica_->issuing->engine().Schedule(
                           fx_.AdminScope(due), storage::NewJob{kRotateJob,
                                                                absl::StrCat(view.account.id), "",
                                                                fx_.clock().Now()}));
  ASSERT_TRUE(Eventually([&] {
    return absl::IsNotFound(fx_.store().GetJob(fx_.AdminScope(due), job.id).status());
  }));
  EXPECT_EQ(key_ca_.key_changes(), 1);
  EXPECT_THAT(States(fx_, due), ElementsAre(KeyState::kRetired, KeyState::kActive));
  EXPECT_EQ(RotationAudits(fx_, due).size(), 1u);
  // The next scan finds nothing due.
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.rotations_scheduled, 0);
}

// Hijack detection: each valid account gets one verification job per interval, due at its own
// time in the interval; an account marked hijacked gets none.
TEST_F(PolicySchedulerTest, EachValidAccountIsVerifiedOncePerIntervalAtItsOwnTime) {
  const auto tenant = AddTenantWithAccount(fx_, *accounts_, "verified", absl::Hours(24 * 30));
  const auto other = AddTenantWithAccount(fx_, *accounts_, "hijacked", absl::Hours(24 * 30));
  const AccountView view = View(*accounts_, tenant);
  const AccountView lost = View(*accounts_, other);
  ASSERT_OK(fx_.store().MarkAccountHijacked(fx_.AdminScope(other), lost.account.id, "test").status());
  Engine& engine = replica_->issuing->engine();
  // Scans an hour apart: every verification time comes before the next scan.
  auto scheduler = *PolicyScheduler::Create(fx_.WithStore(
      PolicyScheduler::Options{.engine = &engine,
                               .clock = &fx_.clock(),
                               .scan_interval = absl::Hours(1),
                               .account_verify_interval = absl::Hours(1)}));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler->ScanOnce());
  EXPECT_EQ(scan.verifications_scheduled, 1);
  ASSERT_OK_AND_ASSIGN(scan, scheduler->ScanOnce());  // a second scan keeps the open job
  const absl::Time now = fx_.clock().Now();
  const absl::Time next =
      PolicyScheduler::NextVerification(tenant, view.account.id, absl::Hours(1), now);
  EXPECT_GT(next, now);
  EXPECT_LE(next, now + absl::Hours(1));
  // The open job is due then: an upsert keeps the earlier time, so asking for never shows it.
  ASSERT_OK_AND_ASSIGN(
      storage::Job job,
      engine.Schedule(fx_.AdminScope(tenant),
                      storage::NewJob{kVerifyAccountJob, absl::StrCat(view.account.id), "",
                                      absl::InfiniteFuture()}));
  EXPECT_EQ(job.not_before, next);
  ASSERT_OK_AND_ASSIGN(
      storage::Job none,
      engine.Schedule(fx_.AdminScope(other),
                      storage::NewJob{kVerifyAccountJob, absl::StrCat(lost.account.id), "",
                                      absl::InfiniteFuture()}));
  EXPECT_GT(none.not_before, now + absl::Hours(24 * 365));  // only the time asked for now
  // With scans a minute apart, only the scan in the minute before the time schedules it.
  auto often = *PolicyScheduler::Create(fx_.WithStore(
      PolicyScheduler::Options{.engine = &engine,
                               .clock = &fx_.clock(),
                               .scan_interval = absl::Minutes(1),
                               .scan_jitter = absl::ZeroDuration(),
                               .account_verify_interval = absl::Hours(1)}));
  fx_.clock().Set(next - absl::Minutes(2));
  ASSERT_OK_AND_ASSIGN(scan, often->ScanOnce());
  EXPECT_EQ(scan.verifications_scheduled, 0);
  fx_.clock().Set(next - absl::Seconds(30));
  ASSERT_OK_AND_ASSIGN(scan, often->ScanOnce());
  EXPECT_EQ(scan.verifications_scheduled, 1);
}

TEST(NextVerificationTest, IsTheFirstTimeOfTheAccountsScheduleAfterNow) {
  const absl::Duration interval = absl::Hours(6);
  const absl::Time slot =
      absl::UnixEpoch() + PolicyScheduler::Spread(3, 9, interval) + 1000 * interval;
  EXPECT_EQ(PolicyScheduler::NextVerification(3, 9, interval, slot - absl::Seconds(1)), slot);
  EXPECT_EQ(PolicyScheduler::NextVerification(3, 9, interval, slot), slot + interval);
  EXPECT_EQ(PolicyScheduler::NextVerification(3, 9, interval, slot + interval - absl::Seconds(1)),
            slot + interval);
  // Accounts are spread over the interval.
  EXPECT_NE(PolicyScheduler::Spread(3, 9, interval), PolicyScheduler::Spread(3, 10, interval));
}

TEST_F(PolicySchedulerTest, ARotationTheCaDidNotSettleIsCountedAndCompletedByTheRetry) {
  const auto due = AddTenantWithAccount(fx_, *accounts_, "due", absl::Hours(24));
  fx_.clock().Advance(absl::Hours(25));
  key_ca_.FailKeyChanges(1);  // an unknown outcome: the new key stays pending
  ASSERT_OK(scheduler_->ScanOnce().status());
  replica_->issuing->Start();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(),
                             "acmevault_account_key_rotations_total{outcome=\"failed\","
                             "tenant=\"due\"} 1");
  }));
  EXPECT_THAT(States(fx_, due), ElementsAre(KeyState::kActive, KeyState::kPending));
  ASSERT_TRUE(AdvanceUntil(fx_.clock(), replica_->issuing->engine(),
                           [&] { return States(fx_, due).back() == KeyState::kActive; }));
  EXPECT_THAT(States(fx_, due), ElementsAre(KeyState::kRetired, KeyState::kActive));
  AccountView view = View(*accounts_, due);
  EXPECT_EQ(key_ca_.KeyOf(view.account.account_url), view.active_key.public_key.thumbprint);
  // Counted as the job ends, just after the keys changed.
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(), "acmevault_account_key_rotations_total{"
                                                "outcome=\"rotated\",tenant=\"due\"} 1");
  }));
}

TEST_F(PolicySchedulerTest, GetAccountShowsWhenTheNextRotationIsDue) {
  const auto tenant = AddTenantWithAccount(fx_, *accounts_, "t", absl::Hours(24 * 60));
  AccountView view = View(*accounts_, tenant);
  ASSERT_TRUE(view.active_key.activated_at.has_value());
  EXPECT_EQ(view.next_rotation, *view.active_key.activated_at + absl::Hours(24 * 60));
}

// The authorization sweep (issue 11, item 4): an authorization an abandoned order left pending
// at the CA is deactivated by a job the sweep schedules; the CA's first answer, a 500, is a
// failed attempt the engine retries; a recent one is left alone.
TEST_F(PolicySchedulerTest, TheSweepDeactivatesAnAbandonedPendingAuthorizationRetryingA500) {
  const auto tenant = AddTenantWithAccount(fx_, *accounts_, "t", absl::Hours(24 * 30));
  const storage::Scope scope = fx_.AdminScope(tenant);
  auto accounts = fx_.store().ListAccounts(scope);
  ASSERT_TRUE(accounts.ok() && !accounts->empty());
  const storage::AccountId account = accounts->back().id;
  const absl::Time expires = fx_.clock().Now() + absl::Hours(24 * 7);
  ASSERT_OK(fx_.store()
                .RecordAuthorization(scope, {account, std::nullopt, ScriptedServer::Url("/authz/old"),
                                             "old.example.com",
                                             storage::AuthorizationStatus::kPending, expires})
                .status());
  fx_.clock().Advance(absl::Hours(2));
  ASSERT_OK(fx_.store()
                .RecordAuthorization(scope, {account, std::nullopt, ScriptedServer::Url("/authz/new"),
                                             "new.example.com",
                                             storage::AuthorizationStatus::kPending, expires})
                .status());
  std::atomic<int> asked{0};
  ca_.On("POST", "/authz/old", [&](const Call& c) {
    if (asked++ == 0) return ScriptedServer::Problem(500, "serverInternal", "try again");
    EXPECT_TRUE(absl::StrContains(c.jws->payload, "deactivated"));
    return ScriptedServer::Json(200, ScriptedServer::Authz("deactivated"));
  });

  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_TRUE(scan.swept);
  EXPECT_EQ(scan.deactivations_scheduled, 1);
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_authorizations_outstanding{tenant=\"t\"} 2"));
  // A second scan within the interval does not sweep again.
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult again, scheduler_->ScanOnce());
  EXPECT_FALSE(again.swept);
  replica_->issuing->Start();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(),
                             "acmevault_authorization_deactivations_total{result=\"failed\"} 1");
  }));
  auto outstanding = [&] {
    std::vector<std::string> urls;
    auto listed = fx_.store().ListOutstandingAuthorizations(scope, {});
    if (listed.ok()) {
      for (const auto& a : *listed) urls.push_back(a.record.url);
    }
    return urls;
  };
  ASSERT_TRUE(AdvanceUntil(fx_.clock(), replica_->issuing->engine(),
                           [&] { return outstanding().size() == 1; }));
  EXPECT_THAT(outstanding(), ElementsAre(ScriptedServer::Url("/authz/new")));
  EXPECT_EQ(asked.load(), 2);
  EXPECT_EQ(ca_.CountCalls("POST", "/authz/new"), 0);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(
        metrics_.Render(), "acmevault_authorization_deactivations_total{result=\"deactivated\"} 1");
  }));
}

// Issue 11 item 7: a replica killed between the end of an ephemeral account's order and the
// account's deactivation left it valid at the CA. The sweep finds it (its order ended, no close
// job open) and the job deactivates it at the CA; an account whose order is in flight, or made
// within the grace, is left alone.
TEST_F(PolicySchedulerTest, TheSweepClosesAnEphemeralAccountACrashLeftValid) {
  const auto tenant = AddTenantWithAccount(fx_, *accounts_, "t", absl::Hours(24 * 30));
  const storage::Scope scope = fx_.AdminScope(tenant);
  auto ephemeral = [&](const std::string& url) {
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    EXPECT_TRUE(key.ok());
    auto made = fx_.store().CreateEphemeralAccount(scope, ScriptedServer::Url("/dir"), *key,
                                                   KeyInfo(key->public_key()));
    EXPECT_TRUE(made.ok()) << made.status();
    if (!made.ok()) return storage::Account{};
    EXPECT_TRUE(fx_.store().RecordAccountUrl(scope, made->id, ScriptedServer::Url(url)).ok());
    return *made;
  };
  auto order_of = [&](const storage::Account& account, const std::string& name) {
    storage::NewOrder spec{account.id, {name}, "", "gone", absl::Minutes(2)};
    auto made = fx_.store().CreateOrJoinOrder(scope, spec);
    EXPECT_TRUE(made.ok() && made->lease.has_value()) << made.status();
    return made.ok() && made->lease ? *made->lease : storage::Lease{};
  };
  const storage::Account left = ephemeral("/acct/e1");
  ASSERT_OK(fx_.store().TransitionOrder(scope, order_of(left, "a.example.com"),
                                        storage::OrderState::kInvalid, {"ended"}));
  const storage::Account flying = ephemeral("/acct/e2");
  order_of(flying, "b.example.com");
  std::atomic<int> closed{0};
  for (const std::string path : {"/acct/e1", "/acct/e2"}) {
    ca_.On("POST", path, [&closed](const Call& c) {
      if (absl::StrContains(c.jws->payload, "deactivated")) ++closed;
      return ScriptedServer::Json(200, {{"status", "deactivated"}});
    });
  }
  // Within the grace after they were made: nothing yet.
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult early, scheduler_->ScanOnce());
  EXPECT_TRUE(early.swept);
  EXPECT_EQ(early.ephemeral_closes_scheduled, 0);

  fx_.clock().Advance(absl::Hours(2));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_TRUE(scan.swept);
  EXPECT_EQ(scan.ephemeral_closes_scheduled, 1);
  replica_->issuing->Start();
  auto status = [&](storage::AccountId id) {
    auto a = fx_.store().GetAccount(scope, id);
    return a.ok() ? a->status : storage::AccountStatus::kPending;
  };
  ASSERT_TRUE(AdvanceUntil(fx_.clock(), replica_->issuing->engine(), [&] {
    return status(left.id) == storage::AccountStatus::kDeactivated;
  }));
  EXPECT_EQ(closed.load(), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/acct/e2"), 0);
  EXPECT_EQ(status(flying.id), storage::AccountStatus::kValid);
  // Closed: the next sweep finds nothing more.
  fx_.clock().Advance(absl::Hours(2));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult after, scheduler_->ScanOnce());
  EXPECT_TRUE(after.swept);
  EXPECT_EQ(after.ephemeral_closes_scheduled, 0);
}

TEST(PolicySchedulerSweepTest, SweepDueDecidesByStatusAgeAndTheTenantsPolicy) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  storage::TenantPolicy deactivates;  // the default: deactivation after issuance on
  storage::TenantPolicy keeps;
  keeps.deactivate_authorizations_after_issuance = false;
  storage::Authorization a;
  a.record.status = storage::AuthorizationStatus::kPending;
  a.updated_at = now - absl::Minutes(59);
  const absl::Duration hour = absl::Hours(1);
  EXPECT_FALSE(PolicyScheduler::SweepDue(deactivates, a, hour, hour, now));
  a.updated_at = now - hour;
  EXPECT_TRUE(PolicyScheduler::SweepDue(deactivates, a, hour, hour, now));
  EXPECT_TRUE(PolicyScheduler::SweepDue(keeps, a, hour, hour, now));  // abandoned either way
  a.record.status = storage::AuthorizationStatus::kValid;
  EXPECT_TRUE(PolicyScheduler::SweepDue(deactivates, a, absl::Hours(9), hour, now));
  EXPECT_FALSE(PolicyScheduler::SweepDue(deactivates, a, hour, absl::Hours(2), now));
  EXPECT_FALSE(PolicyScheduler::SweepDue(keeps, a, hour, hour, now));
  a.record.status = storage::AuthorizationStatus::kInvalid;
  EXPECT_FALSE(PolicyScheduler::SweepDue(deactivates, a, hour, hour, now));
}

// ---------------------------------------------------------------------------------------------
// Renewal by policy

// The names crypto/testdata/chain.pem certifies (what the scripted CA issues), canonical.
const std::vector<std::string> kChainNames = {"*.leaf.example.com", "leaf.example.com"};
// Its serial, as stored.
constexpr char kChainSerial[] = "8f00d1e2c3b4a59687";

// The `replaces` of each newOrder the CA received, in order ("" when absent).
std::vector<std::string> ReplacesSent(ScriptedServer& ca) {
  std::vector<std::string> out;
  for (const auto& call : ca.calls()) {
    if (call.path != "/new-order" || !call.jws.has_value()) continue;
    auto payload = nlohmann::json::parse(call.jws->payload, nullptr, false);
    out.push_back(payload.is_object() ? payload.value("replaces", "") : "<not JSON>");
  }
  return out;
}

// Stores a certificate for `names` of `tenant` that expires `left` from now, with the
// service-held key when `service_key`.
storage::Certificate AddCertificate(testing::Fixture& fx, storage::TenantId tenant,
                                    const std::vector<std::string>& names,
                                    const std::string& serial, absl::Duration left,
                                    bool service_key) {
  const crypto::PrivateKey key = testing::TestLeafKey();
  storage::NewCertificate c;
  c.identifiers = names;
  c.serial = serial;
  c.not_before = fx.clock().Now() - absl::Hours(24 * 60);
  c.not_after = fx.clock().Now() + left;
  c.chain_pem = testing::ReadTestFile("crypto/testdata/chain.pem");
  if (service_key) c.private_key = &key;
  auto stored = fx.store().InsertCertificate(fx.AdminScope(tenant), c);
  EXPECT_TRUE(stored.ok()) << stored.status();
  return stored.ok() ? *stored : storage::Certificate{};
}

class PolicyRenewalTest : public PolicySchedulerTest {
 protected:
  void SetUp() override {
    fx_.clock().Set(testing::TestChainValidTime());  // the scripted CA issues the test chain
    testing::ScriptHappyCa(ca_, &order_state_);
    PolicySchedulerTest::SetUp();
    // Renewal window: 30 days (the default policy).
    tenant_ = AddTenantWithAccount(fx_, *accounts_, "renew", absl::Hours(24 * 365));
  }

  std::string order_state_;
  storage::TenantId tenant_ = 0;
};

TEST_F(PolicyRenewalTest, ADueServiceHeldCertificateIsRenewedInTheBackgroundOnce) {
  const storage::Certificate old =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 10), true);
  // Not renewed: a host holds its key; another is not due yet.
  AddCertificate(fx_, tenant_, {"host.example.com"}, "0202", absl::Hours(24 * 10), false);
  AddCertificate(fx_, tenant_, {"later.example.com"}, "0303", absl::Hours(24 * 40), true);

  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.certificates_due, 1);
  EXPECT_EQ(scan.renewals_scheduled, 1);
  EXPECT_EQ(scan.errors, 0);
  // Another replica's scan before any job ran: still one job.
  ASSERT_OK(scheduler_->ScanOnce().status());
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_certificates_due_for_renewal 1"));

  replica_->issuing->Start();
  testing::ClockTicker ticker(fx_.clock());
  ASSERT_TRUE(Eventually([&] {
    auto current = fx_.store().GetCurrentCertificate(fx_.AdminScope(tenant_), kChainNames);
    return current.ok() && current->serial == kChainSerial;
  }));
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(), "acmevault_certificate_renewals_total{"
                                                "result=\"renewed\",tenant=\"renew\"} 1");
  }));
  ASSERT_OK_AND_ASSIGN(storage::Certificate renewed,
                       fx_.store().GetCertificateBySerial(fx_.AdminScope(tenant_), kChainSerial));
  EXPECT_TRUE(renewed.has_private_key);
  EXPECT_EQ(renewed.replaces_serial, "0101");
  // The old one is superseded, not revoked.
  ASSERT_OK_AND_ASSIGN(storage::Certificate after,
                       fx_.store().GetCertificate(fx_.AdminScope(tenant_), old.id));
  EXPECT_TRUE(after.superseded_at.has_value());
  EXPECT_FALSE(after.revoked_at.has_value());
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_certificate_renewals_total{"
                                           "result=\"started\",tenant=\"renew\"} 1"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);
  // Nothing is due any more.
  ASSERT_OK_AND_ASSIGN(scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.certificates_due, 0);
  // A CA without renewalInfo: decided by the tenant's window, nothing asked of ARI, and the
  // order carries no `replaces`.
  EXPECT_FALSE(after.ari_next_check.has_value());
  EXPECT_THAT(ReplacesSent(ca_), ::testing::ElementsAre(""));
}

// Item 9: the renewal's key is of the old one's algorithm only while the tenant's certificate
// key policy allows it; here it no longer does, so the key is of the policy's default.
TEST_F(PolicyRenewalTest, ARenewalMakesAKeyOfAnAlgorithmThePolicyAllows) {
  ASSERT_OK_AND_ASSIGN(storage::Tenant tenant, fx_.store().GetTenant(fx_.AdminScope(tenant_)));
  storage::TenantSpec spec = tenant.spec;
  spec.policy.certificate_key_algorithms = {crypto::KeyAlgorithm::kEcdsaP384};
  ASSERT_OK(fx_.store().UpdateTenant(fx_.AdminScope(tenant_), spec).status());
  AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 10), true);  // P-256
  {
    absl::MutexLock lock(&generated_mu);
    Generated().clear();
  }
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.renewals_scheduled, 1);
  replica_->issuing->Start();
  testing::ClockTicker ticker(fx_.clock());
  ASSERT_TRUE(Eventually([&] {
    auto current = fx_.store().GetCurrentCertificate(fx_.AdminScope(tenant_), kChainNames);
    return current.ok() && current->serial == kChainSerial;
  }));
  absl::MutexLock lock(&generated_mu);
  EXPECT_THAT(Generated(), ::testing::ElementsAre(crypto::KeyAlgorithm::kEcdsaP384));
}

TEST_F(PolicyRenewalTest, AFailedRenewalOrderIsRetriedAfterTheBackoffWithAFreshOrder) {
  const storage::Certificate old =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 10), true);
  // Held by the handler too: the engine's workers may outlive this test body.
  auto orders = std::make_shared<std::atomic<int>>(0);
  ca_.On("POST", "/new-order", [orders, state = &order_state_](const Call&) {
    if (++*orders == 1) {
      return ScriptedServer::Problem(400, "urn:ietf:params:acme:error:rejectedIdentifier",
                                     "not today");
    }
    *state = "pending";
    return ScriptedServer::Json(201, ScriptedServer::Order("pending"),
                                {{"Location", ScriptedServer::Url("/order/1")}});
  });
  ASSERT_OK(scheduler_->ScanOnce().status());
  replica_->issuing->Start();
  // Past the renewer's hour of backoff in a few seconds, leases (a minute) still renewed.
  testing::ClockTicker ticker(fx_.clock(), absl::Seconds(2));
  ASSERT_TRUE(Eventually([&] {
    auto current = fx_.store().GetCurrentCertificate(fx_.AdminScope(tenant_), kChainNames);
    return current.ok() && current->serial == kChainSerial;
  }));
  EXPECT_EQ(orders->load(), 2);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(), "acmevault_certificate_renewals_total{"
                                                "result=\"failed\",tenant=\"renew\"} 1");
  }));
  // The failed order and the one that renewed, each by its own key.
  ASSERT_OK_AND_ASSIGN(storage::Order first, fx_.store().FindOrderByIdempotencyKey(
                                                 fx_.AdminScope(tenant_),
                                                 Renewer::OrderKey(old.id, 0)));
  EXPECT_EQ(first.state, storage::OrderState::kInvalid);
}

// ---------------------------------------------------------------------------------------------
// A CA that offers renewalInfo (ARI, RFC 9773)

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// Issue 11, item 3: at a CA without renewalInfo, a certificate revoked outside the service is
// noticed in its CRL (crypto/testdata/README.md: crl_*; the scripted CA serves the CRL at the
// leaf's distribution point).
class PolicyCrlTest : public PolicyRenewalTest {
 protected:
  void SetUp() override {
    PolicyRenewalTest::SetUp();
    fx_.clock().Set(absl::FromUnixSeconds(1796428800));  // 2026-12-05: the test CRLs are current
  }

  storage::Certificate AddCrlCertificate(bool service_key) {
    const crypto::PrivateKey key = testing::TestLeafKey();
    storage::NewCertificate c;
    c.identifiers = {"crl.example.com"};
    c.serial = "1001";
    c.not_before = absl::FromUnixSeconds(1796083200);  // 2026-12-01
    c.not_after = absl::FromUnixSeconds(1803945600);   // 2027-03-01
    c.chain_pem = testing::ReadTestFile("crypto/testdata/crl_leaf.pem") +
                  testing::ReadTestFile("crypto/testdata/crl_ca.pem");
    if (service_key) c.private_key = &key;
    auto stored = fx_.store().InsertCertificate(fx_.AdminScope(tenant_), c);
    EXPECT_TRUE(stored.ok()) << stored.status();
    return stored.ok() ? *stored : storage::Certificate{};
  }
  // The CA's CRL at the leaf's distribution point: the test file `name`, or HTTP `status`.
  void ServeCrl(const std::string& name, int status = 200) {
    const std::string body = testing::ReadTestFile("crypto/testdata/" + name);
    ca_.On("GET", "/crl/1.crl", [body, status](const Call&) {
      return ScriptedServer::Raw(status, "application/pkix-crl", body);
    });
  }
  storage::Certificate Read(storage::CertificateId id) {
    auto c = fx_.store().GetCertificate(fx_.AdminScope(tenant_), id);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : storage::Certificate{};
  }
};

TEST_F(PolicyCrlTest, ACertificateItsCrlListsIsRenewedAtOnce) {
  const absl::Time now = fx_.clock().Now();
  // A certificate that names no CRL is read no further (counted apart), and never looked at
  // again: its next check is its expiry.
  const storage::Certificate no_crl =
      AddCertificate(fx_, tenant_, {"no-crl.example.com"}, "0a0a", absl::Hours(24 * 40), true);
  // 86 days left: not due by the tenant's 30-day window.
  const storage::Certificate cert = AddCrlCertificate(/*service_key=*/true);
  ServeCrl("crl_empty.der");
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult clean, scheduler_->ScanOnce());
  EXPECT_EQ(clean.crl_checks, 2);
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_crl_checks_total{result=\"no_crl\"} 1"));
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_crl_checks_total{result=\"not_listed\"} 1"));
  EXPECT_EQ(clean.revoked_outside_found, 0);
  EXPECT_EQ(clean.renewals_scheduled, 0);
  EXPECT_EQ(clean.errors, 0);
  EXPECT_EQ(Read(cert.id).crl_next_check, now + absl::Hours(6));
  EXPECT_EQ(Read(no_crl.id).crl_next_check, no_crl.not_after);
  EXPECT_FALSE(Read(cert.id).revoked_outside_at.has_value());
  // Before the next check the CRL is not read again.
  ASSERT_OK(scheduler_->ScanOnce().status());
  EXPECT_EQ(ca_.CountCalls("GET", "/crl/1.crl"), 1);

  // The CA has revoked it (someone holding the account or certificate key asked).
  ServeCrl("crl_listed.der");
  fx_.clock().Advance(absl::Hours(6));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult listed, scheduler_->ScanOnce());
  // The one that names a CRL, at its next check; the other is never checked again.
  EXPECT_EQ(listed.crl_checks, 1);
  EXPECT_EQ(listed.revoked_outside_found, 1);
  EXPECT_EQ(listed.certificates_due, 1);
  EXPECT_EQ(listed.renewals_scheduled, 1);
  EXPECT_EQ(listed.errors, 0);
  const storage::Certificate read = Read(cert.id);
  EXPECT_EQ(read.revoked_outside_at, absl::FromUnixSeconds(1796342871));  // the CRL entry's
  EXPECT_EQ(read.revoked_outside_reason, crypto::RevocationReason::kKeyCompromise);
  EXPECT_FALSE(read.revoked_at.has_value());  // not revoked by the service
  // A host asking gets the same decision: due now.
  const RenewalDecision decision =
      DecideRenewal(fx_.store().GetTenant(fx_.AdminScope(tenant_))->spec.policy, read,
                    StoredAriWindow(read), fx_.clock().Now());
  EXPECT_TRUE(decision.due);
  EXPECT_THAT(decision.reason, HasSubstr("revoked outside"));
  ASSERT_OK(
      fx_.store().FindJob(fx_.AdminScope(tenant_), kRenewJob, absl::StrCat(cert.id)).status());
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_crl_checks_total{result=\"listed\"} 1"));
  auto audit = fx_.store().ListAudit(fx_.AdminScope(tenant_), {"", 1000});
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> details;
  for (const auto& r : audit->items) {
    if (r.event.action == "CertificateRevokedOutside") details.push_back(r.event.detail);
  }
  ASSERT_EQ(details.size(), 1u);
  EXPECT_THAT(details[0], HasSubstr("https://ca.test/crl/1.crl"));
  // Listed again at the next reading: recorded once.
  fx_.clock().Advance(absl::Hours(6));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult again, scheduler_->ScanOnce());
  EXPECT_EQ(again.revoked_outside_found, 0);
}

// A CRL that is not the issuer's, or that cannot be fetched, gives no verdict: nothing is
// marked, the failure is counted, and the CRL is read again at the next check.
TEST_F(PolicyCrlTest, AForgedOrUnreachableCrlMarksNothing) {
  const absl::Time now = fx_.clock().Now();
  const storage::Certificate cert = AddCrlCertificate(/*service_key=*/false);
  ServeCrl("crl_forged.der");  // lists the certificate, but under another key's signature
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult forged, scheduler_->ScanOnce());
  EXPECT_EQ(forged.crl_checks, 1);
  EXPECT_EQ(forged.revoked_outside_found, 0);
  EXPECT_EQ(forged.errors, 1);
  EXPECT_FALSE(Read(cert.id).revoked_outside_at.has_value());
  EXPECT_EQ(Read(cert.id).crl_next_check, now + absl::Hours(6));
  fx_.clock().Advance(absl::Hours(6));
  ServeCrl("crl_listed.der", 404);
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult unreachable, scheduler_->ScanOnce());
  EXPECT_EQ(unreachable.errors, 1);
  EXPECT_FALSE(Read(cert.id).revoked_outside_at.has_value());
  EXPECT_EQ(ca_.CountCalls("GET", "/crl/1.crl"), 2);
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_crl_checks_total{result=\"failed\"} 2"));
}

class PolicyAriTest : public PolicyRenewalTest {
 protected:
  void SetUp() override {
    ca_.directory()["renewalInfo"] = ScriptedServer::Url("/ari");  // before the first fetch
    auto chain = crypto::ParsePemChain(testing::ReadTestFile("crypto/testdata/chain.pem"));
    ASSERT_TRUE(chain.ok() && !chain->empty());
    ASSERT_OK_AND_ASSIGN(std::string cert_id, acme::AriCertId(chain->front().der));
    ari_path_ = "/ari/" + cert_id;
    cert_id_ = cert_id;
    PolicyRenewalTest::SetUp();
  }

  // The CA answers renewalInfo with the window [start, end), and a Retry-After of `retry_after`
  // seconds when positive.
  void AnswerWindow(absl::Time start, absl::Time end, int retry_after = 0) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (retry_after > 0) headers.push_back({"Retry-After", absl::StrCat(retry_after)});
    ca_.On("GET", ari_path_, [=](const Call&) {
      return ScriptedServer::Json(
          200, {{"suggestedWindow", {{"start", Rfc3339(start)}, {"end", Rfc3339(end)}}}},
          headers);
    });
  }

  storage::Certificate Read(storage::CertificateId id) {
    auto c = fx_.store().GetCertificate(fx_.AdminScope(tenant_), id);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : storage::Certificate{};
  }

  std::string ari_path_, cert_id_;
};


TEST_F(PolicyAriTest, AWindowInTheFutureIsNotDueEvenInsideTheTenantsWindow) {
  const absl::Time now = fx_.clock().Now();
  // Ten days left: the tenant's 30-day window alone would renew it now.
  const storage::Certificate cert =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 10), true);
  AnswerWindow(now + absl::Hours(24 * 5), now + absl::Hours(24 * 6));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.certificates_due, 0);
  EXPECT_EQ(scan.renewals_scheduled, 0);
  EXPECT_EQ(scan.errors, 0);
  const storage::Certificate read = Read(cert.id);
  EXPECT_EQ(read.ari_window_start, now + absl::Hours(24 * 5));
  EXPECT_EQ(read.ari_window_end, now + absl::Hours(24 * 6));
  EXPECT_EQ(read.ari_next_check, now + absl::Hours(6));  // no Retry-After: the interval
  // A host asking gets the same answer: not due, so the current certificate is handed out.
  EXPECT_FALSE(DecideRenewal(fx_.store().GetTenant(fx_.AdminScope(tenant_))->spec.policy, read,
                             StoredAriWindow(read), now)
                   .due);
  // The next scan before the next check asks the CA nothing.
  ASSERT_OK(scheduler_->ScanOnce().status());
  EXPECT_EQ(ca_.CountCalls("GET", ari_path_), 1);
}

TEST_F(PolicyAriTest, AWindowMovedToThePastIsRenewedAtOnce) {
  const absl::Time now = fx_.clock().Now();
  // Forty days left: not due by the tenant's window; the CA asks for early renewal.
  const storage::Certificate old =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 40), true);
  AnswerWindow(now - absl::Hours(48), now - absl::Hours(24));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.certificates_due, 1);
  EXPECT_EQ(scan.renewals_scheduled, 1);
  // The renewal job decides with the same window and orders.
  replica_->issuing->Start();
  testing::ClockTicker ticker(fx_.clock());
  // Renewed, and the renewal records the certificate it replaced.
  ASSERT_TRUE(Eventually([&] {
    auto renewed = fx_.store().GetCertificateBySerial(fx_.AdminScope(tenant_), kChainSerial);
    return renewed.ok() && renewed->replaces_serial == "0101";
  }));
  EXPECT_FALSE(Read(old.id).revoked_at.has_value());
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);
  // The order said which certificate it replaces (RFC 9773 §5).
  EXPECT_THAT(ReplacesSent(ca_), ::testing::ElementsAre(cert_id_));
}

// A host holds the key of a certificate whose window the CA moves to now: the window is fetched
// and stored all the same, so the host asking is told to renew at once; the service, which
// cannot make the host's key, schedules nothing.
TEST_F(PolicyAriTest, AHostHeldCertificatesWindowIsFetchedSoTheHostIsTold) {
  const absl::Time now = fx_.clock().Now();
  const storage::Certificate cert =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 40), false);
  AnswerWindow(now - absl::Hours(48), now - absl::Hours(24));
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.renewals_scheduled, 0);
  EXPECT_EQ(ca_.CountCalls("GET", ari_path_), 1);
  const storage::Certificate read = Read(cert.id);
  EXPECT_EQ(read.ari_window_start, now - absl::Hours(48));
  EXPECT_TRUE(DecideRenewal(fx_.store().GetTenant(fx_.AdminScope(tenant_))->spec.policy, read,
                            StoredAriWindow(read), now)
                  .due);
}

// A CA that will not take the order as the replacement (another order replaced the
// certificate already) is asked again with a plain order, and the renewal completes.
TEST_F(PolicyAriTest, AnOrderWhoseReplacesTheCaRefusesIsSentAgainWithoutIt) {
  const absl::Time now = fx_.clock().Now();
  const storage::Certificate old =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 40), true);
  AnswerWindow(now - absl::Hours(48), now - absl::Hours(24));
  ca_.On("POST", "/new-order", [state = &order_state_](const Call& c) {
    auto payload = nlohmann::json::parse(c.jws->payload, nullptr, false);
    if (payload.is_object() && payload.contains("replaces")) {
      return ScriptedServer::Problem(409, "alreadyReplaced",
                                     "certificate already has a replacement order");
    }
    *state = "pending";
    return ScriptedServer::Json(201, ScriptedServer::Order("pending"),
                                {{"Location", ScriptedServer::Url("/order/1")}});
  });
  ASSERT_OK(scheduler_->ScanOnce().status());
  replica_->issuing->Start();
  testing::ClockTicker ticker(fx_.clock());
  ASSERT_TRUE(Eventually([&] {
    auto renewed = fx_.store().GetCertificateBySerial(fx_.AdminScope(tenant_), kChainSerial);
    return renewed.ok() && renewed->replaces_serial == "0101";
  }));
  EXPECT_THAT(ReplacesSent(ca_), ::testing::ElementsAre(cert_id_, ""));
}

TEST_F(PolicyAriTest, RetryAfterIsHonouredAndAWindowMovedToNowIsDue) {
  const absl::Time now = fx_.clock().Now();
  const storage::Certificate cert =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 40), true);
  AnswerWindow(now + absl::Hours(24 * 20), now + absl::Hours(24 * 22), /*retry_after=*/3600);
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.certificates_due, 0);
  EXPECT_EQ(Read(cert.id).ari_next_check, now + absl::Hours(1));
  // The CA moves the window to now; half an hour on, its Retry-After still holds.
  AnswerWindow(now, now + absl::Minutes(1));
  fx_.clock().Advance(absl::Minutes(30));
  ASSERT_OK_AND_ASSIGN(scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.certificates_due, 0);
  EXPECT_EQ(ca_.CountCalls("GET", ari_path_), 1);
  // Past it: asked again, and due at once.
  fx_.clock().Advance(absl::Minutes(31));
  ASSERT_OK_AND_ASSIGN(scan, scheduler_->ScanOnce());
  EXPECT_EQ(ca_.CountCalls("GET", ari_path_), 2);
  EXPECT_EQ(scan.certificates_due, 1);
  EXPECT_EQ(scan.renewals_scheduled, 1);
}

TEST_F(PolicyAriTest, AFailedFetchFallsBackToTheTenantsWindowAndWaitsForTheNextCheck) {
  const absl::Time now = fx_.clock().Now();
  const storage::Certificate cert =
      AddCertificate(fx_, tenant_, kChainNames, "0101", absl::Hours(24 * 10), true);
  ca_.On("GET", ari_path_, [](const Call&) {
    return ScriptedServer::Problem(503, "urn:ietf:params:acme:error:serverInternal", "busy",
                                   {{"Retry-After", "120"}});
  });
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, scheduler_->ScanOnce());
  EXPECT_EQ(scan.errors, 1);
  EXPECT_EQ(scan.certificates_due, 1);  // by the tenant's 30 days
  const storage::Certificate read = Read(cert.id);
  EXPECT_FALSE(read.ari_window_start.has_value());
  EXPECT_EQ(read.ari_next_check, now + absl::Minutes(2));
}

TEST(PolicySchedulerSpreadTest, SpreadIsTheSameOnEveryReplicaAndInsideTheWindow) {
  std::set<absl::Duration> seen;
  for (storage::AccountId account = 1; account <= 50; ++account) {
    absl::Duration d = PolicyScheduler::Spread(3, account, absl::Minutes(5));
    EXPECT_EQ(d, PolicyScheduler::Spread(3, account, absl::Minutes(5)));
    EXPECT_GE(d, absl::ZeroDuration());
    EXPECT_LT(d, absl::Minutes(5));
    seen.insert(d);
  }
  EXPECT_GT(seen.size(), 40u);  // spread out, not bunched
  EXPECT_EQ(PolicyScheduler::Spread(3, 1, absl::ZeroDuration()), absl::ZeroDuration());
}

TEST(PolicySchedulerCreateTest, RefusesMissingCollaboratorsAndBadDurations) {
  EXPECT_THAT(PolicyScheduler::Create({}),
              storage::testing::StatusIs(absl::StatusCode::kInvalidArgument, "tenants"));
}

// ---------------------------------------------------------------------------------------------
// Two replicas, one PostgreSQL

class PolicyReplicasTest : public PolicyTestBase {
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
    fx_a_ = std::make_unique<testing::Fixture>(open, &clock_);
    fx_b_ = std::make_unique<testing::Fixture>(open, &clock_);
    a_ = std::make_unique<Replica>(*fx_a_, ca_, "a", &metrics_);
    b_ = std::make_unique<Replica>(*fx_b_, ca_, "b", &metrics_);
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
  }

  acmevault::testing::FakeClock clock_;
  std::string order_state_;  // the happy CA's, for the renewal test
  std::unique_ptr<storage::testing::TestDatabase> db_;
  std::unique_ptr<testing::Fixture> fx_a_, fx_b_;
  ScriptedServer ca_;
  KeyCa key_ca_{ca_};
  Metrics metrics_;
  std::unique_ptr<Replica> a_, b_;
};

TEST_F(PolicyReplicasTest, EachDueTenantIsRotatedExactlyOnceAndATenantNotDueIsUntouched) {
  constexpr int kDue = 6;
  std::vector<storage::TenantId> due;
  for (int i = 0; i < kDue; ++i) {
    due.push_back(AddTenantWithAccount(*fx_a_, *a_->accounts, absl::StrCat("due-", i),
                                       absl::Hours(24)));
  }
  const auto fresh = AddTenantWithAccount(*fx_a_, *a_->accounts, "fresh", absl::Hours(24 * 30));
  clock_.Advance(absl::Hours(30));
  // Both replicas scan at once, each scheduling every due rotation (before their engines run:
  // a rotation done during a scan would make that scan find one fewer due).
  std::thread scan_b([&] { EXPECT_OK(b_->scheduler->ScanOnce().status()); });
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, a_->scheduler->ScanOnce());
  scan_b.join();
  EXPECT_EQ(scan.rotations_scheduled, kDue);
  a_->issuing->Start();
  b_->issuing->Start();
  ASSERT_TRUE(Eventually([&] {
    for (auto t : due) {
      if (States(*fx_a_, t) != std::vector{KeyState::kRetired, KeyState::kActive}) return false;
    }
    return true;
  }));
  // Scans that come after find nothing due; whatever the late ones scheduled has run.
  ASSERT_OK_AND_ASSIGN(scan, b_->scheduler->ScanOnce());
  EXPECT_EQ(scan.rotations_scheduled, 0);
  ASSERT_TRUE(Eventually([&] {
    auto counts = fx_a_->store().CountDueJobs(clock_.Now() + absl::Hours(1));
    return counts.ok() && counts->empty();
  }));
  EXPECT_EQ(key_ca_.key_changes(), kDue);
  for (auto t : due) {
    EXPECT_THAT(States(*fx_b_, t), ElementsAre(KeyState::kRetired, KeyState::kActive)) << t;
    EXPECT_EQ(RotationAudits(*fx_a_, t).size(), 1u) << t;
    AccountView view = View(*b_->accounts, t);
    EXPECT_EQ(key_ca_.KeyOf(view.account.account_url), view.active_key.public_key.thumbprint);
  }
  EXPECT_THAT(States(*fx_a_, fresh), ElementsAre(KeyState::kActive));
  EXPECT_TRUE(RotationAudits(*fx_a_, fresh).empty());
}

TEST_F(PolicyReplicasTest, TwoReplicasRenewADueCertificateOnce) {
  clock_.Set(testing::TestChainValidTime());  // the scripted CA issues the test chain
  testing::ScriptHappyCa(ca_, &order_state_);
  const auto tenant =
      AddTenantWithAccount(*fx_a_, *a_->accounts, "renew", absl::Hours(24 * 365));
  const storage::Certificate old =
      AddCertificate(*fx_a_, tenant, kChainNames, "0101", absl::Hours(24 * 10), true);
  a_->issuing->Start();
  b_->issuing->Start();
  // Both replicas scan at once, each scheduling the renewal; both engines run jobs.
  std::thread scan_b([&] { EXPECT_OK(b_->scheduler->ScanOnce().status()); });
  ASSERT_OK_AND_ASSIGN(PolicyScheduler::ScanResult scan, a_->scheduler->ScanOnce());
  scan_b.join();
  EXPECT_EQ(scan.renewals_scheduled, 1);
  testing::ClockTicker ticker(clock_);
  ASSERT_TRUE(Eventually([&] {
    auto current = fx_b_->store().GetCurrentCertificate(fx_b_->AdminScope(tenant), kChainNames);
    return current.ok() && current->serial == kChainSerial;
  }));
  // The renewal job ends (it saw its order valid), and nothing else is left to run.
  ASSERT_TRUE(Eventually([&] {
    auto counts = fx_a_->store().CountDueJobs(clock_.Now() + absl::Hours(1));
    return counts.ok() && counts->empty();
  }));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/finalize/1"), 1);
  ASSERT_OK_AND_ASSIGN(storage::Certificate after,
                       fx_a_->store().GetCertificate(fx_a_->AdminScope(tenant), old.id));
  EXPECT_TRUE(after.superseded_at.has_value());
  EXPECT_FALSE(after.revoked_at.has_value());
}

TEST_F(PolicyReplicasTest, AReplicaStoppedMidRotationLeavesWorkTheOtherCompletes) {
  const auto due = AddTenantWithAccount(*fx_a_, *a_->accounts, "due", absl::Hours(24));
  clock_.Advance(absl::Hours(25));
  absl::Notification entered, release;
  key_ca_.StallFirstKeyChange(&entered, &release);
  ASSERT_OK(a_->scheduler->ScanOnce().status());
  a_->issuing->Start();
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kPatience));
  // a stalls inside keyChange, the new key stored as pending; then it is killed.
  a_->issuing->engine().StopWithoutRelease();
  EXPECT_THAT(States(*fx_a_, due), ElementsAre(KeyState::kActive, KeyState::kPending));

  b_->issuing->Start();
  // Past a's job lease and its key lease: b claims the job, settles a's pending key with the
  // CA (which never got a's keyChange) and the account ends on the new key.
  clock_.Advance(absl::Minutes(6));
  b_->issuing->engine().Wake();
  ASSERT_TRUE(Eventually([&] { return States(*fx_b_, due).back() == KeyState::kActive; }));
  EXPECT_THAT(States(*fx_b_, due), ElementsAre(KeyState::kRetired, KeyState::kActive));
  AccountView view = View(*b_->accounts, due);
  EXPECT_EQ(view.active_key.version, 2);
  EXPECT_EQ(key_ca_.KeyOf(view.account.account_url), view.active_key.public_key.thumbprint);
  ASSERT_TRUE(Eventually([&] { return b_->issuing->engine().stats().completed >= 1; }));

  // a comes back: the CA refuses its stale keyChange, and nothing it does changes the keys.
  release.Notify();
  ASSERT_TRUE(Eventually([&] { return a_->issuing->engine().stats().lost == 1; }));
  EXPECT_THAT(States(*fx_a_, due), ElementsAre(KeyState::kRetired, KeyState::kActive));
  EXPECT_EQ(key_ca_.KeyOf(view.account.account_url), view.active_key.public_key.thumbprint);
  EXPECT_EQ(key_ca_.key_changes(), 1);
}

}  // namespace
}  // namespace acmevault::service
