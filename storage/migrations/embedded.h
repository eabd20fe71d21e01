// The numbered SQL migrations of storage/migrations/, compiled into the binary (a genrule runs
// embed.sh over the .sql files), so `migrate` needs no files at run time.
#ifndef ACMEVAULT_STORAGE_MIGRATIONS_EMBEDDED_H_
#define ACMEVAULT_STORAGE_MIGRATIONS_EMBEDDED_H_

#include <vector>

namespace acmevault::storage {

struct EmbeddedMigration {
  int version;       // 1, 2, 3, ... (the file's NNNN)
  const char* name;  // the file name between NNNN_ and .sql
  const char* sql;   // the file's text
};

// Every migration, ordered by version, versions consecutive from 1. Static storage.
const std::vector<EmbeddedMigration>& EmbeddedMigrations();

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_MIGRATIONS_EMBEDDED_H_
