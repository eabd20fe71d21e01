#include "storage/migrate.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "storage/migrations/embedded.h"
#include "storage/postgres_pool.h"

namespace acmevault::storage {
namespace {

// pg_advisory_xact_lock key: "acmvmigr" as a big-endian int64.
constexpr int64_t kMigrationLock = 0x61636d766d696772;

constexpr char kCreateSchemaVersion[] = R"sql(
  CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    sha256 bytea NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  ))sql";
// Added by the migrator itself (the table is its bookkeeping, not the app's schema); NULL in
// rows written before it means the migration's own version.
constexpr char kAddCompatibleFrom[] =
    "ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS compatible_from integer";

// Checks the applied migrations against the embedded ones and returns the current version.
absl::StatusOr<int> AppliedVersion(pqxx::dbtransaction& tx) {
  const auto& embedded = EmbeddedMigrations();
  int version = 0;
  for (const pqxx::row& row : tx.exec("SELECT version, name, sha256 FROM schema_version "
                                      "ORDER BY version")) {
    int v = row[0].as<int>();
    if (v != version + 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("schema_version lacks migration ", version + 1, " but has ", v));
    }
    if (v > static_cast<int>(embedded.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat("database schema version ", v, " is newer than this binary's (",
                       embedded.size(), "); run a newer acmevaultd"));
    }
    const EmbeddedMigration& m = embedded[v - 1];
    bool same = tx.exec_params1("SELECT sha256(convert_to($1, 'UTF8')) = $2::bytea AND $3 = $4",
                                m.sql, pqxx::binarystring(row[2]), m.name,
                                row[1].as<std::string>())[0]
                    .as<bool>();
    if (!same) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migration ", v, " (", m.name, ") differs from the one applied to this database; "
          "migrations must never change once released"));
    }
    version = v;
  }
  return version;
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(EmbeddedMigrations().size()); }

int CompatibleFrom(absl::string_view sql, int version) {
  for (absl::string_view line : absl::StrSplit(sql, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!absl::ConsumePrefix(&line, "-- compatible_from:")) continue;
    int from = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &from) && from >= 1 &&
        from <= version) {
      return from;
    }
  }
  return version;
}

absl::Status CheckSchemaVersion(int applied, int oldest_admitted, int known) {
  if (applied < known) {
    return absl::FailedPreconditionError(
        absl::StrCat("database schema is at version ", applied, ", this binary needs ", known,
                     ": run acmevaultd migrate"));
  }
  if (applied > known && oldest_admitted > known) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database schema is at version ", applied, ", which needs a binary that knows migration ",
        oldest_admitted, " or later; this one knows ", known, ": upgrade acmevaultd"));
  }
  return absl::OkStatus();
}

absl::StatusOr<MigrationReport> Migrate(const MigrateOptions& options) {
  const auto& embedded = EmbeddedMigrations();
  int target = options.target_version == 0 ? LatestSchemaVersion() : options.target_version;
  if (target < 0 || target > LatestSchemaVersion()) {
    return absl::InvalidArgumentError(absl::StrCat("no migration ", target));
  }
  PostgresPoolOptions pool_options;
  pool_options.url = options.url;
  pool_options.size = 1;
  pool_options.retry_budget = options.retry_budget;
  ASSIGN_OR_RETURN(auto pool, PostgresPool::Create(pool_options));

  MigrationReport report;
  bool first = true;
  for (bool done = false; !done;) {
    int applied = 0;
    RETURN_IF_ERROR(pool->Run("Migrate", {}, [&](pqxx::dbtransaction& tx) -> absl::Status {
      applied = 0;
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
      tx.exec0(kCreateSchemaVersion);
      tx.exec0(kAddCompatibleFrom);
      // After the advisory lock, whose wait (another migrator at work) is not the problem.
      tx.exec_params("SELECT set_config('lock_timeout', $1, true)",
                     absl::StrCat(absl::ToInt64Milliseconds(options.lock_timeout), "ms"));
      ASSIGN_OR_RETURN(int version, AppliedVersion(tx));
      if (first) report.from_version = version;
      report.to_version = version;
      if (version >= target) {
        // The app role reads the version to refuse a schema older than it expects.
        tx.exec0("GRANT SELECT ON schema_version TO acmevault_app");
        done = true;
        return absl::OkStatus();
      }
      const EmbeddedMigration& m = embedded[version];
      tx.exec(m.sql);
      tx.exec_params0(
          "INSERT INTO schema_version (version, name, sha256, compatible_from) "
          "VALUES ($1, $2, sha256(convert_to($3, 'UTF8')), $4)",
          m.version, m.name, m.sql, CompatibleFrom(m.sql, m.version));
      applied = m.version;
      report.to_version = m.version;
      return absl::OkStatus();
    }));
    first = false;
    if (applied != 0) report.applied.push_back(applied);
  }
  return report;
}

}  // namespace acmevault::storage
