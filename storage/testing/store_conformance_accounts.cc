// The conformance suite (store_conformance.h): ACME accounts and their sealed keys.
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

namespace {

// ---------------------------------------------------------------------------------------------
// Accounts and keys

TEST_P(StoreConformanceTest, AccountKeyIsSealedAndUnsealsToTheSameKey) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  crypto::PrivateKey key = NewKey(crypto::KeyAlgorithm::kEcdsaP384);
  ASSERT_OK_AND_ASSIGN(Account account, store().CreateAccount(scope, "https://ca.test/dir", key,
                                                              InfoFor(key), KeyState::kActive));
  EXPECT_EQ(account.tenant, a.id);
  EXPECT_EQ(account.status, AccountStatus::kPending);
  EXPECT_TRUE(account.account_url.empty());

  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey active, store().GetActiveKey(scope, account.id, "jws"));
  EXPECT_EQ(active.info.version, 1);
  EXPECT_EQ(active.info.state, KeyState::kActive);
  EXPECT_EQ(active.info.algorithm, crypto::KeyAlgorithm::kEcdsaP384);
  EXPECT_EQ(active.info.public_key.public_jwk, InfoFor(key).public_jwk);
  EXPECT_EQ(active.info.kek_id, "kek-a");
  EXPECT_EQ(active.info.activated_at, clock().Now());
  EXPECT_EQ(active.private_key->public_key().ToDer(), key.public_key().ToDer());
  auto signature = active.private_key->Sign("payload");
  ASSERT_TRUE(signature.ok());
  EXPECT_OK(key.public_key().Verify("payload", *signature));

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, {}));
  ASSERT_THAT(audit.items, SizeIs(3));
  EXPECT_EQ(audit.items[1].event.action, "CreateAccount");
  EXPECT_EQ(audit.items[2].event.action, "UseAccountKey");
  EXPECT_EQ(audit.items[2].event.account, account.id);
  EXPECT_EQ(audit.items[2].event.key_version, 1);
  EXPECT_EQ(audit.items[2].event.detail, "jws");
  EXPECT_EQ(audit.items[2].actor.identity, "spiffe://test/admin");
  EXPECT_EQ(audit.items[2].actor.rpc, "test/Rpc");
}

// A key held in a PKCS#11 token: the store keeps its object id and public key, nothing else.
TEST_P(StoreConformanceTest, TokenKeyIsStoredAsItsObjectIdOnly) {
  Tenant a = MakeTenant("alpha");
  EXPECT_EQ(a.spec.policy.key_storage, KeyStorage::kVault);
  TenantSpec spec = a.spec;
  spec.policy.key_storage = KeyStorage::kPkcs11;
  ASSERT_OK_AND_ASSIGN(Tenant updated, store().UpdateTenant(ScopeOf(a), spec));
  EXPECT_EQ(updated.spec.policy.key_storage, KeyStorage::kPkcs11);
  ASSERT_OK_AND_ASSIGN(Tenant read, store().GetTenant(ScopeOf(a)));
  EXPECT_EQ(read.spec.policy.key_storage, KeyStorage::kPkcs11);
  spec.name = "alpha-two";
  ASSERT_OK_AND_ASSIGN(Tenant created,
                       store().CreateTenant(Actor{"spiffe://test/platform", "test/Setup"}, spec));
  EXPECT_EQ(created.spec.policy.key_storage, KeyStorage::kPkcs11);
  const Scope scope = ScopeOf(a);
  // The public key stands for the token's; any key gives valid public facts.
  crypto::PrivateKey public_half = NewKey();
  ASSERT_OK_AND_ASSIGN(
      Account account,
      store().CreateAccount(scope, "https://ca.test/dir",
                            AccountKeyMaterial::InToken("acmevault-0001",
                                                        crypto::KeyAlgorithm::kEcdsaP256),
                            InfoFor(public_half), KeyState::kActive));
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey active, store().GetActiveKey(scope, account.id, "jws"));
  EXPECT_EQ(active.info.token_object, "acmevault-0001");
  EXPECT_EQ(active.info.kek_id, "");
  EXPECT_FALSE(active.private_key.has_value());
  EXPECT_EQ(active.info.public_key.thumbprint, InfoFor(public_half).thumbprint);
  EXPECT_EQ(AuditActions(scope).back(), "UseAccountKey");

  // Rollover to another token key, then the retired one is recorded destroyed, once.
  const KeyLease lease = LeaseKeys(scope, account.id);
  crypto::PrivateKey next_half = NewKey();
  EXPECT_THAT(store().MarkKeyDestroyed(scope, account.id, 1),
              StatusIs(kFailedPrecondition, "active"));
  ASSERT_OK(store()
                .AddPendingKey(scope, lease,
                               AccountKeyMaterial::InToken("acmevault-0002",
                                                           crypto::KeyAlgorithm::kEcdsaP256),
                               InfoFor(next_half))
                .status());
  ASSERT_OK(store().PromoteKey(scope, lease, 2));
  clock().Advance(absl::Minutes(1));
  ASSERT_OK(store().MarkKeyDestroyed(scope, account.id, 1));
  ASSERT_OK(store().MarkKeyDestroyed(scope, account.id, 1));
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, account.id));
  ASSERT_THAT(keys, SizeIs(2));
  EXPECT_EQ(keys[0].token_object, "acmevault-0001");
  EXPECT_EQ(keys[0].destroyed_at, clock().Now());
  EXPECT_EQ(keys[1].token_object, "acmevault-0002");
  EXPECT_FALSE(keys[1].destroyed_at.has_value());
  EXPECT_THAT(store().GetKey(scope, account.id, 1, "probe"),
              StatusIs(kFailedPrecondition, "destroyed"));
  EXPECT_THAT(AuditActions(scope), ::testing::Contains("DestroyAccountKey").Times(1));
}

TEST_P(StoreConformanceTest, KeyMaterialIsOneKindAndVaultKeysAreNeverDestroyed) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  crypto::PrivateKey key = NewKey();
  EXPECT_THAT(store().CreateAccount(scope, "https://ca.test/dir",
                                    AccountKeyMaterial::InToken("", crypto::KeyAlgorithm::kEcdsaP256),
                                    InfoFor(key), KeyState::kActive),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().CreateAccount(
                  scope, "https://ca.test/dir",
                  AccountKeyMaterial::InToken("has space", crypto::KeyAlgorithm::kEcdsaP256),
                  InfoFor(key), KeyState::kActive),
              StatusIs(kInvalidArgument, "printable"));
  EXPECT_THAT(store().CreateAccount(
                  scope, "https://ca.test/dir",
                  AccountKeyMaterial::InToken(std::string(129, 'x'),
                                              crypto::KeyAlgorithm::kEcdsaP256),
                  InfoFor(key), KeyState::kActive),
              StatusIs(kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(Account account, store().CreateAccount(scope, "https://ca.test/dir", key,
                                                              InfoFor(key), KeyState::kActive));
  const KeyLease lease = LeaseKeys(scope, account.id);
  crypto::PrivateKey next = NewKey();
  ASSERT_OK(store().AddPendingKey(scope, lease, next, InfoFor(next)).status());
  ASSERT_OK(store().PromoteKey(scope, lease, 2));
  EXPECT_THAT(store().MarkKeyDestroyed(scope, account.id, 1),
              StatusIs(kFailedPrecondition, "vault"));
  EXPECT_THAT(store().MarkKeyDestroyed(scope, account.id, 7), StatusIs(kNotFound));
}

TEST_P(StoreConformanceTest, AccountUrlIsSetOnce) {
  Tenant a = MakeTenant("alpha");
  Account account = MakeAccount(ScopeOf(a));
  ASSERT_OK(store().RecordAccountUrl(ScopeOf(a), account.id, "https://ca.test/acct/1"));
  ASSERT_OK(store().RecordAccountUrl(ScopeOf(a), account.id, "https://ca.test/acct/1"));
  EXPECT_THAT(store().RecordAccountUrl(ScopeOf(a), account.id, "https://ca.test/acct/2"),
              StatusIs(kFailedPrecondition, "another URL"));
  ASSERT_OK_AND_ASSIGN(Account got, store().GetAccount(ScopeOf(a), account.id));
  EXPECT_EQ(got.account_url, "https://ca.test/acct/1");
  EXPECT_EQ(got.status, AccountStatus::kValid);
  EXPECT_THAT(AuditActions(ScopeOf(a)),
              ElementsAre("CreateTenant", "CreateAccount", "RecordAccountUrl"));
}

TEST_P(StoreConformanceTest, EphemeralAccountsAreOutsideTheOneLiveAccountRule) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account main = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, main.id, "https://ca.test/acct/1"));
  crypto::PrivateKey k1 = NewKey();
  crypto::PrivateKey k2 = NewKey();
  ASSERT_OK_AND_ASSIGN(Account e1, store().CreateEphemeralAccount(scope, main.directory_url, k1,
                                                                  InfoFor(k1)));
  ASSERT_OK_AND_ASSIGN(Account e2, store().CreateEphemeralAccount(scope, main.directory_url, k2,
                                                                  InfoFor(k2)));
  EXPECT_TRUE(e1.ephemeral);
  EXPECT_EQ(e1.status, AccountStatus::kPending);
  EXPECT_FALSE(main.ephemeral);
  // Its key is active from the start: the order's step signs newAccount with it.
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey key, store().GetActiveKey(scope, e1.id, "test"));
  EXPECT_EQ(key.info.version, 1);
  EXPECT_EQ(key.private_key->public_key().ToDer(), k1.public_key().ToDer());
  ASSERT_OK(store().RecordAccountUrl(scope, e1.id, "https://ca.test/acct/2"));
  ASSERT_OK(store().RecordAccountUrl(scope, e2.id, "https://ca.test/acct/3"));
  ASSERT_OK(store().SetAccountStatus(scope, e1.id, AccountStatus::kDeactivated));
  ASSERT_OK_AND_ASSIGN(std::vector<Account> listed, store().ListAccounts(scope));
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_FALSE(listed[0].ephemeral);
  EXPECT_TRUE(listed[1].ephemeral);
  EXPECT_EQ(listed[1].status, AccountStatus::kDeactivated);
  EXPECT_TRUE(listed[2].ephemeral);
  EXPECT_EQ(listed[2].status, AccountStatus::kValid);
  // The main account still counts alone: a second one is refused.
  crypto::PrivateKey k3 = NewKey();
  EXPECT_THAT(store().CreateAccount(scope, main.directory_url, k3, InfoFor(k3),
                                    KeyState::kPending),
              StatusIs(kAlreadyExists));
}

TEST_P(StoreConformanceTest, EphemeralAccountsLeftOpenAreListedForTheSweep) {
  constexpr char kClose[] = "deactivate_ephemeral_account";
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  Account main = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, main.id, "https://ca.test/acct/1"));
  auto ephemeral = [&](const Scope& in) {
    crypto::PrivateKey k = NewKey();
    auto made = store().CreateEphemeralAccount(in, main.directory_url, k, InfoFor(k));
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? *made : Account{};
  };
  auto ids = [](const std::vector<Account>& accounts) {
    std::vector<AccountId> out;
    for (const Account& x : accounts) out.push_back(x.id);
    return out;
  };
  Account ended = ephemeral(scope);     // its order valid or invalid: left open, listed
  Account flying = ephemeral(scope);    // its order in flight: not listed
  Account closing = ephemeral(scope);   // a close job open: not listed
  Account closed = ephemeral(scope);    // deactivated: not listed
  Account orderless = ephemeral(scope); // no order at all (abandoned by a crash): listed
  Account other = ephemeral(ScopeOf(b));
  ASSERT_OK(store().RecordAccountUrl(scope, ended.id, "https://ca.test/acct/2"));
  Lease ended_order = MakeOrder(scope, ended.id, {"a.example.com"});
  ASSERT_OK(store().TransitionOrder(scope, ended_order, OrderState::kInvalid, {"gone"}));
  MakeOrder(scope, flying.id, {"b.example.com"});
  ASSERT_OK(store().ScheduleJob(scope, NewJob{kClose, absl::StrCat(closing.id), "",
                                              clock().Now()},
                                clock().Now())
                .status());
  ASSERT_OK(store().SetAccountStatus(scope, closed.id, AccountStatus::kDeactivated));
  ASSERT_OK_AND_ASSIGN(std::vector<Account> listed,
                       store().ListEphemeralAccountsToClose(scope, clock().Now(), kClose));
  EXPECT_THAT(listed, IsEmpty());  // made at this very time: not before it
  clock().Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(listed, store().ListEphemeralAccountsToClose(scope, clock().Now(), kClose));
  EXPECT_THAT(ids(listed), ElementsAre(ended.id, orderless.id));
  EXPECT_EQ(listed[0].status, AccountStatus::kValid);
  ASSERT_OK_AND_ASSIGN(listed,
                       store().ListEphemeralAccountsToClose(ScopeOf(b), clock().Now(), kClose));
  EXPECT_THAT(ids(listed), ElementsAre(other.id));
  EXPECT_THAT(store().ListEphemeralAccountsToClose(scope, clock().Now(), "Bad Kind"),
              StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, RolloverPromotesPendingAndRetiresActiveTogether) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const KeyLease lease = LeaseKeys(scope, account.id);
  crypto::PrivateKey next = NewKey();
  clock().Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(AccountKey pending,
                       store().AddPendingKey(scope, lease, next, InfoFor(next)));
  EXPECT_EQ(pending.version, 2);
  EXPECT_EQ(pending.state, KeyState::kPending);
  EXPECT_FALSE(pending.activated_at.has_value());
  // RFC 8555 §7.3.5: the pending key is stored before keyChange; the old one still signs.
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey still, store().GetActiveKey(scope, account.id, "x"));
  EXPECT_EQ(still.info.version, 1);
  crypto::PrivateKey third = NewKey();
  EXPECT_THAT(store().AddPendingKey(scope, lease, third, InfoFor(third)),
              StatusIs(kAlreadyExists, "pending"));
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey probe, store().GetKey(scope, account.id, 2, "probe"));
  EXPECT_EQ(probe.private_key->public_key().ToDer(), next.public_key().ToDer());

  clock().Advance(absl::Minutes(1));
  ASSERT_OK(store().PromoteKey(scope, lease, 2));
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey now, store().GetActiveKey(scope, account.id, "x"));
  EXPECT_EQ(now.info.version, 2);
  EXPECT_EQ(now.private_key->public_key().ToDer(), next.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, account.id));
  ASSERT_THAT(keys, SizeIs(2));
  EXPECT_EQ(keys[0].state, KeyState::kRetired);
  EXPECT_EQ(keys[0].retired_at, clock().Now());
  EXPECT_EQ(keys[1].state, KeyState::kActive);
  EXPECT_EQ(keys[1].activated_at, clock().Now());
  EXPECT_THAT(store().PromoteKey(scope, lease, 1), StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().PromoteKey(scope, lease, 9), StatusIs(kNotFound));

  // A further rollover that the CA refuses is discarded.
  ASSERT_OK(store().AddPendingKey(scope, lease, third, InfoFor(third)).status());
  ASSERT_OK(store().DiscardPendingKey(scope, lease, 3));
  EXPECT_THAT(store().DiscardPendingKey(scope, lease, 3), StatusIs(kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(keys, store().ListKeys(scope, account.id));
  ASSERT_THAT(keys, SizeIs(3));
  EXPECT_EQ(keys[2].state, KeyState::kRetired);
  EXPECT_EQ(keys[1].state, KeyState::kActive);
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "AddPendingKey", "UseAccountKey",
                          "UseAccountKey", "PromoteKey", "UseAccountKey", "AddPendingKey",
                          "DiscardPendingKey"));
}

// The contact URLs the CA named are kept with the URL: the first kMaxAccountContacts, each
// clipped to kMaxAccountContactSize bytes, empty ones dropped. Recording the same URL again
// changes nothing; a replacement account keeps the replaced one's.
TEST_P(StoreConformanceTest, AnAccountKeepsTheContactTheCaNamedAndItsReplacementToo) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  EXPECT_THAT(account.contact, IsEmpty());
  std::vector<std::string> named = {"mailto:pki@alpha.example", "",
                                    "mailto:" + std::string(kMaxAccountContactSize, 'x')};
  for (int i = 0; i < 12; ++i) named.push_back(absl::StrCat("mailto:extra", i, "@alpha.example"));
  ASSERT_OK(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1", named));
  ASSERT_OK(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1",
                                     {"mailto:other@alpha.example"}));
  ASSERT_OK_AND_ASSIGN(Account got, store().GetAccount(scope, account.id));
  ASSERT_EQ(got.contact.size(), kMaxAccountContacts);
  EXPECT_EQ(got.contact[0], "mailto:pki@alpha.example");
  EXPECT_LE(got.contact[1].size(), kMaxAccountContactSize);
  EXPECT_TRUE(absl::StartsWith(got.contact[1], "mailto:xxx")) << got.contact[1];
  EXPECT_EQ(got.contact[2], "mailto:extra0@alpha.example");
  EXPECT_EQ(got.contact[9], "mailto:extra7@alpha.example");
  ASSERT_OK_AND_ASSIGN(std::vector<Account> listed, store().ListAccounts(scope));
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].contact, got.contact);

  const KeyLease lease = LeaseKeys(scope, account.id);
  crypto::PrivateKey next = NewKey();
  ASSERT_OK(store().AddPendingKey(scope, lease, next, InfoFor(next)).status());
  ASSERT_OK_AND_ASSIGN(Account fresh,
                       store().ReplaceAccount(scope, lease, 2, "https://ca.test/acct/2", false));
  EXPECT_EQ(fresh.contact, got.contact);
  ASSERT_OK_AND_ASSIGN(Account read, store().GetAccount(scope, fresh.id));
  EXPECT_EQ(read.contact, got.contact);
}

// A CA without keyChange: the pending key becomes the key of a new account the CA registered.
TEST_P(StoreConformanceTest, ReplaceAccountMovesThePendingKeyToANewValidAccount) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account old = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, old.id, "https://ca.test/acct/1"));
  const KeyLease lease = LeaseKeys(scope, old.id);
  crypto::PrivateKey next = NewKey(crypto::KeyAlgorithm::kEcdsaP384);
  ASSERT_OK(store().AddPendingKey(scope, lease, next, InfoFor(next)).status());
  clock().Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(Account fresh, store().ReplaceAccount(scope, lease, 2,
                                                             "https://ca.test/acct/2", false));
  EXPECT_NE(fresh.id, old.id);
  EXPECT_EQ(fresh.status, AccountStatus::kValid);
  EXPECT_EQ(fresh.account_url, "https://ca.test/acct/2");
  EXPECT_EQ(fresh.directory_url, old.directory_url);
  EXPECT_EQ(fresh.created_at, clock().Now());

  // The new account signs with the moved key, as its version 1.
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey active, store().GetActiveKey(scope, fresh.id, "jws"));
  EXPECT_EQ(active.info.version, 1);
  EXPECT_EQ(active.info.algorithm, crypto::KeyAlgorithm::kEcdsaP384);
  EXPECT_EQ(active.info.public_key.thumbprint, InfoFor(next).thumbprint);
  EXPECT_EQ(active.info.activated_at, clock().Now());
  EXPECT_EQ(active.private_key->public_key().ToDer(), next.public_key().ToDer());

  // The old account is closed here; its copy of the key retired, its own key left as it was.
  ASSERT_OK_AND_ASSIGN(Account closed, store().GetAccount(scope, old.id));
  EXPECT_EQ(closed.status, AccountStatus::kDeactivated);
  EXPECT_EQ(closed.deactivated_at, clock().Now());
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, old.id));
  ASSERT_THAT(keys, SizeIs(2));
  EXPECT_EQ(keys[0].state, KeyState::kActive);
  EXPECT_EQ(keys[1].state, KeyState::kRetired);
  ASSERT_OK_AND_ASSIGN(std::vector<Account> accounts, store().ListAccounts(scope));
  int valid = 0;
  for (const Account& account : accounts) valid += account.status == AccountStatus::kValid;
  EXPECT_EQ(valid, 1);

  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "RecordAccountUrl", "AddPendingKey",
                          "ReplaceAccount", "UseAccountKey"));
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, {"", 100}));
  const AuditEvent& last = audit.items[4].event;
  EXPECT_EQ(last.account, fresh.id);
  EXPECT_EQ(last.key_version, 1);
  EXPECT_EQ(last.acme_url, "https://ca.test/acct/2");
  EXPECT_THAT(last.detail, ::testing::HasSubstr(absl::StrCat("replaces account ", old.id)));

  // Done once: the old account is no longer valid.
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 2, "https://ca.test/acct/3", false),
              StatusIs(kFailedPrecondition, "not valid"));
}

TEST_P(StoreConformanceTest, ARefusedReplaceAccountChangesNothing) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account old = MakeAccount(scope);
  const KeyLease lease = LeaseKeys(scope, old.id);
  crypto::PrivateKey next = NewKey();
  ASSERT_OK(store().AddPendingKey(scope, lease, next, InfoFor(next)).status());
  // Still pending at the CA (no URL): nothing to replace.
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 2, "https://ca.test/acct/2", false),
              StatusIs(kFailedPrecondition, "pending"));
  ASSERT_OK(store().RecordAccountUrl(scope, old.id, "https://ca.test/acct/1"));
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 2, "https://ca.test/acct/1", false),
              StatusIs(kInvalidArgument, "own"));
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 2, "not a url", false),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 1, "https://ca.test/acct/2", false),
              StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 7, "https://ca.test/acct/2", false),
              StatusIs(kNotFound));
  // A lease taken over meanwhile (this one expired) writes nothing.
  clock().Advance(absl::Minutes(11));
  const KeyLease newer = LeaseKeys(scope, old.id);
  EXPECT_THAT(store().ReplaceAccount(scope, lease, 2, "https://ca.test/acct/2", false),
              StatusIs(kFailedPrecondition, "stale"));
  ASSERT_OK_AND_ASSIGN(std::vector<Account> accounts, store().ListAccounts(scope));
  ASSERT_THAT(accounts, SizeIs(1));
  EXPECT_EQ(accounts[0].status, AccountStatus::kValid);
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, old.id));
  EXPECT_EQ(keys[1].state, KeyState::kPending);
  EXPECT_THAT(AuditActions(scope), ::testing::Not(::testing::Contains("ReplaceAccount")));

  // With the old keys compromised (the compromise playbook): all but the moved one.
  ASSERT_OK_AND_ASSIGN(Account fresh, store().ReplaceAccount(scope, newer, 2,
                                                             "https://ca.test/acct/2", true));
  ASSERT_OK_AND_ASSIGN(keys, store().ListKeys(scope, old.id));
  EXPECT_EQ(keys[0].state, KeyState::kCompromised);
  EXPECT_EQ(keys[1].state, KeyState::kRetired);
  ASSERT_OK_AND_ASSIGN(keys, store().ListKeys(scope, fresh.id));
  ASSERT_THAT(keys, SizeIs(1));
  EXPECT_EQ(keys[0].state, KeyState::kActive);
}

// A token key moves by its object id: the token holds one object for both rows.
TEST_P(StoreConformanceTest, ReplaceAccountMovesATokenKeyByItsObjectId) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account old = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, old.id, "https://ca.test/acct/1"));
  const KeyLease lease = LeaseKeys(scope, old.id);
  crypto::PrivateKey public_half = NewKey();
  ASSERT_OK(store()
                .AddPendingKey(scope, lease,
                               AccountKeyMaterial::InToken("acmevault-0009",
                                                           crypto::KeyAlgorithm::kEcdsaP256),
                               InfoFor(public_half))
                .status());
  ASSERT_OK_AND_ASSIGN(Account fresh, store().ReplaceAccount(scope, lease, 2,
                                                             "https://ca.test/acct/2", false));
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey active, store().GetActiveKey(scope, fresh.id, "jws"));
  EXPECT_EQ(active.info.token_object, "acmevault-0009");
  EXPECT_EQ(active.info.public_key.thumbprint, InfoFor(public_half).thumbprint);
  EXPECT_FALSE(active.private_key.has_value());
}

TEST_P(StoreConformanceTest, CompromisedKeyIsNeverUnsealedAgain) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const KeyLease lease = LeaseKeys(scope, account.id);
  ASSERT_OK(store().MarkKeyCompromised(scope, lease, 1));
  ASSERT_OK(store().MarkKeyCompromised(scope, lease, 1));  // idempotent, audited once
  EXPECT_THAT(store().GetActiveKey(scope, account.id, "x"), StatusIs(kNotFound, "no active key"));
  EXPECT_THAT(store().GetKey(scope, account.id, 1, "x"),
              StatusIs(kFailedPrecondition, "compromised"));
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, account.id));
  EXPECT_EQ(keys[0].state, KeyState::kCompromised);
  EXPECT_EQ(keys[0].compromised_at, clock().Now());
  EXPECT_THAT(store().PromoteKey(scope, lease, 1), StatusIs(kFailedPrecondition));
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "MarkKeyCompromised"));
}

TEST_P(StoreConformanceTest, DeactivatedAccountIsFinal) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const KeyLease lease = LeaseKeys(scope, account.id);
  EXPECT_THAT(store().SetAccountStatus(scope, account.id, AccountStatus::kValid),
              StatusIs(kInvalidArgument));
  ASSERT_OK(store().SetAccountStatus(scope, account.id, AccountStatus::kDeactivated));
  EXPECT_THAT(store().SetAccountStatus(scope, account.id, AccountStatus::kRevoked),
              StatusIs(kFailedPrecondition, "already deactivated"));
  ASSERT_OK_AND_ASSIGN(Account got, store().GetAccount(scope, account.id));
  EXPECT_EQ(got.status, AccountStatus::kDeactivated);
  EXPECT_EQ(got.deactivated_at, clock().Now());
  crypto::PrivateKey key = NewKey();
  EXPECT_THAT(store().AddPendingKey(scope, lease, key, InfoFor(key)),
              StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/9"),
              StatusIs(kFailedPrecondition));
}

TEST_P(StoreConformanceTest, HijackedAccountIsMarkedOnceAndNoLongerLive) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  // Never registered: there is nothing at the CA to take over.
  EXPECT_THAT(store().MarkAccountHijacked(scope, account.id, "x"),
              StatusIs(kFailedPrecondition, "never registered"));
  ASSERT_OK(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1"));
  const std::string what = absl::StrCat("the CA knows no account for our key ",
                                        std::string(3000, 'x'));
  ASSERT_OK_AND_ASSIGN(Account marked, store().MarkAccountHijacked(scope, account.id, what));
  EXPECT_EQ(marked.hijacked_at, clock().Now());
  EXPECT_EQ(marked.status, AccountStatus::kValid);
  clock().Advance(absl::Minutes(1));
  // Again: OK, the first time stays, no second row.
  ASSERT_OK_AND_ASSIGN(Account again, store().MarkAccountHijacked(scope, account.id, "again"));
  EXPECT_EQ(again.hijacked_at, marked.hijacked_at);
  ASSERT_OK_AND_ASSIGN(Account got, store().GetAccount(scope, account.id));
  EXPECT_EQ(got.hijacked_at, marked.hijacked_at);
  ASSERT_OK_AND_ASSIGN(std::vector<Account> listed, store().ListAccounts(scope));
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].hijacked_at, marked.hijacked_at);
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, PageRequest{}));
  ASSERT_THAT(audit.items, SizeIs(4));
  const AuditEvent& row = audit.items[3].event;
  EXPECT_EQ(row.action, "AccountHijackDetected");
  EXPECT_EQ(row.account, account.id);
  EXPECT_EQ(row.acme_url, "https://ca.test/acct/1");
  EXPECT_EQ(row.detail.size(), kMaxHijackDetailSize);
  EXPECT_TRUE(absl::StartsWith(row.detail, "the CA knows no account for our key"));
  // No longer the live account: another may be created for the same directory, and only one.
  Account replacement = MakeAccount(scope);
  EXPECT_NE(replacement.id, account.id);
  crypto::PrivateKey third = NewKey();
  EXPECT_THAT(store().CreateAccount(scope, "https://ca.test/dir", third, InfoFor(third),
                                    KeyState::kActive),
              StatusIs(kAlreadyExists));
  // A hijacked account can still be closed (the CA may report it deactivated).
  ASSERT_OK(store().SetAccountStatus(scope, account.id, AccountStatus::kDeactivated));
}

TEST_P(StoreConformanceTest, AnotherTenantsAccountDoesNotExist) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  Account account = MakeAccount(ScopeOf(a));
  const KeyLease lease = LeaseKeys(ScopeOf(a), account.id);
  const Scope other = ScopeOf(b);
  crypto::PrivateKey key = NewKey();
  EXPECT_THAT(store().GetAccount(other, account.id), StatusIs(kNotFound));
  EXPECT_THAT(store().GetActiveKey(other, account.id, "x"), StatusIs(kNotFound));
  EXPECT_THAT(store().GetKey(other, account.id, 1, "x"), StatusIs(kNotFound));
  EXPECT_THAT(store().ListKeys(other, account.id), StatusIs(kNotFound));
  EXPECT_THAT(store().AcquireKeyLease(other, account.id, absl::Minutes(1)), StatusIs(kNotFound));
  EXPECT_THAT(store().ReleaseKeyLease(other, lease), StatusIs(kNotFound));
  EXPECT_THAT(store().AddPendingKey(other, lease, key, InfoFor(key)), StatusIs(kNotFound));
  EXPECT_THAT(store().PromoteKey(other, lease, 1), StatusIs(kNotFound));
  EXPECT_THAT(store().DiscardPendingKey(other, lease, 1), StatusIs(kNotFound));
  EXPECT_THAT(store().MarkKeyCompromised(other, lease, 1), StatusIs(kNotFound));
  EXPECT_THAT(store().RecordAccountUrl(other, account.id, "https://ca.test/a"),
              StatusIs(kNotFound));
  EXPECT_THAT(store().SetAccountStatus(other, account.id, AccountStatus::kDeactivated),
              StatusIs(kNotFound));
  EXPECT_THAT(store().MarkAccountHijacked(other, account.id, "x"), StatusIs(kNotFound));
  EXPECT_THAT(
      store().CreateOrJoinOrder(other, NewOrder{account.id, {"a.test"}, "", "r", absl::Minutes(1)}),
      StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(std::vector<Account> listed, store().ListAccounts(other));
  EXPECT_THAT(listed, IsEmpty());
  // Nothing was written to either tenant by those attempts.
  EXPECT_THAT(AuditActions(other), ElementsAre("CreateTenant"));
  EXPECT_THAT(AuditActions(ScopeOf(a)), ElementsAre("CreateTenant", "CreateAccount"));
}

}  // namespace
}  // namespace acmevault::storage::testing
