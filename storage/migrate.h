// Migrate: brings a PostgreSQL database to the schema this binary was built with, by applying
// the numbered migrations of storage/migrations/ (embedded at build time) that it lacks.
//
// Each migration runs in its own transaction together with its row in schema_version (version,
// name, SHA-256 of its text, time), under a transaction-level advisory lock, so concurrent
// migrators (several replicas starting at once) apply each migration exactly once, and a
// failed migration leaves no trace. Running it again is a no-op. The `acmevaultd migrate`
// command wraps this; the service itself connects as acmevault_app and only checks the version
// (PostgresStore::Create).
//
// Run it as the role that should own the schema: a superuser, or the database owner with
// CREATEROLE (migration 0001 creates the roles acmevault_app and acmevault_definer).
#ifndef ACMEVAULT_STORAGE_MIGRATE_H_
#define ACMEVAULT_STORAGE_MIGRATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace acmevault::storage {

struct MigrateOptions {
  std::string url;  // libpq URL of the schema owner
  // Stop after this version (for tests of upgrades); 0 applies every migration.
  int target_version = 0;
  // Each migration's statements wait at most this long for a table lock (SET LOCAL
  // lock_timeout) and then fail, rather than queue behind a long transaction while every later
  // query on that table queues behind the migration. The transaction is then re-run.
  absl::Duration lock_timeout = absl::Seconds(5);
  // How long a migration whose lock timed out keeps being re-run, with backoff, before Migrate
  // returns UNAVAILABLE "... lock timeout".
  absl::Duration retry_budget = absl::Seconds(60);
};

struct MigrationReport {
  int from_version = 0;      // the database's version before
  int to_version = 0;        // and after
  std::vector<int> applied;  // versions this call applied, in order
};

// FAILED_PRECONDITION if the database records a migration this binary does not have (it is
// newer) or one whose name or text differs from the embedded one (a migration was edited after
// it shipped); UNAVAILABLE if the database cannot be reached; the mapped SQL error of a
// migration that fails (which is then not recorded).
absl::StatusOr<MigrationReport> Migrate(const MigrateOptions& options);

// The newest migration version this binary carries.
int LatestSchemaVersion();

// The oldest binary a migration admits, recorded as schema_version.compatible_from: a binary
// that knows migrations 1..K runs against a schema with this migration applied iff
// K >= compatible_from. A migration declares it with a line "-- compatible_from: K" (K at most
// its own version; see migrations/README.md for when a migration may); without one it is
// `version`, i.e. only binaries that know it.
int CompatibleFrom(absl::string_view sql, int version);

// What a replica that knows `known` migrations decides about a database at `applied` whose
// migrations newer than `known` admit binaries from `oldest_admitted` on (the largest of their
// compatible_from; unused when applied <= known). FAILED_PRECONDITION "database schema is at
// version A, this binary needs K: run acmevaultd migrate" when applied < known, and "database
// schema is at version A, which needs a binary that knows migration C or later; this one knows
// K: upgrade acmevaultd" when the newer schema does not admit it.
absl::Status CheckSchemaVersion(int applied, int oldest_admitted, int known);

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_MIGRATE_H_
