// PolicyScheduler: the timer that puts every tenant's policy on the work engine (issue 11). It
// acts on nothing itself: each pass ("scan") reads what the policies are about and schedules
// jobs, which any replica's engine runs. It schedules key rotations (kRotateJob) and
// certificate renewals (kRenewJob); later kinds (sweeps, verifications) are further checks.
//
// A scan lists every enabled tenant (one cross-tenant page read per 1000 tenants), then per
// tenant its accounts and the active key of its valid account (the one AccountManager uses):
// two reads per tenant. It records the key's age (acmevault_account_key_age_seconds{tenant})
// and, when the tenant's rotation policy says the key is due (service/rotation_policy.h),
// schedules kRotateJob for the account, due at now plus a spread of up to `rotation_spread`
// fixed by the tenant and account ids, so a fleet of tenants due at once is not rolled over in
// the same second, and every replica's scan asks for the same time.
//
// Then it pages through the certificates due for renewal across the enabled tenants
// (CertificateStore::ListCertificatesDueForRenewal, one read per 1000) and reads each (one
// read per due certificate): one whose key the service holds and that the renewal policy
// (service/renewal_policy.h) says is due gets kRenewJob, its subject the certificate id, due at
// now plus a spread of up to `renewal_spread` fixed by the tenant and certificate ids. A host
// that holds its certificate's key renews it itself (IssueCertificate tells it when).
//
// ARI (RFC 9773): with `clients`, a tenant whose CA's directory offers renewalInfo is scanned
// differently. Its live certificates (one read per 1000) are all looked at, since the CA may
// open a window before the tenant's own (or move it to now, asking for early renewal); for each
// one whose stored next check has come (a host-held one too: its window is what a host asking
// is told), the scan fetches its window from the CA
// and stores it with the next check time (CertificateStore::RecordAriCheck; NextAriCheck: the
// CA's Retry-After, else `ari_check_interval`), then decides with the stored window. A failed
// fetch is logged and counted, stores only the next check, and leaves the decision to the
// window stored before, or to the tenant's window when there is none. A CA without renewalInfo
// (or whose directory cannot be read) keeps the due query and the tenant's window (item 8).
//
// CRLs: at such a CA, which cannot move a window to tell of a revocation, a certificate
// revoked outside the service (by whoever holds the account key or the certificate key, or by
// the CA) would otherwise go on being served. With `crl_transport`, each scan also pages through
// the tenant's live certificates (one read per 1000) and, for each whose stored next CRL check
// has come, reads the CRL its first http(s) distribution point names (each URL fetched and
// checked once per scan), believes it only when its issuer's signature verifies and it is
// current (crypto::RevocationList), and stores the next check (`crl_check_interval`). A CRL
// that lists the certificate records it revoked outside the service (audited
// "CertificateRevokedOutside", logged, acmevault_crl_checks_total{result="listed"}): renewal is
// then due at once (renewal_policy.h), a service-held one gets kRenewJob now, and a host asking
// hears renewal_due. Anything else about the CRL gives no verdict and marks nothing.
//
// No leader: every replica scans. Scheduling is an upsert on (tenant, kind, subject), so scans
// of one due key by two replicas leave one open job; a scan that read the key before another
// replica's rotation finished schedules a job that finds the key no longer due (the job
// decides again under the account's key lease) and ends without a change. The first scan comes
// a random part of `scan_jitter` after Start, and each wait is the interval less a random part
// of up to `scan_jitter`, so replicas started together drift apart.
//
// The authorization sweep (issue 11): at most every `authorization_sweep_interval`, a scan
// also reads each tenant's outstanding authorizations from the ledger (one more read per
// tenant), sets acmevault_authorizations_outstanding{tenant}, and schedules a
// kDeactivateAuthorizationJob (service/order_runner.h) for each one the policy no longer
// allows (SweepDue), at most `authorization_sweep_limit` per tenant and sweep, spread as
// rotations are; the job decides again before it asks the CA. Authorizations of an account
// marked hijacked get none (nothing can be signed for it). The same sweep reads the tenant's
// ephemeral accounts left open (AccountStore::ListEphemeralAccountsToClose: pending or valid,
// made `ephemeral_account_grace` ago or more, no order in flight, no close job open): a replica
// killed between a valid order's end and the deactivation of its account, or a close job the
// engine gave up on. Each gets a kDeactivateEphemeralAccountJob (the issuer's handler,
// OrderRunner::CloseEphemeralAccount), spread as rotations are. Two more reads per tenant and
// sweep (its accounts, and those left open).
//
// Hijack detection (issue 11, item 6): for each tenant's valid account that is not marked
// hijacked, a scan upserts a kVerifyAccountJob (AccountManager::VerifyByPolicy) due at the
// account's next verification time (see `account_verify_interval`) when that comes within
// `scan_interval`, so the last scan before it (or those of several replicas, which upsert one
// job) schedules it: one write per verification, not per scan. A time no replica scanned
// before is skipped; the next one is an interval later.
//
// Thread-safe. Borrowed collaborators must outlive the scheduler.
#ifndef ACMEVAULT_SERVICE_POLICY_SCHEDULER_H_
#define ACMEVAULT_SERVICE_POLICY_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "acme/http.h"
#include "common/clock.h"
#include "crypto/x509.h"
#include "service/engine.h"
#include "service/metrics.h"
#include "service/order_runner.h"
#include "service/rotation_policy.h"
#include "storage/store.h"

namespace acmevault::service {

class PolicyScheduler {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::AccountStore* accounts = nullptr;
    storage::AuthorizationStore* authorizations = nullptr;
    storage::CertificateStore* certificates = nullptr;
    Engine* engine = nullptr;  // where the jobs are scheduled
    // Optional (borrowed): key ages.
    Metrics* metrics = nullptr;
    // "Now" for every policy decision and job time. The waits between scans are real time.
    const Clock* clock = Clock::Real();
    // Time between scans (less the jitter). Rotation is due in days, so minutes are plenty; a
    // scan costs two reads per tenant.
    absl::Duration scan_interval = absl::Minutes(10);
    // The most taken off a wait between scans (at most scan_interval).
    absl::Duration scan_jitter = absl::Minutes(2);
    // A due rotation is scheduled this much later at most, by tenant and account.
    absl::Duration rotation_spread = absl::Minutes(5);
    // How often a scan also sweeps the authorization ledger (the first scan always does);
    // zero turns the sweep off.
    absl::Duration authorization_sweep_interval = absl::Hours(1);
    // A pending authorization last recorded this long ago is deactivated: its order was
    // abandoned or failed, and it would otherwise stay answerable at the CA for days.
    absl::Duration authorization_max_pending = absl::Hours(1);
    // A valid authorization last recorded this long ago is deactivated when the tenant's
    // policy deactivates after issuance (a deactivation lost); a tenant that keeps its
    // authorizations keeps them.
    absl::Duration authorization_max_valid = absl::Hours(1);
    // The most deactivation jobs one sweep schedules per tenant; the next sweep goes on.
    int authorization_sweep_limit = 100;
    // A due renewal is scheduled this much later at most, by tenant and certificate.
    absl::Duration renewal_spread = absl::Minutes(5);
    // Optional (borrowed): the CA clients, for ARI (see the class comment). Null: every CA is
    // treated as one without renewalInfo.
    AcmeClients* clients = nullptr;
    // When a certificate's renewalInfo is fetched again if the CA sent no Retry-After.
    absl::Duration ari_check_interval = absl::Hours(6);
    // Optional (borrowed): fetches CRLs (GET; RFC 5280 §4.2.1.13 points are usually http). With
    // it, the live certificates of a tenant whose CA offers no renewalInfo are checked against
    // the CRL their first distribution point names (see the class comment).
    acme::HttpTransport* crl_transport = nullptr;
    // When a certificate's CRL is read again after a reading (or a failed one).
    absl::Duration crl_check_interval = absl::Hours(6);
    // Hijack detection: each tenant's valid account gets a kVerifyAccountJob due at each of
    // the times spread + n * interval (the spread, below `account_verify_interval`, fixed by
    // tenant and account), so replicas ask for the same time and accounts are spread over the
    // interval. Zero turns verification off.
    absl::Duration account_verify_interval = absl::Hours(6);
    // The authorization sweep also closes ephemeral accounts left open: pending or valid, made
    // this long ago or more, no order in flight and no close job open (see the class comment).
    // Zero turns that off.
    absl::Duration ephemeral_account_grace = absl::Hours(1);
    // Seeds the scan jitter. Unset: random.
    std::optional<uint64_t> jitter_seed;
  };

  // What one scan saw and did.
  struct ScanResult {
    int tenants = 0;            // enabled tenants read
    int keys = 0;               // active keys of valid accounts looked at
    int rotations_scheduled = 0;
    int verifications_scheduled = 0;  // kVerifyAccountJob upserts (an open one is kept)
    bool swept = false;               // this scan swept the authorization ledger
    int deactivations_scheduled = 0;
    int ephemeral_closes_scheduled = 0;  // kDeactivateEphemeralAccountJob upserts
    int certificates_due = 0;     // service-held certificates due for renewal
    int renewals_scheduled = 0;
    int crl_checks = 0;             // certificates whose CRL was read (or failed to be)
    int revoked_outside_found = 0;  // of those, newly found listed (revoked outside the service)
    int errors = 0;             // tenants whose reads or scheduling failed (logged)
  };

  // INVALID_ARGUMENT naming a missing collaborator, a non-positive interval or a negative
  // jitter or spread.
  static absl::StatusOr<std::unique_ptr<PolicyScheduler>> Create(Options options);
  // Stop().
  ~PolicyScheduler();

  PolicyScheduler(const PolicyScheduler&) = delete;
  PolicyScheduler& operator=(const PolicyScheduler&) = delete;

  // One scan now, on the caller's thread. A tenant whose reads fail is logged, counted and
  // skipped; the listing of tenants failing is the error.
  absl::StatusOr<ScanResult> ScanOnce();
  // Starts the thread that scans every interval. FAILED_PRECONDITION when started before.
  absl::Status Start();
  // Ends the thread (a scan under way finishes first). Idempotent.
  void Stop();
  // Whether the last scan could list the tenants, and when it ended (unset before the first).
  // What the health service reports for the scheduler.
  struct Health {
    bool running = false;
    std::optional<absl::Time> last_scan;  // on the clock
    absl::Status last_status;
  };
  Health health() const;

  // The spread of a due job about `subject` (an account or certificate id) of `tenant`: in
  // [0, spread), the same on every replica.
  static absl::Duration Spread(storage::TenantId tenant, int64_t subject, absl::Duration spread);
  // When `account` of `tenant` is next verified after `now`: the first time after `now` of the
  // form Spread(tenant, account, interval) + n * interval (n an integer; times since the Unix
  // epoch). `interval` must be positive.
  static absl::Time NextVerification(storage::TenantId tenant, storage::AccountId account,
                                     absl::Duration interval, absl::Time now);

  // Whether the sweep deactivates `authorization` at `now`: pending and last recorded
  // `max_pending` ago or more, or valid and last recorded `max_valid` ago or more while
  // `policy` deactivates after issuance.
  static bool SweepDue(const storage::TenantPolicy& policy,
                       const storage::Authorization& authorization, absl::Duration max_pending,
                       absl::Duration max_valid, absl::Time now);

 private:
  explicit PolicyScheduler(Options options);
  // The checks of one tenant; adds to `result`.
  absl::Status ScanTenant(const storage::Tenant& tenant, bool sweep, ScanResult& result);
  // The sweep of one tenant; `active` its account and key, if any.
  absl::Status SweepTenant(const storage::Tenant& tenant, const storage::Scope& scope,
                           const std::optional<ActiveAccountKey>& active, ScanResult& result);
  // The renewals due across `tenants` (the enabled ones, by id); adds to `result`.
  absl::Status ScanRenewals(const std::map<storage::TenantId, storage::Tenant>& tenants,
                            ScanResult& result);
  // The client of `tenant`'s CA when its directory offers renewalInfo; else null.
  acme::AcmeClient* AriClient(const storage::Tenant& tenant);
  // Calls `visit` for each of `tenant`'s live certificates, read a page of 1000 at a time; a
  // read's error.
  absl::Status ForEachLiveCertificate(
      const storage::Tenant& tenant,
      const std::function<void(const storage::Scope&, storage::Certificate&)>& visit);
  // The ARI scan of one tenant whose CA offers renewalInfo; adds to `result`.
  absl::Status ScanAriTenant(const storage::Tenant& tenant, acme::AcmeClient& client,
                             ScanResult& result);
  // Fetches and stores `certificate`'s window when its next check has come, updating
  // `certificate` as stored; the fetch's error, after storing the next check.
  absl::Status RefreshAri(acme::AcmeClient& client, const storage::Scope& scope,
                          storage::Certificate& certificate, absl::Time now);
  // CRLs fetched and checked during one scan, by URL and issuer: each read once per scan.
  using CrlCache =
      std::map<std::pair<std::string, std::string>, absl::StatusOr<crypto::RevocationList>>;
  // The CRL scan of one tenant whose CA offers no renewalInfo; adds to `result`.
  absl::Status ScanCrlTenant(const storage::Tenant& tenant, CrlCache& cache, ScanResult& result);
  // Reads `certificate`'s CRL (its first http(s) distribution point, checked against its
  // issuer, the chain's second certificate) when its next check has come, and stores what it
  // said (CertificateStore::RecordCrlCheck), updating `certificate` as stored. A CRL that cannot
  // be fetched, parsed or believed gives no verdict: the next check is stored and the error
  // returned. Counted in acmevault_crl_checks_total{result}.
  absl::Status CheckCrl(const storage::Tenant& tenant, const storage::Scope& scope,
                        storage::Certificate& certificate, CrlCache& cache, absl::Time now,
                        ScanResult& result);
  // The CRL at `url`, checked against `issuer_der` at `now` (cached in `cache`).
  const absl::StatusOr<crypto::RevocationList>& FetchCrl(const std::string& url,
                                                         const std::string& issuer_der,
                                                         CrlCache& cache, absl::Time now);
  // Schedules kRenewJob for `certificate` of `tenant` when it is service-held and due.
  absl::Status ScheduleIfDue(const storage::Tenant& tenant, const storage::Certificate& certificate,
                             absl::Time now, ScanResult& result);
  void Loop();

  const Options options_;
  mutable absl::Mutex mu_;
  std::mt19937_64 jitter_ ABSL_GUARDED_BY(mu_);
  Health health_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> last_sweep_ ABSL_GUARDED_BY(mu_);  // on the clock
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_POLICY_SCHEDULER_H_
