// The work engine on the fake store with a fake clock (jobs run once, retries back off, the
// handler's time wins, exceptions are recorded, fairness, lease renewal, shutdown), and two
// engines as two replicas sharing one PostgreSQL job table (every job runs exactly once; a
// killed replica's job is finished by the other after its lease expires on the injected clock,
// and the killed one is fenced out). Waits are bounded in real time; no assertion is about how
// long anything took.
#include "service/engine.h"

#include <atomic>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "common/testing/eventually.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "storage/postgres_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::service {
namespace {

using ::acmevault::storage::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kStep[] = "order_step";
using ::acmevault::testing::Eventually;
using ::acmevault::testing::kPatience;

// Counts runs per subject; thread-safe.
class RunLog {
 public:
  void Add(const storage::Job& job) {
    absl::MutexLock lock(&mu_);
    ++runs_[job.subject];
    order_.push_back(absl::StrCat(job.tenant, "/", job.subject));
  }
  std::map<std::string, int> runs() {
    absl::MutexLock lock(&mu_);
    return runs_;
  }
  std::vector<std::string> order() {
    absl::MutexLock lock(&mu_);
    return order_;
  }
  int total() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(order_.size());
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> runs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
};

// The fixture's store with a gate after a claim's read: a held claim has read the table but not
// yet answered, as a PostgreSQL claim is between its snapshot and its reply.
class HeldClaims final : public storage::JobStore {
 public:
  explicit HeldClaims(storage::JobStore& inner) : inner_(inner) {}

  void HoldNext() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  // Whether a held claim has made its read, within the patience.
  bool WaitHeld() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&held_), kPatience);
  }
  void Let() {
    absl::MutexLock lock(&mu_);
    let_ = true;
  }

  absl::StatusOr<storage::JobClaimResult> ClaimJobs(const storage::JobClaim& claim) override {
    absl::StatusOr<storage::JobClaimResult> result = inner_.ClaimJobs(claim);
    absl::MutexLock lock(&mu_);
    if (hold_) {
      hold_ = false;
      held_ = true;
      mu_.AwaitWithTimeout(absl::Condition(&let_), kPatience);
    }
    return result;
  }
  absl::StatusOr<storage::Job> ScheduleJob(const storage::Scope& scope, const storage::NewJob& job,
                                           absl::Time now) override {
    return inner_.ScheduleJob(scope, job, now);
  }
  absl::StatusOr<storage::Job> GetJob(const storage::Scope& scope, storage::JobId id) override {
    return inner_.GetJob(scope, id);
  }
  absl::StatusOr<storage::Job> FindJob(const storage::Scope& scope, absl::string_view kind,
                                       absl::string_view subject) override {
    return inner_.FindJob(scope, kind, subject);
  }
  absl::StatusOr<storage::JobLease> RenewJob(const storage::JobLease& lease,
                                             absl::Duration lease_duration,
                                             absl::Time now) override {
    return inner_.RenewJob(lease, lease_duration, now);
  }
  absl::Status CompleteJob(const storage::JobLease& lease) override {
    return inner_.CompleteJob(lease);
  }
  absl::Status RescheduleJob(const storage::JobLease& lease, absl::Time at, absl::string_view error,
                             absl::Time now) override {
    return inner_.RescheduleJob(lease, at, error, now);
  }
  absl::Status FailJob(const storage::JobLease& lease, absl::string_view error,
                       absl::Time now) override {
    return inner_.FailJob(lease, error, now);
  }
  absl::Status ReleaseJob(const storage::JobLease& lease, absl::Time now) override {
    return inner_.ReleaseJob(lease, now);
  }
  absl::StatusOr<int> ReleaseJobsOf(absl::string_view owner, absl::Time ending_before,
                                    absl::Time now) override {
    return inner_.ReleaseJobsOf(owner, ending_before, now);
  }
  absl::StatusOr<std::vector<storage::DueJobCount>> CountDueJobs(absl::Time now) override {
    return inner_.CountDueJobs(now);
  }
  absl::Status AnnounceJobNotice(const storage::JobNotice& notice) override {
    return inner_.AnnounceJobNotice(notice);
  }
  absl::StatusOr<std::unique_ptr<storage::JobWaker>> WatchJobs(
      storage::JobWakeups wakeups) override {
    return inner_.WatchJobs(std::move(wakeups));
  }

 private:
  storage::JobStore& inner_;
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  bool let_ ABSL_GUARDED_BY(mu_) = false;
};

class EngineTest : public ::testing::Test {
 protected:
  Engine::Options Options(int workers = 2) {
    Engine::Options options = fx_.WithStore(Engine::Options{});
    options.owner = "replica-1";
    options.clock = &fx_.clock();
    options.workers = workers;
    options.idle_poll = absl::Milliseconds(5);
    options.jitter_seed = 7;
    return options;
  }
  std::unique_ptr<Engine> Started(Engine::Options options, JobHandler handler) {
    auto engine = Engine::Create(std::move(options));
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return nullptr;
    EXPECT_OK((*engine)->Register(kStep, std::move(handler)));
    EXPECT_OK((*engine)->Start());
    return *std::move(engine);
  }
  storage::Scope Tenant(const std::string& name) {
    return fx_.AdminScope(fx_.AddTenant(name, {"*." + name + ".test"}));
  }
  storage::NewJob Job(const std::string& subject, std::optional<absl::Time> at = std::nullopt) {
    return storage::NewJob{kStep, subject, "https://ca.test/dir", at.value_or(fx_.clock().Now())};
  }
  storage::Job Read(const storage::Scope& scope, storage::JobId id) {
    auto job = fx_.store().GetJob(scope, id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : storage::Job{};
  }

  testing::Fixture fx_;
};

TEST_F(EngineTest, EveryJobRunsOnce) {
  RunLog log;
  std::vector<storage::Scope> tenants = {Tenant("alpha"), Tenant("beta"), Tenant("gamma")};
  auto engine = Started(Options(4), [&](const JobRun& run) {
    log.Add(run.job());
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  std::vector<std::pair<storage::Scope, storage::JobId>> ids;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(storage::Job job,
                         engine->Schedule(tenants[i % 3], Job(absl::StrCat(i))));
    ids.emplace_back(tenants[i % 3], job.id);
  }
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 100; }))
      << "completed " << engine->stats().completed;
  std::map<std::string, int> runs = log.runs();
  EXPECT_EQ(runs.size(), 100u);
  for (const auto& [subject, n] : runs) EXPECT_EQ(n, 1) << subject;
  for (const auto& [scope, id] : ids) {
    EXPECT_THAT(fx_.store().GetJob(scope, id), StatusIs(absl::StatusCode::kNotFound));
  }
  engine->Stop();
  Engine::Stats stats = engine->stats();
  EXPECT_EQ(stats.claimed, 100);
  EXPECT_EQ(stats.retried + stats.failed + stats.lost + stats.released, 0);
}

// A run starting under the owner id of a run that died (a container restarted in its pod)
// runs that run's jobs at once, not when their leases end; the dead run is fenced out.
TEST_F(EngineTest, ARunStartingUnderADeadRunsIdRunsItsJobsAtOnce) {
  RunLog log;
  const storage::Scope alpha = Tenant("alpha");
  ASSERT_OK_AND_ASSIGN(storage::Job job,
                       fx_.store().ScheduleJob(alpha, Job("left"), fx_.clock().Now()));
  storage::JobClaim dead;
  dead.owner = "replica-1";
  dead.now = fx_.clock().Now();
  dead.max_jobs = 1;
  dead.lease_duration = absl::Minutes(1);
  dead.kinds = {kStep};
  ASSERT_OK_AND_ASSIGN(storage::JobClaimResult held, fx_.store().ClaimJobs(dead));
  ASSERT_EQ(held.jobs.size(), 1u);
  fx_.clock().Advance(absl::Seconds(5));  // the lease has 55 s to run, and the clock stays here

  auto engine = Started(Options(), [&](const JobRun& run) {
    log.Add(run.job());
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 1; }))
      << "the dead run's job waited for its lease";
  EXPECT_EQ(log.runs(), (std::map<std::string, int>{{"left", 1}}));
  EXPECT_THAT(fx_.store().GetJob(alpha, job.id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(fx_.store().RenewJob(held.jobs[0].lease, absl::Minutes(1), fx_.clock().Now()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// A job the store leased to this replica as it was made (NewOrder::claim) takes the room
// ReserveForNew reserved: one place in the queue, given back by Unreserve; no reservation is
// made while the engine is not running, its queue is full, or claim_on_create is off.
TEST_F(EngineTest, ReserveForNewHoldsAPlaceInTheQueueUntilAdoptOrUnreserve) {
  Engine::Options options = Options(1);
  options.claim_on_create_queue = 1;
  options.per_tenant_limit = 3;
  options.per_ca_limit = 5;
  auto idle = Engine::Create(options);
  ASSERT_OK(idle.status());
  EXPECT_EQ((*idle)->ReserveForNew(), std::nullopt);  // not started
  Engine::Options off = options;
  off.claim_on_create = false;
  auto never = Started(off, [](const JobRun&) { return JobOutcome::Done(); });
  ASSERT_NE(never, nullptr);
  EXPECT_EQ(never->ReserveForNew(), std::nullopt);

  auto engine = Started(options, [](const JobRun&) { return JobOutcome::Done(); });
  ASSERT_NE(engine, nullptr);
  std::optional<storage::JobClaim> claim = engine->ReserveForNew();
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->owner, "replica-1");
  EXPECT_EQ(claim->now, fx_.clock().Now());
  EXPECT_EQ(claim->max_jobs, 1);
  EXPECT_EQ(claim->lease_duration, options.lease_duration);
  EXPECT_EQ(claim->per_tenant_limit, 3);
  EXPECT_EQ(claim->per_ca_limit, 5);
  EXPECT_THAT(claim->kinds, ElementsAre(kStep));
  EXPECT_EQ(engine->ReserveForNew(), std::nullopt);  // its one place is held
  engine->Unreserve();
  EXPECT_TRUE(engine->ReserveForNew().has_value());
  engine->Unreserve();
  engine->Stop();
  EXPECT_EQ(engine->ReserveForNew(), std::nullopt);  // stopped
}

// An adopted job runs here under the lease it was made with, as a claimed one would, and the
// engine claims nothing for it.
TEST_F(EngineTest, AnAdoptedJobRunsUnderItsLeaseWithoutAClaim) {
  const storage::Scope alpha = Tenant("alpha");
  Engine::Options options = Options(2);
  options.watch_store = false;
  options.idle_poll = absl::Hours(1);  // no poll finds the job first
  RunLog log;
  auto engine = Started(options, [&](const JobRun& run) {
    log.Add(run.job());
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(Eventually([&] { return engine->stats().claims >= 1; }));  // the first, empty
  // Made leased to this replica, as CreateOrJoinOrder with a claim makes an order's job.
  ASSERT_OK(fx_.store().ScheduleJob(alpha, Job("adopted"), fx_.clock().Now()).status());
  std::optional<storage::JobClaim> claim = engine->ReserveForNew();
  ASSERT_TRUE(claim.has_value());
  ASSERT_OK_AND_ASSIGN(storage::JobClaimResult made, fx_.store().ClaimJobs(*claim));
  ASSERT_EQ(made.jobs.size(), 1u);
  const storage::JobId id = made.jobs[0].job.id;
  const int64_t claims = engine->stats().claims;
  engine->Adopt(made.jobs[0]);
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 1; }));
  EXPECT_THAT(log.order(), ElementsAre(absl::StrCat(alpha.tenant, "/adopted")));
  EXPECT_THAT(fx_.store().GetJob(alpha, id), StatusIs(absl::StatusCode::kNotFound));
  engine->Stop();
  const Engine::Stats stats = engine->stats();
  EXPECT_EQ(stats.adopted, 1);
  EXPECT_EQ(stats.claimed, 0);
  EXPECT_EQ(stats.claims, claims);
  EXPECT_TRUE(engine->ReserveForNew() == std::nullopt);
}

// Issue 10, item 3: every claim is a PostgreSQL transaction, so the engine makes none that can
// only find nothing. Jobs run one after another, each rescheduled once (due at once): the
// claims are the first (at start, empty) and one per run. Before, a worker finishing always
// claimed (empty after every last run) and a Schedule woke the loop besides the store's
// wake-up.
TEST_F(EngineTest, ClaimsThatCanFindNothingAreNotMade) {
  const storage::Scope alpha = Tenant("alpha");
  absl::Mutex mu;
  std::set<std::string> seen;
  Engine::Options options = Options(2);
  options.idle_poll = absl::Hours(1);  // no idle poll in this test
  auto engine = Started(options, [&](const JobRun& run) {
    absl::MutexLock lock(&mu);
    if (seen.insert(run.job().subject).second) return JobOutcome::RetryAt(fx_.clock().Now());
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  constexpr int kJobs = 5;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_OK(engine->Schedule(alpha, Job(absl::StrCat(i))).status());
    ASSERT_TRUE(Eventually([&] { return engine->stats().completed == i + 1; }))
        << "completed " << engine->stats().completed;
  }
  engine->Stop();
  const Engine::Stats stats = engine->stats();
  EXPECT_EQ(stats.claimed, 2 * kJobs);
  EXPECT_LE(stats.empty_claims, 1) << stats.claims << " claims, " << stats.empty_claims
                                   << " of them empty";
  EXPECT_LE(stats.claims, 1 + 2 * kJobs);
}

// A claim answers for the table as it read it. A job this engine rescheduled after that read,
// due no later than the claim's time, runs at its time, not at the next idle poll (here an
// hour). Before, a due time learned during a claim was kept only if it was after the claim's
// time; ClaimsThatCanFindNothingAreNotMade failed that way once in CI.
TEST_F(EngineTest, AJobRescheduledWhileAClaimThatMissedItWasInFlightRunsAtItsTime) {
  const storage::Scope alpha = Tenant("alpha");
  HeldClaims held(fx_.store());
  Engine::Options options = Options(2);
  options.jobs = &held;
  options.idle_poll = absl::Hours(1);
  absl::Notification a_running, a_may_end;
  absl::Mutex mu;
  std::map<std::string, int> runs;
  auto engine = Started(options, [&](const JobRun& run) {
    int n = 0;
    {
      absl::MutexLock lock(&mu);
      n = ++runs[run.job().subject];
    }
    if (run.job().subject != "a" || n > 1) return JobOutcome::Done();
    a_running.Notify();
    a_may_end.WaitForNotificationWithTimeout(kPatience);
    return JobOutcome::RetryAt(fx_.clock().Now());  // due at the held claim's time
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK(engine->Schedule(alpha, Job("a")).status());
  ASSERT_TRUE(a_running.WaitForNotificationWithTimeout(kPatience));
  // The store's wake-up for b makes a claim, which reads the table while a is leased.
  held.HoldNext();
  ASSERT_OK(engine->Schedule(alpha, Job("b")).status());
  ASSERT_TRUE(held.WaitHeld());
  a_may_end.Notify();
  ASSERT_TRUE(Eventually([&] { return engine->stats().rescheduled == 1; }));
  held.Let();
  EXPECT_TRUE(Eventually([&] { return engine->stats().completed == 2; }))
      << "completed " << engine->stats().completed;
  engine->Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(runs["a"], 2);
  EXPECT_EQ(runs["b"], 1);
}

TEST_F(EngineTest, FailedAttemptsBackOffExponentiallyWithJitterThenFailForGood) {
  const storage::Scope alpha = Tenant("alpha");
  Engine::Options options = Options(1);
  options.initial_backoff = absl::Seconds(10);
  options.max_backoff = absl::Seconds(30);
  options.max_attempts = 4;
  Metrics metrics;
  options.metrics = &metrics;
  RunLog log;
  auto engine = Started(options, [&](const JobRun& run) {
    log.Add(run.job());
    return JobOutcome::Failed(absl::UnavailableError("CA down"));
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job job, engine->Schedule(alpha, Job("1")));

  // Attempts 1-3 are retried after 10 s, 20 s, 30 s (capped), each less up to half.
  const absl::Duration backoff[] = {absl::Seconds(10), absl::Seconds(20), absl::Seconds(30)};
  std::set<absl::Duration> waits;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(Eventually([&] { return engine->stats().retried == attempt; }));
    const absl::Time now = fx_.clock().Now();
    storage::Job after = Read(alpha, job.id);
    EXPECT_EQ(after.attempts, attempt);
    EXPECT_THAT(after.last_error, HasSubstr("CA down"));
    EXPECT_EQ(after.lease_owner, "");
    const absl::Duration wait = after.not_before - now;
    EXPECT_GE(wait, backoff[attempt - 1] / 2) << attempt;
    EXPECT_LE(wait, backoff[attempt - 1]) << attempt;
    waits.insert(wait - backoff[attempt - 1]);
    fx_.clock().Set(after.not_before);
    engine->Wake();
  }
  EXPECT_EQ(waits.size(), 3u);  // jittered, not a fixed fraction

  // The fourth failure in a row is the last: the job is kept as failed.
  ASSERT_TRUE(Eventually([&] { return engine->stats().failed == 1; }));
  storage::Job failed = Read(alpha, job.id);
  EXPECT_EQ(failed.attempts, 4);
  EXPECT_TRUE(failed.failed_at.has_value());
  EXPECT_THAT(failed.last_error, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(log.total(), 4);
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_job_runs_total{kind=\"order_step\",outcome=\"retried\"} 3"));
  EXPECT_THAT(text, HasSubstr("acmevault_job_runs_total{kind=\"order_step\",outcome=\"failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("acmevault_jobs_running{kind=\"order_step\"} 0"));
}

TEST_F(EngineTest, TheHandlersTimeWinsOverTheBackoff) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  RunLog log;
  auto engine = Started(Options(1), [&](const JobRun& run) {
    log.Add(run.job());
    switch (log.total()) {
      case 1:  // Not ready yet: look again in 2 s (the next step, not a failure).
        return JobOutcome::RetryAt(run.started_at() + absl::Seconds(2));
      case 2:  // The CA said 503 with Retry-After: 90.
        return JobOutcome::Failed(absl::UnavailableError("503"), run.started_at() + absl::Seconds(90));
      default:
        return JobOutcome::Done();
    }
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job job, engine->Schedule(alpha, Job("1")));

  ASSERT_TRUE(Eventually([&] { return engine->stats().rescheduled == 1; }));
  storage::Job next = Read(alpha, job.id);
  EXPECT_EQ(next.not_before, t + absl::Seconds(2));
  EXPECT_EQ(next.attempts, 0);
  fx_.clock().Advance(absl::Seconds(2));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] { return engine->stats().retried == 1; }));
  next = Read(alpha, job.id);
  EXPECT_EQ(next.not_before, t + absl::Seconds(92));
  EXPECT_EQ(next.attempts, 1);
  fx_.clock().Advance(absl::Seconds(90));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 1; }));
  EXPECT_EQ(log.total(), 3);
}

// Issue 10: a next step expected soon (SoonAt within keep_within) stays on this replica under
// the same lease: no reschedule, no claim, no store write; one further away is rescheduled
// through the store and claimed again with a new fencing token.
TEST_F(EngineTest, ASoonNextStepIsKeptUnderItsLeaseWithoutAStoreWrite) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  Engine::Options options = Options(1);
  options.keep_within = absl::Seconds(2);
  absl::Mutex mu;
  std::vector<std::pair<bool, int64_t>> runs;  // kept, fencing token
  auto engine = Started(options, [&](const JobRun& run) {
    absl::MutexLock lock(&mu);
    runs.emplace_back(run.kept(), run.lease().fencing_token);
    switch (runs.size()) {
      case 1:
        return JobOutcome::SoonAt(run.started_at() + absl::Milliseconds(500));
      case 2:
        return JobOutcome::SoonAt(run.started_at() + absl::Seconds(3));  // too far: stored
      default:
        return JobOutcome::Done();
    }
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job job, engine->Schedule(alpha, Job("1")));
  ASSERT_TRUE(Eventually([&] { return engine->stats().kept == 1; }));
  const int64_t writes = fx_.fake_store().transactions();
  storage::Job row = Read(alpha, job.id);
  EXPECT_EQ(row.lease_owner, "replica-1");
  EXPECT_EQ(row.not_before, t);  // nothing rescheduled
  EXPECT_EQ(row.fencing_token, 1);

  fx_.clock().Advance(absl::Milliseconds(500));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] { return engine->stats().rescheduled == 1; }));
  // The kept run cost no store transaction of its own; only the reschedule after it.
  EXPECT_EQ(fx_.fake_store().transactions() - writes, 1 + 1);  // the reschedule + this read
  row = Read(alpha, job.id);
  EXPECT_EQ(row.not_before, t + absl::Milliseconds(500) + absl::Seconds(3));
  EXPECT_EQ(row.lease_owner, "");

  fx_.clock().Advance(absl::Seconds(3));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 1; }));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(runs, ElementsAre(std::pair{false, int64_t{1}}, std::pair{true, int64_t{1}},
                                std::pair{false, int64_t{2}}));
  EXPECT_EQ(engine->stats().claimed, 2);
}

// A job is kept at most keep_for after its claim: then its next step goes back to the table, so
// a CA that keeps an order pending does not keep its lease here for long.
TEST_F(EngineTest, AJobIsKeptNoLongerThanKeepForAfterItsClaim) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  Engine::Options options = Options(1);
  options.keep_within = absl::Seconds(2);
  options.keep_for = absl::Seconds(3);
  auto engine = Started(options, [&](const JobRun& run) {
    return JobOutcome::SoonAt(run.started_at() + absl::Seconds(1));
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job job, engine->Schedule(alpha, Job("1")));
  for (int kept = 1; kept <= 3; ++kept) {
    ASSERT_TRUE(Eventually([&] { return engine->stats().kept == kept; })) << kept;
    fx_.clock().Advance(absl::Seconds(1));
    engine->Wake();
  }
  // The run at t+3s asks for t+4s, past the claim plus keep_for: stored.
  ASSERT_TRUE(Eventually([&] { return engine->stats().rescheduled == 1; }));
  EXPECT_EQ(engine->stats().kept, 3);
  EXPECT_EQ(Read(alpha, job.id).not_before, t + absl::Seconds(4));
  engine->Stop();
}

// A kept job's next run counts as running while it runs, as its first did: the gauge of jobs
// running went below zero by one for every kept run before, since only the first run counted.
TEST_F(EngineTest, AKeptJobsNextRunCountsAsRunning) {
  const storage::Scope alpha = Tenant("alpha");
  Engine::Options options = Options(1);
  Metrics metrics;
  options.metrics = &metrics;
  absl::Notification second_started, second_may_end;
  auto engine = Started(options, [&](const JobRun& run) {
    if (!run.kept()) return JobOutcome::SoonAt(run.started_at() + absl::Milliseconds(500));
    second_started.Notify();
    second_may_end.WaitForNotification();
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK(engine->Schedule(alpha, Job("1")).status());
  ASSERT_TRUE(Eventually([&] { return engine->stats().kept == 1; }));
  EXPECT_THAT(metrics.Render(), HasSubstr("acmevault_jobs_running{kind=\"order_step\"} 0"));
  fx_.clock().Advance(absl::Milliseconds(500));
  engine->Wake();
  ASSERT_TRUE(second_started.WaitForNotificationWithTimeout(kPatience));
  EXPECT_THAT(metrics.Render(), HasSubstr("acmevault_jobs_running{kind=\"order_step\"} 1"));
  second_may_end.Notify();
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 1; }));
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_jobs_running{kind=\"order_step\"} 0"));
  EXPECT_THAT(text, HasSubstr("acmevault_job_runs_total{kind=\"order_step\",outcome=\"kept\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("acmevault_job_runs_total{kind=\"order_step\",outcome=\"completed\"} 1"));
  // The queue age is observed once, at the job's first run.
  EXPECT_THAT(text, HasSubstr("acmevault_job_queue_age_seconds_count{kind=\"order_step\"} 1"));
  engine->Stop();
}

// A kept job holds its lease, and a lease counts against its tenant's and its CA's bounds
// although the job waits for the CA without a worker. When the last claim left due jobs
// behind, at most half of a bound is kept here; a further job that waits goes back to the
// table. Before, kept jobs filled the tenant's bound and its due jobs waited for them: a
// tenant's orders against a CA that validates slowly reached the CA at about
// per_tenant_limit / keep time a second (10/s with the defaults), while the workers idled.
TEST_F(EngineTest, KeptJobsLeaveHalfOfATenantsBoundToItsDueJobs) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(fx_.store().ScheduleJob(alpha, Job(absl::StrCat(i), t), t).status());
  }
  Engine::Options options = Options(1);
  options.per_tenant_limit = 4;
  options.keep_within = absl::Seconds(2);
  RunLog log;
  // Every job's first run waits for the CA: its next look is a second away. The clock stands
  // still, so none is due again in this test.
  auto engine = Started(options, [&](const JobRun& run) {
    log.Add(run.job());
    return JobOutcome::SoonAt(run.started_at() + absl::Seconds(1));
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(Eventually([&] { return log.total() == 10; }))
      << log.total() << " of the tenant's 10 due jobs ran (kept " << engine->stats().kept << ")";
  const Engine::Stats stats = engine->stats();
  // Two kept while due jobs waited (half of the bound), and the last, once none was left.
  EXPECT_EQ(stats.kept, 3);
  EXPECT_EQ(stats.rescheduled, 7);
  for (const auto& [subject, n] : log.runs()) EXPECT_EQ(n, 1) << subject;
  engine->Stop();
}

// Nothing due waits: a tenant's jobs are kept up to its whole bound.
TEST_F(EngineTest, KeptJobsFillTheBoundWhenNoDueJobWaits) {
  const storage::Scope alpha = Tenant("alpha");
  Engine::Options options = Options(4);
  options.per_tenant_limit = 4;
  options.keep_within = absl::Seconds(2);
  auto engine = Started(options, [&](const JobRun& run) {
    return JobOutcome::SoonAt(run.started_at() + absl::Seconds(1));
  });
  ASSERT_NE(engine, nullptr);
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK(engine->Schedule(alpha, Job(absl::StrCat(i))).status());
    ASSERT_TRUE(Eventually([&] { return engine->stats().kept == i + 1; })) << i;
  }
  EXPECT_EQ(engine->stats().rescheduled, 0);
  engine->Stop();
}

// Stopping puts a kept job back in the table at its time, unleased: another replica goes on
// with it then.
TEST_F(EngineTest, StoppingReschedulesAKeptJobAtItsTime) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  auto engine = Started(Options(1), [&](const JobRun& run) {
    return JobOutcome::SoonAt(run.started_at() + absl::Seconds(1));
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job job, engine->Schedule(alpha, Job("1")));
  ASSERT_TRUE(Eventually([&] { return engine->stats().kept == 1; }));
  engine->Stop();
  storage::Job row = Read(alpha, job.id);
  EXPECT_EQ(row.lease_owner, "");
  EXPECT_EQ(row.not_before, t + absl::Seconds(1));
  EXPECT_EQ(row.attempts, 0);
}

// Issue 10: a kept run may leave a write in memory for its next run here (SoonAt's
// `unkept`): not made while the job stays, made before it goes back to the store (a SoonAt
// too far to keep, or a stop), and dropped once the next run here takes over.
TEST_F(EngineTest, AKeptRunsWriteLeftInMemoryIsMadeOnlyWhenTheJobGoesBackToTheStore) {
  const storage::Scope alpha = Tenant("alpha");
  absl::Mutex mu;
  std::vector<std::string> writes;  // which run's left write was made
  int runs = 0;
  auto left_by = [&](std::string run) {
    return [&mu, &writes, run] {
      absl::MutexLock lock(&mu);
      writes.push_back(run);
      return absl::OkStatus();
    };
  };
  auto engine = Started(Options(1), [&](const JobRun& run) {
    absl::MutexLock lock(&mu);
    switch (++runs) {
      case 1:  // kept: its write is the next run's to make
        return JobOutcome::SoonAt(run.started_at() + absl::Milliseconds(500), left_by("1"));
      case 2:  // too far to keep: its write is made before the reschedule
        return JobOutcome::SoonAt(run.started_at() + absl::Seconds(3), left_by("2"));
      default:  // kept, then the engine stops: made before the job goes back
        return JobOutcome::SoonAt(run.started_at() + absl::Milliseconds(500), left_by("3"));
    }
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK(engine->Schedule(alpha, Job("1")).status());
  ASSERT_TRUE(Eventually([&] { return engine->stats().kept == 1; }));
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(writes.empty());
  }
  fx_.clock().Advance(absl::Milliseconds(500));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] { return engine->stats().rescheduled == 1; }));
  {
    absl::MutexLock lock(&mu);
    EXPECT_THAT(writes, ElementsAre("2"));
  }
  fx_.clock().Advance(absl::Seconds(3));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] { return engine->stats().kept == 2; }));
  engine->Stop();
  absl::MutexLock lock(&mu);
  EXPECT_THAT(writes, ElementsAre("2", "3"));
}

TEST_F(EngineTest, AnExceptionOutOfAHandlerIsRecordedAsAFailedAttempt) {
  const storage::Scope alpha = Tenant("alpha");
  RunLog log;
  auto engine = Started(Options(1), [&](const JobRun& run) -> JobOutcome {
    log.Add(run.job());
    if (run.job().subject == "std") throw std::runtime_error("boom");
    if (run.job().subject == "other") throw 42;
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job std_job, engine->Schedule(alpha, Job("std")));
  ASSERT_OK_AND_ASSIGN(storage::Job other, engine->Schedule(alpha, Job("other")));
  ASSERT_OK_AND_ASSIGN(storage::Job fine, engine->Schedule(alpha, Job("fine")));
  ASSERT_TRUE(Eventually([&] { return engine->stats().retried == 2; }));
  EXPECT_THAT(Read(alpha, std_job.id).last_error, HasSubstr("internal error: boom"));
  EXPECT_THAT(Read(alpha, other.id).last_error, HasSubstr("unknown exception"));
  EXPECT_EQ(Read(alpha, other.id).attempts, 1);
  // The engine (and the process) carry on.
  ASSERT_TRUE(Eventually([&] { return engine->stats().completed == 1; }));
  EXPECT_THAT(fx_.store().GetJob(alpha, fine.id), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(EngineTest, OneTenantsBacklogDoesNotDelayAnothersJob) {
  const storage::Scope alpha = Tenant("alpha");
  const storage::Scope beta = Tenant("beta");
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK(fx_.store()
                  .ScheduleJob(alpha, Job(absl::StrCat("a", i), fx_.clock().Now() - absl::Hours(1)),
                               fx_.clock().Now())
                  .status());
  }
  ASSERT_OK(fx_.store().ScheduleJob(beta, Job("b"), fx_.clock().Now()).status());  // due last
  RunLog log;
  absl::Notification beta_ran;
  Engine::Options options = Options(1);  // one job at a time, one per claim
  auto engine = Started(options, [&](const JobRun& run) {
    log.Add(run.job());
    if (run.job().tenant == beta.tenant && !beta_ran.HasBeenNotified()) beta_ran.Notify();
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(beta_ran.WaitForNotificationWithTimeout(kPatience));
  engine->Stop();
  const std::vector<std::string> order = log.order();
  ASSERT_GE(order.size(), 2u);
  // alpha's oldest job first, then beta's: not after alpha's thousand.
  EXPECT_EQ(order[0], absl::StrCat(alpha.tenant, "/a0"));
  EXPECT_EQ(order[1], absl::StrCat(beta.tenant, "/b"));
}

TEST_F(EngineTest, LongHandlersKeepTheirLeaseAndShutdownReleasesUnstartedJobs) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  Engine::Options options = Options(1);
  options.prefetch = 2;  // two jobs wait here while the first runs
  options.lease_duration = absl::Seconds(30);
  absl::Notification started, finish;
  auto engine = Started(options, [&](const JobRun& run) {
    started.Notify();
    finish.WaitForNotification();
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job first, engine->Schedule(alpha, Job("1", t - absl::Seconds(2))));
  ASSERT_OK_AND_ASSIGN(storage::Job second, engine->Schedule(alpha, Job("2", t - absl::Seconds(1))));
  ASSERT_OK_AND_ASSIGN(storage::Job third, engine->Schedule(alpha, Job("3")));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kPatience));
  ASSERT_TRUE(Eventually([&] { return engine->stats().claimed == 3; }));

  // A third of the lease later, the running job's lease is renewed; the waiting ones' are not.
  fx_.clock().Advance(absl::Seconds(11));
  engine->Wake();
  ASSERT_TRUE(Eventually([&] {
    return Read(alpha, first.id).lease_expires_at == t + absl::Seconds(41);
  }));
  EXPECT_EQ(Read(alpha, second.id).lease_expires_at, t + absl::Seconds(30));

  // Stopping releases the two that never started, then waits for the running one.
  std::thread stopper([&] { engine->Stop(); });
  ASSERT_TRUE(Eventually([&] { return engine->stats().released == 2; }));
  for (storage::JobId id : {second.id, third.id}) {
    storage::Job released = Read(alpha, id);
    EXPECT_EQ(released.lease_owner, "");
    EXPECT_EQ(released.fencing_token, 1);
    EXPECT_EQ(released.attempts, 0);
  }
  finish.Notify();
  stopper.join();
  EXPECT_THAT(fx_.store().GetJob(alpha, first.id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(engine->stats().completed, 1);
}

TEST_F(EngineTest, ARunWhoseLeaseWasTakenOverIsToldAndItsOutcomeRefused) {
  const storage::Scope alpha = Tenant("alpha");
  const absl::Time t = fx_.clock().Now();
  Engine::Options options = Options(1);
  options.lease_duration = absl::Seconds(30);
  absl::Notification started;
  std::atomic<bool> saw_loss{false};
  auto engine = Started(options, [&](const JobRun& run) {
    started.Notify();
    saw_loss = Eventually([&] { return run.lease_lost(); });
    return JobOutcome::Done();
  });
  ASSERT_NE(engine, nullptr);
  ASSERT_OK_AND_ASSIGN(storage::Job job, engine->Schedule(alpha, Job("1")));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kPatience));

  // This replica stalled past its lease; another claimed the job meanwhile.
  fx_.clock().Advance(absl::Seconds(31));
  storage::JobClaim rival;
  rival.owner = "replica-2";
  rival.now = fx_.clock().Now();
  rival.lease_duration = absl::Minutes(1);
  rival.kinds = {kStep};
  ASSERT_OK_AND_ASSIGN(storage::JobClaimResult taken, fx_.store().ClaimJobs(rival));
  ASSERT_EQ(taken.jobs.size(), 1u);
  engine->Wake();  // the next renewal finds the lease lost
  ASSERT_TRUE(Eventually([&] { return engine->stats().lost == 1; }));
  EXPECT_TRUE(saw_loss);
  EXPECT_EQ(engine->stats().completed, 0);
  storage::Job now = Read(alpha, job.id);
  EXPECT_EQ(now.lease_owner, "replica-2");
  EXPECT_EQ(now.fencing_token, 2);
  EXPECT_EQ(t + absl::Seconds(31) + absl::Minutes(1), *now.lease_expires_at);
}

TEST_F(EngineTest, OptionsAndRegistrationAreChecked) {
  Engine::Options options = Options();
  options.owner = "";
  EXPECT_THAT(Engine::Create(options), StatusIs(absl::StatusCode::kInvalidArgument, "owner"));
  options = Options();
  options.jobs = nullptr;
  EXPECT_THAT(Engine::Create(options), StatusIs(absl::StatusCode::kInvalidArgument, "jobs"));
  options = Options();
  options.max_attempts = 0;
  EXPECT_THAT(Engine::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options = Options();
  options.lease_duration = absl::ZeroDuration();
  EXPECT_THAT(Engine::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Engine> engine, Engine::Create(Options()));
  EXPECT_THAT(engine->Start(), StatusIs(absl::StatusCode::kFailedPrecondition, "no job handler"));
  auto done = [](const JobRun&) { return JobOutcome::Done(); };
  EXPECT_THAT(engine->Register("Bad Kind", done), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(engine->Register(kStep, done));
  EXPECT_THAT(engine->Register(kStep, done), StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Engine> second, Engine::Create(Options()));
  ASSERT_OK(second->Register(kStep, done));
  ASSERT_OK(second->Start());
  EXPECT_THAT(second->Register("renew", done), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(second->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// ---------------------------------------------------------------------------------------------
// Two replicas, one PostgreSQL job table

class TwoReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto db = storage::testing::TestDatabase::Create(url);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    for (auto* store : {&store_a_, &store_b_}) {
      auto opened =
          db_->OpenStore(&clock_, storage::testing::TestKeks(storage::testing::KekText("k", 'k')));
      ASSERT_TRUE(opened.ok()) << opened.status();
      *store = std::move(*opened);
    }
    for (const char* name : {"alpha", "beta", "gamma", "delta"}) {
      storage::TenantSpec spec;
      spec.name = name;
      spec.acme_directory_url = "https://ca.test/dir";
      auto tenant = store_a_->CreateTenant({"test", "test"}, spec);
      ASSERT_TRUE(tenant.ok()) << tenant.status();
      tenants_.push_back(storage::Scope{tenant->id, {"test", "test"}});
    }
  }

  Engine::Options Options(storage::PostgresStore& store, const std::string& owner) {
    Engine::Options options;
    options.jobs = &store;
    options.owner = owner;
    options.clock = &clock_;
    options.workers = 2;
    options.idle_poll = absl::Milliseconds(50);
    options.lease_duration = absl::Minutes(1);
    return options;
  }

  acmevault::testing::FakeClock clock_;
  std::unique_ptr<storage::testing::TestDatabase> db_;
  std::unique_ptr<storage::PostgresStore> store_a_;
  std::unique_ptr<storage::PostgresStore> store_b_;
  std::vector<storage::Scope> tenants_;
};

TEST_F(TwoReplicasTest, EveryJobRunsExactlyOnceAndEveryReplicaHearsOfEachEnd) {
  RunLog log;
  auto handler = [&](const JobRun& run) {
    log.Add(run.job());
    return JobOutcome::Done();
  };
  absl::Mutex mu;
  std::map<std::string, std::set<std::string>> heard;  // replica -> subjects it was told ended
  std::vector<std::unique_ptr<Engine>> engines;
  for (auto [store, owner] : {std::pair{store_a_.get(), "a"}, std::pair{store_b_.get(), "b"}}) {
    Engine::Options options = Options(*store, owner);
    options.on_notice = [&, owner = std::string(owner)](const storage::JobNotice& notice) {
      if (notice.tenant == 0) return;  // deliveries started: notices may have been missed
      absl::MutexLock lock(&mu);
      heard[owner].insert(notice.subject);
    };
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Engine> engine, Engine::Create(options));
    ASSERT_OK(engine->Register(kStep, handler));
    ASSERT_OK(engine->Start());
    engines.push_back(std::move(engine));
  }
  // Both listeners are up (a notice sent before would not reach them).
  ASSERT_TRUE(Eventually([&] {
    return engines[0]->stats().wakeups > 0 && engines[1]->stats().wakeups > 0;
  }));
  // Scheduled through both replicas while both run: each NOTIFY wakes both.
  constexpr int kJobs = 200;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_OK(engines[i % 2]
                  ->Schedule(tenants_[i % 4], storage::NewJob{kStep, absl::StrCat(i),
                                                              "https://ca.test/dir", clock_.Now()})
                  .status());
  }
  ASSERT_TRUE(Eventually([&] {
    return engines[0]->stats().completed + engines[1]->stats().completed == kJobs;
  })) << log.total() << " runs";
  std::map<std::string, int> runs = log.runs();
  EXPECT_EQ(runs.size(), static_cast<size_t>(kJobs));
  for (const auto& [subject, n] : runs) EXPECT_EQ(n, 1) << subject;
  // Each end reached both replicas' listeners, whichever replica ran the job. Waited for before
  // the stop, which ends the listeners: the last ends' notices may still be on their way.
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return heard["a"].size() == kJobs && heard["b"].size() == kJobs;
  }));
  for (auto& engine : engines) engine->Stop();
  for (auto& engine : engines) {
    Engine::Stats stats = engine->stats();
    EXPECT_EQ(stats.lost + stats.retried + stats.failed, 0);
  }
  EXPECT_EQ(log.total(), kJobs);
  ASSERT_OK_AND_ASSIGN(std::vector<storage::DueJobCount> due,
                       store_a_->CountDueJobs(clock_.Now()));
  EXPECT_TRUE(due.empty());
}

TEST_F(TwoReplicasTest, AKilledReplicasJobIsFinishedByTheOtherAndTheKilledOneIsFencedOut) {
  const storage::Scope alpha = tenants_[0];
  absl::Notification started, wake_up;
  Engine::Options a_options = Options(*store_a_, "a");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Engine> a, Engine::Create(a_options));
  ASSERT_OK(a->Register(kStep, [&](const JobRun&) {
    started.Notify();
    wake_up.WaitForNotification();  // stalled mid-job
    return JobOutcome::Done();
  }));
  ASSERT_OK(a->Start());
  ASSERT_OK_AND_ASSIGN(storage::Job job,
                       a->Schedule(alpha, storage::NewJob{kStep, "victim", "", clock_.Now()}));
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kPatience));
  a->StopWithoutRelease();  // killed: no renewal, no release

  RunLog log;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Engine> b, Engine::Create(Options(*store_b_, "b")));
  ASSERT_OK(b->Register(kStep, [&](const JobRun& run) {
    log.Add(run.job());
    EXPECT_EQ(run.lease().fencing_token, 2);
    return JobOutcome::Done();
  }));
  ASSERT_OK(b->Start());
  // The lease is a's until it expires.
  ASSERT_OK_AND_ASSIGN(storage::Job held, store_b_->GetJob(alpha, job.id));
  EXPECT_EQ(held.lease_owner, "a");
  EXPECT_EQ(log.total(), 0);

  clock_.Advance(a_options.lease_duration);
  b->Wake();
  ASSERT_TRUE(Eventually([&] { return b->stats().completed == 1; }));
  EXPECT_THAT(log.runs(), ElementsAre(std::pair{std::string("victim"), 1}));
  EXPECT_THAT(store_b_->GetJob(alpha, job.id), StatusIs(absl::StatusCode::kNotFound));

  // a comes back from its stall: its outcome is refused.
  wake_up.Notify();
  ASSERT_TRUE(Eventually([&] { return a->stats().lost == 1; }));
  EXPECT_EQ(a->stats().completed, 0);
  b->Stop();
}

}  // namespace
}  // namespace acmevault::service
