// Test helper: a throwaway PostgreSQL database on the local stack, so test targets running in
// parallel never share state. Creates database t_<random> (as the stack's superuser), migrates
// it, and creates a login role t_<random>_app that is a member of acmevault_app, the role the
// service runs as. The destructor drops both.
#ifndef ACMEVAULT_STORAGE_TESTING_TEST_DATABASE_H_
#define ACMEVAULT_STORAGE_TESTING_TEST_DATABASE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/clock.h"
#include "storage/kek_set.h"
#include "storage/postgres_store.h"

namespace acmevault::storage::testing {

// `url` ("postgresql://user:password@host:port/db") with another user, password and database.
std::string RewriteUrl(absl::string_view url, absl::string_view user, absl::string_view password,
                       absl::string_view database);

class TestDatabase {
 public:
  // `superuser_url` is ACMEVAULT_PG_URL. With `migrate` false the database stays empty and
  // there is no app role until CreateAppRole (acmevault_app comes from migration 0001).
  static absl::StatusOr<std::unique_ptr<TestDatabase>> Create(const std::string& superuser_url,
                                                              bool migrate = true);
  ~TestDatabase();

  const std::string& name() const { return name_; }
  // The superuser, connected to this database (schema owner; bypasses row-level security).
  const std::string& superuser_url() const { return superuser_url_; }
  // The app role, connected to this database.
  const std::string& app_url() const { return app_url_; }
  absl::Status CreateAppRole();
  // A PostgresStore on this database as the app role. `clock` is borrowed.
  absl::StatusOr<std::unique_ptr<PostgresStore>> OpenStore(const Clock* clock, KekSet keks,
                                                           int pool_size = 4) const;
  // Runs `sql` as the superuser in this database; for setup and tampering. INTERNAL with the
  // server's message on error.
  absl::Status Execute(const std::string& sql);
  // The output of pg_dump (schema and data, plain text) of this database.
  absl::StatusOr<std::string> Dump() const;

 private:
  TestDatabase(std::string admin_url, std::string name);

  const std::string admin_url_;  // the superuser's URL to the maintenance database
  const std::string name_;
  std::string superuser_url_;
  std::string app_url_;
  bool app_role_ = false;
};

// A fresh, migrated database and a PostgresStore on it as the app role (pool of 4), using
// `clock` (borrowed) and `keks`: where most tests against the stack start.
struct StoreOnDatabase {
  std::unique_ptr<TestDatabase> db;
  std::unique_ptr<PostgresStore> store;
};
absl::StatusOr<StoreOnDatabase> CreateStoreOnDatabase(const std::string& superuser_url,
                                                      const Clock* clock, KekSet keks);

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_TEST_DATABASE_H_
