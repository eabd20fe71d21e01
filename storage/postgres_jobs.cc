// PostgresStore: the job table of the work engine (JobStore) and its wake-ups.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "storage/postgres_listener.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::GetById;
using pg::JobOf;
using pg::kJobs;
using pg::Micros;
using pg::OptionalTime;

namespace {

// Runs a lease call's write: `sql` names the job as $1 and the lease's fencing token as $2 in its
// WHERE (with "failed_at IS NULL"), takes `params` as $3 on, and returns the job's kind and
// subject when it touched the row. When it touched none the lease is lost, and the answer says
// why from the row as it is now. The statement itself is the fence: under READ COMMITTED a row
// changed by a concurrent claim is re-checked against the WHERE before it is written.
template <typename... Params>
absl::StatusOr<JobNotice> WriteLeasedJob(pqxx::dbtransaction& tx, const JobLease& lease,
                                         const std::string& sql, Params&&... params) {
  pqxx::result r =
      pg::Exec(tx, sql, lease.job, lease.fencing_token, std::forward<Params>(params)...);
  if (r.empty()) {
    absl::StatusOr<Job> now = GetById(tx, kJobs, lease.job);
    if (!now.ok()) return rules::JobGone(lease);
    RETURN_IF_ERROR(rules::CheckJobLease(*now, lease));
    return absl::AbortedError(absl::StrCat("job ", lease.job, " changed meanwhile; retry"));
  }
  return JobNotice{lease.tenant, r[0][0].as<std::string>(), r[0][1].as<std::string>(), false};
}

}  // namespace

// Every WatchJobs subscription of one store, served by one LISTEN connection on all the
// store's channels: PostgreSQL wakes each listening session of the database for every
// notification (on any channel), so a replica listens once, not once per subscriber (the
// engine, the token cache, the certificate cache): one connection, not three, and a third of
// the wake-ups (docs/benchmarks.md). The connection runs while any subscription lives.
class WatchHub {
 public:
  explicit WatchHub(std::string url) : url_(std::move(url)) {}

  // A subscription. Its callbacks run under its own mutex, so one at a time, and never once
  // `live` is false.
  struct Watcher {
    absl::Mutex mu;
    bool live ABSL_GUARDED_BY(mu) = true;
    JobWakeups wakeups ABSL_GUARDED_BY(mu);
  };

  absl::StatusOr<std::unique_ptr<JobWaker>> Watch(std::shared_ptr<WatchHub> self,
                                                  JobWakeups wakeups);

  // certificates_changed(tenant) to every live subscription that has it, from this thread.
  void CertificatesChanged(TenantId tenant) {
    for (const std::shared_ptr<Watcher>& w : Live()) {
      absl::MutexLock lock(&w->mu);
      if (w->live && w->wakeups.certificates_changed) w->wakeups.certificates_changed(tenant);
    }
  }

 private:
  class Waker;

  std::vector<std::shared_ptr<Watcher>> Live() {
    std::vector<std::shared_ptr<Watcher>> out;
    absl::MutexLock lock(&mu_);
    for (const std::weak_ptr<Watcher>& w : watchers_) {
      if (std::shared_ptr<Watcher> live = w.lock()) out.push_back(std::move(live));
    }
    return out;
  }

  // Whatever was sent while the listener was not connected is lost: look again at the jobs
  // waited for, look for work, forget what revocations and certificate writes may have made
  // stale.
  static void Missed(Watcher& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu) {
    if (!w.live) return;
    // job_finished first: a subscriber that saw jobs_scheduled has seen this too.
    if (w.wakeups.job_finished) w.wakeups.job_finished(JobNotice{});
    if (w.wakeups.jobs_scheduled) w.wakeups.jobs_scheduled();
    if (w.wakeups.identities_revoked) w.wakeups.identities_revoked(Revocation{});
    if (w.wakeups.certificates_changed) w.wakeups.certificates_changed(0);
  }

  void OnConnect() {
    {
      absl::MutexLock lock(&mu_);
      connected_ = true;
    }
    for (const std::shared_ptr<Watcher>& w : Live()) {
      absl::MutexLock lock(&w->mu);
      Missed(*w);
    }
  }

  void OnNotify(const std::string& channel, const std::string& payload) {
    std::optional<Revocation> revoked;
    TenantId tenant = 0;
    std::optional<JobNotice> notice;
    if (channel == kIdentitiesChannel) {
      revoked = DecodeRevocation(payload);
      if (!revoked.has_value()) return;
    } else if (channel == kCertificatesChannel) {
      if (!absl::SimpleAtoi(payload, &tenant) || tenant <= 0) return;
    } else if (channel == kJobNoticeChannel) {
      absl::StatusOr<JobNotice> decoded = rules::DecodeJobNotice(payload);
      if (!decoded.ok()) return;
      notice = *std::move(decoded);
    } else if (channel != kJobsChannel) {
      return;
    }
    for (const std::shared_ptr<Watcher>& w : Live()) {
      absl::MutexLock lock(&w->mu);
      if (!w->live) continue;
      const JobWakeups& to = w->wakeups;
      if (channel == kJobsChannel) {
        if (to.jobs_scheduled) to.jobs_scheduled();
      } else if (channel == kIdentitiesChannel) {
        if (to.identities_revoked) to.identities_revoked(*revoked);
      } else if (channel == kCertificatesChannel) {
        if (to.certificates_changed) to.certificates_changed(tenant);
      } else if (to.job_finished) {
        to.job_finished(*notice);
      }
    }
  }

  // A subscription ended: the listener stops with the last one.
  void Ended() {
    std::unique_ptr<PostgresListener> stopped;
    {
      absl::MutexLock lock(&mu_);
      std::erase_if(watchers_, [](const std::weak_ptr<Watcher>& w) { return w.expired(); });
      if (--subscriptions_ > 0) return;
      stopped = std::move(listener_);
      connected_ = false;
    }
    // Joins the listener's thread, outside mu_: a delivery under way may be waiting for it.
  }

  const std::string url_;
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<PostgresListener> listener_ ABSL_GUARDED_BY(mu_);
  int subscriptions_ ABSL_GUARDED_BY(mu_) = 0;  // live Wakers
  // The listener has connected since it started (it may have lost the connection since; it
  // then calls Missed again when it is back).
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
};

// What WatchJobs returns: its subscription, ended on destruction.
class WatchHub::Waker final : public JobWaker {
 public:
  Waker(std::shared_ptr<WatchHub> hub, std::shared_ptr<Watcher> watcher)
      : hub_(std::move(hub)), watcher_(std::move(watcher)) {}
  ~Waker() override {
    {
      absl::MutexLock lock(&watcher_->mu);
      watcher_->live = false;
    }
    watcher_.reset();
    hub_->Ended();
  }

 private:
  std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<Watcher> watcher_;
};

absl::StatusOr<std::unique_ptr<JobWaker>> WatchHub::Watch(std::shared_ptr<WatchHub> self,
                                                          JobWakeups wakeups) {
  if (!wakeups.jobs_scheduled && !wakeups.job_finished && !wakeups.identities_revoked &&
      !wakeups.certificates_changed) {
    return absl::InvalidArgumentError("WatchJobs: no wake-up to deliver");
  }
  auto watcher = std::make_shared<Watcher>();
  {
    absl::MutexLock lock(&watcher->mu);
    watcher->wakeups = std::move(wakeups);
  }
  bool connected = false;
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(watchers_, [](const std::weak_ptr<Watcher>& w) { return w.expired(); });
    if (listener_ == nullptr) {
      PostgresListenerOptions options;
      options.url = url_;
      options.channels = {kJobsChannel, kJobNoticeChannel, kIdentitiesChannel,
                          kCertificatesChannel};
      options.on_notify = [this](const std::string& channel, const std::string& payload) {
        OnNotify(channel, payload);
      };
      options.on_connect = [this] { OnConnect(); };
      ASSIGN_OR_RETURN(listener_, PostgresListener::Start(std::move(options)));
    }
    watchers_.push_back(watcher);
    ++subscriptions_;
    connected = connected_;
  }
  // Deliveries start when the listener connects (OnConnect), or now when it already has:
  // either way this subscription's first calls say so.
  if (connected) {
    absl::MutexLock lock(&watcher->mu);
    Missed(*watcher);
  }
  return std::unique_ptr<JobWaker>(new Waker(std::move(self), std::move(watcher)));
}

std::shared_ptr<WatchHub> PostgresStore::NewWatchHub(std::string url) {
  return std::make_shared<WatchHub>(std::move(url));
}

absl::Status PostgresStore::InJobTenant(absl::string_view op, const JobLease& lease,
                                        const PostgresPool::Body& body) {
  RETURN_IF_ERROR(rules::ValidateJobLease(lease));
  PostgresPool::TxOptions tx_options;
  tx_options.tenant = lease.tenant;
  return pool_->Run(op, tx_options, body);
}

absl::StatusOr<Job> PostgresStore::ScheduleJob(const Scope& scope, const NewJob& job,
                                               absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateNewJob(job));
  now = TruncateToMicros(now);
  const absl::Time not_before = TruncateToMicros(job.not_before);
  return InTenant<Job>("ScheduleJob", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Job> {
    Job out = JobOf(pg::Exec1(tx,
        absl::StrCat(
            "INSERT INTO jobs (tenant_id, kind, subject, ca, not_before, fencing_token, attempts, "
            "last_error, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, av_ts($5), 0, 0, '', av_ts($6), av_ts($6)) "
            "ON CONFLICT (tenant_id, kind, subject) WHERE failed_at IS NULL DO UPDATE SET "
            "not_before = LEAST(jobs.not_before, EXCLUDED.not_before), "
            "updated_at = CASE WHEN EXCLUDED.not_before < jobs.not_before "
            "THEN EXCLUDED.updated_at ELSE jobs.updated_at END "
            "RETURNING ",
            kJobs.rows.columns),
        scope.tenant, job.kind, job.subject, job.ca, Micros(not_before), Micros(now)));
    pg::Notify(tx, kJobsChannel, job.kind);
    return out;
  });
}

absl::StatusOr<Job> PostgresStore::GetJob(const Scope& scope, JobId id) {
  return InTenant<Job>("GetJob", scope,
                       [&](pqxx::dbtransaction& tx) { return GetById(tx, kJobs, id); });
}

absl::StatusOr<Job> PostgresStore::FindJob(const Scope& scope, absl::string_view kind,
                                           absl::string_view subject) {
  RETURN_IF_ERROR(rules::ValidateNewJob(NewJob{std::string(kind), std::string(subject), "", {}}));
  return InTenant<Job>("FindJob", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Job> {
    // jobs_by_subject (migration 0020): the open row first, else the newest failed one.
    pqxx::result r = pg::Exec(tx,
        absl::StrCat("SELECT ", kJobs.rows.columns,
                     " FROM jobs WHERE tenant_id = $1 AND kind = $2 AND subject = $3 "
                     "ORDER BY failed_at IS NULL DESC, id DESC LIMIT 1"),
        scope.tenant, std::string(kind), std::string(subject));
    if (r.empty()) {
      return absl::NotFoundError(absl::StrCat("no ", kind, " job for ", subject));
    }
    return JobOf(r[0]);
  });
}

absl::StatusOr<JobClaimResult> PostgresStore::ClaimJobs(const JobClaim& claim) {
  RETURN_IF_ERROR(rules::ValidateJobClaim(claim));
  const absl::Time now = TruncateToMicros(claim.now);
  const absl::Time until = TruncateToMicros(claim.now + claim.lease_duration);
  const std::string kinds = ArrayParam(claim.kinds);
  // One statement (migration 0029): the claimed rows in claim order, then one row without a job
  // that says whether due jobs were left and when something is due next, asked after the
  // claim (the jobs leased just now are no longer due). No transaction block: one round trip.
  // A connection lost after the statement ran (its answer never came) is run again, as in a
  // block a lost COMMIT was not: either way the jobs it leased are run by nobody until their
  // lease ends and a later claim takes them, with the next fencing token.
  return Statement<JobClaimResult>("ClaimJobs", [&](pqxx::nontransaction& tx) {
    JobClaimResult out;
    const int width = kJobs.rows.width;
    for (const pqxx::row& r : pg::Exec(
             tx,
             absl::StrCat("SELECT ", kJobs.rows.columns,
                          ", av_us(next_not_before), left_due "
                          "FROM (SELECT (c.claimed_job).*, c.claim_position, c.next_not_before, "
                          "c.left_due FROM av_claim_jobs_and_next($1, av_ts($2), av_ts($3), $4, "
                          "$5, $6, $7::text[]) c) AS claimed ORDER BY claim_position"),
             claim.owner, Micros(now), Micros(until), claim.max_jobs, claim.per_tenant_limit,
             claim.per_ca_limit, kinds)) {
      if (r[width + 1].is_null()) {
        Job job = JobOf(r);
        JobLease lease{job.tenant, job.id, job.lease_owner, job.fencing_token,
                       job.lease_expires_at.value_or(until)};
        out.jobs.push_back(ClaimedJob{std::move(job), std::move(lease)});
      } else {
        out.next_not_before = OptionalTime(r[width]);
        out.left_due = r[width + 1].as<bool>();
      }
    }
    return out;
  });
}

absl::StatusOr<JobLease> PostgresStore::RenewJob(const JobLease& lease,
                                                 absl::Duration lease_duration, absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(lease.owner, lease_duration));
  now = TruncateToMicros(now);
  JobLease out = lease;
  out.expires_at = TruncateToMicros(now + lease_duration);
  RETURN_IF_ERROR(InJobTenant("RenewJob", lease, [&](pqxx::dbtransaction& tx) {
    return WriteLeasedJob(tx, lease,
                          "UPDATE jobs SET lease_owner = $3, lease_expires_at = av_ts($4), "
                          "updated_at = av_ts($5) "
                          "WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL "
                          "RETURNING kind, subject",
                          lease.owner, Micros(out.expires_at), Micros(now))
        .status();
  }));
  return out;
}

absl::Status PostgresStore::CompleteJob(const JobLease& lease) {
  return InJobTenant("CompleteJob", lease, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(JobNotice notice,
                     WriteLeasedJob(tx, lease,
                                    "DELETE FROM jobs "
                                    "WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL "
                                    "RETURNING kind, subject"));
    pg::Notify(tx, kJobNoticeChannel, rules::EncodeJobNotice(notice));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::RescheduleJob(const JobLease& lease, absl::Time at,
                                          absl::string_view error, absl::Time now) {
  now = TruncateToMicros(now);
  return InJobTenant("RescheduleJob", lease, [&](pqxx::dbtransaction& tx) {
    return WriteLeasedJob(
               tx, lease,
               "UPDATE jobs SET not_before = av_ts($3), lease_owner = NULL, "
               "lease_expires_at = NULL, attempts = CASE WHEN $4 = '' THEN 0 ELSE attempts + 1 "
               "END, last_error = $4, updated_at = av_ts($5) "
               "WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL "
               "RETURNING kind, subject",
               Micros(TruncateToMicros(at)), rules::ClipJobError(error), Micros(now))
        .status();
  });
}

absl::Status PostgresStore::FailJob(const JobLease& lease, absl::string_view error,
                                    absl::Time now) {
  now = TruncateToMicros(now);
  return InJobTenant("FailJob", lease, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(
        JobNotice notice,
        WriteLeasedJob(tx, lease,
                       "UPDATE jobs SET failed_at = av_ts($3), lease_owner = NULL, "
                       "lease_expires_at = NULL, attempts = attempts + 1, last_error = $4, "
                       "updated_at = av_ts($3) "
                       "WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL "
                       "RETURNING kind, subject",
                       Micros(now), rules::ClipJobError(error)));
    notice.failed = true;
    pg::Notify(tx, kJobNoticeChannel, rules::EncodeJobNotice(notice));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::ReleaseJob(const JobLease& lease, absl::Time now) {
  now = TruncateToMicros(now);
  return InJobTenant("ReleaseJob", lease, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(JobNotice released,
                     WriteLeasedJob(tx, lease,
                                    "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, "
                                    "updated_at = av_ts($3) "
                                    "WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL "
                                    "RETURNING kind, subject",
                                    Micros(now)));
    // Claimable at once: any replica's engine may take it.
    pg::Notify(tx, kJobsChannel, released.kind);
    return absl::OkStatus();
  });
}

absl::StatusOr<int> PostgresStore::ReleaseJobsOf(absl::string_view owner, absl::Time ending_before,
                                                 absl::Time now) {
  if (owner.empty()) return absl::InvalidArgumentError("lease owner is empty");
  // One statement (migration 0035), its NOTIFY delivered when it commits.
  return Statement<int>("ReleaseJobsOf", [&](pqxx::nontransaction& tx) {
    return pg::Exec(tx, "SELECT av_release_jobs_of($1, av_ts($2), av_ts($3))", std::string(owner),
                    Micros(TruncateToMicros(ending_before)), Micros(TruncateToMicros(now)))[0][0]
        .as<int>();
  });
}

absl::StatusOr<std::vector<DueJobCount>> PostgresStore::CountDueJobs(absl::Time now) {
  return AcrossTenants<std::vector<DueJobCount>>("CountDueJobs", [&](pqxx::dbtransaction& tx) {
    std::vector<DueJobCount> out;
    for (const pqxx::row& r : pg::Exec(tx, "SELECT kind, due FROM av_jobs_due(av_ts($1))",
                                             Micros(TruncateToMicros(now)))) {
      out.push_back(DueJobCount{r[0].as<std::string>(), r[1].as<int64_t>()});
    }
    return out;
  });
}

absl::Status PostgresStore::AnnounceJobNotice(const JobNotice& notice) {
  RETURN_IF_ERROR(rules::ValidateJobNotice(notice));
  return pool_->Run("AnnounceJobNotice", {}, [&](pqxx::dbtransaction& tx) {
    pg::Notify(tx, kJobNoticeChannel, rules::EncodeJobNotice(notice));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<JobWaker>> PostgresStore::WatchJobs(JobWakeups wakeups) {
  return watch_hub_->Watch(watch_hub_, std::move(wakeups));
}

void PostgresStore::NotifyCertificatesChanged(pqxx::dbtransaction& tx, const Scope& scope) {
  pg::Notify(tx, kCertificatesChannel, absl::StrCat(scope.tenant));
}

void PostgresStore::CertificatesChangedHere(const Scope& scope) {
  watch_hub_->CertificatesChanged(scope.tenant);
}

}  // namespace acmevault::storage
