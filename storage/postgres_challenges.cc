// PostgresStore: HTTP-01 challenge answers shared by every replica's responder (ChallengeStore).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::GetById;
using pg::kOrders;
using pg::Lock;
using pg::Micros;

namespace {

std::string TextOfRow(const pqxx::row& r) { return r[0].as<std::string>(); }

}  // namespace

pg::Sql PostgresStore::PutChallengeSql(const Scope& scope, absl::Time now, absl::string_view token,
                                       absl::string_view key_authorization) {
  return {
      "INSERT INTO challenges (token, tenant_id, key_authorization, created_at) "
      "VALUES ($1, $2, $3, av_ts($4)) ON CONFLICT (token) DO NOTHING RETURNING token",
      {std::string(token), absl::StrCat(scope.tenant), std::string(key_authorization),
       absl::StrCat(Micros(now))}};
}

absl::Status PostgresStore::PutChallengeAnswered(pqxx::dbtransaction& tx, const Scope& scope,
                                                 absl::Time now, absl::string_view token,
                                                 absl::string_view key_authorization,
                                                 const pqxx::result& inserted) {
  if (inserted.empty()) {
    // Taken: by this tenant with the same value (a retry), or otherwise.
    pqxx::result mine =
        pg::Exec(tx, "SELECT 1 FROM challenges WHERE token = $1 AND key_authorization = $2",
                       std::string(token), std::string(key_authorization));
    if (mine.empty()) return absl::AlreadyExistsError("challenge token is taken");
    return absl::OkStatus();
  }
  Audit(tx, scope, now, rules::SimpleEvent("PutChallenge", absl::StrCat("token ", token)));
  return absl::OkStatus();
}

absl::Status PostgresStore::PutChallengeIn(pqxx::dbtransaction& tx, const Scope& scope,
                                           absl::Time now, absl::string_view token,
                                           absl::string_view key_authorization) {
  return PutChallengeAnswered(
      tx, scope, now, token, key_authorization,
      pg::Together(tx, {PutChallengeSql(scope, now, token, key_authorization)})[0]);
}

absl::Status PostgresStore::PutChallenge(const Scope& scope, absl::string_view token,
                                         absl::string_view key_authorization) {
  RETURN_IF_ERROR(rules::ValidateChallengeToken(token));
  const absl::Time now = Now();
  return InTenant("PutChallenge", scope, [&](pqxx::dbtransaction& tx) {
    return PutChallengeIn(tx, scope, now, token, key_authorization);
  });
}

absl::StatusOr<std::string> PostgresStore::LookupChallenge(absl::string_view token) {
  return Statement<std::string>("LookupChallenge", [&](pqxx::nontransaction& tx) {
    return pg::FirstOf(tx.exec_prepared(kLookupChallenge, std::string(token)), TextOfRow,
                       absl::NotFoundError("unknown challenge token"));
  });
}

pg::Sql PostgresStore::ChallengeDeletionSql(absl::string_view token) {
  return {"DELETE FROM challenges WHERE token = $1 RETURNING token", {std::string(token)}};
}

void PostgresStore::DeleteChallengeTx(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                      absl::string_view token) {
  AuditChallengeDeletion(tx, scope, now, token, pg::Together(tx, {ChallengeDeletionSql(token)})[0]);
}

void PostgresStore::AuditChallengeDeletion(pqxx::dbtransaction& tx, const Scope& scope,
                                           absl::Time now, absl::string_view token,
                                           const pqxx::result& r) {
  if (!r.empty()) {
    Audit(tx, scope, now, rules::SimpleEvent("DeleteChallenge", absl::StrCat("token ", token)));
  }
}

absl::Status PostgresStore::DeleteChallenge(const Scope& scope, absl::string_view token) {
  const absl::Time now = Now();
  return InTenant("DeleteChallenge", scope, [&](pqxx::dbtransaction& tx) {
    DeleteChallengeTx(tx, scope, now, token);
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::DeleteChallengeFenced(const Scope& scope, const Lease& lease,
                                                  absl::string_view token) {
  const absl::Time now = Now();
  return InTenant("DeleteChallengeFenced", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Job> job, pg::LeaseJob(tx, lease));
    ASSIGN_OR_RETURN(Order o, GetById(tx, kOrders, lease.order, Lock::kForUpdate));
    RETURN_IF_ERROR(rules::CheckFence(scope, o, lease, job ? &*job : nullptr));
    DeleteChallengeTx(tx, scope, now, token);
    return absl::OkStatus();
  });
}

}  // namespace acmevault::storage
