#include "clients/lib/backoff.h"

#include "gtest/gtest.h"

namespace acmevault::clients {
namespace {

TEST(BackoffTest, DelaysGrowWithJitterUpToTheCap) {
  Backoff backoff(
      {.initial_delay = absl::Seconds(1), .max_delay = absl::Seconds(5), .multiplier = 2},
      /*seed=*/42);
  const absl::Duration ceilings[] = {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                     absl::Seconds(5), absl::Seconds(5)};
  for (absl::Duration ceiling : ceilings) {
    absl::Duration d = backoff.Next();
    EXPECT_GE(d, ceiling / 2);
    EXPECT_LE(d, ceiling);
  }
  backoff.Reset();
  EXPECT_LE(backoff.Next(), absl::Seconds(1));
}

TEST(BackoffTest, OneSeedGivesOneSequenceAndSeedsDiffer) {
  Backoff a({}, 7), b({}, 7), c({}, 8);
  absl::Duration first = a.Next();
  EXPECT_EQ(first, b.Next());
  EXPECT_NE(first, c.Next());
}

}  // namespace
}  // namespace acmevault::clients
