// PostgresPool across a PostgreSQL fail-over, with a libpq multi-host URL and
// target_session_attrs=read-write (how a highly available PostgreSQL is named: every host, and
// "connect to whichever is the primary now").
//
// Two clusters of the test's own (testing/private_cluster.h) play primary and standby. The
// standby is a cluster with default_transaction_read_only=on: libpq's read-write check
// (PostgreSQL 14 and later) refuses it exactly as it refuses a hot standby, and it can be
// "promoted" by restarting it without that setting, in seconds and without replication.
#include <pqxx/pqxx>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_pool.h"
#include "storage/testing/private_cluster.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::PrivateCluster;

constexpr char kStandby[] = "-c default_transaction_read_only=on";

// A write (absl::StatusOr<int>, the port of the server that took it) that succeeded there.
MATCHER_P(WentTo, port, "") {
  if (!arg.ok()) {
    *result_listener << "failed: " << arg.status();
    return false;
  }
  *result_listener << "went to port " << *arg;
  return *arg == port;
}

class PostgresFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(stack_url, "ACMEVAULT_PG_URL");  // runs under tests/run only
    ASSERT_OK(primary_.Start());
    ASSERT_OK(standby_.Start(kStandby));
    for (PrivateCluster* c : {&primary_, &standby_}) {
      pqxx::connection conn(c->url());
      pqxx::nontransaction tx(conn);
      tx.exec0("SET default_transaction_read_only = off");
      tx.exec0("CREATE TABLE writes (server_port int)");
    }
  }

  // Both hosts, `first` first, asking libpq for the one that takes writes.
  std::string MultiHostUrl(const PrivateCluster& first, const PrivateCluster& second) {
    return absl::StrCat("postgresql://postgres:unused@127.0.0.1:", first.port(), ",127.0.0.1:",
                        second.port(), "/postgres?target_session_attrs=read-write");
  }

  std::unique_ptr<PostgresPool> MakePool(const std::string& url) {
    PostgresPoolOptions options;
    options.url = url;
    options.size = 2;
    options.retry_budget = absl::Seconds(60);
    auto pool = PostgresPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  // One write; returns the port of the server that took it.
  absl::StatusOr<int> Write(PostgresPool& pool) {
    int port = 0;
    absl::Status s = pool.Run("Write", {}, [&](pqxx::dbtransaction& tx) {
      port = tx.exec1("INSERT INTO writes SELECT inet_server_port() RETURNING server_port")[0]
                 .as<int>();
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return port;
  }

  // The standby becomes the primary.
  absl::Status Promote() {
    if (absl::Status s = standby_.Stop(); !s.ok()) return s;
    return standby_.Restart("");
  }

  PrivateCluster primary_;
  PrivateCluster standby_;
};

TEST_F(PostgresFailoverTest, ConnectsToThePrimaryWhereverItIsListed) {
  for (const std::string& url :
       {MultiHostUrl(standby_, primary_), MultiHostUrl(primary_, standby_)}) {
    auto pool = MakePool(url);
    EXPECT_THAT(Write(*pool), WentTo(primary_.port())) << url;
  }
}

// The primary dies; for a while no host takes writes; then the standby is promoted. A write
// started in that window waits (retrying on fresh connections) and lands on the new primary.
TEST_F(PostgresFailoverTest, FollowsThePrimaryWhenTheOldOneDies) {
  auto pool = MakePool(MultiHostUrl(primary_, standby_));
  ASSERT_THAT(Write(*pool), WentTo(primary_.port()));
  ASSERT_OK(primary_.Stop());
  absl::StatusOr<int> during = absl::UnknownError("not run");
  std::thread writer([&] { during = Write(*pool); });
  absl::SleepFor(absl::Milliseconds(500));  // Not an assertion: lets the writer find no primary.
  ASSERT_OK(Promote());
  writer.join();
  EXPECT_THAT(during, WentTo(standby_.port()));
  EXPECT_THAT(Write(*pool), WentTo(standby_.port()));
  EXPECT_EQ(pool->open_connections(), 1) << "the old primary's connection was kept";
}

// The old primary is fenced rather than killed (made read-only, as a fail-over manager may do
// so that a partitioned primary takes no more writes) while its sessions stay open. A pooled
// connection to it must be dropped, and the write re-run where libpq now finds the primary;
// kept, it would fail every write with "read-only transaction" for as long as it lives.
TEST_F(PostgresFailoverTest, DropsAConnectionWhoseServerNoLongerTakesWrites) {
  auto pool = MakePool(MultiHostUrl(primary_, standby_));
  ASSERT_THAT(Write(*pool), WentTo(primary_.port()));
  {
    pqxx::connection conn(primary_.url());
    pqxx::nontransaction tx(conn);
    tx.exec0("ALTER SYSTEM SET default_transaction_read_only = on");
    tx.exec("SELECT pg_reload_conf()");
  }
  ASSERT_OK(Promote());
  EXPECT_THAT(Write(*pool), WentTo(standby_.port()));
  EXPECT_EQ(pool->open_connections(), 1);
}

}  // namespace
}  // namespace acmevault::storage
