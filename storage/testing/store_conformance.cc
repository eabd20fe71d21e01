#include "storage/testing/store_conformance.h"

#include <algorithm>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::storage::testing {

using ::acmevault::crypto::RevocationReason;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;

void PrintTo(const StoreFactory& factory, std::ostream* os) { *os << factory.name; }

std::string FactoryName(const ::testing::TestParamInfo<StoreFactory>& info) {
  return info.param.name;
}

void StoreConformanceTest::SetUp() {
  std::string url;
  if (GetParam().needs_postgres) {
    ACMEVAULT_STACK_ENV_OR_SKIP(pg_url, "ACMEVAULT_PG_URL");
    url = pg_url;
  }
  auto harness = GetParam().make(&clock_, TestKeks(KekText("kek-a", 'a')), url);
  ASSERT_TRUE(harness.ok()) << harness.status();
  harness_ = *std::move(harness);
}

void StoreConformanceTest::TearDown() {
  if (harness_ != nullptr) harness_->AfterTest(generated_);
}

Tenant StoreConformanceTest::MakeTenant(const std::string& name,
                                        absl::Duration renewal_window) {
  TenantSpec spec;
  spec.name = name;
  spec.allowed_identifiers = {"*." + name + ".example"};
  spec.acme_directory_url = "https://ca.test/dir";
  spec.policy.renewal_window = renewal_window;
  auto tenant = store().CreateTenant(Actor{"spiffe://test/platform", "test/Setup"}, spec);
  EXPECT_TRUE(tenant.ok()) << tenant.status();
  return tenant.ok() ? *tenant : Tenant{};
}

Scope StoreConformanceTest::ScopeOf(const Tenant& tenant) {
  return Scope{tenant.id, Actor{"spiffe://test/admin", "test/Rpc"}};
}

crypto::PrivateKey StoreConformanceTest::NewKey(crypto::KeyAlgorithm algorithm) {
  auto key = crypto::PrivateKey::Generate(algorithm);
  if (!key.ok()) std::abort();  // The library cannot generate keys: nothing here can work.
  generated_.push_back(Describe(*key));
  return *std::move(key);
}

PublicKeyInfo StoreConformanceTest::InfoFor(const crypto::PrivateKey& key) {
  std::string spki = absl::WebSafeBase64Escape(key.public_key().ToDer());
  return PublicKeyInfo{absl::StrCat("{\"spki\":\"", spki, "\"}"), spki.substr(0, 43)};
}

Account StoreConformanceTest::MakeAccount(const Scope& scope) {
  crypto::PrivateKey key = NewKey();
  auto account =
      store().CreateAccount(scope, "https://ca.test/dir", key, InfoFor(key), KeyState::kActive);
  EXPECT_TRUE(account.ok()) << account.status();
  return account.ok() ? *account : Account{};
}

Lease StoreConformanceTest::MakeOrder(const Scope& scope, AccountId account,
                                      std::vector<std::string> ids, absl::Duration lease) {
  auto created = store().CreateOrJoinOrder(scope, NewOrder{account, ids, "", "replica-1", lease});
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok() || !created->lease.has_value()) return Lease{};
  return *created->lease;
}

NewCertificate StoreConformanceTest::CertificateFor(std::vector<std::string> ids,
                                                    const std::string& serial,
                                                    absl::Duration lifetime) {
  NewCertificate c;
  c.identifiers = std::move(ids);
  c.serial = serial;
  c.not_before = clock_.Now();
  c.not_after = clock_.Now() + lifetime;
  c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  return c;
}

std::vector<std::string> StoreConformanceTest::AuditActions(const Scope& scope) {
  std::vector<std::string> out;
  PageRequest page;
  do {
    auto records = store().ListAudit(scope, page);
    EXPECT_TRUE(records.ok()) << records.status();
    if (!records.ok()) break;
    for (const AuditRecord& r : records->items) out.push_back(r.event.action);
    page.page_token = records->next_page_token;
  } while (!page.page_token.empty());
  return out;
}

namespace {

const absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
const absl::StatusCode kAlreadyExists = absl::StatusCode::kAlreadyExists;
const absl::StatusCode kFailedPrecondition = absl::StatusCode::kFailedPrecondition;
const absl::StatusCode kInvalidArgument = absl::StatusCode::kInvalidArgument;

// Stand-in CSR bytes (storage does not parse them): `size` bytes, every byte value among them.
std::string CsrBytes(size_t size, char salt = 0) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i * 7 + salt);
  return out;
}

// An order request carrying finalization material.
NewOrder WithMaterial(NewOrder order, std::string csr_der, const crypto::PrivateKey* key) {
  order.csr_der = std::move(csr_der);
  order.certificate_key = key;
  return order;
}

// ---------------------------------------------------------------------------------------------
// Tenants

TEST_P(StoreConformanceTest, CreateTenantRoundTripsEveryField) {
  TenantSpec spec;
  spec.name = "acme-corp";
  spec.allowed_identifiers = {"example.com", "*.example.com", "quote\"and\\slash"};
  spec.policy.key_algorithm = crypto::KeyAlgorithm::kEcdsaP384;
  spec.policy.max_key_age = absl::Hours(24 * 7);
  spec.policy.deactivate_authorizations_after_issuance = false;
  spec.policy.ephemeral_accounts = true;
  spec.policy.renewal_window = absl::Hours(24 * 10);
  spec.acme_directory_url = "https://acme.example/directory";
  ASSERT_OK_AND_ASSIGN(Tenant created, store().CreateTenant(Actor{"spiffe://p", "Create"}, spec));
  EXPECT_GT(created.id, 0);
  EXPECT_EQ(created.created_at, clock().Now());
  EXPECT_FALSE(created.disabled_at.has_value());

  ASSERT_OK_AND_ASSIGN(Tenant got, store().GetTenant(ScopeOf(created)));
  EXPECT_EQ(got.spec.name, "acme-corp");
  EXPECT_THAT(got.spec.allowed_identifiers,
              ElementsAre("example.com", "*.example.com", "quote\"and\\slash"));
  EXPECT_EQ(got.spec.policy.key_algorithm, crypto::KeyAlgorithm::kEcdsaP384);
  EXPECT_EQ(got.spec.policy.max_key_age, absl::Hours(24 * 7));
  EXPECT_FALSE(got.spec.policy.deactivate_authorizations_after_issuance);
  EXPECT_TRUE(got.spec.policy.ephemeral_accounts);
  EXPECT_EQ(got.spec.policy.renewal_window, absl::Hours(24 * 10));
  EXPECT_EQ(got.spec.acme_directory_url, "https://acme.example/directory");
  EXPECT_EQ(got.created_at, created.created_at);

  ASSERT_OK_AND_ASSIGN(Tenant by_name, store().FindTenantByName("acme-corp"));
  EXPECT_EQ(by_name.id, created.id);
  EXPECT_THAT(store().FindTenantByName("nobody"), StatusIs(kNotFound));
  EXPECT_THAT(store().GetTenant(Scope{created.id + 1000, {}}), StatusIs(kNotFound));
  EXPECT_THAT(AuditActions(ScopeOf(created)), ElementsAre("CreateTenant"));
}

TEST_P(StoreConformanceTest, TenantNamesAreUniqueAndValidated) {
  Tenant a = MakeTenant("alpha");
  TenantSpec spec = a.spec;
  EXPECT_THAT(store().CreateTenant({}, spec), StatusIs(kAlreadyExists));
  spec.name = "Bad Name";
  EXPECT_THAT(store().CreateTenant({}, spec), StatusIs(kInvalidArgument, "tenant name"));
  spec.name = "beta";
  spec.acme_directory_url = "ftp://ca";
  EXPECT_THAT(store().CreateTenant({}, spec), StatusIs(kInvalidArgument, "http(s) URL"));

  Tenant b = MakeTenant("beta");
  TenantSpec rename = b.spec;
  rename.name = "alpha";
  EXPECT_THAT(store().UpdateTenant(ScopeOf(b), rename), StatusIs(kAlreadyExists));
}

TEST_P(StoreConformanceTest, UpdateTenantReplacesTheSpec) {
  Tenant t = MakeTenant("alpha");
  clock().Advance(absl::Minutes(5));
  TenantSpec spec = t.spec;
  spec.name = "alpha-2";
  spec.allowed_identifiers = {"new.example"};
  spec.policy.max_key_age = absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(Tenant updated, store().UpdateTenant(ScopeOf(t), spec));
  EXPECT_EQ(updated.spec.name, "alpha-2");
  EXPECT_THAT(updated.spec.allowed_identifiers, ElementsAre("new.example"));
  EXPECT_EQ(updated.spec.policy.max_key_age, absl::Hours(1));
  EXPECT_EQ(updated.created_at, t.created_at);
  EXPECT_EQ(updated.updated_at, t.created_at + absl::Minutes(5));
  EXPECT_THAT(store().UpdateTenant(Scope{t.id + 1000, {}}, spec), StatusIs(kNotFound));
  EXPECT_THAT(AuditActions(ScopeOf(t)), ElementsAre("CreateTenant", "UpdateTenant"));
}

TEST_P(StoreConformanceTest, ListTenantsPagesInIdOrder) {
  std::vector<TenantId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(MakeTenant(absl::StrCat("tenant-", i)).id);
  std::vector<TenantId> seen;
  PageRequest page{"", 2};
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(Page<Tenant> p, store().ListTenants(page));
    EXPECT_LE(p.items.size(), 2u);
    for (const Tenant& t : p.items) seen.push_back(t.id);
    page.page_token = p.next_page_token;
    ++pages;
  } while (!page.page_token.empty() && pages < 10);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(store().ListTenants(PageRequest{"x", 2}), StatusIs(kInvalidArgument));
}

// ---------------------------------------------------------------------------------------------
// Identities

TEST_P(StoreConformanceTest, SpiffeIdentityAuthenticatesUntilRevoked) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const std::string id = "spiffe://example.org/host/web-1";
  ASSERT_OK_AND_ASSIGN(Identity added,
                       store().AddSpiffeIdentity(ScopeOf(a), id, Role::kHost, "web 1"));
  EXPECT_EQ(added.tenant, a.id);
  EXPECT_EQ(added.spiffe_id, id);
  EXPECT_FALSE(added.bearer_token);
  // A SPIFFE ID maps to one tenant at a time.
  EXPECT_THAT(store().AddSpiffeIdentity(ScopeOf(b), id, Role::kAdmin, ""),
              StatusIs(kAlreadyExists));
  EXPECT_THAT(store().AddSpiffeIdentity(ScopeOf(b), "https://x", Role::kAdmin, ""),
              StatusIs(kInvalidArgument));

  ASSERT_OK_AND_ASSIGN(Identity who, store().AuthenticateSpiffe(id));
  EXPECT_EQ(who.id, added.id);
  EXPECT_EQ(who.tenant, a.id);
  EXPECT_EQ(who.role, Role::kHost);
  EXPECT_EQ(who.description, "web 1");
  EXPECT_THAT(store().AuthenticateSpiffe("spiffe://example.org/other"), StatusIs(kNotFound));

  // Another tenant cannot revoke it.
  EXPECT_THAT(store().RevokeIdentity(ScopeOf(b), added.id), StatusIs(kNotFound));
  ASSERT_OK(store().RevokeIdentity(ScopeOf(a), added.id));
  ASSERT_OK(store().RevokeIdentity(ScopeOf(a), added.id));  // idempotent
  EXPECT_THAT(store().AuthenticateSpiffe(id), StatusIs(kNotFound));
  // Once revoked, the ID may be bound again.
  ASSERT_OK_AND_ASSIGN(Identity rebound,
                       store().AddSpiffeIdentity(ScopeOf(b), id, Role::kAdmin, ""));
  ASSERT_OK_AND_ASSIGN(Identity now, store().AuthenticateSpiffe(id));
  EXPECT_EQ(now.id, rebound.id);
  EXPECT_EQ(now.tenant, b.id);
  EXPECT_THAT(AuditActions(ScopeOf(a)),
              ElementsAre("CreateTenant", "AddSpiffeIdentity", "RevokeIdentity"));
}

TEST_P(StoreConformanceTest, TokenIdentityIsFoundByItsHashOnly) {
  Tenant a = MakeTenant("alpha");
  const std::string hash(32, '\x7f');
  ASSERT_OK_AND_ASSIGN(Identity added,
                       store().AddTokenIdentity(ScopeOf(a), hash, Role::kPlatformAdmin, "ops"));
  EXPECT_TRUE(added.bearer_token);
  EXPECT_TRUE(added.spiffe_id.empty());
  EXPECT_THAT(store().AddTokenIdentity(ScopeOf(a), hash, Role::kHost, ""),
              StatusIs(kAlreadyExists));
  EXPECT_THAT(store().AddTokenIdentity(ScopeOf(a), "short", Role::kHost, ""),
              StatusIs(kInvalidArgument, "want 32"));
  ASSERT_OK_AND_ASSIGN(Identity who, store().AuthenticateToken(hash));
  EXPECT_EQ(who.id, added.id);
  EXPECT_EQ(who.role, Role::kPlatformAdmin);
  EXPECT_TRUE(who.bearer_token);
  EXPECT_THAT(store().AuthenticateToken(std::string(32, '\x01')), StatusIs(kNotFound));

  ASSERT_OK_AND_ASSIGN(std::vector<Identity> listed, store().ListIdentities(ScopeOf(a)));
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].id, added.id);
  // The audit row names the identity, never the hash.
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(ScopeOf(a), {}));
  for (const AuditRecord& r : audit.items) {
    EXPECT_EQ(r.event.detail.find(hash), std::string::npos);
    EXPECT_EQ(r.event.detail.find(absl::BytesToHexString(hash)), std::string::npos);
  }
}

TEST_P(StoreConformanceTest, DisabledTenantsIdentitiesDoNotAuthenticate) {
  Tenant a = MakeTenant("alpha");
  ASSERT_OK(store().AddSpiffeIdentity(ScopeOf(a), "spiffe://t/a", Role::kAdmin, "").status());
  ASSERT_OK(store().AddTokenIdentity(ScopeOf(a), std::string(32, 't'), Role::kHost, "").status());
  clock().Advance(absl::Seconds(3));
  ASSERT_OK(store().DisableTenant(ScopeOf(a)));
  ASSERT_OK(store().DisableTenant(ScopeOf(a)));  // idempotent
  EXPECT_THAT(store().AuthenticateSpiffe("spiffe://t/a"), StatusIs(kNotFound));
  EXPECT_THAT(store().AuthenticateToken(std::string(32, 't')), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(Tenant t, store().GetTenant(ScopeOf(a)));
  EXPECT_EQ(t.disabled_at, a.created_at + absl::Seconds(3));
  EXPECT_THAT(AuditActions(ScopeOf(a)), ElementsAre("CreateTenant", "AddSpiffeIdentity",
                                                    "AddTokenIdentity", "DisableTenant"));
}

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
  EXPECT_EQ(active.private_key.public_key().ToDer(), key.public_key().ToDer());
  auto signature = active.private_key.Sign("payload");
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

TEST_P(StoreConformanceTest, RolloverPromotesPendingAndRetiresActiveTogether) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  crypto::PrivateKey next = NewKey();
  clock().Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(AccountKey pending,
                       store().AddPendingKey(scope, account.id, next, InfoFor(next)));
  EXPECT_EQ(pending.version, 2);
  EXPECT_EQ(pending.state, KeyState::kPending);
  EXPECT_FALSE(pending.activated_at.has_value());
  // RFC 8555 §7.3.5: the pending key is stored before keyChange; the old one still signs.
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey still, store().GetActiveKey(scope, account.id, "x"));
  EXPECT_EQ(still.info.version, 1);
  crypto::PrivateKey third = NewKey();
  EXPECT_THAT(store().AddPendingKey(scope, account.id, third, InfoFor(third)),
              StatusIs(kAlreadyExists, "pending"));
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey probe, store().GetKey(scope, account.id, 2, "probe"));
  EXPECT_EQ(probe.private_key.public_key().ToDer(), next.public_key().ToDer());

  clock().Advance(absl::Minutes(1));
  ASSERT_OK(store().PromoteKey(scope, account.id, 2));
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey now, store().GetActiveKey(scope, account.id, "x"));
  EXPECT_EQ(now.info.version, 2);
  EXPECT_EQ(now.private_key.public_key().ToDer(), next.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, account.id));
  ASSERT_THAT(keys, SizeIs(2));
  EXPECT_EQ(keys[0].state, KeyState::kRetired);
  EXPECT_EQ(keys[0].retired_at, clock().Now());
  EXPECT_EQ(keys[1].state, KeyState::kActive);
  EXPECT_EQ(keys[1].activated_at, clock().Now());
  EXPECT_THAT(store().PromoteKey(scope, account.id, 1), StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().PromoteKey(scope, account.id, 9), StatusIs(kNotFound));

  // A further rollover that the CA refuses is discarded.
  ASSERT_OK(store().AddPendingKey(scope, account.id, third, InfoFor(third)).status());
  ASSERT_OK(store().DiscardPendingKey(scope, account.id, 3));
  EXPECT_THAT(store().DiscardPendingKey(scope, account.id, 3), StatusIs(kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(keys, store().ListKeys(scope, account.id));
  ASSERT_THAT(keys, SizeIs(3));
  EXPECT_EQ(keys[2].state, KeyState::kRetired);
  EXPECT_EQ(keys[1].state, KeyState::kActive);
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "AddPendingKey", "UseAccountKey",
                          "UseAccountKey", "PromoteKey", "UseAccountKey", "AddPendingKey",
                          "DiscardPendingKey"));
}

TEST_P(StoreConformanceTest, CompromisedKeyIsNeverUnsealedAgain) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK(store().MarkKeyCompromised(scope, account.id, 1));
  ASSERT_OK(store().MarkKeyCompromised(scope, account.id, 1));  // idempotent, audited once
  EXPECT_THAT(store().GetActiveKey(scope, account.id, "x"), StatusIs(kNotFound, "no active key"));
  EXPECT_THAT(store().GetKey(scope, account.id, 1, "x"),
              StatusIs(kFailedPrecondition, "compromised"));
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, account.id));
  EXPECT_EQ(keys[0].state, KeyState::kCompromised);
  EXPECT_EQ(keys[0].compromised_at, clock().Now());
  EXPECT_THAT(store().PromoteKey(scope, account.id, 1), StatusIs(kFailedPrecondition));
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "MarkKeyCompromised"));
}

TEST_P(StoreConformanceTest, DeactivatedAccountIsFinal) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  EXPECT_THAT(store().SetAccountStatus(scope, account.id, AccountStatus::kValid),
              StatusIs(kInvalidArgument));
  ASSERT_OK(store().SetAccountStatus(scope, account.id, AccountStatus::kDeactivated));
  EXPECT_THAT(store().SetAccountStatus(scope, account.id, AccountStatus::kRevoked),
              StatusIs(kFailedPrecondition, "already deactivated"));
  ASSERT_OK_AND_ASSIGN(Account got, store().GetAccount(scope, account.id));
  EXPECT_EQ(got.status, AccountStatus::kDeactivated);
  EXPECT_EQ(got.deactivated_at, clock().Now());
  crypto::PrivateKey key = NewKey();
  EXPECT_THAT(store().AddPendingKey(scope, account.id, key, InfoFor(key)),
              StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/9"),
              StatusIs(kFailedPrecondition));
}

TEST_P(StoreConformanceTest, AnotherTenantsAccountDoesNotExist) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  Account account = MakeAccount(ScopeOf(a));
  const Scope other = ScopeOf(b);
  crypto::PrivateKey key = NewKey();
  EXPECT_THAT(store().GetAccount(other, account.id), StatusIs(kNotFound));
  EXPECT_THAT(store().GetActiveKey(other, account.id, "x"), StatusIs(kNotFound));
  EXPECT_THAT(store().GetKey(other, account.id, 1, "x"), StatusIs(kNotFound));
  EXPECT_THAT(store().ListKeys(other, account.id), StatusIs(kNotFound));
  EXPECT_THAT(store().AddPendingKey(other, account.id, key, InfoFor(key)), StatusIs(kNotFound));
  EXPECT_THAT(store().PromoteKey(other, account.id, 1), StatusIs(kNotFound));
  EXPECT_THAT(store().MarkKeyCompromised(other, account.id, 1), StatusIs(kNotFound));
  EXPECT_THAT(store().RecordAccountUrl(other, account.id, "https://ca.test/a"),
              StatusIs(kNotFound));
  EXPECT_THAT(store().SetAccountStatus(other, account.id, AccountStatus::kDeactivated),
              StatusIs(kNotFound));
  EXPECT_THAT(store().CreateOrJoinOrder(other, NewOrder{account.id, {"a.test"}, "", "r", absl::Minutes(1)}),
              StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(std::vector<Account> listed, store().ListAccounts(other));
  EXPECT_THAT(listed, IsEmpty());
  // Nothing was written to either tenant by those attempts.
  EXPECT_THAT(AuditActions(other), ElementsAre("CreateTenant"));
  EXPECT_THAT(AuditActions(ScopeOf(a)), ElementsAre("CreateTenant", "CreateAccount"));
}

// ---------------------------------------------------------------------------------------------
// Orders and leases

TEST_P(StoreConformanceTest, ConcurrentRequestsForTheSameNamesJoinOneOrder) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(CreateOrderResult first,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id,
                                                                 {"www.alpha.test", "alpha.test"},
                                                                 "", "r1", absl::Minutes(2)}));
  EXPECT_TRUE(first.created);
  ASSERT_TRUE(first.lease.has_value());
  EXPECT_EQ(first.lease->fencing_token, 1);
  EXPECT_EQ(first.lease->owner, "r1");
  EXPECT_EQ(first.lease->expires_at, clock().Now() + absl::Minutes(2));
  EXPECT_THAT(first.order.identifiers, ElementsAre("alpha.test", "www.alpha.test"));
  EXPECT_EQ(first.order.state, OrderState::kCreated);

  // The same set, in another order and case: joined.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult second,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id,
                                                                 {"ALPHA.test", "www.alpha.test"},
                                                                 "", "r2", absl::Minutes(2)}));
  EXPECT_FALSE(second.created);
  EXPECT_FALSE(second.lease.has_value());
  EXPECT_EQ(second.order.id, first.order.id);
  EXPECT_EQ(second.order.lease_owner, "r1");
  // A different set: a new order.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult third,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id, {"alpha.test"}, "",
                                                                 "r2", absl::Minutes(2)}));
  EXPECT_TRUE(third.created);
  EXPECT_NE(third.order.id, first.order.id);

  // Concurrent callers for one new set: exactly one creates, all see the same order.
  constexpr int kThreads = 6;
  std::vector<absl::StatusOr<CreateOrderResult>> results(kThreads,
                                                         absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[i] = store().CreateOrJoinOrder(
          scope, NewOrder{account.id, {"race.alpha.test"}, "", absl::StrCat("t", i),
                          absl::Minutes(2)});
    });
  }
  for (std::thread& t : threads) t.join();
  int created = 0;
  std::set<OrderId> ids;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    created += r->created ? 1 : 0;
    ids.insert(r->order.id);
  }
  EXPECT_EQ(created, 1);
  EXPECT_THAT(ids, SizeIs(1));
}

TEST_P(StoreConformanceTest, IdempotencyKeyFindsItsOrderEvenWhenDone) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(CreateOrderResult first,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id, {"a.test"}, "req-1",
                                                                 "r1", absl::Minutes(1)}));
  ASSERT_TRUE(first.created);
  ASSERT_OK(store().TransitionOrder(scope, *first.lease, OrderState::kInvalid, "CA said no"));
  ASSERT_OK_AND_ASSIGN(CreateOrderResult again,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id, {"a.test"}, "req-1",
                                                                 "r1", absl::Minutes(1)}));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.order.id, first.order.id);
  EXPECT_EQ(again.order.state, OrderState::kInvalid);
  EXPECT_EQ(again.order.error, "CA said no");
  EXPECT_THAT(store().CreateOrJoinOrder(scope, NewOrder{account.id, {"b.test"}, "req-1", "r1",
                                                        absl::Minutes(1)}),
              StatusIs(kInvalidArgument, "other identifiers"));
  ASSERT_OK_AND_ASSIGN(Order found, store().FindOrderByIdempotencyKey(scope, "req-1"));
  EXPECT_EQ(found.id, first.order.id);
  EXPECT_THAT(store().FindOrderByIdempotencyKey(scope, "req-2"), StatusIs(kNotFound));
  // Without a key, the terminal order does not block a new one.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult fresh,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id, {"a.test"}, "",
                                                                 "r1", absl::Minutes(1)}));
  EXPECT_TRUE(fresh.created);
  // Another tenant's key space is separate.
  Tenant b = MakeTenant("beta");
  EXPECT_THAT(store().FindOrderByIdempotencyKey(ScopeOf(b), "req-1"), StatusIs(kNotFound));
}

TEST_P(StoreConformanceTest, OrderUrlIsImmutableAndStatesMoveForwardOnly) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test"});
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kReady, ""),
              StatusIs(kFailedPrecondition, "no ACME URL"));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  EXPECT_THAT(store().RecordOrderUrl(scope, lease, "https://ca.test/order/2"),
              StatusIs(kFailedPrecondition, "another ACME URL"));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kPending);
  EXPECT_EQ(o.acme_url, "https://ca.test/order/1");

  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, ""));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, ""));  // a retried call
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kProcessing, ""));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kPending, ""),
              StatusIs(kFailedPrecondition, "cannot go from processing to pending"));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kValid, ""),
              StatusIs(kInvalidArgument, "CompleteOrder"));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kInvalid, "finalize failed"));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kInvalid, ""),
              StatusIs(kFailedPrecondition, "is invalid"));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kInvalid);
  EXPECT_EQ(o.error, "finalize failed");
  EXPECT_TRUE(o.lease_owner.empty());
  EXPECT_FALSE(o.lease_expires_at.has_value());
  EXPECT_EQ(o.acme_url, "https://ca.test/order/1");
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "TransitionOrder", "TransitionOrder", "TransitionOrder"));
}

TEST_P(StoreConformanceTest, CompleteOrderStoresTheCertificateAndFreesTheNames) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test", "b.test"});
  NewCertificate cert = CertificateFor({"b.test", "a.test"}, "0A1B");
  EXPECT_THAT(store().CompleteOrder(scope, lease, cert), StatusIs(kFailedPrecondition));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/7"));
  crypto::PrivateKey cert_key = NewKey();
  cert.private_key = &cert_key;
  cert.account_key_version = 1;
  ASSERT_OK_AND_ASSIGN(Certificate stored, store().CompleteOrder(scope, lease, cert));
  EXPECT_EQ(stored.serial, "0a1b");
  EXPECT_EQ(stored.order, lease.order);
  EXPECT_EQ(stored.account, account.id);
  EXPECT_TRUE(stored.has_private_key);
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kValid);
  EXPECT_EQ(o.certificate, stored.id);
  EXPECT_TRUE(o.lease_owner.empty());
  EXPECT_THAT(store().CompleteOrder(scope, lease, CertificateFor({"a.test"}, "ff")),
              StatusIs(kFailedPrecondition, "is valid"));

  ASSERT_OK_AND_ASSIGN(Certificate current,
                       store().GetCurrentCertificate(scope, {"A.test", "b.test"}));
  EXPECT_EQ(current.id, stored.id);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetCertificateKey(scope, stored.id, "serve"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(CreateOrderResult next,
                       store().CreateOrJoinOrder(scope, NewOrder{account.id, {"a.test", "b.test"},
                                                                 "", "r", absl::Minutes(1)}));
  EXPECT_TRUE(next.created);
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "InsertCertificate", "CompleteOrder", "UseCertificateKey",
                          "CreateOrder"));
}

// ---------------------------------------------------------------------------------------------
// Order finalization material

TEST_P(StoreConformanceTest, AnotherReplicaFinalizesACrashedReplicasOrderFromItsMaterial) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const std::string csr = CsrBytes(1500);
  crypto::PrivateKey cert_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult created,
      store().CreateOrJoinOrder(
          scope,
          WithMaterial(
              NewOrder{account.id, {"www.alpha.test"}, "req-1", "replica-1", absl::Minutes(1)}, csr,
              &cert_key)));
  ASSERT_TRUE(created.created);
  EXPECT_EQ(created.order.csr_der, csr);
  EXPECT_TRUE(created.order.has_certificate_key);
  ASSERT_OK(store().RecordOrderUrl(scope, *created.lease, "https://ca.test/order/1"));

  // replica-1 dies; replica-2 claims the order and finds all it needs to finalize it.
  clock().Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("replica-2", absl::Minutes(1), 10));
  ASSERT_THAT(claimed, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, claimed[0].order));
  EXPECT_EQ(o.csr_der, csr);
  EXPECT_TRUE(o.has_certificate_key);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, o.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  auto signature = unsealed.Sign("payload");
  ASSERT_TRUE(signature.ok());
  EXPECT_OK(cert_key.public_key().Verify("payload", *signature));
  NewCertificate cert = CertificateFor({"www.alpha.test"}, "0b");
  cert.private_key = &unsealed;
  ASSERT_OK(store().CompleteOrder(scope, claimed[0], cert).status());
  // The finished order keeps its material.
  ASSERT_OK_AND_ASSIGN(Order done, store().FindOrderByIdempotencyKey(scope, "req-1"));
  EXPECT_EQ(done.state, OrderState::kValid);
  EXPECT_EQ(done.csr_der, csr);
  EXPECT_TRUE(done.has_certificate_key);

  // The unsealing is a key use of the order, audited with its id and the purpose.
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "UseCertificateKey", "InsertCertificate", "CompleteOrder"));
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, {}));
  const AuditRecord& use = audit.items[4];
  EXPECT_EQ(use.event.detail, absl::StrCat("order ", o.id, ": finalize"));
  EXPECT_THAT(use.event.identifiers, ElementsAre("www.alpha.test"));
  EXPECT_EQ(use.event.account, account.id);
  EXPECT_EQ(use.event.acme_url, "https://ca.test/order/1");
  EXPECT_EQ(use.actor.identity, "spiffe://test/admin");
}

TEST_P(StoreConformanceTest, OrderMaterialIsOptionalBoundedAndConfinedToItsTenant) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease bare = MakeOrder(scope, account.id, {"bare.test"});
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, bare.order));
  EXPECT_EQ(o.csr_der, "");
  EXPECT_FALSE(o.has_certificate_key);
  EXPECT_THAT(
      store().GetOrderCertificateKey(scope, bare.order, "finalize"),
      StatusIs(kNotFound, absl::StrCat("order ", bare.order, " has no stored certificate key")));
  EXPECT_THAT(store().GetOrderCertificateKey(scope, bare.order + 1000, "finalize"),
              StatusIs(kNotFound, "not found"));

  // A CSR of exactly the limit round-trips; one byte more is refused.
  crypto::PrivateKey cert_key = NewKey(crypto::KeyAlgorithm::kRsa2048);
  const std::string largest = CsrBytes(kMaxCsrDerSize, 1);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult full,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"full.test"}, "", "r", absl::Minutes(1)},
                              largest, &cert_key)));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, full.order.id));
  EXPECT_EQ(o.csr_der, largest);
  EXPECT_THAT(store().CreateOrJoinOrder(
                  scope, WithMaterial(NewOrder{account.id, {"big.test"}, "", "r", absl::Minutes(1)},
                                      CsrBytes(kMaxCsrDerSize + 1), nullptr)),
              StatusIs(kInvalidArgument, "CSR is 16385 bytes"));
  // A key without a CSR is kept too.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult key_only,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"key.test"}, "", "r", absl::Minutes(1)}, "",
                              &cert_key)));
  EXPECT_EQ(key_only.order.csr_der, "");
  EXPECT_TRUE(key_only.order.has_certificate_key);

  // Another tenant's order, with its key, does not exist for this one.
  EXPECT_THAT(store().GetOrderCertificateKey(ScopeOf(b), full.order.id, "finalize"),
              StatusIs(kNotFound, absl::StrCat("order ", full.order.id, " not found")));
  EXPECT_THAT(store().GetOrder(ScopeOf(b), full.order.id), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, key_only.order.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  // Only the successful unsealing was audited.
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CreateAccount", "CreateOrder",
                                               "CreateOrder", "CreateOrder", "UseCertificateKey"));
  EXPECT_THAT(AuditActions(ScopeOf(b)), ElementsAre("CreateTenant"));
}

TEST_P(StoreConformanceTest, AJoinedOrderKeepsTheMaterialItWasCreatedWith) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const NewOrder request{account.id, {"a.test"}, "req-1", "r1", absl::Minutes(1)};
  crypto::PrivateKey first_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult first,
      store().CreateOrJoinOrder(scope, WithMaterial(request, CsrBytes(300, 1), &first_key)));
  ASSERT_TRUE(first.created);

  // Joined by the idempotency key, and by the identifier set: the request's material is ignored.
  crypto::PrivateKey second_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult by_key,
      store().CreateOrJoinOrder(scope, WithMaterial(request, CsrBytes(400, 2), &second_key)));
  NewOrder same_names = request;
  same_names.idempotency_key = "";
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult by_names,
      store().CreateOrJoinOrder(scope, WithMaterial(same_names, CsrBytes(500, 3), nullptr)));
  for (const CreateOrderResult& joined : {by_key, by_names}) {
    EXPECT_FALSE(joined.created);
    EXPECT_EQ(joined.order.id, first.order.id);
    EXPECT_EQ(joined.order.csr_der, CsrBytes(300, 1));
    EXPECT_TRUE(joined.order.has_certificate_key);
  }
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, first.order.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), first_key.public_key().ToDer());

  // An order created without material stays without when joined with some.
  Lease bare = MakeOrder(scope, account.id, {"b.test"});
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult joined_bare,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"b.test"}, "", "r2", absl::Minutes(1)},
                              CsrBytes(600, 4), &second_key)));
  EXPECT_FALSE(joined_bare.created);
  EXPECT_EQ(joined_bare.order.id, bare.order);
  EXPECT_EQ(joined_bare.order.csr_der, "");
  EXPECT_FALSE(joined_bare.order.has_certificate_key);
  EXPECT_THAT(store().GetOrderCertificateKey(scope, bare.order, "finalize"),
              StatusIs(kNotFound, "has no stored certificate key"));
  // Joining writes nothing.
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CreateAccount", "CreateOrder",
                                               "UseCertificateKey", "CreateOrder"));
}

TEST_P(StoreConformanceTest, StaleLeaseIsClaimedOnceAndFencesTheOldOwner) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease old_lease = MakeOrder(scope, account.id, {"a.test"}, absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> none, store().ClaimStaleOrders("r2", absl::Minutes(1), 10));
  EXPECT_THAT(none, IsEmpty());  // The lease is live.

  clock().Advance(absl::Minutes(1));  // Expired (expiry <= now).
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("r2", absl::Minutes(5), 10));
  ASSERT_THAT(claimed, SizeIs(1));
  const Lease new_lease = claimed[0];
  EXPECT_EQ(new_lease.tenant, a.id);
  EXPECT_EQ(new_lease.order, old_lease.order);
  EXPECT_EQ(new_lease.owner, "r2");
  EXPECT_EQ(new_lease.fencing_token, 2);
  EXPECT_EQ(new_lease.expires_at, clock().Now() + absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> again, store().ClaimStaleOrders("r3", absl::Minutes(5), 10));
  EXPECT_THAT(again, IsEmpty());

  // The old owner woke up: every write it attempts is rejected.
  EXPECT_THAT(store().RecordOrderUrl(scope, old_lease, "https://ca.test/order/old"),
              StatusIs(kFailedPrecondition, "lease on order"));
  EXPECT_THAT(store().TransitionOrder(scope, old_lease, OrderState::kInvalid, ""),
              StatusIs(kFailedPrecondition, "fencing token 1 is stale"));
  EXPECT_THAT(store().RenewLease(scope, old_lease, absl::Minutes(5)),
              StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().ReleaseLease(scope, old_lease), StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().CompleteOrder(scope, old_lease, CertificateFor({"a.test"}, "01")),
              StatusIs(kFailedPrecondition));
  ASSERT_OK(store().RecordOrderUrl(scope, new_lease, "https://ca.test/order/new"));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, old_lease.order));
  EXPECT_EQ(o.acme_url, "https://ca.test/order/new");
  EXPECT_EQ(o.lease_owner, "r2");
  EXPECT_EQ(o.fencing_token, 2);

  clock().Advance(absl::Minutes(4));
  ASSERT_OK_AND_ASSIGN(Lease renewed, store().RenewLease(scope, new_lease, absl::Minutes(5)));
  EXPECT_EQ(renewed.fencing_token, 2);
  EXPECT_EQ(renewed.expires_at, clock().Now() + absl::Minutes(5));
  clock().Advance(absl::Minutes(2));  // Past the first expiry, within the renewed one.
  ASSERT_OK_AND_ASSIGN(none, store().ClaimStaleOrders("r3", absl::Minutes(5), 10));
  EXPECT_THAT(none, IsEmpty());

  // Released: claimable at once, with the next token.
  ASSERT_OK(store().ReleaseLease(scope, renewed));
  ASSERT_OK_AND_ASSIGN(claimed, store().ClaimStaleOrders("r3", absl::Minutes(5), 10));
  ASSERT_THAT(claimed, SizeIs(1));
  EXPECT_EQ(claimed[0].fencing_token, 3);
  // Another tenant cannot even see the order.
  EXPECT_THAT(store().RenewLease(ScopeOf(MakeTenant("beta")), claimed[0], absl::Minutes(1)),
              StatusIs(kNotFound));
}

TEST_P(StoreConformanceTest, ClaimsTakeTheOldestFirstAndSkipDoneOrDisabled) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  Account account_a = MakeAccount(ScopeOf(a));
  Account account_b = MakeAccount(ScopeOf(b));
  Lease first = MakeOrder(ScopeOf(a), account_a.id, {"1.test"}, absl::Minutes(1));
  Lease second = MakeOrder(ScopeOf(b), account_b.id, {"2.test"}, absl::Minutes(2));
  Lease third = MakeOrder(ScopeOf(a), account_a.id, {"3.test"}, absl::Minutes(3));
  Lease done = MakeOrder(ScopeOf(a), account_a.id, {"4.test"}, absl::Minutes(1));
  ASSERT_OK(store().TransitionOrder(ScopeOf(a), done, OrderState::kInvalid, ""));
  clock().Advance(absl::Minutes(10));

  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("r", absl::Minutes(1), 2));
  ASSERT_THAT(claimed, SizeIs(2));
  EXPECT_EQ(claimed[0].order, first.order);
  EXPECT_EQ(claimed[1].order, second.order);
  EXPECT_EQ(claimed[1].tenant, b.id);

  ASSERT_OK(store().DisableTenant(ScopeOf(a)));
  clock().Advance(absl::Minutes(10));
  ASSERT_OK_AND_ASSIGN(claimed, store().ClaimStaleOrders("r", absl::Minutes(1), 10));
  ASSERT_THAT(claimed, SizeIs(1));  // Only beta's; alpha is disabled and 4.test is done.
  EXPECT_EQ(claimed[0].order, second.order);
  EXPECT_EQ(claimed[0].fencing_token, 3);
  EXPECT_NE(third.order, 0);
  EXPECT_THAT(store().ClaimStaleOrders("", absl::Minutes(1), 1), StatusIs(kInvalidArgument));
  EXPECT_THAT(store().ClaimStaleOrders("r", absl::Minutes(1), 0), StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, ConcurrentClaimersShareStaleOrdersExactlyOnce) {
  Tenant a = MakeTenant("alpha");
  Account account = MakeAccount(ScopeOf(a));
  constexpr int kOrders = 24;
  std::set<OrderId> all;
  for (int i = 0; i < kOrders; ++i) {
    all.insert(MakeOrder(ScopeOf(a), account.id, {absl::StrCat(i, ".test")}).order);
  }
  clock().Advance(absl::Hours(1));
  absl::Mutex mu;
  std::vector<Lease> claimed;
  std::vector<std::thread> claimers;
  for (int c = 0; c < 4; ++c) {
    claimers.emplace_back([&, c] {
      for (int round = 0; round < kOrders; ++round) {
        auto got = store().ClaimStaleOrders(absl::StrCat("replica-", c), absl::Hours(1), 3);
        ASSERT_TRUE(got.ok()) << got.status();
        if (got->empty()) break;
        absl::MutexLock lock(&mu);
        claimed.insert(claimed.end(), got->begin(), got->end());
      }
    });
  }
  for (std::thread& t : claimers) t.join();
  std::set<OrderId> distinct;
  for (const Lease& l : claimed) {
    distinct.insert(l.order);
    EXPECT_EQ(l.fencing_token, 2);
  }
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kOrders));  // no order twice
  EXPECT_EQ(distinct, all);                                  // and none left out
}

// ---------------------------------------------------------------------------------------------
// Authorizations

TEST_P(StoreConformanceTest, AuthorizationLedgerListsWhatIsOutstanding) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test", "b.test"});
  const absl::Time later = clock().Now() + absl::Hours(24);
  ASSERT_OK_AND_ASSIGN(Authorization first,
                       store().RecordAuthorization(scope, {account.id, lease.order,
                                                           "https://ca.test/authz/1", "A.test",
                                                           AuthorizationStatus::kPending, later}));
  EXPECT_EQ(first.record.identifier, "a.test");
  ASSERT_OK(store()
                .RecordAuthorization(scope, {account.id, lease.order, "https://ca.test/authz/2",
                                             "b.test", AuthorizationStatus::kPending, later})
                .status());
  ASSERT_OK(store()
                .RecordAuthorization(scope, {account.id, std::nullopt, "https://ca.test/authz/3",
                                             "c.test", AuthorizationStatus::kInvalid, later})
                .status());
  ASSERT_OK(store()
                .RecordAuthorization(scope, {account.id, std::nullopt, "https://ca.test/authz/4",
                                             "d.test", AuthorizationStatus::kValid,
                                             clock().Now() + absl::Seconds(1)})
                .status());
  // The CA validated the first: the same URL updates the row.
  ASSERT_OK_AND_ASSIGN(Authorization updated,
                       store().RecordAuthorization(scope, {account.id, std::nullopt,
                                                           "https://ca.test/authz/1", "a.test",
                                                           AuthorizationStatus::kValid, later}));
  EXPECT_EQ(updated.id, first.id);
  EXPECT_EQ(updated.record.status, AuthorizationStatus::kValid);
  EXPECT_EQ(updated.record.order, lease.order);

  auto urls = [&](const AuthorizationFilter& filter) {
    std::vector<std::string> out;
    auto listed = store().ListOutstandingAuthorizations(scope, filter);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (listed.ok()) {
      for (const Authorization& z : *listed) out.push_back(z.record.url);
    }
    return out;
  };
  EXPECT_THAT(urls({}), ElementsAre("https://ca.test/authz/1", "https://ca.test/authz/2",
                                    "https://ca.test/authz/4"));
  EXPECT_THAT(urls({std::nullopt, lease.order, {}}),
              ElementsAre("https://ca.test/authz/1", "https://ca.test/authz/2"));
  EXPECT_THAT(urls({account.id, std::nullopt, {"B.TEST", "d.test"}}),
              ElementsAre("https://ca.test/authz/2", "https://ca.test/authz/4"));
  clock().Advance(absl::Seconds(1));  // authz 4 expires
  ASSERT_OK(store().MarkAuthorizationDeactivated(scope, account.id, "https://ca.test/authz/2"));
  EXPECT_THAT(urls({}), ElementsAre("https://ca.test/authz/1"));
  EXPECT_THAT(store().MarkAuthorizationDeactivated(scope, account.id, "https://ca.test/authz/9"),
              StatusIs(kNotFound));
  Tenant b = MakeTenant("beta");
  EXPECT_THAT(store().MarkAuthorizationDeactivated(ScopeOf(b), account.id,
                                                   "https://ca.test/authz/1"),
              StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(std::vector<Authorization> theirs,
                       store().ListOutstandingAuthorizations(ScopeOf(b), {}));
  EXPECT_THAT(theirs, IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// Certificates

TEST_P(StoreConformanceTest, NewerCertificateSupersedesAndIsCurrent) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  ASSERT_OK_AND_ASSIGN(Certificate old_cert,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "01",
                                                                       absl::Hours(24 * 60))));
  EXPECT_FALSE(old_cert.has_private_key);
  clock().Advance(absl::Hours(24));
  ASSERT_OK_AND_ASSIGN(Certificate new_cert,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "02")));
  ASSERT_OK_AND_ASSIGN(Certificate old_now, store().GetCertificate(scope, old_cert.id));
  EXPECT_EQ(old_now.superseded_at, clock().Now());
  EXPECT_FALSE(new_cert.superseded_at.has_value());
  ASSERT_OK_AND_ASSIGN(Certificate current, store().GetCurrentCertificate(scope, {"a.test"}));
  EXPECT_EQ(current.id, new_cert.id);
  EXPECT_THAT(store().GetCurrentCertificate(scope, {"a.test", "b.test"}), StatusIs(kNotFound));

  ASSERT_OK(store().MarkCertificateRevoked(scope, new_cert.id, RevocationReason::kKeyCompromise));
  EXPECT_THAT(store().MarkCertificateRevoked(scope, new_cert.id, RevocationReason::kKeyCompromise),
              StatusIs(kFailedPrecondition, "already revoked"));
  EXPECT_THAT(store().MarkCertificateRevoked(scope, old_cert.id, static_cast<RevocationReason>(7)), StatusIs(kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(current, store().GetCurrentCertificate(scope, {"a.test"}));
  EXPECT_EQ(current.id, old_cert.id);  // still valid, though superseded
  ASSERT_OK_AND_ASSIGN(Certificate revoked, store().GetCertificate(scope, new_cert.id));
  EXPECT_EQ(revoked.revocation_reason, RevocationReason::kKeyCompromise);
  EXPECT_EQ(revoked.revoked_at, clock().Now());
  clock().Advance(absl::Hours(24 * 60));
  EXPECT_THAT(store().GetCurrentCertificate(scope, {"a.test"}), StatusIs(kNotFound));
  EXPECT_THAT(store().GetCertificateKey(scope, old_cert.id, "x"),
              StatusIs(kNotFound, "no stored key"));
}

TEST_P(StoreConformanceTest, SerialsAreUniquePerTenantAndValidated) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  ASSERT_OK(store().InsertCertificate(ScopeOf(a), CertificateFor({"a.test"}, "ABCDEF")).status());
  EXPECT_THAT(store().InsertCertificate(ScopeOf(a), CertificateFor({"x.test"}, "abcdef")),
              StatusIs(kAlreadyExists));
  ASSERT_OK(store().InsertCertificate(ScopeOf(b), CertificateFor({"a.test"}, "abcdef")).status());
  ASSERT_OK_AND_ASSIGN(Certificate found, store().GetCertificateBySerial(ScopeOf(a), "AbCdEf"));
  EXPECT_THAT(found.identifiers, ElementsAre("a.test"));
  EXPECT_EQ(found.tenant, a.id);
  EXPECT_THAT(store().GetCertificateBySerial(ScopeOf(a), "00"), StatusIs(kNotFound));
  EXPECT_THAT(store().GetCertificate(ScopeOf(b), found.id), StatusIs(kNotFound));
  EXPECT_THAT(store().InsertCertificate(ScopeOf(a), CertificateFor({"a.test"}, "xyz")),
              StatusIs(kInvalidArgument, "hex"));
  NewCertificate backwards = CertificateFor({"a.test"}, "0f");
  backwards.not_after = backwards.not_before;
  EXPECT_THAT(store().InsertCertificate(ScopeOf(a), backwards), StatusIs(kInvalidArgument));
  EXPECT_THAT(store().InsertCertificate(ScopeOf(a), CertificateFor({}, "0e")),
              StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, ListCertificatesFiltersByStateAndExpiryAndPages) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  std::vector<CertificateId> ids;
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(Certificate c,
                         store().InsertCertificate(
                             scope, CertificateFor({absl::StrCat(i, ".test")},
                                                   absl::StrCat("a", i), absl::Hours(24 * (i + 1)))));
    ids.push_back(c.id);
  }
  ASSERT_OK(store().MarkCertificateRevoked(scope, ids[4], RevocationReason::kSuperseded));
  clock().Advance(absl::Hours(36));  // 0.test expired
  auto list = [&](CertificateFilter filter) {
    std::vector<CertificateId> out;
    PageRequest page{"", 2};
    for (int pages = 0; pages < 10; ++pages) {
      auto p = store().ListCertificates(scope, filter, page);
      EXPECT_TRUE(p.ok()) << p.status();
      if (!p.ok()) break;
      for (const Certificate& c : p->items) out.push_back(c.id);
      page.page_token = p->next_page_token;
      if (page.page_token.empty()) break;
    }
    return out;
  };
  EXPECT_EQ(list({}), ids);
  EXPECT_THAT(list({CertificateState::kLive}), ElementsAre(ids[1], ids[2], ids[3]));
  EXPECT_THAT(list({CertificateState::kRevoked}), ElementsAre(ids[4]));
  EXPECT_THAT(list({CertificateState::kExpired}), ElementsAre(ids[0]));
  EXPECT_THAT(list({CertificateState::kAny, clock().Now() + absl::Hours(30), std::nullopt}),
              ElementsAre(ids[0], ids[1]));
  EXPECT_THAT(list({CertificateState::kLive, std::nullopt, clock().Now() + absl::Hours(60)}),
              ElementsAre(ids[3]));
  Tenant b = MakeTenant("beta");
  EXPECT_THAT(list({}), SizeIs(5));
  ASSERT_OK_AND_ASSIGN(Page<Certificate> theirs, store().ListCertificates(ScopeOf(b), {}, {}));
  EXPECT_THAT(theirs.items, IsEmpty());
}

TEST_P(StoreConformanceTest, DueForRenewalUsesEachTenantsWindowAcrossTenants) {
  Tenant shortw = MakeTenant("short", absl::Hours(24 * 10));
  Tenant longw = MakeTenant("long", absl::Hours(24 * 30));
  Tenant off = MakeTenant("off", absl::Hours(24 * 30));
  auto insert = [&](const Tenant& t, const std::string& name, int days) {
    auto c = store().InsertCertificate(
        ScopeOf(t), CertificateFor({name}, absl::StrCat(days, "0"), absl::Hours(24 * days)));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->id : 0;
  };
  CertificateId s5 = insert(shortw, "s5.test", 5);
  insert(shortw, "s20.test", 20);
  CertificateId l5 = insert(longw, "l5.test", 5);
  CertificateId l20 = insert(longw, "l20.test", 20);
  insert(longw, "l40.test", 40);
  CertificateId revoked = insert(longw, "r.test", 3);
  ASSERT_OK(store().MarkCertificateRevoked(ScopeOf(longw), revoked, RevocationReason::kUnspecified));
  CertificateId superseded = insert(longw, "x.test", 2);
  CertificateId replacement = insert(longw, "x.test", 21);
  insert(off, "o5.test", 5);
  ASSERT_OK(store().DisableTenant(ScopeOf(off)));
  EXPECT_NE(superseded, replacement);

  std::vector<std::pair<TenantId, CertificateId>> due;
  PageRequest page{"", 2};
  for (int pages = 0; pages < 10; ++pages) {
    ASSERT_OK_AND_ASSIGN(Page<DueCertificate> p, store().ListCertificatesDueForRenewal(page));
    for (const DueCertificate& d : p.items) due.emplace_back(d.tenant, d.id);
    page.page_token = p.next_page_token;
    if (page.page_token.empty()) break;
  }
  // Ordered by expiry, then id: s5 and l5 (5 days, in insertion order), l20, x.test's 21.
  EXPECT_THAT(due, ElementsAre(std::make_pair(shortw.id, s5), std::make_pair(longw.id, l5),
                               std::make_pair(longw.id, l20),
                               std::make_pair(longw.id, replacement)));
  ASSERT_OK_AND_ASSIGN(Page<DueCertificate> one, store().ListCertificatesDueForRenewal({"", 1}));
  ASSERT_THAT(one.items, SizeIs(1));
  EXPECT_THAT(one.items[0].identifiers, ElementsAre("s5.test"));
  EXPECT_EQ(one.items[0].not_after, clock().Now() + absl::Hours(24 * 5));
  EXPECT_THAT(store().ListCertificatesDueForRenewal({"garbage", 1}),
              StatusIs(kInvalidArgument));
}

// ---------------------------------------------------------------------------------------------
// Challenges

TEST_P(StoreConformanceTest, ChallengesAreServedToAnyReplicaAndOwnedByOneTenant) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const std::string token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
  ASSERT_OK(store().PutChallenge(ScopeOf(a), token, token + ".thumb"));
  ASSERT_OK(store().PutChallenge(ScopeOf(a), token, token + ".thumb"));  // retried
  EXPECT_THAT(store().PutChallenge(ScopeOf(a), token, token + ".other"),
              StatusIs(kAlreadyExists));
  EXPECT_THAT(store().PutChallenge(ScopeOf(b), token, token + ".thumb"),
              StatusIs(kAlreadyExists));
  EXPECT_THAT(store().PutChallenge(ScopeOf(a), "bad token", "x"), StatusIs(kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(std::string key_authorization, store().LookupChallenge(token));
  EXPECT_EQ(key_authorization, token + ".thumb");
  EXPECT_THAT(store().LookupChallenge("unknown"), StatusIs(kNotFound));
  ASSERT_OK(store().DeleteChallenge(ScopeOf(b), token));  // not theirs: nothing happens
  ASSERT_OK_AND_ASSIGN(key_authorization, store().LookupChallenge(token));
  ASSERT_OK(store().DeleteChallenge(ScopeOf(a), token));
  EXPECT_THAT(store().LookupChallenge(token), StatusIs(kNotFound));
  EXPECT_THAT(AuditActions(ScopeOf(a)),
              ElementsAre("CreateTenant", "PutChallenge", "DeleteChallenge"));
  EXPECT_THAT(AuditActions(ScopeOf(b)), ElementsAre("CreateTenant"));
}

// ---------------------------------------------------------------------------------------------
// Audit

TEST_P(StoreConformanceTest, AuditChainLinksEveryRowPerTenant) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  AuditEvent e;
  e.action = "Issue";
  e.identifiers = {"a.test", "with \"quotes\", commas\\"};
  e.account = 42;
  e.key_version = 3;
  e.acme_url = "https://ca.test/order/1";
  e.outcome = "rate limited";
  e.detail = "urn:ietf:params:acme:error:rateLimited";
  clock().Advance(absl::Seconds(1));
  ASSERT_OK(store().AppendAudit(scope, e));
  ASSERT_OK(store().AppendAudit(ScopeOf(b), e));
  ASSERT_OK(store().AppendAudit(scope, AuditEvent{"Deny", {}, std::nullopt, std::nullopt, "",
                                                  "denied", ""}));
  EXPECT_THAT(store().AppendAudit(scope, AuditEvent{}), StatusIs(kInvalidArgument));

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rows, store().ListAudit(scope, {}));
  ASSERT_THAT(rows.items, SizeIs(3));
  const AuditRecord& issue = rows.items[1];
  EXPECT_EQ(issue.tenant, a.id);
  EXPECT_EQ(issue.seq, 2);
  EXPECT_EQ(issue.at, clock().Now());
  EXPECT_EQ(issue.actor.identity, "spiffe://test/admin");
  EXPECT_THAT(issue.event.identifiers, ElementsAre("a.test", "with \"quotes\", commas\\"));
  EXPECT_EQ(issue.event.account, 42);
  EXPECT_EQ(issue.event.key_version, 3);
  EXPECT_EQ(issue.event.acme_url, "https://ca.test/order/1");
  EXPECT_EQ(issue.event.outcome, "rate limited");
  EXPECT_EQ(issue.event.detail, "urn:ietf:params:acme:error:rateLimited");
  EXPECT_EQ(rows.items[2].event.account, std::nullopt);
  EXPECT_EQ(rows.items[0].prev_hash, std::string(32, '\0'));
  for (size_t i = 0; i < rows.items.size(); ++i) {
    EXPECT_EQ(rows.items[i].seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(rows.items[i].hash.size(), 32u);
    if (i > 0) {
      EXPECT_EQ(rows.items[i].prev_hash, rows.items[i - 1].hash);
    }
  }
  // Tenant b has its own chain from 1; the same event hashes differently there.
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> theirs, store().ListAudit(ScopeOf(b), {}));
  ASSERT_THAT(theirs.items, SizeIs(2));
  EXPECT_EQ(theirs.items[1].seq, 2);
  EXPECT_NE(theirs.items[1].hash, issue.hash);
  EXPECT_OK(store().VerifyAuditChain(scope));
  EXPECT_OK(store().VerifyAuditChain(ScopeOf(b)));

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> first, store().ListAudit(scope, {"", 2}));
  EXPECT_THAT(first.items, SizeIs(2));
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rest, store().ListAudit(scope, {first.next_page_token, 2}));
  ASSERT_THAT(rest.items, SizeIs(1));
  EXPECT_EQ(rest.items[0].seq, 3);
  EXPECT_TRUE(rest.next_page_token.empty());
}

TEST_P(StoreConformanceTest, NoAuditRowCarriesKeyMaterial) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  crypto::PrivateKey next = NewKey(crypto::KeyAlgorithm::kEcdsaP384);
  ASSERT_OK(store().AddPendingKey(scope, account.id, next, InfoFor(next)).status());
  ASSERT_OK(store().GetKey(scope, account.id, 2, "probe").status());
  ASSERT_OK(store().PromoteKey(scope, account.id, 2));
  ASSERT_OK(store().GetActiveKey(scope, account.id, "sign").status());
  ASSERT_OK(store().MarkKeyCompromised(scope, account.id, 1));
  crypto::PrivateKey cert_key = NewKey();
  NewCertificate cert = CertificateFor({"a.test"}, "0c");
  cert.private_key = &cert_key;
  ASSERT_OK_AND_ASSIGN(Certificate stored, store().InsertCertificate(scope, cert));
  ASSERT_OK(store().GetCertificateKey(scope, stored.id, "serve").status());
  crypto::PrivateKey order_key = NewKey(crypto::KeyAlgorithm::kRsa2048);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult order,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"b.test"}, "", "r", absl::Minutes(1)},
                              CsrBytes(700), &order_key)));
  ASSERT_OK(store().GetOrderCertificateKey(scope, order.order.id, "finalize").status());

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rows, store().ListAudit(scope, {"", 1000}));
  EXPECT_THAT(rows.items, SizeIs(11));
  for (const AuditRecord& r : rows.items) {
    std::string all = absl::StrCat(r.actor.identity, "|", r.actor.rpc, "|", r.event.action, "|",
                                   r.event.acme_url, "|", r.event.outcome, "|", r.event.detail);
    for (const std::string& id : r.event.identifiers) absl::StrAppend(&all, "|", id);
    EXPECT_THAT(FindLeaks(all, generated_keys()), IsEmpty()) << r.event.action;
  }
  EXPECT_OK(store().VerifyAuditChain(scope));
}

// ---------------------------------------------------------------------------------------------
// Envelope encryption and KEK rotation

TEST_P(StoreConformanceTest, WithoutAKeyEncryptionKeyThereIsNoStore) {
  EXPECT_THAT(harness().Reopen(KekSet()),
              StatusIs(kFailedPrecondition, "no key-encryption key"));
}

TEST_P(StoreConformanceTest, RewrapMovesEveryKeyToTheNewKekSoTheOldCanBeDropped) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  std::vector<std::pair<Scope, AccountId>> accounts;
  for (const Tenant& t : {a, b}) {
    for (int i = 0; i < 2; ++i) accounts.emplace_back(ScopeOf(t), MakeAccount(ScopeOf(t)).id);
  }
  crypto::PrivateKey pending = NewKey();
  ASSERT_OK(store().AddPendingKey(accounts[0].first, accounts[0].second, pending,
                                  InfoFor(pending))
                .status());
  crypto::PrivateKey cert_key = NewKey();
  NewCertificate cert = CertificateFor({"c.test"}, "0c");
  cert.private_key = &cert_key;
  ASSERT_OK_AND_ASSIGN(Certificate stored, store().InsertCertificate(ScopeOf(b), cert));
  // Orders' keys: one in flight, one of an order that failed (terminal, yet re-wrapped too).
  crypto::PrivateKey in_flight_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult in_flight,
      store().CreateOrJoinOrder(
          accounts[0].first,
          WithMaterial(NewOrder{accounts[0].second, {"o.test"}, "", "r", absl::Minutes(1)},
                       CsrBytes(200), &in_flight_key)));
  crypto::PrivateKey failed_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult failed,
      store().CreateOrJoinOrder(
          accounts[2].first,
          WithMaterial(NewOrder{accounts[2].second, {"f.test"}, "", "r", absl::Minutes(1)}, "",
                       &failed_key)));
  ASSERT_OK(store().TransitionOrder(accounts[2].first, *failed.lease, OrderState::kInvalid, "no"));
  const int kRecords = 4 + 1 + 1 + 2;

  // A replica that knows only the new KEK cannot open the old records yet.
  ASSERT_OK_AND_ASSIGN(auto new_only, harness().Reopen(TestKeks(KekText("kek-b", 'b'))));
  EXPECT_THAT(new_only->GetActiveKey(accounts[0].first, accounts[0].second, "x"),
              StatusIs(kFailedPrecondition, "\"kek-a\", which is not configured"));

  ASSERT_OK_AND_ASSIGN(auto both, harness().Reopen(TestKeks(KekText("kek-a", 'a') + "\n" +
                                                            KekText("kek-b", 'b'))));
  int64_t total = 0;
  for (int calls = 0; calls < 10; ++calls) {
    ASSERT_OK_AND_ASSIGN(VaultMaintenance::RewrapProgress p,
                         both->RewrapBatch(Actor{"job", "Rewrap"}, 4));
    EXPECT_LE(p.rewrapped, 4);
    total += p.rewrapped;
    if (p.done) break;
  }
  EXPECT_EQ(total, kRecords);
  ASSERT_OK_AND_ASSIGN(VaultMaintenance::RewrapProgress idle,
                       both->RewrapBatch(Actor{"job", "Rewrap"}, 4));
  EXPECT_EQ(idle.rewrapped, 0);
  EXPECT_TRUE(idle.done);

  for (const auto& [scope, account] : accounts) {
    ASSERT_OK_AND_ASSIGN(UnsealedAccountKey key, new_only->GetActiveKey(scope, account, "x"));
    EXPECT_EQ(key.info.kek_id, "kek-b");
  }
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey p2, new_only->GetKey(accounts[0].first,
                                                               accounts[0].second, 2, "x"));
  EXPECT_EQ(p2.private_key.public_key().ToDer(), pending.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey c, new_only->GetCertificateKey(ScopeOf(b), stored.id, "x"));
  EXPECT_EQ(c.public_key().ToDer(), cert_key.public_key().ToDer());
  // new_only knows kek-b alone: the orders' keys opening there are wrapped under it.
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey o1, new_only->GetOrderCertificateKey(
                                                  accounts[0].first, in_flight.order.id, "x"));
  EXPECT_EQ(o1.public_key().ToDer(), in_flight_key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey o2,
                       new_only->GetOrderCertificateKey(accounts[2].first, failed.order.id, "x"));
  EXPECT_EQ(o2.public_key().ToDer(), failed_key.public_key().ToDer());
  EXPECT_THAT(AuditActions(ScopeOf(a)), ::testing::Contains("RewrapKeys"));
  EXPECT_THAT(AuditActions(ScopeOf(b)), ::testing::Contains("RewrapKeys"));
  EXPECT_OK(store().VerifyAuditChain(ScopeOf(a)));
}

}  // namespace
}  // namespace acmevault::storage::testing
