#include "service/renewal_policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"

namespace acmevault::service {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

// A 90-day certificate issued at kT0.
storage::Certificate Cert(const std::string& serial = "0a1b") {
  storage::Certificate c;
  c.serial = serial;
  c.not_before = kT0;
  c.not_after = kT0 + absl::Hours(24 * 90);
  return c;
}

storage::TenantPolicy Policy(absl::Duration window) {
  storage::TenantPolicy p;
  p.renewal_window = window;
  return p;
}

TEST(RenewalPolicyTest, WithoutAriACertificateIsDueTheTenantsWindowBeforeExpiry) {
  const auto policy = Policy(absl::Hours(24 * 30));
  const absl::Time due = kT0 + absl::Hours(24 * 60);
  RenewalDecision before = DecideRenewal(policy, Cert(), std::nullopt, due - absl::Seconds(1));
  EXPECT_FALSE(before.due);
  EXPECT_EQ(before.renew_at, due);
  EXPECT_EQ(before.reason, "");
  RenewalDecision at = DecideRenewal(policy, Cert(), std::nullopt, due);
  EXPECT_TRUE(at.due);
  EXPECT_EQ(at.renew_at, due);
  EXPECT_THAT(at.reason, HasSubstr("lifetime"));
  EXPECT_THAT(at.reason, HasSubstr("720h"));
}

TEST(RenewalPolicyTest, AZeroWindowMeansTheLastThirdOfTheLifetime) {
  RenewalDecision d = DecideRenewal(Policy(absl::ZeroDuration()), Cert(), std::nullopt, kT0);
  EXPECT_FALSE(d.due);
  EXPECT_EQ(d.renew_at, kT0 + absl::Hours(24 * 60));
  EXPECT_TRUE(
      DecideRenewal(Policy(absl::ZeroDuration()), Cert(), std::nullopt, d.renew_at).due);
}

TEST(RenewalPolicyTest, AnAriWindowOverridesTheLifetimeAndIsDueAtAPointInsideIt) {
  // The tenant's window would make it due long before the CA's window.
  const auto policy = Policy(absl::Hours(24 * 80));
  const AriWindow window{kT0 + absl::Hours(24 * 70), kT0 + absl::Hours(24 * 72)};
  RenewalDecision early = DecideRenewal(policy, Cert(), window, kT0 + absl::Hours(24 * 69));
  EXPECT_FALSE(early.due);
  EXPECT_GE(early.renew_at, window.start);
  EXPECT_LT(early.renew_at, window.end);
  RenewalDecision at = DecideRenewal(policy, Cert(), window, early.renew_at);
  EXPECT_TRUE(at.due);
  EXPECT_THAT(at.reason, HasSubstr("ARI window"));
  EXPECT_FALSE(DecideRenewal(policy, Cert(), window, early.renew_at - absl::Microseconds(1)).due);
}

TEST(RenewalPolicyTest, TheChosenPointIsFixedPerSerialAndSpreadsAcrossSerials) {
  const AriWindow window{kT0, kT0 + absl::Hours(48)};
  EXPECT_EQ(PickInWindow(window, "0a1b"), PickInWindow(window, "0a1b"));
  int distinct_hours = 0;
  bool seen[48] = {};
  for (int i = 0; i < 200; ++i) {
    const absl::Time t = PickInWindow(window, absl::StrCat("serial", i));
    ASSERT_GE(t, window.start);
    ASSERT_LT(t, window.end);
    const int64_t hour = absl::ToInt64Hours(t - window.start);
    if (!seen[hour]) ++distinct_hours;
    seen[hour] = true;
  }
  EXPECT_GT(distinct_hours, 30);  // not bunched at one end
}

TEST(RenewalPolicyTest, AWindowTheCaMovedToThePastIsDueAtOnce) {
  const AriWindow past{kT0 + absl::Hours(1), kT0 + absl::Hours(2)};
  RenewalDecision d = DecideRenewal(Policy(absl::Hours(24 * 30)), Cert(), past,
                                    kT0 + absl::Hours(3));
  EXPECT_TRUE(d.due);
  EXPECT_LT(d.renew_at, kT0 + absl::Hours(2));
}

TEST(RenewalPolicyTest, AnEmptyOrInvertedWindowMeansItsStart) {
  const AriWindow inverted{kT0 + absl::Hours(2), kT0 + absl::Hours(1)};
  EXPECT_EQ(PickInWindow(inverted, "0a1b"), kT0 + absl::Hours(2));
  EXPECT_EQ(PickInWindow({kT0, kT0}, "0a1b"), kT0);
}

TEST(RenewalPolicyTest, ARevokedCertificateIsDueAtOnceWhateverTheWindows) {
  storage::Certificate c = Cert();
  c.revoked_at = kT0 + absl::Hours(1);
  RenewalDecision d = DecideRenewal(Policy(absl::Hours(1)), c,
                                    AriWindow{kT0 + absl::Hours(24 * 70), kT0 + absl::Hours(24 * 71)},
                                    kT0 + absl::Hours(2));
  EXPECT_TRUE(d.due);
  EXPECT_EQ(d.renew_at, kT0 + absl::Hours(1));
  EXPECT_EQ(d.reason, "revoked");
}

TEST(RenewalPolicyTest, TheNextAriCheckWaitsForRetryAfterClampedToAMinuteAndADay) {
  EXPECT_EQ(NextAriCheck(kT0, std::nullopt, absl::Hours(6)), kT0 + absl::Hours(6));
  EXPECT_EQ(NextAriCheck(kT0, kT0 + absl::Hours(2), absl::Hours(6)), kT0 + absl::Hours(2));
  EXPECT_EQ(NextAriCheck(kT0, kT0 + absl::Seconds(1), absl::Hours(6)), kT0 + absl::Minutes(1));
  EXPECT_EQ(NextAriCheck(kT0, kT0 - absl::Hours(1), absl::Hours(6)), kT0 + absl::Minutes(1));
  EXPECT_EQ(NextAriCheck(kT0, kT0 + absl::Hours(24 * 30), absl::Hours(6)),
            kT0 + absl::Hours(24));
}

}  // namespace
}  // namespace acmevault::service
