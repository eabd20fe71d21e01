// The conformance suite against PostgresStore on the local stack's PostgreSQL 15. Each test
// gets its own database (storage/testing/test_database.h) and connects as a member of
// acmevault_app, as the service does. After each test, a pg_dump of its database must contain
// none of the private keys the test generated, in any encoding (PEM body, DER or its hex, the
// JWK "d" value).
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "storage/testing/store_conformance.h"
#include "storage/testing/test_database.h"

namespace acmevault::storage::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Enough connections for the suite's concurrent tests to run truly in parallel.
constexpr int kPoolSize = 6;

class PostgresHarness final : public StoreHarness {
 public:
  PostgresHarness(std::unique_ptr<TestDatabase> db, std::unique_ptr<PostgresStore> store,
                  const Clock* clock)
      : db_(std::move(db)), store_(std::move(store)), clock_(clock) {}

  Store& store() override { return *store_; }

  absl::StatusOr<std::unique_ptr<Store>> Reopen(KekSet keks) override {
    auto store = db_->OpenStore(clock_, std::move(keks), kPoolSize);
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(*store));
  }

  void AfterTest(const std::vector<KeyMaterial>& generated) override {
    auto dump = db_->Dump();
    ASSERT_TRUE(dump.ok()) << dump.status();
    // The dump really holds the vault: its tables and their rows.
    EXPECT_THAT(*dump, HasSubstr("COPY public.account_keys"));
    EXPECT_THAT(*dump, HasSubstr("COPY public.audit_log"));
    EXPECT_THAT(FindLeaks(*dump, generated), IsEmpty())
        << "pg_dump of " << db_->name() << " contains private key material";
  }

 private:
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PostgresStore> store_;
  const Clock* clock_;
};

StoreFactory PostgresStoreFactory() {
  return StoreFactory{
      "Postgres", true,
      [](const Clock* clock, KekSet keks,
         const std::string& url) -> absl::StatusOr<std::unique_ptr<StoreHarness>> {
        auto db = TestDatabase::Create(url);
        if (!db.ok()) return db.status();
        auto store = (*db)->OpenStore(clock, std::move(keks), kPoolSize);
        if (!store.ok()) return store.status();
        return std::unique_ptr<StoreHarness>(
            new PostgresHarness(std::move(*db), std::move(*store), clock));
      }};
}

INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformanceTest,
                         ::testing::Values(PostgresStoreFactory()), FactoryName);

}  // namespace
}  // namespace acmevault::storage::testing
