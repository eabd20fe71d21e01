// A PostgreSQL crash-restart (pg_ctl restart -m immediate) in the middle of a stream of writes:
// every write PostgresStore acknowledged is there afterwards, and the same store object keeps
// working without a restart of the process.
//
// The test runs its own PostgreSQL cluster (testing/private_cluster.h), so restarting it
// disturbs no other test.
#include <pqxx/pqxx>

#include <atomic>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "storage/testing/private_cluster.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::KekText;
using ::acmevault::storage::testing::PrivateCluster;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::storage::testing::TestKeks;

std::string PostmasterStart(const std::string& url) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  return tx.exec1("SELECT pg_postmaster_start_time()::text")[0].as<std::string>();
}

TEST(PostgresRestart, AcknowledgedWritesSurviveAnImmediateRestartAndTheStoreRecovers) {
  ACMEVAULT_STACK_ENV_OR_SKIP(stack_url, "ACMEVAULT_PG_URL");  // runs under tests/run only
  PrivateCluster cluster;
  ASSERT_OK(cluster.Start());
  ASSERT_OK_AND_ASSIGN(auto db, TestDatabase::Create(cluster.url()));
  PostgresStoreOptions options;
  options.pool.url = db->app_url();
  options.pool.size = 2;
  options.pool.retry_budget = absl::Seconds(60);
  ASSERT_OK_AND_ASSIGN(auto store, PostgresStore::Create(options, TestKeks(KekText("k", 'k'))));
  TenantSpec spec;
  spec.name = "alpha";
  spec.acme_directory_url = "https://ca.test/dir";
  ASSERT_OK_AND_ASSIGN(Tenant tenant, store->CreateTenant({"test", "test"}, spec));
  const Scope scope{tenant.id, {"writer", "test"}};

  // The writer keeps writing until 100 writes were acknowledged after the restart returned.
  std::atomic<int> acked{0};
  std::atomic<bool> restarted{false};
  std::atomic<int> acked_after_restart{0};
  absl::Notification fifty;
  absl::Mutex mu;
  std::vector<int> acknowledged;
  std::vector<absl::Status> failures;
  std::thread writer([&] {
    for (int i = 0; i < 20000; ++i) {
      if (restarted && acked_after_restart >= 100) break;
      absl::Status s = store->PutChallenge(scope, absl::StrCat("token-", i), absl::StrCat("ka-", i));
      absl::MutexLock lock(&mu);
      if (s.ok()) {
        acknowledged.push_back(i);
        if (++acked == 50) fifty.Notify();
        if (restarted) ++acked_after_restart;
      } else {
        failures.push_back(s);
      }
    }
    if (!fifty.HasBeenNotified()) fifty.Notify();
  });
  fifty.WaitForNotification();
  const std::string started_before = PostmasterStart(db->superuser_url());
  const int acked_before = acked;
  absl::Status restart = cluster.CrashRestart();
  restarted = true;
  const int acked_during = acked - acked_before;
  writer.join();
  ASSERT_OK(restart);
  EXPECT_NE(PostmasterStart(db->superuser_url()), started_before) << "no restart happened";
  std::cout << "acknowledged " << acknowledged.size() << " writes: " << acked_before
            << " before the restart, " << acked_during << " while it ran, "
            << acked_after_restart << " after; " << failures.size() << " failed\n";
  for (const absl::Status& s : failures) std::cout << "failed: " << s << "\n";

  EXPECT_GE(acked_after_restart.load(), 100) << "the store did not recover";
  // A write in flight at the crash may have an unknown outcome (UNAVAILABLE, never ABORTED or
  // silently lost); nothing else may fail.
  EXPECT_LE(failures.size(), 1u);
  for (const absl::Status& s : failures) EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  ASSERT_GT(acknowledged.size(), 150u);
  for (int i : acknowledged) {
    auto value = store->LookupChallenge(absl::StrCat("token-", i));
    ASSERT_TRUE(value.ok()) << "acknowledged write " << i << " is lost: " << value.status();
    EXPECT_EQ(*value, absl::StrCat("ka-", i));
  }
  // The audit rows written with them survived as a consistent chain.
  EXPECT_OK(store->VerifyAuditChain(scope));
  EXPECT_OK(store->PutChallenge(scope, "token-after", "ka-after"));
}

}  // namespace
}  // namespace acmevault::storage
