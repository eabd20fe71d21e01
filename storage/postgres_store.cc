#include "storage/postgres_store.h"

#include <functional>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "storage/migrate.h"
#include "storage/rules.h"

namespace acmevault::storage {
namespace {

// ---------------------------------------------------------------------------------------------
// Parameters and fields. Times travel as microseconds since the epoch (av_ts / av_us in SQL),
// arrays as text[] literals, bytes as bytea.

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

// A text parameter that may be NULL. The returned pointer borrows `s`.
const char* Nullable(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

template <typename T>
std::optional<std::string> OptionalParam(const std::optional<T>& v) {
  if (!v.has_value()) return std::nullopt;
  return absl::StrCat(*v);
}

std::optional<std::string> NonEmpty(absl::string_view s) {
  if (s.empty()) return std::nullopt;
  return std::string(s);
}

// A text[] literal: every element double-quoted, with '"' and '\' escaped.
std::string ArrayParam(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

pqxx::binarystring Bytes(absl::string_view s) { return pqxx::binarystring(s.data(), s.size()); }

absl::Time TimeOf(const pqxx::field& f) { return absl::FromUnixMicros(f.as<int64_t>()); }

std::optional<absl::Time> OptionalTime(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return TimeOf(f);
}

template <typename T>
std::optional<T> OptionalValue(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<T>();
}

std::string TextOf(const pqxx::field& f) { return f.is_null() ? "" : f.as<std::string>(); }

std::string BytesOf(const pqxx::field& f) { return pqxx::binarystring(f).str(); }

std::vector<std::string> ArrayOf(const pqxx::field& f) {
  std::vector<std::string> out;
  pqxx::array_parser parser = f.as_array();
  for (auto step = parser.get_next(); step.first != pqxx::array_parser::done;
       step = parser.get_next()) {
    if (step.first == pqxx::array_parser::string_value) out.push_back(std::move(step.second));
  }
  return out;
}

// Enumerations stored as text. The schema's CHECK constraints admit only valid names, so a
// failure here is corruption: thrown, and reported by PostgresPool::Run as INTERNAL.
template <typename T>
T Known(absl::StatusOr<T> parsed) {
  if (!parsed.ok()) throw std::runtime_error(std::string(parsed.status().message()));
  return *std::move(parsed);
}

// ---------------------------------------------------------------------------------------------
// Rows

constexpr char kTenantColumns[] =
    "id, name, allowed_identifiers, key_algorithm, max_key_age_seconds, "
    "deactivate_authorizations_after_issuance, ephemeral_accounts, renewal_window_seconds, "
    "acme_directory_url, av_us(created_at), av_us(updated_at), av_us(disabled_at)";

Tenant TenantOf(const pqxx::row& r) {
  Tenant t;
  t.id = r[0].as<int64_t>();
  t.spec.name = r[1].as<std::string>();
  t.spec.allowed_identifiers = ArrayOf(r[2]);
  t.spec.policy.key_algorithm = Known(crypto::ParseKeyAlgorithm(r[3].as<std::string>()));
  t.spec.policy.max_key_age = absl::Seconds(r[4].as<int64_t>());
  t.spec.policy.deactivate_authorizations_after_issuance = r[5].as<bool>();
  t.spec.policy.ephemeral_accounts = r[6].as<bool>();
  t.spec.policy.renewal_window = absl::Seconds(r[7].as<int64_t>());
  t.spec.acme_directory_url = r[8].as<std::string>();
  t.created_at = TimeOf(r[9]);
  t.updated_at = TimeOf(r[10]);
  t.disabled_at = OptionalTime(r[11]);
  return t;
}

constexpr char kIdentityColumns[] =
    "id, tenant_id, role, spiffe_id, token_sha256 IS NOT NULL, description, av_us(created_at), "
    "av_us(revoked_at)";
// The same shape from av_authenticate_*, which return live identities only.
constexpr char kAuthenticatedColumns[] =
    "id, tenant_id, role, spiffe_id, bearer_token, description, av_us(created_at), NULL::bigint";

Identity IdentityOf(const pqxx::row& r) {
  Identity i;
  i.id = r[0].as<int64_t>();
  i.tenant = r[1].as<int64_t>();
  i.role = Known(ParseRole(r[2].as<std::string>()));
  i.spiffe_id = TextOf(r[3]);
  i.bearer_token = r[4].as<bool>();
  i.description = r[5].as<std::string>();
  i.created_at = TimeOf(r[6]);
  i.revoked_at = OptionalTime(r[7]);
  return i;
}

constexpr char kAccountColumns[] =
    "id, tenant_id, directory_url, account_url, status, av_us(created_at), "
    "av_us(deactivated_at)";

Account AccountOf(const pqxx::row& r) {
  Account a;
  a.id = r[0].as<int64_t>();
  a.tenant = r[1].as<int64_t>();
  a.directory_url = r[2].as<std::string>();
  a.account_url = TextOf(r[3]);
  a.status = Known(ParseAccountStatus(r[4].as<std::string>()));
  a.created_at = TimeOf(r[5]);
  a.deactivated_at = OptionalTime(r[6]);
  return a;
}

constexpr char kKeyColumns[] =
    "account_id, version, state, algorithm, public_jwk, thumbprint, kek_id, av_us(created_at), "
    "av_us(activated_at), av_us(retired_at), av_us(compromised_at)";
// kKeyColumns followed by the sealed material, for the calls that unseal.
constexpr char kSealedKeyColumns[] =
    "account_id, version, state, algorithm, public_jwk, thumbprint, kek_id, av_us(created_at), "
    "av_us(activated_at), av_us(retired_at), av_us(compromised_at), wrapped_data_key, "
    "sealed_private_key";

AccountKey AccountKeyOf(const pqxx::row& r) {
  AccountKey k;
  k.account = r[0].as<int64_t>();
  k.version = r[1].as<int>();
  k.state = Known(ParseKeyState(r[2].as<std::string>()));
  k.algorithm = Known(crypto::ParseKeyAlgorithm(r[3].as<std::string>()));
  k.public_key.public_jwk = r[4].as<std::string>();
  k.public_key.thumbprint = r[5].as<std::string>();
  k.kek_id = r[6].as<std::string>();
  k.created_at = TimeOf(r[7]);
  k.activated_at = OptionalTime(r[8]);
  k.retired_at = OptionalTime(r[9]);
  k.compromised_at = OptionalTime(r[10]);
  return k;
}

constexpr char kOrderColumns[] =
    "id, tenant_id, account_id, identifiers, acme_url, state, idempotency_key, lease_owner, "
    "av_us(lease_expires_at), fencing_token, certificate_id, error, av_us(created_at), "
    "av_us(updated_at), csr_der, kek_id IS NOT NULL";

Order OrderOf(const pqxx::row& r) {
  Order o;
  o.id = r[0].as<int64_t>();
  o.tenant = r[1].as<int64_t>();
  o.account = r[2].as<int64_t>();
  o.identifiers = ArrayOf(r[3]);
  o.acme_url = TextOf(r[4]);
  o.state = Known(ParseOrderState(r[5].as<std::string>()));
  o.idempotency_key = TextOf(r[6]);
  o.lease_owner = TextOf(r[7]);
  o.lease_expires_at = OptionalTime(r[8]);
  o.fencing_token = r[9].as<int64_t>();
  o.certificate = OptionalValue<int64_t>(r[10]);
  o.error = r[11].as<std::string>();
  o.created_at = TimeOf(r[12]);
  o.updated_at = TimeOf(r[13]);
  o.csr_der = r[14].is_null() ? "" : BytesOf(r[14]);
  o.has_certificate_key = r[15].as<bool>();
  return o;
}

constexpr char kAuthorizationColumns[] =
    "id, tenant_id, account_id, order_id, url, identifier, status, av_us(expires_at), "
    "av_us(deactivated_at), av_us(updated_at)";

Authorization AuthorizationOf(const pqxx::row& r) {
  Authorization a;
  a.id = r[0].as<int64_t>();
  a.tenant = r[1].as<int64_t>();
  a.record.account = r[2].as<int64_t>();
  a.record.order = OptionalValue<int64_t>(r[3]);
  a.record.url = r[4].as<std::string>();
  a.record.identifier = r[5].as<std::string>();
  a.record.status = Known(ParseAuthorizationStatus(r[6].as<std::string>()));
  a.record.expires_at = OptionalTime(r[7]);
  a.deactivated_at = OptionalTime(r[8]);
  a.updated_at = TimeOf(r[9]);
  return a;
}

constexpr char kCertificateColumns[] =
    "id, tenant_id, account_id, order_id, identifiers, serial, av_us(not_before), "
    "av_us(not_after), chain_pem, account_key_version, kek_id IS NOT NULL, av_us(revoked_at), "
    "revocation_reason, av_us(superseded_at), av_us(created_at)";

Certificate CertificateOf(const pqxx::row& r) {
  Certificate c;
  c.id = r[0].as<int64_t>();
  c.tenant = r[1].as<int64_t>();
  c.account = OptionalValue<int64_t>(r[2]);
  c.order = OptionalValue<int64_t>(r[3]);
  c.identifiers = ArrayOf(r[4]);
  c.serial = r[5].as<std::string>();
  c.not_before = TimeOf(r[6]);
  c.not_after = TimeOf(r[7]);
  c.chain_pem = r[8].as<std::string>();
  c.account_key_version = OptionalValue<int>(r[9]);
  c.has_private_key = r[10].as<bool>();
  c.revoked_at = OptionalTime(r[11]);
  if (auto code = OptionalValue<int>(r[12])) {
    c.revocation_reason = crypto::RevocationReasonFromCode(*code);
  }
  c.superseded_at = OptionalTime(r[13]);
  c.created_at = TimeOf(r[14]);
  return c;
}

constexpr char kAuditColumns[] =
    "tenant_id, seq, av_us(at), actor, rpc, action, identifiers, account_id, key_version, "
    "acme_url, outcome, detail, prev_hash, hash";

AuditRecord AuditRecordOf(const pqxx::row& r) {
  AuditRecord a;
  a.tenant = r[0].as<int64_t>();
  a.seq = r[1].as<int64_t>();
  a.at = TimeOf(r[2]);
  a.actor.identity = r[3].as<std::string>();
  a.actor.rpc = r[4].as<std::string>();
  a.event.action = r[5].as<std::string>();
  a.event.identifiers = ArrayOf(r[6]);
  a.event.account = OptionalValue<int64_t>(r[7]);
  a.event.key_version = OptionalValue<int>(r[8]);
  a.event.acme_url = r[9].as<std::string>();
  a.event.outcome = r[10].as<std::string>();
  a.event.detail = r[11].as<std::string>();
  a.prev_hash = BytesOf(r[12]);
  a.hash = BytesOf(r[13]);
  return a;
}

// The columns that hold a sealed key in certificates and orders (all NULL when there is none),
// selected after the row's own columns.
constexpr char kSealedColumns[] = "kek_id, wrapped_data_key, sealed_private_key";

std::optional<SealedKey> SealedKeyOf(const pqxx::row& r) {
  if (r["kek_id"].is_null()) return std::nullopt;
  return SealedKey{r["kek_id"].as<std::string>(), BytesOf(r["wrapped_data_key"]),
                   BytesOf(r["sealed_private_key"])};
}

// ---------------------------------------------------------------------------------------------
// Statements used by several methods

// Appends to the tenant's audit chain in the caller's transaction; the trigger of migration
// 0005 assigns seq, prev_hash and hash.
void Audit(pqxx::work& tx, const Scope& scope, absl::Time at, const AuditEvent& e) {
  tx.exec_params0(
      "INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, "
      "key_version, acme_url, outcome, detail) "
      "VALUES ($1, av_ts($2), $3, $4, $5, $6::text[], $7, $8, $9, $10, $11)",
      scope.tenant, Micros(at), scope.actor.identity, scope.actor.rpc, e.action,
      ArrayParam(e.identifiers), Nullable(OptionalParam(e.account)),
      Nullable(OptionalParam(e.key_version)), e.acme_url, e.outcome, e.detail);
}

absl::Status NoSuch(absl::string_view what, int64_t id) {
  return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
}

// The order, locked for this transaction. NOT_FOUND if it is not the tenant's.
absl::StatusOr<Order> LockOrder(pqxx::work& tx, OrderId id) {
  pqxx::result r = tx.exec_params(
      absl::StrCat("SELECT ", kOrderColumns, " FROM orders WHERE id = $1 FOR UPDATE"), id);
  if (r.empty()) return NoSuch("order", id);
  return OrderOf(r[0]);
}

// Locks the account row: key changes of one account are serialised on it.
absl::StatusOr<Account> LockAccount(pqxx::work& tx, AccountId id) {
  pqxx::result r = tx.exec_params(
      absl::StrCat("SELECT ", kAccountColumns, " FROM accounts WHERE id = $1 FOR UPDATE"), id);
  if (r.empty()) return NoSuch("account", id);
  return AccountOf(r[0]);
}

using Query = std::function<pqxx::result(pqxx::work&)>;

// The first row of `query`, parsed; `missing` if there is none.
template <typename T>
absl::StatusOr<T> FetchOne(PostgresPool& pool, absl::string_view op,
                           const PostgresPool::TxOptions& options, const Query& query,
                           T (*parse)(const pqxx::row&), const absl::Status& missing) {
  T out;
  RETURN_IF_ERROR(pool.Run(op, options, [&](pqxx::work& tx) {
    pqxx::result r = query(tx);
    if (r.empty()) return missing;
    out = parse(r[0]);
    return absl::OkStatus();
  }));
  return out;
}

// Every row of `query`, parsed.
template <typename T>
absl::StatusOr<std::vector<T>> FetchAll(PostgresPool& pool, absl::string_view op,
                                        const PostgresPool::TxOptions& options,
                                        const Query& query, T (*parse)(const pqxx::row&)) {
  std::vector<T> out;
  RETURN_IF_ERROR(pool.Run(op, options, [&](pqxx::work& tx) {
    out.clear();
    for (const pqxx::row& r : query(tx)) out.push_back(parse(r));
    return absl::OkStatus();
  }));
  return out;
}

// A page of `limit` items. `query` is asked for limit + 1 rows: the extra one only says that
// there is a next page, whose token is `token_of` the last item returned.
template <typename T>
absl::StatusOr<Page<T>> FetchPage(PostgresPool& pool, absl::string_view op,
                                  const PostgresPool::TxOptions& options, const Query& query,
                                  T (*parse)(const pqxx::row&), int limit,
                                  std::string (*token_of)(const T&)) {
  Page<T> out;
  RETURN_IF_ERROR(pool.Run(op, options, [&](pqxx::work& tx) {
    out = {};
    for (const pqxx::row& r : query(tx)) {
      if (static_cast<int>(out.items.size()) == limit) {
        out.next_page_token = token_of(out.items.back());
        break;
      }
      out.items.push_back(parse(r));
    }
    return absl::OkStatus();
  }));
  return out;
}

std::string TenantToken(const Tenant& t) { return rules::EncodeIdToken(t.id); }
std::string CertificateToken(const Certificate& c) { return rules::EncodeIdToken(c.id); }
std::string AuditToken(const AuditRecord& a) { return rules::EncodeIdToken(a.seq); }
std::string DueToken(const DueCertificate& d) { return rules::EncodeDueToken(d.not_after, d.id); }

DueCertificate DueCertificateOf(const pqxx::row& r) {
  return DueCertificate{r[0].as<int64_t>(), r[1].as<int64_t>(), ArrayOf(r[2]), TimeOf(r[3])};
}

std::string TextOfRow(const pqxx::row& r) { return r[0].as<std::string>(); }

// The leased order, locked, if the lease is still current (rules::CheckLease).
absl::StatusOr<Order> LockLeasedOrder(pqxx::work& tx, const Scope& scope, const Lease& lease) {
  ASSIGN_OR_RETURN(Order o, LockOrder(tx, lease.order));
  RETURN_IF_ERROR(rules::CheckLease(scope, o, lease));
  return o;
}

absl::StatusOr<KeyState> KeyStateOf(pqxx::work& tx, AccountId account, int version) {
  pqxx::result r = tx.exec_params(
      "SELECT state FROM account_keys WHERE account_id = $1 AND version = $2", account, version);
  if (r.empty()) {
    return absl::NotFoundError(
        absl::StrCat("account ", account, " has no key version ", version));
  }
  return Known(ParseKeyState(r[0][0].as<std::string>()));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction

PostgresStore::PostgresStore(PostgresStoreOptions options, Envelope envelope,
                             std::unique_ptr<PostgresPool> pool)
    : options_(std::move(options)), envelope_(std::move(envelope)), pool_(std::move(pool)) {}

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Create(PostgresStoreOptions options,
                                                                     KekSet keks) {
  // First, before any connection: no key-encryption key, no vault.
  ASSIGN_OR_RETURN(Envelope envelope, Envelope::Create(std::move(keks)));
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  ASSIGN_OR_RETURN(auto pool, PostgresPool::Create(options.pool));
  bool bypasses = false;
  int version = 0;
  int oldest_admitted = 0;
  RETURN_IF_ERROR(pool->Run("checking the database", {}, [&](pqxx::work& tx) {
    pqxx::row role = tx.exec1(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user");
    bypasses = role[0].as<bool>();
    pqxx::row v = tx.exec1(
        "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0 "
        "ELSE (SELECT coalesce(max(version), 0) FROM schema_version) END");
    version = v[0].as<int>();
    if (version > LatestSchemaVersion()) {
      oldest_admitted =
          tx.exec_params1("SELECT coalesce(max(coalesce(compatible_from, version)), 0) "
                          "FROM schema_version WHERE version > $1",
                          LatestSchemaVersion())[0]
              .as<int>();
    }
    return absl::OkStatus();
  }));
  if (bypasses && options.require_row_security) {
    return absl::FailedPreconditionError(
        "the database role bypasses row-level security (superuser or BYPASSRLS); connect as "
        "a member of acmevault_app");
  }
  RETURN_IF_ERROR(CheckSchemaVersion(version, oldest_admitted, LatestSchemaVersion()));
  return std::unique_ptr<PostgresStore>(
      new PostgresStore(std::move(options), std::move(envelope), std::move(pool)));
}

absl::Status PostgresStore::InTenant(absl::string_view op, const Scope& scope,
                                     const PostgresPool::Body& body) {
  if (scope.tenant <= 0) return absl::InvalidArgumentError(absl::StrCat(op, ": no tenant"));
  PostgresPool::TxOptions tx_options;
  tx_options.tenant = scope.tenant;
  return pool_->Run(op, tx_options, body);
}

PostgresPool::TxOptions PostgresStore::In(const Scope& scope) {
  PostgresPool::TxOptions options;
  options.tenant = scope.tenant;
  return options;
}

absl::Time PostgresStore::Now() const { return TruncateToMicros(options_.clock->Now()); }

// ---------------------------------------------------------------------------------------------
// TenantStore

absl::StatusOr<Tenant> PostgresStore::CreateTenant(const Actor& actor, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  Tenant out;
  const absl::Time now = Now();
  absl::Status created = pool_->Run("CreateTenant", {}, [&](pqxx::work& tx) {
    const TenantPolicy& p = spec.policy;
    TenantId id =
        tx.exec_params1(
              "SELECT av_create_tenant($1, $2::text[], $3, $4, $5, $6, $7, $8, av_ts($9))",
              spec.name, ArrayParam(spec.allowed_identifiers),
              std::string(crypto::KeyAlgorithmName(p.key_algorithm)),
              absl::ToInt64Seconds(p.max_key_age), p.deactivate_authorizations_after_issuance,
              p.ephemeral_accounts, absl::ToInt64Seconds(p.renewal_window),
              spec.acme_directory_url, Micros(now))[0]
            .as<int64_t>();
    // The rest of the transaction is confined to the new tenant.
    tx.exec_params("SELECT set_config('acmevault.tenant_id', $1, true)", std::to_string(id));
    out = TenantOf(tx.exec_params1(
        absl::StrCat("SELECT ", kTenantColumns, " FROM tenants WHERE id = $1"), id));
    Audit(tx, Scope{id, actor}, now, rules::TenantEvent("CreateTenant", spec));
    return absl::OkStatus();
  });
  // The only unique constraint a new tenant can meet is its name's.
  if (absl::IsAlreadyExists(created)) return rules::TenantNameTaken(spec.name);
  RETURN_IF_ERROR(created);
  return out;
}

absl::StatusOr<Tenant> PostgresStore::GetTenant(const Scope& scope) {
  return FetchOne<Tenant>(
      *pool_, "GetTenant", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kTenantColumns, " FROM tenants WHERE id = $1"), scope.tenant);
      },
      TenantOf, NoSuch("tenant", scope.tenant));
}

absl::StatusOr<Tenant> PostgresStore::FindTenantByName(absl::string_view name) {
  return FetchOne<Tenant>(
      *pool_, "FindTenantByName", {},
      [&](pqxx::work& tx) {
        return tx.exec_params(absl::StrCat("SELECT ", kTenantColumns, " FROM av_find_tenant($1)"),
                              std::string(name));
      },
      TenantOf, absl::NotFoundError(absl::StrCat("tenant \"", name, "\" not found")));
}

absl::StatusOr<Tenant> PostgresStore::UpdateTenant(const Scope& scope, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  Tenant out;
  const absl::Time now = Now();
  absl::Status updated = InTenant("UpdateTenant", scope, [&](pqxx::work& tx) {
    const TenantPolicy& p = spec.policy;
    pqxx::result r = tx.exec_params(
        absl::StrCat(
            "UPDATE tenants SET name = $2, allowed_identifiers = $3::text[], key_algorithm = $4, "
            "max_key_age_seconds = $5, deactivate_authorizations_after_issuance = $6, "
            "ephemeral_accounts = $7, renewal_window_seconds = $8, acme_directory_url = $9, "
            "updated_at = av_ts($10) WHERE id = $1 RETURNING ",
            kTenantColumns),
        scope.tenant, spec.name, ArrayParam(spec.allowed_identifiers),
        std::string(crypto::KeyAlgorithmName(p.key_algorithm)),
        absl::ToInt64Seconds(p.max_key_age), p.deactivate_authorizations_after_issuance,
        p.ephemeral_accounts, absl::ToInt64Seconds(p.renewal_window), spec.acme_directory_url,
        Micros(now));
    if (r.empty()) return NoSuch("tenant", scope.tenant);
    out = TenantOf(r[0]);
    Audit(tx, scope, now, rules::TenantEvent("UpdateTenant", spec));
    return absl::OkStatus();
  });
  if (absl::IsAlreadyExists(updated)) return rules::TenantNameTaken(spec.name);
  RETURN_IF_ERROR(updated);
  return out;
}

absl::Status PostgresStore::DisableTenant(const Scope& scope) {
  const absl::Time now = Now();
  return InTenant("DisableTenant", scope, [&](pqxx::work& tx) {
    pqxx::result r = tx.exec_params(
        "UPDATE tenants SET disabled_at = av_ts($2), updated_at = av_ts($2) "
        "WHERE id = $1 AND disabled_at IS NULL RETURNING id",
        scope.tenant, Micros(now));
    if (r.empty()) {
      // Already disabled (idempotent), or not this tenant.
      if (tx.exec_params("SELECT 1 FROM tenants WHERE id = $1", scope.tenant).empty()) {
        return NoSuch("tenant", scope.tenant);
      }
      return absl::OkStatus();
    }
    Audit(tx, scope, now, rules::SimpleEvent("DisableTenant", ""));
    return absl::OkStatus();
  });
}

absl::StatusOr<Page<Tenant>> PostgresStore::ListTenants(const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  return FetchPage<Tenant>(
      *pool_, "ListTenants", {},
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kTenantColumns, " FROM av_list_tenants($1, $2)"), after,
            limit + 1);
      },
      TenantOf, limit, TenantToken);
}

// ---------------------------------------------------------------------------------------------
// IdentityStore

absl::StatusOr<Identity> PostgresStore::AddSpiffeIdentity(const Scope& scope,
                                                          absl::string_view spiffe_id, Role role,
                                                          absl::string_view description) {
  RETURN_IF_ERROR(rules::ValidateSpiffeId(spiffe_id));
  Identity out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("AddSpiffeIdentity", scope, [&](pqxx::work& tx) {
    out = IdentityOf(tx.exec_params1(
        absl::StrCat("INSERT INTO identities (tenant_id, role, spiffe_id, description, "
                     "created_at) VALUES ($1, $2, $3, $4, av_ts($5)) RETURNING ",
                     kIdentityColumns),
        scope.tenant, std::string(RoleName(role)), std::string(spiffe_id),
        std::string(description), Micros(now)));
    Audit(tx, scope, now,
          rules::SimpleEvent("AddSpiffeIdentity",
                             absl::StrCat("identity ", out.id, " ", spiffe_id, " as ",
                                          RoleName(role))));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Identity> PostgresStore::AddTokenIdentity(const Scope& scope,
                                                         absl::string_view token_sha256,
                                                         Role role,
                                                         absl::string_view description) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  Identity out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("AddTokenIdentity", scope, [&](pqxx::work& tx) {
    out = IdentityOf(tx.exec_params1(
        absl::StrCat("INSERT INTO identities (tenant_id, role, token_sha256, description, "
                     "created_at) VALUES ($1, $2, $3, $4, av_ts($5)) RETURNING ",
                     kIdentityColumns),
        scope.tenant, std::string(RoleName(role)), Bytes(token_sha256),
        std::string(description), Micros(now)));
    Audit(tx, scope, now,
          rules::SimpleEvent("AddTokenIdentity", absl::StrCat("identity ", out.id, " as ",
                                                              RoleName(role))));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Identity> PostgresStore::AuthenticateSpiffe(absl::string_view spiffe_id) {
  return FetchOne<Identity>(
      *pool_, "AuthenticateSpiffe", {},
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kAuthenticatedColumns, " FROM av_authenticate($1, NULL)"),
            std::string(spiffe_id));
      },
      IdentityOf, absl::NotFoundError("unknown or revoked SPIFFE ID"));
}

absl::StatusOr<Identity> PostgresStore::AuthenticateToken(absl::string_view token_sha256) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  return FetchOne<Identity>(
      *pool_, "AuthenticateToken", {},
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kAuthenticatedColumns, " FROM av_authenticate(NULL, $1)"),
            Bytes(token_sha256));
      },
      IdentityOf, absl::NotFoundError("unknown or revoked token"));
}

absl::Status PostgresStore::RevokeIdentity(const Scope& scope, IdentityId id) {
  const absl::Time now = Now();
  return InTenant("RevokeIdentity", scope, [&](pqxx::work& tx) {
    pqxx::result r = tx.exec_params(
        "UPDATE identities SET revoked_at = av_ts($2) WHERE id = $1 AND revoked_at IS NULL "
        "RETURNING id",
        id, Micros(now));
    if (r.empty()) {
      if (tx.exec_params("SELECT 1 FROM identities WHERE id = $1", id).empty()) {
        return NoSuch("identity", id);
      }
      return absl::OkStatus();  // Already revoked.
    }
    Audit(tx, scope, now, rules::SimpleEvent("RevokeIdentity", absl::StrCat("identity ", id)));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Identity>> PostgresStore::ListIdentities(const Scope& scope) {
  return FetchAll<Identity>(
      *pool_, "ListIdentities", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec(absl::StrCat("SELECT ", kIdentityColumns, " FROM identities ORDER BY id"));
      },
      IdentityOf);
}

// ---------------------------------------------------------------------------------------------
// AccountStore

namespace {

// Seals `key` for (tenant, account, version) and inserts it in `state`.
absl::Status InsertKey(pqxx::work& tx, const Envelope& envelope, TenantId tenant,
                       AccountId account, int version, KeyState state,
                       const crypto::PrivateKey& key, const PublicKeyInfo& public_key,
                       absl::Time now) {
  ASSIGN_OR_RETURN(SealedKey sealed,
                   envelope.SealPrivateKey(key, AccountKeyContext(tenant, account, version)));
  tx.exec_params0(
      "INSERT INTO account_keys (tenant_id, account_id, version, state, algorithm, public_jwk, "
      "thumbprint, kek_id, wrapped_data_key, sealed_private_key, created_at, activated_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, av_ts($11), "
      "CASE WHEN $4 = 'active' THEN av_ts($11) END)",
      tenant, account, version, std::string(KeyStateName(state)),
      std::string(crypto::KeyAlgorithmName(key.algorithm())), public_key.public_jwk,
      public_key.thumbprint, sealed.kek_id, Bytes(sealed.wrapped_data_key),
      Bytes(sealed.sealed_private_key), Micros(now));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Account> PostgresStore::CreateAccount(const Scope& scope,
                                                     absl::string_view directory_url,
                                                     const crypto::PrivateKey& key,
                                                     const PublicKeyInfo& public_key,
                                                     KeyState initial_state) {
  RETURN_IF_ERROR(rules::ValidateNewAccount(directory_url, public_key, initial_state));
  Account out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("CreateAccount", scope, [&](pqxx::work& tx) {
    out = AccountOf(tx.exec_params1(
        absl::StrCat("INSERT INTO accounts (tenant_id, directory_url, status, created_at) "
                     "VALUES ($1, $2, 'pending', av_ts($3)) RETURNING ",
                     kAccountColumns),
        scope.tenant, std::string(directory_url), Micros(now)));
    RETURN_IF_ERROR(InsertKey(tx, envelope_, scope.tenant, out.id, 1, initial_state, key,
                              public_key, now));
    Audit(tx, scope, now,
          rules::AccountEvent("CreateAccount", out.id, 1,
                              absl::StrCat("key 1 ", KeyStateName(initial_state), " ",
                                           crypto::KeyAlgorithmName(key.algorithm()))));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Account> PostgresStore::GetAccount(const Scope& scope, AccountId account) {
  return FetchOne<Account>(
      *pool_, "GetAccount", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kAccountColumns, " FROM accounts WHERE id = $1"), account);
      },
      AccountOf, NoSuch("account", account));
}

absl::StatusOr<std::vector<Account>> PostgresStore::ListAccounts(const Scope& scope) {
  return FetchAll<Account>(
      *pool_, "ListAccounts", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec(absl::StrCat("SELECT ", kAccountColumns, " FROM accounts ORDER BY id"));
      },
      AccountOf);
}

absl::Status PostgresStore::RecordAccountUrl(const Scope& scope, AccountId account,
                                             absl::string_view url) {
  RETURN_IF_ERROR(rules::ValidateUrl("account URL", url));
  const absl::Time now = Now();
  return InTenant("RecordAccountUrl", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Account a, LockAccount(tx, account));
    ASSIGN_OR_RETURN(bool write, rules::AccountUrlNeedsWrite(a, url));
    if (!write) return absl::OkStatus();
    tx.exec_params0("UPDATE accounts SET account_url = $2, status = 'valid' WHERE id = $1",
                    account, std::string(url));
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
  return InTenant("SetAccountStatus", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Account a, LockAccount(tx, account));
    RETURN_IF_ERROR(rules::CheckAccountOpen(a, /*already=*/true));
    tx.exec_params0(
        "UPDATE accounts SET status = $2, deactivated_at = av_ts($3) WHERE id = $1", account,
        std::string(AccountStatusName(status)), Micros(now));
    AuditEvent e = rules::AccountEvent("SetAccountStatus", account, std::nullopt,
                                       std::string(AccountStatusName(status)));
    e.acme_url = a.account_url;
    Audit(tx, scope, now, e);
    return absl::OkStatus();
  });
}

absl::StatusOr<AccountKey> PostgresStore::AddPendingKey(const Scope& scope, AccountId account,
                                                        const crypto::PrivateKey& key,
                                                        const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(rules::ValidatePublicKeyInfo(public_key));
  AccountKey out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("AddPendingKey", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Account a, LockAccount(tx, account));
    RETURN_IF_ERROR(rules::CheckAccountOpen(a));
    pqxx::row r = tx.exec_params1(
        "SELECT coalesce(max(version), 0) + 1, coalesce(bool_or(state = 'pending'), false) "
        "FROM account_keys WHERE account_id = $1",
        account);
    if (r[1].as<bool>()) {
      return absl::AlreadyExistsError(
          absl::StrCat("account ", account, " already has a pending key"));
    }
    int version = r[0].as<int>();
    RETURN_IF_ERROR(InsertKey(tx, envelope_, scope.tenant, account, version, KeyState::kPending,
                              key, public_key, now));
    out = AccountKeyOf(tx.exec_params1(
        absl::StrCat("SELECT ", kKeyColumns,
                     " FROM account_keys WHERE account_id = $1 AND version = $2"),
        account, version));
    Audit(tx, scope, now, rules::AccountEvent("AddPendingKey", account, version, ""));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status PostgresStore::PromoteKey(const Scope& scope, AccountId account, int version) {
  const absl::Time now = Now();
  return InTenant("PromoteKey", scope, [&](pqxx::work& tx) -> absl::Status {
    RETURN_IF_ERROR(LockAccount(tx, account).status());
    ASSIGN_OR_RETURN(KeyState state, KeyStateOf(tx, account, version));
    RETURN_IF_ERROR(rules::CheckKeyPending(account, version, state));
    // Retire first: the partial unique index allows one active key at any moment.
    pqxx::result retired = tx.exec_params(
        "UPDATE account_keys SET state = 'retired', retired_at = av_ts($2) "
        "WHERE account_id = $1 AND state = 'active' RETURNING version",
        account, Micros(now));
    tx.exec_params0(
        "UPDATE account_keys SET state = 'active', activated_at = av_ts($3) "
        "WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now,
          rules::AccountEvent("PromoteKey", account, version,
                              retired.empty() ? "" : absl::StrCat("retired key ",
                                                                  retired[0][0].as<int>())));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::DiscardPendingKey(const Scope& scope, AccountId account,
                                              int version) {
  const absl::Time now = Now();
  return InTenant("DiscardPendingKey", scope, [&](pqxx::work& tx) -> absl::Status {
    RETURN_IF_ERROR(LockAccount(tx, account).status());
    ASSIGN_OR_RETURN(KeyState state, KeyStateOf(tx, account, version));
    RETURN_IF_ERROR(rules::CheckKeyPending(account, version, state));
    tx.exec_params0(
        "UPDATE account_keys SET state = 'retired', retired_at = av_ts($3) "
        "WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now, rules::AccountEvent("DiscardPendingKey", account, version, ""));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::MarkKeyCompromised(const Scope& scope, AccountId account,
                                               int version) {
  const absl::Time now = Now();
  return InTenant("MarkKeyCompromised", scope, [&](pqxx::work& tx) -> absl::Status {
    RETURN_IF_ERROR(LockAccount(tx, account).status());
    ASSIGN_OR_RETURN(KeyState state, KeyStateOf(tx, account, version));
    if (state == KeyState::kCompromised) return absl::OkStatus();
    tx.exec_params0(
        "UPDATE account_keys SET state = 'compromised', compromised_at = av_ts($3) "
        "WHERE account_id = $1 AND version = $2",
        account, version, Micros(now));
    Audit(tx, scope, now,
          rules::AccountEvent("MarkKeyCompromised", account, version,
                              absl::StrCat("was ", KeyStateName(state))));
    return absl::OkStatus();
  });
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::UnsealKey(absl::string_view op,
                                                            const Scope& scope,
                                                            AccountId account,
                                                            std::optional<int> version,
                                                            absl::string_view purpose) {
  std::optional<UnsealedAccountKey> out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant(op, scope, [&](pqxx::work& tx) -> absl::Status {
    out.reset();
    pqxx::result r =
        version.has_value()
            ? tx.exec_params(absl::StrCat("SELECT ", kSealedKeyColumns,
                                          " FROM account_keys WHERE account_id = $1 "
                                          "AND version = $2"),
                             account, *version)
            : tx.exec_params(absl::StrCat("SELECT ", kSealedKeyColumns,
                                          " FROM account_keys WHERE account_id = $1 "
                                          "AND state = 'active'"),
                             account);
    if (r.empty()) {
      return absl::NotFoundError(
          version.has_value()
              ? absl::StrCat("account ", account, " has no key version ", *version)
              : absl::StrCat("account ", account, " has no active key"));
    }
    AccountKey info = AccountKeyOf(r[0]);
    if (info.state == KeyState::kCompromised) {
      return absl::FailedPreconditionError(absl::StrCat(
          "key ", info.version, " of account ", account, " is compromised"));
    }
    SealedKey sealed{info.kek_id, BytesOf(r[0][11]), BytesOf(r[0][12])};
    ASSIGN_OR_RETURN(
        crypto::PrivateKey key,
        envelope_.OpenPrivateKey(sealed, AccountKeyContext(scope.tenant, account, info.version)));
    Audit(tx, scope, now,
          rules::AccountEvent("UseAccountKey", account, info.version, std::string(purpose)));
    out.emplace(UnsealedAccountKey{std::move(info), std::move(key)});
    return absl::OkStatus();
  }));
  return std::move(*out);
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::GetActiveKey(const Scope& scope,
                                                               AccountId account,
                                                               absl::string_view purpose) {
  return UnsealKey("GetActiveKey", scope, account, std::nullopt, purpose);
}

absl::StatusOr<UnsealedAccountKey> PostgresStore::GetKey(const Scope& scope, AccountId account,
                                                         int version,
                                                         absl::string_view purpose) {
  return UnsealKey("GetKey", scope, account, version, purpose);
}

absl::StatusOr<std::vector<AccountKey>> PostgresStore::ListKeys(const Scope& scope,
                                                                AccountId account) {
  std::vector<AccountKey> out;
  RETURN_IF_ERROR(InTenant("ListKeys", scope, [&](pqxx::work& tx) -> absl::Status {
    out.clear();
    if (tx.exec_params("SELECT 1 FROM accounts WHERE id = $1", account).empty()) {
      return NoSuch("account", account);
    }
    for (const pqxx::row& r : tx.exec_params(
             absl::StrCat("SELECT ", kKeyColumns,
                          " FROM account_keys WHERE account_id = $1 ORDER BY version"),
             account)) {
      out.push_back(AccountKeyOf(r));
    }
    return absl::OkStatus();
  }));
  return out;
}

// ---------------------------------------------------------------------------------------------
// OrderStore

absl::StatusOr<CreateOrderResult> PostgresStore::CreateOrJoinOrder(const Scope& scope,
                                                                   const NewOrder& order) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateNewOrder(order));
  CreateOrderResult out;
  const absl::Time now = Now();
  const absl::Time expires = TruncateToMicros(now + order.lease_duration);
  const std::string id_array = ArrayParam(ids);
  RETURN_IF_ERROR(InTenant("CreateOrJoinOrder", scope, [&](pqxx::work& tx) -> absl::Status {
    out = {};
    // Two attempts: a concurrent creator may win the insert; then its order is joined.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!order.idempotency_key.empty()) {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kOrderColumns, " FROM orders WHERE idempotency_key = $1"),
            order.idempotency_key);
        if (!r.empty()) {
          out.order = OrderOf(r[0]);
          if (out.order.identifiers != ids) {
            return absl::InvalidArgumentError(absl::StrCat(
                "idempotency key was used for order ", out.order.id,
                " with other identifiers"));
          }
          return absl::OkStatus();
        }
      }
      pqxx::result r = tx.exec_params(
          absl::StrCat("SELECT ", kOrderColumns,
                       " FROM orders WHERE identifiers_hash = av_identifiers_hash($1::text[]) "
                       "AND state NOT IN ('valid', 'invalid')"),
          id_array);
      if (!r.empty()) {
        out.order = OrderOf(r[0]);
        return absl::OkStatus();
      }
      // The sealed key binds the order id, so the id is drawn first.
      OrderId id =
          tx.exec1("SELECT nextval(pg_get_serial_sequence('orders', 'id'))")[0].as<int64_t>();
      SealedKey sealed;  // empty fields are stored as NULL: no key
      if (order.certificate_key != nullptr) {
        ASSIGN_OR_RETURN(sealed, envelope_.SealPrivateKey(*order.certificate_key,
                                                          OrderKeyContext(scope.tenant, id)));
      }
      r = tx.exec_params(
          absl::StrCat("INSERT INTO orders (id, tenant_id, account_id, identifiers, state, "
                       "idempotency_key, lease_owner, lease_expires_at, fencing_token, error, "
                       "created_at, updated_at, csr_der, kek_id, wrapped_data_key, "
                       "sealed_private_key) "
                       "VALUES ($1, $2, $3, $4::text[], 'created', $5, $6, av_ts($7), 1, '', "
                       "av_ts($8), av_ts($8), NULLIF($9::bytea, ''), NULLIF($10, ''), "
                       "NULLIF($11::bytea, ''), NULLIF($12::bytea, '')) "
                       "ON CONFLICT DO NOTHING RETURNING ",
                       kOrderColumns),
          id, scope.tenant, order.account, id_array, Nullable(NonEmpty(order.idempotency_key)),
          order.lease_owner, Micros(expires), Micros(now), Bytes(order.csr_der), sealed.kek_id,
          Bytes(sealed.wrapped_data_key), Bytes(sealed.sealed_private_key));
      if (!r.empty()) {
        out.order = OrderOf(r[0]);
        out.created = true;
        out.lease = Lease{scope.tenant, out.order.id, order.lease_owner, 1, expires};
        Audit(tx, scope, now, rules::OrderEvent("CreateOrder", out.order, ""));
        return absl::OkStatus();
      }
    }
    return absl::AbortedError("order creation kept conflicting; retry");
  }));
  return out;
}

absl::StatusOr<Order> PostgresStore::GetOrder(const Scope& scope, OrderId order) {
  return FetchOne<Order>(
      *pool_, "GetOrder", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kOrderColumns, " FROM orders WHERE id = $1"), order);
      },
      OrderOf, NoSuch("order", order));
}

absl::StatusOr<Order> PostgresStore::FindOrderByIdempotencyKey(const Scope& scope,
                                                               absl::string_view key) {
  return FetchOne<Order>(
      *pool_, "FindOrderByIdempotencyKey", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kOrderColumns, " FROM orders WHERE idempotency_key = $1"),
            std::string(key));
      },
      OrderOf, absl::NotFoundError("no order with this idempotency key"));
}

absl::StatusOr<crypto::PrivateKey> PostgresStore::GetOrderCertificateKey(
    const Scope& scope, OrderId order, absl::string_view purpose) {
  std::optional<crypto::PrivateKey> out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("GetOrderCertificateKey", scope, [&](pqxx::work& tx) -> absl::Status {
    out.reset();
    pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT ", kOrderColumns, ", ", kSealedColumns, " FROM orders WHERE id = $1"),
        order);
    if (r.empty()) return NoSuch("order", order);
    std::optional<SealedKey> sealed = SealedKeyOf(r[0]);
    if (!sealed.has_value()) {
      return absl::NotFoundError(absl::StrCat("order ", order, " has no stored certificate key"));
    }
    ASSIGN_OR_RETURN(crypto::PrivateKey key,
                     envelope_.OpenPrivateKey(*sealed, OrderKeyContext(scope.tenant, order)));
    Audit(tx, scope, now,
          rules::OrderEvent("UseCertificateKey", OrderOf(r[0]), std::string(purpose)));
    out.emplace(std::move(key));
    return absl::OkStatus();
  }));
  return std::move(*out);
}

absl::Status PostgresStore::RecordOrderUrl(const Scope& scope, const Lease& lease,
                                           absl::string_view url) {
  RETURN_IF_ERROR(rules::ValidateUrl("order URL", url));
  const absl::Time now = Now();
  return InTenant("RecordOrderUrl", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    ASSIGN_OR_RETURN(bool write, rules::OrderUrlNeedsWrite(o, url));
    if (!write) return absl::OkStatus();
    tx.exec_params0(
        "UPDATE orders SET acme_url = $2, state = 'pending', updated_at = av_ts($3) "
        "WHERE id = $1",
        o.id, std::string(url), Micros(now));
    o.acme_url = std::string(url);
    Audit(tx, scope, now, rules::OrderEvent("RecordOrderUrl", o, ""));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::TransitionOrder(const Scope& scope, const Lease& lease,
                                            OrderState to, absl::string_view error) {
  const absl::Time now = Now();
  return InTenant("TransitionOrder", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    RETURN_IF_ERROR(rules::CheckOrderTransition(o, to));
    if (o.state == to) return absl::OkStatus();
    // A terminal order needs no lease any more.
    tx.exec_params0(
        "UPDATE orders SET state = $2, error = $3, updated_at = av_ts($4), "
        "lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END, "
        "lease_expires_at = CASE WHEN $5 THEN NULL ELSE lease_expires_at END WHERE id = $1",
        o.id, std::string(OrderStateName(to)),
        to == OrderState::kInvalid ? std::string(error) : std::string(), Micros(now),
        IsTerminal(to));
    Audit(tx, scope, now,
          rules::OrderEvent("TransitionOrder", o, rules::TransitionDetail(o.state, to, error)));
    return absl::OkStatus();
  });
}

namespace {

// InsertCertificate's transaction body, shared with CompleteOrder.
absl::StatusOr<Certificate> InsertCertificateTx(pqxx::work& tx, const Envelope& envelope,
                                                const Scope& scope, const NewCertificate& c,
                                                absl::Time now) {
  CertificateId id =
      tx.exec1("SELECT nextval(pg_get_serial_sequence('certificates', 'id'))")[0].as<int64_t>();
  std::optional<SealedKey> sealed;
  if (c.private_key != nullptr) {
    ASSIGN_OR_RETURN(
        sealed, envelope.SealPrivateKey(*c.private_key, CertificateKeyContext(scope.tenant, id)));
  }
  const std::string ids = ArrayParam(c.identifiers);
  tx.exec_params0(
      "UPDATE certificates SET superseded_at = av_ts($2) "
      "WHERE identifiers_hash = av_identifiers_hash($1::text[]) AND revoked_at IS NULL "
      "AND superseded_at IS NULL",
      ids, Micros(now));
  auto insert = [&](auto kek_id, auto wrapped, auto sealed_key) {
    return tx.exec_params1(
        absl::StrCat(
            "INSERT INTO certificates (id, tenant_id, account_id, order_id, identifiers, serial, "
            "not_before, not_after, chain_pem, account_key_version, kek_id, wrapped_data_key, "
            "sealed_private_key, created_at) VALUES ($1, $2, $3, $4, $5::text[], $6, av_ts($7), "
            "av_ts($8), $9, $10, $11, $12, $13, av_ts($14)) RETURNING ",
            kCertificateColumns),
        id, scope.tenant, Nullable(OptionalParam(c.account)), Nullable(OptionalParam(c.order)),
        ids, c.serial, Micros(c.not_before), Micros(c.not_after), c.chain_pem,
        Nullable(OptionalParam(c.account_key_version)), kek_id, wrapped, sealed_key,
        Micros(now));
  };
  Certificate out = CertificateOf(
      sealed.has_value()
          ? insert(sealed->kek_id, Bytes(sealed->wrapped_data_key),
                   Bytes(sealed->sealed_private_key))
          : insert(static_cast<const char*>(nullptr), static_cast<const char*>(nullptr),
                   static_cast<const char*>(nullptr)));
  Audit(tx, scope, now, rules::CertificateEvent("InsertCertificate", out, ""));
  return out;
}

}  // namespace

absl::StatusOr<Certificate> PostgresStore::CompleteOrder(const Scope& scope, const Lease& lease,
                                                         const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  Certificate out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("CompleteOrder", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    RETURN_IF_ERROR(rules::CheckCompletable(o));
    NewCertificate linked = c;
    linked.order = o.id;
    if (!linked.account.has_value()) linked.account = o.account;
    ASSIGN_OR_RETURN(out, InsertCertificateTx(tx, envelope_, scope, linked, now));
    tx.exec_params0(
        "UPDATE orders SET state = 'valid', certificate_id = $2, updated_at = av_ts($3), "
        "lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
        o.id, out.id, Micros(now));
    Audit(tx, scope, now,
          rules::OrderEvent("CompleteOrder", o, absl::StrCat("certificate ", out.id)));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<Lease>> PostgresStore::ClaimStaleOrders(absl::string_view owner,
                                                                   absl::Duration lease_duration,
                                                                   int max_orders) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(owner, lease_duration));
  if (max_orders < 1) return absl::InvalidArgumentError("max_orders must be positive");
  const absl::Time now = Now();
  const absl::Time until = TruncateToMicros(now + lease_duration);
  std::vector<Lease> out;
  RETURN_IF_ERROR(pool_->Run("ClaimStaleOrders", {}, [&](pqxx::work& tx) {
    out.clear();
    for (const pqxx::row& r : tx.exec_params(
             "SELECT tenant_id, order_id, fencing_token, av_us(lease_expires_at) "
             "FROM av_claim_stale_orders($1, av_ts($2), av_ts($3), $4)",
             std::string(owner), Micros(now), Micros(until), max_orders)) {
      out.push_back(Lease{r[0].as<int64_t>(), r[1].as<int64_t>(), std::string(owner),
                          r[2].as<int64_t>(), TimeOf(r[3])});
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Lease> PostgresStore::RenewLease(const Scope& scope, const Lease& lease,
                                                absl::Duration lease_duration) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(lease.owner, lease_duration));
  const absl::Time now = Now();
  Lease out = lease;
  out.expires_at = TruncateToMicros(now + lease_duration);
  RETURN_IF_ERROR(InTenant("RenewLease", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    tx.exec_params0(
        "UPDATE orders SET lease_owner = $2, lease_expires_at = av_ts($3), updated_at = "
        "av_ts($4) WHERE id = $1",
        o.id, lease.owner, Micros(out.expires_at), Micros(now));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status PostgresStore::ReleaseLease(const Scope& scope, const Lease& lease) {
  const absl::Time now = Now();
  return InTenant("ReleaseLease", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    tx.exec_params0(
        "UPDATE orders SET lease_owner = NULL, lease_expires_at = NULL, updated_at = av_ts($2) "
        "WHERE id = $1",
        o.id, Micros(now));
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// AuthorizationStore

absl::StatusOr<Authorization> PostgresStore::RecordAuthorization(
    const Scope& scope, const AuthorizationRecord& authorization) {
  RETURN_IF_ERROR(rules::ValidateUrl("authorization URL", authorization.url));
  ASSIGN_OR_RETURN(std::vector<std::string> identifier,
                   CanonicalIdentifiers({authorization.identifier}));
  Authorization out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("RecordAuthorization", scope, [&](pqxx::work& tx) {
    std::optional<int64_t> expires;
    if (authorization.expires_at.has_value()) expires = Micros(*authorization.expires_at);
    out = AuthorizationOf(tx.exec_params1(
        absl::StrCat(
            "INSERT INTO authorizations (tenant_id, account_id, order_id, url, identifier, "
            "status, expires_at, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, av_ts($7), av_ts($8), av_ts($8)) "
            "ON CONFLICT (account_id, url) DO UPDATE SET status = EXCLUDED.status, "
            "expires_at = EXCLUDED.expires_at, "
            "order_id = coalesce(authorizations.order_id, EXCLUDED.order_id), "
            "updated_at = EXCLUDED.updated_at RETURNING ",
            kAuthorizationColumns),
        scope.tenant, authorization.account, Nullable(OptionalParam(authorization.order)),
        authorization.url, identifier[0],
        std::string(AuthorizationStatusName(authorization.status)),
        Nullable(OptionalParam(expires)), Micros(now)));
    AuditEvent e = rules::AccountEvent("RecordAuthorization", authorization.account,
                                       std::nullopt,
                                       std::string(AuthorizationStatusName(out.record.status)));
    e.identifiers = identifier;
    e.acme_url = authorization.url;
    Audit(tx, scope, now, e);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<Authorization>> PostgresStore::ListOutstandingAuthorizations(
    const Scope& scope, const AuthorizationFilter& filter) {
  std::vector<std::string> identifiers;
  if (!filter.identifiers.empty()) {
    ASSIGN_OR_RETURN(identifiers, CanonicalIdentifiers(filter.identifiers));
  }
  const absl::Time now = Now();
  return FetchAll<Authorization>(
      *pool_, "ListOutstandingAuthorizations", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat(
                "SELECT ", kAuthorizationColumns,
                " FROM authorizations WHERE status IN ('pending', 'valid') "
                "AND deactivated_at IS NULL AND (expires_at IS NULL OR expires_at > av_ts($1)) "
                "AND ($2::bigint IS NULL OR account_id = $2) "
                "AND ($3::bigint IS NULL OR order_id = $3) "
                "AND (cardinality($4::text[]) = 0 OR identifier = ANY($4::text[])) "
                "ORDER BY id"),
            Micros(now), Nullable(OptionalParam(filter.account)),
            Nullable(OptionalParam(filter.order)), ArrayParam(identifiers));
      },
      AuthorizationOf);
}

absl::Status PostgresStore::MarkAuthorizationDeactivated(const Scope& scope, AccountId account,
                                                         absl::string_view url) {
  const absl::Time now = Now();
  return InTenant("MarkAuthorizationDeactivated", scope, [&](pqxx::work& tx) {
    pqxx::result r = tx.exec_params(
        "UPDATE authorizations SET status = 'deactivated', "
        "deactivated_at = coalesce(deactivated_at, av_ts($3)), updated_at = av_ts($3) "
        "WHERE account_id = $1 AND url = $2 RETURNING identifier",
        account, std::string(url), Micros(now));
    if (r.empty()) return absl::NotFoundError("no such authorization for this account");
    AuditEvent e = rules::AccountEvent("MarkAuthorizationDeactivated", account, std::nullopt, "");
    e.identifiers = {r[0][0].as<std::string>()};
    e.acme_url = std::string(url);
    Audit(tx, scope, now, e);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// CertificateStore

absl::StatusOr<Certificate> PostgresStore::InsertCertificate(const Scope& scope,
                                                             const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  Certificate out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("InsertCertificate", scope, [&](pqxx::work& tx) -> absl::Status {
    ASSIGN_OR_RETURN(out, InsertCertificateTx(tx, envelope_, scope, c, now));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Certificate> PostgresStore::GetCertificate(const Scope& scope, CertificateId id) {
  return FetchOne<Certificate>(
      *pool_, "GetCertificate", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kCertificateColumns, " FROM certificates WHERE id = $1"), id);
      },
      CertificateOf, NoSuch("certificate", id));
}

absl::StatusOr<Certificate> PostgresStore::GetCertificateBySerial(const Scope& scope,
                                                                  absl::string_view serial) {
  return FetchOne<Certificate>(
      *pool_, "GetCertificateBySerial", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kCertificateColumns,
                         " FROM certificates WHERE tenant_id = $1 AND serial = lower($2)"),
            scope.tenant, std::string(serial));
      },
      CertificateOf, absl::NotFoundError(absl::StrCat("no certificate with serial ", serial)));
}

absl::StatusOr<Certificate> PostgresStore::GetCurrentCertificate(
    const Scope& scope, const std::vector<std::string>& identifiers) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(identifiers));
  const absl::Time now = Now();
  return FetchOne<Certificate>(
      *pool_, "GetCurrentCertificate", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kCertificateColumns,
                         " FROM certificates WHERE tenant_id = $1 "
                         "AND identifiers_hash = av_identifiers_hash($2::text[]) "
                         "AND revoked_at IS NULL AND not_after > av_ts($3) "
                         "ORDER BY not_after DESC LIMIT 1"),
            scope.tenant, ArrayParam(ids), Micros(now));
      },
      CertificateOf, absl::NotFoundError("no live certificate for these identifiers"));
}

absl::StatusOr<crypto::PrivateKey> PostgresStore::GetCertificateKey(const Scope& scope,
                                                                    CertificateId id,
                                                                    absl::string_view purpose) {
  std::optional<crypto::PrivateKey> out;
  const absl::Time now = Now();
  RETURN_IF_ERROR(InTenant("GetCertificateKey", scope, [&](pqxx::work& tx) -> absl::Status {
    out.reset();
    pqxx::result r =
        tx.exec_params(absl::StrCat("SELECT ", kCertificateColumns, ", ", kSealedColumns,
                                    " FROM certificates WHERE id = $1"),
                       id);
    if (r.empty()) return NoSuch("certificate", id);
    std::optional<SealedKey> sealed = SealedKeyOf(r[0]);
    if (!sealed.has_value()) {
      return absl::NotFoundError(absl::StrCat("certificate ", id, " has no stored key"));
    }
    Certificate c = CertificateOf(r[0]);
    ASSIGN_OR_RETURN(crypto::PrivateKey key,
                     envelope_.OpenPrivateKey(*sealed, CertificateKeyContext(scope.tenant, id)));
    Audit(tx, scope, now, rules::CertificateEvent("UseCertificateKey", c, std::string(purpose)));
    out.emplace(std::move(key));
    return absl::OkStatus();
  }));
  return std::move(*out);
}

absl::StatusOr<Page<Certificate>> PostgresStore::ListCertificates(const Scope& scope,
                                                                  const CertificateFilter& filter,
                                                                  const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  const absl::Time now = Now();
  std::optional<int64_t> before, since;
  if (filter.expires_before.has_value()) before = Micros(*filter.expires_before);
  if (filter.expires_after.has_value()) since = Micros(*filter.expires_after);
  const std::string state = filter.state == CertificateState::kLive      ? "live"
                            : filter.state == CertificateState::kRevoked ? "revoked"
                            : filter.state == CertificateState::kExpired ? "expired"
                                                                         : "any";
  return FetchPage<Certificate>(
      *pool_, "ListCertificates", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(
            absl::StrCat("SELECT ", kCertificateColumns,
                         " FROM certificates WHERE tenant_id = $1 AND id > $2 "
                         "AND CASE $3 "
                         "  WHEN 'live' THEN revoked_at IS NULL AND superseded_at IS NULL "
                         "                   AND not_after > av_ts($4) "
                         "  WHEN 'revoked' THEN revoked_at IS NOT NULL "
                         "  WHEN 'expired' THEN revoked_at IS NULL AND not_after <= av_ts($4) "
                         "  ELSE true END "
                         "AND ($5::bigint IS NULL OR not_after < av_ts($5)) "
                         "AND ($6::bigint IS NULL OR not_after >= av_ts($6)) "
                         "ORDER BY id LIMIT $7"),
            scope.tenant, after, state, Micros(now), Nullable(OptionalParam(before)),
            Nullable(OptionalParam(since)), limit + 1);
      },
      CertificateOf, limit, CertificateToken);
}

absl::StatusOr<Page<DueCertificate>> PostgresStore::ListCertificatesDueForRenewal(
    const PageRequest& page) {
  std::optional<int64_t> after_time, after_id;
  if (!page.page_token.empty()) {
    ASSIGN_OR_RETURN(auto cursor, rules::DecodeDueToken(page.page_token));
    std::tie(after_time, after_id) = cursor;
  }
  const int limit = PageSize(page);
  const absl::Time now = Now();
  return FetchPage<DueCertificate>(
      *pool_, "ListCertificatesDueForRenewal", {},
      [&](pqxx::work& tx) {
        return tx.exec_params(
            "SELECT tenant_id, id, identifiers, av_us(not_after) "
            "FROM av_certificates_due(av_ts($1), av_ts($2), $3, $4)",
            Micros(now), Nullable(OptionalParam(after_time)), Nullable(OptionalParam(after_id)),
            limit + 1);
      },
      DueCertificateOf, limit, DueToken);
}

absl::Status PostgresStore::MarkCertificateRevoked(const Scope& scope, CertificateId id,
                                                   crypto::RevocationReason reason) {
  RETURN_IF_ERROR(rules::ValidateRevocationReason(reason));
  const absl::Time now = Now();
  return InTenant("MarkCertificateRevoked", scope, [&](pqxx::work& tx) -> absl::Status {
    pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT ", kCertificateColumns,
                     " FROM certificates WHERE id = $1 FOR UPDATE"),
        id);
    if (r.empty()) return NoSuch("certificate", id);
    Certificate c = CertificateOf(r[0]);
    if (c.revoked_at.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat("certificate ", id, " is already revoked"));
    }
    tx.exec_params0(
        "UPDATE certificates SET revoked_at = av_ts($2), revocation_reason = $3 WHERE id = $1",
        id, Micros(now), crypto::RevocationReasonCode(reason));
    Audit(tx, scope, now,
          rules::CertificateEvent("MarkCertificateRevoked", c,
                                  absl::StrCat("reason ", crypto::RevocationReasonCode(reason))));
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// ChallengeStore

absl::Status PostgresStore::PutChallenge(const Scope& scope, absl::string_view token,
                                         absl::string_view key_authorization) {
  RETURN_IF_ERROR(rules::ValidateChallengeToken(token));
  const absl::Time now = Now();
  return InTenant("PutChallenge", scope, [&](pqxx::work& tx) {
    pqxx::result r = tx.exec_params(
        "INSERT INTO challenges (token, tenant_id, key_authorization, created_at) "
        "VALUES ($1, $2, $3, av_ts($4)) ON CONFLICT (token) DO NOTHING RETURNING token",
        std::string(token), scope.tenant, std::string(key_authorization), Micros(now));
    if (r.empty()) {
      // Taken: by this tenant with the same value (a retry), or otherwise.
      pqxx::result mine = tx.exec_params(
          "SELECT 1 FROM challenges WHERE token = $1 AND key_authorization = $2",
          std::string(token), std::string(key_authorization));
      if (mine.empty()) return absl::AlreadyExistsError("challenge token is taken");
      return absl::OkStatus();
    }
    Audit(tx, scope, now, rules::SimpleEvent("PutChallenge", absl::StrCat("token ", token)));
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> PostgresStore::LookupChallenge(absl::string_view token) {
  return FetchOne<std::string>(
      *pool_, "LookupChallenge", {},
      [&](pqxx::work& tx) {
        return tx.exec_params(
            "SELECT k FROM (SELECT av_lookup_challenge($1) AS k) AS x WHERE k IS NOT NULL",
            std::string(token));
      },
      TextOfRow, absl::NotFoundError("unknown challenge token"));
}

absl::Status PostgresStore::DeleteChallenge(const Scope& scope, absl::string_view token) {
  const absl::Time now = Now();
  return InTenant("DeleteChallenge", scope, [&](pqxx::work& tx) {
    pqxx::result r = tx.exec_params("DELETE FROM challenges WHERE token = $1 RETURNING token",
                                    std::string(token));
    if (!r.empty()) {
      Audit(tx, scope, now,
            rules::SimpleEvent("DeleteChallenge", absl::StrCat("token ", token)));
    }
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// AuditLog

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
  return FetchPage<AuditRecord>(
      *pool_, "ListAudit", In(scope),
      [&](pqxx::work& tx) {
        return tx.exec_params(absl::StrCat("SELECT ", kAuditColumns,
                                           " FROM audit_log WHERE tenant_id = $1 AND seq > $2 "
                                           "ORDER BY seq LIMIT $3"),
                              scope.tenant, after, limit + 1);
      },
      AuditRecordOf, limit, AuditToken);
}

absl::Status PostgresStore::VerifyAuditChain(const Scope& scope) {
  if (scope.tenant <= 0) return absl::InvalidArgumentError("VerifyAuditChain: no tenant");
  PostgresPool::TxOptions tx_options;
  tx_options.tenant = scope.tenant;
  tx_options.snapshot = true;  // rows and head from one snapshot, even while others append
  return pool_->Run("VerifyAuditChain", tx_options, [&](pqxx::work& tx) -> absl::Status {
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
  });
}

// ---------------------------------------------------------------------------------------------
// VaultMaintenance

namespace {

// Re-wraps up to `limit` sealed keys of `table` (certificates or orders: rows named by `id`
// whose key is bound to context(tenant, id)) that are not under the current KEK. Rows another
// re-wrapper holds are skipped. Returns how many it re-wrapped.
absl::StatusOr<int64_t> RewrapRows(pqxx::work& tx, const Envelope& envelope,
                                   absl::string_view table,
                                   std::string (*context)(TenantId, int64_t), TenantId tenant,
                                   int64_t limit) {
  int64_t count = 0;
  for (const pqxx::row& r : tx.exec_params(
           absl::StrCat("SELECT id, ", kSealedColumns, " FROM ", table,
                        " WHERE kek_id <> $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"),
           envelope.current_kek_id(), limit)) {
    const int64_t id = r["id"].as<int64_t>();
    ASSIGN_OR_RETURN(SealedKey rewrapped, envelope.Rewrap(*SealedKeyOf(r), context(tenant, id)));
    tx.exec_params0(
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
  std::vector<TenantId> tenants;
  RETURN_IF_ERROR(pool_->Run("RewrapBatch", {}, [&](pqxx::work& tx) {
    tenants.clear();
    for (const pqxx::row& r :
         tx.exec_params("SELECT * FROM av_tenants_to_rewrap($1, $2)", current, max_records)) {
      tenants.push_back(r[0].as<int64_t>());
    }
    return absl::OkStatus();
  }));
  const absl::Time now = Now();
  for (TenantId tenant : tenants) {
    const int budget = max_records - static_cast<int>(progress.rewrapped);
    if (budget <= 0) break;
    int64_t count = 0;
    const Scope scope{tenant, actor};
    RETURN_IF_ERROR(InTenant("RewrapBatch", scope, [&](pqxx::work& tx) -> absl::Status {
      count = 0;
      // Rows another re-wrapper holds are skipped: concurrent runs share the work.
      for (const pqxx::row& r : tx.exec_params(
               "SELECT account_id, version, kek_id, wrapped_data_key, sealed_private_key "
               "FROM account_keys WHERE kek_id <> $1 ORDER BY account_id, version LIMIT $2 "
               "FOR UPDATE SKIP LOCKED",
               current, budget)) {
        AccountId account = r[0].as<int64_t>();
        int version = r[1].as<int>();
        SealedKey sealed{r[2].as<std::string>(), BytesOf(r[3]), BytesOf(r[4])};
        ASSIGN_OR_RETURN(SealedKey rewrapped,
                         envelope_.Rewrap(sealed, AccountKeyContext(tenant, account, version)));
        tx.exec_params0(
            "UPDATE account_keys SET kek_id = $3, wrapped_data_key = $4 "
            "WHERE account_id = $1 AND version = $2",
            account, version, rewrapped.kek_id, Bytes(rewrapped.wrapped_data_key));
        ++count;
      }
      for (const auto& [table, context] : {std::make_pair("certificates", CertificateKeyContext),
                                           std::make_pair("orders", OrderKeyContext)}) {
        ASSIGN_OR_RETURN(int64_t n,
                         RewrapRows(tx, envelope_, table, context, tenant, budget - count));
        count += n;
      }
      if (count > 0) {
        Audit(tx, scope, now,
              rules::SimpleEvent("RewrapKeys", absl::StrCat(count, " data keys re-wrapped under "
                                                            "key-encryption key ", current)));
      }
      return absl::OkStatus();
    }));
    progress.rewrapped += count;
  }
  RETURN_IF_ERROR(pool_->Run("RewrapBatch", {}, [&](pqxx::work& tx) {
    progress.done = tx.exec_params("SELECT * FROM av_tenants_to_rewrap($1, 1)", current).empty();
    return absl::OkStatus();
  }));
  return progress;
}

}  // namespace acmevault::storage
