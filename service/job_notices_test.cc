#include "service/job_notices.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
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
  EXPECT_EQ(notices.delivered(), 0);  // Nobody watched those jobs.
}

// The store's listener reconnected: notices sent meanwhile are lost (JobNotice{}, tenant 0).
// A watch whose owner looks again after each wake-up asked to be woken then, once; the others
// were not (they count a wake-up as the job's end).
TEST(JobNotices, MissedNoticesWakeOnlyTheWatchesThatAskedAndOnce) {
  JobNotices notices;
  auto looks_again =
      notices.Open(1, "order_step", "7", JobNotices::From::kFromNow, JobNotices::Missed::kWake);
  auto counts = notices.Open(1, "revoke_certificate", "9");
  std::atomic<bool> woken{false};
  std::thread waiter([&] { woken = looks_again->Wait(absl::InfiniteFuture()); });
  notices.Notify(storage::JobNotice{});
  waiter.join();
  EXPECT_TRUE(woken);
  EXPECT_FALSE(looks_again->Wait(absl::Now() + absl::Milliseconds(20)));
  EXPECT_FALSE(counts->Wait(absl::Now() + absl::Milliseconds(20)));
  // A watch opened after the miss does not count it.
  auto later = notices.Open(1, "order_step", "8", JobNotices::From::kSinceCreated,
                            JobNotices::Missed::kWake);
  EXPECT_FALSE(later->Wait(absl::Now() + absl::Milliseconds(20)));
  // Its own job's notice still wakes it.
  notices.Notify(Ended(1, "8"));
  EXPECT_TRUE(later->Wait(absl::InfiniteFuture()));
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

TEST(JobNotices, ANoticeSentJustBeforeTheCreatorsWatchOpenedWakesIt) {
  // Another replica claimed the job the moment its creating transaction committed and ended
  // it before the creator's watch opened: the creator, which does not read the order before
  // the first notice, must not wait for a notice that already went by.
  JobNotices notices;
  notices.Notify(Ended(1, "7"));
  auto watch = notices.Open(1, "order_step", "7", JobNotices::From::kSinceCreated);
  EXPECT_TRUE(watch->Wait(absl::Now() + absl::Milliseconds(20)));
  EXPECT_FALSE(watch->Wait(absl::Now() + absl::Milliseconds(20)));  // once
}

TEST(JobNotices, AJoinersWatchCountsOnlyWhatComesAfterIt) {
  JobNotices notices;
  notices.Notify(Ended(1, "7"));  // an earlier step's notice, before this caller joined
  auto watch = notices.Open(1, "order_step", "7");
  EXPECT_FALSE(watch->Wait(absl::Now() + absl::Milliseconds(20)));
  notices.Notify(Ended(1, "7"));
  EXPECT_TRUE(watch->Wait(absl::Now() + absl::Milliseconds(20)));
}

TEST(JobNotices, AWatchAlreadyOpenedByAJoinerDoesNotHideTheNoticesFromTheCreator) {
  JobNotices notices;
  auto joiner = notices.Open(1, "order_step", "7");
  notices.Notify(Ended(1, "7"));
  auto creator = notices.Open(1, "order_step", "7", JobNotices::From::kSinceCreated);
  EXPECT_TRUE(creator->Wait(absl::Now() + absl::Milliseconds(20)));
  EXPECT_TRUE(joiner->Wait(absl::Now() + absl::Milliseconds(20)));
}

TEST(JobNotices, OnlyTheLastUnwatchedNoticesAreKept) {
  JobNotices notices;
  notices.Notify(Ended(1, "7"));
  for (size_t i = 0; i < JobNotices::kRecentUnwatched; ++i) {
    notices.Notify(Ended(1, absl::StrCat("other-", i)));
  }
  auto watch = notices.Open(1, "order_step", "7", JobNotices::From::kSinceCreated);
  EXPECT_FALSE(watch->Wait(absl::Now() + absl::Milliseconds(20)));
  auto recent = notices.Open(1, "order_step", absl::StrCat("other-", JobNotices::kRecentUnwatched - 1),
                             JobNotices::From::kSinceCreated);
  EXPECT_TRUE(recent->Wait(absl::Now() + absl::Milliseconds(20)));
}

}  // namespace
}  // namespace acmevault::service
