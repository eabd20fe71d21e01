#include "clients/agent/renewal.h"

#include "gtest/gtest.h"

namespace acmevault::agent {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1893456000);
const absl::Time kEnd = kStart + absl::Hours(24 * 90);

TEST(RenewalTimeTest, FractionOfTheLifetimeMadeEarlierByJitter) {
  EXPECT_EQ(RenewalTime(kStart, kEnd, 2.0 / 3, 0.1, 0), kStart + absl::Hours(24 * 60));
  EXPECT_EQ(RenewalTime(kStart, kEnd, 2.0 / 3, 0.1, 0.5), kStart + absl::Hours(24 * 57));
  absl::Time earliest = RenewalTime(kStart, kEnd, 2.0 / 3, 0.1, 0.999999);
  EXPECT_GT(earliest, kStart + absl::Hours(24 * 54) - absl::Minutes(1));
  EXPECT_LT(earliest, kStart + absl::Hours(24 * 54) + absl::Minutes(1));
}

TEST(RenewalTimeTest, StaysWithinTheLifetime) {
  EXPECT_EQ(RenewalTime(kStart, kEnd, 7, 0, 0), kEnd);
  EXPECT_EQ(RenewalTime(kStart, kEnd, -1, 0, 0), kStart);
  EXPECT_EQ(RenewalTime(kEnd, kStart, 0.5, 0, 0), kStart);  // Nonsense dates: due at once.
}

}  // namespace
}  // namespace acmevault::agent
