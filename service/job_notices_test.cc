#include "service/job_notices.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

storage::JobNotice Ended(storage::TenantId tenant, const std::string& subject) {
  return storage::JobNotice{tenant, "order_step", subject, false};
}

TEST(JobNotices, AWatchSeesANoticeSentAfterItOpenedEvenBeforeItWaits) {
  JobNotices notices;
  auto watch = notices.Open(1, "order_step", "7");
  notices.Notify(Ended(1, "7"));
  EXPECT_TRUE(watch->Wait(absl::InfiniteFuture()));
  // Each notice is returned once: the next wait ends at its time limit.
  EXPECT_FALSE(watch->Wait(absl::Now() + absl::Milliseconds(20)));
  EXPECT_EQ(notices.delivered(), 1);
}

TEST(JobNotices, OnlyTheNoticesOwnJobWakesAWaiter) {
  JobNotices notices;
  auto watch = notices.Open(1, "order_step", "7");
  notices.Notify(Ended(2, "7"));                                     // another tenant
  notices.Notify(Ended(1, "8"));                                     // another order
  notices.Notify(storage::JobNotice{1, "revoke_certificate", "7"});  // another kind
  EXPECT_FALSE(watch->Wait(absl::Now() + absl::Milliseconds(20)));
  EXPECT_EQ(notices.delivered(), 0);  // Nobody watched those jobs: nothing was kept.
}

TEST(JobNotices, AWaiterOnAnotherThreadIsWokenByTheNotice) {
  JobNotices notices;
  auto watch = notices.Open(1, "order_step", "7");
  std::atomic<bool> woken{false};
  std::thread waiter([&] { woken = watch->Wait(absl::InfiniteFuture()); });
  notices.Notify(Ended(1, "7"));
  waiter.join();
  EXPECT_TRUE(woken);
}

TEST(JobNotices, ACancelledWaiterStopsWaiting) {
  JobNotices notices(Clock::Real(), absl::Milliseconds(5));
  auto watch = notices.Open(1, "order_step", "7");
  std::atomic<bool> cancel{false};
  std::thread canceller([&] { cancel = true; });
  EXPECT_FALSE(watch->Wait(absl::InfiniteFuture(), [&] { return cancel.load(); }));
  canceller.join();
}

TEST(JobNotices, ClosedWatchesLeaveNothingBehind) {
  JobNotices notices;
  { auto a = notices.Open(1, "order_step", "7"); }
  notices.Notify(Ended(1, "7"));
  EXPECT_EQ(notices.delivered(), 0);
  auto b = notices.Open(1, "order_step", "7");
  EXPECT_FALSE(b->Wait(absl::Now() + absl::Milliseconds(10)));  // The earlier notice is not its.
}

}  // namespace
}  // namespace acmevault::service
