// PostgresStore: ACME accounts and their sealed keys (AccountStore).
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::AccountKeyOf;
using pg::AccountOf;
using pg::Bytes;
using pg::BytesOf;
using pg::GetById;
using pg::kAccountKeyRows;
using pg::kAccounts;
using pg::Lock;
using pg::Micros;
using pg::RequireRow;

namespace {

// Inserts `key` for (tenant, account, version) in `state`: a vault key sealed, a token key as
// its object id (the material columns NULL).
absl::StatusOr<AccountKey> InsertKey(pqxx::dbtransaction& tx, const Envelope& envelope,
                                     TenantId tenant, AccountId account, int version,
                                     KeyState state, const AccountKeyMaterial& key,
                                     const PublicKeyInfo& public_key, absl::Time now) {
  std::optional<SealedKey> sealed;
  if (key.vault_key != nullptr) {
    ASSIGN_OR_RETURN(sealed, envelope.SealPrivateKey(*key.vault_key,
                                                     AccountKeyContext(tenant, account, version)));
  }
  auto insert = [&](auto kek_id, auto wrapped, auto sealed_key, const char* token_object) {
    return AccountKeyOf(pg::Exec1(tx,
        absl::StrCat(
            "INSERT INTO account_keys (tenant_id, account_id, version, state, algorithm, "
            "public_jwk, thumbprint, kek_id, wrapped_data_key, sealed_private_key, token_object, "
            "created_at, activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
            "av_ts($12), CASE WHEN $4 = 'active' THEN av_ts($12) END) RETURNING ",
            kAccountKeyRows.columns),
        tenant, account, version, std::string(KeyStateName(state)),
        std::string(crypto::KeyAlgorithmName(key.algorithm)), public_key.public_jwk,
        public_key.thumbprint, kek_id, wrapped, sealed_key, token_object, Micros(now)));
  };
  if (sealed) {
    return insert(sealed->kek_id, Bytes(sealed->wrapped_data_key),
                  Bytes(sealed->sealed_private_key), nullptr);
  }
  constexpr const char* kNull = nullptr;
  return insert(kNull, kNull, kNull, key.token_object.c_str());
}

// The columns UnsealKeyRowIn reads after kAccountKeyRows.columns.
constexpr char kKeyMaterialColumns[] = ", wrapped_data_key, sealed_private_key";

// Locks the account row: key changes of one account are serialised on it.
absl::StatusOr<Account> LockAccount(pqxx::dbtransaction& tx, AccountId id) {
  return GetById(tx, kAccounts, id, Lock::kForUpdate);
}

// The key `version` of `account` (its active key if there is no version), with `extra` columns
// after the key's own. NOT_FOUND naming what is missing.
absl::StatusOr<pqxx::row> KeyRow(pqxx::dbtransaction& tx, AccountId account,
                                 std::optional<int> version, absl::string_view extra = "") {
  const std::string select = absl::StrCat("SELECT ", kAccountKeyRows.columns, extra,
                                          " FROM account_keys WHERE account_id = $1 AND ");
  pqxx::result r = version.has_value()
                       ? pg::Exec(tx, absl::StrCat(select, "version = $2"), account, *version)
                       : pg::Exec(tx, absl::StrCat(select, "state = 'active'"), account);
  if (r.empty()) {
    return absl::NotFoundError(
        version.has_value() ? absl::StrCat("account ", account, " has no key version ", *version)
                            : absl::StrCat("account ", account, " has no active key"));
  }
  return r[0];
}

absl::StatusOr<KeyState> KeyStateOf(pqxx::dbtransaction& tx, AccountId account, int version) {
  ASSIGN_OR_RETURN(pqxx::row r, KeyRow(tx, account, version));
  return AccountKeyOf(r).state;
}

}  // namespace

absl::StatusOr<Account> PostgresStore::CreateAccount(const Scope& scope,
                                                     absl::string_view directory_url,
                                                     const AccountKeyMaterial& key,
                                                     const PublicKeyInfo& public_key,
                                                     KeyState initial_state) {
  RETURN_IF_ERROR(rules::ValidateNewAccount(directory_url, key, public_key, initial_state));
  const absl::Time now = Now();
  auto created = InTenant<
      Account>("CreateAccount", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Account> {
    Account out = AccountOf(pg::Exec1(tx,
        absl::StrCat("INSERT INTO accounts (tenant_id, directory_url, status, created_at) "
                     "VALUES ($1, $2, 'pending', av_ts($3)) RETURNING ",
                     kAccounts.rows.columns),
        scope.tenant, std::string(directory_url), Micros(now)));
    RETURN_IF_ERROR(
        InsertKey(tx, envelope_, scope.tenant, out.id, 1, initial_state, key, public_key, now)
            .status());
    Audit(tx, scope, now,
          rules::AccountEvent("CreateAccount", out.id, 1,
                              absl::StrCat("key 1 ", KeyStateName(initial_state), " ",
                                           crypto::KeyAlgorithmName(key.algorithm),
                                           key.token_object.empty() ? "" : " in the token")));
    return out;
  });
  // The only unique rule a new account can meet: one pending or valid account per tenant and
  // directory (migration 0007).
  if (absl::IsAlreadyExists(created.status())) return rules::LiveAccountExists(directory_url);
  return created;
}

absl::StatusOr<Account> PostgresStore::CreateEphemeralAccount(const Scope& scope,
                                                              absl::string_view directory_url,
                                                              const AccountKeyMaterial& key,
                                                              const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(
      rules::ValidateNewAccount(directory_url, key, public_key, KeyState::kActive));
  const absl::Time now = Now();
  return InTenant<Account>(
      "CreateEphemeralAccount", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Account> {
        Account out = AccountOf(pg::Exec1(tx,
            absl::StrCat("INSERT INTO accounts (tenant_id, directory_url, status, created_at, "
                         "ephemeral) VALUES ($1, $2, 'pending', av_ts($3), true) RETURNING ",
                         kAccounts.rows.columns),
            scope.tenant, std::string(directory_url), Micros(now)));
        RETURN_IF_ERROR(InsertKey(tx, envelope_, scope.tenant, out.id, 1, KeyState::kActive, key,
                                  public_key, now)
                            .status());
        Audit(tx, scope, now,
              rules::AccountEvent("CreateAccount", out.id, 1,
                                  absl::StrCat("ephemeral; key 1 active ",
                                               crypto::KeyAlgorithmName(key.algorithm),
                                               key.token_object.empty() ? "" : " in the token")));
        return out;
      });
}

absl::StatusOr<Account> PostgresStore::GetAccount(const Scope& scope, AccountId account) {
  return InTenant<Account>("GetAccount", scope, [&](pqxx::dbtransaction& tx) {
    return GetById(tx, kAccounts, account);
  });
}

absl::StatusOr<std::vector<Account>> PostgresStore::ListAccounts(const Scope& scope) {
  ASSIGN_OR_RETURN(std::vector<Account> accounts,
                   ReadInTenant<std::vector<Account>>(
                       "ListAccounts", scope,
                       [&](pqxx::nontransaction& tx, const std::string& tenant) {
                         return pg::AllOf(tx.exec_prepared(kAccountsOfTenant, tenant), AccountOf);
                       }));
  // None: perhaps no tenant either.
  if (accounts.empty()) RETURN_IF_ERROR(RequireTenant("ListAccounts", scope));
  return accounts;
}

absl::StatusOr<std::vector<Account>> PostgresStore::ListEphemeralAccountsToClose(
    const Scope& scope, absl::Time created_before, absl::string_view close_job_kind) {
  RETURN_IF_ERROR(ValidateJobKind(close_job_kind));
  return InTenant<std::vector<Account>>(
      "ListEphemeralAccountsToClose", scope,
      [&](pqxx::dbtransaction& tx) -> absl::StatusOr<std::vector<Account>> {
        // orders_in_flight_by_account and jobs_by_subject (migration 0020).
        return pg::AllOf(
            pg::Exec(
                tx,
                absl::StrCat(
                    "SELECT ", kAccounts.rows.columns,
                    " FROM accounts WHERE tenant_id = $1 AND ephemeral "
                    "AND status IN ('pending', 'valid') AND created_at < av_ts($2) "
                    "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = accounts.tenant_id "
                    "AND o.account_id = accounts.id AND o.state NOT IN ('valid', 'invalid')) "
                    "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = accounts.tenant_id "
                    "AND j.kind = $3 AND j.subject = accounts.id::text AND j.failed_at IS NULL) "
                    "ORDER BY id"),
                scope.tenant, Micros(TruncateToMicros(created_before)),
                std::string(close_job_kind)),
            AccountOf);
      });
}

absl::Status PostgresStore::RecordAccountUrl(const Scope& scope, AccountId account,
                                             absl::string_view url,
                                             const std::vector<std::string>& contact) {
  RETURN_IF_ERROR(rules::ValidateUrl("account URL", url));
  const absl::Time now = Now();
  return InTenant("RecordAccountUrl", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Account a, LockAccount(tx, account));
    ASSIGN_OR_RETURN(bool write, rules::AccountUrlNeedsWrite(a, url));
    if (!write) return absl::OkStatus();
    pg::Exec0(tx,
              "UPDATE accounts SET account_url = $2, status = 'valid', contact = $3::text[] "
              "WHERE id = $1",
              account, std::string(url), pg::ArrayParam(rules::ClipAccountContact(contact)));
    AuditEvent e = rules::AccountEvent("RecordAccountUrl", account, std::nullopt, "");
    e.acme_url = std::string(url);
    Audit(tx, scope, now, e);
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::SetAccountStatus(const Scope& scope, AccountId account,
                                             AccountStatus status) {
  RETURN_IF_ERROR(rules::ValidateAccountStatusChange(status));
  const absl::Time now = Now();
  return InTenant("SetAccountStatus", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Account a, LockAccount(tx, account));
    RETURN_IF_ERROR(rules::CheckAccountOpen(a, /*already=*/true));
    pg::Exec0(tx, "UPDATE accounts SET status = $2, deactivated_at = av_ts($3) WHERE id = $1",
                    account, std::string(AccountStatusName(status)), Micros(now));
    Audit(tx, scope, now, rules::AccountStatusEvent(a, status));
    return absl::OkStatus();
  });
}

absl::StatusOr<Account> PostgresStore::MarkAccountHijacked(const Scope& scope, AccountId account,
                                                           absl::string_view what) {
  const absl::Time now = Now();
  return InTenant<Account>(
      "MarkAccountHijacked", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Account> {
        ASSIGN_OR_RETURN(Account a, LockAccount(tx, account));
        RETURN_IF_ERROR(rules::CheckHijackable(a));
        if (a.hijacked_at.has_value()) return a;
        pg::Exec0(tx, "UPDATE accounts SET hijacked_at = av_ts($2) WHERE id = $1", account,
                        Micros(now));
        a.hijacked_at = now;
        Audit(tx, scope, now, rules::AccountHijackedEvent(a, what));
        return a;
      });
}

absl::StatusOr<AccountKey> PostgresStore::AddPendingKey(const Scope& scope, const KeyLease& lease,
                                                        const AccountKeyMaterial& key,
                                                        const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(rules::ValidateKeyMaterial(key, public_key));
  const AccountId account = lease.account;
  const absl::Time now = Now();
  return InTenant<AccountKey>(
      "AddPendingKey", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<AccountKey> {
        ASSIGN_OR_RETURN(Account a, LockLeasedAccount(tx, scope, lease));
        RETURN_IF_ERROR(rules::CheckAccountOpen(a));
        pqxx::row r = pg::Exec1(tx,
            "SELECT coalesce(max(version), 0) + 1, coalesce(bool_or(state = 'pending'), false) "
            "FROM account_keys WHERE account_id = $1",
            account);
        if (r[1].as<bool>()) {
          return absl::AlreadyExistsError(
              absl::StrCat("account ", account, " already has a pending key"));
        }
        const int version = r[0].as<int>();
        ASSIGN_OR_RETURN(AccountKey out, InsertKey(tx, envelope_, scope.tenant, account, version,
                                                   KeyState::kPending, key, public_key, now));
        Audit(tx, scope, now, rules::AccountEvent("AddPendingKey", account, version, ""));
        return out;
      });
}

absl::Status PostgresStore::PromoteKey(const Scope& scope, const KeyLease& lease, int version) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  return InTenant("PromoteKey", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    RETURN_IF_ERROR(LockLeasedAccount(tx, scope, lease).status());
    ASSIGN_OR_RETURN(KeyState state, KeyStateOf(tx, account, version));
    RETURN_IF_ERROR(rules::CheckKeyPending(account, version, state));
    // Retire first: the partial unique index allows one active key at any moment.
    pqxx::result retired = pg::Exec(tx,
        "UPDATE account_keys SET state = 'retired', retired_at = av_ts($2) "
        "WHERE account_id = $1 AND state = 'active' RETURNING version",
        account, Micros(now));
    pg::Exec0(tx,
        "UPDATE account_keys SET state = 'active', activated_at = av_ts($3) "
        "WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now,
          rules::AccountEvent(
              "PromoteKey", account, version,
              retired.empty() ? "" : absl::StrCat("retired key ", retired[0][0].as<int>())));
    return absl::OkStatus();
  });
}

absl::StatusOr<Account> PostgresStore::ReplaceAccount(const Scope& scope, const KeyLease& lease,
                                                      int version,
                                                      absl::string_view new_account_url,
                                                      bool old_keys_compromised) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  return InTenant<Account>(
      "ReplaceAccount", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Account> {
        ASSIGN_OR_RETURN(Account old, LockLeasedAccount(tx, scope, lease));
        RETURN_IF_ERROR(rules::CheckReplaceable(old, new_account_url));
        ASSIGN_OR_RETURN(pqxx::row r,
                         KeyRow(tx, account, version, ", wrapped_data_key, sealed_private_key"));
        const AccountKey moved = AccountKeyOf(r);
        RETURN_IF_ERROR(rules::CheckKeyPending(account, version, moved.state));
        // Old first: one pending or valid account per tenant and directory (migration 0007).
        pg::Exec0(tx,
            "UPDATE accounts SET status = 'deactivated', deactivated_at = av_ts($2) WHERE id = $1",
            account, Micros(now));
        pg::Exec0(tx,
            "UPDATE account_keys SET state = 'retired', retired_at = av_ts($3) "
            "WHERE account_id = $1 AND version = $2",
            account, version, Micros(now));
        if (old_keys_compromised) {
          pg::Exec0(tx,
              "UPDATE account_keys SET state = 'compromised', compromised_at = av_ts($3) "
              "WHERE account_id = $1 AND version <> $2 AND state <> 'compromised'",
              account, version, Micros(now));
        }
        Account out = AccountOf(pg::Exec1(
            tx,
            absl::StrCat("INSERT INTO accounts (tenant_id, directory_url, account_url, status, "
                         "created_at, contact) VALUES ($1, $2, $3, 'valid', av_ts($4), $5::text[]) "
                         "RETURNING ",
                         kAccounts.rows.columns),
            scope.tenant, old.directory_url, std::string(new_account_url), Micros(now),
            pg::ArrayParam(old.contact)));
        if (moved.token_object.empty()) {
          SealedKey sealed{moved.kek_id, BytesOf(r["wrapped_data_key"]),
                           BytesOf(r["sealed_private_key"])};
          ASSIGN_OR_RETURN(crypto::PrivateKey key,
                           envelope_.OpenPrivateKey(
                               sealed, AccountKeyContext(scope.tenant, account, version)));
          RETURN_IF_ERROR(InsertKey(tx, envelope_, scope.tenant, out.id, 1, KeyState::kActive,
                                    key, moved.public_key, now)
                              .status());
        } else {
          RETURN_IF_ERROR(InsertKey(tx, envelope_, scope.tenant, out.id, 1, KeyState::kActive,
                                    AccountKeyMaterial::InToken(moved.token_object,
                                                                moved.algorithm),
                                    moved.public_key, now)
                              .status());
        }
        Audit(tx, scope, now,
              rules::ReplaceAccountEvent(old, out, version, old_keys_compromised));
        return out;
      });
}

absl::Status PostgresStore::DiscardPendingKey(const Scope& scope, const KeyLease& lease,
                                              int version) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  return InTenant("DiscardPendingKey", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    RETURN_IF_ERROR(LockLeasedAccount(tx, scope, lease).status());
    ASSIGN_OR_RETURN(KeyState state, KeyStateOf(tx, account, version));
    RETURN_IF_ERROR(rules::CheckKeyPending(account, version, state));
    pg::Exec0(tx,
        "UPDATE account_keys SET state = 'retired', retired_at = av_ts($3) "
        "WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now, rules::AccountEvent("DiscardPendingKey", account, version, ""));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::MarkKeyCompromised(const Scope& scope, const KeyLease& lease,
                                               int version) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  return InTenant("MarkKeyCompromised", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    RETURN_IF_ERROR(LockLeasedAccount(tx, scope, lease).status());
    ASSIGN_OR_RETURN(KeyState state, KeyStateOf(tx, account, version));
    if (state == KeyState::kCompromised) return absl::OkStatus();
    pg::Exec0(tx,
        "UPDATE account_keys SET state = 'compromised', compromised_at = av_ts($3) "
        "WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now,
          rules::AccountEvent("MarkKeyCompromised", account, version,
                              absl::StrCat("was ", KeyStateName(state))));
    return absl::OkStatus();
  });
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::UnsealKeyIn(pqxx::dbtransaction& tx,
                                                              const Scope& scope, absl::Time now,
                                                              AccountId account,
                                                              std::optional<int> version,
                                                              absl::string_view purpose) {
  ASSIGN_OR_RETURN(pqxx::row r, KeyRow(tx, account, version, kKeyMaterialColumns));
  return UnsealKeyRowIn(tx, scope, now, account, r, purpose);
}

std::string PostgresStore::ActiveKeyOfOrderSql() {
  return absl::StrCat("SELECT ", kAccountKeyRows.columns, kKeyMaterialColumns,
                      " FROM account_keys WHERE account_id = "
                      "(SELECT account_id FROM orders WHERE id = $1) AND state = 'active'");
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::UnsealKeyRowIn(pqxx::dbtransaction& tx,
                                                                 const Scope& scope, absl::Time now,
                                                                 AccountId account,
                                                                 const pqxx::row& r,
                                                                 absl::string_view purpose) {
  AccountKey info = AccountKeyOf(r);
  RETURN_IF_ERROR(rules::CheckKeyUsable(info));
  std::optional<crypto::PrivateKey> key;
  if (info.token_object.empty()) {
    SealedKey sealed{info.kek_id, BytesOf(r["wrapped_data_key"]), BytesOf(r["sealed_private_key"])};
    ASSIGN_OR_RETURN(key, envelope_.OpenPrivateKey(
                              sealed, AccountKeyContext(scope.tenant, account, info.version)));
  }
  Audit(tx, scope, now,
        rules::AccountEvent("UseAccountKey", account, info.version, std::string(purpose)));
  return UnsealedAccountKey{std::move(info), std::move(key)};
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::UnsealKey(absl::string_view op,
                                                            const Scope& scope, AccountId account,
                                                            std::optional<int> version,
                                                            absl::string_view purpose) {
  const absl::Time now = Now();
  return InTenant<UnsealedAccountKey>(op, scope, [&](pqxx::dbtransaction& tx) {
    return UnsealKeyIn(tx, scope, now, account, version, purpose);
  });
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::GetActiveKey(const Scope& scope,
                                                               AccountId account,
                                                               absl::string_view purpose) {
  return UnsealKey("GetActiveKey", scope, account, std::nullopt, purpose);
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::GetKey(const Scope& scope, AccountId account,
                                                         int version, absl::string_view purpose) {
  return UnsealKey("GetKey", scope, account, version, purpose);
}

absl::Status PostgresStore::MarkKeyDestroyed(const Scope& scope, AccountId account, int version) {
  const absl::Time now = Now();
  return InTenant("MarkKeyDestroyed", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    RETURN_IF_ERROR(LockAccount(tx, account).status());
    ASSIGN_OR_RETURN(pqxx::row r, KeyRow(tx, account, version));
    const AccountKey key = AccountKeyOf(r);
    RETURN_IF_ERROR(rules::CheckKeyDestroyable(key));
    if (key.destroyed_at) return absl::OkStatus();
    pg::Exec0(tx,
        "UPDATE account_keys SET destroyed_at = av_ts($3) WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now,
          rules::AccountEvent("DestroyAccountKey", account, version,
                              absl::StrCat("token object ", key.token_object)));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<AccountKey>> PostgresStore::ListKeys(const Scope& scope,
                                                                AccountId account) {
  return InTenant<std::vector<AccountKey>>(
      "ListKeys", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<std::vector<AccountKey>> {
        RETURN_IF_ERROR(RequireRow(tx, kAccounts, account));
        return pg::AllOf(pg::Exec(tx, absl::StrCat("SELECT ", kAccountKeyRows.columns,
                                                     " FROM account_keys WHERE account_id = $1 "
                                                     "ORDER BY version"),
                                        account),
                         AccountKeyOf);
      });
}

}  // namespace acmevault::storage
