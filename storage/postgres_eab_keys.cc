// PostgresStore: a tenant's kept External Account Binding credentials (AccountStore's EAB
// calls; migration 0026, table eab_keys).
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/envelope.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::Bytes;
using pg::BytesOf;
using pg::Micros;
using pg::TimeOf;

namespace {

constexpr char kEabColumns[] = "id, directory_url, key_id, av_us(created_at)";

EabKeyInfo EabKeyInfoOf(const pqxx::row& r) {
  return EabKeyInfo{r[1].as<std::string>(), r[2].as<std::string>(), TimeOf(r[3])};
}

}  // namespace

absl::StatusOr<EabKeyInfo> PostgresStore::KeepEabKey(const Scope& scope,
                                                     absl::string_view directory_url,
                                                     absl::string_view key_id,
                                                     absl::string_view hmac_key) {
  RETURN_IF_ERROR(rules::ValidateEabKey(directory_url, key_id, hmac_key));
  const absl::Time now = Now();
  return InTenant<EabKeyInfo>(
      "KeepEabKey", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<EabKeyInfo> {
        // A new row (a new id, so a new sealing context) replaces the one kept before.
        pg::Exec0(tx, "DELETE FROM eab_keys WHERE tenant_id = $1", scope.tenant);
        const int64_t id =
            pg::Exec1(tx, "SELECT nextval(pg_get_serial_sequence('eab_keys', 'id'))")[0]
                .as<int64_t>();
        ASSIGN_OR_RETURN(SealedKey sealed,
                         envelope_.Seal(hmac_key, EabKeyContext(scope.tenant, id)));
        pqxx::row r = pg::Exec1(
            tx,
            absl::StrCat("INSERT INTO eab_keys (id, tenant_id, directory_url, key_id, kek_id, "
                         "wrapped_data_key, sealed_private_key, created_at) VALUES ($1, $2, $3, "
                         "$4, $5, $6, $7, av_ts($8)) RETURNING ",
                         kEabColumns),
            id, scope.tenant, std::string(directory_url), std::string(key_id), sealed.kek_id,
            Bytes(sealed.wrapped_data_key), Bytes(sealed.sealed_private_key), Micros(now));
        EabKeyInfo info = EabKeyInfoOf(r);
        Audit(tx, scope, now, rules::EabKeyEvent("KeepEabKey", info));
        return info;
      });
}

absl::StatusOr<EabKeyInfo> PostgresStore::GetEabKeyInfo(const Scope& scope) {
  return InTenant<EabKeyInfo>(
      "GetEabKeyInfo", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<EabKeyInfo> {
        pqxx::result r = pg::Exec(tx, absl::StrCat("SELECT ", kEabColumns, " FROM eab_keys"));
        if (r.empty()) return absl::NotFoundError("the tenant keeps no EAB key");
        return EabKeyInfoOf(r[0]);
      });
}

absl::StatusOr<EabKey> PostgresStore::GetEabKey(const Scope& scope, absl::string_view purpose) {
  const absl::Time now = Now();
  return InTenant<EabKey>(
      "GetEabKey", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<EabKey> {
        pqxx::result r = pg::Exec(tx, absl::StrCat("SELECT ", kEabColumns,
                                                   ", kek_id, wrapped_data_key, sealed_private_key "
                                                   "FROM eab_keys"));
        if (r.empty()) return absl::NotFoundError("the tenant keeps no EAB key");
        EabKey out;
        out.info = EabKeyInfoOf(r[0]);
        const SealedKey sealed{r[0][4].as<std::string>(), BytesOf(r[0][5]), BytesOf(r[0][6])};
        ASSIGN_OR_RETURN(
            out.hmac_key,
            envelope_.Open(sealed, EabKeyContext(scope.tenant, r[0][0].as<int64_t>())));
        Audit(tx, scope, now, rules::EabKeyEvent("UseEabKey", out.info, purpose));
        return out;
      });
}

absl::Status PostgresStore::ForgetEabKey(const Scope& scope) {
  const absl::Time now = Now();
  return InTenant("ForgetEabKey", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    pqxx::result r = pg::Exec(tx, absl::StrCat("DELETE FROM eab_keys RETURNING ", kEabColumns));
    if (r.empty()) return absl::NotFoundError("the tenant keeps no EAB key");
    Audit(tx, scope, now, rules::EabKeyEvent("ForgetEabKey", EabKeyInfoOf(r[0])));
    return absl::OkStatus();
  });
}

}  // namespace acmevault::storage
