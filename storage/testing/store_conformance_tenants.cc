// The conformance suite (store_conformance.h): tenants, identities, and the tenant check of
// every scoped call.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

namespace {

// ---------------------------------------------------------------------------------------------
// Tenants

TEST_P(StoreConformanceTest, AReadyStoreIsHealthy) { EXPECT_OK(store().CheckHealth()); }

TEST_P(StoreConformanceTest, CreateTenantRoundTripsEveryField) {
  TenantSpec spec;
  spec.name = "acme-corp";
  spec.allowed_identifiers = {"example.com", "*.example.com", "quote\"and\\slash"};
  spec.policy.key_algorithm = crypto::KeyAlgorithm::kEcdsaP384;
  spec.policy.max_key_age = absl::Hours(24 * 7);
  spec.policy.deactivate_authorizations_after_issuance = false;
  spec.policy.ephemeral_accounts = true;
  spec.policy.renewal_window = absl::Hours(24 * 10);
  spec.policy.certificate_key_algorithms = {crypto::KeyAlgorithm::kEcdsaP384,
                                            crypto::KeyAlgorithm::kRsa3072};
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
  EXPECT_THAT(got.spec.policy.certificate_key_algorithms,
              ElementsAre(crypto::KeyAlgorithm::kEcdsaP384, crypto::KeyAlgorithm::kRsa3072));
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
  spec.acme_directory_url = a.spec.acme_directory_url;
  spec.policy.certificate_key_algorithms = {crypto::KeyAlgorithm::kRsa2048,
                                            crypto::KeyAlgorithm::kRsa2048};
  EXPECT_THAT(store().CreateTenant({}, spec),
              StatusIs(kInvalidArgument, "certificate key algorithm rsa-2048 listed twice"));
  spec.policy.certificate_key_algorithms.assign(9, crypto::KeyAlgorithm::kEcdsaP256);
  EXPECT_THAT(store().CreateTenant({}, spec),
              StatusIs(kInvalidArgument, "at most 8 certificate key algorithms"));
  spec.policy.certificate_key_algorithms.clear();

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
  spec.policy.certificate_key_algorithms = {crypto::KeyAlgorithm::kRsa2048};
  ASSERT_OK_AND_ASSIGN(Tenant updated, store().UpdateTenant(ScopeOf(t), spec));
  EXPECT_EQ(updated.spec.name, "alpha-2");
  EXPECT_THAT(updated.spec.policy.certificate_key_algorithms,
              ElementsAre(crypto::KeyAlgorithm::kRsa2048));
  ASSERT_OK_AND_ASSIGN(Tenant reread, store().GetTenant(ScopeOf(t)));
  EXPECT_THAT(reread.spec.policy.certificate_key_algorithms,
              ElementsAre(crypto::KeyAlgorithm::kRsa2048));
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
  ASSERT_OK_AND_ASSIGN(
      Identity added,
      store().AddTokenIdentity(ScopeOf(a), hash, Role::kPlatformAdmin, "ops", std::nullopt));
  EXPECT_TRUE(added.bearer_token);
  EXPECT_TRUE(added.spiffe_id.empty());
  EXPECT_THAT(store().AddTokenIdentity(ScopeOf(a), hash, Role::kHost, "", std::nullopt),
              StatusIs(kAlreadyExists));
  EXPECT_THAT(store().AddTokenIdentity(ScopeOf(a), "short", Role::kHost, "", std::nullopt),
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

TEST_P(StoreConformanceTest, ATokenMayExpire) {
  Tenant a = MakeTenant("alpha");
  const std::string hash(32, 'e');
  const absl::Time expiry = clock().Now() + absl::Hours(1) + absl::Nanoseconds(1500);
  ASSERT_OK_AND_ASSIGN(Identity added,
                       store().AddTokenIdentity(ScopeOf(a), hash, Role::kHost, "ci", expiry));
  EXPECT_EQ(added.expires_at, TruncateToMicros(expiry));
  ASSERT_OK_AND_ASSIGN(Identity who, store().AuthenticateToken(hash));
  EXPECT_EQ(who.expires_at, TruncateToMicros(expiry));
  ASSERT_OK_AND_ASSIGN(std::vector<Identity> listed, store().ListIdentities(ScopeOf(a)));
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].expires_at, TruncateToMicros(expiry));

  clock().Advance(absl::Hours(1));
  ASSERT_OK(store().AuthenticateToken(hash).status());
  clock().Advance(absl::Microseconds(1));
  EXPECT_THAT(store().AuthenticateToken(hash), StatusIs(kNotFound));
  // An expiry must lie ahead.
  EXPECT_THAT(
      store().AddTokenIdentity(ScopeOf(a), std::string(32, 'f'), Role::kHost, "", clock().Now()),
      StatusIs(kInvalidArgument, "expiry"));
  // A SPIFFE binding never expires; only revocation ends it.
  ASSERT_OK_AND_ASSIGN(Identity bound,
                       store().AddSpiffeIdentity(ScopeOf(a), "spiffe://t/b", Role::kHost, ""));
  EXPECT_FALSE(bound.expires_at.has_value());
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(ScopeOf(a), {}));
  ASSERT_THAT(audit.items, SizeIs(3));
  EXPECT_EQ(audit.items[1].event.action, "AddTokenIdentity");
  EXPECT_THAT(audit.items[1].event.detail, HasSubstr(", expires 20"));
}

TEST_P(StoreConformanceTest, DisabledTenantsIdentitiesDoNotAuthenticate) {
  Tenant a = MakeTenant("alpha");
  ASSERT_OK(store().AddSpiffeIdentity(ScopeOf(a), "spiffe://t/a", Role::kAdmin, "").status());
  ASSERT_OK(store()
                .AddTokenIdentity(ScopeOf(a), std::string(32, 't'), Role::kHost, "", std::nullopt)
                .status());
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

// What a replica's waker hears of revocations: "<tenant> <identity>", "<tenant> -" for a
// whole tenant ("0 -": anything may be stale).
class RevocationRecorder {
 public:
  JobWakeups Wakeups() {
    JobWakeups w;
    w.identities_revoked = [this](const Revocation& r) {
      absl::MutexLock lock(&mu_);
      seen_.push_back(absl::StrCat(r.tenant, " ",
                                   r.identity.has_value() ? absl::StrCat(*r.identity) : "-"));
    };
    return w;
  }
  // What was heard once there are at least `n` (fewer if they did not come).
  std::vector<std::string> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
    return seen_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

// Token caches of every replica drop what a revocation made stale when they hear of it.
TEST_P(StoreConformanceTest, RevocationsReachEveryReplicasWaker) {
  Tenant a = MakeTenant("alpha");
  ASSERT_OK_AND_ASSIGN(Identity token, store().AddTokenIdentity(ScopeOf(a), std::string(32, 'r'),
                                                                Role::kHost, "", std::nullopt));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> replica,
                       harness().Reopen(TestKeks(KekText("kek-a", 'a'))));
  RevocationRecorder heard;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> waker, replica->WatchJobs(heard.Wakeups()));
  EXPECT_THAT(heard.WaitFor(1), ElementsAre("0 -")) << "deliveries never started";

  ASSERT_OK(store().RevokeIdentity(ScopeOf(a), token.id));
  ASSERT_OK(store().RevokeIdentity(ScopeOf(a), token.id));  // no change: nothing to hear
  ASSERT_OK(store().DisableTenant(ScopeOf(a)));
  EXPECT_THAT(heard.WaitFor(3), ElementsAre("0 -", absl::StrCat(a.id, " ", token.id),
                                            absl::StrCat(a.id, " -")));
}

// ---------------------------------------------------------------------------------------------
// The tenant check

// Every read that takes a Scope, by name, with what it returned.
std::vector<std::pair<std::string, absl::Status>> Reads(Store& store, const Scope& scope,
                                                        AccountId account, OrderId order) {
  return {
      {"GetTenant", store.GetTenant(scope).status()},
      {"ListIdentities", store.ListIdentities(scope).status()},
      {"GetAccount", store.GetAccount(scope, account).status()},
      {"ListAccounts", store.ListAccounts(scope).status()},
      {"ListKeys", store.ListKeys(scope, account).status()},
      {"GetOrder", store.GetOrder(scope, order).status()},
      {"FindOrderByIdempotencyKey", store.FindOrderByIdempotencyKey(scope, "req-1").status()},
      {"ListOutstandingAuthorizations", store.ListOutstandingAuthorizations(scope, {}).status()},
      {"GetCertificateBySerial", store.GetCertificateBySerial(scope, "0a").status()},
      {"GetCurrentCertificate", store.GetCurrentCertificate(scope, {"a.test"}).status()},
      {"ListCertificates", store.ListCertificates(scope, {}, {}).status()},
      {"ListAudit", store.ListAudit(scope, {}).status()},
      {"VerifyAuditChain", store.VerifyAuditChain(scope)},
  };
}

// A read goes through the same tenant check as a write: a Scope naming no tenant, or one that
// does not exist, is refused alike, where a read used to answer "nothing here".
TEST_P(StoreConformanceTest, ReadsAreRefusedAWrongOrMissingTenantAsWritesAre) {
  Tenant a = MakeTenant("alpha");
  Account account = MakeAccount(ScopeOf(a));
  const OrderId order = MakeOrder(ScopeOf(a), account.id, {"a.test"}).order;
  ASSERT_OK(store().InsertCertificate(ScopeOf(a), CertificateFor({"a.test"}, "0a")).status());
  const AuditEvent deny{"Deny", {}, std::nullopt, std::nullopt, "", "denied", ""};
  const Actor actor{"spiffe://test/admin", "test/Rpc"};
  const TenantId missing = a.id + 1000;
  struct Case {
    Scope scope;
    absl::StatusCode code;
    std::string message;
  };
  for (const Case& c :
       {Case{Scope{0, actor}, kInvalidArgument, "no tenant"},
        Case{Scope{-1, actor}, kInvalidArgument, "no tenant"},
        Case{Scope{missing, actor}, kNotFound, absl::StrCat("tenant ", missing, " not found")}}) {
    EXPECT_THAT(store().AppendAudit(c.scope, deny), StatusIs(c.code, c.message));
    crypto::PrivateKey key = NewKey();
    EXPECT_THAT(
        store().CreateAccount(c.scope, "https://ca.test/dir", key, InfoFor(key), KeyState::kActive),
        StatusIs(c.code, c.message));
    for (const auto& [read, status] : Reads(store(), c.scope, account.id, order)) {
      EXPECT_THAT(status, StatusIs(c.code, c.message)) << read << " in tenant " << c.scope.tenant;
    }
  }
  // A disabled tenant passes the check, for reads and writes alike: disabling stops
  // authentication, lease claims and renewals, not an authenticated caller.
  ASSERT_OK(store().DisableTenant(ScopeOf(a)));
  for (const auto& [read, status] : Reads(store(), ScopeOf(a), account.id, order)) {
    EXPECT_THAT(status, ::testing::AnyOf(StatusIs(absl::StatusCode::kOk),
                                         StatusIs(kNotFound, "no order with this idempotency key")))
        << read;
  }
  EXPECT_OK(store().AppendAudit(ScopeOf(a), deny));
  // The refused calls wrote nothing.
  EXPECT_THAT(AuditActions(ScopeOf(a)), ElementsAre("CreateTenant", "CreateAccount", "CreateOrder",
                                                    "InsertCertificate", "DisableTenant", "Deny"));
}

}  // namespace
}  // namespace acmevault::storage::testing
