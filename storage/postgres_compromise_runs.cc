// PostgresStore: compromise response runs (CompromiseRunStore; migration 0007, tables
// compromise_runs and compromise_run_steps).
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::CompromiseRunOf;
using pg::GetById;
using pg::kCompromiseRuns;
using pg::Lock;
using pg::Micros;
using pg::TimeOf;

namespace {

// The run `id` of the transaction's tenant with its finished steps.
absl::StatusOr<CompromiseRun> RunWithSteps(pqxx::dbtransaction& tx, CompromiseRunId id, Lock lock) {
  ASSIGN_OR_RETURN(CompromiseRun run, GetById(tx, kCompromiseRuns, id, lock));
  for (const pqxx::row& r : pg::Exec(tx,
           "SELECT step, av_us(finished_at) FROM compromise_run_steps WHERE run_id = $1", id)) {
    run.steps[r[0].as<std::string>()] = TimeOf(r[1]);
  }
  return run;
}

}  // namespace

absl::StatusOr<CompromiseRun> PostgresStore::StartCompromiseRun(const Scope& scope,
                                                                bool deactivate_account,
                                                                absl::Time expires_at) {
  const absl::Time now = Now();
  RETURN_IF_ERROR(rules::ValidateCompromiseRunExpiry(now, expires_at));
  return InTenant<CompromiseRun>(
      "StartCompromiseRun", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<CompromiseRun> {
        CompromiseRun run = CompromiseRunOf(pg::Exec1(tx,
            absl::StrCat("INSERT INTO compromise_runs (tenant_id, deactivate_account, "
                         "started_at, expires_at) VALUES ($1, $2, av_ts($3), av_ts($4)) "
                         "RETURNING ",
                         kCompromiseRuns.rows.columns),
            scope.tenant, deactivate_account, Micros(now), Micros(expires_at)));
        Audit(tx, scope, now, rules::CompromiseStartEvent(run));
        return run;
      });
}

absl::StatusOr<CompromiseRun> PostgresStore::GetCompromiseRun(const Scope& scope,
                                                              CompromiseRunId run) {
  return InTenant<CompromiseRun>("GetCompromiseRun", scope, [&](pqxx::dbtransaction& tx) {
    return RunWithSteps(tx, run, Lock::kNone);
  });
}

absl::Status PostgresStore::RecordCompromiseStep(const Scope& scope, CompromiseRunId run,
                                                 absl::string_view step) {
  RETURN_IF_ERROR(rules::ValidateCompromiseStep(step));
  const absl::Time now = Now();
  return InTenant("RecordCompromiseStep", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(CompromiseRun r, RunWithSteps(tx, run, Lock::kForUpdate));
    RETURN_IF_ERROR(rules::CheckCompromiseRunOpen(r));
    if (r.steps.contains(std::string(step))) return absl::OkStatus();
    pg::Exec0(tx,
        "INSERT INTO compromise_run_steps (tenant_id, run_id, step, finished_at) "
        "VALUES ($1, $2, $3, av_ts($4))",
        scope.tenant, run, std::string(step), Micros(now));
    Audit(tx, scope, now, rules::CompromiseStepEvent(run, step));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::FinishCompromiseRun(const Scope& scope, CompromiseRunId run) {
  const absl::Time now = Now();
  return InTenant("FinishCompromiseRun", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(CompromiseRun r, GetById(tx, kCompromiseRuns, run, Lock::kForUpdate));
    RETURN_IF_ERROR(rules::CheckCompromiseRunOpen(r));
    pg::Exec0(tx, "UPDATE compromise_runs SET finished_at = av_ts($2) WHERE id = $1", run,
                    Micros(now));
    Audit(tx, scope, now, rules::CompromiseDoneEvent(run));
    return absl::OkStatus();
  });
}

}  // namespace acmevault::storage
