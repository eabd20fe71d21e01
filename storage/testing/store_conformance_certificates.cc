// The conformance suite (store_conformance.h): the authorization ledger, certificates and
// HTTP-01 challenges.
#include <algorithm>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::acmevault::crypto::RevocationReason;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

namespace {

// ---------------------------------------------------------------------------------------------
// Authorizations

// Issue 10: what IssueCertificate reads first, in one transaction, is what the three reads it
// replaces answer.
TEST_P(StoreConformanceTest, LoadIssueContextIsTheTenantItsAccountsAndTheCurrentCertificate) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  Account first = MakeAccount(scope);
  Account second = MakeAccount(scope, "https://ca.test/other");
  MakeAccount(ScopeOf(b));
  ASSERT_OK_AND_ASSIGN(IssueContext none, store().LoadIssueContext(scope, {"a.test"}));
  EXPECT_EQ(none.tenant.id, a.id);
  EXPECT_EQ(none.tenant.spec.name, "alpha");
  ASSERT_EQ(none.accounts.size(), 2u);
  EXPECT_EQ(none.accounts[0].id, first.id);
  EXPECT_EQ(none.accounts[1].id, second.id);
  EXPECT_FALSE(none.current.has_value());

  Lease lease = MakeOrder(scope, first.id, {"a.test"});
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK_AND_ASSIGN(Certificate issued,
                       store().CompleteOrder(scope, lease, CertificateFor({"a.test"}, "0a")));
  ASSERT_OK_AND_ASSIGN(IssueContext found, store().LoadIssueContext(scope, {"A.test"}));
  ASSERT_TRUE(found.current.has_value());
  EXPECT_EQ(found.current->id, issued.id);
  ASSERT_OK_AND_ASSIGN(Certificate current, store().GetCurrentCertificate(scope, {"a.test"}));
  EXPECT_EQ(found.current->serial, current.serial);
  // Another tenant sees none of it; a missing tenant is NOT_FOUND as GetTenant says it.
  ASSERT_OK_AND_ASSIGN(IssueContext other, store().LoadIssueContext(ScopeOf(b), {"a.test"}));
  EXPECT_EQ(other.accounts.size(), 1u);
  EXPECT_FALSE(other.current.has_value());
  EXPECT_THAT(store().LoadIssueContext(Scope{a.id + b.id + 100, {"t", "t"}}, {"a.test"}),
              StatusIs(kNotFound, "not found"));
  EXPECT_THAT(store().LoadIssueContext(scope, {"a b"}), StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, AuthorizationLedgerListsWhatIsOutstanding) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test", "b.test"});
  const absl::Time later = clock().Now() + absl::Hours(24);
  ASSERT_OK_AND_ASSIGN(
      Authorization first,
      store().RecordAuthorization(scope, {account.id, lease.order, "https://ca.test/authz/1",
                                          "A.test", AuthorizationStatus::kPending, later}));
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
                .RecordAuthorization(
                    scope, {account.id, std::nullopt, "https://ca.test/authz/4", "d.test",
                            AuthorizationStatus::kValid, clock().Now() + absl::Seconds(1)})
                .status());
  // The CA validated the first: the same URL updates the row.
  ASSERT_OK_AND_ASSIGN(
      Authorization updated,
      store().RecordAuthorization(scope, {account.id, std::nullopt, "https://ca.test/authz/1",
                                          "a.test", AuthorizationStatus::kValid, later}));
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
  // One by id; those last recorded before a time (the policy sweep's); the first few.
  AuthorizationFilter by_id;
  by_id.id = first.id;
  EXPECT_THAT(urls(by_id), ElementsAre("https://ca.test/authz/1"));
  AuthorizationFilter older;
  older.updated_before = clock().Now();
  EXPECT_THAT(urls(older), IsEmpty());
  older.updated_before = clock().Now() + absl::Microseconds(1);
  older.limit = 2;
  EXPECT_THAT(urls(older), ElementsAre("https://ca.test/authz/1", "https://ca.test/authz/2"));
  clock().Advance(absl::Seconds(1));  // authz 4 expires
  ASSERT_OK(store().MarkAuthorizationDeactivated(scope, account.id, "https://ca.test/authz/2"));
  EXPECT_THAT(urls({}), ElementsAre("https://ca.test/authz/1"));
  EXPECT_THAT(store().MarkAuthorizationDeactivated(scope, account.id, "https://ca.test/authz/9"),
              StatusIs(kNotFound));
  Tenant b = MakeTenant("beta");
  EXPECT_THAT(
      store().MarkAuthorizationDeactivated(ScopeOf(b), account.id, "https://ca.test/authz/1"),
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
  ASSERT_OK_AND_ASSIGN(
      Certificate old_cert,
      store().InsertCertificate(scope, CertificateFor({"a.test"}, "01", absl::Hours(24 * 60))));
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
  EXPECT_THAT(store().MarkCertificateRevoked(scope, old_cert.id, static_cast<RevocationReason>(7)),
              StatusIs(kInvalidArgument));
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

TEST_P(StoreConformanceTest, ARenewalRecordsTheCertificateItReplacedOnce) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  ASSERT_OK_AND_ASSIGN(Certificate old_cert,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "0a")));
  ASSERT_OK_AND_ASSIGN(Certificate renewal,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "0b")));
  ASSERT_OK_AND_ASSIGN(Certificate other,
                       store().InsertCertificate(scope, CertificateFor({"c.test"}, "0c")));
  ASSERT_OK_AND_ASSIGN(Certificate elsewhere,
                       store().InsertCertificate(ScopeOf(b), CertificateFor({"a.test"}, "0d")));
  EXPECT_EQ(renewal.replaces_serial, "");
  ASSERT_OK(store().RecordReplacedCertificate(scope, renewal.id, old_cert.id));
  ASSERT_OK(store().RecordReplacedCertificate(scope, renewal.id, old_cert.id));  // again: OK
  EXPECT_THAT(store().RecordReplacedCertificate(scope, renewal.id, other.id),
              StatusIs(kFailedPrecondition, "already replaces 0a"));
  EXPECT_THAT(store().RecordReplacedCertificate(scope, other.id, other.id),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().RecordReplacedCertificate(scope, other.id, elsewhere.id),
              StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(Certificate read, store().GetCertificate(scope, renewal.id));
  EXPECT_EQ(read.replaces_serial, "0a");
  ASSERT_OK_AND_ASSIGN(Certificate by_serial, store().GetCertificateBySerial(scope, "0b"));
  EXPECT_EQ(by_serial.replaces_serial, "0a");
  // The old one is as it was: superseded by the renewal, not revoked, replacing nothing.
  ASSERT_OK_AND_ASSIGN(Certificate old_now, store().GetCertificate(scope, old_cert.id));
  EXPECT_TRUE(old_now.superseded_at.has_value());
  EXPECT_FALSE(old_now.revoked_at.has_value());
  EXPECT_EQ(old_now.replaces_serial, "");
  int audited = 0;
  ASSERT_OK_AND_ASSIGN(auto audit, store().ListAudit(scope, {"", 1000}));
  for (const auto& r : audit.items) {
    audited += r.event.action == "RecordReplacedCertificate" ? 1 : 0;
  }
  EXPECT_EQ(audited, 1);
}

TEST_P(StoreConformanceTest, AriChecksStoreTheWindowAndTheNextCheck) {
  const Scope scope = ScopeOf(MakeTenant("alpha"));
  const Scope elsewhere = ScopeOf(MakeTenant("beta"));
  ASSERT_OK_AND_ASSIGN(Certificate cert,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "0a")));
  EXPECT_FALSE(cert.ari_window_start.has_value());
  EXPECT_FALSE(cert.ari_next_check.has_value());
  const absl::Time start = absl::FromUnixSeconds(1800000000);
  const absl::Time end = start + absl::Hours(48);
  ASSERT_OK(store().RecordAriCheck(scope, cert.id, {start, end, start - absl::Hours(6)}));
  ASSERT_OK_AND_ASSIGN(Certificate read, store().GetCertificate(scope, cert.id));
  EXPECT_EQ(read.ari_window_start, start);
  EXPECT_EQ(read.ari_window_end, end);
  EXPECT_EQ(read.ari_next_check, start - absl::Hours(6));
  // A check without a window moves the next check only; a new window replaces the old one.
  ASSERT_OK(store().RecordAriCheck(scope, cert.id, {std::nullopt, std::nullopt, start}));
  ASSERT_OK_AND_ASSIGN(read, store().GetCertificateBySerial(scope, "0a"));
  EXPECT_EQ(read.ari_window_start, start);
  EXPECT_EQ(read.ari_window_end, end);
  EXPECT_EQ(read.ari_next_check, start);
  ASSERT_OK(store().RecordAriCheck(scope, cert.id, {end, end, end}));
  ASSERT_OK_AND_ASSIGN(read, store().GetCertificate(scope, cert.id));
  EXPECT_EQ(read.ari_window_start, end);
  EXPECT_EQ(read.ari_window_end, end);
  EXPECT_THAT(store().RecordAriCheck(scope, cert.id, {start, std::nullopt, start}),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().RecordAriCheck(scope, cert.id, {end, start, start}),
              StatusIs(kInvalidArgument, "ends before it starts"));
  EXPECT_THAT(store().RecordAriCheck(elsewhere, cert.id, {start, end, start}),
              StatusIs(kNotFound));
  EXPECT_THAT(store().RecordAriCheck(scope, cert.id + 1000, {start, end, start}),
              StatusIs(kNotFound));
}

// Issue 11: a CRL reading stores the next check; a listing records the revocation outside the
// service once (audited with the CRL's URL), and a later listing keeps the first.
TEST_P(StoreConformanceTest, CrlChecksStoreTheNextCheckAndTheFirstListingOnce) {
  const Scope scope = ScopeOf(MakeTenant("alpha"));
  const Scope elsewhere = ScopeOf(MakeTenant("beta"));
  ASSERT_OK_AND_ASSIGN(Certificate cert,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "0a")));
  EXPECT_FALSE(cert.crl_next_check.has_value());
  EXPECT_FALSE(cert.revoked_outside_at.has_value());
  const absl::Time at = absl::FromUnixSeconds(1800000000);
  CrlCheck clean;
  clean.next_check = at;
  ASSERT_OK(store().RecordCrlCheck(scope, cert.id, clean));
  ASSERT_OK_AND_ASSIGN(Certificate read, store().GetCertificate(scope, cert.id));
  EXPECT_EQ(read.crl_next_check, at);
  EXPECT_FALSE(read.revoked_outside_at.has_value());

  CrlCheck listed;
  listed.next_check = at + absl::Hours(6);
  listed.revoked_at = at - absl::Hours(1);
  listed.reason = crypto::RevocationReason::kKeyCompromise;
  listed.crl_url = "http://crl.ca.test/1.crl";
  ASSERT_OK(store().RecordCrlCheck(scope, cert.id, listed));
  CrlCheck later = listed;
  later.next_check = at + absl::Hours(12);
  later.revoked_at = at;
  later.reason = crypto::RevocationReason::kSuperseded;
  ASSERT_OK(store().RecordCrlCheck(scope, cert.id, later));
  ASSERT_OK_AND_ASSIGN(read, store().GetCertificateBySerial(scope, "0a"));
  EXPECT_EQ(read.crl_next_check, at + absl::Hours(12));
  EXPECT_EQ(read.revoked_outside_at, at - absl::Hours(1));
  EXPECT_EQ(read.revoked_outside_reason, crypto::RevocationReason::kKeyCompromise);
  EXPECT_FALSE(read.revoked_at.has_value());
  std::vector<std::string> rows;
  ASSERT_OK_AND_ASSIGN(auto audit, store().ListAudit(scope, {"", 1000}));
  for (const auto& r : audit.items) {
    if (r.event.action == "CertificateRevokedOutside") rows.push_back(r.event.detail);
  }
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0], ::testing::HasSubstr("http://crl.ca.test/1.crl"));
  EXPECT_THAT(store().RecordCrlCheck(elsewhere, cert.id, clean), StatusIs(kNotFound));
  EXPECT_THAT(store().RecordCrlCheck(scope, cert.id + 1000, clean), StatusIs(kNotFound));
  CrlCheck long_url = listed;
  long_url.crl_url = std::string(2049, 'u');
  EXPECT_THAT(store().RecordCrlCheck(scope, cert.id, long_url), StatusIs(kInvalidArgument));
}

// What a waker hears of certificate writes: one tenant id per delivery ("0": anything may be
// stale), and which of them came on the thread that made the recorder.
class CertificateChangeRecorder {
 public:
  JobWakeups Wakeups() {
    JobWakeups w;
    w.certificates_changed = [this](TenantId tenant) {
      absl::MutexLock lock(&mu_);
      seen_.push_back(tenant);
      if (std::this_thread::get_id() == maker_) on_maker_.push_back(tenant);
    };
    return w;
  }
  // How many deliveries for `tenant` came on the maker's thread.
  int OnMakersThread(TenantId tenant) {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(std::count(on_maker_.begin(), on_maker_.end(), tenant));
  }
  // What was heard once there are at least `n` (fewer if they did not come).
  std::vector<TenantId> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
    return seen_;
  }

 private:
  const std::thread::id maker_ = std::this_thread::get_id();
  absl::Mutex mu_;
  std::vector<TenantId> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<TenantId> on_maker_ ABSL_GUARDED_BY(mu_);
};

// Issue 10: certificate caches (service/certificate_cache.h) drop a tenant's entries when any
// replica writes its certificates; the writing replica's own waker has heard it when the write
// returns, so a read there after the write never sees what the write changed.
TEST_P(StoreConformanceTest, CertificateWritesReachEveryReplicasWakerAndTheWritersAtOnce) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> replica,
                       harness().Reopen(TestKeks(KekText("kek-a", 'a'))));
  CertificateChangeRecorder there;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> there_waker, replica->WatchJobs(there.Wakeups()));
  EXPECT_THAT(there.WaitFor(1), ElementsAre(0)) << "deliveries never started";
  CertificateChangeRecorder here;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> here_waker, store().WatchJobs(here.Wakeups()));
  here.WaitFor(1);
  // Each write, checked as it returns: the writer's waker has heard the tenant already, from the
  // writing thread (PostgreSQL's notification comes later on its listener's thread as well).
  auto heard_here = [&](TenantId tenant) { return here.OnMakersThread(tenant); };
  ASSERT_OK_AND_ASSIGN(Certificate cert,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "0a")));
  EXPECT_EQ(heard_here(a.id), 1) << "InsertCertificate";
  ASSERT_OK_AND_ASSIGN(Certificate renewal,
                       store().InsertCertificate(scope, CertificateFor({"a.test"}, "0b")));
  ASSERT_OK(store().RecordReplacedCertificate(scope, renewal.id, cert.id));
  EXPECT_EQ(heard_here(a.id), 3) << "RecordReplacedCertificate";
  const absl::Time at = absl::FromUnixSeconds(1800000000);
  ASSERT_OK(store().RecordAriCheck(scope, renewal.id, {at, at + absl::Hours(1), at}));
  EXPECT_EQ(heard_here(a.id), 4) << "RecordAriCheck";
  CrlCheck clean;
  clean.next_check = at;
  ASSERT_OK(store().RecordCrlCheck(scope, renewal.id, clean));
  EXPECT_EQ(heard_here(a.id), 5) << "RecordCrlCheck";
  ASSERT_OK(store().MarkCertificateRevoked(scope, renewal.id, RevocationReason::kSuperseded));
  EXPECT_EQ(heard_here(a.id), 6) << "MarkCertificateRevoked";
  Lease lease = MakeOrder(scope, MakeAccount(scope).id, {"c.test"});
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK(store().CompleteOrder(scope, lease, CertificateFor({"c.test"}, "0c")).status());
  EXPECT_EQ(heard_here(a.id), 7) << "CompleteOrder";
  ASSERT_OK(store().InsertCertificate(ScopeOf(b), CertificateFor({"a.test"}, "0d")).status());
  EXPECT_EQ(heard_here(b.id), 1);
  // Writes that fail, and a replacement already recorded, change nothing: nothing to hear.
  EXPECT_THAT(store().MarkCertificateRevoked(scope, renewal.id, RevocationReason::kSuperseded),
              StatusIs(kFailedPrecondition));
  ASSERT_OK(store().RecordReplacedCertificate(scope, renewal.id, cert.id));
  EXPECT_THAT(store().RecordAriCheck(ScopeOf(b), cert.id, {at, at, at}), StatusIs(kNotFound));
  EXPECT_EQ(heard_here(a.id), 7);
  EXPECT_EQ(heard_here(b.id), 1);

  // The other replica hears each committed write, in commit order.
  EXPECT_THAT(there.WaitFor(9), ElementsAre(0, a.id, a.id, a.id, a.id, a.id, a.id, a.id, b.id));
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
                             scope, CertificateFor({absl::StrCat(i, ".test")}, absl::StrCat("a", i),
                                                   absl::Hours(24 * (i + 1)))));
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
  ASSERT_OK(
      store().MarkCertificateRevoked(ScopeOf(longw), revoked, RevocationReason::kUnspecified));
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
  EXPECT_THAT(due,
              ElementsAre(std::make_pair(shortw.id, s5), std::make_pair(longw.id, l5),
                          std::make_pair(longw.id, l20), std::make_pair(longw.id, replacement)));
  ASSERT_OK_AND_ASSIGN(Page<DueCertificate> one, store().ListCertificatesDueForRenewal({"", 1}));
  ASSERT_THAT(one.items, SizeIs(1));
  EXPECT_THAT(one.items[0].identifiers, ElementsAre("s5.test"));
  EXPECT_EQ(one.items[0].not_after, clock().Now() + absl::Hours(24 * 5));
  EXPECT_THAT(store().ListCertificatesDueForRenewal({"garbage", 1}), StatusIs(kInvalidArgument));
}

// ---------------------------------------------------------------------------------------------
// Challenges

TEST_P(StoreConformanceTest, ChallengesAreServedToAnyReplicaAndOwnedByOneTenant) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const std::string token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
  ASSERT_OK(store().PutChallenge(ScopeOf(a), token, token + ".thumb"));
  ASSERT_OK(store().PutChallenge(ScopeOf(a), token, token + ".thumb"));  // retried
  EXPECT_THAT(store().PutChallenge(ScopeOf(a), token, token + ".other"), StatusIs(kAlreadyExists));
  EXPECT_THAT(store().PutChallenge(ScopeOf(b), token, token + ".thumb"), StatusIs(kAlreadyExists));
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

}  // namespace
}  // namespace acmevault::storage::testing
