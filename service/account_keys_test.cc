#include "service/account_keys.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "crypto/jwk.h"
#include "crypto/pkcs11.h"
#include "crypto/testing/softhsm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using ::acmevault::storage::testing::StatusIs;

crypto::Pkcs11Token* Token() { return crypto::testing::SharedTestToken(); }

class AccountKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Token(), nullptr) << "the SoftHSM2 test token did not open";
    fx_.UseToken(Token());
    tenant_ = fx_.AddTenant("alpha", {"*.alpha.example"});
    scope_ = fx_.AdminScope(tenant_);
  }

  // An account whose first key is `key`, active.
  storage::AccountId Store(const NewAccountKey& key) {
    auto account = fx_.store().CreateAccount(scope_, "https://ca.test/dir", key.material, key.info,
                                             storage::KeyState::kActive);
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? account->id : 0;
  }

  const crypto::TokenKeyObject* InToken(const std::string& id) {
    auto objects = Token()->ListKeyObjects();
    EXPECT_TRUE(objects.ok()) << objects.status();
    if (!objects.ok()) return nullptr;
    objects_ = *std::move(objects);
    for (const auto& o : objects_) {
      if (o.object_id == id) return &o;
    }
    return nullptr;
  }

  testing::Fixture fx_;
  storage::TenantId tenant_ = 0;
  storage::Scope scope_;
  std::vector<crypto::TokenKeyObject> objects_;
};

TEST_F(AccountKeysTest, VaultKeysAreMadeInMemoryAndSealed) {
  ASSERT_OK_AND_ASSIGN(NewAccountKey key, fx_.keys().Generate(storage::KeyStorage::kVault,
                                                              crypto::KeyAlgorithm::kEcdsaP256));
  EXPECT_NE(key.material.vault_key, nullptr);
  EXPECT_TRUE(key.material.token_object.empty());
  storage::AccountId account = Store(key);
  ASSERT_OK_AND_ASSIGN(SigningKey active, fx_.keys().Active(scope_, account, "test"));
  EXPECT_TRUE(active.info.token_object.empty());
  ASSERT_OK_AND_ASSIGN(std::string signature, active.signer->Sign("data"));
  EXPECT_TRUE(key.signer->public_key().Verify("data", signature).ok());
}

TEST_F(AccountKeysTest, TokenKeysAreMadeInTheTokenAndNeverLeaveIt) {
  for (crypto::KeyAlgorithm algorithm :
       {crypto::KeyAlgorithm::kEcdsaP256, crypto::KeyAlgorithm::kEcdsaP384,
        crypto::KeyAlgorithm::kRsa2048}) {
    SCOPED_TRACE(std::string(crypto::KeyAlgorithmName(algorithm)));
    ASSERT_OK_AND_ASSIGN(NewAccountKey key,
                         fx_.keys().Generate(storage::KeyStorage::kPkcs11, algorithm));
    EXPECT_EQ(key.material.vault_key, nullptr);
    ASSERT_FALSE(key.material.token_object.empty());
    EXPECT_EQ(key.info.thumbprint, crypto::Thumbprint(key.signer->public_key()));
    // Every key the service makes in the token: sensitive, never extractable.
    const crypto::TokenKeyObject* object = InToken(key.material.token_object);
    ASSERT_NE(object, nullptr);
    EXPECT_TRUE(object->sensitive);
    EXPECT_FALSE(object->extractable);
    EXPECT_TRUE(object->never_extractable);
    EXPECT_FALSE(object->value_readable);

    fx_.store().DisableTenant(scope_).IgnoreError();  // One account per tenant and directory.
    tenant_ = fx_.AddTenant(absl::StrCat("t", static_cast<int>(algorithm)), {"*.x.example"});
    scope_ = fx_.AdminScope(tenant_);
    storage::AccountId account = Store(key);
    ASSERT_OK_AND_ASSIGN(SigningKey active, fx_.keys().Active(scope_, account, "test"));
    EXPECT_EQ(active.info.token_object, key.material.token_object);
    EXPECT_EQ(active.info.kek_id, "");
    ASSERT_OK_AND_ASSIGN(std::string signature, active.signer->Sign("data"));
    auto stored_public = crypto::PublicKeyFromJwk(nlohmann::json::parse(active.info.public_key.public_jwk));
    ASSERT_TRUE(stored_public.ok());
    EXPECT_TRUE(stored_public->Verify("data", signature).ok());
  }
}

TEST_F(AccountKeysTest, WithoutATokenPkcs11KeysAreAFailedPrecondition) {
  testing::Fixture no_token;
  EXPECT_THAT(no_token.keys().Generate(storage::KeyStorage::kPkcs11,
                                       crypto::KeyAlgorithm::kEcdsaP256),
              StatusIs(absl::StatusCode::kFailedPrecondition, "ServerConfig.pkcs11"));
}

TEST_F(AccountKeysTest, AKeyObjectGoneIsAFailedPreconditionNamingIt) {
  ASSERT_OK_AND_ASSIGN(NewAccountKey key, fx_.keys().Generate(storage::KeyStorage::kPkcs11,
                                                              crypto::KeyAlgorithm::kEcdsaP256));
  storage::AccountId account = Store(key);
  ASSERT_TRUE(Token()->DestroyKeyPair(key.material.token_object).ok());
  EXPECT_THAT(fx_.keys().Active(scope_, account, "test"),
              StatusIs(absl::StatusCode::kFailedPrecondition, key.material.token_object));
}

TEST_F(AccountKeysTest, RetiredTokenKeysGoAfterTheGraceOnly) {
  ASSERT_OK_AND_ASSIGN(NewAccountKey first, fx_.keys().Generate(storage::KeyStorage::kPkcs11,
                                                                crypto::KeyAlgorithm::kEcdsaP256));
  storage::AccountId account = Store(first);
  ASSERT_OK_AND_ASSIGN(storage::KeyLease lease,
                       fx_.store().AcquireKeyLease(scope_, account, absl::Minutes(5)));
  ASSERT_OK_AND_ASSIGN(NewAccountKey second, fx_.keys().Generate(storage::KeyStorage::kPkcs11,
                                                                 crypto::KeyAlgorithm::kEcdsaP256));
  ASSERT_OK(fx_.store().AddPendingKey(scope_, lease, second.material, second.info).status());
  ASSERT_OK(fx_.store().PromoteKey(scope_, lease, 2));

  fx_.clock().Advance(absl::Hours(23));
  ASSERT_OK_AND_ASSIGN(int early, fx_.keys().DestroyRetiredKeys(scope_));
  EXPECT_EQ(early, 0);
  EXPECT_NE(InToken(first.material.token_object), nullptr);
  fx_.clock().Advance(absl::Hours(2));
  ASSERT_OK_AND_ASSIGN(int destroyed, fx_.keys().DestroyRetiredKeys(scope_));
  EXPECT_EQ(destroyed, 1);
  EXPECT_EQ(InToken(first.material.token_object), nullptr);
  EXPECT_NE(InToken(second.material.token_object), nullptr) << "the active key stays";
  ASSERT_OK_AND_ASSIGN(auto keys, fx_.store().ListKeys(scope_, account));
  EXPECT_TRUE(keys[0].destroyed_at.has_value());
  ASSERT_OK_AND_ASSIGN(int again, fx_.keys().DestroyRetiredKeys(scope_));
  EXPECT_EQ(again, 0);
}

// A rollover by a new account (a CA without keyChange) moves a token key to the new account
// by its object id: the old account's retired row must not destroy what the new one signs with.
TEST_F(AccountKeysTest, ARetiredTokenKeyStillInServiceUnderANewAccountStays) {
  ASSERT_OK_AND_ASSIGN(NewAccountKey first, fx_.keys().Generate(storage::KeyStorage::kPkcs11,
                                                                crypto::KeyAlgorithm::kEcdsaP256));
  storage::AccountId old = Store(first);
  ASSERT_OK(fx_.store().RecordAccountUrl(scope_, old, "https://ca.test/acct/1"));
  ASSERT_OK_AND_ASSIGN(storage::KeyLease lease,
                       fx_.store().AcquireKeyLease(scope_, old, absl::Minutes(5)));
  ASSERT_OK_AND_ASSIGN(NewAccountKey second, fx_.keys().Generate(storage::KeyStorage::kPkcs11,
                                                                 crypto::KeyAlgorithm::kEcdsaP256));
  ASSERT_OK(fx_.store().AddPendingKey(scope_, lease, second.material, second.info).status());
  ASSERT_OK_AND_ASSIGN(storage::Account fresh,
                       fx_.store().ReplaceAccount(scope_, lease, 2, "https://ca.test/acct/2",
                                                  /*old_keys_compromised=*/true));
  fx_.clock().Advance(absl::Hours(25));
  ASSERT_OK_AND_ASSIGN(int destroyed, fx_.keys().DestroyRetiredKeys(scope_));
  EXPECT_EQ(destroyed, 1);  // The old account's own, compromised key.
  EXPECT_EQ(InToken(first.material.token_object), nullptr);
  EXPECT_NE(InToken(second.material.token_object), nullptr);
  ASSERT_OK_AND_ASSIGN(SigningKey active, fx_.keys().Active(scope_, fresh.id, "test"));
  EXPECT_OK(active.signer->Sign("payload").status());
}

TEST_F(AccountKeysTest, DiscardRemovesAKeyThatWasNeverStored) {
  ASSERT_OK_AND_ASSIGN(NewAccountKey key, fx_.keys().Generate(storage::KeyStorage::kPkcs11,
                                                              crypto::KeyAlgorithm::kEcdsaP256));
  ASSERT_NE(InToken(key.material.token_object), nullptr);
  fx_.keys().Discard(key);
  EXPECT_EQ(InToken(key.material.token_object), nullptr);
}

}  // namespace
}  // namespace acmevault::service
