#include "service/accounts.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "acme/problem.h"
#include "acme/testing/scripted_server.h"
#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "crypto/pkcs11.h"
#include "crypto/testing/softhsm.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "service/testing/happy_ca.h"
#include "service/testing/issuing.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::KeyState;
using storage::Role;
using storage::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Call = ScriptedServer::Call;

class AccountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tenant_ = fx_.AddTenant("acme-corp", {"*.example.com"}, ScriptedServer::Url("/dir"));
    auto auth = *Authenticator::Create({&fx_.store()});
    admin_ = *auth->Authenticate({"Bearer " + fx_.AddToken(tenant_, Role::kAdmin), ""});
    host_ = *auth->Authenticate({"Bearer " + fx_.AddToken(tenant_, Role::kHost), ""});
    AcmeClients::Options options;
    options.transport_instance = &ca_;
    options.client.clock = &fx_.clock();
    auto clients = AcmeClients::Create(options);
    ASSERT_TRUE(clients.ok());
    clients_ = *std::move(clients);
    replica_ = testing::IssuingReplica::Create(fx_, {.clients = clients_.get()});
    issuer_ = &replica_->issuer();
    accounts_ =
        *AccountManager::Create(fx_.WithStore(AccountManager::Options{.clients = clients_.get(),
                                                                      .issuer = issuer_,
                                                                      .engine = &replica_->engine(),
                                                                      .notices = &replica_->notices(),
                                                                      .metrics = &metrics_,
                                                                      .clock = &fx_.clock()}));
    replica_->Start();
  }

  AccountView Create() {
    auto view = accounts_->CreateAccount(admin_, {{"mailto:pki@example.com"}, true});
    EXPECT_TRUE(view.ok()) << view.status();
    return view.ok() ? *view : AccountView{};
  }

  // The contact GetAccount shows once Create() made the account, the scripted CA answering
  // newAccount with `answer` (the contact asked for is pki@example.com).
  std::vector<std::string> ContactKeptFor(nlohmann::json answer) {
    ca_.On("POST", "/new-acct", [answer](const Call&) {
      return ScriptedServer::Json(201, answer, {{"Location", ScriptedServer::Url("/acct/1")}});
    });
    Create();
    auto got = accounts_->GetAccount(admin_);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? got->account.contact : std::vector<std::string>{};
  }

  // An account with one outstanding authorization whose deactivation the CA answers 503, so a
  // compromise response stops after its rollover.
  AccountView CreateWithAnAuthorizationTheCaCannotDeactivate() {
    AccountView view = Create();
    EXPECT_TRUE(
        fx_.store()
            .RecordAuthorization(
                fx_.AdminScope(tenant_),
                {view.account.id, std::nullopt, ScriptedServer::Url("/authz/1"), "a.example.com",
                 storage::AuthorizationStatus::kValid, fx_.clock().Now() + absl::Hours(240)})
            .ok());
    ca_.On("POST", "/authz/1",
           [](const Call&) { return ScriptedServer::Raw(503, "text/plain", "down"); });
    return view;
  }

  // The actions of the tenant's audit log, in order.
  std::vector<std::string> AuditActions() {
    auto audit = fx_.store().ListAudit(fx_.AdminScope(tenant_), {"", 1000});
    std::vector<std::string> out;
    if (audit.ok()) {
      for (const auto& r : audit->items) out.push_back(r.event.action);
    }
    return out;
  }

  // Another AccountManager like accounts_, over `accounts` instead of the fixture's store.
  std::unique_ptr<AccountManager> ManagerOver(storage::AccountStore& accounts) {
    // An engine of its own, never started: only its revocation handler would run there.
    spare_engines_.push_back(*Engine::Create(fx_.WithStore(Engine::Options{.owner = "spare"})));
    auto options = fx_.WithStore(AccountManager::Options{.clients = clients_.get(),
                                                         .issuer = issuer_,
                                                         .engine = spare_engines_.back().get(),
                                                         .notices = &replica_->notices(),
                                                         .clock = &fx_.clock()});
    options.accounts = &accounts;
    over_keys_.push_back(*AccountKeys::Create({.accounts = &accounts, .clock = &fx_.clock()}));
    options.keys = over_keys_.back().get();
    return *AccountManager::Create(options);
  }
  std::vector<std::unique_ptr<AccountKeys>> over_keys_;

  // Key states by version, e.g. {retired, active}.
  std::vector<KeyState> States(storage::AccountId id) {
    auto keys = fx_.store().ListKeys(fx_.AdminScope(tenant_), id);
    std::vector<KeyState> out;
    if (keys.ok()) {
      for (const auto& k : *keys) out.push_back(k.state);
    }
    return out;
  }

  testing::Fixture fx_;
  ScriptedServer ca_;
  Metrics metrics_;
  storage::TenantId tenant_ = 0;
  Caller admin_, host_;
  std::unique_ptr<AcmeClients> clients_;
  // Fake time runs while orders run on the engine (RetryAt times come due).
  testing::ClockTicker ticker_{fx_.clock()};
  std::unique_ptr<testing::IssuingReplica> replica_;
  std::vector<std::unique_ptr<Engine>> spare_engines_;
  Issuer* issuer_ = nullptr;
  std::unique_ptr<AccountManager> accounts_;
};

TEST_F(AccountsTest, CreateAccountRegistersAndActivatesTheKey) {
  AccountView view = Create();
  EXPECT_EQ(view.account.account_url, ScriptedServer::Url("/acct/1"));
  EXPECT_EQ(view.account.status, storage::AccountStatus::kValid);
  EXPECT_EQ(view.active_key.version, 1);
  EXPECT_EQ(view.active_key.algorithm, crypto::KeyAlgorithm::kEcdsaP256);
  auto calls = ca_.calls();
  auto jws = calls.back().jws;
  ASSERT_TRUE(jws.has_value());
  auto jwk = crypto::PublicKeyFromJwk(jws->header["jwk"]);
  ASSERT_TRUE(jwk.ok());
  EXPECT_EQ(crypto::Thumbprint(*jwk), view.active_key.public_key.thumbprint);
  EXPECT_EQ(nlohmann::json::parse(jws->payload)["contact"][0], "mailto:pki@example.com");

  EXPECT_THAT(accounts_->CreateAccount(admin_, {{}, true}),
              StatusIs(absl::StatusCode::kAlreadyExists, "/acct/1"));
  fx_.clock().Advance(absl::Hours(3));
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->active_key.version, 1);
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_account_key_age_seconds{tenant=\"acme-corp\"} 10800"));
}

// GetAccount shows the contact the CA holds, as its newAccount answer named it; what was asked
// for when the answer names none. Before, the store kept no contact: GetAccount showed none.
TEST_F(AccountsTest, TheAccountKeepsTheContactTheCaAnswered) {
  EXPECT_THAT(ContactKeptFor({{"status", "valid"}, {"contact", {"mailto:ca@example.com"}}}),
              ElementsAre("mailto:ca@example.com"));
}

TEST_F(AccountsTest, TheAccountKeepsTheContactAskedForWhenTheCaNamesNone) {
  EXPECT_THAT(ContactKeptFor({{"status", "valid"}}), ElementsAre("mailto:pki@example.com"));
}

// Issue 11: the CA's rateLimited answer to newAccount holds the registration on every replica
// until its Retry-After: a second attempt (here through another replica's manager) answers
// RESOURCE_EXHAUSTED with the time, without a request; once the time has passed the pending
// account is registered.
TEST_F(AccountsTest, ARateLimitedNewAccountIsNotSentAgainBeforeItsRetryAfter) {
  std::atomic<int> limited{1};
  ca_.On("POST", "/new-acct", [&](const Call&) {
    if (limited-- > 0) {
      return ScriptedServer::Problem(429, "rateLimited", "too many new accounts",
                                     {{"Retry-After", "86400"}});
    }
    return ScriptedServer::Json(201, {{"status", "valid"}, {"contact", nlohmann::json::array()}},
                                {{"Location", ScriptedServer::Url("/acct/1")}});
  });
  const absl::Time start = fx_.clock().Now();
  EXPECT_THAT(accounts_->CreateAccount(admin_, {{"mailto:pki@example.com"}, true}),
              StatusIs(absl::StatusCode::kResourceExhausted, "rateLimited"));
  std::unique_ptr<AccountManager> other = ManagerOver(fx_.store());
  auto held = other->CreateAccount(admin_, {{"mailto:pki@example.com"}, true});
  EXPECT_THAT(held, StatusIs(absl::StatusCode::kResourceExhausted,
                             "no request sent to the CA until"));
  ASSERT_FALSE(held.ok());
  std::optional<acme::Problem> problem = acme::GetProblem(held.status());
  ASSERT_TRUE(problem.has_value());
  ASSERT_TRUE(problem->retry_after.has_value());
  EXPECT_GE(*problem->retry_after, start + absl::Hours(24));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 1);

  fx_.clock().Set(*problem->retry_after);
  auto view = other->CreateAccount(admin_, {{"mailto:pki@example.com"}, true});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.status, storage::AccountStatus::kValid);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 2);
}

// Issue 11: the fleet's new-account budget at the CA (Let's Encrypt: 10 per IP per 3 hours)
// holds CreateAccount, nothing sent, with the next token's time; a CA that made no account (a
// problem, or the account it had for the key) gets its token back.
TEST_F(AccountsTest, CreateAccountWaitsForTheFleetsNewAccountBudget) {
  spare_engines_.push_back(*Engine::Create(fx_.WithStore(Engine::Options{.owner = "spare"})));
  auto options = fx_.WithStore(AccountManager::Options{.clients = clients_.get(),
                                                       .issuer = issuer_,
                                                       .engine = spare_engines_.back().get(),
                                                       .notices = &replica_->notices(),
                                                       .clock = &fx_.clock()});
  options.ca_limits.by_directory[ScriptedServer::Url("/dir")].new_accounts = {1, absl::Hours(3)};
  std::unique_ptr<AccountManager> manager = *AccountManager::Create(options);
  // Another tenant opened an account at this CA a minute ago. (The fixture's engine may move the
  // fake clock meanwhile: times are checked against this one.) The clock is off a whole second,
  // as it is when the engine has moved it.
  fx_.clock().Advance(absl::Milliseconds(50));
  const storage::CaBudget accounts{"new_account", 1, absl::Hours(3)};
  const absl::Time taken_at = fx_.clock().Now() - absl::Minutes(1);
  ASSERT_TRUE(
      fx_.store().TakeCaDirectoryBudgetToken(ScriptedServer::Url("/dir"), accounts, taken_at).ok());
  auto held = manager->CreateAccount(admin_, {{"mailto:pki@example.com"}, true});
  EXPECT_THAT(held, StatusIs(absl::StatusCode::kResourceExhausted, "1 new accounts per 3h"));
  ASSERT_FALSE(held.ok());
  std::optional<acme::Problem> problem = acme::GetProblem(held.status());
  ASSERT_TRUE(problem.has_value() && problem->retry_after.has_value());
  // Never early: the time carried is the token's, rounded up to the second.
  EXPECT_EQ(*problem->retry_after,
            absl::Ceil(taken_at + absl::Hours(3) - absl::UnixEpoch(), absl::Seconds(1)) +
                absl::UnixEpoch());
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 0);

  // At that time: the CA refuses (a problem document, so it made nothing), and the token
  // taken for that request is there for the next one.
  fx_.clock().Set(*problem->retry_after);
  std::atomic<int> refusals{1};
  ca_.On("POST", "/new-acct", [&](const Call&) {
    if (refusals-- > 0) return ScriptedServer::Problem(500, "serverInternal", "try again");
    return ScriptedServer::Json(201, {{"status", "valid"}, {"contact", nlohmann::json::array()}},
                                {{"Location", ScriptedServer::Url("/acct/1")}});
  });
  EXPECT_FALSE(manager->CreateAccount(admin_, {{"mailto:pki@example.com"}, true}).ok());
  auto view = manager->CreateAccount(admin_, {{"mailto:pki@example.com"}, true});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.status, storage::AccountStatus::kValid);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 2);
  // The account made (201) spent the token.
  auto spent = fx_.store().TakeCaDirectoryBudgetToken(ScriptedServer::Url("/dir"), accounts,
                                                      fx_.clock().Now());
  ASSERT_TRUE(spent.ok());
  EXPECT_FALSE(spent->taken);
}

TEST_F(AccountsTest, CreateAccountNeedsAdminAgreedTermsAndGoodEab) {
  EXPECT_THAT(accounts_->CreateAccount(host_, {{}, true}),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(accounts_->CreateAccount(admin_, {{}, false}),
              StatusIs(absl::StatusCode::kInvalidArgument, "terms_of_service_agreed"));
  EXPECT_THAT(accounts_->CreateAccount(admin_, {{}, true, "kid", "not base64url!"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "eab_hmac_key"));
  EXPECT_TRUE(ca_.calls().empty());
}

TEST_F(AccountsTest, RolloverSendsKeyChangeAndPromotesOnlyWhatTheCaKnows) {
  AccountView v1 = Create();
  auto r = accounts_->Rollover(admin_, crypto::KeyAlgorithm::kEcdsaP384, "scheduled");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->previous_version, 1);
  EXPECT_EQ(r->account.active_key.version, 2);
  EXPECT_EQ(r->account.active_key.algorithm, crypto::KeyAlgorithm::kEcdsaP384);
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kRetired, KeyState::kActive));
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 1);
}

TEST_F(AccountsTest, RefusedKeyChangeDiscardsThePendingKey) {
  AccountView v1 = Create();
  ca_.On("POST", "/key-change",
         [](const Call&) { return ScriptedServer::Problem(400, "malformed", "nope"); });
  // The CA does not know the new key.
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Problem(400, "accountDoesNotExist", "unknown key");
  });
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "malformed"));
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kRetired));
}

TEST_F(AccountsTest, KeyChangeWhoseAnswerWasLostIsPromotedWhenTheCaKnowsTheKey) {
  AccountView v1 = Create();
  // The CA applied it but the answer never arrived.
  ca_.On("POST", "/key-change",
         [](const Call&) { return ScriptedServer::Raw(502, "text/plain", "bad gateway"); });
  auto r = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->account.active_key.version, 2);
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kRetired, KeyState::kActive));
}

// A CA that keys the account by one key at a time, as RFC 8555 §7.3.5 does: newAccount with
// onlyReturnExisting finds the account only by its current key, and keyChange is refused (400
// malformed, as Pebble answers) unless its inner `oldKey` is the current key. Otherwise
// keyChange is applied at once (kApply); or applied but answered with an error status, the
// answer lost, and the new key current only once the test calls Commit() (kApplyLoseAnswer);
// or not applied and answered with an error status (kFail) or refused (kRefuse: 400
// badPublicKey).
class KeyedCa {
 public:
  enum class Mode { kApply, kApplyLoseAnswer, kFail, kRefuse };

  explicit KeyedCa(ScriptedServer& ca) {
    ca.On("POST", "/new-acct", [this](const Call& c) {
      auto jwk = crypto::PublicKeyFromJwk(c.jws->header["jwk"]);
      std::string thumb = jwk.ok() ? crypto::Thumbprint(*jwk) : "";
      auto payload = nlohmann::json::parse(c.jws->payload, nullptr, false);
      absl::MutexLock lock(&mu_);
      if (payload.is_object() && payload.value("onlyReturnExisting", false)) {
        if (thumb != current_) {
          return ScriptedServer::Problem(400, "accountDoesNotExist", "unknown key");
        }
        return ScriptedServer::Json(200, {{"status", "valid"}},
                                    {{"Location", ScriptedServer::Url("/acct/1")}});
      }
      current_ = thumb;
      return ScriptedServer::Json(201, {{"status", "valid"}},
                                  {{"Location", ScriptedServer::Url("/acct/1")}});
    });
    ca.On("POST", "/key-change", [this](const Call& c) {
      auto inner = crypto::ParseJws(c.jws->payload);
      if (!inner.ok()) return ScriptedServer::Problem(400, "malformed", "inner JWS");
      auto new_key = crypto::PublicKeyFromJwk(inner->header["jwk"]);
      auto old_key = crypto::PublicKeyFromJwk(
          nlohmann::json::parse(inner->payload, nullptr, false).value("oldKey", nlohmann::json()));
      if (!new_key.ok() || !old_key.ok()) return ScriptedServer::Problem(400, "malformed", "keys");
      absl::MutexLock lock(&mu_);
      if (crypto::Thumbprint(*old_key) != current_) {
        return ScriptedServer::Problem(400, "malformed", "oldKey is not the account key");
      }
      switch (mode_) {
        case Mode::kApply:
          break;
        case Mode::kApplyLoseAnswer:
          ++applied_;
          staged_ = crypto::Thumbprint(*new_key);
          return ScriptedServer::Raw(status_, "text/plain", "the answer was lost");
        case Mode::kFail:
          return ScriptedServer::Raw(status_, "text/plain", "not now");
        case Mode::kRefuse:
          return ScriptedServer::Problem(400, "badPublicKey", "not this key");
      }
      ++applied_;
      current_ = crypto::Thumbprint(*new_key);
      return ScriptedServer::Json(200, {{"status", "valid"}});
    });
  }
  // How keyChange is answered from now on; `status` for kApplyLoseAnswer and kFail.
  void SetMode(Mode mode, int status = 500) {
    absl::MutexLock lock(&mu_);
    mode_ = mode;
    status_ = status;
  }
  // The CA commits the keyChange it staged in kApplyLoseAnswer.
  void Commit() {
    absl::MutexLock lock(&mu_);
    current_ = staged_;
  }
  // The thumbprint of the key the CA holds.
  std::string current() {
    absl::MutexLock lock(&mu_);
    return current_;
  }
  // keyChange requests applied (or staged).
  int applied() {
    absl::MutexLock lock(&mu_);
    return applied_;
  }

 private:
  absl::Mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kApply;
  int status_ ABSL_GUARDED_BY(mu_) = 500;
  std::string current_ ABSL_GUARDED_BY(mu_);
  std::string staged_ ABSL_GUARDED_BY(mu_);
  int applied_ ABSL_GUARDED_BY(mu_) = 0;
};

// A tenant whose policy says PKCS11: every account key is made in the token, the store keeps
// object ids only, and create, rollover and the compromise response all sign with token keys
// (the CA sees JWS that verify with the JWK it was given).
TEST_F(AccountsTest, TokenTenantKeepsEveryAccountKeyInTheToken) {
  crypto::Pkcs11Token* token = crypto::testing::SharedTestToken();
  ASSERT_NE(token, nullptr);
  const storage::Scope scope = fx_.AdminScope(tenant_);
  auto tenant = fx_.store().GetTenant(scope);
  ASSERT_TRUE(tenant.ok());
  storage::TenantSpec spec = tenant->spec;
  spec.policy.key_storage = storage::KeyStorage::kPkcs11;
  ASSERT_TRUE(fx_.store().UpdateTenant(scope, spec).ok());
  auto keys = *AccountKeys::Create(
      {.accounts = &fx_.store(), .token = token, .clock = &fx_.clock()});
  // An engine of its own, never started: the replica's has its handlers and runs.
  spare_engines_.push_back(*Engine::Create(fx_.WithStore(Engine::Options{.owner = "spare"})));
  auto options_with_token =
      fx_.WithStore(AccountManager::Options{.clients = clients_.get(),
                                            .issuer = issuer_,
                                            .engine = spare_engines_.back().get(),
                                            .notices = &replica_->notices(),
                                            .clock = &fx_.clock()});
  options_with_token.keys = keys.get();
  auto manager = *AccountManager::Create(options_with_token);

  KeyedCa keyed(ca_);
  auto created = manager->CreateAccount(admin_, {{}, true});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_THAT(created->active_key.token_object, ::testing::StartsWith("acmevault-"));
  EXPECT_EQ(created->active_key.kek_id, "");
  EXPECT_EQ(created->active_key.public_key.thumbprint, keyed.current());

  auto rolled = manager->Rollover(admin_, std::nullopt, "scheduled");
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  EXPECT_EQ(rolled->account.active_key.public_key.thumbprint, keyed.current());
  EXPECT_NE(rolled->account.active_key.token_object, created->active_key.token_object);

  auto report = manager->RespondToCompromise(admin_, /*deactivate_account=*/false, std::nullopt);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->account.active_key.public_key.thumbprint, keyed.current());
  auto stored = fx_.store().ListKeys(scope, created->account.id);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 3u);
  for (const auto& k : *stored) EXPECT_FALSE(k.token_object.empty()) << k.version;
  EXPECT_EQ((*stored)[0].state, KeyState::kCompromised);
  EXPECT_EQ((*stored)[1].state, KeyState::kCompromised);
  // Every JWS that names its key (newAccount, and keyChange's inner JWS by the new key)
  // verifies with it: the token's signatures are what the CA checks.
  int verified = 0;
  for (const Call& c : ca_.calls()) {
    if (!c.jws) continue;
    std::vector<crypto::ParsedJws> signed_with_jwk = {*c.jws};
    if (c.path == "/key-change") {
      auto inner = crypto::ParseJws(c.jws->payload);
      ASSERT_TRUE(inner.ok());
      signed_with_jwk.push_back(*inner);
    }
    for (const auto& jws : signed_with_jwk) {
      if (!jws.header.contains("jwk")) continue;
      auto key = crypto::PublicKeyFromJwk(jws.header["jwk"]);
      ASSERT_TRUE(key.ok());
      EXPECT_TRUE(crypto::VerifyJws(jws, *key).ok()) << c.path;
      ++verified;
    }
  }
  EXPECT_GE(verified, 3);
}

TEST_F(AccountsTest, APendingKeyLeftByACrashIsSettledWithTheCaBeforeTheNextRollover) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  auto scope = fx_.AdminScope(tenant_);
  auto orphan = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(orphan.ok());
  {
    // A rollover that crashed after storing its key, before keyChange; its lease expired.
    auto lease = fx_.store().AcquireKeyLease(scope, v1.account.id, absl::Minutes(1));
    ASSERT_TRUE(lease.ok()) << lease.status();
    ASSERT_TRUE(
        fx_.store().AddPendingKey(scope, *lease, *orphan, KeyInfo(orphan->public_key())).ok());
    fx_.clock().Advance(absl::Minutes(2));
  }
  // The CA does not know it, so that keyChange is sent again (and applied); then the rollover
  // proceeds with a fresh key.
  auto r = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->account.active_key.version, 3);
  EXPECT_EQ(keyed.applied(), 2);
  EXPECT_EQ(r->account.active_key.public_key.thumbprint, keyed.current());
  EXPECT_THAT(States(v1.account.id),
              ::testing::ElementsAre(KeyState::kRetired, KeyState::kRetired, KeyState::kActive));
}

TEST_F(AccountsTest, RolloverTooCloseToItsDeadlineLeavesNothingBehind) {
  AccountView v1 = Create();
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, "", fx_.clock().Now() + absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "nothing was changed"));
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 0);
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive));
  // Nor does it hold the account up.
  auto r = accounts_->Rollover(admin_, std::nullopt, "", fx_.clock().Now() + absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->account.active_key.version, 2);
}

// Defect 2: the CA applies keyChange, its answer is lost (500 or 504) and it commits only after
// the service's probe found nothing. The key stays pending, and the next use of the account
// key asks the CA again and promotes it.
class LostKeyChangeAnswerTest : public AccountsTest, public ::testing::WithParamInterface<int> {};

TEST_P(LostKeyChangeAnswerTest, KeyStaysPendingAndRecoveryPromotesIt) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  keyed.SetMode(KeyedCa::Mode::kApplyLoseAnswer, GetParam());
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  EXPECT_EQ(keyed.applied(), 1);
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));
  keyed.Commit();
  auto counts = accounts_->DeactivateAuthorizations(admin_, {});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kRetired, KeyState::kActive));
  auto view = accounts_->GetAccount(admin_);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->active_key.version, 2);
  EXPECT_EQ(view->active_key.public_key.thumbprint, keyed.current());
  EXPECT_EQ(keyed.applied(), 1);
}

INSTANTIATE_TEST_SUITE_P(ServerErrorOrTimeout, LostKeyChangeAnswerTest,
                         ::testing::Values(500, 504));

TEST_F(AccountsTest, AKeyChangeTheCaNeverAppliedIsSentAgainBeforeTheKeyIsNextUsed) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  const std::string original = keyed.current();
  keyed.SetMode(KeyedCa::Mode::kFail, 503);
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  EXPECT_EQ(keyed.current(), original);
  // While the CA still cannot tell, the key stays pending and the account key is not used.
  EXPECT_THAT(accounts_->DeactivateAuthorizations(admin_, {}),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));
  EXPECT_THAT(AuditActions(), ::testing::Contains("RolloverPending"));
  // Once it can, the same keyChange is applied and the key promoted.
  keyed.SetMode(KeyedCa::Mode::kApply);
  auto counts = accounts_->DeactivateAuthorizations(admin_, {});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kRetired, KeyState::kActive));
  auto view = accounts_->GetAccount(admin_);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->active_key.public_key.thumbprint, keyed.current());
  EXPECT_NE(keyed.current(), original);
}

TEST_F(AccountsTest, APendingKeyIsDiscardedOnlyWhenTheCaRefusesItsKeyChange) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  const std::string original = keyed.current();
  keyed.SetMode(KeyedCa::Mode::kFail, 500);
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable));
  keyed.SetMode(KeyedCa::Mode::kRefuse);
  auto counts = accounts_->DeactivateAuthorizations(admin_, {});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kRetired));
  EXPECT_EQ(keyed.current(), original);
}

TEST_F(AccountsTest, PendingKeysAreSettledAtStartUp) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  keyed.SetMode(KeyedCa::Mode::kApplyLoseAnswer, 502);
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable));
  keyed.Commit();
  ASSERT_OK(accounts_->ResolvePendingKeys({"acmevaultd", "start-up"}));
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kRetired, KeyState::kActive));
  ASSERT_OK(accounts_->ResolvePendingKeys({"acmevaultd", "start-up"}));  // Nothing left.
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 1);
}

TEST_F(AccountsTest, DeactivateNeedsTheAccountUrlAsConfirmation) {
  AccountView v1 = Create();
  EXPECT_THAT(accounts_->Deactivate(admin_, "https://ca.test/acct/2"),
              StatusIs(absl::StatusCode::kInvalidArgument, "confirm_account_url"));
  ca_.On("POST", "/acct/1", [](const Call& c) {
    EXPECT_EQ(nlohmann::json::parse(c.jws->payload)["status"], "deactivated");
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  auto view = accounts_->Deactivate(admin_, v1.account.account_url);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.status, storage::AccountStatus::kDeactivated);
}

TEST_F(AccountsTest, DeactivatesOutstandingAuthorizationsAndCountsOutcomes) {
  AccountView v1 = Create();
  auto scope = fx_.AdminScope(tenant_);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(fx_.store()
                    .RecordAuthorization(scope, {v1.account.id, std::nullopt,
                                                 ScriptedServer::Url("/authz/" + std::to_string(i)),
                                                 "a" + std::to_string(i) + ".example.com",
                                                 storage::AuthorizationStatus::kValid,
                                                 fx_.clock().Now() + absl::Hours(24)})
                    .ok());
  }
  ca_.On("POST", "/authz/1", [](const Call&) {
    auto a = ScriptedServer::Authz("deactivated");
    return ScriptedServer::Json(200, a);
  });
  ca_.On("POST", "/authz/2",
         [](const Call&) { return ScriptedServer::Problem(400, "malformed", "expired"); });
  ca_.On("POST", "/authz/3",
         [](const Call&) { return ScriptedServer::Raw(503, "text/plain", "down"); });
  auto counts = accounts_->DeactivateAuthorizations(admin_, {});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->deactivated, 1);
  EXPECT_EQ(counts->skipped, 1);
  EXPECT_EQ(counts->failed, 1);
  auto left = fx_.store().ListOutstandingAuthorizations(scope, {});
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), 2u);
}

// The compromise drill spent 23 ms per authorization deactivating them one at a time (about
// 23 s for 1,000): they are sent at once, up to deactivation_concurrency (16 by default). Each
// CA answer here waits until all six requests have arrived (or 5 s have passed, so one at a time
// still ends), and records how many were in flight together.
TEST_F(AccountsTest, DeactivatesAuthorizationsConcurrently) {
  AccountView v1 = Create();
  auto scope = fx_.AdminScope(tenant_);
  constexpr int kAuthorizations = 6;
  absl::Mutex mu;
  int in_flight = 0, most = 0;
  for (int i = 1; i <= kAuthorizations; ++i) {
    const std::string path = "/authz/" + std::to_string(i);
    ASSERT_TRUE(fx_.store()
                    .RecordAuthorization(scope, {v1.account.id, std::nullopt,
                                                 ScriptedServer::Url(path),
                                                 "a" + std::to_string(i) + ".example.com",
                                                 storage::AuthorizationStatus::kValid,
                                                 fx_.clock().Now() + absl::Hours(24)})
                    .ok());
    ca_.On("POST", path, [&](const Call&) {
      absl::MutexLock lock(&mu);
      most = std::max(most, ++in_flight);
      auto all_here = [&] { return most == kAuthorizations; };
      mu.AwaitWithTimeout(absl::Condition(&all_here), absl::Seconds(5));
      --in_flight;
      return ScriptedServer::Json(200, ScriptedServer::Authz("deactivated"));
    });
  }
  auto counts = accounts_->DeactivateAuthorizations(admin_, {});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->deactivated, kAuthorizations);
  EXPECT_EQ(most, kAuthorizations) << "authorizations deactivated at once";
  auto left = fx_.store().ListOutstandingAuthorizations(scope, {});
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
}

// The run id a failed RespondToCompromise names ("pass run_id N to resume"), or 0.
storage::CompromiseRunId RunIdIn(const absl::Status& status) {
  const std::string m(status.message());
  const size_t at = m.find("pass run_id ");
  return at == std::string::npos ? 0 : std::stoll(m.substr(at + 12));
}

TEST_F(AccountsTest, CompromiseResponseResumesAfterAFailedStep) {
  AccountView v1 = Create();
  auto scope = fx_.AdminScope(tenant_);
  ASSERT_TRUE(fx_.store()
                  .RecordAuthorization(scope, {v1.account.id, std::nullopt,
                                               ScriptedServer::Url("/authz/1"), "a.example.com",
                                               storage::AuthorizationStatus::kValid,
                                               fx_.clock().Now() + absl::Hours(24)})
                  .ok());
  ca_.On("POST", "/authz/1",
         [](const Call&) { return ScriptedServer::Raw(503, "text/plain", "down"); });
  auto first = accounts_->RespondToCompromise(admin_, /*deactivate_account=*/true, std::nullopt);
  EXPECT_THAT(first, StatusIs(absl::StatusCode::kUnavailable, "call again to resume"));
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 1);

  ca_.On("POST", "/authz/1", [](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Authz("deactivated"));
  });
  ca_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  auto second = accounts_->RespondToCompromise(admin_, true, std::nullopt, RunIdIn(first.status()));
  ASSERT_TRUE(second.ok()) << second.status();
  // The rollover is not repeated; every step is done, in order.
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 1);
  EXPECT_EQ(second->run_id, RunIdIn(first.status()));
  ASSERT_EQ(second->steps.size(), 5u);
  EXPECT_EQ(second->steps[0].name, "rollover");
  EXPECT_EQ(second->steps[0].detail, "done by an earlier call of this run");
  EXPECT_EQ(second->steps[1].detail, "1 deactivated, 0 skipped");
  EXPECT_EQ(second->steps[4].name, "deactivate_account");
  EXPECT_TRUE(second->steps[4].done);
  // The leaked key is compromised and never used again.
  EXPECT_THAT(States(v1.account.id),
              ::testing::ElementsAre(KeyState::kCompromised, KeyState::kActive));
  EXPECT_EQ(second->account.account.status, storage::AccountStatus::kDeactivated);
}

// Defect 3: an abandoned response is never resumed by a new one. A call without the run's id
// starts over with a rollover, as does one naming a run that expired.
TEST_F(AccountsTest, ANewCompromiseResponseDoesNotResumeAnAbandonedOne) {
  AccountView v1 = CreateWithAnAuthorizationTheCaCannotDeactivate();
  EXPECT_THAT(accounts_->RespondToCompromise(admin_, false, std::nullopt),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 1);
  // Days later the key leaks again: the new response rolls the key over again.
  fx_.clock().Advance(absl::Hours(72));
  ca_.On("POST", "/authz/1", [](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Authz("deactivated"));
  });
  auto fresh = accounts_->RespondToCompromise(admin_, false, std::nullopt);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 2);
  ASSERT_FALSE(fresh->steps.empty());
  EXPECT_EQ(fresh->steps[0].name, "rollover");
  EXPECT_TRUE(fresh->steps[0].done);
  EXPECT_NE(fresh->steps[0].detail, "done by an earlier call of this run");
  EXPECT_THAT(
      States(v1.account.id),
      ::testing::ElementsAre(KeyState::kCompromised, KeyState::kCompromised, KeyState::kActive));
}

TEST_F(AccountsTest, AnExpiredOrFinishedCompromiseRunIsNotResumedEvenByItsId) {
  CreateWithAnAuthorizationTheCaCannotDeactivate();
  auto first = accounts_->RespondToCompromise(admin_, false, std::nullopt);
  const storage::CompromiseRunId run = RunIdIn(first.status());
  ASSERT_NE(run, 0) << first.status();
  fx_.clock().Advance(absl::Hours(25));
  auto later = accounts_->RespondToCompromise(admin_, false, std::nullopt, run);
  EXPECT_THAT(later, StatusIs(absl::StatusCode::kUnavailable));
  const storage::CompromiseRunId second = RunIdIn(later.status());
  EXPECT_NE(second, run);
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 2);
  // Finished: named again, it starts a third run.
  ca_.On("POST", "/authz/1", [](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Authz("deactivated"));
  });
  auto done = accounts_->RespondToCompromise(admin_, false, std::nullopt, second);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->run_id, second);
  auto again = accounts_->RespondToCompromise(admin_, false, std::nullopt, second);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_NE(again->run_id, second);
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 3);
  EXPECT_THAT(accounts_->RespondToCompromise(admin_, false, std::nullopt, 987654),
              StatusIs(absl::StatusCode::kNotFound, "compromise run 987654"));
}

TEST_F(AccountsTest, RevocationNeedsASerial) {
  Create();
  EXPECT_THAT(
      accounts_->RevokeCertificate(admin_, "", crypto::RevocationReason::kSuperseded, false),
      StatusIs(absl::StatusCode::kInvalidArgument, "serial: required"));
  EXPECT_THAT(
      accounts_->RevokeCertificate(host_, "abc", crypto::RevocationReason::kSuperseded, false),
      StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(
      accounts_->RevokeCertificate(admin_, "abc", crypto::RevocationReason::kSuperseded, false),
      StatusIs(absl::StatusCode::kNotFound));
}

// Issue 11, item 7: the accounts of ephemeral-account mode are the orders', not the tenant's:
// GetAccount does not show them, CreateAccount is not blocked by them; a certificate issued
// under one (closed since) is revoked with its own key when the service holds it, and a host's
// is refused with the reason.
class EphemeralAccountsTest : public AccountsTest {
 protected:
  // An ephemeral account, registered as /acct/9 and closed, as an ended order leaves it, and a
  // certificate (the test chain, serial `serial`) issued under it.
  storage::Certificate IssuedUnderAnEphemeralAccount(const std::string& serial, bool service_key) {
    const storage::Scope scope = fx_.AdminScope(tenant_);
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    EXPECT_TRUE(key.ok());
    auto account = fx_.store().CreateEphemeralAccount(scope, ScriptedServer::Url("/dir"), *key,
                                                      KeyInfo(key->public_key()));
    EXPECT_TRUE(account.ok()) << account.status();
    EXPECT_TRUE(
        fx_.store().RecordAccountUrl(scope, account->id, ScriptedServer::Url("/acct/9")).ok());
    const crypto::PrivateKey leaf = testing::TestLeafKey();
    const std::vector<std::string> names = {"*.leaf.example.com", "leaf.example.com"};
    auto csr = crypto::BuildCsr(names, leaf);
    EXPECT_TRUE(csr.ok());
    storage::NewOrder spec{account->id, names, "", "elsewhere", absl::Minutes(2)};
    spec.csr_der = *csr;
    spec.certificate_key = service_key ? &leaf : nullptr;
    auto made = fx_.store().CreateOrJoinOrder(scope, spec);
    EXPECT_TRUE(made.ok() && made->created) << made.status();
    EXPECT_TRUE(
        fx_.store().RecordOrderUrl(scope, *made->lease, ScriptedServer::Url("/order/9")).ok());
    const std::string chain = testing::ReadTestFile("crypto/testdata/chain.pem");
    auto parsed = crypto::ParsePemChain(chain);
    EXPECT_TRUE(parsed.ok());
    storage::NewCertificate cert;
    cert.account = account->id;
    cert.order = made->order.id;
    cert.identifiers = names;
    cert.serial = serial;
    cert.not_before = parsed->front().not_before;
    cert.not_after = parsed->front().not_after;
    cert.chain_pem = chain;
    cert.private_key = service_key ? &leaf : nullptr;
    auto stored = fx_.store().CompleteOrder(scope, *made->lease, cert);
    EXPECT_TRUE(stored.ok()) << stored.status();
    EXPECT_TRUE(fx_.store()
                    .SetAccountStatus(scope, account->id, storage::AccountStatus::kDeactivated)
                    .ok());
    return stored.ok() ? *stored : storage::Certificate{};
  }
};

TEST_F(EphemeralAccountsTest, AreNotTheTenantsAccountNorBlockCreatingIt) {
  IssuedUnderAnEphemeralAccount("1a", /*service_key=*/false);
  EXPECT_THAT(accounts_->GetAccount(admin_), StatusIs(absl::StatusCode::kNotFound));
  AccountView view = Create();
  EXPECT_EQ(view.account.account_url, ScriptedServer::Url("/acct/1"));
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->account.id, view.account.id);
  EXPECT_FALSE(got->account.ephemeral);
}

TEST_F(EphemeralAccountsTest, ACertificateOfAClosedEphemeralAccountIsRevokedWithItsOwnKey) {
  storage::Certificate cert = IssuedUnderAnEphemeralAccount("1b", /*service_key=*/true);
  auto revoked = accounts_->RevokeCertificate(admin_, cert.serial,
                                              crypto::RevocationReason::kSuperseded, false);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_TRUE(revoked->revoked_at.has_value());
  // Signed with the certificate's key (a `jwk` header of its public key), not by an account.
  std::optional<Call> revocation;
  for (const Call& c : ca_.calls()) {
    if (c.path == "/revoke") revocation = c;
  }
  ASSERT_TRUE(revocation.has_value() && revocation->jws.has_value());
  ASSERT_TRUE(revocation->jws->header.contains("jwk"));
  auto jwk = crypto::PublicKeyFromJwk(revocation->jws->header["jwk"]);
  ASSERT_TRUE(jwk.ok());
  EXPECT_TRUE(jwk->Equals(testing::TestLeafKey().public_key()));
}

TEST_F(EphemeralAccountsTest, AHostKeyedCertificateOfAClosedEphemeralAccountCannotBeRevokedHere) {
  Create();  // Even with a main account: it holds neither the certificate nor its authorizations.
  storage::Certificate cert = IssuedUnderAnEphemeralAccount("1c", /*service_key=*/false);
  EXPECT_THAT(accounts_->RevokeCertificate(admin_, cert.serial,
                                           crypto::RevocationReason::kSuperseded, false),
              StatusIs(absl::StatusCode::kFailedPrecondition, "ephemeral account"));
  EXPECT_EQ(ca_.CountCalls("POST", "/revoke"), 0);
}

TEST_F(AccountsTest, MissingCollaboratorsAreRefusedAtCreation) {
  EXPECT_THAT(
      AccountManager::Create(fx_.WithStore(AccountManager::Options{.issuer = issuer_})),
      StatusIs(absl::StatusCode::kInvalidArgument, "AccountManager: Options.clients is required"));
  auto no_audit =
      fx_.WithStore(AccountManager::Options{.clients = clients_.get(), .issuer = issuer_});
  no_audit.audit = nullptr;
  EXPECT_THAT(AccountManager::Create(no_audit),
              StatusIs(absl::StatusCode::kInvalidArgument, "Options.audit"));
}

// Names outside the tenant's allow-list are the caller's mistake, not "nothing to do".
TEST_F(AccountsTest, DeactivatingAuthorizationsForNamesOutsideTheAllowListIsDenied) {
  Create();
  auto counts = accounts_->DeactivateAuthorizations(admin_, {"a.example.com", "www.other.org"});
  EXPECT_THAT(counts, StatusIs(absl::StatusCode::kPermissionDenied, "www.other.org"));
  EXPECT_EQ(ca_.CountCalls("POST", "/authz/1"), 0);
}

// An AccountStore that lets a test hold a thread before or after chosen calls: `hook` gets the
// method's name and whether the call is over, before and after each call.
class GatedAccounts : public storage::AccountStore {
 public:
  using Hook = std::function<void(absl::string_view method, bool after)>;
  GatedAccounts(storage::AccountStore& store, Hook hook) : s_(store), hook_(std::move(hook)) {}

  absl::StatusOr<storage::Account> CreateAccount(const storage::Scope& scope,
                                                 absl::string_view directory_url,
                                                 const storage::AccountKeyMaterial& key,
                                                 const storage::PublicKeyInfo& public_key,
                                                 storage::KeyState initial_state) override {
    return Gate("CreateAccount", [&] {
      return s_.CreateAccount(scope, directory_url, key, public_key, initial_state);
    });
  }
  absl::StatusOr<storage::Account> CreateEphemeralAccount(
      const storage::Scope& scope, absl::string_view directory_url,
      const storage::AccountKeyMaterial& key, const storage::PublicKeyInfo& public_key) override {
    return Gate("CreateEphemeralAccount", [&] {
      return s_.CreateEphemeralAccount(scope, directory_url, key, public_key);
    });
  }
  absl::StatusOr<storage::Account> GetAccount(const storage::Scope& scope,
                                              storage::AccountId account) override {
    return Gate("GetAccount", [&] { return s_.GetAccount(scope, account); });
  }
  absl::StatusOr<std::vector<storage::Account>> ListAccounts(const storage::Scope& scope) override {
    return Gate("ListAccounts", [&] { return s_.ListAccounts(scope); });
  }
  absl::StatusOr<std::vector<storage::Account>> ListEphemeralAccountsToClose(
      const storage::Scope& scope, absl::Time created_before,
      absl::string_view close_job_kind) override {
    return Gate("ListEphemeralAccountsToClose", [&] {
      return s_.ListEphemeralAccountsToClose(scope, created_before, close_job_kind);
    });
  }
  using storage::AccountStore::RecordAccountUrl;
  absl::Status RecordAccountUrl(const storage::Scope& scope, storage::AccountId account,
                                absl::string_view url,
                                const std::vector<std::string>& contact) override {
    return Gate("RecordAccountUrl",
                [&] { return s_.RecordAccountUrl(scope, account, url, contact); });
  }
  absl::Status SetAccountStatus(const storage::Scope& scope, storage::AccountId account,
                                storage::AccountStatus status) override {
    return Gate("SetAccountStatus", [&] { return s_.SetAccountStatus(scope, account, status); });
  }
  absl::StatusOr<storage::Account> MarkAccountHijacked(const storage::Scope& scope,
                                                       storage::AccountId account,
                                                       absl::string_view what) override {
    return Gate("MarkAccountHijacked",
                [&] { return s_.MarkAccountHijacked(scope, account, what); });
  }
  absl::StatusOr<storage::KeyLease> AcquireKeyLease(const storage::Scope& scope,
                                                    storage::AccountId account,
                                                    absl::Duration duration) override {
    return Gate("AcquireKeyLease", [&] { return s_.AcquireKeyLease(scope, account, duration); });
  }
  absl::Status ReleaseKeyLease(const storage::Scope& scope,
                               const storage::KeyLease& lease) override {
    return Gate("ReleaseKeyLease", [&] { return s_.ReleaseKeyLease(scope, lease); });
  }
  absl::StatusOr<storage::AccountKey> AddPendingKey(const storage::Scope& scope,
                                                    const storage::KeyLease& lease,
                                                    const storage::AccountKeyMaterial& key,
                                                    const storage::PublicKeyInfo& info) override {
    return Gate("AddPendingKey", [&] { return s_.AddPendingKey(scope, lease, key, info); });
  }
  absl::Status PromoteKey(const storage::Scope& scope, const storage::KeyLease& lease,
                          int version) override {
    return Gate("PromoteKey", [&] { return s_.PromoteKey(scope, lease, version); });
  }
  absl::Status DiscardPendingKey(const storage::Scope& scope, const storage::KeyLease& lease,
                                 int version) override {
    return Gate("DiscardPendingKey", [&] { return s_.DiscardPendingKey(scope, lease, version); });
  }
  absl::StatusOr<storage::Account> ReplaceAccount(const storage::Scope& scope,
                                                  const storage::KeyLease& lease, int version,
                                                  absl::string_view new_account_url,
                                                  bool old_keys_compromised) override {
    return Gate("ReplaceAccount", [&] {
      return s_.ReplaceAccount(scope, lease, version, new_account_url, old_keys_compromised);
    });
  }
  // Answers calls of `method` with `error` without making them (e.g. a database lost).
  void Refuse(absl::string_view method, absl::Status error) {
    refused_ = std::string(method);
    refusal_ = std::move(error);
  }
  absl::Status MarkKeyCompromised(const storage::Scope& scope, const storage::KeyLease& lease,
                                  int version) override {
    return Gate("MarkKeyCompromised", [&] { return s_.MarkKeyCompromised(scope, lease, version); });
  }
  absl::StatusOr<storage::UnsealedAccountKey> GetActiveKey(const storage::Scope& scope,
                                                           storage::AccountId account,
                                                           absl::string_view purpose) override {
    return Gate("GetActiveKey", [&] { return s_.GetActiveKey(scope, account, purpose); });
  }
  absl::StatusOr<storage::UnsealedAccountKey> GetKey(const storage::Scope& scope,
                                                     storage::AccountId account, int version,
                                                     absl::string_view purpose) override {
    return Gate("GetKey", [&] { return s_.GetKey(scope, account, version, purpose); });
  }
  absl::StatusOr<std::vector<storage::AccountKey>> ListKeys(const storage::Scope& scope,
                                                            storage::AccountId account) override {
    return Gate("ListKeys", [&] { return s_.ListKeys(scope, account); });
  }
  absl::Status MarkKeyDestroyed(const storage::Scope& scope, storage::AccountId account,
                                int version) override {
    return Gate("MarkKeyDestroyed", [&] { return s_.MarkKeyDestroyed(scope, account, version); });
  }
  absl::StatusOr<storage::EabKeyInfo> KeepEabKey(const storage::Scope& scope,
                                                 absl::string_view directory_url,
                                                 absl::string_view key_id,
                                                 absl::string_view hmac_key) override {
    return Gate("KeepEabKey",
                [&] { return s_.KeepEabKey(scope, directory_url, key_id, hmac_key); });
  }
  absl::StatusOr<storage::EabKeyInfo> GetEabKeyInfo(const storage::Scope& scope) override {
    return Gate("GetEabKeyInfo", [&] { return s_.GetEabKeyInfo(scope); });
  }
  absl::StatusOr<storage::EabKey> GetEabKey(const storage::Scope& scope,
                                            absl::string_view purpose) override {
    return Gate("GetEabKey", [&] { return s_.GetEabKey(scope, purpose); });
  }
  absl::Status ForgetEabKey(const storage::Scope& scope) override {
    return Gate("ForgetEabKey", [&] { return s_.ForgetEabKey(scope); });
  }

 private:
  template <typename Call>
  auto Gate(absl::string_view method, Call call) -> decltype(call()) {
    if (method == refused_) return refusal_;
    hook_(method, false);
    auto result = call();
    hook_(method, true);
    return result;
  }

  storage::AccountStore& s_;
  Hook hook_;
  std::string refused_;
  absl::Status refusal_;
};

// How many of `results` of concurrent calls succeeded; every other one must have been told to
// retry: ABORTED "... in progress".
template <typename T>
int Winners(const std::vector<absl::StatusOr<T>>& results) {
  int ok = 0;
  for (const auto& r : results) {
    if (r.ok()) {
      ++ok;
    } else {
      EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kAborted, "in progress"));
    }
  }
  return ok;
}

// Defect 2: a rollover that read the active key before a concurrent one promoted the next must
// not send keyChange with the retired key (the CA refuses it: INVALID_ARGUMENT) nor burn a key
// version; it is ABORTED before it writes anything.
TEST_F(AccountsTest, RolloverThatLosesARaceIsAbortedAndBurnsNoVersion) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  thread_local int role = 0;
  absl::Notification loser_read, winner_done;
  GatedAccounts gated(fx_.store(), [&](absl::string_view method, bool after) {
    if (role != 2) return;
    // The loser has taken the lease (or, before the fix, read the account key) ...
    if (after && (method == "GetActiveKey" || method == "AcquireKeyLease") &&
        !loser_read.HasBeenNotified()) {
      loser_read.Notify();
    }
    // ... and the winner is done before the loser writes a key.
    if (!after && method == "AddPendingKey") winner_done.WaitForNotification();
  });
  auto manager = ManagerOver(gated);
  std::vector<absl::StatusOr<RolloverResult>> results(2);
  std::thread loser([&] {
    role = 2;
    results[0] = manager->Rollover(admin_, std::nullopt, "loser");
  });
  std::thread winner([&] {
    role = 1;
    loser_read.WaitForNotification();
    results[1] = manager->Rollover(admin_, std::nullopt, "winner");
    winner_done.Notify();
  });
  winner.join();
  loser.join();
  // Exactly one of them rolled the key over; the other was told to retry.
  EXPECT_EQ(Winners(results), 1);
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kRetired, KeyState::kActive));
  auto view = accounts_->GetAccount(admin_);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->active_key.public_key.thumbprint, keyed.current());
}

TEST_F(AccountsTest, OfThreeConcurrentRolloversOneWinsAndTheOthersAreAborted) {
  KeyedCa keyed(ca_);
  AccountView v1 = Create();
  for (int round = 0; round < 5; ++round) {
    std::vector<absl::StatusOr<RolloverResult>> results(3);
    std::vector<std::thread> threads;
    absl::Notification go;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&, i] {
        go.WaitForNotification();
        results[i] = accounts_->Rollover(admin_, std::nullopt, "race");
      });
    }
    go.Notify();
    for (auto& t : threads) t.join();
    EXPECT_GE(Winners(results), 1) << "round " << round;
    // Versions stay contiguous: every version but the last is retired, none is burned.
    auto keys = fx_.store().ListKeys(fx_.AdminScope(tenant_), v1.account.id);
    ASSERT_TRUE(keys.ok()) << keys.status();
    for (size_t v = 0; v < keys->size(); ++v) {
      EXPECT_EQ((*keys)[v].version, static_cast<int>(v) + 1);
      EXPECT_EQ((*keys)[v].state, v + 1 == keys->size() ? KeyState::kActive : KeyState::kRetired);
    }
    EXPECT_EQ(keys->back().public_key.thumbprint, keyed.current());
    EXPECT_EQ(static_cast<int>(keys->size()), keyed.applied() + 1);
  }
}

// Defect 6: an earlier DeactivateAccount reached the CA, but its answer was lost; the CA now
// refuses the account (Pebble: 403 unauthorized). The retry records the truth, and the tenant
// can make a new account.
TEST_F(AccountsTest, AccountDeactivatedAtTheCaButNotHereIsRecordedOnRetry) {
  AccountView v1 = Create();
  ca_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Problem(403, "unauthorized", "account is deactivated");
  });
  auto view = accounts_->Deactivate(admin_, v1.account.account_url);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.status, storage::AccountStatus::kDeactivated);
  EXPECT_EQ(ca_.CountCalls("POST", "/acct/1"), 2);  // The deactivation, then the question.
  auto audit = fx_.store().ListAudit(fx_.AdminScope(tenant_), {"", 1000});
  ASSERT_TRUE(audit.ok());
  ASSERT_GE(audit->items.size(), 2u);
  const auto& asked = audit->items[audit->items.size() - 2].event;
  EXPECT_EQ(asked.action, "AccountUnusableAtCa");
  EXPECT_THAT(asked.detail, HasSubstr("unauthorized"));
  EXPECT_EQ(audit->items.back().event.action, "SetAccountStatus");
  EXPECT_EQ(audit->items.back().event.detail, "deactivated");
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(201, {{"status", "valid"}},
                                {{"Location", ScriptedServer::Url("/acct/2")}});
  });
  auto created = accounts_->CreateAccount(admin_, {{}, true});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->account.account_url, ScriptedServer::Url("/acct/2"));
}

// An unusable answer alone records nothing while the CA still reports the account valid.
TEST_F(AccountsTest, AnAccountTheCaStillHoldsValidIsNotRecordedClosed) {
  AccountView v1 = Create();
  ca_.On("POST", "/acct/1", [](const Call& c) {
    if (c.jws->payload.empty()) return ScriptedServer::Json(200, {{"status", "valid"}});
    return ScriptedServer::Problem(403, "unauthorized", "not now");
  });
  EXPECT_THAT(accounts_->Deactivate(admin_, v1.account.account_url),
              StatusIs(absl::StatusCode::kPermissionDenied, "not now"));
  auto view = accounts_->GetAccount(admin_);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.status, storage::AccountStatus::kValid);
}

// Any operation signed with the account key records an account the CA closed.
TEST_F(AccountsTest, AnAccountTheCaClosedIsRecordedByTheNextOperationThatNeedsIt) {
  AccountView v1 = CreateWithAnAuthorizationTheCaCannotDeactivate();
  ca_.On("POST", "/authz/1", [](const Call&) {
    return ScriptedServer::Problem(403, "unauthorized", "account is deactivated");
  });
  ca_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Problem(403, "unauthorized", "account is deactivated");
  });
  EXPECT_THAT(accounts_->DeactivateAuthorizations(admin_, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "CreateAccount makes a new one"));
  auto view = accounts_->GetAccount(admin_);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.id, v1.account.id);
  EXPECT_EQ(view->account.status, storage::AccountStatus::kDeactivated);
}

// One account per tenant: of concurrent CreateAccount calls (all of which looked for an account
// before any made one) exactly one reaches the CA.
TEST_F(AccountsTest, ConcurrentCreateAccountCallsRegisterOnce) {
  absl::Mutex mu;
  int listed = 0;
  GatedAccounts gated(fx_.store(), [&](absl::string_view method, bool after) {
    if (method != "ListAccounts" || !after) return;
    absl::MutexLock lock(&mu);
    ++listed;
    mu.Await(absl::Condition(
        +[](int* n) { return *n >= 3; }, &listed));
  });
  auto manager = ManagerOver(gated);
  std::vector<absl::StatusOr<AccountView>> results(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] { results[i] = manager->CreateAccount(admin_, {{}, true}); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Winners(results), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 1);
  auto accounts = fx_.store().ListAccounts(fx_.AdminScope(tenant_));
  ASSERT_TRUE(accounts.ok());
  EXPECT_EQ(accounts->size(), 1u);
}

// ---- A CA without keyChange (issue 11, item 8) --------------------------------------------------

// A CA whose directory offers no keyChange. It keys accounts by key, as RFC 8555 §7.3.1 has it
// (newAccount for a known key answers with that account), checks that a request to /acct/N is
// signed by account N's key, and once an account is deactivated refuses every request to it
// (403 unauthorized). newAccount and deactivation can be made to fail.
class NoKeyChangeCa {
 public:
  explicit NoKeyChangeCa(ScriptedServer& ca) {
    ca.directory().erase("keyChange");  // Before the client first fetches it.
    ca.On("POST", "/new-acct", [this](const Call& c) {
      auto jwk = crypto::PublicKeyFromJwk(c.jws->header["jwk"]);
      if (!jwk.ok()) return ScriptedServer::Problem(400, "malformed", "jwk");
      auto payload = nlohmann::json::parse(c.jws->payload, nullptr, false);
      absl::MutexLock lock(&mu_);
      const std::string thumb = crypto::Thumbprint(*jwk);
      for (size_t i = 0; i < accounts_.size(); ++i) {
        if (accounts_[i].thumbprint == thumb) {
          return ScriptedServer::Json(200, {{"status", accounts_[i].status}},
                                      {{"Location", Url(i + 1)}});
        }
      }
      if (payload.is_object() && payload.value("onlyReturnExisting", false)) {
        return ScriptedServer::Problem(400, "accountDoesNotExist", "unknown key");
      }
      if (new_account_failure_) return *new_account_failure_;
      Account a{thumb, *jwk, "valid", payload.value("contact", nlohmann::json::array())};
      accounts_.push_back(a);
      return ScriptedServer::Json(201, {{"status", "valid"}, {"contact", a.contact}},
                                  {{"Location", Url(accounts_.size())}});
    });
    for (int n = 1; n <= 3; ++n) {
      ca.On("POST", "/acct/" + std::to_string(n), [this, n](const Call& c) {
        absl::MutexLock lock(&mu_);
        if (n > static_cast<int>(accounts_.size())) {
          return ScriptedServer::Problem(400, "accountDoesNotExist", "no such account");
        }
        Account& a = accounts_[n - 1];
        if (c.jws->header.value("kid", "") != Url(n) || !crypto::VerifyJws(*c.jws, a.key).ok()) {
          return ScriptedServer::Problem(403, "unauthorized", "not this account's key");
        }
        if (a.status != "valid") {
          return ScriptedServer::Problem(403, "unauthorized", "account is " + a.status);
        }
        if (c.jws->payload.empty()) {
          return ScriptedServer::Json(200, {{"status", a.status}, {"contact", a.contact}});
        }
        if (deactivation_failure_) return *deactivation_failure_;
        a.status = "deactivated";
        return ScriptedServer::Json(200, {{"status", a.status}});
      });
    }
  }
  static std::string Url(size_t n) { return ScriptedServer::Url("/acct/" + std::to_string(n)); }

  // newAccount for an unknown key, and deactivation, answer `response` (none: as asked).
  void FailNewAccount(std::optional<acme::HttpResponse> response) {
    absl::MutexLock lock(&mu_);
    new_account_failure_ = std::move(response);
  }
  void FailDeactivation(std::optional<acme::HttpResponse> response) {
    absl::MutexLock lock(&mu_);
    deactivation_failure_ = std::move(response);
  }
  int accounts() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(accounts_.size());
  }
  // The CA closes account `n` by itself.
  void Close(int n) {
    absl::MutexLock lock(&mu_);
    accounts_.at(n - 1).status = "deactivated";
  }
  std::string status(int n) {
    absl::MutexLock lock(&mu_);
    return accounts_.at(n - 1).status;
  }
  std::string thumbprint(int n) {
    absl::MutexLock lock(&mu_);
    return accounts_.at(n - 1).thumbprint;
  }
  nlohmann::json contact(int n) {
    absl::MutexLock lock(&mu_);
    return accounts_.at(n - 1).contact;
  }

 private:
  struct Account {
    std::string thumbprint;
    crypto::PublicKey key;
    std::string status;
    nlohmann::json contact;
  };
  absl::Mutex mu_;
  std::vector<Account> accounts_ ABSL_GUARDED_BY(mu_);
  std::optional<acme::HttpResponse> new_account_failure_ ABSL_GUARDED_BY(mu_);
  std::optional<acme::HttpResponse> deactivation_failure_ ABSL_GUARDED_BY(mu_);
};

// The tenant's accounts in the store with status valid.
int ValidAccounts(testing::Fixture& fx, storage::TenantId tenant) {
  auto accounts = fx.store().ListAccounts(fx.AdminScope(tenant));
  int n = 0;
  if (accounts.ok()) {
    for (const auto& a : *accounts) n += a.status == storage::AccountStatus::kValid;
  }
  return n;
}

// Issue 11: at a CA without keyChange that requires External Account Binding, the rollover's
// new account is bound with the tenant's kept EAB key (kept by CreateAccount's keep_eab_key, or
// SetEabKey); with none kept the rollover is refused before anything is staged or sent, naming
// how to keep one.
TEST_F(AccountsTest, WithoutKeyChangeTheNewAccountIsBoundWithTheKeptEabKey) {
  NoKeyChangeCa ca(ca_);
  ca_.directory()["meta"]["externalAccountRequired"] = true;
  const std::string mac(32, 'e');
  CreateAccountSpec spec{{"mailto:pki@example.com"}, true, "kid-5", crypto::Base64Url(mac)};
  auto v1 = accounts_->CreateAccount(admin_, spec);  // the key used, not kept
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->kept_eab_key_id, "");
  const int requests = static_cast<int>(ca_.calls().size());
  auto refused = accounts_->Rollover(admin_, std::nullopt, "scheduled");
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition, "SetEabKey"));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition, "nothing was changed"));
  EXPECT_EQ(ca.accounts(), 1);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), 1);
  EXPECT_LE(static_cast<int>(ca_.calls().size()), requests + 1);  // at most the old account read

  EXPECT_THAT(accounts_->SetEabKey(admin_, "kid-6", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "go together"));
  EXPECT_THAT(accounts_->SetEabKey(admin_, "kid-6", "not base64url!"),
              StatusIs(absl::StatusCode::kInvalidArgument, "eab_hmac_key"));
  EXPECT_THAT(accounts_->SetEabKey(host_, "kid-6", crypto::Base64Url(mac)),
              StatusIs(absl::StatusCode::kPermissionDenied));
  const std::string kept_mac(32, 'k');
  ASSERT_OK_AND_ASSIGN(std::optional<storage::EabKeyInfo> kept,
                       accounts_->SetEabKey(admin_, "kid-6", crypto::Base64Url(kept_mac)));
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->key_id, "kid-6");
  EXPECT_EQ(kept->directory_url, ScriptedServer::Url("/dir"));
  auto shown = accounts_->GetAccount(admin_);
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->kept_eab_key_id, "kid-6");

  auto r = accounts_->Rollover(admin_, std::nullopt, "scheduled");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->account.account.account_url, NoKeyChangeCa::Url(2));
  std::vector<crypto::ParsedJws> registrations;
  for (const auto& call : ca_.calls()) {
    if (call.path == "/new-acct" && call.jws.has_value()) registrations.push_back(*call.jws);
  }
  ASSERT_FALSE(registrations.empty());
  const crypto::ParsedJws& last = registrations.back();
  auto eab = crypto::ParseJwsObject(nlohmann::json::parse(last.payload)["externalAccountBinding"]);
  ASSERT_TRUE(eab.ok()) << eab.status();
  EXPECT_EQ(eab->header["kid"], "kid-6");
  EXPECT_EQ(eab->signature, crypto::HmacSha256(kept_mac, eab->signing_input));
  EXPECT_EQ(nlohmann::json::parse(eab->payload), last.header["jwk"]);  // the new key's

  // Forgotten on request; a second forget finds nothing.
  ASSERT_OK_AND_ASSIGN(std::optional<storage::EabKeyInfo> forgotten,
                       accounts_->SetEabKey(admin_, "", ""));
  EXPECT_FALSE(forgotten.has_value());
  EXPECT_THAT(accounts_->SetEabKey(admin_, "", ""), StatusIs(absl::StatusCode::kNotFound));
}

// CreateAccount's keep_eab_key keeps the key the CA accepted; without an EAB key it is refused.
TEST_F(AccountsTest, CreateAccountKeepsTheEabKeyTheCaAccepted) {
  EXPECT_THAT(accounts_->CreateAccount(
                  admin_, {{"mailto:pki@example.com"}, true, "", "", std::nullopt, true}),
              StatusIs(absl::StatusCode::kInvalidArgument, "keep_eab_key"));
  const std::string mac(32, 'c');
  auto view = accounts_->CreateAccount(
      admin_,
      {{"mailto:pki@example.com"}, true, "kid-7", crypto::Base64Url(mac), std::nullopt, true});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->kept_eab_key_id, "kid-7");
  auto kept = fx_.store().GetEabKey(fx_.AdminScope(tenant_), "test");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->hmac_key.view(), mac);
  EXPECT_EQ(kept->info.directory_url, ScriptedServer::Url("/dir"));
}

TEST_F(AccountsTest, WithoutKeyChangeARolloverMakesANewAccountAndDeactivatesTheOldOne) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  ASSERT_EQ(v1.account.account_url, NoKeyChangeCa::Url(1));
  auto r = accounts_->Rollover(admin_, crypto::KeyAlgorithm::kEcdsaP384, "scheduled");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 0);

  // The new key is the key of a new account at the CA, with the old account's contact.
  ASSERT_EQ(ca.accounts(), 2);
  EXPECT_EQ(r->account.account.account_url, NoKeyChangeCa::Url(2));
  EXPECT_NE(r->account.account.id, v1.account.id);
  EXPECT_EQ(r->account.account.status, storage::AccountStatus::kValid);
  EXPECT_EQ(r->account.active_key.version, 1);
  EXPECT_EQ(r->account.active_key.algorithm, crypto::KeyAlgorithm::kEcdsaP384);
  EXPECT_EQ(r->account.active_key.public_key.thumbprint, ca.thumbprint(2));
  EXPECT_EQ(ca.contact(2), nlohmann::json::array({"mailto:pki@example.com"}));
  EXPECT_EQ(r->previous_version, 1);

  // The old account is deactivated at the CA (with its old key) and closed here.
  EXPECT_EQ(ca.status(1), "deactivated");
  EXPECT_EQ(ca.status(2), "valid");
  auto old = fx_.store().GetAccount(fx_.AdminScope(tenant_), v1.account.id);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->status, storage::AccountStatus::kDeactivated);
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kRetired));
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);

  // What was lost is said.
  ASSERT_TRUE(r->replacement.has_value());
  EXPECT_EQ(r->replacement->previous_account_url, NoKeyChangeCa::Url(1));
  EXPECT_TRUE(r->replacement->previous_deactivated);
  EXPECT_EQ(r->replacement->previous_outcome, "deactivated at the CA");
  ASSERT_EQ(r->replacement->lost.size(), 3u);
  EXPECT_THAT(r->replacement->lost[0], HasSubstr("authorizations are not carried over"));
  EXPECT_THAT(r->replacement->lost[1], HasSubstr("CAA accounturi"));
  EXPECT_THAT(r->replacement->lost[1], HasSubstr(NoKeyChangeCa::Url(1)));
  EXPECT_THAT(r->replacement->lost[1], HasSubstr(NoKeyChangeCa::Url(2)));
  EXPECT_THAT(r->replacement->lost[2], HasSubstr("ARI replaces"));

  // Audited, and the account the service reports is the new one.
  auto actions = AuditActions();
  EXPECT_THAT(actions, ::testing::Contains("RolloverByNewAccount"));
  EXPECT_THAT(actions, ::testing::Contains("ReplaceAccount"));
  EXPECT_THAT(actions, ::testing::Not(::testing::Contains("Rollover")));
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->account.account_url, NoKeyChangeCa::Url(2));

  // A second rollover replaces the new account in turn.
  auto again = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->account.account.account_url, NoKeyChangeCa::Url(3));
  EXPECT_EQ(ca.status(2), "deactivated");
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);
}

TEST_F(AccountsTest, IssuanceAfterARolloverByANewAccountSignsAsTheNewAccount) {
  fx_.clock().Set(testing::TestChainValidTime());  // The scripted CA issues the test chain.
  NoKeyChangeCa ca(ca_);
  std::string order_state;
  testing::ScriptHappyCa(ca_, &order_state);
  Create();
  auto r = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(r.ok()) << r.status();
  IssueRequest request;
  request.identifiers = {"leaf.example.com", "*.leaf.example.com"};
  auto csr = crypto::BuildCsr(request.identifiers, testing::TestLeafKey());
  ASSERT_TRUE(csr.ok());
  request.csr = *csr;
  request.deadline = absl::InfiniteFuture();
  request.max_wait = absl::Seconds(20);
  auto issued = issuer_->Issue(host_, request);
  ASSERT_TRUE(issued.ok()) << issued.status();
  ASSERT_TRUE(issued->certificate.has_value());
  EXPECT_EQ(issued->certificate->account, r->account.account.id);
  std::optional<crypto::ParsedJws> order;
  for (const auto& call : ca_.calls()) {
    if (call.path == "/new-order" && call.jws) order = call.jws;
  }
  ASSERT_TRUE(order.has_value());
  EXPECT_EQ(order->header["kid"], NoKeyChangeCa::Url(2));
  auto key = crypto::PublicKeyFromJwk(
      nlohmann::json::parse(r->account.active_key.public_key.public_jwk));
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(crypto::VerifyJws(*order, *key).ok());
}

TEST_F(AccountsTest, WithoutKeyChangeARefusedNewAccountDiscardsTheKeyAndKeepsTheOldAccount) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  ca.FailNewAccount(ScriptedServer::Problem(400, "rejectedIdentifier", "no new accounts today"));
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "no new accounts today"));
  EXPECT_EQ(ca.accounts(), 1);
  EXPECT_EQ(ca.status(1), "valid");  // Not deactivated: it is still the tenant's account.
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kRetired));
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->account.id, v1.account.id);
  EXPECT_EQ(got->account.status, storage::AccountStatus::kValid);
}

// Once the old account is closed at the CA the pending key is the tenant's only way on: a
// refusal of newAccount then keeps it for the next attempt, as does a rate limit.
TEST_F(AccountsTest, WithoutKeyChangeARefusalKeepsTheKeyWhenTheOldAccountIsClosedOrForARateLimit) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  ca.FailNewAccount(ScriptedServer::Problem(429, "rateLimited", "too many new accounts"));
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));

  ca.Close(1);
  ca.FailNewAccount(ScriptedServer::Problem(400, "malformed", "not now"));
  EXPECT_THAT(accounts_->ResolvePendingKeys({"startup", "ResolvePendingKeys"}),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));

  ca.FailNewAccount(std::nullopt);
  ASSERT_TRUE(accounts_->ResolvePendingKeys({"startup", "ResolvePendingKeys"}).ok());
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->account.account_url, NoKeyChangeCa::Url(2));
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);
}

TEST_F(AccountsTest, WithoutKeyChangeAnUnansweredNewAccountIsCompletedBeforeTheKeyIsNextUsed) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  ca.FailNewAccount(ScriptedServer::Raw(503, "text/plain", "down"));
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));
  EXPECT_EQ(ca.status(1), "valid");
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);

  // At start-up (or before the key is next used) the steps are done again.
  ca.FailNewAccount(std::nullopt);
  ASSERT_TRUE(accounts_->ResolvePendingKeys({"startup", "ResolvePendingKeys"}).ok());
  EXPECT_EQ(ca.accounts(), 2);
  EXPECT_EQ(ca.status(1), "deactivated");
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->account.account_url, NoKeyChangeCa::Url(2));
  EXPECT_EQ(got->active_key.public_key.thumbprint, ca.thumbprint(2));
  EXPECT_THAT(AuditActions(), ::testing::Contains("RolloverPending"));
  EXPECT_THAT(AuditActions(), ::testing::Contains("RolloverByNewAccount"));
}

// Settled before the account key is next used, the operation then acts as the new account.
TEST_F(AccountsTest, WithoutKeyChangeTheNextUseOfTheAccountKeyCompletesTheRolloverFirst) {
  NoKeyChangeCa ca(ca_);
  Create();
  ca.FailNewAccount(ScriptedServer::Raw(503, "text/plain", "down"));
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "stays pending"));
  ca.FailNewAccount(std::nullopt);
  auto deactivated = accounts_->Deactivate(admin_, NoKeyChangeCa::Url(2));
  ASSERT_TRUE(deactivated.ok()) << deactivated.status();
  EXPECT_EQ(deactivated->account.account_url, NoKeyChangeCa::Url(2));
  EXPECT_EQ(ca.status(1), "deactivated");
  EXPECT_EQ(ca.status(2), "deactivated");
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 0);
}

TEST_F(AccountsTest, WithoutKeyChangeAFailedDeactivationIsRetriedWithoutASecondNewAccount) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  ca.FailDeactivation(ScriptedServer::Raw(503, "text/plain", "down"));
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "could not deactivate the old account"));
  // Registered at the CA, not recorded: the old account is still the tenant's, here and there.
  EXPECT_EQ(ca.accounts(), 2);
  EXPECT_EQ(ca.status(1), "valid");
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->account.id, v1.account.id);

  // The next rollover finishes this one; newAccount finds the account registered before.
  ca.FailDeactivation(std::nullopt);
  auto r = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ca.accounts(), 2);
  EXPECT_EQ(r->account.account.account_url, NoKeyChangeCa::Url(2));
  EXPECT_EQ(r->account.active_key.public_key.thumbprint, ca.thumbprint(2));
  ASSERT_TRUE(r->replacement.has_value());
  EXPECT_TRUE(r->replacement->previous_deactivated);
  EXPECT_EQ(ca.status(1), "deactivated");
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);
}

TEST_F(AccountsTest, WithoutKeyChangeARefusedDeactivationCompletesTheRolloverAndSaysSo) {
  NoKeyChangeCa ca(ca_);
  Create();
  ca.FailDeactivation(ScriptedServer::Problem(400, "malformed", "cannot deactivate"));
  auto r = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->account.account.account_url, NoKeyChangeCa::Url(2));
  ASSERT_TRUE(r->replacement.has_value());
  EXPECT_FALSE(r->replacement->previous_deactivated);
  EXPECT_THAT(r->replacement->previous_outcome, HasSubstr("refused to deactivate"));
  EXPECT_THAT(r->replacement->previous_outcome, HasSubstr("cannot deactivate"));
  EXPECT_EQ(ca.status(1), "valid");
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);
}

// A crash after the CA registered the new account and deactivated the old one, before the
// store recorded it: the next resolution finds the CA's state and records it.
TEST_F(AccountsTest, WithoutKeyChangeARolloverCutOffBeforeItWasRecordedIsSettled) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  GatedAccounts gated(fx_.store(), [](absl::string_view, bool) {});
  gated.Refuse("ReplaceAccount", absl::UnavailableError("the database went away"));
  auto cut = ManagerOver(gated);
  EXPECT_THAT(cut->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kUnavailable, "the database went away"));
  EXPECT_EQ(ca.accounts(), 2);
  EXPECT_EQ(ca.status(1), "deactivated");
  EXPECT_THAT(States(v1.account.id), ::testing::ElementsAre(KeyState::kActive, KeyState::kPending));

  ASSERT_TRUE(accounts_->ResolvePendingKeys({"startup", "ResolvePendingKeys"}).ok());
  EXPECT_EQ(ca.accounts(), 2);
  EXPECT_EQ(ValidAccounts(fx_, tenant_), 1);
  auto got = accounts_->GetAccount(admin_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->account.account_url, NoKeyChangeCa::Url(2));
  EXPECT_EQ(got->active_key.public_key.thumbprint, ca.thumbprint(2));
  auto audit = fx_.store().ListAudit(fx_.AdminScope(tenant_), {"", 1000});
  ASSERT_TRUE(audit.ok());
  EXPECT_THAT(audit->items.back().event.detail, HasSubstr("recovered"));
  EXPECT_THAT(audit->items.back().event.detail, HasSubstr("already closed at the CA"));
}

TEST_F(AccountsTest, WithoutKeyChangeACompromiseResponseReplacesTheAccountAndCompromisesTheOldKey) {
  NoKeyChangeCa ca(ca_);
  AccountView v1 = Create();
  auto report = accounts_->RespondToCompromise(admin_, /*deactivate_account=*/false, std::nullopt);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_FALSE(report->steps.empty());
  EXPECT_THAT(report->steps[0].detail, HasSubstr("new account " + NoKeyChangeCa::Url(2)));
  EXPECT_EQ(ca.status(1), "deactivated");
  EXPECT_THAT(States(v1.account.id),
              ::testing::ElementsAre(KeyState::kCompromised, KeyState::kRetired));
  EXPECT_EQ(report->account.account.account_url, NoKeyChangeCa::Url(2));
}

// ---- Hijack detection ----------------------------------------------------------------------

class HijackTest : public AccountsTest {
 protected:
  // Runs the verification job of `account` as the engine would.
  JobOutcome Verify(storage::AccountId account) {
    storage::ClaimedJob claimed;
    claimed.job.tenant = tenant_;
    claimed.job.kind = kVerifyAccountJob;
    claimed.job.subject = absl::StrCat(account);
    return accounts_->VerifyByPolicy(
        JobRun(claimed, fx_.clock().Now(), std::make_shared<std::atomic<bool>>(false)));
  }

  storage::Account Stored(storage::AccountId id) {
    auto a = fx_.store().GetAccount(fx_.AdminScope(tenant_), id);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : storage::Account{};
  }

  // The CA no longer knows the account's key (someone rolled it over to a key of theirs).
  void ForgetOurKey() {
    ca_.On("POST", "/new-acct", [](const Call& c) {
      auto payload = nlohmann::json::parse(c.jws->payload, nullptr, false);
      if (payload.is_object() && payload.value("onlyReturnExisting", false)) {
        return ScriptedServer::Problem(400, "accountDoesNotExist", "no account for this key");
      }
      return ScriptedServer::Json(201, {{"status", "valid"}},
                                  {{"Location", ScriptedServer::Url("/acct/2")}});
    });
  }

  const storage::AuditEvent* LastAudit(const std::string& action) {
    auto audit = fx_.store().ListAudit(fx_.AdminScope(tenant_), {"", 1000});
    if (!audit.ok()) return nullptr;
    last_audit_ = audit->items;
    for (auto it = last_audit_.rbegin(); it != last_audit_.rend(); ++it) {
      if (it->event.action == action) return &it->event;
    }
    return nullptr;
  }
  std::vector<storage::AuditRecord> last_audit_;

  IssueRequest HostRequest() {
    IssueRequest request;
    request.identifiers = {"leaf.example.com", "*.leaf.example.com"};
    auto csr = crypto::BuildCsr(request.identifiers, testing::TestLeafKey());
    EXPECT_TRUE(csr.ok());
    request.csr = csr.ok() ? *csr : "";
    request.deadline = absl::InfiniteFuture();
    request.max_wait = absl::Seconds(20);
    return request;
  }

  // The test chain stored as a certificate of `account` with `serial`; with `key` the service
  // holds that key.
  storage::Certificate Stores(storage::AccountId account, const std::string& serial,
                              const crypto::PrivateKey* key) {
    const std::vector<std::string> names = {"*.leaf.example.com", "leaf.example.com"};
    const storage::Scope scope = host_.ScopeFor("CertificateService/IssueCertificate");
    auto csr = crypto::BuildCsr(names, testing::TestLeafKey());
    storage::NewOrder spec{account, names, "", "elsewhere", absl::Minutes(2)};
    spec.csr_der = csr.ok() ? *csr : "";
    spec.certificate_key = key;
    auto made = fx_.store().CreateOrJoinOrder(scope, spec);
    EXPECT_TRUE(made.ok()) << made.status();
    if (!made.ok()) return {};
    EXPECT_TRUE(
        fx_.store().RecordOrderUrl(scope, *made->lease, ScriptedServer::Url("/order/9")).ok());
    const std::string chain = testing::ReadTestFile("crypto/testdata/chain.pem");
    auto parsed = crypto::ParsePemChain(chain);
    EXPECT_TRUE(parsed.ok());
    storage::NewCertificate cert;
    cert.account = account;
    cert.order = made->order.id;
    cert.identifiers = names;
    cert.serial = serial;
    cert.not_before = parsed->front().not_before;
    cert.not_after = parsed->front().not_after;
    cert.chain_pem = chain;
    cert.private_key = key;
    auto stored = fx_.store().CompleteOrder(scope, *made->lease, cert);
    EXPECT_TRUE(stored.ok()) << stored.status();
    return stored.ok() ? *stored : storage::Certificate{};
  }
};

TEST_F(HijackTest, AHealthyAccountIsVerifiedAndLeftAlone) {
  AccountView v1 = Create();
  const int found_before = ca_.CountCalls("POST", "/new-acct");
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  // Both questions were asked: newAccount with onlyReturnExisting, then the account itself.
  EXPECT_EQ(ca_.CountCalls("POST", "/new-acct"), found_before + 1);
  auto calls = ca_.calls();
  ASSERT_TRUE(calls.back().jws.has_value());
  EXPECT_EQ(calls.back().path, "/acct/1");
  EXPECT_EQ(calls.back().jws->payload, "");
  EXPECT_FALSE(Stored(v1.account.id).hijacked_at.has_value());
  EXPECT_EQ(Stored(v1.account.id).status, storage::AccountStatus::kValid);
  EXPECT_EQ(LastAudit("AccountHijackDetected"), nullptr);
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_account_verifications_total{result=\"ok\"} 1"));
}

TEST_F(HijackTest, AnAccountWhoseKeyTheCaNoLongerKnowsIsMarkedAndIssuesNothing) {
  fx_.clock().Set(testing::TestChainValidTime());
  std::string order_state;
  testing::ScriptHappyCa(ca_, &order_state);
  AccountView v1 = Create();
  ForgetOurKey();
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  storage::Account marked = Stored(v1.account.id);
  ASSERT_TRUE(marked.hijacked_at.has_value());
  EXPECT_EQ(marked.status, storage::AccountStatus::kValid);  // at the CA, for someone else
  const storage::AuditEvent* row = LastAudit("AccountHijackDetected");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->account, v1.account.id);
  EXPECT_THAT(row->detail, HasSubstr("the CA knows no account for the active key (version 1)"));
  EXPECT_THAT(row->detail, HasSubstr("accountDoesNotExist"));
  const std::string text = metrics_.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_account_hijacks_detected_total{tenant=\"acme-corp\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_accounts_hijacked{tenant=\"acme-corp\"} 1"));
  // Issuance stops, naming the account; so does anything else that would sign with its key.
  const int orders_before = ca_.CountCalls("POST", "/new-order");
  EXPECT_THAT(issuer_->Issue(host_, HostRequest()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       v1.account.account_url + " was taken over at the CA"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), orders_before);
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, "hijacked"));
  // GetAccount shows it.
  auto view = accounts_->GetAccount(admin_);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->account.hijacked_at, marked.hijacked_at);
  // Marked once: a later job asks the CA nothing.
  const int calls_before = static_cast<int>(ca_.calls().size());
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  EXPECT_EQ(static_cast<int>(ca_.calls().size()), calls_before);
}

TEST_F(HijackTest, AnAccountTheCaAnswersWithAnotherUrlIsMarked) {
  AccountView v1 = Create();
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "valid"}},
                                {{"Location", ScriptedServer::Url("/acct/7")}});
  });
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  EXPECT_TRUE(Stored(v1.account.id).hijacked_at.has_value());
  const storage::AuditEvent* row = LastAudit("AccountHijackDetected");
  ASSERT_NE(row, nullptr);
  EXPECT_THAT(row->detail, HasSubstr("with another account: " + ScriptedServer::Url("/acct/7")));
}

TEST_F(HijackTest, AnAccountTheCaReportsDeactivatedIsMarkedAndRecordedClosed) {
  AccountView v1 = Create();
  ca_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "deactivated"}});
  });
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  storage::Account marked = Stored(v1.account.id);
  EXPECT_TRUE(marked.hijacked_at.has_value());
  EXPECT_EQ(marked.status, storage::AccountStatus::kDeactivated);
  const storage::AuditEvent* row = LastAudit("AccountHijackDetected");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->detail, "the CA reports the account deactivated, which the service did not do");
  EXPECT_THAT(issuer_->Issue(host_, HostRequest()),
              StatusIs(absl::StatusCode::kFailedPrecondition, "hijacked"));
}

// Issue 11 item 6: a deactivation the service asked for, whose answer was lost, leaves the
// account closed at the CA while the record says valid. Verification then records it
// deactivated; it is no hijack.
TEST_F(HijackTest, OurOwnDeactivationWhoseAnswerWasLostIsRecordedNotTakenForAHijack) {
  AccountView v1 = Create();
  auto closed = std::make_shared<std::atomic<bool>>(false);
  ca_.On("POST", "/acct/1", [closed](const Call& c) {
    auto payload = nlohmann::json::parse(c.jws->payload, nullptr, false);
    if (payload.is_object() && payload.value("status", "") == "deactivated") {
      closed->store(true);  // done at the CA; the answer never arrives whole
      return ScriptedServer::Raw(200, "text/html", "<html>proxy error</html>");
    }
    return ScriptedServer::Json(200, {{"status", closed->load() ? "deactivated" : "valid"}});
  });
  EXPECT_FALSE(accounts_->Deactivate(admin_, v1.account.account_url).ok());
  ASSERT_TRUE(closed->load());
  EXPECT_EQ(Stored(v1.account.id).status, storage::AccountStatus::kValid);

  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  storage::Account stored = Stored(v1.account.id);
  EXPECT_FALSE(stored.hijacked_at.has_value());
  EXPECT_EQ(stored.status, storage::AccountStatus::kDeactivated);
  EXPECT_EQ(LastAudit("AccountHijackDetected"), nullptr);
  const storage::AuditEvent* row = LastAudit("AccountUnusableAtCa");
  ASSERT_NE(row, nullptr);
  EXPECT_THAT(row->detail, HasSubstr("after the service asked to deactivate it"));
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_account_verifications_total{result=\"deactivated\"} 1"));
  EXPECT_THAT(metrics_.Render(),
              ::testing::Not(HasSubstr("acmevault_account_hijacks_detected_total{tenant=")));
}

// Issue 11 item 6: a job about a hijacked account's authorization ends at once, naming the
// hijack, rather than failing attempt after attempt until the engine gives up.
TEST_F(HijackTest, ADeactivationJobOfAHijackedAccountEndsNamingTheHijack) {
  AccountView v1 = Create();
  ASSERT_TRUE(fx_.store()
                  .RecordAuthorization(fx_.AdminScope(tenant_),
                                       {v1.account.id, std::nullopt,
                                        ScriptedServer::Url("/authz/1"), "a.example.com",
                                        storage::AuthorizationStatus::kValid,
                                        fx_.clock().Now() + absl::Hours(240)})
                  .ok());
  ForgetOurKey();
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kDone);
  ASSERT_TRUE(Stored(v1.account.id).hijacked_at.has_value());
  storage::AuthorizationFilter filter;
  auto outstanding =
      fx_.store().ListOutstandingAuthorizations(fx_.AdminScope(tenant_), filter);
  ASSERT_TRUE(outstanding.ok() && outstanding->size() == 1u) << outstanding.status();
  storage::ClaimedJob claimed;
  claimed.job.tenant = tenant_;
  claimed.job.kind = kDeactivateAuthorizationJob;
  claimed.job.subject = absl::StrCat(outstanding->front().id);
  const int before = ca_.CountCalls("POST", "/authz/1");
  JobOutcome outcome = accounts_->DeactivateByPolicy(
      JobRun(claimed, fx_.clock().Now(), std::make_shared<std::atomic<bool>>(false)));
  EXPECT_EQ(outcome.kind(), JobOutcome::Kind::kFailedPermanently);
  EXPECT_THAT(outcome.error(), StatusIs(absl::StatusCode::kFailedPrecondition, "hijacked"));
  EXPECT_EQ(ca_.CountCalls("POST", "/authz/1"), before);  // nothing signed for it
}

TEST_F(HijackTest, ATransientErrorGivesNoVerdict) {
  AccountView v1 = Create();
  ca_.On("POST", "/new-acct",
         [](const Call&) { return ScriptedServer::Raw(503, "text/plain", "down"); });
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kFailed);
  ca_.On("POST", "/new-acct", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "valid"}},
                                {{"Location", ScriptedServer::Url("/acct/1")}});
  });
  ca_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Problem(429, "rateLimited", "slow down");
  });
  EXPECT_EQ(Verify(v1.account.id).kind(), JobOutcome::Kind::kFailed);
  EXPECT_FALSE(Stored(v1.account.id).hijacked_at.has_value());
  EXPECT_EQ(Stored(v1.account.id).status, storage::AccountStatus::kValid);
  EXPECT_EQ(LastAudit("AccountHijackDetected"), nullptr);
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_account_verifications_total{result=\"failed\"} 2"));
}

TEST_F(HijackTest, CompromiseResponseOnAHijackedAccountNeedsNoAccountKey) {
  fx_.clock().Set(testing::TestChainValidTime());
  std::string order_state;
  testing::ScriptHappyCa(ca_, &order_state);
  AccountView v1 = Create();
  const crypto::PrivateKey leaf_key = testing::TestLeafKey();
  storage::Certificate service_held = Stores(v1.account.id, "0a01", &leaf_key);
  storage::Certificate host_held = Stores(v1.account.id, "0a02", nullptr);
  ASSERT_TRUE(fx_.store()
                  .RecordAuthorization(fx_.AdminScope(tenant_),
                                       {v1.account.id, std::nullopt,
                                        ScriptedServer::Url("/authz/1"), "a.example.com",
                                        storage::AuthorizationStatus::kValid,
                                        fx_.clock().Now() + absl::Hours(240)})
                  .ok());
  fx_.clock().Advance(absl::Minutes(1));
  ForgetOurKey();
  auto report = accounts_->RespondToCompromise(admin_, /*deactivate_account=*/true, std::nullopt);
  ASSERT_TRUE(report.ok()) << report.status();
  // Found by the verification the run starts with.
  EXPECT_TRUE(Stored(v1.account.id).hijacked_at.has_value());
  ASSERT_EQ(report->steps.size(), 5u);
  EXPECT_EQ(report->steps[0].name, "hijack_detected");
  EXPECT_THAT(report->steps[0].detail, HasSubstr("the CA knows no account for the active key"));
  EXPECT_EQ(report->steps[1].name, "new_account");
  EXPECT_THAT(report->steps[1].detail,
              HasSubstr("new account " + ScriptedServer::Url("/acct/2") + " with a new key"));
  EXPECT_EQ(report->steps[2].name, "reissue");
  EXPECT_TRUE(report->steps[2].done);
  EXPECT_THAT(report->steps[2].detail, HasSubstr("1 held by hosts, not reissued"));
  EXPECT_EQ(report->steps[3].name, "revoke_by_certificate_key");
  EXPECT_EQ(report->steps[3].detail,
            "1 revoked with their certificate keys (reason superseded)");
  EXPECT_EQ(report->steps[4].name, "not_done");
  EXPECT_FALSE(report->steps[4].done);
  EXPECT_THAT(report->steps[4].detail, HasSubstr("1 certificates whose keys their hosts hold"));
  EXPECT_THAT(report->steps[4].detail, HasSubstr(host_held.serial));
  EXPECT_THAT(report->steps[4].detail, HasSubstr("1 authorizations of the hijacked account"));
  EXPECT_THAT(report->steps[4].detail,
              HasSubstr("the hijacked account " + v1.account.account_url + " cannot be deactivated"));
  // No key change, no deactivation: nothing was signed with the hijacked account's key after
  // the verification. The revocation carried the certificate's own key (jwk, no kid).
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 0);
  std::optional<crypto::ParsedJws> revocation;
  for (const auto& call : ca_.calls()) {
    if (call.path == "/revoke" && call.jws) revocation = call.jws;
    if (call.path == "/authz/1" && call.jws) {
      EXPECT_THAT(call.jws->payload, ::testing::Not(HasSubstr("deactivated")));
    }
  }
  ASSERT_TRUE(revocation.has_value());
  EXPECT_FALSE(revocation->header.contains("kid"));
  auto jwk = crypto::PublicKeyFromJwk(revocation->header["jwk"]);
  ASSERT_TRUE(jwk.ok());
  EXPECT_EQ(jwk->ToDer(), leaf_key.public_key().ToDer());
  auto revoked = fx_.store().GetCertificate(fx_.AdminScope(tenant_), service_held.id);
  ASSERT_TRUE(revoked.ok());
  EXPECT_TRUE(revoked->revoked_at.has_value());
  auto untouched = fx_.store().GetCertificate(fx_.AdminScope(tenant_), host_held.id);
  ASSERT_TRUE(untouched.ok());
  EXPECT_FALSE(untouched->revoked_at.has_value());
  // The tenant's account is the new one; the hijacked one stays marked.
  EXPECT_EQ(report->account.account.account_url, ScriptedServer::Url("/acct/2"));
  EXPECT_FALSE(report->account.account.hijacked_at.has_value());
  EXPECT_TRUE(Stored(v1.account.id).hijacked_at.has_value());
  EXPECT_THAT(metrics_.Render(), HasSubstr("acmevault_accounts_hijacked{tenant=\"acme-corp\"} 0"));
}

}  // namespace
}  // namespace acmevault::service
