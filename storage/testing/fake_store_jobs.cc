// FakeStore: the job table of the work engine (JobStore) and its in-process wake-ups. Claims
// follow av_claim_jobs (migration 0010) step by step: due jobs, per-tenant room, turns,
// round-robin order, per-CA room, the batch.
#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::NoSuch;
using fake::RequireTenant;
using fake::State;

fake::WakerSlots fake::Wakers(State& s) {
  fake::WakerSlots out;
  auto& wakers = s.job_wakers;
  wakers.erase(std::remove_if(wakers.begin(), wakers.end(),
                              [&](const std::weak_ptr<State::JobWakerSlot>& w) {
                                std::shared_ptr<State::JobWakerSlot> slot = w.lock();
                                if (slot == nullptr) return true;
                                out.push_back(std::move(slot));
                                return false;
                              }),
               wakers.end());
  return out;
}

void fake::WakeFinished(const WakerSlots& slots, const JobNotice& notice) {
  for (const auto& slot : slots) {
    absl::MutexLock lock(&slot->mu);
    if (slot->live && slot->wakeups.job_finished) slot->wakeups.job_finished(notice);
  }
}

JobNotice fake::DeleteLeasedJobLocked(State& s, const Job& job) {
  JobNotice notice{job.tenant, job.kind, job.subject, false};
  s.open_jobs.erase(std::make_tuple(job.tenant, job.kind, job.subject));
  s.jobs.erase(job.id);
  return notice;
}

void fake::WakeScheduled(const WakerSlots& slots) {
  for (const auto& slot : slots) {
    absl::MutexLock lock(&slot->mu);
    if (slot->live && slot->wakeups.jobs_scheduled) slot->wakeups.jobs_scheduled();
  }
}

namespace {

using Slots = fake::WakerSlots;
using fake::Wakers;
using fake::WakeFinished;
using fake::WakeScheduled;

void DeliverCertificatesChanged(const Slots& slots, TenantId tenant) {
  for (const auto& slot : slots) {
    absl::MutexLock lock(&slot->mu);
    if (slot->live && slot->wakeups.certificates_changed) {
      slot->wakeups.certificates_changed(tenant);
    }
  }
}

void DeliverRevocation(const Slots& slots, const Revocation& revocation) {
  for (const auto& slot : slots) {
    absl::MutexLock lock(&slot->mu);
    if (slot->live && slot->wakeups.identities_revoked) {
      slot->wakeups.identities_revoked(revocation);
    }
  }
}

class FakeJobWaker final : public JobWaker {
 public:
  explicit FakeJobWaker(std::shared_ptr<State::JobWakerSlot> slot) : slot_(std::move(slot)) {}
  ~FakeJobWaker() override {
    absl::MutexLock lock(&slot_->mu);
    slot_->live = false;
  }

 private:
  const std::shared_ptr<State::JobWakerSlot> slot_;
};

// The open job `lease` is for, if the lease is still current. A job of another tenant than the
// lease's is as good as gone (row-level security hides it in PostgreSQL).
absl::StatusOr<Job*> LeasedJob(State& s, const JobLease& lease)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  RETURN_IF_ERROR(rules::ValidateJobLease(lease));
  auto it = s.jobs.find(lease.job);
  if (it == s.jobs.end() || it->second.tenant != lease.tenant) return rules::JobGone(lease);
  RETURN_IF_ERROR(rules::CheckJobLease(it->second, lease));
  return &it->second;
}

bool Due(const Job& j, absl::Time now) {
  return !j.failed_at.has_value() && j.not_before <= now &&
         (!j.lease_expires_at.has_value() || *j.lease_expires_at <= now);
}

bool Leased(const Job& j, absl::Time now) {
  return !j.failed_at.has_value() && j.lease_expires_at.has_value() && *j.lease_expires_at > now;
}

void EndLease(Job& j) {
  j.lease_owner.clear();
  j.lease_expires_at.reset();
}

}  // namespace

bool fake::TakesNewJobLocked(State& s, TenantId tenant, const std::string& ca,
                             const JobClaim& claim) {
  const absl::Time now = TruncateToMicros(claim.now);
  if (s.tenants.at(tenant).disabled_at.has_value()) return false;
  const std::set<std::string> kinds(claim.kinds.begin(), claim.kinds.end());
  int64_t tenant_running = 0;
  int64_t ca_running = 0;
  for (const auto& [id, j] : s.jobs) {
    if (Due(j, now) && kinds.count(j.kind) > 0 && !s.tenants.at(j.tenant).disabled_at) {
      return false;  // a due job waits: the claims' fairness decides who goes first
    }
    if (Leased(j, now)) {
      if (j.tenant == tenant) ++tenant_running;
      if (j.ca == ca) ++ca_running;
    }
  }
  if (claim.per_tenant_limit > 0 && tenant_running >= claim.per_tenant_limit) return false;
  if (!ca.empty() && claim.per_ca_limit > 0 && ca_running >= claim.per_ca_limit) return false;
  s.job_turns[tenant] = s.next_job_turn++;
  return true;
}

absl::StatusOr<Job> FakeStore::ScheduleJob(const Scope& scope, const NewJob& job,
                                           absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateNewJob(job));
  now = TruncateToMicros(now);
  const absl::Time not_before = TruncateToMicros(job.not_before);
  State& s = *state_;
  Job out;
  Slots wakers;
  {
    fake::StoreLock lock(s);
    RETURN_IF_ERROR(RequireTenant(s, scope));
    const auto key = std::make_tuple(scope.tenant, job.kind, job.subject);
    auto existing = s.open_jobs.find(key);
    Job* open = existing == s.open_jobs.end() ? nullptr : &s.jobs.at(existing->second);
    if (open != nullptr) {
      if (not_before < open->not_before) {
        open->not_before = not_before;
        open->updated_at = now;
      }
    } else {
      Job j;
      j.id = s.next_id++;
      j.tenant = scope.tenant;
      j.kind = job.kind;
      j.subject = job.subject;
      j.ca = job.ca;
      j.not_before = not_before;
      j.created_at = now;
      j.updated_at = now;
      open = &s.jobs.emplace(j.id, j).first->second;
      s.open_jobs[key] = j.id;
    }
    out = *open;
    wakers = Wakers(s);
  }
  WakeScheduled(wakers);
  return out;
}

absl::StatusOr<Job> FakeStore::GetJob(const Scope& scope, JobId id) {
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.jobs.find(id);
  if (it == s.jobs.end() || it->second.tenant != scope.tenant) return NoSuch("job", id);
  return it->second;
}

absl::StatusOr<Job> FakeStore::FindJob(const Scope& scope, absl::string_view kind,
                                       absl::string_view subject) {
  RETURN_IF_ERROR(rules::ValidateNewJob(NewJob{std::string(kind), std::string(subject), "", {}}));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  const Job* found = nullptr;
  for (const auto& [id, job] : s.jobs) {  // by id
    if (job.tenant != scope.tenant || job.kind != kind || job.subject != subject) continue;
    found = &job;  // the newest failed one so far
    if (!job.failed_at.has_value()) break;  // the open one
  }
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrCat("no ", kind, " job for ", subject));
  }
  return *found;
}

absl::StatusOr<JobClaimResult> FakeStore::ClaimJobs(const JobClaim& claim) {
  RETURN_IF_ERROR(rules::ValidateJobClaim(claim));
  const absl::Time now = TruncateToMicros(claim.now);
  const absl::Time until = TruncateToMicros(claim.now + claim.lease_duration);
  const std::set<std::string> kinds(claim.kinds.begin(), claim.kinds.end());
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto claimable_tenant = [&](TenantId t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    return !s.tenants.at(t).disabled_at.has_value();
  };

  // Leases in force, per tenant and per CA; each tenant's due jobs by (not_before, id).
  std::map<TenantId, int64_t> tenant_running;
  std::map<std::string, int64_t> ca_running;
  std::map<TenantId, std::vector<std::pair<absl::Time, JobId>>> due;
  for (const auto& [id, j] : s.jobs) {
    if (Leased(j, now)) {
      ++tenant_running[j.tenant];
      ++ca_running[j.ca];
    }
    if (Due(j, now) && kinds.count(j.kind) > 0 && claimable_tenant(j.tenant)) {
      due[j.tenant].emplace_back(j.not_before, id);
    }
  }
  // Candidates, at most max_jobs and the tenant's room each, ordered round-robin: (turn, when
  // the tenant was last served, not_before, id).
  using Candidate = std::tuple<int64_t, int64_t, absl::Time, JobId>;
  std::vector<Candidate> candidates;
  for (auto& [tenant, jobs] : due) {
    std::sort(jobs.begin(), jobs.end());
    int64_t room = claim.per_tenant_limit > 0 ? claim.per_tenant_limit - tenant_running[tenant]
                                              : claim.max_jobs;
    room = std::min<int64_t>(room, claim.max_jobs);
    auto served = s.job_turns.find(tenant);
    for (int64_t turn = 1; turn <= room && turn <= static_cast<int64_t>(jobs.size()); ++turn) {
      const auto& [not_before, id] = jobs[turn - 1];
      candidates.emplace_back(turn, served == s.job_turns.end() ? 0 : served->second, not_before,
                              id);
    }
  }
  std::sort(candidates.begin(), candidates.end());
  // Per-CA room, in that order, then the batch.
  JobClaimResult out;
  std::set<TenantId> served_now;
  for (const Candidate& c : candidates) {
    if (static_cast<int>(out.jobs.size()) == claim.max_jobs) break;
    Job& j = s.jobs.at(std::get<3>(c));
    if (!j.ca.empty() && claim.per_ca_limit > 0) {
      if (ca_running[j.ca] >= claim.per_ca_limit) continue;
      ++ca_running[j.ca];
    }
    j.lease_owner = claim.owner;
    j.lease_expires_at = until;
    j.fencing_token += 1;
    j.updated_at = now;
    served_now.insert(j.tenant);
    out.jobs.push_back(
        ClaimedJob{j, JobLease{j.tenant, j.id, claim.owner, j.fencing_token, until}});
  }
  if (!served_now.empty()) {
    const int64_t turn = s.next_job_turn++;
    for (TenantId t : served_now) s.job_turns[t] = turn;
  }
  for (const auto& [id, j] : s.jobs) {
    if (!j.failed_at.has_value() && j.not_before > now && j.lease_owner.empty() &&
        kinds.count(j.kind) > 0 && claimable_tenant(j.tenant) &&
        (!out.next_not_before.has_value() || j.not_before < *out.next_not_before)) {
      out.next_not_before = j.not_before;
    }
    if (Due(j, now) && kinds.count(j.kind) > 0 && claimable_tenant(j.tenant)) out.left_due = true;
  }
  return out;
}

absl::StatusOr<JobLease> FakeStore::RenewJob(const JobLease& lease,
                                             absl::Duration lease_duration, absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(lease.owner, lease_duration));
  now = TruncateToMicros(now);
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Job * j, LeasedJob(s, lease));
  JobLease out = lease;
  out.expires_at = TruncateToMicros(now + lease_duration);
  j->lease_owner = lease.owner;
  j->lease_expires_at = out.expires_at;
  j->updated_at = now;
  return out;
}

absl::Status FakeStore::CompleteJob(const JobLease& lease) {
  State& s = *state_;
  JobNotice notice;
  Slots wakers;
  {
    fake::StoreLock lock(s);
    ASSIGN_OR_RETURN(Job * j, LeasedJob(s, lease));
    notice = fake::DeleteLeasedJobLocked(s, *j);
    wakers = Wakers(s);
  }
  WakeFinished(wakers, notice);
  return absl::OkStatus();
}

absl::Status FakeStore::RescheduleJob(const JobLease& lease, absl::Time at,
                                      absl::string_view error, absl::Time now) {
  now = TruncateToMicros(now);
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Job * j, LeasedJob(s, lease));
  EndLease(*j);
  j->not_before = TruncateToMicros(at);
  j->attempts = error.empty() ? 0 : j->attempts + 1;
  j->last_error = rules::ClipJobError(error);
  j->updated_at = now;
  return absl::OkStatus();
}

absl::Status FakeStore::FailJob(const JobLease& lease, absl::string_view error, absl::Time now) {
  now = TruncateToMicros(now);
  State& s = *state_;
  JobNotice notice;
  Slots wakers;
  {
    fake::StoreLock lock(s);
    ASSIGN_OR_RETURN(Job * j, LeasedJob(s, lease));
    EndLease(*j);
    j->failed_at = now;
    j->attempts += 1;
    j->last_error = rules::ClipJobError(error);
    j->updated_at = now;
    notice = JobNotice{j->tenant, j->kind, j->subject, true};
    s.open_jobs.erase(std::make_tuple(j->tenant, j->kind, j->subject));
    wakers = Wakers(s);
  }
  WakeFinished(wakers, notice);
  return absl::OkStatus();
}

absl::Status FakeStore::ReleaseJob(const JobLease& lease, absl::Time now) {
  now = TruncateToMicros(now);
  State& s = *state_;
  Slots wakers;
  {
    fake::StoreLock lock(s);
    ASSIGN_OR_RETURN(Job * j, LeasedJob(s, lease));
    EndLease(*j);
    j->updated_at = now;
    wakers = Wakers(s);
  }
  WakeScheduled(wakers);
  return absl::OkStatus();
}

absl::StatusOr<int> FakeStore::ReleaseJobsOf(absl::string_view owner, absl::Time ending_before,
                                             absl::Time now) {
  if (owner.empty()) return absl::InvalidArgumentError("lease owner is empty");
  now = TruncateToMicros(now);
  ending_before = TruncateToMicros(ending_before);
  State& s = *state_;
  Slots wakers;
  int released = 0;
  {
    fake::StoreLock lock(s);
    for (auto& [id, j] : s.jobs) {
      if (j.lease_owner == owner && Leased(j, now) && *j.lease_expires_at < ending_before) {
        EndLease(j);
        j.updated_at = now;
        ++released;
      }
    }
    if (released > 0) wakers = Wakers(s);
  }
  if (released > 0) WakeScheduled(wakers);
  return released;
}

absl::StatusOr<std::vector<DueJobCount>> FakeStore::CountDueJobs(absl::Time now) {
  now = TruncateToMicros(now);
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  std::map<std::string, int64_t> due;
  for (const auto& [id, j] : s.jobs) {
    if (Due(j, now) && !s.tenants.at(j.tenant).disabled_at.has_value()) ++due[j.kind];
  }
  std::vector<DueJobCount> out;
  for (const auto& [kind, n] : due) out.push_back(DueJobCount{kind, n});
  return out;
}

absl::Status FakeStore::AnnounceJobNotice(const JobNotice& notice) {
  RETURN_IF_ERROR(rules::ValidateJobNotice(notice));
  Slots wakers;
  {
    fake::StoreLock lock(*state_);
    wakers = Wakers(*state_);
  }
  WakeFinished(wakers, notice);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<JobWaker>> FakeStore::WatchJobs(JobWakeups wakeups) {
  auto slot = std::make_shared<State::JobWakerSlot>();
  {
    absl::MutexLock lock(&slot->mu);
    slot->wakeups = std::move(wakeups);
  }
  {
    absl::MutexLock lock(&state_->mu);
    state_->job_wakers.push_back(slot);
  }
  // Deliveries have started, as a listener's connection does.
  WakeFinished({slot}, JobNotice{});  // first, as PostgresStore does
  WakeScheduled({slot});
  DeliverRevocation({slot}, Revocation{});
  DeliverCertificatesChanged({slot}, 0);
  return std::unique_ptr<JobWaker>(new FakeJobWaker(std::move(slot)));
}

void fake::WakeRevoked(State& s, const Revocation& revocation) {
  Slots wakers;
  {
    absl::MutexLock lock(&s.mu);
    wakers = Wakers(s);
  }
  DeliverRevocation(wakers, revocation);
}

void fake::WakeCertificatesChanged(State& s, TenantId tenant) {
  Slots wakers;
  {
    absl::MutexLock lock(&s.mu);
    wakers = Wakers(s);
  }
  DeliverCertificatesChanged(wakers, tenant);
}

}  // namespace acmevault::storage
