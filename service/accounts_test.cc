#include "service/accounts.h"

#include "acme/testing/scripted_server.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::KeyState;
using storage::Role;
using storage::testing::StatusIs;
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
    runner_ = *OrderRunner::Create(
        fx_.WithStore(OrderRunner::Options{.clients = clients_.get(), .clock = &fx_.clock()}));
    issuer_ = *Issuer::Create(
        fx_.WithStore(Issuer::Options{.runner = runner_.get(), .clock = &fx_.clock()}));
    accounts_ =
        *AccountManager::Create(fx_.WithStore(AccountManager::Options{.clients = clients_.get(),
                                                                      .issuer = issuer_.get(),
                                                                      .metrics = &metrics_,
                                                                      .clock = &fx_.clock()}));
  }

  AccountView Create() {
    auto view = accounts_->CreateAccount(admin_, {{"mailto:pki@example.com"}, true});
    EXPECT_TRUE(view.ok()) << view.status();
    return view.ok() ? *view : AccountView{};
  }

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
  std::unique_ptr<OrderRunner> runner_;
  std::unique_ptr<Issuer> issuer_;
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

TEST_F(AccountsTest, APendingKeyLeftByACrashIsResolvedByAskingTheCa) {
  AccountView v1 = Create();
  auto scope = fx_.AdminScope(tenant_);
  auto orphan = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(orphan.ok());
  ASSERT_TRUE(fx_.store().AddPendingKey(scope, v1.account.id, *orphan, KeyInfo(orphan->public_key())).ok());
  // While young it is a rollover in progress.
  EXPECT_THAT(accounts_->Rollover(admin_, std::nullopt, ""),
              StatusIs(absl::StatusCode::kAborted, "in progress"));
  // Later: the CA never saw it (the probe finds no account), so it is discarded and the
  // rollover proceeds with a fresh key.
  fx_.clock().Advance(absl::Minutes(5));
  std::string orphan_thumb = crypto::Thumbprint(orphan->public_key());
  ca_.On("POST", "/new-acct", [orphan_thumb](const Call& c) {
    auto jwk = crypto::PublicKeyFromJwk(c.jws->header["jwk"]);
    if (jwk.ok() && crypto::Thumbprint(*jwk) == orphan_thumb) {
      return ScriptedServer::Problem(400, "accountDoesNotExist", "unknown key");
    }
    return ScriptedServer::Json(200, {{"status", "valid"}}, {{"Location", ScriptedServer::Url("/acct/1")}});
  });
  auto r = accounts_->Rollover(admin_, std::nullopt, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->account.active_key.version, 3);
  EXPECT_THAT(States(v1.account.id),
              ::testing::ElementsAre(KeyState::kRetired, KeyState::kRetired, KeyState::kActive));
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
  auto second = accounts_->RespondToCompromise(admin_, true, std::nullopt);
  ASSERT_TRUE(second.ok()) << second.status();
  // The rollover is not repeated; every step is done, in order.
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 1);
  ASSERT_EQ(second->steps.size(), 5u);
  EXPECT_EQ(second->steps[0].name, "rollover");
  EXPECT_EQ(second->steps[0].detail, "done by an earlier run");
  EXPECT_EQ(second->steps[1].detail, "1 deactivated, 0 skipped");
  EXPECT_EQ(second->steps[4].name, "deactivate_account");
  EXPECT_TRUE(second->steps[4].done);
  // The leaked key is compromised and never used again.
  EXPECT_THAT(States(v1.account.id),
              ::testing::ElementsAre(KeyState::kCompromised, KeyState::kActive));
  EXPECT_EQ(second->account.account.status, storage::AccountStatus::kDeactivated);
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

TEST_F(AccountsTest, MissingCollaboratorsAreRefusedAtCreation) {
  EXPECT_THAT(
      AccountManager::Create(fx_.WithStore(AccountManager::Options{.issuer = issuer_.get()})),
      StatusIs(absl::StatusCode::kInvalidArgument, "AccountManager: Options.clients is required"));
  auto no_audit =
      fx_.WithStore(AccountManager::Options{.clients = clients_.get(), .issuer = issuer_.get()});
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

}  // namespace
}  // namespace acmevault::service
