// PostgresListener against the stack's PostgreSQL: a notification sent on one connection
// reaches the listener on another; a lost connection is re-established (and announced through
// on_connect) and notifications flow again; a server that refuses connections is retried with
// backoff until the listener is destroyed. Waits are bounded in real time; nothing asserts how
// long anything took.
#include "storage/postgres_listener.h"

#include <pqxx/pqxx>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::StatusIs;
using ::acmevault::storage::testing::TestDatabase;
using ::testing::ElementsAre;

constexpr absl::Duration kPatience = absl::Seconds(30);

// What the listener delivered.
class Inbox {
 public:
  PostgresListenerOptions Options(std::string url, std::vector<std::string> channels) {
    PostgresListenerOptions options;
    options.url = std::move(url);
    options.channels = std::move(channels);
    options.on_notify = [this](const std::string& channel, const std::string& payload) {
      absl::MutexLock lock(&mu_);
      received_.push_back(absl::StrCat(channel, ":", payload));
    };
    options.on_connect = [this] {
      absl::MutexLock lock(&mu_);
      ++connects_;
    };
    return options;
  }
  std::vector<std::string> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return received_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&done), kPatience);
    return received_;
  }
  int connects() {
    absl::MutexLock lock(&mu_);
    return connects_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> received_ ABSL_GUARDED_BY(mu_);
  int connects_ ABSL_GUARDED_BY(mu_) = 0;
};

class PostgresListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto db = TestDatabase::Create(url);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  // NOTIFY from a connection of its own, as another replica would.
  void Notify(const std::string& channel, const std::string& payload) {
    pqxx::connection conn(db_->app_url());
    pqxx::work tx(conn);
    tx.exec_params("SELECT pg_notify($1, $2)", channel, payload);
    tx.commit();
  }

  std::unique_ptr<TestDatabase> db_;
};

TEST_F(PostgresListenerTest, ANotificationFromAnotherConnectionReachesTheListener) {
  Inbox inbox;
  ASSERT_OK_AND_ASSIGN(auto listener, PostgresListener::Start(inbox.Options(
                                          db_->app_url(), {kJobsChannel, kJobNoticeChannel})));
  ASSERT_TRUE(listener->WaitForConnections(1, kPatience));
  EXPECT_EQ(inbox.connects(), 1);

  Notify(kJobNoticeChannel, "7 order_step 42 done");
  Notify("some_other_channel", "not for us");
  Notify(kJobsChannel, "order_step");
  EXPECT_THAT(inbox.WaitFor(2), ElementsAre(absl::StrCat(kJobNoticeChannel, ":7 order_step 42 done"),
                                            absl::StrCat(kJobsChannel, ":order_step")));
  // A notification is sent when its transaction commits, and never if it rolls back.
  {
    pqxx::connection conn(db_->app_url());
    pqxx::work tx(conn);
    tx.exec_params("SELECT pg_notify($1, 'rolled back')", std::string(kJobsChannel));
    tx.abort();
  }
  Notify(kJobsChannel, "after");
  EXPECT_THAT(inbox.WaitFor(3), ElementsAre(::testing::_, ::testing::_,
                                            absl::StrCat(kJobsChannel, ":after")));
}

TEST_F(PostgresListenerTest, ALostConnectionIsReestablishedAndAnnounced) {
  Inbox inbox;
  PostgresListenerOptions options = inbox.Options(db_->app_url(), {kJobsChannel});
  options.initial_backoff = absl::Milliseconds(20);
  ASSERT_OK_AND_ASSIGN(auto listener, PostgresListener::Start(std::move(options)));
  ASSERT_TRUE(listener->WaitForConnections(1, kPatience));
  const int first_pid = listener->backend_pid();
  ASSERT_NE(first_pid, 0);

  // The server ends the session (as a restart or an administrator would).
  ASSERT_OK(db_->Execute(absl::StrCat("SELECT pg_terminate_backend(", first_pid, ")")));
  ASSERT_TRUE(listener->WaitForConnections(2, kPatience)) << "never reconnected";
  EXPECT_NE(listener->backend_pid(), first_pid);
  EXPECT_GE(listener->failures(), 1);
  EXPECT_EQ(inbox.connects(), 2);  // the owner learns it may have missed something

  Notify(kJobsChannel, "after the reconnection");
  EXPECT_THAT(inbox.WaitFor(1), ElementsAre(absl::StrCat(kJobsChannel, ":after the reconnection")));
}

TEST_F(PostgresListenerTest, ARefusingServerIsRetriedUntilTheListenerGoes) {
  Inbox inbox;
  // A port nothing listens on: the database's own URL, moved to port 1.
  std::string url = db_->app_url();
  const size_t colon = url.rfind(':', url.rfind('/'));
  url = absl::StrCat(url.substr(0, colon), ":1", url.substr(url.rfind('/')));
  PostgresListenerOptions options = inbox.Options(url, {kJobsChannel});
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(40);
  ASSERT_OK_AND_ASSIGN(auto listener, PostgresListener::Start(std::move(options)));
  EXPECT_FALSE(listener->WaitForConnections(1, absl::Milliseconds(300)));
  // Still trying (more than one attempt), never connected; the destructor ends it.
  absl::Time deadline = absl::Now() + kPatience;
  while (listener->failures() < 3 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_GE(listener->failures(), 3);
  EXPECT_EQ(listener->connections(), 0);
  EXPECT_EQ(inbox.connects(), 0);
  listener.reset();
}

TEST(PostgresListenerOptions, AreChecked) {
  Inbox inbox;
  PostgresListenerOptions options = inbox.Options("postgresql://x/y", {"ok_channel"});
  options.channels = {};
  EXPECT_THAT(PostgresListener::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.channels = {"Bad-Name"};
  EXPECT_THAT(PostgresListener::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "bad channel name"));
  options.channels = {"ok_channel"};
  options.url = "";
  EXPECT_THAT(PostgresListener::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.url = "postgresql://x/y";
  options.on_notify = nullptr;
  EXPECT_THAT(PostgresListener::Start(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace acmevault::storage
