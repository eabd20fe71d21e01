// Engine: the work engine of one replica. It runs the durable jobs of the job table
// (storage::JobStore, docs/DESIGN.md "Work engine") on a fixed pool of worker threads, whatever
// the number of jobs in flight: a job that must wait (for a CA, a clock) ends its run with the
// time it wants to run again, and its thread goes on to other work.
//
// One claim loop claims due jobs in batches when woken (a NOTIFY from any replica through the
// store's JobWaker; Schedule or Release on this replica while the store's wake-ups are not
// delivered yet, since they would wake it a second time), when the earliest known not_before
// comes, when a worker finishes while the last claim left due jobs behind (a full batch, or
// a per-tenant or per-CA bound), and when `idle_poll` has passed since the last claim. It
// claims only as many as the workers can start (plus `prefetch`), so claimed jobs do not wait
// here while another replica could run them. Each claim is a database transaction, so none is
// made that can only find nothing: a worker that finishes claims only when the store said due
// jobs were left. Room under a per-tenant or per-CA bound that another replica's job frees is
// seen at the next wake-up (at most `idle_poll` later): job notices do not wake the loop,
// which would cost every idle replica a claim per job ended anywhere. Workers run
// each job's handler (by kind) and store its outcome: Done completes it; RetryAt reschedules it
// at the handler's time (a CA's Retry-After wins); Failed retries it after an exponential
// backoff with jitter (seeded once per worker thread), and fails it for good after
// `max_attempts`; FailedPermanently fails it at once. An exception out of a handler is recorded
// as the job's failed attempt and never ends the process. The loop renews the leases of running
// jobs, so a handler may take longer than a lease; once a renewal finds the lease lost (another
// replica claimed the job after this one stalled), the run is told so (JobRun::lease_lost) and
// whatever it returns is refused by the store.
//
// Thread-safe. Borrowed collaborators (store, clock, metrics) must outlive the engine. Handlers
// run on worker threads, several at once; they may call Schedule.
#ifndef ACMEVAULT_SERVICE_ENGINE_H_
#define ACMEVAULT_SERVICE_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "service/metrics.h"
#include "storage/store.h"
#include "storage/types.h"

namespace acmevault::service {

// What a handler decided about its job.
class JobOutcome {
 public:
  enum class Kind { kDone, kRetryAt, kSoonAt, kFailed, kFailedPermanently, kRecorded };

  // Finished: the job is completed (its row deleted; waiters are notified).
  static JobOutcome Done() { return JobOutcome(Kind::kDone, absl::OkStatus(), std::nullopt); }
  // Finished, and the handler's own last write already completed the job in its transaction
  // (fenced by the run's lease, e.g. OrderStore::FinishOrder): the engine writes nothing more.
  // Counted as completed.
  static JobOutcome Recorded() {
    return JobOutcome(Kind::kRecorded, absl::OkStatus(), std::nullopt);
  }
  // This step succeeded and the next one is due at `at` (e.g. poll an order again): the job is
  // rescheduled for then, its failed-attempt count reset.
  static JobOutcome RetryAt(absl::Time at) {
    return JobOutcome(Kind::kRetryAt, absl::OkStatus(), at);
  }
  // As RetryAt, for a next step expected soon (an order whose CA is validating): when `at` is
  // at most Options::keep_within away and the job has been kept here for at most
  // Options::keep_for since its claim, this replica keeps the job's lease and runs it again at
  // `at` with no store write (no reschedule, no claim); otherwise it is rescheduled as RetryAt
  // would. A kept job holds its lease (renewed like a running one) but no thread while it
  // waits; a replica that dies meanwhile leaves it to whoever claims it when the lease expires.
  // `unkept`, if given, is a write the run left in memory for its next run here: the engine
  // calls it (under the run's lease) before the job goes back to the store instead, whether at
  // once (not kept) or later (stopping); never when the next run comes here.
  static JobOutcome SoonAt(absl::Time at, std::function<absl::Status()> unkept = nullptr) {
    JobOutcome out(Kind::kSoonAt, absl::OkStatus(), at);
    out.unkept_ = std::move(unkept);
    return out;
  }
  // A failed attempt (`error` must not be OK): retried after the engine's backoff or, when
  // `at` is given (a CA's Retry-After), exactly then; failed for good once the job has failed
  // Options::max_attempts times in a row.
  static JobOutcome Failed(absl::Status error, std::optional<absl::Time> at = std::nullopt) {
    return JobOutcome(Kind::kFailed, std::move(error), at);
  }
  // Failed for good, no retry: the job is kept as failed with `error` (waiters are notified).
  static JobOutcome FailedPermanently(absl::Status error) {
    return JobOutcome(Kind::kFailedPermanently, std::move(error), std::nullopt);
  }

  Kind kind() const { return kind_; }
  const absl::Status& error() const { return error_; }
  const std::optional<absl::Time>& at() const { return at_; }
  const std::function<absl::Status()>& unkept() const { return unkept_; }

 private:
  JobOutcome(Kind kind, absl::Status error, std::optional<absl::Time> at)
      : kind_(kind), error_(std::move(error)), at_(at) {}

  Kind kind_;
  absl::Status error_;
  std::optional<absl::Time> at_;
  std::function<absl::Status()> unkept_;
};

// One run of a job, as its handler sees it.
class JobRun {
 public:
  JobRun(storage::ClaimedJob claimed, absl::Time started_at,
         std::shared_ptr<const std::atomic<bool>> lost, bool kept = false)
      : claimed_(std::move(claimed)),
        started_at_(started_at),
        lost_(std::move(lost)),
        kept_(kept) {}

  // The job as claimed: kind, subject, tenant, ca, attempts and last error so far.
  const storage::Job& job() const { return claimed_.job; }
  // The lease the run holds (its fencing token is what matters; the engine renews the expiry).
  const storage::JobLease& lease() const { return claimed_.lease; }
  absl::Time started_at() const { return started_at_; }
  // True once the engine learned that another replica claimed the job: the outcome will be
  // refused, so a long handler may stop early (and must not write with this lease any more).
  bool lease_lost() const { return lost_->load(); }
  // True when this run continues a job kept on this replica since its last run (SoonAt): the
  // lease, and so everything written under it, is unchanged since that run.
  bool kept() const { return kept_; }

 private:
  storage::ClaimedJob claimed_;
  absl::Time started_at_;
  std::shared_ptr<const std::atomic<bool>> lost_;
  bool kept_ = false;
};

using JobHandler = std::function<JobOutcome(const JobRun& run)>;

class Engine {
 public:
  struct Options {
    // Borrowed; required.
    storage::JobStore* jobs = nullptr;
    // Who claims: this replica's id, the lease owner. Required.
    std::string owner;
    // Where "now" comes from for every job time (due, leases, backoff). The engine's own waits
    // (idle poll, next due time) are real time, at most `idle_poll` each, so a fake clock
    // moved by a test takes effect at the next wake-up (Wake()).
    const Clock* clock = Clock::Real();
    // Optional (borrowed): job metrics.
    Metrics* metrics = nullptr;
    // Worker threads: jobs run at once on this replica. 0: std::thread::hardware_concurrency()
    // (at least 1).
    int workers = 0;
    // Jobs claimed beyond the idle workers, so that a worker that finishes finds its next job
    // without waiting for a claim. They hold leases while they wait here, so keep it small.
    int prefetch = 0;
    // Most jobs one claim takes (never more than the idle workers plus prefetch). 0: the number
    // of workers.
    int claim_batch = 0;
    // Leases in force at once, across replicas, per tenant and per CA (jobs naming one). 0: no
    // bound. Defaults: 32 per tenant, 64 per CA.
    int per_tenant_limit = 32;
    int per_ca_limit = 64;
    // A claimed job's lease; renewed while its handler runs, once a third of it has passed.
    absl::Duration lease_duration = absl::Seconds(60);
    // A SoonAt at most `keep_within` away is kept on this replica (lease held, no store write)
    // while the job has been kept at most `keep_for` since its claim. keep_within 0: never.
    // While the last claim left due jobs behind, at most half of per_tenant_limit jobs of a
    // tenant, and of per_ca_limit of a CA, are kept here; the next one goes back to the store.
    absl::Duration keep_within = absl::Seconds(2);
    absl::Duration keep_for = absl::Seconds(10);
    // The longest the claim loop sleeps without being woken: how soon missed wake-ups, expired
    // leases of crashed replicas and time moved by a fake clock are noticed.
    absl::Duration idle_poll = absl::Seconds(1);
    // Backoff after a failed attempt n (1, 2, ...): initial_backoff * 2^(n-1), at most
    // max_backoff, of which a random part up to half is taken off (jitter, so that jobs failed
    // together are not retried together).
    absl::Duration initial_backoff = absl::Seconds(1);
    absl::Duration max_backoff = absl::Minutes(5);
    // A job that fails this many attempts in a row is failed for good.
    int max_attempts = 10;
    // How often the jobs due are counted for metrics (one cross-tenant query); 0: never.
    absl::Duration due_count_interval = absl::Seconds(10);
    // Listen to the store's wake-ups (every replica's Schedule). Off: only this replica's
    // Schedule, finishing workers and the idle poll wake the loop.
    bool watch_store = true;
    // Called for every job notice (a job ended on any replica, or an announced one), on the
    // store's listener thread; must return quickly. Optional. What waiters on other replicas
    // are woken by.
    std::function<void(const storage::JobNotice&)> on_notice;
    // Seeds the backoff jitter: worker i uses jitter_seed + i. Unset: random, once per worker.
    std::optional<uint64_t> jitter_seed;
    // ReserveForNew reserves room: a job made here may be claimed as it is made (e.g.
    // OrderStore::CreateOrJoinOrder's NewOrder::claim) while fewer than
    // claim_on_create_queue jobs wait here for a worker (queued or reserved). Off: never;
    // every job made here goes through the claims. claim_on_create_queue 0: 16 per worker
    // and prefetch.
    bool claim_on_create = true;
    int claim_on_create_queue = 0;
  };

  // What this engine did, for tests and logs.
  struct Stats {
    int64_t claimed = 0;      // jobs claimed
    int64_t completed = 0;    // Done stored
    int64_t rescheduled = 0;  // RetryAt stored (or SoonAt not kept)
    int64_t kept = 0;         // SoonAt kept here: no store write, run again under the lease
    int64_t retried = 0;      // a failed attempt stored, to be retried
    int64_t failed = 0;       // failed for good
    int64_t lost = 0;         // an outcome refused: another replica holds the job now
    int64_t released = 0;     // claimed but not started when the engine stopped
    int64_t wakeups = 0;      // wake-ups from the store (the first says deliveries started)
    int64_t adopted = 0;      // jobs claimed as they were made here (Adopt)
    int64_t claims = 0;       // claims made (each one database transaction)
    int64_t empty_claims = 0; // claims that found nothing
  };

  // INVALID_ARGUMENT for a missing store or owner, negative sizes, queues or limits, non-positive
  // durations, or max_attempts < 1.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(Options options);
  // Stop(), then joins every thread.
  ~Engine();

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Registers the handler of `kind` (storage's job kind format). Before Start only; jobs of
  // kinds without a handler are never claimed here. INVALID_ARGUMENT for a bad kind, a kind
  // registered twice or an empty handler; FAILED_PRECONDITION once started.
  absl::Status Register(const std::string& kind, JobHandler handler);
  // Starts the workers, the claim loop and (watch_store) the store's wake-ups; claims at once.
  // FAILED_PRECONDITION without handlers or when started before; the store's error if it cannot
  // watch.
  absl::Status Start();

  // Schedules a job (JobStore::ScheduleJob with this engine's clock) and wakes the loop.
  absl::StatusOr<storage::Job> Schedule(const storage::Scope& scope, const storage::NewJob& job);
  // Hands over a job this replica holds but will not run here itself (one made leased together
  // with what it acts on, e.g. by OrderStore::CreateOrJoinOrder): JobStore::ReleaseJob, which
  // wakes every replica's engine (and this one; see Scheduled). The store's error
  // (FAILED_PRECONDITION when the lease was lost) otherwise.
  absl::Status Release(const storage::JobLease& lease);
  // Says that this replica made jobs due through the store (a release, or a job made together
  // with what it acts on, e.g. OrderStore::CreateOrJoinOrder with NewOrder::job_released): the
  // store's wake-up (NOTIFY) reaches this engine too, so the loop is woken here only while the
  // store's wake-ups are not delivered (watch_store off, or none delivered yet).
  void Scheduled();
  // Makes the claim loop look for due jobs now.
  void Wake();
  // For a job about to be made here that the store may lease to this replica as it makes it
  // (NewOrder::claim): reserves room for one job and returns the claim to make, or nullopt when
  // claim_on_create is off, the engine is not running, or claim_on_create_queue jobs wait here
  // for a worker (queued or reserved). The store refuses the claim when due jobs wait in the
  // table. The reservation ends with Adopt (the store took the job) or Unreserve (it did not,
  // or nothing was made).
  std::optional<storage::JobClaim> ReserveForNew();
  // Runs a job the store leased to this replica as it made it, in the room ReserveForNew
  // reserved (as if a claim had taken it). A stopping engine releases it instead (counted as
  // released).
  void Adopt(storage::ClaimedJob claimed);
  // Gives back the room ReserveForNew reserved when no job was adopted into it.
  void Unreserve();
  // Whether job `id` is queued, running or kept here.
  bool Holds(storage::JobId id) const;

  // Graceful stop: no more claims; jobs claimed but not started are released (claimable at
  // once by any replica), kept ones (SoonAt) rescheduled at their time; running handlers finish
  // and their outcomes are stored. Returns when every thread has ended. Idempotent.
  void Stop();
  // A crash, for tests of takeover: claims and lease renewals stop at once and claimed jobs
  // are dropped unreleased, so they are another replica's only once their leases expire.
  // Running handlers still finish (the destructor waits) and their outcomes are sent, as a
  // stalled process would send them late: the store refuses them once another replica claimed
  // the job.
  void StopWithoutRelease();

  Stats stats() const;

 private:
  // A job claimed (or kept) and waiting for a worker.
  struct Queued {
    storage::ClaimedJob claimed;
    std::shared_ptr<std::atomic<bool>> lost;
    absl::Time claimed_at;  // when the lease was claimed (the engine's clock)
    bool kept = false;      // continues a run that said SoonAt
    // A kept run's write left in memory (JobOutcome::SoonAt's `unkept`), made before the job
    // goes back to the store.
    std::function<absl::Status()> unkept;
  };
  struct Running {
    storage::ClaimedJob claimed;
    std::shared_ptr<std::atomic<bool>> lost;
    absl::Time renew_at;  // a third into the lease; InfiniteFuture once lost
  };
  // A job kept here after a SoonAt, until `at`.
  struct Kept {
    Queued queued;
    absl::Time at;
    absl::Time renew_at;
  };

  explicit Engine(Options options);
  // Makes a kept run's write left in memory (if any), logging a failure.
  static void WriteUnkept(storage::JobId id, const std::function<absl::Status()>& unkept);

  void ClaimLoop();
  void Worker(int index);
  // One claim of at most `room` jobs; queues them for the workers.
  void ClaimOnce(int room);
  // This replica's claim of at most `max_jobs` jobs, now: owner, lease, bounds and kinds.
  storage::JobClaim ClaimOf(int max_jobs) const;
  // Gives back a job claimed (or adopted) but not started as the engine stops; counted in
  // Stats::released, else logged (its lease then expires).
  void ReleaseUnstarted(const storage::ClaimedJob& claimed);
  // Workers plus prefetch, less the jobs queued, running or reserved (ReserveForNew): how many
  // a claim may take.
  int FreeRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the store's wake-ups reach this engine (so a local wake-up would be a second one).
  bool Delivering() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Job `id` is due at `at` (scheduled or rescheduled here, written to the store): the loop
  // claims at that time, and a claim in flight remembers it for its answer.
  void LearnDue(storage::JobId id, absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Renews the leases of running and kept jobs that are a third through.
  void RenewLeases();
  // Moves kept jobs that are due to the front of the queue; the earliest time of the others.
  std::optional<absl::Time> QueueDueKept(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a lease ending at `expires_at` is a third through.
  absl::Time RenewAt(absl::Time expires_at) const;
  // Counts due jobs for metrics when the interval has passed.
  void CountDue();
  // Runs the handler (catching exceptions) and stores its outcome.
  // Returns the time to run it again when the handler said SoonAt and MayKeep: nothing is
  // stored then, and the worker keeps the job.
  std::optional<absl::Time> RunJob(Queued& queued, std::mt19937_64& jitter);
  // Whether a job whose handler said SoonAt(at) may be kept here: the window allows it, and,
  // when the last claim left due jobs behind, the jobs kept here of its tenant and of its CA
  // stay within half of those bounds (a kept job's lease counts against them while it waits
  // without a worker).
  bool MayKeep(const Queued& queued, absl::Time at, absl::Time now) const;
  // When a job that failed `attempts` times in a row may run again.
  absl::Time Backoff(int attempts, absl::Time now, std::mt19937_64& jitter) const;
  // Records the end of a run in stats and metrics.
  void Ended(const std::string& kind, const char* outcome, int64_t Stats::*counter);
  void Halt(bool release);

  const Options options_;
  const absl::Time created_;                    // options_.clock's time at Create
  std::map<std::string, JobHandler> handlers_;  // fixed once started
  std::vector<std::string> kinds_;              // the keys of handlers_

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = true;     // claim now (if there is room)
  bool recheck_ ABSL_GUARDED_BY(mu_) = false; // room or a due time changed: look, claim if due
  // The last claim left due jobs (or a wake-up found no room): claim when a worker is free.
  bool more_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_claim_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // real time
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);  // claimed or kept, not started
  int reserved_ ABSL_GUARDED_BY(mu_) = 0;          // room held by ReserveForNew
  std::map<storage::JobId, Running> running_ ABSL_GUARDED_BY(mu_);
  std::map<storage::JobId, Kept> kept_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> next_due_ ABSL_GUARDED_BY(mu_);
  // While a claim is in flight: the due times learned meanwhile. Its answer may not cover them:
  // it may have read the table before their writes.
  bool claiming_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<storage::JobId, absl::Time>> due_during_claim_ ABSL_GUARDED_BY(mu_);
  absl::Time next_due_count_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::unique_ptr<storage::JobWaker> waker_;
  std::thread claim_thread_;
  std::vector<std::thread> workers_;
  absl::Mutex join_mu_;  // serialises Start, Stop, StopWithoutRelease and the destructor
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ENGINE_H_
