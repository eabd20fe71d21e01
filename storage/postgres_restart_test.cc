// A PostgreSQL crash-restart (pg_ctl restart -m immediate) in the middle of a stream of writes:
// every write PostgresStore acknowledged is there afterwards, and the same store object keeps
// working without a restart of the process.
//
// The test runs its own PostgreSQL cluster (initdb + pg_ctl as the postgres user, on a private
// port and data directory under /tmp), so restarting it disturbs no other test.
#include <pwd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include <atomic>
#include <iostream>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::KekText;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::storage::testing::TestKeks;

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A PostgreSQL 15 cluster of its own, bound to 127.0.0.1, trusting local connections.
class PrivateCluster {
 public:
  ~PrivateCluster() {
    if (started_) PgCtl("stop -m immediate").IgnoreError();
    if (!dir_.empty()) std::system(absl::StrCat("rm -rf '", dir_, "'").c_str());
  }

  absl::Status Start() {
    std::string bin = ::acmevault::testing::StackEnv("ACMEVAULT_PG_BIN");
    bin_ = bin.empty() ? "/usr/lib/postgresql/15/bin" : bin;
    // TEST_TMPDIR may sit in a 0700 directory the postgres user cannot enter.
    char tmpl[] = "/tmp/acmevault-restart-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    if (getuid() == 0) {
      passwd* pg = getpwnam("postgres");
      if (pg == nullptr) return absl::FailedPreconditionError("no postgres user");
      if (chown(dir_.c_str(), pg->pw_uid, pg->pw_gid) != 0) {
        return absl::InternalError("chown failed");
      }
    }
    port_ = FreeLoopbackPort();
    if (absl::Status s = AsPostgres(absl::StrCat(bin_, "/initdb -D '", dir_,
                                                 "/data' -U postgres --auth=trust -E UTF8 "
                                                 "--locale=C.UTF-8"));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = PgCtl("start"); !s.ok()) return s;
    started_ = true;
    return absl::OkStatus();
  }

  // pg_ctl restart -m immediate: the server is killed (no checkpoint, crash recovery on start).
  absl::Status CrashRestart() { return PgCtl("restart -m immediate"); }

  std::string url() const {
    return absl::StrCat("postgresql://postgres:unused@127.0.0.1:", port_, "/postgres");
  }

 private:
  absl::Status AsPostgres(const std::string& command) {
    std::string log = dir_ + "/command.log";
    // Tests run with PATH=/bin:/usr/bin:/usr/local/bin; runuser lives in /usr/sbin.
    const char* runuser =
        access("/usr/sbin/runuser", X_OK) == 0 ? "/usr/sbin/runuser" : "/sbin/runuser";
    std::string full =
        getuid() == 0 ? absl::StrCat(runuser, " -u postgres -- ", command) : command;
    int rc = std::system(absl::StrCat(full, " >'", log, "' 2>&1").c_str());
    if (rc != 0) {
      std::ifstream in(log);
      std::stringstream text;
      text << in.rdbuf();
      return absl::InternalError(absl::StrCat(command, " failed: ", text.str()));
    }
    return absl::OkStatus();
  }

  absl::Status PgCtl(const std::string& action) {
    return AsPostgres(absl::StrCat(
        bin_, "/pg_ctl -D '", dir_, "/data' -l '", dir_, "/postgres.log' -w -t 60 -o '-c ",
        "listen_addresses=127.0.0.1 -c port=", port_, " -c unix_socket_directories=", dir_,
        "' ", action));
  }

  std::string bin_;
  std::string dir_;
  int port_ = 0;
  bool started_ = false;
};

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
