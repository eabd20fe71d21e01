// FakeStore: compromise response runs (CompromiseRunStore), as postgres_compromise_runs.cc.
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::Audit;
using fake::NoSuch;
using fake::RequireTenant;
using fake::State;

namespace {

absl::StatusOr<CompromiseRun*> FindRun(State& s, const Scope& scope, CompromiseRunId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.compromise_runs.find(id);
  if (it == s.compromise_runs.end() || it->second.tenant != scope.tenant) {
    return NoSuch("compromise run", id);
  }
  return &it->second;
}

}  // namespace

absl::StatusOr<CompromiseRun> FakeStore::StartCompromiseRun(const Scope& scope,
                                                            bool deactivate_account,
                                                            absl::Time expires_at) {
  const absl::Time now = Now();
  RETURN_IF_ERROR(rules::ValidateCompromiseRunExpiry(now, expires_at));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  CompromiseRun run{.id = s.next_id++,
                    .tenant = scope.tenant,
                    .deactivate_account = deactivate_account,
                    .started_at = now,
                    .expires_at = TruncateToMicros(expires_at)};
  s.compromise_runs[run.id] = run;
  Audit(s, scope, now, rules::CompromiseStartEvent(run));
  return run;
}

absl::StatusOr<CompromiseRun> FakeStore::GetCompromiseRun(const Scope& scope, CompromiseRunId run) {
  fake::StoreLock lock(*state_);
  ASSIGN_OR_RETURN(CompromiseRun * r, FindRun(*state_, scope, run));
  return *r;
}

absl::Status FakeStore::RecordCompromiseStep(const Scope& scope, CompromiseRunId run,
                                             absl::string_view step) {
  RETURN_IF_ERROR(rules::ValidateCompromiseStep(step));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(CompromiseRun * r, FindRun(s, scope, run));
  RETURN_IF_ERROR(rules::CheckCompromiseRunOpen(*r));
  if (!r->steps.emplace(std::string(step), now).second) return absl::OkStatus();
  Audit(s, scope, now, rules::CompromiseStepEvent(run, step));
  return absl::OkStatus();
}

absl::Status FakeStore::FinishCompromiseRun(const Scope& scope, CompromiseRunId run) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(CompromiseRun * r, FindRun(s, scope, run));
  RETURN_IF_ERROR(rules::CheckCompromiseRunOpen(*r));
  r->finished_at = now;
  Audit(s, scope, now, rules::CompromiseDoneEvent(run));
  return absl::OkStatus();
}

}  // namespace acmevault::storage
