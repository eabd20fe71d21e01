// PostgresStore: re-wrapping data keys under the current key-encryption key (VaultMaintenance).
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::Bytes;
using pg::BytesOf;
using pg::kSealedColumns;

namespace {

// Re-wraps up to `limit` sealed keys of `table` (certificates, orders or eab_keys: rows named by
// `id` whose key is bound to context(tenant, id)) that are not under the current KEK. Rows another
// re-wrapper holds are skipped. Returns how many it re-wrapped.
absl::StatusOr<int64_t> RewrapRows(pqxx::dbtransaction& tx, const Envelope& envelope,
                                   absl::string_view table,
                                   std::string (*context)(TenantId, int64_t), TenantId tenant,
                                   int64_t limit) {
  int64_t count = 0;
  for (const pqxx::row& r : pg::Exec(tx,
           absl::StrCat("SELECT id, ", kSealedColumns, " FROM ", table,
                        " WHERE kek_id <> $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"),
           envelope.current_kek_id(), limit)) {
    const int64_t id = r["id"].as<int64_t>();
    ASSIGN_OR_RETURN(SealedKey rewrapped,
                     envelope.Rewrap(*pg::SealedKeyOf(r), context(tenant, id)));
    pg::Exec0(tx,
        absl::StrCat("UPDATE ", table, " SET kek_id = $2, wrapped_data_key = $3 WHERE id = $1"), id,
        rewrapped.kek_id, Bytes(rewrapped.wrapped_data_key));
    ++count;
  }
  return count;
}

}  // namespace

absl::StatusOr<VaultMaintenance::RewrapProgress> PostgresStore::RewrapBatch(const Actor& actor,
                                                                            int max_records) {
  if (max_records < 1) return absl::InvalidArgumentError("max_records must be positive");
  const std::string current = envelope_.current_kek_id();
  RewrapProgress progress;
  ASSIGN_OR_RETURN(
      std::vector<TenantId> tenants,
      AcrossTenants<std::vector<TenantId>>("RewrapBatch", [&](pqxx::dbtransaction& tx) {
        std::vector<TenantId> out;
        for (const pqxx::row& r :
             pg::Exec(tx, "SELECT * FROM av_tenants_to_rewrap($1, $2)", current, max_records)) {
          out.push_back(r[0].as<int64_t>());
        }
        return out;
      }));
  const absl::Time now = Now();
  for (TenantId tenant : tenants) {
    const int budget = max_records - static_cast<int>(progress.rewrapped);
    if (budget <= 0) break;
    const Scope scope{tenant, actor};
    ASSIGN_OR_RETURN(
        int64_t count,
        InTenant<
            int64_t>("RewrapBatch", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<int64_t> {
          int64_t count = 0;
          // Rows another re-wrapper holds are skipped: concurrent runs share the work.
          for (const pqxx::row& r : pg::Exec(tx,
                   "SELECT account_id, version, kek_id, wrapped_data_key, sealed_private_key "
                   "FROM account_keys WHERE kek_id <> $1 ORDER BY account_id, version LIMIT $2 "
                   "FOR UPDATE SKIP LOCKED",
                   current, budget)) {
            AccountId account = r[0].as<int64_t>();
            int version = r[1].as<int>();
            SealedKey sealed{r[2].as<std::string>(), BytesOf(r[3]), BytesOf(r[4])};
            ASSIGN_OR_RETURN(SealedKey rewrapped,
                             envelope_.Rewrap(sealed, AccountKeyContext(tenant, account, version)));
            pg::Exec0(tx,
                "UPDATE account_keys SET kek_id = $3, wrapped_data_key = $4 "
                "WHERE account_id = $1 AND version = $2",
                account, version, rewrapped.kek_id, Bytes(rewrapped.wrapped_data_key));
            ++count;
          }
          for (const auto& [table, context] :
               {std::make_pair("certificates", CertificateKeyContext),
                std::make_pair("orders", OrderKeyContext),
                std::make_pair("eab_keys", EabKeyContext)}) {
            ASSIGN_OR_RETURN(int64_t n,
                             RewrapRows(tx, envelope_, table, context, tenant, budget - count));
            count += n;
          }
          if (count > 0) {
            Audit(tx, scope, now,
                  rules::SimpleEvent("RewrapKeys", absl::StrCat(count,
                                                                " data keys re-wrapped under "
                                                                "key-encryption key ",
                                                                current)));
          }
          return count;
        }));
    progress.rewrapped += count;
  }
  ASSIGN_OR_RETURN(
      progress.done, AcrossTenants<bool>("RewrapBatch", [&](pqxx::dbtransaction& tx) {
        return pg::Exec(tx, "SELECT * FROM av_tenants_to_rewrap($1, 1)", current).empty();
      }));
  return progress;
}

}  // namespace acmevault::storage
