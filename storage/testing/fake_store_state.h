// FakeStore's data and the helpers its files share (fake_store.cc, fake_store_accounts.cc,
// fake_store_key_leases.cc, fake_store_compromise_runs.cc, fake_store_orders.cc,
// fake_store_certificates.cc, fake_store_jobs.cc). Internal to the fake: include only from
// those files.
//
// Every helper taking a State requires its mutex held. Every call taking a Scope passes
// RequireTenant before it touches a row, directly or through a Find* helper (which checks it
// first). The Find* helpers return a row only when it belongs to scope.tenant (another tenant's
// row is NOT_FOUND, as row-level security makes it in PostgreSQL).
#ifndef ACMEVAULT_STORAGE_TESTING_FAKE_STORE_STATE_H_
#define ACMEVAULT_STORAGE_TESTING_FAKE_STORE_STATE_H_

#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/envelope.h"
#include "storage/rules.h"
#include "storage/testing/fake_store.h"

namespace acmevault::storage {

struct FakeStore::State {
  struct IdentityRow {
    Identity identity;
    std::string token_sha256;
  };
  struct KeyRow {
    TenantId tenant = 0;
    AccountKey info;
    SealedKey sealed;  // empty for a token key
  };
  struct CertificateRow {
    Certificate certificate;
    std::optional<SealedKey> sealed;
  };
  struct ChallengeRow {
    TenantId tenant = 0;
    std::string key_authorization;
  };
  // An account's key lease: its fencing token and, while held, its expiry.
  struct KeyLeaseRow {
    int64_t fencing_token = 0;
    std::optional<absl::Time> expires_at;
  };
  // A JobStore::WatchJobs subscription. Its callbacks run under its own mutex, which the
  // waker's destructor takes too, so none runs once the waker is gone.
  struct JobWakerSlot {
    absl::Mutex mu;
    bool live ABSL_GUARDED_BY(mu) = true;
    JobWakeups wakeups ABSL_GUARDED_BY(mu);
  };

  absl::Mutex mu;
  // Calls that took `mu` through StoreLock: the fake's count of PostgreSQL's transactions.
  std::atomic<int64_t> transactions{0};
  int64_t next_id ABSL_GUARDED_BY(mu) = 1;  // one sequence for every table: ids never collide
  std::map<TenantId, Tenant> tenants ABSL_GUARDED_BY(mu);
  std::map<IdentityId, IdentityRow> identities ABSL_GUARDED_BY(mu);
  std::map<AccountId, Account> accounts ABSL_GUARDED_BY(mu);
  std::map<std::pair<AccountId, int>, KeyRow> keys ABSL_GUARDED_BY(mu);
  std::map<AccountId, KeyLeaseRow> key_leases ABSL_GUARDED_BY(mu);
  std::map<CompromiseRunId, CompromiseRun> compromise_runs ABSL_GUARDED_BY(mu);
  std::map<OrderId, Order> orders ABSL_GUARDED_BY(mu);
  std::map<OrderId, SealedKey> order_keys ABSL_GUARDED_BY(mu);  // orders' certificate keys
  // Kept EAB credentials by tenant: the row id (the sealing context's), what is shown, sealed.
  struct EabRow {
    int64_t id = 0;
    EabKeyInfo info;
    SealedKey sealed;
  };
  std::map<TenantId, EabRow> eab_keys ABSL_GUARDED_BY(mu);
  std::map<AuthorizationId, Authorization> authorizations ABSL_GUARDED_BY(mu);
  std::map<CertificateId, CertificateRow> certificates ABSL_GUARDED_BY(mu);
  std::map<std::string, ChallengeRow> challenges ABSL_GUARDED_BY(mu);
  std::map<TenantId, std::vector<AuditRecord>> audit ABSL_GUARDED_BY(mu);
  std::map<TenantId, std::pair<int64_t, std::string>> audit_heads ABSL_GUARDED_BY(mu);
  // The job table (fake_store_jobs.cc): rows, when each tenant was last served by a claim,
  // and the wakers of every store sharing this State.
  std::map<JobId, Job> jobs ABSL_GUARDED_BY(mu);
  // The open (not failed) job of each tenant, kind and subject.
  std::map<std::tuple<TenantId, std::string, std::string>, JobId> open_jobs ABSL_GUARDED_BY(mu);
  std::map<TenantId, int64_t> job_turns ABSL_GUARDED_BY(mu);
  int64_t next_job_turn ABSL_GUARDED_BY(mu) = 1;
  std::vector<std::weak_ptr<JobWakerSlot>> job_wakers ABSL_GUARDED_BY(mu);
  // CaLimitStore (fake_store_ca_limits.cc): holds by tenant, account, identifier set and
  // request; buckets by tenant, account and budget (tokens, when last taken).
  std::map<std::tuple<TenantId, AccountId, std::vector<std::string>, CaRequest>, CaHold> ca_holds
      ABSL_GUARDED_BY(mu);
  // By tenant, account (0 for an identifier set's), budget name and identifier set (empty for
  // an account's): tokens and when last taken.
  std::map<std::tuple<TenantId, AccountId, std::string, std::vector<std::string>>,
           std::pair<double, absl::Time>>
      ca_budgets ABSL_GUARDED_BY(mu);
  // The fleet's, by directory URL and budget name.
  std::map<std::pair<std::string, std::string>, std::pair<double, absl::Time>> ca_directory_budgets
      ABSL_GUARDED_BY(mu);
};

namespace fake {

using State = FakeStore::State;

// The audit chain's digest of a record: 32 bytes, deterministic, not cryptographic.
std::string FakeDigest(const AuditRecord& a);

// Delivers `revocation` to the wakers of every store sharing `s` that watch for revocations;
// after the change, with s.mu released (as a NOTIFY is delivered after COMMIT).
void WakeRevoked(State& s, const Revocation& revocation) ABSL_LOCKS_EXCLUDED(s.mu);
// The same for certificates_changed.
void WakeCertificatesChanged(State& s, TenantId tenant) ABSL_LOCKS_EXCLUDED(s.mu);
// Delivers certificates_changed for the tenant it was armed with when it goes out of scope:
// declared before a call's StoreLock, so after the lock is released.
class CertificatesChangedWake {
 public:
  explicit CertificatesChangedWake(State& s) : s_(s) {}
  ~CertificatesChangedWake() {
    if (tenant_ > 0) WakeCertificatesChanged(s_, tenant_);
  }
  void Arm(TenantId tenant) { tenant_ = tenant; }

 private:
  State& s_;
  TenantId tenant_ = 0;
};

// What a store call's transaction is in the fake: the state's lock, counted
// (FakeStore::transactions). Every call PostgresStore runs as one transaction takes it once;
// the engine's claims and due counts (whose number depends on timing) and WatchJobs do not.
class ABSL_SCOPED_LOCKABLE StoreLock {
 public:
  explicit StoreLock(State& s) ABSL_EXCLUSIVE_LOCK_FUNCTION(s.mu) : lock_(&s.mu) {
    s.transactions.fetch_add(1);
  }

 private:
  absl::MutexLock lock_;
};

// Appends `event` to scope.tenant's audit chain.
void Audit(State& s, const Scope& scope, absl::Time at, const AuditEvent& event)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// NOT_FOUND "<what> <id> not found".
absl::Status NoSuch(absl::string_view what, int64_t id);

// The check every call taking a Scope makes first, reads and writes alike, as PostgresStore's
// tenant path does: INVALID_ARGUMENT "no tenant" unless scope.tenant names one, NOT_FOUND
// "tenant <id> not found" unless it exists. A disabled tenant passes.
absl::Status RequireTenant(const State& s, const Scope& scope) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

absl::StatusOr<Account*> FindAccount(State& s, const Scope& scope, AccountId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// The account `lease` is for, if the lease is still current (rules::CheckKeyLease).
absl::StatusOr<Account*> LeasedAccount(State& s, const Scope& scope, const KeyLease& lease)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
absl::StatusOr<State::KeyRow*> FindKey(State& s, const Scope& scope, AccountId account, int version)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
absl::StatusOr<Order*> FindOrder(State& s, const Scope& scope, OrderId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// The job an order's lease names (Lease::job), or null (the order's own lease, or gone).
const Job* LeaseJob(State& s, const Lease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// The order `lease` is for, if the lease is still current (rules::CheckLease).
// PutChallenge's check: the token is free, or this tenant's with the same value (a retry).
// ALREADY_EXISTS otherwise.
absl::Status CheckChallengeFree(State& s, const Scope& scope, absl::string_view token,
                                absl::string_view key_authorization)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// PutChallenge's write after that check.
void PutChallengeLocked(State& s, const Scope& scope, absl::Time now, absl::string_view token,
                        absl::string_view key_authorization) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
absl::StatusOr<Order*> LeasedOrder(State& s, const Scope& scope, const Lease& lease)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
absl::StatusOr<State::CertificateRow*> FindCertificate(State& s, const Scope& scope,
                                                       CertificateId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// InsertCertificate's work, shared with CompleteOrder (fake_store_certificates.cc).
absl::StatusOr<Certificate> InsertCertificateLocked(State& s, const Envelope& envelope,
                                                    const Scope& scope, const NewCertificate& c,
                                                    absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// DeleteChallenge's body, shared with DeleteChallengeFenced and FinishOrder (fake_store.cc).
void DeleteChallengeLocked(State& s, const Scope& scope, absl::Time now, absl::string_view token)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// GetActiveKey's work, shared with LoadOrderStep (fake_store_accounts.cc).
absl::StatusOr<UnsealedAccountKey> UnsealActiveKeyLocked(State& s, const Envelope& envelope,
                                                         const Scope& scope, AccountId account,
                                                         absl::string_view purpose, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// AdmitCaRequest's work (`ids` and `budgets` validated), shared with LoadOrderStep
// (fake_store_ca_limits.cc).
CaAdmission AdmitCaRequestLocked(State& s, const Scope& scope, const CaHoldKey& key,
                                 const std::vector<std::string>& ids,
                                 const std::vector<CaBudget>& budgets, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// The live job wakers, for a delivery made after the state's lock is released (as a NOTIFY is
// delivered after COMMIT), and the delivery of a job's end to them (fake_store_jobs.cc).
using WakerSlots = std::vector<std::shared_ptr<State::JobWakerSlot>>;
WakerSlots Wakers(State& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
void WakeFinished(const WakerSlots& slots, const JobNotice& notice);
// The delivery of jobs made due (ScheduleJob's wake-up) to them.
void WakeScheduled(const WakerSlots& slots);
// CompleteJob's write, shared with FinishOrder: the job leased by `lease` (checked by the
// caller) is deleted; returns its notice.
JobNotice DeleteLeasedJobLocked(State& s, const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
// Whether a job of `tenant` and `ca` about to be made may be leased to its maker by `claim`
// (NewOrder::claim, as av_take_new_job decides it); when true, records the tenant's turn as a
// claim does.
bool TakesNewJobLocked(State& s, TenantId tenant, const std::string& ca, const JobClaim& claim)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// The first page of `items` after `after` (by key), `limit` long, with the next token.
template <typename T, typename Map, typename Convert>
Page<T> PageOf(const Map& items, int64_t after, int limit, Convert convert) {
  Page<T> out;
  for (auto it = items.upper_bound(after); it != items.end(); ++it) {
    std::optional<T> item = convert(it->second);
    if (!item.has_value()) continue;
    if (static_cast<int>(out.items.size()) == limit) {
      out.next_page_token = rules::EncodeIdToken(std::prev(it)->first);
      break;
    }
    out.items.push_back(*std::move(item));
  }
  return out;
}

}  // namespace fake
}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_TESTING_FAKE_STORE_STATE_H_
