// PostgresStore: construction, the tenant path every scoped call takes, tenants and identities.
#include "storage/postgres_store.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "storage/migrate.h"
#include "storage/postgres_rows.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::Bytes;
using pg::FirstOf;
using pg::GetById;
using pg::IdentityOf;
using pg::kAuthenticatedRows;
using pg::kIdentities;
using pg::kTenants;
using pg::Micros;
using pg::Nullable;
using pg::OptionalParam;
using pg::RequireRow;
using pg::TenantOf;

namespace {

std::string TenantToken(const Tenant& t) { return rules::EncodeIdToken(t.id); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction

PostgresStore::PostgresStore(PostgresStoreOptions options, Envelope envelope,
                             std::unique_ptr<PostgresPool> pool)
    : watch_hub_(NewWatchHub(options.pool.url)),
      options_(std::move(options)),
      envelope_(std::move(envelope)),
      pool_(std::move(pool)) {}

std::vector<std::pair<std::string, std::string>> PostgresStore::PreparedStatements() {
  const std::string certificates = absl::StrCat("SELECT ", pg::kCertificates.rows.columns,
                                                " FROM certificates WHERE ", pg::kTenantFirst);
  const std::string authenticated =
      absl::StrCat("SELECT ", kAuthenticatedRows.columns, " FROM av_authenticate");
  return {
      {kTenantById,
       absl::StrCat("SELECT ", kTenants.rows.columns, " FROM tenants WHERE ", pg::kTenantFirst)},
      {kAccountsOfTenant, absl::StrCat("SELECT ", pg::kAccounts.rows.columns,
                                       " FROM accounts WHERE ", pg::kTenantFirst, " ORDER BY id")},
      {kCertificateById, absl::StrCat(certificates, " AND id = $2")},
      {kOrderById, absl::StrCat("SELECT ", pg::kOrders.rows.columns, " FROM orders WHERE ",
                                pg::kTenantFirst, " AND id = $2")},
      {kCertificateBySerial, absl::StrCat(certificates, " AND serial = lower($2)")},
      {kCurrentCertificate,
       absl::StrCat(certificates, " AND identifiers_hash = ", pg::IdentifiersHashOf(2),
                    " AND revoked_at IS NULL AND not_after > av_ts($3) "
                    "ORDER BY not_after DESC LIMIT 1")},
      // Row-level security shows the tenant its own row only: no "id =" needed (or allowed,
      // see pg::kTenantFirst).
      {kTenantExists, absl::StrCat("SELECT 1 FROM tenants WHERE ", pg::kTenantFirst)},
      {kAuthenticateToken, absl::StrCat(authenticated, "(NULL, $1, av_ts($2))")},
      {kAuthenticateSpiffe, absl::StrCat(authenticated, "($1, NULL, av_ts($2))")},
      {kLookupChallenge,
       "SELECT k FROM (SELECT av_lookup_challenge($1) AS k) AS x WHERE k IS NOT NULL"},
      {kAuditStatement, AuditInsertSql()},
  };
}

namespace {

// The schema check of Create and CheckHealth (storage/migrate.h CheckSchemaVersion).
absl::Status CheckSchema(PostgresPool& pool) {
  int version = 0;
  int oldest_admitted = 0;
  RETURN_IF_ERROR(pool.Run("checking the schema", {}, [&](pqxx::dbtransaction& tx) {
    pqxx::row v = tx.exec1(
        "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0 "
        "ELSE (SELECT coalesce(max(version), 0) FROM schema_version) END");
    version = v[0].as<int>();
    if (version > LatestSchemaVersion()) {
      oldest_admitted =
          pg::Exec1(tx, "SELECT coalesce(max(coalesce(compatible_from, version)), 0) "
                          "FROM schema_version WHERE version > $1",
                          LatestSchemaVersion())[0]
              .as<int>();
    }
    return absl::OkStatus();
  }));
  return CheckSchemaVersion(version, oldest_admitted, LatestSchemaVersion());
}

}  // namespace

absl::Status PostgresStore::CheckHealth() { return CheckSchema(*pool_); }

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Create(PostgresStoreOptions options,
                                                                     KekSet keks) {
  // First, before any connection: no key-encryption key, no vault.
  ASSIGN_OR_RETURN(Envelope envelope, Envelope::Create(std::move(keks)));
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  for (auto& statement : PreparedStatements()) {
    options.pool.prepared_statements.push_back(std::move(statement));
  }
  ASSIGN_OR_RETURN(auto pool, PostgresPool::Create(options.pool));
  bool bypasses = false;
  RETURN_IF_ERROR(pool->Run("checking the database", {}, [&](pqxx::dbtransaction& tx) {
    pqxx::row role =
        tx.exec1("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user");
    bypasses = role[0].as<bool>();
    return absl::OkStatus();
  }));
  if (bypasses && options.require_row_security) {
    return absl::FailedPreconditionError(
        "the database role bypasses row-level security (superuser or BYPASSRLS); connect as "
        "a member of acmevault_app");
  }
  RETURN_IF_ERROR(CheckSchema(*pool));
  return std::unique_ptr<PostgresStore>(
      new PostgresStore(std::move(options), std::move(envelope), std::move(pool)));
}

absl::Status PostgresStore::InTenant(absl::string_view op, const Scope& scope,
                                     const PostgresPool::Body& body, bool snapshot) {
  if (scope.tenant <= 0) return absl::InvalidArgumentError(absl::StrCat(op, ": no tenant"));
  PostgresPool::TxOptions tx_options;
  tx_options.tenant = scope.tenant;
  tx_options.snapshot = snapshot;
  // Row-level security shows the transaction its own tenant's row, if that exists: asked in
  // the round trip that sets the tenant, which is the body's first.
  tx_options.first_prepared = kTenantExists;
  tx_options.check_first = [&](const pqxx::result& tenant_row) {
    return tenant_row.empty() ? pg::NoSuch(kTenants.noun, scope.tenant) : absl::OkStatus();
  };
  return pool_->Run(op, tx_options, [&](pqxx::dbtransaction& tx) -> absl::Status {
    return WithAuditBatch(tx, scope.tenant, body);
  });
}

std::string EncodeRevocation(const Revocation& revocation) {
  if (!revocation.identity.has_value()) return absl::StrCat(revocation.tenant);
  return absl::StrCat(revocation.tenant, " ", *revocation.identity);
}

std::optional<Revocation> DecodeRevocation(absl::string_view payload) {
  std::vector<absl::string_view> parts = absl::StrSplit(payload, ' ');
  Revocation out;
  if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &out.tenant) || out.tenant <= 0) {
    return std::nullopt;
  }
  if (parts.size() == 2) {
    IdentityId id = 0;
    if (!absl::SimpleAtoi(parts[1], &id) || id <= 0) return std::nullopt;
    out.identity = id;
  }
  return out;
}

absl::Status PostgresStore::RequireTenant(absl::string_view op, const Scope& scope) {
  return pool_->RunStatement(op, [&](pqxx::nontransaction& tx) -> absl::Status {
    if (tx.exec_prepared(kTenantExists, absl::StrCat(scope.tenant)).empty()) {
      return pg::NoSuch(kTenants.noun, scope.tenant);
    }
    return absl::OkStatus();
  });
}

absl::Time PostgresStore::Now() const { return TruncateToMicros(options_.clock->Now()); }

// ---------------------------------------------------------------------------------------------
// TenantStore

absl::StatusOr<Tenant> PostgresStore::CreateTenant(const Actor& actor, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  const absl::Time now = Now();
  auto created = AcrossTenants<
      Tenant>("CreateTenant", [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Tenant> {
    const TenantPolicy& p = spec.policy;
    TenantId id =
        pg::Exec1(tx,
              "SELECT av_create_tenant($1, $2::text[], $3, $4, $5, $6, $7, $8, av_ts($9))",
              spec.name, ArrayParam(spec.allowed_identifiers),
              std::string(crypto::KeyAlgorithmName(p.key_algorithm)),
              absl::ToInt64Seconds(p.max_key_age), p.deactivate_authorizations_after_issuance,
              p.ephemeral_accounts, absl::ToInt64Seconds(p.renewal_window), spec.acme_directory_url,
              Micros(now))[0]
            .as<int64_t>();
    // The rest of the transaction is confined to the new tenant.
    pg::Exec(tx, "SELECT set_config('acmevault.tenant_id', $1, true)", std::to_string(id));
    // av_create_tenant (0004) predates the column; the app role sets it, confined as above.
    pg::Exec0(tx,
        "UPDATE tenants SET key_storage = $2, certificate_key_algorithms = $3::text[] "
        "WHERE id = $1",
        id, std::string(KeyStorageName(p.key_storage)),
        ArrayParam(pg::KeyAlgorithmNames(p.certificate_key_algorithms)));
    ASSIGN_OR_RETURN(Tenant out, GetById(tx, kTenants, id));
    Audit(tx, Scope{id, actor}, now, rules::TenantEvent("CreateTenant", spec));
    return out;
  });
  // The only unique constraint a new tenant can meet is its name's.
  if (absl::IsAlreadyExists(created.status())) return rules::TenantNameTaken(spec.name);
  return created;
}

absl::StatusOr<Tenant> PostgresStore::GetTenant(const Scope& scope) {
  return ReadInTenant<Tenant>(
      "GetTenant", scope, [&](pqxx::nontransaction& tx, const std::string& tenant) {
        return FirstOf(tx.exec_prepared(kTenantById, tenant), TenantOf,
                       pg::NoSuch(kTenants.noun, scope.tenant));
      });
}

absl::StatusOr<Tenant> PostgresStore::FindTenantByName(absl::string_view name) {
  return AcrossTenants<Tenant>("FindTenantByName", [&](pqxx::dbtransaction& tx) {
    return FirstOf(
        pg::Exec(tx, absl::StrCat("SELECT ", kTenants.rows.columns, " FROM av_find_tenant($1)"),
                       std::string(name)),
        TenantOf, absl::NotFoundError(absl::StrCat("tenant \"", name, "\" not found")));
  });
}

absl::StatusOr<Tenant> PostgresStore::UpdateTenant(const Scope& scope, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  const absl::Time now = Now();
  auto updated = InTenant<
      Tenant>("UpdateTenant", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Tenant> {
    const TenantPolicy& p = spec.policy;
    Tenant out = TenantOf(pg::Exec1(tx,
        absl::StrCat(
            "UPDATE tenants SET name = $2, allowed_identifiers = $3::text[], key_algorithm = $4, "
            "max_key_age_seconds = $5, deactivate_authorizations_after_issuance = $6, "
            "ephemeral_accounts = $7, renewal_window_seconds = $8, acme_directory_url = $9, "
            "updated_at = av_ts($10), key_storage = $11, certificate_key_algorithms = $12::text[] "
            "WHERE id = $1 RETURNING ",
            kTenants.rows.columns),
        scope.tenant, spec.name, ArrayParam(spec.allowed_identifiers),
        std::string(crypto::KeyAlgorithmName(p.key_algorithm)), absl::ToInt64Seconds(p.max_key_age),
        p.deactivate_authorizations_after_issuance, p.ephemeral_accounts,
        absl::ToInt64Seconds(p.renewal_window), spec.acme_directory_url, Micros(now),
        std::string(KeyStorageName(p.key_storage)),
        ArrayParam(pg::KeyAlgorithmNames(p.certificate_key_algorithms))));
    Audit(tx, scope, now, rules::TenantEvent("UpdateTenant", spec));
    return out;
  });
  if (absl::IsAlreadyExists(updated.status())) return rules::TenantNameTaken(spec.name);
  return updated;
}

absl::Status PostgresStore::DisableTenant(const Scope& scope) {
  const absl::Time now = Now();
  return InTenant("DisableTenant", scope, [&](pqxx::dbtransaction& tx) {
    pqxx::result r = pg::Exec(tx,
        "UPDATE tenants SET disabled_at = av_ts($2), updated_at = av_ts($2) "
        "WHERE id = $1 AND disabled_at IS NULL RETURNING id",
        scope.tenant, Micros(now));
    // No row: already disabled (idempotent); InTenant saw that the tenant exists.
    if (!r.empty()) {
      Audit(tx, scope, now, rules::SimpleEvent("DisableTenant", ""));
      pg::Notify(tx, kIdentitiesChannel, EncodeRevocation(Revocation{scope.tenant, std::nullopt}));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<Page<Tenant>> PostgresStore::ListTenants(const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  return AcrossTenants<Page<Tenant>>("ListTenants", [&](pqxx::dbtransaction& tx) {
    return pg::PageOf(pg::Exec(tx, absl::StrCat("SELECT ", kTenants.rows.columns,
                                                  " FROM av_list_tenants($1, $2)"),
                                     after, limit + 1),
                      TenantOf, limit, TenantToken);
  });
}

// ---------------------------------------------------------------------------------------------
// IdentityStore

absl::StatusOr<Identity> PostgresStore::AddSpiffeIdentity(const Scope& scope,
                                                          absl::string_view spiffe_id, Role role,
                                                          absl::string_view description) {
  RETURN_IF_ERROR(rules::ValidateSpiffeId(spiffe_id));
  const absl::Time now = Now();
  return InTenant<Identity>(
      "AddSpiffeIdentity", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Identity> {
        Identity out = IdentityOf(pg::Exec1(tx,
            absl::StrCat("INSERT INTO identities (tenant_id, role, spiffe_id, description, "
                         "created_at) VALUES ($1, $2, $3, $4, av_ts($5)) RETURNING ",
                         kIdentities.rows.columns),
            scope.tenant, std::string(RoleName(role)), std::string(spiffe_id),
            std::string(description), Micros(now)));
        Audit(tx, scope, now,
              rules::SimpleEvent(
                  "AddSpiffeIdentity",
                  absl::StrCat("identity ", out.id, " ", spiffe_id, " as ", RoleName(role))));
        return out;
      });
}

absl::StatusOr<Identity> PostgresStore::AddTokenIdentity(const Scope& scope,
                                                         absl::string_view token_sha256, Role role,
                                                         absl::string_view description,
                                                         std::optional<absl::Time> expires_at) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  const absl::Time now = Now();
  RETURN_IF_ERROR(rules::ValidateTokenExpiry(expires_at, now));
  std::optional<int64_t> expires_us;
  if (expires_at.has_value()) expires_us = Micros(*expires_at);
  return InTenant<Identity>(
      "AddTokenIdentity", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Identity> {
        Identity out = IdentityOf(pg::Exec1(tx,
            absl::StrCat("INSERT INTO identities (tenant_id, role, token_sha256, description, "
                         "created_at, expires_at) VALUES ($1, $2, $3, $4, av_ts($5), av_ts($6)) "
                         "RETURNING ",
                         kIdentities.rows.columns),
            scope.tenant, std::string(RoleName(role)), Bytes(token_sha256),
            std::string(description), Micros(now), Nullable(OptionalParam(expires_us))));
        Audit(tx, scope, now, rules::TokenAddedEvent(out));
        return out;
      });
}

absl::StatusOr<Identity> PostgresStore::AuthenticateSpiffe(absl::string_view spiffe_id) {
  const absl::Time now = Now();
  return Statement<Identity>("AuthenticateSpiffe", [&](pqxx::nontransaction& tx) {
    return FirstOf(tx.exec_prepared(kAuthenticateSpiffe, std::string(spiffe_id), Micros(now)),
                   IdentityOf, absl::NotFoundError("unknown or revoked SPIFFE ID"));
  });
}

absl::StatusOr<Identity> PostgresStore::AuthenticateToken(absl::string_view token_sha256) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  const absl::Time now = Now();
  return Statement<Identity>("AuthenticateToken", [&](pqxx::nontransaction& tx) {
    return FirstOf(tx.exec_prepared(kAuthenticateToken, Bytes(token_sha256), Micros(now)),
                   IdentityOf, absl::NotFoundError("unknown, revoked or expired token"));
  });
}

absl::Status PostgresStore::RevokeIdentity(const Scope& scope, IdentityId id) {
  const absl::Time now = Now();
  return InTenant("RevokeIdentity", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    pqxx::result r = pg::Exec(tx,
        "UPDATE identities SET revoked_at = av_ts($2) WHERE id = $1 AND revoked_at IS NULL "
        "RETURNING id",
        id, Micros(now));
    if (r.empty()) return RequireRow(tx, kIdentities, id);  // OK: already revoked
    Audit(tx, scope, now, rules::SimpleEvent("RevokeIdentity", absl::StrCat("identity ", id)));
    pg::Notify(tx, kIdentitiesChannel, EncodeRevocation(Revocation{scope.tenant, id}));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Identity>> PostgresStore::ListIdentities(const Scope& scope) {
  return InTenant<std::vector<Identity>>("ListIdentities", scope, [&](pqxx::dbtransaction& tx) {
    return pg::AllOf(
        tx.exec(absl::StrCat("SELECT ", kIdentities.rows.columns, " FROM identities ORDER BY id")),
        IdentityOf);
  });
}

}  // namespace acmevault::storage
