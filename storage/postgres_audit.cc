// PostgresStore: the per-tenant, hash-chained audit log (AuditLog) and the one statement that
// appends to it, which every state change runs in its own transaction (rows of one transaction
// in one INSERT, see WithAuditBatch).
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

constexpr char kAuditColumns[] =
    "INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, "
    "key_version, acme_url, outcome, detail) VALUES ";
constexpr int kAuditParams = 11;

// One row's VALUES, its parameters numbered from `first`.
std::string AuditValues(int first) {
  std::vector<std::string> p;
  for (int i = 0; i < kAuditParams; ++i) p.push_back(absl::StrCat("$", first + i));
  return absl::StrCat("(", p[0], "::bigint, av_ts(", p[1], "::bigint), ", p[2], ", ", p[3], ", ",
                      p[4], ", ", p[5], "::text[], ", p[6], "::bigint, ", p[7], "::int, ", p[8],
                      ", ", p[9], ", ", p[10], ")");
}

// An audit row as statement parameters (NULL: nullopt).
using AuditParams = std::vector<std::optional<std::string>>;

AuditParams ParamsOf(const Scope& scope, absl::Time at, const AuditEvent& e) {
  return {absl::StrCat(scope.tenant), absl::StrCat(Micros(at)), scope.actor.identity,
          scope.actor.rpc, e.action, ArrayParam(e.identifiers), OptionalParam(e.account),
          OptionalParam(e.key_version), e.acme_url, e.outcome, e.detail};
}

// The rows WithAuditBatch collects for one transaction and tenant. Batches nest (a body may run
// another store call on this thread, in its own transaction): each knows the one it hides.
struct AuditBatch {
  const pqxx::dbtransaction* tx;
  TenantId tenant;
  std::vector<AuditParams> rows;
  AuditBatch* outer;
};
thread_local AuditBatch* current_batch = nullptr;

constexpr size_t kPreparedAuditBatch = 8;

// The statement that inserts `rows` (one row's: `prepared`), its text for sizes no transition
// writes (a compromise run's batches can be longer, and rare) or the name of a statement
// prepared on tx's connection for it; and the parameters.
struct AuditInsert {
  std::string prepared;  // empty: `sql` is run as text
  std::string sql;
  std::vector<const char*> params;
};

AuditInsert AuditInsertFor(pqxx::dbtransaction& tx, const std::string& prepared,
                           const std::vector<AuditParams>& rows) {
  AuditInsert out;
  std::vector<std::string> values;
  for (const AuditParams& row : rows) {
    values.push_back(AuditValues(static_cast<int>(out.params.size()) + 1));
    for (const auto& p : row) out.params.push_back(Nullable(p));
  }
  if (rows.size() == 1) {
    out.prepared = prepared;
    return out;
  }
  out.sql = absl::StrCat(kAuditColumns, absl::StrJoin(values, ", "));
  // A statement per batch size, prepared for the sizes transitions write, named after the
  // one row's (av_audit_insert_2, ...: the statement log tells audit inserts by name).
  if (rows.size() <= kPreparedAuditBatch) {
    out.prepared = absl::StrCat(prepared, "_", rows.size());
    tx.conn().prepare(out.prepared, out.sql);  // registers; a repeat is a lookup
  }
  return out;
}

// Inserts `rows` in one statement, at once, or with the transaction's COMMIT when it is a
// pool's and the statement is prepared (nobody reads the insert's result):
// "EXECUTE <prepared>(<quoted values>); COMMIT", one round trip for both.
void InsertAudit(pqxx::dbtransaction& tx, const std::string& prepared,
                 const std::vector<AuditParams>& rows, bool with_commit = false) {
  if (rows.empty()) return;
  AuditInsert insert = AuditInsertFor(tx, prepared, rows);
  if (insert.prepared.empty() || !with_commit) pg::Open(tx);
  if (insert.prepared.empty()) {
    tx.exec_params0(insert.sql, pqxx::prepare::make_dynamic_params(insert.params));
  } else if (with_commit) {
    pg::ExecPreparedWithCommit(tx, insert.prepared, insert.params);
  } else {
    tx.exec_prepared0(insert.prepared, pqxx::prepare::make_dynamic_params(insert.params));
  }
}

}  // namespace

std::string PostgresStore::AuditInsertSql() { return absl::StrCat(kAuditColumns, AuditValues(1)); }

void PostgresStore::Audit(pqxx::dbtransaction& tx, const Scope& scope, absl::Time at,
                          const AuditEvent& e) {
  AuditBatch* batch = current_batch;
  if (batch != nullptr && batch->tx == &tx && batch->tenant == scope.tenant) {
    batch->rows.push_back(ParamsOf(scope, at, e));
    return;
  }
  InsertAudit(tx, kAuditStatement, {ParamsOf(scope, at, e)});
}

absl::Status PostgresStore::WithAuditBatch(pqxx::dbtransaction& tx, TenantId tenant,
                                           const PostgresPool::Body& body) {
  AuditBatch batch{&tx, tenant, {}, current_batch};
  struct Restore {
    AuditBatch* batch;
    ~Restore() { current_batch = batch->outer; }
  } restore{&batch};
  current_batch = &batch;
  absl::Status status = body(tx);
  if (status.ok()) InsertAudit(tx, kAuditStatement, batch.rows, /*with_commit=*/true);
  return status;
}

absl::Status PostgresStore::AppendAudit(const Scope& scope, const AuditEvent& event) {
  RETURN_IF_ERROR(rules::ValidateAuditEvent(event));
  const absl::Time now = Now();
  return InTenant("AppendAudit", scope, [&](pqxx::dbtransaction& tx) {
    Audit(tx, scope, now, event);
    return absl::OkStatus();
  });
}

absl::StatusOr<Page<AuditRecord>> PostgresStore::ListAudit(const Scope& scope,
                                                           const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  return InTenant<Page<AuditRecord>>("ListAudit", scope, [&](pqxx::dbtransaction& tx) {
    return pg::PageOf(pg::Exec(tx, absl::StrCat("SELECT ", kAuditRows.columns,
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
      [&](pqxx::dbtransaction& tx) -> absl::Status {
        rules::AuditChainVerifier chain(scope.tenant);
        constexpr int kBatch = 1000;
        for (;;) {
          pqxx::result r = pg::Exec(tx,
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
            pg::Exec(tx, "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1", scope.tenant);
        if (head.empty()) return chain.Finish(0, "");
        return chain.Finish(head[0][0].as<int64_t>(), BytesOf(head[0][1]));
      },
      /*snapshot=*/true);
}

}  // namespace acmevault::storage
