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

namespace acmevault::storage {

struct MigrateOptions {
  std::string url;  // libpq URL of the schema owner
  // Stop after this version (for tests of upgrades); 0 applies every migration.
  int target_version = 0;
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

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_MIGRATE_H_
