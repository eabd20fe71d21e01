#include "storage/postgres_rows.h"

#include <functional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "crypto/keys.h"
#include "crypto/revocation_reason.h"
#include "storage/postgres_pool.h"

namespace acmevault::storage::pg {

// ---------------------------------------------------------------------------------------------
// Parameters and fields

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

const char* Nullable(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

std::optional<std::string> NonEmpty(absl::string_view s) {
  if (s.empty()) return std::nullopt;
  return std::string(s);
}

std::string PreparedName(pqxx::transaction_base& tx, const std::string& sql) {
  std::string name =
      absl::StrCat("av_q", absl::Hex(std::hash<std::string>{}(sql), absl::kZeroPad16));
  try {
    tx.conn().prepare(name, sql);  // Registers only; a repeat with the same text is a lookup.
  } catch (const pqxx::argument_error&) {
    return "";  // Another text has this name on this connection.
  }
  return name;
}

std::string ExecuteSql(pqxx::transaction_base& tx, const std::string& statement,
                       const std::vector<const char*>& values) {
  tx.conn().prepare_now(statement);
  std::string sql = absl::StrCat("EXECUTE ", statement);
  if (values.empty()) return sql;  // "EXECUTE name()" is a syntax error
  for (size_t i = 0; i < values.size(); ++i) {
    absl::StrAppend(&sql, i == 0 ? "(" : ", ",
                    values[i] == nullptr ? "NULL" : tx.quote(std::string(values[i])));
  }
  return absl::StrCat(sql, ")");
}

void Open(pqxx::transaction_base& tx) {
  if (auto* pooled = dynamic_cast<PooledTransaction*>(&tx); pooled != nullptr) pooled->Open();
}

void OpenWithCommit(pqxx::transaction_base& tx) {
  if (auto* pooled = dynamic_cast<PooledTransaction*>(&tx); pooled != nullptr) {
    pooled->OpenWithCommit();
  }
}

bool OpeningUnsent(pqxx::transaction_base& tx) {
  auto* pooled = dynamic_cast<PooledTransaction*>(&tx);
  return pooled != nullptr && !pooled->opened();
}

void ExpectRows(const pqxx::result& r, size_t rows) {
  if (r.size() != rows) {
    throw pqxx::unexpected_rows(
        absl::StrCat("Expected ", rows, " row(s) of data from query, got ", r.size(), "."));
  }
}

std::vector<pqxx::result> Pipelined(pqxx::transaction_base& tx,
                                    const std::vector<Execution>& executions) {
  std::vector<std::string> texts;
  for (const Execution& e : executions) {
    std::vector<const char*> values;
    for (const auto& v : e.values) values.push_back(Nullable(v));
    texts.push_back(ExecuteSql(tx, e.statement, values));
  }
  if (auto* pooled = dynamic_cast<PooledTransaction*>(&tx); pooled != nullptr) {
    return pooled->Send(texts);
  }
  pqxx::pipeline pipeline(tx);
  pipeline.retain(static_cast<int>(texts.size()));  // issued together by complete()
  std::vector<pqxx::pipeline::query_id> ids;
  for (const std::string& text : texts) ids.push_back(pipeline.insert(text));
  pipeline.complete();
  std::vector<pqxx::result> out;
  for (pqxx::pipeline::query_id id : ids) out.push_back(pipeline.retrieve(id));
  return out;
}

std::vector<pqxx::result> Together(pqxx::transaction_base& tx, const std::vector<Sql>& statements) {
  std::vector<Execution> executions;
  for (const Sql& s : statements) {
    std::string name = PreparedName(tx, s.text);
    if (name.empty()) break;
    executions.push_back({std::move(name), s.values});
  }
  if (executions.size() == statements.size() && (statements.size() > 1 || OpeningUnsent(tx))) {
    return Pipelined(tx, executions);
  }
  Open(tx);
  std::vector<pqxx::result> out;
  for (size_t i = 0; i < statements.size(); ++i) {
    std::vector<const char*> values;
    for (const auto& v : statements[i].values) values.push_back(Nullable(v));
    out.push_back(
        i < executions.size()
            ? tx.exec_prepared(executions[i].statement, pqxx::prepare::make_dynamic_params(values))
            : tx.exec_params(statements[i].text, pqxx::prepare::make_dynamic_params(values)));
  }
  return out;
}

std::vector<std::string> KeyAlgorithmNames(const std::vector<crypto::KeyAlgorithm>& algorithms) {
  std::vector<std::string> out;
  for (crypto::KeyAlgorithm a : algorithms) out.emplace_back(crypto::KeyAlgorithmName(a));
  return out;
}

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

std::string ByteaText(absl::string_view s) {
  return absl::StrCat("\\x", absl::BytesToHexString(s));
}

absl::Time TimeOf(const pqxx::field& f) { return absl::FromUnixMicros(f.as<int64_t>()); }

std::optional<absl::Time> OptionalTime(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return TimeOf(f);
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

// ---------------------------------------------------------------------------------------------
// Mappers, each beside its column list

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
  t.spec.policy.key_storage = Known(ParseKeyStorage(r[12].as<std::string>()));
  for (const std::string& name : ArrayOf(r[13])) {
    t.spec.policy.certificate_key_algorithms.push_back(Known(crypto::ParseKeyAlgorithm(name)));
  }
  return t;
}

const Table<Tenant> kTenants{
    "tenants",
    "tenant",
    {"id, name, allowed_identifiers, key_algorithm, max_key_age_seconds, "
     "deactivate_authorizations_after_issuance, ephemeral_accounts, renewal_window_seconds, "
     "acme_directory_url, av_us(created_at), av_us(updated_at), av_us(disabled_at), key_storage, "
     "certificate_key_algorithms",
     14, TenantOf}};

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
  i.expires_at = OptionalTime(r[8]);
  return i;
}

const Table<Identity> kIdentities{
    "identities",
    "identity",
    {"id, tenant_id, role, spiffe_id, token_sha256 IS NOT NULL, description, av_us(created_at), "
     "av_us(revoked_at), av_us(expires_at)",
     9, IdentityOf}};

const Rows<Identity> kAuthenticatedRows{
    "id, tenant_id, role, spiffe_id, bearer_token, description, av_us(created_at), NULL::bigint, "
    "av_us(expires_at)",
    9, IdentityOf};

Account AccountOf(const pqxx::row& r) {
  Account a;
  a.id = r[0].as<int64_t>();
  a.tenant = r[1].as<int64_t>();
  a.directory_url = r[2].as<std::string>();
  a.account_url = TextOf(r[3]);
  a.status = Known(ParseAccountStatus(r[4].as<std::string>()));
  a.created_at = TimeOf(r[5]);
  a.deactivated_at = OptionalTime(r[6]);
  a.ephemeral = r[7].as<bool>();
  a.hijacked_at = OptionalTime(r[8]);
  a.contact = ArrayOf(r[9]);
  return a;
}

const Table<Account> kAccounts{
    "accounts",
    "account",
    {"id, tenant_id, directory_url, account_url, status, av_us(created_at), "
     "av_us(deactivated_at), ephemeral, av_us(hijacked_at), contact",
     10, AccountOf}};

AccountKey AccountKeyOf(const pqxx::row& r) {
  AccountKey k;
  k.account = r[0].as<int64_t>();
  k.version = r[1].as<int>();
  k.state = Known(ParseKeyState(r[2].as<std::string>()));
  k.algorithm = Known(crypto::ParseKeyAlgorithm(r[3].as<std::string>()));
  k.public_key.public_jwk = r[4].as<std::string>();
  k.public_key.thumbprint = r[5].as<std::string>();
  k.kek_id = TextOf(r[6]);
  k.created_at = TimeOf(r[7]);
  k.activated_at = OptionalTime(r[8]);
  k.retired_at = OptionalTime(r[9]);
  k.compromised_at = OptionalTime(r[10]);
  k.token_object = TextOf(r[11]);
  k.destroyed_at = OptionalTime(r[12]);
  return k;
}

const Rows<AccountKey> kAccountKeyRows{
    "account_id, version, state, algorithm, public_jwk, thumbprint, kek_id, av_us(created_at), "
    "av_us(activated_at), av_us(retired_at), av_us(compromised_at), token_object, "
    "av_us(destroyed_at)",
    13, AccountKeyOf};

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
  o.created_by = TextOf(r[16]);
  o.problem_type = r[17].as<std::string>();
  o.prefer_dns01 = r[18].as<bool>();
  o.replaces = TextOf(r[19]);
  o.stalled_at = OptionalTime(r[20]);
  return o;
}

const Table<Order> kOrders{
    "orders",
    "order",
    {"id, tenant_id, account_id, identifiers, acme_url, state, idempotency_key, lease_owner, "
     "av_us(lease_expires_at), fencing_token, certificate_id, error, av_us(created_at), "
     "av_us(updated_at), csr_der, kek_id IS NOT NULL, created_by, problem_type, prefer_dns01, "
     "replaces, av_us(stalled_at)",
     21, OrderOf}};

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

const Table<Authorization> kAuthorizations{
    "authorizations",
    "authorization",
    {"id, tenant_id, account_id, order_id, url, identifier, status, av_us(expires_at), "
     "av_us(deactivated_at), av_us(updated_at)",
     10, AuthorizationOf}};

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
  c.replaces_serial = r[15].as<std::string>();
  c.ari_window_start = OptionalTime(r[16]);
  c.ari_window_end = OptionalTime(r[17]);
  c.ari_next_check = OptionalTime(r[18]);
  c.crl_next_check = OptionalTime(r[19]);
  c.revoked_outside_at = OptionalTime(r[20]);
  if (auto code = OptionalValue<int>(r[21])) {
    c.revoked_outside_reason = crypto::RevocationReasonFromCode(*code);
  }
  return c;
}

// av_us's body written out. av_us is declared IMMUTABLE but its body, extract(epoch FROM
// timestamptz), is only STABLE, so PostgreSQL never inlines it: each call site in a statement
// runs it as a SQL function, parsing and planning its body anew at every execution. On
// GetCertificate's read (nine such columns) that was a third of the database's CPU time.
// Same values: the same expression.
#define AV_US_INLINE(column) "(extract(epoch FROM " column ") * 1000000)::bigint"

const Table<Certificate>
    kCertificates{"certificates",
                  "certificate",
                  {"id, tenant_id, account_id, order_id, identifiers, serial, " AV_US_INLINE("not_"
                                                                                             "befor"
                                                                                             "e") ", " AV_US_INLINE("not_after") ", chain_pem, account_key_version, kek_id IS NOT NULL, " AV_US_INLINE("revoked_at") ", revocation_reason, " AV_US_INLINE(
                       "superseded_at") ", " AV_US_INLINE("created_at") ", "
                                                                        "coalesce(replaces_serial, "
                                                                        "''), " AV_US_INLINE("ari_"
                                                                                             "windo"
                                                                                             "w_"
                                                                                             "star"
                                                                                             "t") ", " AV_US_INLINE("ari_window_end") ", " AV_US_INLINE("ari_next_check") ", " AV_US_INLINE("crl_next_check") ", " AV_US_INLINE("revoked_outside_at") ", revoked_outside_reason",
                   22, CertificateOf}};

#undef AV_US_INLINE

CompromiseRun CompromiseRunOf(const pqxx::row& r) {
  CompromiseRun run;
  run.id = r[0].as<int64_t>();
  run.tenant = r[1].as<int64_t>();
  run.deactivate_account = r[2].as<bool>();
  run.started_at = TimeOf(r[3]);
  run.expires_at = TimeOf(r[4]);
  run.finished_at = OptionalTime(r[5]);
  return run;
}

const Table<CompromiseRun> kCompromiseRuns{
    "compromise_runs",
    "compromise run",
    {"id, tenant_id, deactivate_account, av_us(started_at), av_us(expires_at), "
     "av_us(finished_at)",
     6, CompromiseRunOf}};

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

const Rows<AuditRecord> kAuditRows{
    "tenant_id, seq, av_us(at), actor, rpc, action, identifiers, account_id, key_version, "
    "acme_url, outcome, detail, prev_hash, hash",
    14, AuditRecordOf};

DueCertificate DueCertificateOf(const pqxx::row& r) {
  return DueCertificate{r[0].as<int64_t>(), r[1].as<int64_t>(), ArrayOf(r[2]), TimeOf(r[3])};
}

const Rows<DueCertificate> kDueRows{"tenant_id, id, identifiers, av_us(not_after)", 4,
                                    DueCertificateOf};

Job JobOf(const pqxx::row& r) {
  Job j;
  j.id = r[0].as<int64_t>();
  j.tenant = r[1].as<int64_t>();
  j.kind = r[2].as<std::string>();
  j.subject = r[3].as<std::string>();
  j.ca = r[4].as<std::string>();
  j.not_before = TimeOf(r[5]);
  j.lease_owner = TextOf(r[6]);
  j.lease_expires_at = OptionalTime(r[7]);
  j.fencing_token = r[8].as<int64_t>();
  j.attempts = r[9].as<int>();
  j.last_error = r[10].as<std::string>();
  j.failed_at = OptionalTime(r[11]);
  j.created_at = TimeOf(r[12]);
  j.updated_at = TimeOf(r[13]);
  return j;
}

const Table<Job> kJobs{
    "jobs",
    "job",
    {"id, tenant_id, kind, subject, ca, av_us(not_before), lease_owner, av_us(lease_expires_at), "
     "fencing_token, attempts, last_error, av_us(failed_at), av_us(created_at), "
     "av_us(updated_at)",
     14, JobOf}};

std::optional<SealedKey> SealedKeyOf(const pqxx::row& r) {
  if (r["kek_id"].is_null()) return std::nullopt;
  return SealedKey{r["kek_id"].as<std::string>(), BytesOf(r["wrapped_data_key"]),
                   BytesOf(r["sealed_private_key"])};
}

// ---------------------------------------------------------------------------------------------
// Fetching

std::string IdentifiersHashOf(int param) {
  return absl::StrCat("(SELECT av_identifiers_hash($", param, "::text[]))");
}

void ExecPreparedWithCommit(pqxx::dbtransaction& tx, const std::string& prepared,
                            const std::vector<const char*>& values) {
  if (auto* pooled = dynamic_cast<PooledTransaction*>(&tx); pooled != nullptr) {
    pooled->SendWithCommit(ExecuteSql(tx, prepared, values));
    return;
  }
  tx.exec_prepared(prepared, pqxx::prepare::make_dynamic_params(values));
}

void ExecWithCommit(pqxx::dbtransaction& tx, const std::string& sql,
                    const std::vector<std::optional<std::string>>& values) {
  std::vector<const char*> params;
  for (const auto& v : values) params.push_back(Nullable(v));
  const std::string name = PreparedName(tx, sql);
  if (name.empty()) {
    Open(tx);
    tx.exec_params(sql, pqxx::prepare::make_dynamic_params(params));
    return;
  }
  ExecPreparedWithCommit(tx, name, params);
}

void Notify(pqxx::dbtransaction& tx, const char* channel, const std::string& payload) {
  ExecWithCommit(tx, "SELECT pg_notify($1, $2)", {std::string(channel), payload});
}

absl::Status NoSuch(absl::string_view what, int64_t id) {
  return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
}

std::string SelectByIdSql(absl::string_view table, absl::string_view columns, Lock lock) {
  return absl::StrCat("SELECT ", columns, " FROM ", table, " WHERE id = $1",
                      lock == Lock::kForUpdate  ? " FOR UPDATE"
                      : lock == Lock::kForShare ? " FOR SHARE"
                                                : "");
}

absl::StatusOr<pqxx::row> SelectById(pqxx::dbtransaction& tx, absl::string_view table,
                                     absl::string_view noun, absl::string_view columns, int64_t id,
                                     Lock lock) {
  pqxx::result r = Exec(tx, SelectByIdSql(table, columns, lock), id);
  if (r.empty()) return NoSuch(noun, id);
  return r[0];
}

absl::StatusOr<std::optional<Job>> LeaseJob(pqxx::dbtransaction& tx, const Lease& lease) {
  if (lease.job == 0) return std::nullopt;
  absl::StatusOr<Job> job = GetById(tx, kJobs, lease.job, Lock::kForShare);
  if (absl::IsNotFound(job.status())) return std::nullopt;
  if (!job.ok()) return job.status();
  return *std::move(job);
}

}  // namespace acmevault::storage::pg
