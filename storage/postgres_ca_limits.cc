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
  return InTenant("RecordCaHold", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
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

pg::Sql PostgresStore::CaHoldSql(const CaHoldKey& key, const std::vector<std::string>& ids,
                                 absl::Time now) {
  static const std::string select = absl::StrCat(
      "SELECT av_us(hold_until), problem FROM ca_holds WHERE account_id = $1 "
      "AND identifiers_hash = ",
      pg::IdentifiersHashOf(2), " AND request = $3 AND hold_until > av_ts($4)");
  return {select,
          {absl::StrCat(key.account), ArrayParam(ids), std::string(CaRequestName(key.request)),
           absl::StrCat(Micros(now))}};
}

std::optional<CaHold> PostgresStore::CaHoldIn(pqxx::dbtransaction& tx, const CaHoldKey& key,
                                              const std::vector<std::string>& ids, absl::Time now,
                                              const CaHoldRead* ahead) {
  pqxx::result read;
  if (ahead != nullptr && ahead->rows != nullptr && ahead->key.account == key.account &&
      ahead->key.request == key.request && ahead->ids == ids && ahead->now == now) {
    read = *ahead->rows;
  } else {
    read = std::move(pg::Together(tx, {CaHoldSql(key, ids, now)})[0]);
  }
  if (read.empty()) return std::nullopt;
  return CaHold{TimeOf(read[0][0]), read[0][1].as<std::string>()};
}

absl::StatusOr<CaHold> PostgresStore::GetCaHold(const Scope& scope, const CaHoldKey& key,
                                                absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key));
  return InTenant<CaHold>("GetCaHold", scope,
                          [&](pqxx::dbtransaction& tx) -> absl::StatusOr<CaHold> {
                            std::optional<CaHold> hold = CaHoldIn(tx, key, ids, now);
                            if (!hold.has_value())
                              return absl::NotFoundError("no hold from the CA");
                            return *std::move(hold);
                          });
}

namespace {

// The bucket's identifier-set hash from the text[] parameter `param`: the empty string for an
// account's bucket (the column's default), else av_identifiers_hash of the canonical set, as
// ca_holds keys it.
std::string BudgetHash(int param) {
  return absl::StrCat("CASE WHEN cardinality($", param, "::text[]) = 0 THEN '\\x'::bytea ELSE ",
                      pg::IdentifiersHashOf(param), " END");
}

CaBudgetTake TakeOf(const CaBudget& budget, bool taken, double tokens_left, absl::Time now) {
  CaBudgetTake take;
  take.taken = taken;
  take.tokens_left = tokens_left;
  if (!taken) take.next_token_at = rules::NextTokenAt(budget, tokens_left, now);
  return take;
}

}  // namespace

CaBudgetTake PostgresStore::TakeCaBudgetTokenIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                AccountId account, const CaBudget& budget,
                                                absl::Time now) {
  const double period_us = absl::ToDoubleMicroseconds(budget.period);
  // A tenant's bucket for an identifier set is no account's.
  if (!budget.identifiers.empty()) account = 0;
  // A new bucket starts full. Then one statement refills by the time since the last take
  // (never for time running backwards), caps at the capacity and takes a whole token if there
  // is one; the row lock orders concurrent takes of every replica.
  static const std::string insert = absl::StrCat(
      "INSERT INTO ca_budgets (tenant_id, account_id, budget, tokens, updated_at, "
      "identifiers_hash) VALUES ($1, $2, $3, $4, av_ts($5), ",
      BudgetHash(6), ") ON CONFLICT DO NOTHING");
  static const std::string take = absl::StrCat(
      "WITH b AS (SELECT tokens, updated_at, LEAST($3::float8, tokens + "
      "GREATEST(0, $5::bigint - av_us(updated_at)) * $3::float8 / $4::float8) AS refilled "
      "FROM ca_budgets "
      "WHERE account_id = $1 AND budget = $2 AND identifiers_hash = ",
      BudgetHash(6),
      " FOR UPDATE) "
      "UPDATE ca_budgets c SET tokens = CASE WHEN b.refilled >= 1 THEN b.refilled - 1 "
      "ELSE b.refilled END, updated_at = GREATEST(c.updated_at, av_ts($5)) FROM b "
      "WHERE c.account_id = $1 AND c.budget = $2 AND c.identifiers_hash = ",
      BudgetHash(6), " RETURNING b.refilled >= 1, c.tokens");
  pg::Exec0(tx, insert, scope.tenant, account, budget.name, budget.capacity, Micros(now),
            ArrayParam(budget.identifiers));
  pqxx::row r = pg::Exec1(tx, take, account, budget.name, budget.capacity, period_us, Micros(now),
                          ArrayParam(budget.identifiers));
  return TakeOf(budget, r[0].as<bool>(), r[1].as<double>(), now);
}

void PostgresStore::ReturnCaBudgetTokenIn(pqxx::dbtransaction& tx, AccountId account,
                                          const CaBudget& budget) {
  if (!budget.identifiers.empty()) account = 0;
  static const std::string give_back = absl::StrCat(
      "UPDATE ca_budgets SET tokens = LEAST($3::float8, tokens + 1) "
      "WHERE account_id = $1 AND budget = $2 AND identifiers_hash = ",
      BudgetHash(4));
  pg::Exec0(tx, give_back, account, budget.name, budget.capacity, ArrayParam(budget.identifiers));
}

absl::StatusOr<CaBudgetTake> PostgresStore::TakeCaBudgetToken(const Scope& scope,
                                                              AccountId account,
                                                              const CaBudget& budget,
                                                              absl::Time now) {
  ASSIGN_OR_RETURN(CaBudget valid, rules::ValidateCaBudget(budget));
  return InTenant<CaBudgetTake>("TakeCaBudgetToken", scope,
                                [&](pqxx::dbtransaction& tx) -> absl::StatusOr<CaBudgetTake> {
                                  return TakeCaBudgetTokenIn(tx, scope, account, valid, now);
                                });
}

absl::Status PostgresStore::ReturnCaBudgetToken(const Scope& scope, AccountId account,
                                                const CaBudget& budget) {
  ASSIGN_OR_RETURN(CaBudget valid, rules::ValidateCaBudget(budget));
  return InTenant("ReturnCaBudgetToken", scope, [&](pqxx::dbtransaction& tx) {
    ReturnCaBudgetTokenIn(tx, account, valid);
    return absl::OkStatus();
  });
}

absl::StatusOr<CaAdmission> PostgresStore::AdmitCaRequest(const Scope& scope, const CaHoldKey& key,
                                                          const std::vector<CaBudget>& budgets,
                                                          absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateCaHold(key));
  ASSIGN_OR_RETURN(std::vector<CaBudget> valid, rules::ValidateCaBudgets(budgets));
  return InTenant<CaAdmission>("AdmitCaRequest", scope,
                               [&](pqxx::dbtransaction& tx) -> absl::StatusOr<CaAdmission> {
                                 return AdmitCaRequestIn(tx, scope, key, ids, valid, now);
                               });
}

CaAdmission PostgresStore::AdmitCaRequestIn(pqxx::dbtransaction& tx, const Scope& scope,
                                            const CaHoldKey& key,
                                            const std::vector<std::string>& ids,
                                            const std::vector<CaBudget>& budgets, absl::Time now,
                                            const CaHoldRead* ahead) {
  CaAdmission out;
  out.hold = CaHoldIn(tx, key, ids, now, ahead);
  if (out.hold.has_value()) return out;
  for (size_t i = 0; i < budgets.size(); ++i) {
    out.take = TakeCaBudgetTokenIn(tx, scope, key.account, budgets[i], now);
    if (out.take->taken) continue;
    // All or none: the tokens taken before this one go back.
    out.short_budget = budgets[i].name;
    for (size_t j = 0; j < i; ++j) ReturnCaBudgetTokenIn(tx, key.account, budgets[j]);
    break;
  }
  return out;
}

absl::StatusOr<CaBudgetTake> PostgresStore::TakeCaDirectoryBudgetToken(
    absl::string_view directory_url, const CaBudget& budget, absl::Time now) {
  RETURN_IF_ERROR(rules::ValidateCaDirectoryBudget(directory_url, budget));
  const double period_us = absl::ToDoubleMicroseconds(budget.period);
  return AcrossTenants<CaBudgetTake>(
      "TakeCaDirectoryBudgetToken", [&](pqxx::dbtransaction& tx) -> absl::StatusOr<CaBudgetTake> {
        pqxx::row r = pg::Exec1(
            tx,
            "SELECT taken, tokens FROM av_take_directory_budget_token($1, $2, $3::float8, "
            "$4::float8, $5::bigint)",
            std::string(directory_url), budget.name, budget.capacity, period_us, Micros(now));
        return TakeOf(budget, r[0].as<bool>(), r[1].as<double>(), now);
      });
}

absl::Status PostgresStore::ReturnCaDirectoryBudgetToken(absl::string_view directory_url,
                                                         const CaBudget& budget) {
  RETURN_IF_ERROR(rules::ValidateCaDirectoryBudget(directory_url, budget));
  return AcrossTenants<bool>("ReturnCaDirectoryBudgetToken",
                             [&](pqxx::dbtransaction& tx) -> absl::StatusOr<bool> {
                               pg::Exec(tx,
                                        "SELECT av_return_directory_budget_token($1, $2, "
                                        "$3::float8)",
                                        std::string(directory_url), budget.name, budget.capacity);
                               return true;
                             })
      .status();
}

}  // namespace acmevault::storage
