// PostgresStore: account key leases (AccountStore::AcquireKeyLease; migration 0007). A lease
// lives on its account's row (key_lease_token, key_lease_expires_at); every key write locks
// that row and compares tokens, so a writer whose lease was taken over cannot commit.
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::kAccounts;
using pg::kKeyLeaseColumns;
using pg::Lock;
using pg::Micros;
using pg::OptionalTime;

namespace {

// The account with its lease columns, locked until the transaction ends.
absl::StatusOr<pqxx::row> LockAccountWithLease(pqxx::dbtransaction& tx, AccountId account) {
  return pg::SelectById(tx, kAccounts.name, kAccounts.noun,
                        absl::StrCat(kAccounts.rows.columns, ", ", kKeyLeaseColumns), account,
                        Lock::kForUpdate);
}

}  // namespace

absl::StatusOr<Account> PostgresStore::LockLeasedAccount(pqxx::dbtransaction& tx,
                                                         const Scope& scope,
                                                         const KeyLease& lease) {
  ASSIGN_OR_RETURN(pqxx::row r, LockAccountWithLease(tx, lease.account));
  RETURN_IF_ERROR(rules::CheckKeyLease(scope, r["key_lease_token"].as<int64_t>(), lease));
  return kAccounts.rows.map(r);
}

absl::StatusOr<KeyLease> PostgresStore::AcquireKeyLease(const Scope& scope, AccountId account,
                                                        absl::Duration duration) {
  const absl::Time now = Now();
  const absl::Time expires = TruncateToMicros(now + duration);
  return InTenant<KeyLease>(
      "AcquireKeyLease", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<KeyLease> {
        ASSIGN_OR_RETURN(pqxx::row r, LockAccountWithLease(tx, account));
        RETURN_IF_ERROR(rules::CheckAccountOpen(kAccounts.rows.map(r)));
        RETURN_IF_ERROR(
            rules::CheckKeyLeaseFree(account, OptionalTime(r["key_lease_expires_us"]), now));
        const int64_t token =
            pg::Exec1(tx,
                  "UPDATE accounts SET key_lease_token = key_lease_token + 1, "
                  "key_lease_expires_at = av_ts($2) WHERE id = $1 RETURNING key_lease_token",
                  account, Micros(expires))[0]
                .as<int64_t>();
        return KeyLease{.tenant = scope.tenant,
                        .account = account,
                        .fencing_token = token,
                        .expires_at = expires};
      });
}

absl::Status PostgresStore::ReleaseKeyLease(const Scope& scope, const KeyLease& lease) {
  return InTenant("ReleaseKeyLease", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(pqxx::row r, LockAccountWithLease(tx, lease.account));
    absl::Status current = rules::CheckKeyLease(scope, r["key_lease_token"].as<int64_t>(), lease);
    if (absl::IsFailedPrecondition(current)) return absl::OkStatus();  // Taken over meanwhile.
    RETURN_IF_ERROR(current);
    // A closed account's row is frozen (0002's guard); its lease no longer matters.
    if (!rules::CheckAccountOpen(kAccounts.rows.map(r)).ok()) return absl::OkStatus();
    pg::Exec0(tx, "UPDATE accounts SET key_lease_expires_at = NULL WHERE id = $1", lease.account);
    return absl::OkStatus();
  });
}

}  // namespace acmevault::storage
