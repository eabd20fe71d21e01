// PostgresStore: the authorization ledger (AuthorizationStore).
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::AuthorizationOf;
using pg::kAuthorizations;
using pg::Micros;
using pg::OptionalParam;

pg::Sql PostgresStore::RecordAuthorizationSql(const Scope& scope, absl::Time now,
                                              const AuthorizationRecord& authorization,
                                              const std::string& identifier) {
  std::optional<int64_t> expires;
  if (authorization.expires_at.has_value()) expires = Micros(*authorization.expires_at);
  return {absl::StrCat("INSERT INTO authorizations (tenant_id, account_id, order_id, url, "
                       "identifier, status, expires_at, created_at, updated_at) "
                       "VALUES ($1, $2, $3, $4, $5, $6, av_ts($7), av_ts($8), av_ts($8)) "
                       "ON CONFLICT (account_id, url) DO UPDATE SET status = EXCLUDED.status, "
                       "expires_at = EXCLUDED.expires_at, "
                       "order_id = coalesce(authorizations.order_id, EXCLUDED.order_id), "
                       "updated_at = EXCLUDED.updated_at RETURNING ",
                       kAuthorizations.rows.columns),
          {absl::StrCat(scope.tenant), absl::StrCat(authorization.account),
           OptionalParam(authorization.order), authorization.url, identifier,
           std::string(AuthorizationStatusName(authorization.status)), OptionalParam(expires),
           absl::StrCat(Micros(now))}};
}

Authorization PostgresStore::RecordedAuthorization(pqxx::dbtransaction& tx, const Scope& scope,
                                                   absl::Time now,
                                                   const AuthorizationRecord& authorization,
                                                   const std::string& identifier,
                                                   const pqxx::result& r) {
  Authorization out = AuthorizationOf(r.at(0));  // an upsert's RETURNING has its row
  AuditEvent e = rules::AccountEvent("RecordAuthorization", authorization.account, std::nullopt,
                                     std::string(AuthorizationStatusName(out.record.status)));
  e.identifiers = {identifier};
  e.acme_url = authorization.url;
  Audit(tx, scope, now, e);
  return out;
}

Authorization PostgresStore::RecordAuthorizationIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                   absl::Time now,
                                                   const AuthorizationRecord& authorization,
                                                   const std::string& identifier) {
  return RecordedAuthorization(
      tx, scope, now, authorization, identifier,
      pg::Together(tx, {RecordAuthorizationSql(scope, now, authorization, identifier)})[0]);
}

absl::StatusOr<Authorization> PostgresStore::RecordAuthorization(
    const Scope& scope, const AuthorizationRecord& authorization) {
  RETURN_IF_ERROR(rules::ValidateUrl("authorization URL", authorization.url));
  ASSIGN_OR_RETURN(std::vector<std::string> identifier,
                   CanonicalIdentifiers({authorization.identifier}));
  const absl::Time now = Now();
  return InTenant<Authorization>(
      "RecordAuthorization", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Authorization> {
        return RecordAuthorizationIn(tx, scope, now, authorization, identifier[0]);
      });
}

pg::Sql PostgresStore::OutstandingAuthorizationsSql(absl::Time now,
                                                    const AuthorizationFilter& filter) {
  std::optional<int64_t> updated_before;
  if (filter.updated_before.has_value()) updated_before = Micros(*filter.updated_before);
  return {
      absl::StrCat("SELECT ", kAuthorizations.rows.columns,
                   " FROM authorizations WHERE status IN ('pending', 'valid') "
                   "AND deactivated_at IS NULL AND (expires_at IS NULL OR expires_at > av_ts($1)) "
                   "AND ($2::bigint IS NULL OR account_id = $2) "
                   "AND ($3::bigint IS NULL OR order_id = $3) "
                   "AND (cardinality($4::text[]) = 0 OR identifier = ANY($4::text[])) "
                   "AND ($5::bigint IS NULL OR id = $5) "
                   "AND ($6::bigint IS NULL OR updated_at < av_ts($6)) "
                   "ORDER BY id LIMIT nullif($7, 0)"),
      {absl::StrCat(Micros(now)), OptionalParam(filter.account), OptionalParam(filter.order),
       ArrayParam(filter.identifiers), OptionalParam(filter.id), OptionalParam(updated_before),
       absl::StrCat(filter.limit)}};
}

std::vector<Authorization> PostgresStore::OutstandingAuthorizationsIn(
    pqxx::dbtransaction& tx, absl::Time now, const AuthorizationFilter& filter) {
  return pg::AllOf(pg::Together(tx, {OutstandingAuthorizationsSql(now, filter)})[0],
                   AuthorizationOf);
}

absl::StatusOr<std::vector<Authorization>> PostgresStore::ListOutstandingAuthorizations(
    const Scope& scope, const AuthorizationFilter& filter) {
  AuthorizationFilter canonical = filter;
  if (!filter.identifiers.empty()) {
    ASSIGN_OR_RETURN(canonical.identifiers, CanonicalIdentifiers(filter.identifiers));
  }
  const absl::Time now = Now();
  return InTenant<std::vector<Authorization>>(
      "ListOutstandingAuthorizations", scope,
      [&](pqxx::dbtransaction& tx) { return OutstandingAuthorizationsIn(tx, now, canonical); });
}

namespace {

// The deactivation of the authorization at `url` ($2) of the account `account_is` names, with
// $1 its value.
pg::Sql Deactivation(absl::string_view account_is, int64_t value, absl::Time now,
                     absl::string_view url) {
  return {absl::StrCat("UPDATE authorizations SET status = 'deactivated', "
                       "deactivated_at = coalesce(deactivated_at, av_ts($3)), "
                       "updated_at = av_ts($3) WHERE account_id = ",
                       account_is, " AND url = $2 RETURNING identifier"),
          {absl::StrCat(value), std::string(url), absl::StrCat(Micros(now))}};
}

}  // namespace

pg::Sql PostgresStore::OrderDeactivationSql(absl::Time now, OrderId order, absl::string_view url) {
  return Deactivation("(SELECT account_id FROM orders WHERE id = $1)", order, now, url);
}

bool PostgresStore::MarkAuthorizationDeactivatedIn(pqxx::dbtransaction& tx, const Scope& scope,
                                                   absl::Time now, AccountId account,
                                                   absl::string_view url) {
  return AuditDeactivation(tx, scope, now, account, url,
                           pg::Together(tx, {Deactivation("$1", account, now, url)})[0]);
}

bool PostgresStore::AuditDeactivation(pqxx::dbtransaction& tx, const Scope& scope, absl::Time now,
                                      AccountId account, absl::string_view url,
                                      const pqxx::result& r) {
  if (r.empty()) return false;
  AuditEvent e = rules::AccountEvent("MarkAuthorizationDeactivated", account, std::nullopt, "");
  e.identifiers = {r[0][0].as<std::string>()};
  e.acme_url = std::string(url);
  Audit(tx, scope, now, e);
  return true;
}

absl::Status PostgresStore::MarkAuthorizationDeactivated(const Scope& scope, AccountId account,
                                                         absl::string_view url) {
  const absl::Time now = Now();
  return InTenant("MarkAuthorizationDeactivated", scope, [&](pqxx::dbtransaction& tx) {
    if (!MarkAuthorizationDeactivatedIn(tx, scope, now, account, url)) {
      return absl::NotFoundError("no such authorization for this account");
    }
    return absl::OkStatus();
  });
}

}  // namespace acmevault::storage
