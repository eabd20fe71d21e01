// Migrations from an empty database up: idempotence, concurrent migrators, upgrades, refusal of
// edited or unknown migrations, and a non-superuser schema owner (the production setup).
#include "storage/migrate.h"

#include <pqxx/pqxx>

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/migrations/embedded.h"
#include "storage/postgres_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::KekText;
using ::acmevault::storage::testing::RewriteUrl;
using ::acmevault::storage::testing::StatusIs;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::storage::testing::TestKeks;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

// from, from + 1, ..., to.
std::vector<int> Versions(int from, int to) {
  std::vector<int> out;
  for (int v = from; v <= to; ++v) out.push_back(v);
  return out;
}

TEST(EmbeddedMigrations, AreNumberedFromOneWithoutGaps) {
  const auto& migrations = EmbeddedMigrations();
  ASSERT_GE(migrations.size(), 10u);
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
    EXPECT_GT(std::string(migrations[i].sql).size(), 100u);
  }
  EXPECT_STREQ(migrations[0].name, "roles_and_helpers");
  EXPECT_STREQ(migrations[4].name, "audit_log");
  EXPECT_STREQ(migrations[5].name, "order_material");
  EXPECT_STREQ(migrations[6].name, "account_safety");
  EXPECT_STREQ(migrations[7].name, "order_creator_and_token_expiry");
  EXPECT_STREQ(migrations[8].name, "order_failures");
  EXPECT_STREQ(migrations[9].name, "jobs");
  bool key_storage = false;  // Its number is whichever it gets when branches meet.
  for (const auto& m : migrations) key_storage |= std::string(m.name) == "key_storage";
  EXPECT_TRUE(key_storage);
  EXPECT_EQ(LatestSchemaVersion(), static_cast<int>(migrations.size()));
}

class MigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    url_ = url;
    auto db = TestDatabase::Create(url, /*migrate=*/false);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    pqxx::connection conn(db_->superuser_url());
    pqxx::work tx(conn);
    std::vector<std::vector<std::string>> out;
    for (const pqxx::row& r : tx.exec(sql)) {
      std::vector<std::string> row;
      for (const pqxx::field& f : r) row.push_back(f.is_null() ? "NULL" : f.c_str());
      out.push_back(row);
    }
    return out;
  }

  // Makes a role with CREATEROLE the owner of the test's database, as in production (the schema
  // belongs to it, not to a superuser); its URL. DropOwner() removes it again.
  std::string BecomeOwned() {
    std::random_device rd;
    owner_ = absl::StrCat(db_->name(), "_owner");
    const std::string password = absl::StrCat("pw", rd(), rd());
    EXPECT_OK(
        db_->Execute(absl::StrCat("CREATE ROLE ", owner_, " LOGIN CREATEROLE PASSWORD '", password,
                                  "'; ALTER DATABASE ", db_->name(), " OWNER TO ", owner_)));
    return RewriteUrl(db_->superuser_url(), owner_, password, db_->name());
  }
  void DropOwner() {
    ASSERT_OK(db_->Execute(absl::StrCat("ALTER DATABASE ", db_->name(), " OWNER TO postgres")));
    // Dropped after the database (its objects go with it); the destructor then runs harmlessly.
    db_.reset();
    pqxx::connection admin(url_);
    pqxx::nontransaction tx(admin);
    tx.exec(absl::StrCat("DROP ROLE IF EXISTS ", owner_));
  }

  std::string url_;
  std::unique_ptr<TestDatabase> db_;
  std::string owner_;
};

TEST_F(MigrateTest, FromEmptyToLatestOnceThenNothing) {
  ASSERT_OK_AND_ASSIGN(MigrationReport first, Migrate({db_->superuser_url()}));
  EXPECT_EQ(first.from_version, 0);
  EXPECT_EQ(first.to_version, LatestSchemaVersion());
  EXPECT_THAT(first.applied, ElementsAreArray(Versions(1, LatestSchemaVersion())));
  EXPECT_EQ(Query("SELECT version, name, octet_length(sha256) FROM schema_version "
                  "WHERE version <= 10 ORDER BY version"),
            (std::vector<std::vector<std::string>>{{"1", "roles_and_helpers", "32"},
                                                   {"2", "tables", "32"},
                                                   {"3", "row_level_security", "32"},
                                                   {"4", "cross_tenant_functions", "32"},
                                                   {"5", "audit_log", "32"},
                                                   {"6", "order_material", "32"},
                                                   {"7", "account_safety", "32"},
                                                   {"8", "order_creator_and_token_expiry", "32"},
                                                   {"9", "order_failures", "32"},
                                                   {"10", "jobs", "32"}}));
  // 15, 0017's ca_holds and ca_budgets, 0025's ca_directory_budgets and 0026's eab_keys.
  EXPECT_EQ(Query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0], "19");

  ASSERT_OK_AND_ASSIGN(MigrationReport second, Migrate({db_->superuser_url()}));
  EXPECT_EQ(second.from_version, LatestSchemaVersion());
  EXPECT_EQ(second.to_version, LatestSchemaVersion());
  EXPECT_THAT(second.applied, IsEmpty());
  EXPECT_EQ(Query("SELECT count(*) FROM schema_version")[0][0],
            std::to_string(LatestSchemaVersion()));
}

TEST_F(MigrateTest, ConcurrentMigratorsApplyEachMigrationExactlyOnce) {
  constexpr int kMigrators = 4;
  std::vector<absl::StatusOr<MigrationReport>> reports(kMigrators,
                                                       absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kMigrators; ++i) {
    threads.emplace_back([&, i] { reports[i] = Migrate({db_->superuser_url()}); });
  }
  for (std::thread& t : threads) t.join();
  std::vector<int> applied;
  for (const auto& r : reports) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->to_version, LatestSchemaVersion());
    applied.insert(applied.end(), r->applied.begin(), r->applied.end());
  }
  std::sort(applied.begin(), applied.end());
  EXPECT_THAT(applied, ElementsAreArray(Versions(1, LatestSchemaVersion())));
  EXPECT_EQ(Query("SELECT count(*) FROM schema_version")[0][0],
            std::to_string(LatestSchemaVersion()));
}

TEST_F(MigrateTest, UpgradesFromAnOlderVersion) {
  ASSERT_OK_AND_ASSIGN(MigrationReport old, Migrate({db_->superuser_url(), 2}));
  EXPECT_THAT(old.applied, ElementsAre(1, 2));
  EXPECT_EQ(Query("SELECT to_regclass('audit_log') IS NULL")[0][0], "t");
  ASSERT_OK_AND_ASSIGN(MigrationReport rest, Migrate({db_->superuser_url()}));
  EXPECT_EQ(rest.from_version, 2);
  EXPECT_THAT(rest.applied, ElementsAreArray(Versions(3, LatestSchemaVersion())));
  EXPECT_EQ(Query("SELECT to_regclass('audit_log') IS NOT NULL")[0][0], "t");
  EXPECT_THAT(Migrate({db_->superuser_url(), 99}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(MigrateTest, RefusesAMigrationEditedAfterItWasApplied) {
  ASSERT_OK(Migrate({db_->superuser_url()}).status());
  ASSERT_OK(db_->Execute("UPDATE schema_version SET sha256 = sha256('edited') WHERE version = 2"));
  EXPECT_THAT(Migrate({db_->superuser_url()}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "migration 2 (tables) differs from the one applied"));
}

TEST_F(MigrateTest, RefusesADatabaseNewerThanTheBinary) {
  ASSERT_OK(Migrate({db_->superuser_url()}).status());
  const int future = LatestSchemaVersion() + 1;
  ASSERT_OK(db_->Execute(absl::StrCat("INSERT INTO schema_version (version, name, sha256) VALUES (",
                                      future, ", 'future', sha256('x'))")));
  EXPECT_THAT(Migrate({db_->superuser_url()}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("newer than this binary's (", LatestSchemaVersion(), ")")));
}

TEST_F(MigrateTest, RecordsTheOldestBinaryEachMigrationAdmits) {
  ASSERT_OK(Migrate({db_->superuser_url()}).status());
  // 0009, 0012, 0013, 0014, 0015, 0016 and 0019 (columns no older binary reads), 0020 (an
  // index), 0021 (the audit trigger's body, same rows), 0022 (two functions' volatility),
  // 0023 (the audit encoding's language, same bytes), 0024 (four helpers' language or
  // strictness, same values), 0025 (budgets by identifier set and the fleet's, which an
  // older binary never reads; its account buckets stay one row each), 0027 (certificate
  // columns for CRL readings), 0028 (three helpers' volatility or body, same bytes), 0029 and
  // 0030 (a new function each), 0031 (four checks and a helper, the same values), 0032 (the
  // audit trigger's body and a column of the head no binary reads, same rows), 0033 (a
  // foreign key the chain's head makes redundant, the same rows refused), 0034 (an index's
  // column order), 0035 (a new function), 0036 (two functions' bodies), 0037 (an account
  // column an older binary neither reads nor writes; its accounts keep no contact) admit
  // binaries that know the one before, and 0010 (the job table: new tables and functions no earlier
  // binary reads) binaries that know 0009; every other migration shipped so far needs a binary that
  // knows it (0017 among them: an older binary would join stalled orders; 0018 too: it would take
  // an ephemeral account for the tenant's own; 0026 too: an older binary's re-wrap would never
  // finish the EAB keys).
  EXPECT_EQ(Query("SELECT version, compatible_from FROM schema_version "
                  "WHERE version <> compatible_from ORDER BY version"),
            (std::vector<std::vector<std::string>>{
                {"9", "8"},   {"10", "9"},  {"12", "11"}, {"13", "12"}, {"14", "13"},
                {"15", "14"}, {"16", "15"}, {"19", "18"}, {"20", "19"}, {"21", "20"},
                {"22", "21"}, {"23", "22"}, {"24", "23"}, {"25", "24"}, {"27", "26"},
                {"28", "27"}, {"29", "28"}, {"30", "29"}, {"31", "30"}, {"32", "31"},
                {"33", "32"}, {"34", "33"}, {"35", "34"}, {"36", "35"}, {"37", "36"}}));
  EXPECT_EQ(CompatibleFrom("-- compatible_from: 3\nALTER TABLE t ADD COLUMN c int;", 5), 3);
  EXPECT_EQ(CompatibleFrom("ALTER TABLE t ADD COLUMN c int;", 5), 5);
  EXPECT_EQ(CompatibleFrom("-- compatible_from: 9\n", 5), 5);  // never above its own version
}

// A migration that cannot get its lock gives up after lock_timeout (and retries within the
// budget) instead of queueing behind a long transaction while every other query queues
// behind it.
TEST_F(MigrateTest, AMigrationThatCannotGetItsLockGivesUpAfterTheLockTimeout) {
  ASSERT_OK(Migrate({db_->superuser_url(), 5}).status());
  pqxx::connection holder(db_->superuser_url());
  pqxx::work hold(holder);
  hold.exec0("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE");  // 0006 alters orders
  MigrateOptions options{db_->superuser_url()};
  options.lock_timeout = absl::Milliseconds(100);
  options.retry_budget = absl::ZeroDuration();
  EXPECT_THAT(Migrate(options),
              StatusIs(absl::StatusCode::kUnavailable, "Migrate: canceling statement due to "
                                                       "lock timeout"));
  hold.abort();
  ASSERT_OK_AND_ASSIGN(MigrationReport report, Migrate(options));
  EXPECT_EQ(report.to_version, LatestSchemaVersion());
}

TEST_F(MigrateTest, ANonSuperuserOwnerMigratesAndStaysBoundByRowSecurity) {
  const std::string owner_url = BecomeOwned();
  const std::string& owner = owner_;
  auto migrated = Migrate({owner_url});
  EXPECT_TRUE(migrated.ok()) << migrated.status();
  if (migrated.ok()) {
    EXPECT_THAT(migrated->applied, ElementsAreArray(Versions(1, LatestSchemaVersion())));
    EXPECT_EQ(Query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"),
              (std::vector<std::vector<std::string>>{{owner}}));
    EXPECT_EQ(Query("SELECT count(*) FROM pg_proc WHERE proname LIKE 'av\\_%' "
                    "AND prosecdef AND proowner = 'acmevault_definer'::regrole")[0][0],
              "18");  // av_release_jobs_of (0035) the latest
    // The owner lent itself the definer role only while handing the functions over.
    EXPECT_EQ(Query(absl::StrCat("SELECT pg_has_role('", owner,
                                 "', 'acmevault_definer', 'MEMBER')"))[0][0],
              "f");
    ASSERT_OK(db_->CreateAppRole());
    acmevault::testing::FakeClock clock;
    auto store = db_->OpenStore(&clock, TestKeks(KekText("k", 'k')));
    ASSERT_TRUE(store.ok()) << store.status();
    TenantSpec spec;
    spec.name = "alpha";
    spec.acme_directory_url = "https://ca.test/dir";
    ASSERT_OK_AND_ASSIGN(Tenant tenant, (*store)->CreateTenant({"a", "b"}, spec));
    EXPECT_OK((*store)->VerifyAuditChain(Scope{tenant.id, {}}));
    // FORCE ROW LEVEL SECURITY binds the owner too: without a tenant it sees no row.
    pqxx::connection conn(owner_url);
    pqxx::work tx(conn);
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM tenants")[0].as<int>(), 0);
    EXPECT_EQ(tx.exec1("SELECT count(*) FROM audit_log")[0].as<int>(), 0);
  }
  DropOwner();
}

// Concurrent CreateAccount calls of an older release could leave several pending or valid
// accounts of one tenant and directory. Migration 0007 keeps the one the service used (the
// newest valid one, else the newest pending one), closes the others before it adds the rule
// that allows one, and does so as an owner that row security binds too.
TEST_F(MigrateTest, AccountSafetyClosesTheDuplicateLiveAccountsTheServiceNoLongerUsed) {
  const std::string owner_url = BecomeOwned();
  ASSERT_OK(Migrate({owner_url, 6}).status());
  ASSERT_OK(db_->Execute(
      "INSERT INTO tenants (id, name, allowed_identifiers, key_algorithm, max_key_age_seconds, "
      "deactivate_authorizations_after_issuance, ephemeral_accounts, renewal_window_seconds, "
      "acme_directory_url, created_at, updated_at) VALUES (1, 'alpha', '{}', 'ecdsa-p256', 1, "
      "true, false, 1, 'https://ca.test/a', now(), now()); "
      "INSERT INTO accounts (id, tenant_id, directory_url, account_url, status, created_at, "
      "deactivated_at) VALUES "
      "(1, 1, 'https://ca.test/a', 'https://ca.test/acct/1', 'valid', now(), NULL), "
      "(2, 1, 'https://ca.test/a', 'https://ca.test/acct/2', 'valid', now(), NULL), "
      "(3, 1, 'https://ca.test/a', NULL, 'pending', now(), NULL), "
      "(4, 1, 'https://ca.test/a', 'https://ca.test/acct/4', 'deactivated', now(), now()), "
      "(5, 1, 'https://ca.test/b', NULL, 'pending', now(), NULL), "
      "(6, 1, 'https://ca.test/b', NULL, 'pending', now(), NULL), "
      "(7, 1, 'https://ca.test/c', NULL, 'pending', now(), NULL)"));
  auto migrated = Migrate({owner_url, 7});
  EXPECT_TRUE(migrated.ok()) << migrated.status();
  if (migrated.ok()) {
    EXPECT_THAT(migrated->applied, ElementsAre(7));
    EXPECT_EQ(Query("SELECT id, status, deactivated_at IS NOT NULL FROM accounts ORDER BY id"),
              (std::vector<std::vector<std::string>>{{"1", "deactivated", "t"},
                                                     {"2", "valid", "f"},
                                                     {"3", "deactivated", "t"},
                                                     {"4", "deactivated", "t"},
                                                     {"5", "deactivated", "t"},
                                                     {"6", "pending", "f"},
                                                     {"7", "pending", "f"}}));
    // Row security binds the owner again afterwards.
    EXPECT_EQ(Query("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'accounts'"),
              (std::vector<std::vector<std::string>>{{"t"}}));
  }
  DropOwner();
}

}  // namespace
}  // namespace acmevault::storage
