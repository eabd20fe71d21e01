#include "service/health.h"

#include <atomic>
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;

// A database whose health the test sets.
class TestHealth : public storage::StoreHealth {
 public:
  absl::Status CheckHealth() override {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  void Set(absl::Status s) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(s);
  }

 private:
  absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class HealthTest : public ::testing::Test {
 protected:
  std::unique_ptr<HealthReporter> Reporter(bool with_scheduler) {
    HealthReporter::Options options;
    options.store = &db_;
    options.set_status = [this](const std::string& service, bool serving) {
      absl::MutexLock lock(&mu_);
      reported_[service] = serving;
    };
    options.api_services = {"acmevault.v1.CertificateService"};
    if (with_scheduler) options.scheduler_running = [this] { return scheduler_running_.load(); };
    return *HealthReporter::Create(options);
  }
  std::map<std::string, bool> Reported() {
    absl::MutexLock lock(&mu_);
    return reported_;
  }

  TestHealth db_;
  std::atomic<bool> scheduler_running_{true};
  absl::Mutex mu_;
  std::map<std::string, bool> reported_ ABSL_GUARDED_BY(mu_);
};

TEST_F(HealthTest, NotServingWhileTheDatabaseFailsAndServingAgainOnceItAnswers) {
  auto reporter = Reporter(/*with_scheduler=*/true);
  EXPECT_TRUE(reporter->CheckOnce().database.ok());
  EXPECT_EQ(Reported(), (std::map<std::string, bool>{{"", true},
                                                     {"acmevault.v1.CertificateService", true},
                                                     {kSchedulerService, true}}));
  db_.Set(absl::UnavailableError("connection refused"));
  HealthReporter::State state = reporter->CheckOnce();
  EXPECT_THAT(state.database, StatusIs(absl::StatusCode::kUnavailable, "connection refused"));
  EXPECT_FALSE(state.scheduler);
  EXPECT_EQ(Reported(), (std::map<std::string, bool>{{"", false},
                                                     {"acmevault.v1.CertificateService", false},
                                                     {kSchedulerService, false}}));
  db_.Set(absl::FailedPreconditionError("database schema is at version 10"));
  EXPECT_FALSE(reporter->CheckOnce().database.ok());
  EXPECT_FALSE(Reported()[""]);
  db_.Set(absl::OkStatus());
  reporter->CheckOnce();
  EXPECT_TRUE(Reported()[""]);
}

TEST_F(HealthTest, TheSchedulerIsReportedOnItsOwn) {
  auto reporter = Reporter(/*with_scheduler=*/true);
  scheduler_running_ = false;
  reporter->CheckOnce();
  EXPECT_TRUE(Reported()[""]);
  EXPECT_FALSE(Reported()[kSchedulerService]);
  auto without = Reporter(/*with_scheduler=*/false);
  {
    absl::MutexLock lock(&mu_);
    reported_.clear();
  }
  without->CheckOnce();
  EXPECT_EQ(Reported().count(kSchedulerService), 0u);
}

TEST_F(HealthTest, StartReportsAtOnce) {
  auto reporter = Reporter(/*with_scheduler=*/false);
  db_.Set(absl::UnavailableError("down"));
  ASSERT_TRUE(reporter->Start().ok());
  EXPECT_THAT(reporter->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
  for (int i = 0; i < 10000 && Reported().empty(); ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_FALSE(Reported()[""]);
  reporter->Stop();
}

TEST(HealthCreateTest, RefusesMissingCollaborators) {
  EXPECT_THAT(HealthReporter::Create({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace acmevault::service
