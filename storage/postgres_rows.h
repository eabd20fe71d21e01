// Rows of the PostgreSQL store: how values travel as statement parameters and come back as
// fields, each table's column list with the mapper that turns such a row into a domain struct,
// and the helpers that fetch rows in a caller's transaction and map them. Internal to storage/
// (the files of PostgresStore use it); nothing here opens a transaction or sets a tenant.
//
// Times travel as microseconds since the epoch (av_ts / av_us in SQL), arrays as text[]
// literals, bytes as bytea. A mapper reads its row by position, so a column list and its mapper
// change together; postgres_rows_test checks that every list is as wide as its mapper says.
#ifndef ACMEVAULT_STORAGE_POSTGRES_ROWS_H_
#define ACMEVAULT_STORAGE_POSTGRES_ROWS_H_

#include <pqxx/pqxx>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/envelope.h"
#include "storage/types.h"

namespace acmevault::storage::pg {

// ---------------------------------------------------------------------------------------------
// Parameters

int64_t Micros(absl::Time t);

// A text parameter that may be NULL. The returned pointer borrows `s`.
const char* Nullable(const std::optional<std::string>& s);

template <typename T>
std::optional<std::string> OptionalParam(const std::optional<T>& v) {
  if (!v.has_value()) return std::nullopt;
  return absl::StrCat(*v);
}

// NULL for an empty string.
std::optional<std::string> NonEmpty(absl::string_view s);

// A text[] literal: every element double-quoted, with '"' and '\' escaped.
std::string ArrayParam(const std::vector<std::string>& values);

// The algorithms' names (crypto::KeyAlgorithmName), in order.
std::vector<std::string> KeyAlgorithmNames(const std::vector<crypto::KeyAlgorithm>& algorithms);

pqxx::binarystring Bytes(absl::string_view s);
// A bytea parameter in text form (hex format: \x, then two digits per byte), for a statement's
// text values (Sql, Together), which are C strings and cannot carry a zero byte.
std::string ByteaText(absl::string_view s);

// ---------------------------------------------------------------------------------------------
// Statements

// The name under which `sql` is prepared on tx's connection, registered there on first use
// (libpqxx prepares it at its first run): the statement's text is parsed, analyzed and planned
// once per connection (the pool's connections take the generic plan from the first run)
// instead of at every run, and the SQL functions it calls are inlined once. The
// text must not carry values (they travel as parameters), so a connection holds one statement
// per call site. Empty when the name is taken by another text (a hash collision): the caller
// runs the text unprepared.
std::string PreparedName(pqxx::transaction_base& tx, const std::string& sql);

// "EXECUTE <statement>(<values>)": SQL that runs a statement prepared on tx's connection, its
// values quoted for tx's connection (nullptr: NULL), for simple queries that carry more than
// one statement. Prepares the statement on the server now if it is not yet (libpqxx prepares
// lazily, and SQL EXECUTE finds only statements the server knows).
std::string ExecuteSql(pqxx::transaction_base& tx, const std::string& statement,
                       const std::vector<const char*>& values);

// A prepared statement and its values, for Pipelined.
struct Execution {
  std::string statement;
  std::vector<std::optional<std::string>> values;  // nullopt: NULL
};

// Runs `executions` in one round trip, one simple query of ExecuteSql texts (libpqxx's
// pipeline; a pool's transaction's PooledTransaction::Send, with its opening if that is still
// unsent), and returns their results in order. They run one after another, in tx's
// transaction, or outside a block in one implicit transaction, each with its own snapshot.
// The first that fails stops the rest, and its error is thrown.
std::vector<pqxx::result> Pipelined(pqxx::transaction_base& tx,
                                    const std::vector<Execution>& executions);

// Draw the next id of a table (for rows whose sealed keys bind their id before the insert).
inline constexpr char kDrawOrderId[] = "SELECT nextval(pg_get_serial_sequence('orders', 'id'))";
inline constexpr char kDrawCertificateId[] =
    "SELECT nextval(pg_get_serial_sequence('certificates', 'id'))";

// A statement's SQL text (values as $n) and its values (nullopt: NULL), for Together.
struct Sql {
  std::string text;
  std::vector<std::optional<std::string>> values;
};

// Runs `statements` one after another in tx and returns their results in order: each prepared
// through PreparedName, all in one round trip (Pipelined) when there are several, or when tx is
// a pool's transaction whose opening is still unsent (which then travels with them). The first
// that fails stops the rest and its error is thrown. (Should a text's name be taken, they run
// one round trip each, that one unprepared.)
std::vector<pqxx::result> Together(pqxx::transaction_base& tx, const std::vector<Sql>& statements);

// Before a statement that goes straight to tx's connection (exec_prepared, exec_params): a
// pool's transaction's opening, if it is still unsent (PooledTransaction::Open).
void Open(pqxx::transaction_base& tx);
// A pool's transaction's opening goes with COMMIT, unchecked, if nothing is sent before it
// (PooledTransaction::OpenWithCommit). Any other transaction is open already.
void OpenWithCommit(pqxx::transaction_base& tx);
// Whether tx is a pool's transaction whose opening is still unsent.
bool OpeningUnsent(pqxx::transaction_base& tx);

// A parameter that travels as quoted text as well as it does as a parameter: a number or a
// string (not bytes, which may hold a zero byte, nor anything libpqxx turns into NULL).
template <typename T>
inline constexpr bool kTextParam = std::is_arithmetic_v<std::decay_t<T>> ||
                                   std::is_convertible_v<const std::decay_t<T>&, std::string_view>;
template <typename T>
std::optional<std::string> TextParam(const T& v) {
  if constexpr (std::is_arithmetic_v<T>) {
    return pqxx::to_string(v);
  } else if constexpr (std::is_pointer_v<T>) {
    if (v == nullptr) return std::nullopt;  // NULL, as libpqxx sends it
    return std::string(v);
  } else {
    return std::string(std::string_view(v));
  }
}

// Throws as libpqxx's exec_n when `r` has not `rows` rows.
void ExpectRows(const pqxx::result& r, size_t rows);

// tx.exec_params(sql, args...) (and its 0- and 1-row forms) through PreparedName. In a pool's
// transaction whose opening is still unsent, a statement whose values are all numbers and
// strings travels with it (Together); else the opening goes first (Open).
template <typename... Args>
pqxx::result Exec(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
  if constexpr ((kTextParam<Args> && ...)) {
    if (OpeningUnsent(tx)) return std::move(Together(tx, {{sql, {TextParam(args)...}}})[0]);
  }
  Open(tx);
  const std::string name = PreparedName(tx, sql);
  if (name.empty()) return tx.exec_params(sql, std::forward<Args>(args)...);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}
template <typename... Args>
pqxx::result Exec0(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
  pqxx::result r = Exec(tx, sql, std::forward<Args>(args)...);
  ExpectRows(r, 0);
  return r;
}
template <typename... Args>
pqxx::row Exec1(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
  pqxx::result r = Exec(tx, sql, std::forward<Args>(args)...);
  ExpectRows(r, 1);
  return r[0];
}

// ---------------------------------------------------------------------------------------------
// Fields

absl::Time TimeOf(const pqxx::field& f);
std::optional<absl::Time> OptionalTime(const pqxx::field& f);

template <typename T>
std::optional<T> OptionalValue(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<T>();
}

// "" for NULL.
std::string TextOf(const pqxx::field& f);
std::string BytesOf(const pqxx::field& f);
std::vector<std::string> ArrayOf(const pqxx::field& f);

// Enumerations stored as text. The schema's CHECK constraints admit only valid names, so a
// failure here is corruption: thrown, and reported by PostgresPool::Run as INTERNAL.
template <typename T>
T Known(absl::StatusOr<T> parsed) {
  if (!parsed.ok()) throw std::runtime_error(std::string(parsed.status().message()));
  return *std::move(parsed);
}

// ---------------------------------------------------------------------------------------------
// Tables

// A row shape: the select list `map` reads, in order, and how many columns that is.
template <typename T>
struct Rows {
  const char* columns;
  int width;
  T (*map)(const pqxx::row&);
};

// A table whose rows are named by a bigint `id` column, and the noun a missing row is called.
template <typename T>
struct Table {
  const char* name;
  const char* noun;
  Rows<T> rows;
};

Tenant TenantOf(const pqxx::row& r);
Identity IdentityOf(const pqxx::row& r);
Account AccountOf(const pqxx::row& r);
AccountKey AccountKeyOf(const pqxx::row& r);
Order OrderOf(const pqxx::row& r);
Authorization AuthorizationOf(const pqxx::row& r);
Certificate CertificateOf(const pqxx::row& r);
AuditRecord AuditRecordOf(const pqxx::row& r);
DueCertificate DueCertificateOf(const pqxx::row& r);
// A run without its steps (they are rows of compromise_run_steps).
CompromiseRun CompromiseRunOf(const pqxx::row& r);
Job JobOf(const pqxx::row& r);

extern const Table<Tenant> kTenants;
extern const Table<Identity> kIdentities;
extern const Table<Account> kAccounts;
extern const Table<Order> kOrders;
extern const Table<Authorization> kAuthorizations;
extern const Table<Certificate> kCertificates;
extern const Table<CompromiseRun> kCompromiseRuns;
// account_keys (named by account_id and version), audit_log (by tenant_id and seq).
extern const Rows<AccountKey> kAccountKeyRows;
extern const Rows<AuditRecord> kAuditRows;
// An identity as av_authenticate returns it (live identities only): IdentityOf's shape.
extern const Rows<Identity> kAuthenticatedRows;
// A certificate as av_certificates_due returns it.
extern const Rows<DueCertificate> kDueRows;
// jobs, named by id (the claim function returns the same columns).
extern const Table<Job> kJobs;

// The columns that hold a sealed key in certificates and orders (all NULL when there is none),
// selected after a row's own columns and read by name with SealedKeyOf.
inline constexpr char kSealedColumns[] = "kek_id, wrapped_data_key, sealed_private_key";
std::optional<SealedKey> SealedKeyOf(const pqxx::row& r);

// An account's key lease (migration 0007), selected after the account's own columns and read
// by name: key_lease_token, and key_lease_expires_us (NULL while no lease is held).
inline constexpr char kKeyLeaseColumns[] =
    "key_lease_token, av_us(key_lease_expires_at) AS key_lease_expires_us";

// For a statement on one tenant's rows run alone (PostgresPool::RunStatement): its WHERE
// clause starts with this, and its $1 is the tenant id as text. An uncorrelated sub-select in
// WHERE is a one-time filter that PostgreSQL evaluates before it runs the scan below it, so the
// statement sets the tenant (for its own implicit transaction only) before row-level security
// looks at a row; had it not, no row would match (av_tenant() is NULL). The statement must not
// compare tenant_id with $1 itself: the planner could derive "$1 = av_tenant()" from that and
// the policy, a constant filter of its own that might be evaluated first.
inline constexpr char kTenantFirst[] =
    "(SELECT set_config('acmevault.tenant_id', $1, true)) IS NOT NULL";

// The identifier-set hash (av_identifiers_hash) of the text[] parameter $`param`, as an
// uncorrelated sub-select: PostgreSQL computes it once per execution (an InitPlan), whatever
// the plan. Written as av_identifiers_hash($n) in a WHERE clause, it is computed again for every
// row a sequential scan reads, and the generic plans of small tables are such scans: one
// SHA-256 per row of the table per statement.
std::string IdentifiersHashOf(int param);

// Runs `sql` with `values` (nullopt: NULL) prepared (PreparedName) when nothing reads its
// result: in a pool's transaction it is sent with COMMIT, in COMMIT's round trip
// (PooledTransaction::SendWithCommit), and its failure is the commit's; elsewhere at once.
void ExecWithCommit(pqxx::dbtransaction& tx, const std::string& sql,
                    const std::vector<std::optional<std::string>>& values);

// The same for a statement already prepared on tx's connection as `prepared`, with `values`
// (nullptr: NULL).
void ExecPreparedWithCommit(pqxx::dbtransaction& tx, const std::string& prepared,
                            const std::vector<const char*>& values);

// NOTIFY `channel` with `payload` when the transaction commits (sent with COMMIT).
void Notify(pqxx::dbtransaction& tx, const char* channel, const std::string& payload);

// ---------------------------------------------------------------------------------------------
// Fetching, in the caller's transaction

// NOT_FOUND "<what> <id> not found".
absl::Status NoSuch(absl::string_view what, int64_t id);

enum class Lock { kNone, kForUpdate, kForShare };

// SELECT <columns>[, <extra>] FROM <table> WHERE id = $1 [FOR UPDATE | FOR SHARE]: the row as
// the transaction sees it (row-level security hides other tenants' rows, which are then missing
// too). NOT_FOUND "<noun> <id> not found" if there is none. With a lock the row stays locked
// until the transaction ends. SelectByIdSql is its text, for Together.
std::string SelectByIdSql(absl::string_view table, absl::string_view columns, Lock lock);
absl::StatusOr<pqxx::row> SelectById(pqxx::dbtransaction& tx, absl::string_view table,
                                     absl::string_view noun, absl::string_view columns, int64_t id,
                                     Lock lock);

// The row of `table` named `id`, mapped; errors as SelectById.
template <typename T>
absl::StatusOr<T> GetById(pqxx::dbtransaction& tx, const Table<T>& table, int64_t id,
                          Lock lock = Lock::kNone) {
  absl::StatusOr<pqxx::row> r =
      SelectById(tx, table.name, table.noun, table.rows.columns, id, lock);
  if (!r.ok()) return r.status();
  return table.rows.map(*r);
}

// The raw row with `extra` columns after the table's own (map it with table.rows.map).
template <typename T>
absl::StatusOr<pqxx::row> GetRowById(pqxx::dbtransaction& tx, const Table<T>& table, int64_t id,
                                     absl::string_view extra) {
  return SelectById(tx, table.name, table.noun, absl::StrCat(table.rows.columns, ", ", extra), id,
                    Lock::kNone);
}

// The job an order's lease names (Lease::job), locked FOR SHARE until the transaction ends, so
// that no claim (FOR UPDATE SKIP LOCKED) takes it over before the fenced write commits; nullopt
// when the lease is the order's own or the job is gone (rules::CheckFence says which).
absl::StatusOr<std::optional<Job>> LeaseJob(pqxx::dbtransaction& tx, const Lease& lease);

// OK if the transaction sees the row of `table` named `id`; errors as SelectById.
template <typename T>
absl::Status RequireRow(pqxx::dbtransaction& tx, const Table<T>& table, int64_t id) {
  return SelectById(tx, table.name, table.noun, "1", id, Lock::kNone).status();
}

// The first row of `result` mapped; `missing` if there is none.
template <typename T>
absl::StatusOr<T> FirstOf(const pqxx::result& result, T (*map)(const pqxx::row&),
                          absl::Status missing) {
  if (result.empty()) return missing;
  return map(result[0]);
}

// Every row of `result`, mapped.
template <typename T>
std::vector<T> AllOf(const pqxx::result& result, T (*map)(const pqxx::row&)) {
  std::vector<T> out;
  out.reserve(result.size());
  for (const pqxx::row& r : result) out.push_back(map(r));
  return out;
}

// A page of at most `limit` items of `result`, which was asked for limit + 1 rows: the extra
// one only says that there is a next page, whose token is `token_of` the last item returned.
template <typename T>
Page<T> PageOf(const pqxx::result& result, T (*map)(const pqxx::row&), int limit,
               std::string (*token_of)(const T&)) {
  Page<T> out;
  for (const pqxx::row& r : result) {
    if (static_cast<int>(out.items.size()) == limit) {
      out.next_page_token = token_of(out.items.back());
      break;
    }
    out.items.push_back(map(r));
  }
  return out;
}

}  // namespace acmevault::storage::pg

#endif  // ACMEVAULT_STORAGE_POSTGRES_ROWS_H_
