// PostgresStore: what keeps the fleet within a CA's limits (CaLimitStore; migration 0017,
// tables ca_holds and ca_budgets).
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::Micros;
using pg::TimeOf;

absl::Status PostgresStore::RecordCaHold(const Scope& scope, const CaHoldKey& key,
                                         absl::Time until, absl::string_view problem) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key, problem));
  const absl::Time now = Now();
  return InTenant("RecordCaHold", scope, [&](pqxx::work& tx) -> absl::Status {
    // The later time wins: two replicas told different Retry-After times both keep the longer.
    pg::Exec0(tx,
        "INSERT INTO ca_holds (tenant_id, account_id, identifiers_hash, request, hold_until, "
        "problem, updated_at) VALUES ($1, $2, av_identifiers_hash($3::text[]), $4, av_ts($5), "
        "$6, av_ts($7)) ON CONFLICT (tenant_id, account_id, identifiers_hash, request) DO UPDATE "
        "SET hold_until = GREATEST(ca_holds.hold_until, EXCLUDED.hold_until), "
        "problem = EXCLUDED.problem, updated_at = EXCLUDED.updated_at",
        scope.tenant, key.account, ArrayParam(ids), std::string(CaRequestName(key.request)),
        Micros(until), std::string(problem), Micros(now));
    return absl::OkStatus();
  });
}

std::optional<CaHold> PostgresStore::CaHoldIn(pqxx::work& tx, const CaHoldKey& key,
                                              const std::vector<std::string>& ids,
                                              absl::Time now) {
  pqxx::result r = pg::Exec(tx,
      "SELECT av_us(hold_until), problem FROM ca_holds WHERE account_id = $1 "
      "AND identifiers_hash = av_identifiers_hash($2::text[]) AND request = $3 "
      "AND hold_until > av_ts($4)",
      key.account, ArrayParam(ids), std::string(CaRequestName(key.request)), Micros(now));
  if (r.empty()) return std::nullopt;
  return CaHold{TimeOf(r[0][0]), r[0][1].as<std::string>()};
}

absl::StatusOr<CaHold> PostgresStore::GetCaHold(const Scope& scope, const CaHoldKey& key,
                                                absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key));
  return InTenant<CaHold>("GetCaHold", scope, [&](pqxx::work& tx) -> absl::StatusOr<CaHold> {
    std::optional<CaHold> hold = CaHoldIn(tx, key, ids, now);
    if (!hold.has_value()) return absl::NotFoundError("no hold from the CA");
    return *std::move(hold);
  });
}

CaBudgetTake PostgresStore::TakeCaBudgetTokenIn(pqxx::work& tx, const Scope& scope,
                                                AccountId account, const CaBudget& budget,
                                                absl::Time now) {
  const double per_us = budget.capacity / absl::ToDoubleMicroseconds(budget.period);
  // A new bucket starts full. Then one statement refills by the time since the last take
  // (never for time running backwards), caps at the capacity and takes a whole token if there
  // is one; the row lock orders concurrent takes of every replica.
  pg::Exec0(tx,
      "INSERT INTO ca_budgets (tenant_id, account_id, budget, tokens, updated_at) "
      "VALUES ($1, $2, $3, $4, av_ts($5)) ON CONFLICT DO NOTHING",
      scope.tenant, account, budget.name, budget.capacity, Micros(now));
  pqxx::row r = pg::Exec1(tx,
      "WITH b AS (SELECT tokens, updated_at, LEAST($3::float8, tokens + $4::float8 * "
      "GREATEST(0, $5::bigint - av_us(updated_at))) AS refilled FROM ca_budgets "
      "WHERE account_id = $1 AND budget = $2 FOR UPDATE) "
      "UPDATE ca_budgets c SET tokens = CASE WHEN b.refilled >= 1 THEN b.refilled - 1 "
      "ELSE b.refilled END, updated_at = GREATEST(c.updated_at, av_ts($5)) FROM b "
      "WHERE c.account_id = $1 AND c.budget = $2 RETURNING b.refilled >= 1, c.tokens",
      account, budget.name, budget.capacity, per_us, Micros(now));
  CaBudgetTake take;
  take.taken = r[0].as<bool>();
  take.tokens_left = r[1].as<double>();
  if (!take.taken) {
    take.next_token_at = now + absl::Microseconds(std::ceil((1 - take.tokens_left) / per_us));
  }
  return take;
}

absl::StatusOr<CaBudgetTake> PostgresStore::TakeCaBudgetToken(const Scope& scope,
                                                              AccountId account,
                                                              const CaBudget& budget,
                                                              absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateCaBudget(budget));
  return InTenant<CaBudgetTake>(
      "TakeCaBudgetToken", scope, [&](pqxx::work& tx) -> absl::StatusOr<CaBudgetTake> {
        return TakeCaBudgetTokenIn(tx, scope, account, budget, now);
      });
}

absl::Status PostgresStore::ReturnCaBudgetToken(const Scope& scope, AccountId account,
                                                const CaBudget& budget) {
  RETURN_IF_ERROR(rules::ValidateCaBudget(budget));
  return InTenant("ReturnCaBudgetToken", scope, [&](pqxx::work& tx) {
    pg::Exec0(tx,
              "UPDATE ca_budgets SET tokens = LEAST($3::float8, tokens + 1) "
              "WHERE account_id = $1 AND budget = $2",
              account, budget.name, budget.capacity);
    return absl::OkStatus();
  });
}

absl::StatusOr<CaAdmission> PostgresStore::AdmitCaRequest(const Scope& scope,
                                                          const CaHoldKey& key,
                                                          const std::optional<CaBudget>& budget,
                                                          absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key));
  if (budget.has_value()) RETURN_IF_ERROR(rules::ValidateCaBudget(*budget));
  return InTenant<CaAdmission>(
      "AdmitCaRequest", scope, [&](pqxx::work& tx) -> absl::StatusOr<CaAdmission> {
        CaAdmission out;
        out.hold = CaHoldIn(tx, key, ids, now);
        if (!out.hold.has_value() && budget.has_value()) {
          out.take = TakeCaBudgetTokenIn(tx, scope, key.account, *budget, now);
        }
        return out;
      });
}

}  // namespace acmevault::storage
