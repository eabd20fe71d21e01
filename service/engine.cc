#include "service/engine.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/failure.h"
#include "service/log.h"

namespace acmevault::service {
namespace {

uint64_t RandomSeed() {
  std::random_device entropy;
  return (uint64_t{entropy()} << 32) | entropy();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(Options options) {
  if (options.jobs == nullptr) return absl::InvalidArgumentError("Engine: jobs is required");
  if (options.owner.empty()) return absl::InvalidArgumentError("Engine: owner is required");
  if (options.clock == nullptr) return absl::InvalidArgumentError("Engine: clock is null");
  if (options.workers < 0 || options.prefetch < 0 || options.claim_batch < 0 ||
      options.claim_on_create_queue < 0 || options.per_tenant_limit < 0 ||
      options.per_ca_limit < 0) {
    return absl::InvalidArgumentError("Engine: sizes and limits must not be negative");
  }
  if (options.lease_duration <= absl::ZeroDuration() ||
      options.idle_poll <= absl::ZeroDuration() ||
      options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff ||
      options.due_count_interval < absl::ZeroDuration() ||
      options.keep_within < absl::ZeroDuration() || options.keep_for < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("Engine: durations must be positive");
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError("Engine: max_attempts must be at least 1");
  }
  if (options.workers == 0) {
    options.workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  if (options.claim_batch == 0) options.claim_batch = options.workers;
  if (options.claim_on_create_queue == 0) {
    // Room for one tenant at its default bound (per_tenant_limit 32) on a 2-core replica: its
    // orders in flight come back from the CA to this queue, and a new one left in the table
    // sends every new order after it through the claims until a claim takes it.
    options.claim_on_create_queue = 16 * (options.workers + options.prefetch);
  }
  return std::unique_ptr<Engine>(new Engine(std::move(options)));
}

Engine::Engine(Options options) : options_(std::move(options)), created_(options_.clock->Now()) {}

Engine::~Engine() {
  Stop();
  absl::MutexLock join(&join_mu_);
  for (std::thread& w : workers_) {
    if (w.joinable()) w.join();
  }
}

absl::Status Engine::Register(const std::string& kind, JobHandler handler) {
  RETURN_IF_ERROR(storage::ValidateJobKind(kind));
  if (!handler) return absl::InvalidArgumentError(absl::StrCat("no handler for ", kind));
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("register handlers before Start");
  if (!handlers_.emplace(kind, std::move(handler)).second) {
    return absl::InvalidArgumentError(absl::StrCat("job kind ", kind, " registered twice"));
  }
  kinds_.push_back(kind);
  return absl::OkStatus();
}

absl::Status Engine::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("the engine was started before");
    if (handlers_.empty()) return absl::FailedPreconditionError("no job handler registered");
    started_ = true;
  }
  absl::MutexLock join(&join_mu_);
  if (options_.watch_store) {
    absl::StatusOr<std::unique_ptr<storage::JobWaker>> waker =
        options_.jobs->WatchJobs(storage::JobWakeups{[this] {
                                                       absl::MutexLock lock(&mu_);
                                                       ++stats_.wakeups;
                                                       wake_ = true;
                                                     },
                                                     options_.on_notice});
    if (!waker.ok()) {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      return waker.status();
    }
    waker_ = *std::move(waker);
  }
  // A run that died under this owner id (a container restarted in its pod keeps its host name
  // and process id 1) left its jobs leased: back to the queue now, not at their leases' end.
  // The leases this run took itself (a new order's job, claimed as it was made) end after
  // created_ + lease_duration, and stay.
  absl::StatusOr<int> returned = options_.jobs->ReleaseJobsOf(
      options_.owner, created_ + options_.lease_duration, options_.clock->Now());
  if (!returned.ok()) {
    Log(LogLevel::kWarning,
        "could not return the jobs an earlier run under this id held; their leases will expire",
        {{"owner", options_.owner}, {"status", SummarizeFailure(returned.status())}});
  } else if (*returned > 0) {
    Log(LogLevel::kInfo, "returned the jobs an earlier run under this id held",
        {{"owner", options_.owner}, {"jobs", absl::StrCat(*returned)}});
  }
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this, i] { Worker(i); });
  claim_thread_ = std::thread([this] { ClaimLoop(); });
  return absl::OkStatus();
}

absl::StatusOr<storage::Job> Engine::Schedule(const storage::Scope& scope,
                                              const storage::NewJob& job) {
  ASSIGN_OR_RETURN(storage::Job scheduled,
                   options_.jobs->ScheduleJob(scope, job, options_.clock->Now()));
  absl::MutexLock lock(&mu_);
  if (!Delivering()) {
    wake_ = true;
  } else if (job.not_before <= options_.clock->Now()) {
    return scheduled;  // Due now: the store's wake-up claims it.
  }
  // A later due time (the store's wake-up claims nothing yet): the loop waits for it.
  LearnDue(scheduled.id, job.not_before);
  recheck_ = true;
  return scheduled;
}

absl::Status Engine::Release(const storage::JobLease& lease) {
  RETURN_IF_ERROR(options_.jobs->ReleaseJob(lease, options_.clock->Now()));
  Scheduled();
  return absl::OkStatus();
}

void Engine::Scheduled() {
  absl::MutexLock lock(&mu_);
  if (!Delivering()) wake_ = true;
}

bool Engine::Delivering() const { return options_.watch_store && stats_.wakeups > 0; }

void Engine::LearnDue(storage::JobId id, absl::Time at) {
  if (!next_due_.has_value() || at < *next_due_) next_due_ = at;
  if (claiming_) due_during_claim_.emplace_back(id, at);
}

void Engine::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

int Engine::FreeRoom() const {
  return options_.workers + options_.prefetch - static_cast<int>(queue_.size() + running_.size()) -
         reserved_;
}

std::optional<storage::JobClaim> Engine::ReserveForNew() {
  if (!options_.claim_on_create) return std::nullopt;
  absl::MutexLock lock(&mu_);
  // Room in the queue, not an idle worker: a job made here would otherwise wait in the table
  // for this replica's next claim about as long, at the cost of that claim. The store refuses
  // the claim when due jobs wait there (their claim's fairness goes first).
  if (!started_ || stopping_ ||
      static_cast<int>(queue_.size()) + reserved_ >= options_.claim_on_create_queue) {
    return std::nullopt;
  }
  ++reserved_;
  return ClaimOf(1);
}

storage::JobClaim Engine::ClaimOf(int max_jobs) const {
  storage::JobClaim claim;
  claim.owner = options_.owner;
  claim.now = options_.clock->Now();
  claim.max_jobs = max_jobs;
  claim.lease_duration = options_.lease_duration;
  claim.per_tenant_limit = options_.per_tenant_limit;
  claim.per_ca_limit = options_.per_ca_limit;
  claim.kinds = kinds_;
  return claim;
}

void Engine::Unreserve() {
  absl::MutexLock lock(&mu_);
  if (reserved_ > 0) --reserved_;
}

void Engine::Adopt(storage::ClaimedJob claimed) {
  {
    absl::MutexLock lock(&mu_);
    if (reserved_ > 0) --reserved_;
    if (!stopping_) {
      ++stats_.adopted;
      const absl::Time now = options_.clock->Now();
      queue_.push_back(Queued{std::move(claimed), std::make_shared<std::atomic<bool>>(false), now});
      return;
    }
  }
  // Stopping: its workers may be gone, so the job goes back to the store at once.
  ReleaseUnstarted(claimed);
}

bool Engine::Holds(storage::JobId id) const {
  absl::MutexLock lock(&mu_);
  if (running_.count(id) > 0 || kept_.count(id) > 0) return true;
  return std::any_of(queue_.begin(), queue_.end(),
                     [id](const Queued& q) { return q.claimed.job.id == id; });
}

void Engine::ReleaseUnstarted(const storage::ClaimedJob& c) {
  absl::Status s = options_.jobs->ReleaseJob(c.lease, options_.clock->Now());
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    ++stats_.released;
  } else {
    Log(LogLevel::kWarning, "could not release a job; its lease will expire",
        {{"job", absl::StrCat(c.job.id)}, {"status", SummarizeFailure(s)}});
  }
}

Engine::Stats Engine::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Engine::Stop() { Halt(/*release=*/true); }

void Engine::StopWithoutRelease() { Halt(/*release=*/false); }

void Engine::Halt(bool release) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  absl::MutexLock join(&join_mu_);
  // Outside mu_: a wake-up being delivered may be waiting for it.
  waker_.reset();
  if (claim_thread_.joinable()) claim_thread_.join();
  // No more claims from here on; workers start nothing more once stopping_ is set.
  std::deque<Queued> unstarted;
  std::map<storage::JobId, Kept> kept;
  {
    absl::MutexLock lock(&mu_);
    unstarted.swap(queue_);
    kept.swap(kept_);
  }
  if (!release) return;  // A crash: the leases expire.
  // A kept job goes back to the store at its time: whichever replica claims it then goes on.
  for (const auto& [id, k] : kept) {
    WriteUnkept(id, k.queued.unkept);
    absl::Status s =
        options_.jobs->RescheduleJob(k.queued.claimed.lease, k.at, "", options_.clock->Now());
    if (!s.ok()) {
      Log(LogLevel::kWarning, "could not reschedule a kept job; its lease will expire",
          {{"job", absl::StrCat(id)}, {"status", SummarizeFailure(s)}});
    }
  }
  for (const Queued& q : unstarted) ReleaseUnstarted(q.claimed);
  for (std::thread& w : workers_) {
    if (w.joinable()) w.join();
  }
}

// ---------------------------------------------------------------------------------------------
// The claim loop

void Engine::ClaimLoop() {
  while (true) {
    int room = 0;
    {
      absl::MutexLock lock(&mu_);
      auto free_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return FreeRoom(); };
      const absl::Time now = options_.clock->Now();
      // The idle poll counts from the last claim (a busy replica never polls); without room it
      // only paces the loop. A due time matters only with room to claim; a worker that
      // finishes makes the loop look again.
      absl::Duration wait = options_.idle_poll;
      if (free_room() > 0) {
        wait = std::min(wait, last_claim_ + options_.idle_poll - absl::Now());
        if (next_due_.has_value()) wait = std::min(wait, *next_due_ - now);
      }
      for (const auto& [id, r] : running_) wait = std::min(wait, r.renew_at - now);
      for (const auto& [id, k] : kept_) wait = std::min(wait, std::min(k.at, k.renew_at) - now);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return wake_ || recheck_ || stopping_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken), std::max(wait, absl::ZeroDuration()));
      if (stopping_) return;
      QueueDueKept(options_.clock->Now());
      room = free_room();
      const bool asked = wake_;
      const bool due = next_due_.has_value() && *next_due_ <= options_.clock->Now();
      const bool poll = absl::Now() >= last_claim_ + options_.idle_poll;
      wake_ = recheck_ = false;
      if (asked && room <= 0) more_ = true;  // claimed once a worker is free
      if (!asked && !due && !poll) room = 0;  // only leases to renew
    }
    RenewLeases();
    CountDue();
    room = std::min(room, options_.claim_batch);
    if (room > 0) ClaimOnce(room);
  }
}

void Engine::ClaimOnce(int room) {
  const storage::JobClaim claim = ClaimOf(room);
  {
    absl::MutexLock lock(&mu_);
    claiming_ = true;
    due_during_claim_.clear();
  }
  const absl::Time sent = absl::Now();
  absl::StatusOr<storage::JobClaimResult> claimed = options_.jobs->ClaimJobs(claim);
  if (options_.metrics != nullptr) options_.metrics->RecordJobClaim(absl::Now() - sent);
  if (!claimed.ok()) {
    // The idle poll tries again (not sooner: a known due time would make the loop spin).
    Log(LogLevel::kWarning, "claiming jobs failed", {{"status", SummarizeFailure(claimed.status())}});
    absl::MutexLock lock(&mu_);
    claiming_ = false;
    last_claim_ = absl::Now();
    ++stats_.claims;
    next_due_.reset();
    return;
  }
  const int n = static_cast<int>(claimed->jobs.size());
  absl::MutexLock lock(&mu_);
  claiming_ = false;
  last_claim_ = absl::Now();
  ++stats_.claims;
  if (n == 0) ++stats_.empty_claims;
  // Due jobs left behind: a full batch looks again at once; jobs a bound held back wait for a
  // lease to end (a worker here finishing, or the idle poll for other replicas' leases).
  more_ = claimed->left_due;
  if (claimed->left_due && n == room) wake_ = true;
  // The store's answer covers every job written before the claim began. A due time this engine
  // learned since (a job it rescheduled during the claim) may be missing from it, whether before
  // or after the claim's time, unless the claim took that job.
  std::optional<absl::Time> next = claimed->next_not_before;
  for (const auto& [id, at] : due_during_claim_) {
    const bool taken =
        std::any_of(claimed->jobs.begin(), claimed->jobs.end(),
                    [id = id](const storage::ClaimedJob& c) { return c.job.id == id; });
    if (!taken && (!next || at < *next)) next = at;
  }
  due_during_claim_.clear();
  next_due_ = next;
  stats_.claimed += n;
  for (storage::ClaimedJob& c : claimed->jobs) {
    queue_.push_back(Queued{std::move(c), std::make_shared<std::atomic<bool>>(false), claim.now});
  }
}

std::optional<absl::Time> Engine::QueueDueKept(absl::Time now) {
  std::optional<absl::Time> next;
  for (auto it = kept_.begin(); it != kept_.end();) {
    if (it->second.at <= now) {
      // Before the claimed ones: it holds its lease already.
      queue_.push_front(std::move(it->second.queued));
      it = kept_.erase(it);
    } else {
      if (!next || it->second.at < *next) next = it->second.at;
      ++it;
    }
  }
  return next;
}

absl::Time Engine::RenewAt(absl::Time expires_at) const {
  return expires_at - options_.lease_duration + options_.lease_duration / 3;
}

void Engine::RenewLeases() {
  const absl::Time now = options_.clock->Now();
  std::vector<std::pair<storage::JobLease, std::shared_ptr<std::atomic<bool>>>> due;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : running_) {
      if (now >= r.renew_at) due.emplace_back(r.claimed.lease, r.lost);
    }
    for (const auto& [id, k] : kept_) {
      if (now >= k.renew_at) due.emplace_back(k.queued.claimed.lease, k.queued.lost);
    }
  }
  for (const auto& [lease, lost] : due) {
    absl::StatusOr<storage::JobLease> renewed =
        options_.jobs->RenewJob(lease, options_.lease_duration, now);
    if (absl::IsFailedPrecondition(renewed.status())) lost->store(true);
    absl::MutexLock lock(&mu_);
    if (auto k = kept_.find(lease.job); k != kept_.end()) {
      if (renewed.ok()) {
        k->second.queued.claimed.lease.expires_at = renewed->expires_at;
        k->second.renew_at = RenewAt(renewed->expires_at);
      } else if (lost->load()) {
        // Another replica has it: forget it here (its next run would be refused anyway).
        kept_.erase(k);
      } else {
        k->second.renew_at = now + options_.idle_poll;
      }
      continue;
    }
    auto it = running_.find(lease.job);
    if (it == running_.end()) continue;  // finished meanwhile
    if (renewed.ok()) {
      it->second.claimed.lease.expires_at = renewed->expires_at;
      it->second.renew_at = RenewAt(renewed->expires_at);
    } else if (lost->load()) {
      it->second.renew_at = absl::InfiniteFuture();
    } else {
      // The database is away: try again after an idle poll.
      it->second.renew_at = now + options_.idle_poll;
    }
  }
}

void Engine::CountDue() {
  if (options_.metrics == nullptr || options_.due_count_interval == absl::ZeroDuration()) return;
  const absl::Time now = options_.clock->Now();
  {
    absl::MutexLock lock(&mu_);
    if (now < next_due_count_) return;
    next_due_count_ = now + options_.due_count_interval;
  }
  absl::StatusOr<std::vector<storage::DueJobCount>> counts = options_.jobs->CountDueJobs(now);
  if (!counts.ok()) return;
  for (const std::string& kind : kinds_) {
    int64_t due = 0;
    for (const storage::DueJobCount& c : *counts) {
      if (c.kind == kind) due = c.due;
    }
    options_.metrics->SetJobsDue(kind, due);
  }
}

// ---------------------------------------------------------------------------------------------
// Workers

void Engine::Worker(int index) {
  std::mt19937_64 jitter(options_.jitter_seed.has_value() ? *options_.jitter_seed + index
                                                          : RandomSeed());
  while (true) {
    Queued queued;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      queued = std::move(queue_.front());
      queue_.pop_front();
      running_[queued.claimed.job.id] = Running{queued.claimed, queued.lost,
                                                RenewAt(queued.claimed.lease.expires_at)};
    }
    const storage::JobId id = queued.claimed.job.id;
    const std::optional<absl::Time> keep_at = RunJob(queued, jitter);
    absl::MutexLock lock(&mu_);
    if (keep_at.has_value() && !stopping_) {
      // The lease as the loop last renewed it while the handler ran.
      queued.claimed.lease.expires_at = running_.at(id).claimed.lease.expires_at;
      queued.kept = true;
      queued.claimed.job.attempts = 0;  // as a stored RetryAt resets them
      const absl::Time renew_at = RenewAt(queued.claimed.lease.expires_at);
      kept_[id] = Kept{std::move(queued), *keep_at, renew_at};
      ++stats_.kept;
    } else if (keep_at.has_value()) {
      // Stopping while it ran: back to the store at its time.
      mu_.Unlock();
      WriteUnkept(id, queued.unkept);
      absl::Status s = options_.jobs->RescheduleJob(queued.claimed.lease, *keep_at, "",
                                                    options_.clock->Now());
      mu_.Lock();
      if (s.ok()) ++stats_.rescheduled;
    }
    running_.erase(id);
    // A worker is free: claim if due jobs were left behind (else a claim finds nothing), and
    // look at the due time, which waits for room.
    if (more_) wake_ = true;
    recheck_ = true;
  }
}

bool Engine::MayKeep(const Queued& queued, absl::Time at, absl::Time now) const {
  if (at - now > options_.keep_within || at - queued.claimed_at > options_.keep_for ||
      queued.lost->load()) {
    return false;
  }
  const storage::Job& job = queued.claimed.job;
  absl::MutexLock lock(&mu_);
  // Nothing due waits: a kept lease keeps no other job from its tenant's or its CA's bound.
  if (!more_) return true;
  int tenant_kept = 0, ca_kept = 0;
  for (const auto& [id, k] : kept_) {
    const storage::Job& other = k.queued.claimed.job;
    if (other.tenant == job.tenant) ++tenant_kept;
    if (!job.ca.empty() && other.ca == job.ca) ++ca_kept;
  }
  auto within_half = [](int kept, int bound) { return bound <= 0 || 2 * (kept + 1) <= bound; };
  return within_half(tenant_kept, options_.per_tenant_limit) &&
         (job.ca.empty() || within_half(ca_kept, options_.per_ca_limit));
}

void Engine::WriteUnkept(storage::JobId id, const std::function<absl::Status()>& unkept) {
  if (!unkept) return;
  if (absl::Status s = unkept(); !s.ok()) {
    Log(LogLevel::kWarning, "a kept job's write failed as it went back to the store",
        {{"job", absl::StrCat(id)}, {"status", SummarizeFailure(s)}});
  }
}

std::optional<absl::Time> Engine::RunJob(Queued& queued, std::mt19937_64& jitter) {
  // What the last run left in memory is this run's to write or keep.
  queued.unkept = nullptr;
  const std::string kind = queued.claimed.job.kind;
  const storage::Job job = queued.claimed.job;
  const absl::Time started = options_.clock->Now();
  if (options_.metrics != nullptr) {
    // A kept job's next run counts as running too; its queue age was its first run's.
    options_.metrics->RecordJobStart(
        kind, queued.kept ? std::nullopt : std::optional(started - job.not_before));
  }
  const JobHandler& handler = handlers_.at(kind);
  JobRun run(queued.claimed, started, queued.lost, queued.kept);
  JobOutcome outcome = JobOutcome::Done();
  try {
    outcome = handler(run);
  } catch (...) {
    outcome = JobOutcome::Failed(absl::InternalError(DescribeException(std::current_exception())));
  }
  if (outcome.kind() == JobOutcome::Kind::kFailed ||
      outcome.kind() == JobOutcome::Kind::kFailedPermanently) {
    if (outcome.error().ok()) {
      outcome = JobOutcome::Failed(
          absl::InternalError("the handler reported a failure without an error"), outcome.at());
    }
  }

  // The fencing token is what the store checks; the renewed expiry does not matter.
  const storage::JobLease& lease = run.lease();
  const absl::Time now = options_.clock->Now();
  storage::JobStore& jobs = *options_.jobs;
  absl::Status stored;
  const char* ended = "completed";
  int64_t Stats::*counter = &Stats::completed;
  std::optional<absl::Time> again;
  switch (outcome.kind()) {
    case JobOutcome::Kind::kDone:
      stored = jobs.CompleteJob(lease);
      break;
    case JobOutcome::Kind::kRecorded:
      break;
    case JobOutcome::Kind::kSoonAt:
      if (MayKeep(queued, *outcome.at(), now)) {
        if (options_.metrics != nullptr) options_.metrics->RecordJobEnd(kind, "kept");
        queued.unkept = outcome.unkept();
        return *outcome.at();
      }
      WriteUnkept(queued.claimed.job.id, outcome.unkept());
      [[fallthrough]];
    case JobOutcome::Kind::kRetryAt:
      again = *outcome.at();
      stored = jobs.RescheduleJob(lease, *again, "", now);
      ended = "rescheduled";
      counter = &Stats::rescheduled;
      break;
    case JobOutcome::Kind::kFailed:
      if (job.attempts + 1 < options_.max_attempts) {
        again = outcome.at().has_value() ? *outcome.at() : Backoff(job.attempts + 1, now, jitter);
        stored = jobs.RescheduleJob(lease, *again, SummarizeFailure(outcome.error()), now);
        ended = "retried";
        counter = &Stats::retried;
        break;
      }
      [[fallthrough]];
    case JobOutcome::Kind::kFailedPermanently:
      stored = jobs.FailJob(lease, SummarizeFailure(outcome.error()), now);
      ended = "failed";
      counter = &Stats::failed;
      break;
  }
  if (stored.ok()) {
    if (again.has_value()) {
      absl::MutexLock lock(&mu_);
      LearnDue(job.id, *again);
    }
    if (counter == &Stats::failed) {
      Log(LogLevel::kWarning, "job failed for good",
          {{"tenant", absl::StrCat(job.tenant)},
           {"kind", kind},
           {"subject", job.subject},
           {"status", SummarizeFailure(outcome.error())}});
    }
    Ended(kind, ended, counter);
    return std::nullopt;
  }
  if (absl::IsFailedPrecondition(stored)) {
    Ended(kind, "lost", &Stats::lost);
  } else {
    // The lease will expire and the job run again somewhere.
    Ended(kind, "write_error", nullptr);
  }
  Log(LogLevel::kWarning, "a job's outcome was not stored",
      {{"tenant", absl::StrCat(job.tenant)},
       {"kind", kind},
       {"subject", job.subject},
       {"outcome", ended},
       {"status", SummarizeFailure(stored)}});
  return std::nullopt;
}

absl::Time Engine::Backoff(int attempts, absl::Time now, std::mt19937_64& jitter) const {
  absl::Duration base = options_.initial_backoff;
  for (int i = 1; i < attempts && base < options_.max_backoff; ++i) base *= 2;
  base = std::min(base, options_.max_backoff);
  // Up to half taken off: 53 random bits as a fraction in [0, 1).
  const double fraction = static_cast<double>(jitter() >> 11) / static_cast<double>(1ULL << 53);
  return now + base - base * (fraction / 2);
}

void Engine::Ended(const std::string& kind, const char* outcome, int64_t Stats::*counter) {
  if (options_.metrics != nullptr) options_.metrics->RecordJobEnd(kind, outcome);
  if (counter == nullptr) return;
  absl::MutexLock lock(&mu_);
  ++(stats_.*counter);
}

}  // namespace acmevault::service
