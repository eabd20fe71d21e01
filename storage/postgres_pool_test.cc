// PostgresPool: bounded connections, retries of what is safe to retry, and the mapping of
// PostgreSQL errors to absl::Status. Errors are raised on purpose with RAISE ... USING ERRCODE,
// so every case is deterministic.
#include "storage/postgres_pool.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::StatusIs;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::testing::FakeClock;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

std::string Raise(const std::string& sqlstate) {
  return absl::StrCat("DO $$ BEGIN RAISE EXCEPTION 'raised %', '", sqlstate,
                      "' USING ERRCODE = '", sqlstate,
                      "', DETAIL = 'Key (secret)=(do-not-echo)'; END $$");
}

class PostgresPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto db = TestDatabase::Create(url);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  std::unique_ptr<PostgresPool> MakePool(int size, absl::Duration acquire_timeout,
                                         absl::Duration retry_budget) {
    PostgresPoolOptions options;
    options.url = db_->app_url();
    options.size = size;
    options.acquire_timeout = acquire_timeout;
    options.retry_budget = retry_budget;
    auto pool = PostgresPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  std::unique_ptr<TestDatabase> db_;
};

// A loopback TCP port that is bound but not listening, so a connection to it is refused at once
// (and no other process can take it while the test runs).
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "cannot bind a loopback port";
      return;
    }
    port_ = ntohs(address.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) close(fd_);
  }
  std::string HostPort() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string Url() const { return absl::StrCat("postgresql://nobody@", HostPort(), "/nothing"); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A forwarder to the stack's PostgreSQL, listening on a Unix socket of its own as the stack's
// server does, whose connections the test cuts as a server stopped in immediate mode does: each
// backend sends its client a warning and goes, with no error message (pg_terminate_backend
// would not do: its backend sends the error 57P01 before it closes). The client reads the
// warning; its next send fails (EPIPE), and its read meets the end of the stream.
class CuttingForwarder {
 public:
  // A forwarder to the server of `url` (the stack's form, "...@127.0.0.1:PORT/..."), and in
  // *through the same URL by the forwarder's socket.
  static std::unique_ptr<CuttingForwarder> For(const std::string& url, std::string* through) {
    const std::string host = "@127.0.0.1:";
    const size_t at = url.find(host);
    const size_t slash = url.find('/', at == std::string::npos ? 0 : at);
    int port = 0;
    if (at == std::string::npos || slash == std::string::npos ||
        !absl::SimpleAtoi(url.substr(at + host.size(), slash - at - host.size()), &port) ||
        url.find('?') != std::string::npos) {
      ADD_FAILURE() << "unexpected URL form";
      return nullptr;
    }
    auto forwarder = std::unique_ptr<CuttingForwarder>(new CuttingForwarder(port));
    if (forwarder->listen_fd_ < 0) return nullptr;
    *through = absl::StrCat(url, "?host=", forwarder->dir_, "&port=", kSocketPort);
    return forwarder;
  }
  ~CuttingForwarder() {
    if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);  // accept() returns
    if (acceptor_.joinable()) acceptor_.join();
    Cut();
    for (std::thread& t : pumps_) t.join();
    for (int fd : fds_) close(fd);
    if (listen_fd_ >= 0) close(listen_fd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  // Ends every connection made so far, on both sides, after the warning to each client that
  // is still there.
  void Cut() {
    absl::MutexLock lock(&mu_);
    for (int fd : clients_) send(fd, kWarning.data(), kWarning.size(), MSG_NOSIGNAL);
    clients_.clear();
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }

 private:
  static constexpr int kSocketPort = 5432;  // names the socket file, as libpq looks for it
  // A NoticeResponse, as PostgreSQL 15's quickdie() sends it.
  static constexpr absl::string_view kWarning{
      "N\0\0\0\x58"
      "SWARNING\0VWARNING\0C57P01\0"
      "Mterminating connection due to immediate shutdown command\0\0",
      0x59};

  explicit CuttingForwarder(int upstream_port) : upstream_port_(upstream_port) {
    char dir[] = "/tmp/acmevault-forwarder-XXXXXX";  // short: a socket path has 107 bytes
    if (mkdtemp(dir) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
      return;
    }
    dir_ = dir;
    path_ = absl::StrCat(dir_, "/.s.PGSQL.", kSocketPort);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path_.copy(address.sun_path, sizeof(address.sun_path) - 1);
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        listen(fd, 8) != 0) {
      ADD_FAILURE() << "cannot listen on " << path_;
      if (fd >= 0) close(fd);
      return;
    }
    listen_fd_ = fd;
    acceptor_ = std::thread([this] { Accept(); });
  }
  void Accept() {
    for (;;) {
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      address.sin_port = htons(upstream_port_);
      absl::MutexLock lock(&mu_);
      fds_.push_back(client);
      clients_.push_back(client);
      if (server >= 0) fds_.push_back(server);
      if (server < 0 ||
          connect(server, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        shutdown(client, SHUT_RDWR);
        continue;
      }
      pumps_.emplace_back([client, server] { Pump(client, server); });
    }
  }
  // Copies each side's bytes to the other until either ends.
  static void Pump(int a, int b) {
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    char buffer[16384];
    for (bool open = true; open && poll(fds, 2, -1) > 0;) {
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
        for (ssize_t sent = 0; n > 0 && sent < n;) {
          const ssize_t w = send(fds[1 - i].fd, buffer + sent, n - sent, MSG_NOSIGNAL);
          if (w <= 0) n = -1;
          sent += w;
        }
        open = n > 0;
      }
    }
    shutdown(a, SHUT_RDWR);
    shutdown(b, SHUT_RDWR);
  }

  const int upstream_port_;
  std::string dir_, path_;
  int listen_fd_ = -1;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<int> clients_ ABSL_GUARDED_BY(mu_);  // of fds_, the client sides
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
};

// A pool of one connection to `db` through a forwarder the test cuts; null (with a failure)
// when either cannot be made.
std::unique_ptr<PostgresPool> PoolThroughForwarder(const TestDatabase& db,
                                                   std::unique_ptr<CuttingForwarder>* forwarder) {
  PostgresPoolOptions options;
  *forwarder = CuttingForwarder::For(db.app_url(), &options.url);
  if (*forwarder == nullptr) return nullptr;
  options.size = 1;
  auto pool = PostgresPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

// The pool's waits between attempts, without their jitter: 10 ms doubling to 500 ms.
std::vector<absl::Duration> Jitters(const std::vector<absl::Duration>& sleeps) {
  std::vector<absl::Duration> out;
  absl::Duration backoff = absl::Milliseconds(10);
  for (absl::Duration d : sleeps) {
    out.push_back(d - backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
  return out;
}

// A refused connection is retryable: Run keeps trying, backing off on the injected clock, until
// the next wait would end past the retry budget. Nothing sleeps for real.
TEST(PostgresPoolRetry, BacksOffOnTheInjectedClockUntilTheBudgetIsSpent) {
  RefusingPort port;
  FakeClock clock;
  PostgresPoolOptions options;
  options.url = port.Url();
  options.retry_budget = absl::Seconds(3);
  options.clock = &clock;
  options.jitter_seed = 7;
  auto pool = PostgresPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const absl::Time start = clock.Now();
  int runs = 0;
  absl::Status s = (*pool)->Run("Op", {}, [&](pqxx::dbtransaction&) {
    ++runs;
    return absl::OkStatus();
  });
  EXPECT_EQ(runs, 0);
  const std::vector<absl::Duration> sleeps = clock.sleeps();
  // 10, 20, 40, 80, 160, 320 and four times 500 ms, plus jitters: 2,630 to 2,730 ms; one more
  // wait of 500 ms would end past the 3 s budget, whatever the jitters.
  ASSERT_THAT(sleeps, SizeIs(10));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, "Op: "));
  EXPECT_THAT(std::string(s.message()), HasSubstr("(after 11 attempts)"));
  std::set<absl::Duration> distinct;
  for (absl::Duration jitter : Jitters(sleeps)) {
    EXPECT_GE(jitter, absl::ZeroDuration());
    EXPECT_LT(jitter, absl::Milliseconds(10));
    distinct.insert(jitter);
  }
  EXPECT_GT(distinct.size(), 1u) << "the jitter varies between attempts";
  EXPECT_EQ(clock.Now() - start, [&] {
    absl::Duration total;
    for (absl::Duration d : sleeps) total += d;
    return total;
  }());
  EXPECT_EQ(pool->get()->open_connections(), 0);
}

// One generator per pool, seeded once: a second transaction continues the first one's jitter
// sequence rather than starting a fresh generator, and the same seed gives the same sequence.
TEST(PostgresPoolRetry, JitterComesFromOneGeneratorSeededAtCreation) {
  RefusingPort port;
  auto run_twice = [&](uint64_t seed, int runs) {
    FakeClock clock;
    PostgresPoolOptions options;
    options.url = port.Url();
    options.retry_budget = absl::Milliseconds(100);  // 10, 20, 40 ms: three waits per Run
    options.clock = &clock;
    options.jitter_seed = seed;
    auto pool = PostgresPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    for (int i = 0; i < runs && pool.ok(); ++i) {
      EXPECT_THAT((*pool)->Run("Op", {}, [](pqxx::dbtransaction&) { return absl::OkStatus(); }),
                  StatusIs(absl::StatusCode::kUnavailable));
    }
    return clock.sleeps();
  };
  const std::vector<absl::Duration> both = run_twice(11, 2);
  ASSERT_THAT(both, SizeIs(6));
  const std::vector<absl::Duration> first(both.begin(), both.begin() + 3);
  const std::vector<absl::Duration> second(both.begin() + 3, both.end());
  EXPECT_EQ(run_twice(11, 1), first);
  EXPECT_NE(Jitters(second), Jitters(first));
}

TEST(PostgresPoolCreate, ValidatesOptions) {
  EXPECT_THAT(PostgresPool::Create({}), StatusIs(absl::StatusCode::kInvalidArgument, "URL"));
  PostgresPoolOptions options;
  options.url = "postgresql://x@127.0.0.1/y";
  options.size = 0;
  EXPECT_THAT(PostgresPool::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.size = 1;
  options.idle_in_transaction_timeout = absl::Seconds(-1);
  EXPECT_THAT(PostgresPool::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "idle-in-transaction timeout"));
  options.idle_in_transaction_timeout = absl::ZeroDuration();  // never: allowed
  EXPECT_OK(PostgresPool::Create(options).status());
}

TEST(PostgresPoolCreate, RefusesANullClock) {
  PostgresPoolOptions options;
  options.url = "postgresql://x@127.0.0.1/y";
  options.clock = nullptr;
  EXPECT_THAT(PostgresPool::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "clock is null"));
}

TEST_F(PostgresPoolTest, ErrorsMapToStatusCodesWithoutTheirDetail) {
  auto pool = MakePool(2, absl::Seconds(5), absl::ZeroDuration());
  struct Case {
    std::string sqlstate;
    absl::StatusCode code;
  } cases[] = {
      {"23505", absl::StatusCode::kAlreadyExists},    // unique_violation
      {"23503", absl::StatusCode::kNotFound},         // foreign_key_violation
      {"23514", absl::StatusCode::kInvalidArgument},  // check_violation
      {"22P02", absl::StatusCode::kInvalidArgument},  // invalid_text_representation
      {"42501", absl::StatusCode::kPermissionDenied}, // insufficient_privilege (and RLS)
      {"55000", absl::StatusCode::kFailedPrecondition},
      {"40001", absl::StatusCode::kAborted},          // serialization_failure
      {"40P01", absl::StatusCode::kAborted},          // deadlock_detected
      {"57014", absl::StatusCode::kDeadlineExceeded}, // query_canceled
      {"XX000", absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    absl::Status s = pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
      tx.exec(Raise(c.sqlstate));
      return absl::OkStatus();
    });
    EXPECT_EQ(s.code(), c.code) << c.sqlstate << ": " << s;
    if (c.sqlstate.rfind("23", 0) != 0) {  // class 23 has words of its own (next test)
      EXPECT_EQ(s.message(), absl::StrCat("Op: raised ", c.sqlstate)) << c.sqlstate;
    }
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("do-not-echo")));
  }
}

// PostgreSQL's constraint messages name tables, columns and constraints, and echo values
// ("Key (name)=(alpha) already exists" in DETAIL, constraint names in the primary message): the
// schema is not the API, so integrity violations reach callers in the store's own words.
TEST_F(PostgresPoolTest, IntegrityViolationsAreReportedInOurOwnWords) {
  auto pool = MakePool(2, absl::Seconds(5), absl::ZeroDuration());
  struct Case {
    std::string statement;
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {"INSERT INTO t VALUES (1, 1, 1)", absl::StatusCode::kAlreadyExists,
       "Op: conflicts with an existing record"},
      {"INSERT INTO t VALUES (2, 2, -1)", absl::StatusCode::kInvalidArgument,
       "Op: a value is outside what the schema admits"},
      {"INSERT INTO t VALUES (3, NULL, 1)", absl::StatusCode::kInvalidArgument,
       "Op: a value is outside what the schema admits"},
      {"INSERT INTO c VALUES (7)", absl::StatusCode::kNotFound,
       "Op: refers to a record that does not exist"},
  };
  for (const Case& c : cases) {
    absl::Status s = pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
      tx.exec0("CREATE TEMP TABLE t (id int PRIMARY KEY, name text NOT NULL UNIQUE, "
               "n int CONSTRAINT t_secret_check CHECK (n > 0)) ON COMMIT DROP");
      tx.exec0("CREATE TEMP TABLE c (t_id int REFERENCES t (id)) ON COMMIT DROP");
      tx.exec0("INSERT INTO t VALUES (1, 1, 1)");
      tx.exec0(c.statement);
      return absl::OkStatus();
    });
    EXPECT_EQ(s.code(), c.code) << c.statement << ": " << s;
    EXPECT_EQ(s.message(), c.message) << c.statement;
  }
}

TEST_F(PostgresPoolTest, SerializationFailuresAndDeadlocksAreRetriedFromTheStart) {
  auto pool = MakePool(2, absl::Seconds(5), absl::Seconds(30));
  for (const std::string sqlstate : {"40001", "40P01"}) {
    int attempts = 0;
    int64_t rows = -1;
    ASSERT_OK(pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
      ++attempts;
      tx.exec0("CREATE TEMP TABLE t (x int) ON COMMIT DROP");
      tx.exec0("INSERT INTO t VALUES (1)");
      if (attempts < 3) tx.exec(Raise(sqlstate));
      rows = tx.exec1("SELECT count(*) FROM t")[0].as<int64_t>();
      return absl::OkStatus();
    }));
    EXPECT_EQ(attempts, 3) << sqlstate;
    EXPECT_EQ(rows, 1) << "the failed attempts' writes were rolled back";
  }
}

// A statement prepared on a connection (as the store prepares every statement) whose result
// columns a migration then changes fails there ("cached plan must not change result type"); the
// transaction runs again on a new connection, which prepares it anew.
TEST_F(PostgresPoolTest, AStatementAMigrationReshapedIsPreparedAgainOnANewConnection) {
  ASSERT_OK(db_->Execute("CREATE TABLE reshaped (x int); INSERT INTO reshaped VALUES (1); "
                         "GRANT SELECT ON reshaped TO acmevault_app"));
  auto pool = MakePool(1, absl::Seconds(5), absl::Seconds(30));
  int attempts = 0;
  auto columns = [&] {
    int n = -1;
    EXPECT_OK(pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
      ++attempts;
      tx.conn().prepare("reshaped_all", "SELECT * FROM reshaped");
      n = static_cast<int>(tx.exec_prepared("reshaped_all").columns());
      return absl::OkStatus();
    }));
    return n;
  };
  EXPECT_EQ(columns(), 1);
  ASSERT_OK(db_->Execute("ALTER TABLE reshaped ADD COLUMN y int"));
  EXPECT_EQ(columns(), 2);
  EXPECT_EQ(attempts, 3);  // the second call's first attempt met the old plan
}

TEST_F(PostgresPoolTest, LostConnectionIsRetriedOnAFreshConnection) {
  auto pool = MakePool(1, absl::Seconds(5), absl::Seconds(30));
  int first_pid = 0;
  ASSERT_OK(pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
    first_pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
    return absl::OkStatus();
  }));
  ASSERT_OK(db_->Execute(absl::StrCat("SELECT pg_terminate_backend(", first_pid, ")")));
  // Termination is asynchronous: wait (bounded) until the backend is gone.
  for (int i = 0; i < 500; ++i) {
    pqxx::connection admin(db_->superuser_url());
    pqxx::nontransaction tx(admin);
    if (tx.exec_params1("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first_pid)[0]
            .as<int>() == 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  int attempts = 0;
  int pid = 0;
  ASSERT_OK(pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
    ++attempts;
    pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
    return absl::OkStatus();
  }));
  // The dead connection failed before the body ran; the body ran once, on a fresh connection.
  EXPECT_EQ(attempts, 1);
  EXPECT_NE(pid, first_pid);
  EXPECT_EQ(pool->open_connections(), 1);
}

// A connection the server dropped before COMMIT (stopped in immediate mode) is met by the
// next statement, after libpq has read the server's warning: while the connection sat idle in
// the pool, or in the middle of the body, before a statement sent alone or a pipeline
// (PooledTransaction::Send). libpqxx throws the loss as broken_connection, or as an error with
// no SQLSTATE ("server closed the connection unexpectedly") while libpq still takes the
// connection for open. Nothing committed: the transaction runs again on a fresh connection,
// and is not returned as INTERNAL.
TEST_F(PostgresPoolTest, AConnectionLostBeforeCommitIsRetriedOnAFreshConnection) {
  std::unique_ptr<CuttingForwarder> forwarder;
  std::unique_ptr<PostgresPool> pool = PoolThroughForwarder(*db_, &forwarder);
  ASSERT_NE(pool, nullptr);
  PostgresPool::TxOptions in_tenant;
  in_tenant.tenant = 42;
  ASSERT_OK(
      db_->Execute("CREATE TABLE kept (n int); GRANT INSERT, SELECT ON kept TO acmevault_app"));
  ASSERT_OK(pool->Run("Connect", in_tenant, [](pqxx::dbtransaction& tx) {
    tx.exec("SELECT 1");
    return absl::OkStatus();
  }));
  enum class Cut { kWhileIdle, kBeforeAStatement, kBeforeAPipeline };
  for (Cut cut : {Cut::kWhileIdle, Cut::kBeforeAStatement, Cut::kBeforeAPipeline}) {
    const int n = static_cast<int>(cut);
    SCOPED_TRACE(n);
    if (cut == Cut::kWhileIdle) forwarder->Cut();
    int attempts = 0;
    std::string tenant;
    ASSERT_OK(pool->Run("Op", in_tenant, [&](pqxx::dbtransaction& tx) {
      ++attempts;
      tenant = tx.exec1("SELECT av_tenant()::text")[0].as<std::string>();
      if (cut != Cut::kWhileIdle && attempts == 1) {
        forwarder->Cut();
        absl::SleepFor(absl::Milliseconds(50));  // the warning and the end reach the client
      }
      const std::string insert = absl::StrCat("INSERT INTO kept VALUES (", n, ")");
      if (cut == Cut::kBeforeAPipeline) {
        dynamic_cast<PooledTransaction&>(tx).Send({insert, "SELECT 1"});
      } else {
        tx.exec(insert);
      }
      return absl::OkStatus();
    }));
    EXPECT_EQ(attempts, 2);  // the first met the cut connection
    EXPECT_EQ(tenant, "42");
  }
  EXPECT_EQ(pool->open_connections(), 1);
  std::vector<int> kept;
  ASSERT_OK(pool->Run("Look", {}, [&](pqxx::dbtransaction& tx) {
    kept.clear();
    for (const pqxx::row& row : tx.exec("SELECT n FROM kept ORDER BY n")) {
      kept.push_back(row[0].as<int>());
    }
    return absl::OkStatus();
  }));
  EXPECT_THAT(kept, ElementsAre(0, 1, 2));  // each committed once
}

// A connection lost under COMMIT leaves the outcome unknown: UNAVAILABLE, said so, and not run
// again (it may have committed).
TEST_F(PostgresPoolTest, AConnectionLostUnderCommitIsNotRetried) {
  std::unique_ptr<CuttingForwarder> forwarder;
  std::unique_ptr<PostgresPool> pool = PoolThroughForwarder(*db_, &forwarder);
  ASSERT_NE(pool, nullptr);
  PostgresPool::TxOptions in_tenant;
  in_tenant.tenant = 42;
  int attempts = 0;
  absl::Status s = pool->Run("Op", in_tenant, [&](pqxx::dbtransaction& tx) {
    ++attempts;
    tx.exec("SELECT 1");
    dynamic_cast<PooledTransaction&>(tx).SendWithCommit("SELECT 2");
    forwarder->Cut();
    return absl::OkStatus();
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, "outcome is unknown"));
  EXPECT_EQ(attempts, 1);
}

// A libpq multi-host URL whose first host is down connects to the next one at once: the
// refused host costs no retry of the transaction.
TEST_F(PostgresPoolTest, MultiHostUrlConnectsPastAHostThatIsDown) {
  RefusingPort down;
  std::string url = db_->app_url();
  const size_t at = url.find("@127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << "unexpected URL form";
  url.insert(at + 1, absl::StrCat(down.HostPort(), ","));
  url += "?target_session_attrs=read-write";
  PostgresPoolOptions options;
  options.url = url;
  options.size = 1;
  ASSERT_OK_AND_ASSIGN(auto pool, PostgresPool::Create(options));
  int attempts = 0;
  std::string database;
  ASSERT_OK(pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
    ++attempts;
    database = tx.exec1("SELECT current_database()")[0].as<std::string>();
    return absl::OkStatus();
  }));
  EXPECT_EQ(attempts, 1);
  EXPECT_EQ(database, db_->name());
}

TEST_F(PostgresPoolTest, WithNoRetryBudgetARetryableFailureIsReturnedAtOnce) {
  auto pool = MakePool(1, absl::Seconds(5), absl::ZeroDuration());
  int attempts = 0;
  absl::Status s = pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
    ++attempts;
    tx.exec(Raise("40001"));
    return absl::OkStatus();
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(s.message(), "Op: raised 40001");
  EXPECT_EQ(attempts, 1);
}

TEST_F(PostgresPoolTest, ABodysOwnErrorAbortsAndIsNotRetried) {
  auto pool = MakePool(1, absl::Seconds(5), absl::Seconds(30));
  int attempts = 0;
  absl::Status s = pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
    ++attempts;
    tx.exec0("CREATE TEMP TABLE written_then_aborted (x int)");
    return absl::FailedPreconditionError("no");
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition, "no"));
  EXPECT_EQ(attempts, 1);
  // Same (only) connection: the table the aborted transaction created is gone.
  bool exists = true;
  ASSERT_OK(pool->Run("Check", {}, [&](pqxx::dbtransaction& tx) {
    exists = !tx.exec1("SELECT to_regclass('pg_temp.written_then_aborted') IS NULL")[0].as<bool>();
    return absl::OkStatus();
  }));
  EXPECT_FALSE(exists);
}

TEST_F(PostgresPoolTest, PoolIsBoundedAndAWaiterGivesUpAfterTheAcquireTimeout) {
  auto pool = MakePool(1, absl::Milliseconds(100), absl::ZeroDuration());
  absl::Notification holding, release;
  std::thread holder([&] {
    EXPECT_OK(pool->Run("Hold", {}, [&](pqxx::dbtransaction&) {
      holding.Notify();
      release.WaitForNotification();
      return absl::OkStatus();
    }));
  });
  holding.WaitForNotification();
  EXPECT_THAT(pool->Run("Wait", {}, [](pqxx::dbtransaction&) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kUnavailable, "no database connection free"));
  EXPECT_EQ(pool->open_connections(), 1);
  release.Notify();
  holder.join();
  EXPECT_OK(pool->Run("After", {}, [](pqxx::dbtransaction&) { return absl::OkStatus(); }));
  EXPECT_EQ(pool->open_connections(), 1);
}

// A replica stopped inside a transaction (SIGSTOP, a frozen VM, a cut network) keeps its locks
// until the server ends its session: the claims' advisory lock, which every replica's claims and
// new orders take, or a tenant's audit head. The pool's sessions are ended by the server once
// they sit idle in a transaction for idle_in_transaction_timeout, which frees their locks.
TEST_F(PostgresPoolTest, ASessionLeftIdleInATransactionIsEndedAndItsLocksFreed) {
  PostgresPoolOptions options;
  options.url = db_->app_url();
  options.size = 2;
  options.retry_budget = absl::ZeroDuration();
  options.idle_in_transaction_timeout = absl::Seconds(1);
  auto pool = PostgresPool::Create(options);
  ASSERT_OK(pool.status());
  absl::Notification locked, done;
  absl::Status stalled;
  std::thread holder([&] {
    stalled = (*pool)->Run("Stall", {}, [&](pqxx::dbtransaction& tx) {
      tx.exec("SELECT pg_advisory_xact_lock(7017572999732617843)");
      locked.Notify();
      done.WaitForNotificationWithTimeout(absl::Seconds(30));  // idle in the transaction
      return absl::OkStatus();
    });
  });
  locked.WaitForNotification();
  // Bounded: a lock that is never freed fails the test (55P03) instead of hanging it.
  absl::Status claimed = (*pool)->Run("Claim", {}, [](pqxx::dbtransaction& tx) {
    tx.exec("SET LOCAL lock_timeout = '10s'");
    tx.exec("SELECT pg_advisory_xact_lock(7017572999732617843)");
    return absl::OkStatus();
  });
  done.Notify();
  holder.join();
  EXPECT_OK(claimed);
  // The stalled transaction did not commit: its session was gone.
  EXPECT_FALSE(stalled.ok());
}

// A replica stopped with a second session waiting in the lock's queue: once the holder's session
// is ended, the waiter would take the lock and, its client stopped as well, sit idle holding it
// for another idle timeout, and so on through the pool (the freeze chaos suite saw the claims'
// lock held 4 s under a 2 s timeout). A pool session gives up waiting for a lock after half the
// idle timeout, before a stopped holder's session can be ended, so the lock is free one idle
// timeout after the stop.
TEST_F(PostgresPoolTest, AStoppedReplicasWaitingSessionDoesNotTakeTheLockWhenItsHolderIsEnded) {
  PostgresPoolOptions options;
  options.url = db_->app_url();
  options.size = 2;
  options.retry_budget = absl::ZeroDuration();  // a stopped replica retries nothing
  options.idle_in_transaction_timeout = absl::Seconds(2);
  auto pool = PostgresPool::Create(options);
  ASSERT_OK(pool.status());
  absl::Notification locked, done;
  absl::Status held, waited;
  // Each transaction's client stops once its statement has been answered.
  auto stopped_client = [&](absl::Status& out) {
    out = (*pool)->Run("Stopped", {}, [&](pqxx::dbtransaction& tx) {
      tx.exec("SELECT pg_advisory_xact_lock(7017572999732617843)");
      if (!locked.HasBeenNotified()) locked.Notify();  // the holder; the waiter comes after it
      done.WaitForNotificationWithTimeout(absl::Seconds(30));
      return absl::OkStatus();
    });
  };
  std::thread holder([&] { stopped_client(held); });
  locked.WaitForNotification();
  std::thread waiter([&] { stopped_client(waited); });
  pqxx::connection other(db_->app_url());
  // The waiter is in the lock's queue before the other replica's session.
  for (int i = 0; i < 500; ++i) {
    pqxx::nontransaction q(other);
    if (q.exec1("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0]
            .as<int>() > 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  // The other replica's claim waits up to 3 s: past the holder's end (2 s), short of the
  // waiter's (4 s) had the waiter taken the lock.
  const absl::Time asked = absl::Now();
  std::string claimed = "ok";
  try {
    pqxx::work tx(other);
    tx.exec("SET LOCAL lock_timeout = '3s'");
    tx.exec("SELECT pg_advisory_xact_lock(7017572999732617843)");
    tx.commit();
  } catch (const std::exception& e) {
    claimed = e.what();
  }
  const absl::Duration waited_for = absl::Now() - asked;
  done.Notify();
  holder.join();
  waiter.join();
  EXPECT_EQ(claimed, "ok") << "after " << waited_for;
  EXPECT_FALSE(held.ok());
  EXPECT_THAT(waited, StatusIs(absl::StatusCode::kUnavailable)) << waited;
}

// The replica that ran again after its session was ended finds it gone at its next statement:
// a lost connection, so the transaction runs again from the start on a fresh one.
TEST_F(PostgresPoolTest, ATransactionWhoseIdleSessionWasEndedRunsAgainOnAFreshConnection) {
  PostgresPoolOptions options;
  options.url = db_->app_url();
  options.size = 1;
  options.retry_budget = absl::Seconds(20);
  options.idle_in_transaction_timeout = absl::Milliseconds(300);
  auto pool = PostgresPool::Create(options);
  ASSERT_OK(pool.status());
  int attempts = 0;
  std::set<int> backends;
  EXPECT_OK((*pool)->Run("Stall", {}, [&](pqxx::dbtransaction& tx) {
    ++attempts;
    backends.insert(tx.exec1("SELECT pg_backend_pid()")[0].as<int>());
    if (attempts == 1) absl::SleepFor(absl::Seconds(2));  // idle in the transaction
    tx.exec("SELECT 1");
    return absl::OkStatus();
  }));
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(backends.size(), 2u);
}

TEST_F(PostgresPoolTest, TenantIsSetForTheTransactionOnly) {
  auto pool = MakePool(1, absl::Seconds(5), absl::ZeroDuration());
  PostgresPool::TxOptions in_tenant;
  in_tenant.tenant = 42;
  std::string inside, after;
  ASSERT_OK(pool->Run("Op", in_tenant, [&](pqxx::dbtransaction& tx) {
    inside = tx.exec1("SELECT coalesce(av_tenant()::text, 'none')")[0].as<std::string>();
    return absl::OkStatus();
  }));
  ASSERT_OK(pool->Run("Op", {}, [&](pqxx::dbtransaction& tx) {
    after = tx.exec1("SELECT coalesce(av_tenant()::text, 'none')")[0].as<std::string>();
    return absl::OkStatus();
  }));
  EXPECT_EQ(inside, "42");
  EXPECT_EQ(after, "none");  // same connection, next transaction: no tenant
}

// The tenant is set by a statement prepared on the connection, whatever the tenant: a text
// carrying the id would be parsed and planned again by every transaction.
TEST_F(PostgresPoolTest, TheTenantIsSetByOneStatementPreparedOnTheConnection) {
  auto pool = MakePool(1, absl::Seconds(5), absl::ZeroDuration());
  for (TenantId tenant : {7, 8, 9}) {
    PostgresPool::TxOptions in_tenant;
    in_tenant.tenant = tenant;
    ASSERT_OK(pool->Run("Op", in_tenant, [](pqxx::dbtransaction&) { return absl::OkStatus(); }));
  }
  std::vector<std::string> runs;
  ASSERT_OK(pool->Run("Look", {}, [&](pqxx::dbtransaction& tx) {
    for (const pqxx::row& r :
         tx.exec("SELECT generic_plans + custom_plans FROM pg_prepared_statements "
                 "WHERE statement LIKE '%acmevault.tenant_id%'")) {
      runs.push_back(r[0].as<std::string>());
    }
    return absl::OkStatus();
  }));
  EXPECT_THAT(runs, ElementsAre("3"));  // one statement, run by all three transactions
}

// The set-up travels with the body's first statements. When it fails, none of them runs, and
// the transaction it opened is ended: the connection goes back to the pool fit for the next
// transaction. A body that sends nothing meets the set-up's error before COMMIT.
TEST_F(PostgresPoolTest, ASetUpThatFailsLeavesNoTransactionOpen) {
  PostgresPoolOptions options;
  options.url = db_->app_url();
  options.size = 1;
  options.retry_budget = absl::ZeroDuration();
  // Divides by zero for a one-digit tenant id, after setting it.
  options.prepared_statements = {
      {"failing_setup",
       "SELECT 1 / (length(set_config('acmevault.tenant_id', $1, true)) - 1) AS x"}};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresPool> pool, PostgresPool::Create(options));
  // A sequence on the pool's one connection: nextval is not undone by a rollback, so it tells
  // whether a statement ran at all.
  ASSERT_OK(pool->Run("Create", {}, [](pqxx::dbtransaction& tx) {
    tx.exec0("CREATE TEMPORARY SEQUENCE ran");
    return absl::OkStatus();
  }));
  auto calls = [&] {
    int64_t n = -1;
    EXPECT_OK(pool->Run("Count", {}, [&](pqxx::dbtransaction& tx) {
      n = tx.exec1("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ran")[0]
              .as<int64_t>();
      return absl::OkStatus();
    }));
    return n;
  };
  std::vector<int> firsts;
  PostgresPool::TxOptions failing;
  failing.tenant = 7;
  failing.first_prepared = "failing_setup";
  failing.check_first = [&](const pqxx::result& r) {
    firsts.push_back(r[0][0].as<int>());
    return absl::OkStatus();
  };
  bool returned = false;
  EXPECT_THAT(pool->Run("Op", failing,
                        [&](pqxx::dbtransaction& tx) {
                          tx.exec("SELECT nextval('ran')");
                          returned = true;
                          return absl::OkStatus();
                        }),
              StatusIs(absl::StatusCode::kInvalidArgument, "division by zero"));
  EXPECT_FALSE(returned);
  EXPECT_EQ(calls(), 0);
  EXPECT_THAT(pool->Run("Op", failing, [](pqxx::dbtransaction&) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kInvalidArgument, "division by zero"));
  EXPECT_THAT(firsts, ElementsAre());
  // A two-digit tenant passes the same set-up, whose row comes back with the body's first
  // statement.
  failing.tenant = 42;
  ASSERT_OK(pool->Run("Op", failing, [](pqxx::dbtransaction& tx) {
    tx.exec("SELECT nextval('ran')");
    return absl::OkStatus();
  }));
  EXPECT_THAT(firsts, ElementsAre(1));
  EXPECT_EQ(calls(), 1);
  // The same (only) connection: no aborted transaction block left over.
  std::string tenant;
  PostgresPool::TxOptions in_tenant;
  in_tenant.tenant = 9;
  ASSERT_OK(pool->Run("Op", in_tenant, [&](pqxx::dbtransaction& tx) {
    tenant = tx.exec1("SELECT av_tenant()::text")[0].as<std::string>();
    return absl::OkStatus();
  }));
  EXPECT_EQ(tenant, "9");
  EXPECT_EQ(pool->open_connections(), 1);
}

// TxOptions::check_first sees the set-up's rows before any later statement's result reaches
// the body. Its refusal is what Run returns, even where the body's own statement failed in the
// same round trip, and nothing of the transaction commits.
TEST_F(PostgresPoolTest, ASetUpsRefusalIsReturnedAndNothingCommits) {
  auto pool = MakePool(1, absl::Seconds(5), absl::ZeroDuration());
  ASSERT_OK(pool->Run("Create", {}, [](pqxx::dbtransaction& tx) {
    tx.exec0("CREATE TEMPORARY TABLE refused (x integer)");
    return absl::OkStatus();
  }));
  PostgresPool::TxOptions refusing;
  refusing.tenant = 5;
  refusing.check_first = [](const pqxx::result&) { return absl::NotFoundError("tenant 5"); };
  int reached = 0;
  // The body's second statement succeeds, then fails, in the set-up's round trip.
  for (const char* second : {"SELECT 1", "SELECT 1 / 0"}) {
    EXPECT_THAT(
        pool->Run(
            "Op", refusing,
            [&](pqxx::dbtransaction& tx) {
              dynamic_cast<PooledTransaction&>(tx).Send({"INSERT INTO refused VALUES (1)", second});
              ++reached;
              return absl::OkStatus();
            }),
        StatusIs(absl::StatusCode::kNotFound, "tenant 5"))
        << second;
  }
  EXPECT_EQ(reached, 0);
  int64_t rows = -1;
  ASSERT_OK(pool->Run("Count", {}, [&](pqxx::dbtransaction& tx) {
    rows = tx.exec1("SELECT count(*) FROM refused")[0].as<int64_t>();
    return absl::OkStatus();
  }));
  EXPECT_EQ(rows, 0);
  // Accepted, the same statements commit, in the set-up's transaction (its tenant).
  PostgresPool::TxOptions accepting;
  accepting.tenant = 6;
  accepting.check_first = [](const pqxx::result&) { return absl::OkStatus(); };
  std::vector<pqxx::result> results;
  ASSERT_OK(pool->Run("Op", accepting, [&](pqxx::dbtransaction& tx) {
    results = dynamic_cast<PooledTransaction&>(tx).Send(
        {"INSERT INTO refused VALUES (3)", "SELECT av_tenant()::text"});
    return absl::OkStatus();
  }));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[1][0][0].as<std::string>(), "6");
  ASSERT_OK(pool->Run("Count", {}, [&](pqxx::dbtransaction& tx) {
    rows = tx.exec1("SELECT count(*) FROM refused")[0].as<int64_t>();
    return absl::OkStatus();
  }));
  EXPECT_EQ(rows, 1);
  EXPECT_EQ(pool->open_connections(), 1);
}

// What a body sends with COMMIT commits with the transaction, or fails it: nothing of the
// transaction commits, its error is returned, and the connection is fit for the next one.
TEST_F(PostgresPoolTest, WhatIsSentWithCommitCommitsOrFailsWithTheTransaction) {
  auto pool = MakePool(1, absl::Seconds(5), absl::ZeroDuration());
  auto rows = [&] {
    int64_t n = -1;
    EXPECT_OK(pool->Run("Count", {}, [&](pqxx::dbtransaction& tx) {
      n = tx.exec1("SELECT count(*) FROM sent_with_commit")[0].as<int64_t>();
      return absl::OkStatus();
    }));
    return n;
  };
  // A temporary table: the pool's one connection keeps it.
  ASSERT_OK(pool->Run("Create", {}, [](pqxx::dbtransaction& tx) {
    tx.exec0("CREATE TEMPORARY TABLE sent_with_commit (x integer)");
    return absl::OkStatus();
  }));
  EXPECT_THAT(pool->Run("Fail", {},
                        [](pqxx::dbtransaction& tx) {
                          tx.exec0("INSERT INTO sent_with_commit VALUES (1)");
                          dynamic_cast<PooledTransaction&>(tx).SendWithCommit("SELECT 1 / 0");
                          return absl::OkStatus();
                        }),
              StatusIs(absl::StatusCode::kInvalidArgument, "division by zero"));
  EXPECT_EQ(rows(), 0);
  ASSERT_OK(pool->Run("Commit", {}, [](pqxx::dbtransaction& tx) {
    tx.exec0("INSERT INTO sent_with_commit VALUES (1)");
    auto& pooled = dynamic_cast<PooledTransaction&>(tx);
    pooled.SendWithCommit("INSERT INTO sent_with_commit VALUES (2)");
    pooled.SendWithCommit("INSERT INTO sent_with_commit VALUES (3)");  // after the first
    return absl::OkStatus();
  }));
  EXPECT_EQ(rows(), 3);
  // A body that fails sends nothing.
  EXPECT_THAT(pool->Run("Abort", {},
                        [](pqxx::dbtransaction& tx) {
                          dynamic_cast<PooledTransaction&>(tx).SendWithCommit(
                              "INSERT INTO sent_with_commit VALUES (4)");
                          return absl::FailedPreconditionError("no");
                        }),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(rows(), 3);
  EXPECT_EQ(pool->open_connections(), 1);
}

}  // namespace
}  // namespace acmevault::storage
