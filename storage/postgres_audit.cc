// PostgresStore: the per-tenant, hash-chained audit log (AuditLog) and the one statement that
// appends to it, which every state change runs in its own transaction.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::BytesOf;
using pg::kAuditRows;
using pg::Micros;
using pg::Nullable;
using pg::OptionalParam;

namespace {

std::string AuditToken(const AuditRecord& a) { return rules::EncodeIdToken(a.seq); }

}  // namespace

void PostgresStore::Audit(pqxx::work& tx, const Scope& scope, absl::Time at, const AuditEvent& e) {
  tx.exec_params0(
      "INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, "
      "key_version, acme_url, outcome, detail) "
      "VALUES ($1, av_ts($2), $3, $4, $5, $6::text[], $7, $8, $9, $10, $11)",
      scope.tenant, Micros(at), scope.actor.identity, scope.actor.rpc, e.action,
      ArrayParam(e.identifiers), Nullable(OptionalParam(e.account)),
      Nullable(OptionalParam(e.key_version)), e.acme_url, e.outcome, e.detail);
}

absl::Status PostgresStore::AppendAudit(const Scope& scope, const AuditEvent& event) {
  RETURN_IF_ERROR(rules::ValidateAuditEvent(event));
  const absl::Time now = Now();
  return InTenant("AppendAudit", scope, [&](pqxx::work& tx) {
    Audit(tx, scope, now, event);
    return absl::OkStatus();
  });
}

absl::StatusOr<Page<AuditRecord>> PostgresStore::ListAudit(const Scope& scope,
                                                           const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  return InTenant<Page<AuditRecord>>("ListAudit", scope, [&](pqxx::work& tx) {
    return pg::PageOf(tx.exec_params(absl::StrCat("SELECT ", kAuditRows.columns,
                                                  " FROM audit_log WHERE tenant_id = $1 "
                                                  "AND seq > $2 ORDER BY seq LIMIT $3"),
                                     scope.tenant, after, limit + 1),
                      kAuditRows.map, limit, AuditToken);
  });
}

absl::Status PostgresStore::VerifyAuditChain(const Scope& scope) {
  // Rows and head from one snapshot, even while others append.
  return InTenant(
      "VerifyAuditChain", scope,
      [&](pqxx::work& tx) -> absl::Status {
        rules::AuditChainVerifier chain(scope.tenant);
        constexpr int kBatch = 1000;
        for (;;) {
          pqxx::result r = tx.exec_params(
              "SELECT seq, prev_hash, hash, av_audit_digest(a) FROM audit_log a "
              "WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
              scope.tenant, chain.last_seq(), kBatch);
          for (const pqxx::row& row : r) {
            RETURN_IF_ERROR(chain.Next(row[0].as<int64_t>(), BytesOf(row[1]), BytesOf(row[2]),
                                       BytesOf(row[3])));
          }
          if (static_cast<int>(r.size()) < kBatch) break;
        }
        pqxx::result head =
            tx.exec_params("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", scope.tenant);
        if (head.empty()) return chain.Finish(0, "");
        return chain.Finish(head[0][0].as<int64_t>(), BytesOf(head[0][1]));
      },
      /*snapshot=*/true);
}

}  // namespace acmevault::storage
