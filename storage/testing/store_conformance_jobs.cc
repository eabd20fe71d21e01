// The conformance suite (store_conformance.h): the job table of the work engine (JobStore):
// scheduling, claims, leases and fencing, fairness and bounds, wake-ups.
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

namespace {

constexpr char kStep[] = "order_step";
constexpr char kCa[] = "https://ca.test/dir";

NewJob JobFor(const std::string& subject, absl::Time not_before, const std::string& ca = kCa,
              const std::string& kind = kStep) {
  return NewJob{kind, subject, ca, not_before};
}

JobClaim ClaimOf(const std::string& owner, absl::Time now, int max_jobs,
                 absl::Duration lease = absl::Minutes(1)) {
  JobClaim claim;
  claim.owner = owner;
  claim.now = now;
  claim.max_jobs = max_jobs;
  claim.lease_duration = lease;
  claim.kinds = {kStep};
  return claim;
}

// "<tenant>/<subject>" of each claimed job, in claim order.
std::vector<std::string> Claimed(const JobClaimResult& result) {
  std::vector<std::string> out;
  for (const ClaimedJob& c : result.jobs) {
    out.push_back(absl::StrCat(c.job.tenant, "/", c.job.subject));
  }
  return out;
}

// Records what a JobWaker delivers; waits for it in real time (PostgreSQL delivers on its
// listener's thread).
class WakeupRecorder {
 public:
  JobWakeups Wakeups() {
    return JobWakeups{[this] {
                        absl::MutexLock lock(&mu_);
                        ++scheduled_;
                      },
                      [this](const JobNotice& notice) {
                        absl::MutexLock lock(&mu_);
                        if (notice.tenant == 0) {
                          // Missed wake-ups (deliveries started or resumed): kept apart.
                          EXPECT_EQ(notice.kind, "");
                          EXPECT_EQ(notice.subject, "");
                          ++missed_;
                          return;
                        }
                        notices_.push_back(absl::StrCat(notice.tenant, " ", notice.kind, " ",
                                                        notice.subject,
                                                        notice.failed ? " failed" : " done"));
                      }};
  }
  // How many times job_finished said that notices may have been missed.
  int missed() {
    absl::MutexLock lock(&mu_);
    return missed_;
  }
  // True once jobs_scheduled was called at least `n` times in all.
  bool WaitForScheduled(int n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return scheduled_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
  }
  // The notices once there are at least `n` (fewer if they did not come).
  std::vector<std::string> WaitForNotices(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return notices_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
    return notices_;
  }
  int scheduled() {
    absl::MutexLock lock(&mu_);
    return scheduled_;
  }

 private:
  absl::Mutex mu_;
  int scheduled_ ABSL_GUARDED_BY(mu_) = 0;
  int missed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> notices_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------------------------
// Scheduling

TEST_P(StoreConformanceTest, SchedulingIsIdempotentAndTheEarlierTimeWins) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const absl::Time t = clock().Now();
  ASSERT_OK_AND_ASSIGN(Job first, store().ScheduleJob(alpha, JobFor("42", t + absl::Minutes(10)),
                                                      t));
  EXPECT_EQ(first.tenant, alpha.tenant);
  EXPECT_EQ(first.kind, kStep);
  EXPECT_EQ(first.subject, "42");
  EXPECT_EQ(first.ca, kCa);
  EXPECT_EQ(first.not_before, t + absl::Minutes(10));
  EXPECT_EQ(first.lease_owner, "");
  EXPECT_EQ(first.fencing_token, 0);
  EXPECT_EQ(first.attempts, 0);
  EXPECT_EQ(first.created_at, t);

  // Later: the same job, its time kept. Earlier: the same job, moved earlier.
  ASSERT_OK_AND_ASSIGN(Job later, store().ScheduleJob(alpha, JobFor("42", t + absl::Hours(1)), t));
  EXPECT_EQ(later.id, first.id);
  EXPECT_EQ(later.not_before, t + absl::Minutes(10));
  clock().Advance(absl::Seconds(1));
  ASSERT_OK_AND_ASSIGN(Job earlier, store().ScheduleJob(
                                        alpha, JobFor("42", t + absl::Minutes(5), ""), clock().Now()));
  EXPECT_EQ(earlier.id, first.id);
  EXPECT_EQ(earlier.not_before, t + absl::Minutes(5));
  EXPECT_EQ(earlier.ca, kCa);  // kept
  EXPECT_EQ(earlier.updated_at, clock().Now());

  // Another subject, kind or tenant is another job.
  ASSERT_OK_AND_ASSIGN(Job other_subject, store().ScheduleJob(alpha, JobFor("43", t), t));
  ASSERT_OK_AND_ASSIGN(Job other_kind, store().ScheduleJob(alpha, JobFor("42", t, "", "renew"), t));
  ASSERT_OK_AND_ASSIGN(Job other_tenant, store().ScheduleJob(beta, JobFor("42", t), t));
  EXPECT_EQ(std::set<JobId>({first.id, other_subject.id, other_kind.id, other_tenant.id}).size(),
            4u);

  ASSERT_OK_AND_ASSIGN(Job read, store().GetJob(alpha, first.id));
  EXPECT_EQ(read.not_before, t + absl::Minutes(5));
  EXPECT_THAT(store().GetJob(beta, first.id), StatusIs(kNotFound, "job"));

  EXPECT_THAT(store().ScheduleJob(alpha, JobFor("1", t, "", "Order"), t),
              StatusIs(kInvalidArgument, "job kind"));
  EXPECT_THAT(store().ScheduleJob(alpha, JobFor("", t), t), StatusIs(kInvalidArgument, "subject"));
  EXPECT_THAT(store().ScheduleJob(alpha, JobFor("a b", t), t),
              StatusIs(kInvalidArgument, "subject"));
  EXPECT_THAT(store().ScheduleJob(alpha, JobFor(std::string(kMaxJobSubject + 1, 'x'), t), t),
              StatusIs(kInvalidArgument, "subject"));
  EXPECT_THAT(store().ScheduleJob(alpha, JobFor("1", t, "https://ca.test/a dir"), t),
              StatusIs(kInvalidArgument, "CA"));
  EXPECT_THAT(store().ScheduleJob(Scope{alpha.tenant + beta.tenant + 100, {}}, JobFor("1", t), t),
              StatusIs(kNotFound));
  // Scheduling is bookkeeping, not a state change of the tenant's: not audited.
  EXPECT_THAT(AuditActions(alpha), ElementsAre("CreateTenant"));
}

// ---------------------------------------------------------------------------------------------
// Claims, leases, fencing

TEST_P(StoreConformanceTest, ClaimsRespectNotBeforeAndLeaseJobsWithFencingTokens) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const absl::Time t = clock().Now();
  ASSERT_OK_AND_ASSIGN(Job soon, store().ScheduleJob(alpha, JobFor("1", t + absl::Minutes(1)), t));
  ASSERT_OK_AND_ASSIGN(Job later, store().ScheduleJob(alpha, JobFor("2", t + absl::Hours(1)), t));
  ASSERT_OK(store().ScheduleJob(alpha, JobFor("3", t, "", "renew"), t).status());

  // Nothing due yet (and "renew" is not asked for); the next one is due in a minute.
  ASSERT_OK_AND_ASSIGN(JobClaimResult none, store().ClaimJobs(ClaimOf("r1", t, 10)));
  EXPECT_THAT(none.jobs, IsEmpty());
  EXPECT_EQ(none.next_not_before, t + absl::Minutes(1));
  EXPECT_FALSE(none.left_due);

  const absl::Time now = t + absl::Minutes(1);  // due at not_before exactly
  ASSERT_OK_AND_ASSIGN(JobClaimResult got,
                       store().ClaimJobs(ClaimOf("r1", now, 10, absl::Minutes(2))));
  ASSERT_THAT(got.jobs, SizeIs(1));
  const ClaimedJob& c = got.jobs[0];
  EXPECT_EQ(c.job.id, soon.id);
  EXPECT_EQ(c.job.lease_owner, "r1");
  EXPECT_EQ(c.job.lease_expires_at, now + absl::Minutes(2));
  EXPECT_EQ(c.job.fencing_token, 1);
  EXPECT_EQ(c.lease.tenant, alpha.tenant);
  EXPECT_EQ(c.lease.job, soon.id);
  EXPECT_EQ(c.lease.owner, "r1");
  EXPECT_EQ(c.lease.fencing_token, 1);
  EXPECT_EQ(c.lease.expires_at, now + absl::Minutes(2));
  EXPECT_EQ(got.next_not_before, later.not_before);
  EXPECT_FALSE(got.left_due);  // what was due is claimed

  // Leased: nobody else gets it while the lease is in force.
  ASSERT_OK_AND_ASSIGN(none, store().ClaimJobs(ClaimOf("r2", now + absl::Minutes(1), 10)));
  EXPECT_THAT(none.jobs, IsEmpty());
  // Another kind is claimed only by those who ask for it.
  JobClaim renew = ClaimOf("r2", now, 10);
  renew.kinds = {"renew"};
  ASSERT_OK_AND_ASSIGN(JobClaimResult renewals, store().ClaimJobs(renew));
  EXPECT_THAT(Claimed(renewals), ElementsAre(absl::StrCat(alpha.tenant, "/3")));

  // Done: the row goes.
  ASSERT_OK(store().CompleteJob(c.lease));
  EXPECT_THAT(store().GetJob(alpha, soon.id), StatusIs(kNotFound));

  JobClaim bad = ClaimOf("r1", now, 1);
  bad.owner = "";
  EXPECT_THAT(store().ClaimJobs(bad), StatusIs(kInvalidArgument));
  bad = ClaimOf("r1", now, 0);
  EXPECT_THAT(store().ClaimJobs(bad), StatusIs(kInvalidArgument, "max_jobs"));
  bad = ClaimOf("r1", now, 1);
  bad.kinds.clear();
  EXPECT_THAT(store().ClaimJobs(bad), StatusIs(kInvalidArgument, "kind"));
  bad = ClaimOf("r1", now, 1);
  bad.per_ca_limit = -1;
  EXPECT_THAT(store().ClaimJobs(bad), StatusIs(kInvalidArgument, "limits"));
}

TEST_P(StoreConformanceTest, AnExpiredLeaseIsClaimedAgainAndFencesTheOldOwnerOut) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const absl::Time t = clock().Now();
  ASSERT_OK_AND_ASSIGN(Job job, store().ScheduleJob(alpha, JobFor("7", t), t));
  ASSERT_OK_AND_ASSIGN(JobClaimResult first, store().ClaimJobs(ClaimOf("r1", t, 1)));
  ASSERT_THAT(first.jobs, SizeIs(1));
  const JobLease old_lease = first.jobs[0].lease;

  // r1 crashed: its lease ends, r2 takes the job over with the next token.
  const absl::Time later = t + absl::Minutes(1);
  ASSERT_OK_AND_ASSIGN(JobClaimResult second,
                       store().ClaimJobs(ClaimOf("r2", later, 1, absl::Minutes(5))));
  ASSERT_THAT(second.jobs, SizeIs(1));
  const JobLease lease = second.jobs[0].lease;
  EXPECT_EQ(lease.job, job.id);
  EXPECT_EQ(lease.owner, "r2");
  EXPECT_EQ(lease.fencing_token, 2);

  // r1 wakes up: every write it attempts is refused, and nothing changes.
  EXPECT_THAT(store().RenewJob(old_lease, absl::Minutes(1), later),
              StatusIs(kFailedPrecondition, "fencing token 1 is stale (current 2)"));
  EXPECT_THAT(store().RescheduleJob(old_lease, later, "late", later),
              StatusIs(kFailedPrecondition, "lost"));
  EXPECT_THAT(store().FailJob(old_lease, "late", later), StatusIs(kFailedPrecondition, "lost"));
  EXPECT_THAT(store().ReleaseJob(old_lease, later), StatusIs(kFailedPrecondition, "lost"));
  EXPECT_THAT(store().CompleteJob(old_lease), StatusIs(kFailedPrecondition, "lost"));
  ASSERT_OK_AND_ASSIGN(Job now, store().GetJob(alpha, job.id));
  EXPECT_EQ(now.lease_owner, "r2");
  EXPECT_EQ(now.fencing_token, 2);
  EXPECT_EQ(now.attempts, 0);
  EXPECT_EQ(now.last_error, "");

  // r2 renews (same token) past its first expiry: still nobody else's.
  ASSERT_OK_AND_ASSIGN(JobLease renewed,
                       store().RenewJob(lease, absl::Minutes(5), later + absl::Minutes(4)));
  EXPECT_EQ(renewed.fencing_token, 2);
  EXPECT_EQ(renewed.expires_at, later + absl::Minutes(9));
  ASSERT_OK_AND_ASSIGN(JobClaimResult none,
                       store().ClaimJobs(ClaimOf("r3", later + absl::Minutes(6), 1)));
  EXPECT_THAT(none.jobs, IsEmpty());

  // Released: claimable at once with the next token, attempts untouched.
  ASSERT_OK(store().ReleaseJob(renewed, later + absl::Minutes(6)));
  ASSERT_OK_AND_ASSIGN(JobClaimResult third,
                       store().ClaimJobs(ClaimOf("r3", later + absl::Minutes(6), 1)));
  ASSERT_THAT(third.jobs, SizeIs(1));
  EXPECT_EQ(third.jobs[0].lease.fencing_token, 3);
  EXPECT_EQ(third.jobs[0].job.attempts, 0);

  // Completed by r3: gone for everyone, r2 included.
  ASSERT_OK(store().CompleteJob(third.jobs[0].lease));
  EXPECT_THAT(store().CompleteJob(renewed), StatusIs(kFailedPrecondition, "gone"));
  EXPECT_THAT(store().CompleteJob(third.jobs[0].lease), StatusIs(kFailedPrecondition, "gone"));
  // A lease cannot reach another tenant's job.
  ASSERT_OK_AND_ASSIGN(Job other, store().ScheduleJob(alpha, JobFor("8", later), later));
  JobLease foreign{alpha.tenant + 1000, other.id, "r1", 0, later};
  EXPECT_THAT(store().ReleaseJob(foreign, later), StatusIs(kFailedPrecondition, "gone"));
  EXPECT_THAT(store().ReleaseJob(JobLease{}, later), StatusIs(kInvalidArgument));
}

// A replica starting again under the id of a run that died gets that run's jobs back in the
// queue at once (claimable with the next fencing token, which fences the dead run out), not at
// their leases' end; leases of other owners, leases it took after its start, expired leases
// and failed jobs stay as they are, and every replica is woken.
TEST_P(StoreConformanceTest, AReplicaStartingAgainReturnsTheJobsItsDeadRunHeld) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const absl::Time t = clock().Now();
  for (const char* subject : {"1", "2", "3", "4", "5"}) {
    ASSERT_OK(store().ScheduleJob(alpha, JobFor(subject, t), t).status());
  }
  ASSERT_OK(store().ScheduleJob(beta, JobFor("6", t), t).status());
  // The dead run's leases: two of alpha's and beta's one, then one that it failed.
  ASSERT_OK_AND_ASSIGN(JobClaimResult dead, store().ClaimJobs(ClaimOf("r1", t, 4)));
  ASSERT_THAT(dead.jobs, SizeIs(4));
  ASSERT_OK(store().FailJob(dead.jobs[3].lease, "given up", t));
  // Another replica's lease.
  ASSERT_OK_AND_ASSIGN(JobClaimResult other, store().ClaimJobs(ClaimOf("r2", t, 1)));
  ASSERT_THAT(other.jobs, SizeIs(1));
  // The new run starts 30 s later with one-minute leases, and takes a job itself.
  const absl::Time start = t + absl::Seconds(30);
  ASSERT_OK_AND_ASSIGN(JobClaimResult own, store().ClaimJobs(ClaimOf("r1", start, 1)));
  ASSERT_THAT(own.jobs, SizeIs(1));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> replica,
                       harness().Reopen(TestKeks(KekText("kek-a", 'a'))));
  WakeupRecorder seen;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> waker, replica->WatchJobs(seen.Wakeups()));
  ASSERT_TRUE(seen.WaitForScheduled(1)) << "deliveries never started";

  const absl::Time now = start + absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(int released, store().ReleaseJobsOf("r1", start + absl::Minutes(1), now));
  EXPECT_EQ(released, 3);
  EXPECT_TRUE(seen.WaitForScheduled(2)) << "the released jobs woke no one";
  for (int i = 0; i < 3; ++i) {
    const ClaimedJob& c = dead.jobs[i];
    ASSERT_OK_AND_ASSIGN(Job j, store().GetJob(Scope{c.lease.tenant, alpha.actor}, c.lease.job));
    EXPECT_EQ(j.lease_owner, "") << j.subject;
    EXPECT_FALSE(j.lease_expires_at.has_value()) << j.subject;
    EXPECT_EQ(j.attempts, 0) << j.subject;
  }
  // Claimable at once by anyone: the three released ones, nothing else.
  ASSERT_OK_AND_ASSIGN(JobClaimResult again, store().ClaimJobs(ClaimOf("r3", now, 10)));
  ASSERT_THAT(again.jobs, SizeIs(3));
  for (const ClaimedJob& c : again.jobs) EXPECT_EQ(c.lease.fencing_token, 2) << c.job.subject;
  // The dead run's writes are refused from then on.
  EXPECT_THAT(store().RenewJob(dead.jobs[0].lease, absl::Minutes(1), now),
              StatusIs(kFailedPrecondition, "stale"));
  // The others' lease, the new run's own and the failed job are untouched.
  ASSERT_OK_AND_ASSIGN(Job theirs, store().GetJob(alpha, other.jobs[0].lease.job));
  EXPECT_EQ(theirs.lease_owner, "r2");
  ASSERT_OK_AND_ASSIGN(Job mine, store().GetJob(alpha, own.jobs[0].lease.job));
  EXPECT_EQ(mine.lease_owner, "r1");
  EXPECT_EQ(mine.fencing_token, own.jobs[0].lease.fencing_token);
  ASSERT_OK_AND_ASSIGN(Job failed, store().GetJob(Scope{dead.jobs[3].lease.tenant, alpha.actor},
                                                  dead.jobs[3].lease.job));
  EXPECT_TRUE(failed.failed_at.has_value());

  // Nothing left to release: none, and no wake-up needed.
  ASSERT_OK_AND_ASSIGN(released, store().ReleaseJobsOf("r1", start + absl::Minutes(1), now));
  EXPECT_EQ(released, 0);
  // An expired lease is claimable anyway: not counted.
  ASSERT_OK_AND_ASSIGN(released,
                       store().ReleaseJobsOf("r2", t + absl::Hours(1), t + absl::Minutes(2)));
  EXPECT_EQ(released, 0);
  EXPECT_THAT(store().ReleaseJobsOf("", start, now), StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, RescheduleCountsFailedAttemptsAndFailKeepsTheJobAsFailed) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  absl::Time t = clock().Now();
  ASSERT_OK_AND_ASSIGN(Job job, store().ScheduleJob(alpha, JobFor("9", t), t));
  auto claim = [&](absl::Time now) -> JobLease {
    auto got = store().ClaimJobs(ClaimOf("r1", now, 1));
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || got->jobs.size() != 1) {
      ADD_FAILURE() << "nothing claimed";
      return JobLease{};
    }
    return got->jobs[0].lease;
  };

  // A failed attempt: due again at the given time, unleased, counted.
  ASSERT_OK(store().RescheduleJob(claim(t), t + absl::Seconds(30), "CA said 503", t));
  ASSERT_OK_AND_ASSIGN(Job failed_once, store().GetJob(alpha, job.id));
  EXPECT_EQ(failed_once.not_before, t + absl::Seconds(30));
  EXPECT_EQ(failed_once.lease_owner, "");
  EXPECT_EQ(failed_once.lease_expires_at, std::nullopt);
  EXPECT_EQ(failed_once.attempts, 1);
  EXPECT_EQ(failed_once.last_error, "CA said 503");
  ASSERT_OK_AND_ASSIGN(JobClaimResult none, store().ClaimJobs(ClaimOf("r1", t, 1)));
  EXPECT_THAT(none.jobs, IsEmpty());
  EXPECT_EQ(none.next_not_before, t + absl::Seconds(30));

  // Errors are kept clipped and as valid UTF-8.
  t += absl::Seconds(30);
  std::string long_error = "\xff";
  for (int i = 0; i < 600; ++i) long_error += "\xc3\xa9";  // 'é', two bytes each
  ASSERT_OK(store().RescheduleJob(claim(t), t, long_error, t));
  ASSERT_OK_AND_ASSIGN(Job clipped, store().GetJob(alpha, job.id));
  EXPECT_EQ(clipped.attempts, 2);
  // '?', 510 whole characters and "..." to mark the cut.
  EXPECT_EQ(clipped.last_error.size(), kMaxJobError);
  EXPECT_EQ(clipped.last_error.substr(0, 3), "?\xc3\xa9");
  EXPECT_EQ(clipped.last_error.substr(kMaxJobError - 5), "\xc3\xa9...");

  // A successful run with more to do later: the count starts again.
  ASSERT_OK(store().RescheduleJob(claim(t), t + absl::Minutes(1), "", t));
  ASSERT_OK_AND_ASSIGN(Job continued, store().GetJob(alpha, job.id));
  EXPECT_EQ(continued.attempts, 0);
  EXPECT_EQ(continued.last_error, "");
  EXPECT_EQ(continued.not_before, t + absl::Minutes(1));

  // Given up: kept as failed, never claimed again, and no longer open.
  t += absl::Minutes(1);
  const JobLease lease = claim(t);
  ASSERT_OK(store().FailJob(lease, "order is invalid", t));
  ASSERT_OK_AND_ASSIGN(Job failed, store().GetJob(alpha, job.id));
  EXPECT_EQ(failed.failed_at, t);
  EXPECT_EQ(failed.attempts, 1);
  EXPECT_EQ(failed.last_error, "order is invalid");
  EXPECT_EQ(failed.lease_owner, "");
  EXPECT_THAT(store().CompleteJob(lease), StatusIs(kFailedPrecondition, "has failed"));
  ASSERT_OK_AND_ASSIGN(none, store().ClaimJobs(ClaimOf("r1", t + absl::Hours(1), 10)));
  EXPECT_THAT(none.jobs, IsEmpty());
  ASSERT_OK_AND_ASSIGN(Job again, store().ScheduleJob(alpha, JobFor("9", t), t));
  EXPECT_NE(again.id, job.id);
  EXPECT_EQ(again.attempts, 0);
}

TEST_P(StoreConformanceTest, FindJobGivesTheOpenJobElseTheLastFailedOne) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  absl::Time t = clock().Now();
  EXPECT_THAT(store().FindJob(alpha, kStep, "9"), StatusIs(kNotFound));
  EXPECT_THAT(store().FindJob(alpha, "Bad Kind", "9"), StatusIs(kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(Job first, store().ScheduleJob(alpha, JobFor("9", t), t));
  ASSERT_OK_AND_ASSIGN(Job found, store().FindJob(alpha, kStep, "9"));
  EXPECT_EQ(found.id, first.id);
  EXPECT_EQ(found.failed_at, std::nullopt);
  // Another tenant's job of the same kind and subject is not found.
  EXPECT_THAT(store().FindJob(beta, kStep, "9"), StatusIs(kNotFound));
  EXPECT_THAT(store().FindJob(alpha, kStep, "10"), StatusIs(kNotFound));

  auto fail = [&](const std::string& why) {
    auto got = store().ClaimJobs(ClaimOf("r1", t, 1));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->jobs.size(), 1u);
    ASSERT_OK(store().FailJob(got->jobs[0].lease, why, t));
  };
  fail("gave up once");
  ASSERT_OK_AND_ASSIGN(found, store().FindJob(alpha, kStep, "9"));
  EXPECT_EQ(found.id, first.id);
  EXPECT_EQ(found.failed_at, t);
  EXPECT_EQ(found.last_error, "gave up once");

  // Scheduled anew: the open job wins over the failed one; failed again: the newer one.
  t += absl::Minutes(1);
  ASSERT_OK_AND_ASSIGN(Job second, store().ScheduleJob(alpha, JobFor("9", t), t));
  ASSERT_OK_AND_ASSIGN(found, store().FindJob(alpha, kStep, "9"));
  EXPECT_EQ(found.id, second.id);
  EXPECT_EQ(found.failed_at, std::nullopt);
  fail("gave up twice");
  ASSERT_OK_AND_ASSIGN(found, store().FindJob(alpha, kStep, "9"));
  EXPECT_EQ(found.id, second.id);
  EXPECT_EQ(found.last_error, "gave up twice");
}

// ---------------------------------------------------------------------------------------------
// Fairness and bounds

TEST_P(StoreConformanceTest, OneTenantsThousandDueJobsDoNotDelayAnothersOne) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const absl::Time t = clock().Now();
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK(store().ScheduleJob(alpha, JobFor(absl::StrCat(i), t - absl::Hours(1)), t).status());
  }
  ASSERT_OK(store().ScheduleJob(beta, JobFor("b", t), t).status());  // due last
  const std::string b = absl::StrCat(beta.tenant, "/b");
  const std::string a = absl::StrCat(alpha.tenant, "/");

  // In the first batch: every tenant's first turn comes before anyone's second.
  ASSERT_OK_AND_ASSIGN(JobClaimResult batch, store().ClaimJobs(ClaimOf("r1", t, 4)));
  EXPECT_THAT(Claimed(batch), ElementsAre(a + "0", b, a + "1", a + "2"));
  EXPECT_TRUE(batch.left_due);  // the batch was full

  // One job per claim: the tenant served longest ago goes first, so alpha's backlog costs
  // beta one turn, not a thousand.
  ASSERT_OK(store().ScheduleJob(beta, JobFor("c", t), t).status());
  const std::string c = absl::StrCat(beta.tenant, "/c");
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(JobClaimResult one, store().ClaimJobs(ClaimOf("r1", t, 1)));
    ASSERT_THAT(one.jobs, SizeIs(1));
    order.push_back(Claimed(one)[0]);
  }
  // The batch served both tenants at once: the older job goes first; then beta, now served
  // longest ago, goes before alpha's next.
  EXPECT_THAT(order, ElementsAre(a + "3", c, a + "4"));
}

TEST_P(StoreConformanceTest, PerTenantBoundsCountEveryOwnersLeases) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const absl::Time t = clock().Now();
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK(store().ScheduleJob(alpha, JobFor(absl::StrCat("a", i), t + absl::Seconds(i)), t)
                  .status());
    ASSERT_OK(store().ScheduleJob(beta, JobFor(absl::StrCat("b", i), t + absl::Seconds(i)), t)
                  .status());
  }
  const absl::Time now = t + absl::Minutes(1);
  JobClaim claim = ClaimOf("r1", now, 10);
  claim.per_tenant_limit = 2;
  ASSERT_OK_AND_ASSIGN(JobClaimResult first, store().ClaimJobs(claim));
  EXPECT_THAT(first.jobs, SizeIs(4));
  EXPECT_TRUE(first.left_due);  // held back by the bound: a claim after a lease ends finds more
  // Another replica: both tenants are at their bound.
  claim.owner = "r2";
  ASSERT_OK_AND_ASSIGN(JobClaimResult none, store().ClaimJobs(claim));
  EXPECT_THAT(none.jobs, IsEmpty());
  EXPECT_TRUE(none.left_due);
  // One of alpha's ends: alpha may have one more.
  for (const ClaimedJob& c : first.jobs) {
    if (c.job.tenant == alpha.tenant) {
      ASSERT_OK(store().CompleteJob(c.lease));
      break;
    }
  }
  ASSERT_OK_AND_ASSIGN(JobClaimResult one_more, store().ClaimJobs(claim));
  EXPECT_THAT(Claimed(one_more), ElementsAre(absl::StrCat(alpha.tenant, "/a2")));
  // Expired leases count no more: the crashed owners' jobs and the rest are claimable.
  claim.now = now + absl::Minutes(1);
  claim.max_jobs = 100;
  ASSERT_OK_AND_ASSIGN(JobClaimResult after, store().ClaimJobs(claim));
  EXPECT_THAT(after.jobs, SizeIs(4));
  EXPECT_TRUE(after.left_due);  // three more, held back by the bound again
}

TEST_P(StoreConformanceTest, PerCaBoundsSpanTenantsAndSkipJobsWithoutACa) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const Scope gamma = ScopeOf(MakeTenant("gamma"));
  const absl::Time t = clock().Now();
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(store().ScheduleJob(alpha, JobFor(absl::StrCat("a", i), t + absl::Seconds(1 + i)),
                                  t)
                  .status());
    ASSERT_OK(store().ScheduleJob(beta, JobFor(absl::StrCat("b", i), t + absl::Seconds(10 + i)), t)
                  .status());
    ASSERT_OK(store().ScheduleJob(
                  gamma, JobFor(absl::StrCat("g", i), t + absl::Seconds(20 + i), ""), t)
                  .status());
  }
  ASSERT_OK(store().ScheduleJob(gamma, JobFor("other-ca", t, "https://other.test/dir"), t)
                .status());
  const absl::Time now = t + absl::Minutes(1);
  JobClaim claim = ClaimOf("r1", now, 6);
  claim.per_ca_limit = 3;
  ASSERT_OK_AND_ASSIGN(JobClaimResult first, store().ClaimJobs(claim));
  const std::string a = absl::StrCat(alpha.tenant, "/"), b = absl::StrCat(beta.tenant, "/"),
                    g = absl::StrCat(gamma.tenant, "/");
  // Turn 1: gamma's other-CA job (due first), alpha's, beta's; turn 2: alpha's a1 is the third
  // on ca.test, beta's b1 would be a fourth; gamma's g0 has no CA.
  EXPECT_THAT(Claimed(first), ElementsAre(g + "other-ca", a + "a0", b + "b0", a + "a1", g + "g0",
                                          g + "g1"));
  claim.owner = "r2";
  claim.max_jobs = 100;
  ASSERT_OK_AND_ASSIGN(JobClaimResult rest, store().ClaimJobs(claim));
  EXPECT_THAT(Claimed(rest), ElementsAre(g + "g2"));  // ca.test is full, for r2 too
}

TEST_P(StoreConformanceTest, ConcurrentClaimersNeverGetTheSameJob) {
  std::vector<Scope> tenants = {ScopeOf(MakeTenant("alpha")), ScopeOf(MakeTenant("beta")),
                                ScopeOf(MakeTenant("gamma"))};
  const absl::Time t = clock().Now();
  constexpr int kJobs = 60;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_OK(store().ScheduleJob(tenants[i % 3], JobFor(absl::StrCat(i), t), t).status());
  }
  absl::Mutex mu;
  std::vector<JobId> claimed;
  std::vector<std::thread> claimers;
  for (int c = 0; c < 4; ++c) {
    claimers.emplace_back([&, c] {
      for (int round = 0; round < kJobs; ++round) {
        auto got = store().ClaimJobs(ClaimOf(absl::StrCat("replica-", c), t, 3, absl::Hours(1)));
        ASSERT_TRUE(got.ok()) << got.status();
        if (got->jobs.empty()) break;
        absl::MutexLock lock(&mu);
        for (const ClaimedJob& j : got->jobs) {
          EXPECT_EQ(j.lease.fencing_token, 1);
          claimed.push_back(j.job.id);
        }
      }
    });
  }
  for (std::thread& th : claimers) th.join();
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kJobs));  // no job twice
  EXPECT_EQ(std::set<JobId>(claimed.begin(), claimed.end()).size(),
            static_cast<size_t>(kJobs));  // and none left out
}

TEST_P(StoreConformanceTest, DisabledTenantsJobsAreNeitherClaimedNorCountedDue) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const absl::Time t = clock().Now();
  ASSERT_OK(store().ScheduleJob(alpha, JobFor("1", t), t).status());
  ASSERT_OK(store().ScheduleJob(alpha, JobFor("2", t, "", "renew"), t).status());
  ASSERT_OK(store().ScheduleJob(beta, JobFor("3", t), t).status());
  ASSERT_OK(store().ScheduleJob(beta, JobFor("4", t + absl::Hours(1)), t).status());
  ASSERT_OK_AND_ASSIGN(std::vector<DueJobCount> due, store().CountDueJobs(t));
  ASSERT_THAT(due, SizeIs(2));
  EXPECT_EQ(due[0].kind, kStep);
  EXPECT_EQ(due[0].due, 2);
  EXPECT_EQ(due[1].kind, "renew");
  EXPECT_EQ(due[1].due, 1);

  ASSERT_OK(store().DisableTenant(beta));
  ASSERT_OK_AND_ASSIGN(due, store().CountDueJobs(t));
  ASSERT_THAT(due, SizeIs(2));
  EXPECT_EQ(due[0].due, 1);
  ASSERT_OK_AND_ASSIGN(JobClaimResult got, store().ClaimJobs(ClaimOf("r1", t, 10)));
  EXPECT_THAT(Claimed(got), ElementsAre(absl::StrCat(alpha.tenant, "/1")));
  EXPECT_EQ(got.next_not_before, std::nullopt);  // beta's later job does not count either
  ASSERT_OK_AND_ASSIGN(due, store().CountDueJobs(t));
  ASSERT_THAT(due, SizeIs(1));  // leased jobs are not due
  EXPECT_EQ(due[0].kind, "renew");
}

// ---------------------------------------------------------------------------------------------
// Wake-ups

TEST_P(StoreConformanceTest, WakeUpsReachEveryReplicasWaker) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  // Another replica over the same data watches; this one writes.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> replica,
                       harness().Reopen(TestKeks(KekText("kek-a", 'a'))));
  WakeupRecorder seen;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> waker, replica->WatchJobs(seen.Wakeups()));
  ASSERT_TRUE(seen.WaitForScheduled(1)) << "deliveries never started";
  // As deliveries start, waiters hear that a job's end may have passed unheard (as after a
  // listener's reconnection): they look again.
  EXPECT_EQ(seen.missed(), 1);

  const absl::Time t = clock().Now();
  ASSERT_OK(store().ScheduleJob(alpha, JobFor("1", t), t).status());
  EXPECT_TRUE(seen.WaitForScheduled(2)) << "scheduling woke no one";
  ASSERT_OK(store().ScheduleJob(alpha, JobFor("2", t), t).status());
  ASSERT_OK_AND_ASSIGN(JobClaimResult got, store().ClaimJobs(ClaimOf("r1", t, 2)));
  ASSERT_THAT(got.jobs, SizeIs(2));
  ASSERT_OK(store().CompleteJob(got.jobs[0].lease));
  ASSERT_OK(store().FailJob(got.jobs[1].lease, "no", t));
  ASSERT_OK(store().AnnounceJobNotice(JobNotice{alpha.tenant, "order", "77", false}));
  const std::string tenant = absl::StrCat(alpha.tenant);
  EXPECT_THAT(seen.WaitForNotices(3),
              ElementsAre(absl::StrCat(tenant, " order_step ", got.jobs[0].job.subject, " done"),
                          absl::StrCat(tenant, " order_step ", got.jobs[1].job.subject, " failed"),
                          absl::StrCat(tenant, " order 77 done")));
  EXPECT_THAT(store().AnnounceJobNotice(JobNotice{alpha.tenant, "order", "a b", false}),
              StatusIs(kInvalidArgument));

  // Gone: no more deliveries (a last schedule, then a notice that shows everything arrived).
  waker.reset();
  const int before = seen.scheduled();
  ASSERT_OK(store().ScheduleJob(alpha, JobFor("3", t), t).status());
  WakeupRecorder later;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> second, replica->WatchJobs(later.Wakeups()));
  ASSERT_TRUE(later.WaitForScheduled(1));
  ASSERT_OK(store().AnnounceJobNotice(JobNotice{alpha.tenant, "order", "78", false}));
  EXPECT_THAT(later.WaitForNotices(1), ElementsAre(absl::StrCat(tenant, " order 78 done")));
  EXPECT_EQ(seen.scheduled(), before);
}

// An order made with its material and its job released: no lease comes back, the job is due
// and unleased at once (the next claim's first lease, token 1), and every replica is woken.
TEST_P(StoreConformanceTest, AnOrdersJobMadeReleasedIsClaimableAtOnceAndWakesEveryReplica) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Account account = MakeAccount(alpha);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> replica,
                       harness().Reopen(TestKeks(KekText("kek-a", 'a'))));
  WakeupRecorder seen;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> waker, replica->WatchJobs(seen.Wakeups()));
  ASSERT_TRUE(seen.WaitForScheduled(1)) << "deliveries never started";

  NewOrder spec{account.id, {"a.test"}, "", "r1", absl::Minutes(1)};
  spec.job_kind = kStep;
  spec.job_ca = kCa;
  spec.job_released = true;
  // Only for an order with its CSR, run by a job.
  EXPECT_THAT(store().CreateOrJoinOrder(alpha, spec), StatusIs(kInvalidArgument, "job_released"));
  spec.csr_der = "csr";
  NewOrder no_job = spec;
  no_job.job_kind.clear();
  EXPECT_THAT(store().CreateOrJoinOrder(alpha, no_job), StatusIs(kInvalidArgument, "job_released"));

  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store().CreateOrJoinOrder(alpha, spec));
  EXPECT_TRUE(created.created);
  EXPECT_FALSE(created.lease.has_value());
  EXPECT_TRUE(seen.WaitForScheduled(2)) << "the released job woke no one";
  ASSERT_OK_AND_ASSIGN(JobClaimResult got, store().ClaimJobs(ClaimOf("r2", clock().Now(), 5)));
  ASSERT_THAT(got.jobs, SizeIs(1));
  EXPECT_EQ(got.jobs[0].job.subject, absl::StrCat(created.order.id));
  EXPECT_EQ(got.jobs[0].job.ca, kCa);
  EXPECT_EQ(got.jobs[0].lease.fencing_token, 1);
  // Joining it makes nothing new.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult joined, store().CreateOrJoinOrder(alpha, spec));
  EXPECT_FALSE(joined.created);
  EXPECT_EQ(joined.order.id, created.order.id);
  ASSERT_OK_AND_ASSIGN(JobClaimResult none, store().ClaimJobs(ClaimOf("r2", clock().Now(), 5)));
  EXPECT_THAT(none.jobs, IsEmpty());
}

// NewOrder::claim: the creator takes its order's job when a claim then would take it, and the
// bounds and the fairness of claims hold as if it had claimed.
TEST_P(StoreConformanceTest, AnOrdersCreatorClaimsItsJobOnlyWhenAClaimThenWouldTakeIt) {
  const Scope alpha = ScopeOf(MakeTenant("alpha"));
  const Scope beta = ScopeOf(MakeTenant("beta"));
  const Account a_account = MakeAccount(alpha);
  const Account b_account = MakeAccount(beta);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> replica,
                       harness().Reopen(TestKeks(KekText("kek-a", 'a'))));
  WakeupRecorder seen;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> waker, replica->WatchJobs(seen.Wakeups()));
  ASSERT_TRUE(seen.WaitForScheduled(1)) << "deliveries never started";

  auto order_spec = [&](const Account& account, const std::string& name) {
    NewOrder spec{account.id, {name}, "", "r1", absl::Minutes(1)};
    spec.job_kind = kStep;
    spec.job_ca = kCa;
    spec.csr_der = "csr";
    spec.job_released = true;
    JobClaim claim = ClaimOf("r1", clock().Now(), 1, absl::Minutes(2));
    claim.per_tenant_limit = 2;
    claim.per_ca_limit = 3;
    spec.claim = claim;
    return spec;
  };
  // Only with job_released, and a valid claim.
  NewOrder unreleased = order_spec(a_account, "x.test");
  unreleased.job_released = false;
  EXPECT_THAT(store().CreateOrJoinOrder(alpha, unreleased), StatusIs(kInvalidArgument, "claim"));
  NewOrder no_kinds = order_spec(a_account, "x.test");
  no_kinds.claim->kinds.clear();
  EXPECT_THAT(store().CreateOrJoinOrder(alpha, no_kinds), StatusIs(kInvalidArgument, "kind"));

  // Nothing waits and the bounds have room: taken, leased to the claimer, nobody woken.
  const int woken = seen.scheduled();
  ASSERT_OK_AND_ASSIGN(CreateOrderResult first,
                       store().CreateOrJoinOrder(alpha, order_spec(a_account, "a1.test")));
  ASSERT_TRUE(first.created);
  EXPECT_FALSE(first.lease.has_value());
  ASSERT_TRUE(first.claimed.has_value());
  EXPECT_EQ(first.claimed->job.subject, absl::StrCat(first.order.id));
  EXPECT_EQ(first.claimed->job.kind, kStep);
  EXPECT_EQ(first.claimed->job.ca, kCa);
  EXPECT_EQ(first.claimed->job.lease_owner, "r1");
  EXPECT_EQ(first.claimed->lease.owner, "r1");
  EXPECT_EQ(first.claimed->lease.fencing_token, 1);
  EXPECT_EQ(first.claimed->lease.expires_at, clock().Now() + absl::Minutes(2));
  // The lease is the job's: it renews, and nobody else claims the job.
  ASSERT_OK(store().RenewJob(first.claimed->lease, absl::Minutes(2), clock().Now()).status());
  ASSERT_OK_AND_ASSIGN(JobClaimResult none, store().ClaimJobs(ClaimOf("r2", clock().Now(), 5)));
  EXPECT_THAT(none.jobs, IsEmpty());

  // A second of alpha's: taken (alpha's bound is 2).
  ASSERT_OK_AND_ASSIGN(CreateOrderResult second,
                       store().CreateOrJoinOrder(alpha, order_spec(a_account, "a2.test")));
  EXPECT_TRUE(second.claimed.has_value());
  // A third: alpha is at its bound, so the job is made unleased and every replica woken.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult third,
                       store().CreateOrJoinOrder(alpha, order_spec(a_account, "a3.test")));
  ASSERT_TRUE(third.created);
  EXPECT_FALSE(third.claimed.has_value());
  EXPECT_FALSE(third.lease.has_value());
  EXPECT_TRUE(seen.WaitForScheduled(woken + 1)) << "the unclaimed job woke no one";
  // Wake-ups come in commit order: the two jobs taken before it woke no one.
  EXPECT_EQ(seen.scheduled(), woken + 1);
  // It waits (alpha's bound), so beta's new one is not taken either: the claims' fairness
  // decides which goes first, and beta's goes in the next claim.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult beta_first,
                       store().CreateOrJoinOrder(beta, order_spec(b_account, "b1.test")));
  EXPECT_FALSE(beta_first.claimed.has_value());
  JobClaim claim = ClaimOf("r2", clock().Now(), 5);
  claim.per_tenant_limit = 2;
  claim.per_ca_limit = 3;
  ASSERT_OK_AND_ASSIGN(JobClaimResult got, store().ClaimJobs(claim));
  EXPECT_THAT(Claimed(got), ElementsAre(absl::StrCat(beta.tenant, "/", beta_first.order.id)));
  EXPECT_TRUE(got.left_due);  // alpha's third, held by its bound
  // One of alpha's ends: a claim takes alpha's third, and the CA is at its bound again
  // (alpha's two, beta's one): beta's next is not taken.
  ASSERT_OK(store().CompleteJob(first.claimed->lease));
  ASSERT_OK_AND_ASSIGN(JobClaimResult third_claimed, store().ClaimJobs(claim));
  EXPECT_THAT(Claimed(third_claimed), ElementsAre(absl::StrCat(alpha.tenant, "/", third.order.id)));
  ASSERT_OK_AND_ASSIGN(CreateOrderResult beta_second,
                       store().CreateOrJoinOrder(beta, order_spec(b_account, "b2.test")));
  EXPECT_FALSE(beta_second.claimed.has_value());
  // Once the CA has room and nothing waits, a new one is taken again.
  ASSERT_OK(store().CompleteJob(got.jobs[0].lease));
  ASSERT_OK_AND_ASSIGN(JobClaimResult b2, store().ClaimJobs(claim));
  EXPECT_THAT(Claimed(b2), ElementsAre(absl::StrCat(beta.tenant, "/", beta_second.order.id)));
  ASSERT_THAT(b2.jobs, SizeIs(1));
  ASSERT_OK(store().CompleteJob(b2.jobs[0].lease));
  ASSERT_OK_AND_ASSIGN(CreateOrderResult beta_third,
                       store().CreateOrJoinOrder(beta, order_spec(b_account, "b3.test")));
  EXPECT_TRUE(beta_third.claimed.has_value());
}

}  // namespace
}  // namespace acmevault::storage::testing
