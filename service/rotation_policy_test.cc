#include "service/rotation_policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

storage::AccountKey Key(crypto::KeyAlgorithm algorithm, absl::Time activated) {
  storage::AccountKey k;
  k.state = storage::KeyState::kActive;
  k.algorithm = algorithm;
  k.created_at = activated - absl::Minutes(1);  // made before the CA accepted it
  k.activated_at = activated;
  return k;
}

storage::TenantPolicy Policy(absl::Duration max_age) {
  storage::TenantPolicy p;
  p.key_algorithm = crypto::KeyAlgorithm::kEcdsaP256;
  p.max_key_age = max_age;
  return p;
}

TEST(RotationPolicyTest, AKeyIsDueExactlyWhenItsActiveAgeReachesTheMaximum) {
  const auto key = Key(crypto::KeyAlgorithm::kEcdsaP256, kT0);
  const auto policy = Policy(absl::Hours(24 * 60));
  RotationDecision before = DecideRotation(policy, key, kT0 + absl::Hours(24 * 60) - absl::Seconds(1));
  EXPECT_FALSE(before.due);
  EXPECT_EQ(before.due_at, kT0 + absl::Hours(24 * 60));
  EXPECT_EQ(before.reason, "");
  RotationDecision at = DecideRotation(policy, key, kT0 + absl::Hours(24 * 60));
  EXPECT_TRUE(at.due);
  EXPECT_EQ(at.due_at, kT0 + absl::Hours(24 * 60));
  EXPECT_THAT(at.reason, HasSubstr("key age 1440h"));
  EXPECT_THAT(at.reason, HasSubstr("maximum 1440h"));
}

TEST(RotationPolicyTest, AgeCountsFromActivationOrCreationWithoutIt) {
  auto key = Key(crypto::KeyAlgorithm::kEcdsaP256, kT0);
  EXPECT_EQ(KeyAge(key, kT0 + absl::Hours(1)), absl::Hours(1));
  key.activated_at.reset();
  EXPECT_EQ(KeyAge(key, kT0 + absl::Hours(1)), absl::Hours(1) + absl::Minutes(1));
  EXPECT_EQ(DecideRotation(Policy(absl::Hours(2)), key, kT0).due_at,
            kT0 - absl::Minutes(1) + absl::Hours(2));
}

TEST(RotationPolicyTest, AnotherAlgorithmThanThePolicysIsDueAtOnceWhateverItsAge) {
  const auto key = Key(crypto::KeyAlgorithm::kRsa2048, kT0);
  RotationDecision d = DecideRotation(Policy(absl::Hours(24 * 90)), key, kT0 + absl::Seconds(1));
  EXPECT_TRUE(d.due);
  EXPECT_EQ(d.due_at, kT0 + absl::Seconds(1));
  EXPECT_EQ(d.reason, "policy: algorithm rsa-2048 -> ecdsa-p256");
}

TEST(RotationPolicyTest, AZeroMaximumAgeNeverRotatesAKeyOfThePolicysAlgorithm) {
  const auto key = Key(crypto::KeyAlgorithm::kEcdsaP256, kT0);
  RotationDecision d = DecideRotation(Policy(absl::ZeroDuration()), key, kT0 + absl::Hours(1e5));
  EXPECT_FALSE(d.due);
  EXPECT_FALSE(d.due_at.has_value());
  // The algorithm still counts.
  EXPECT_TRUE(DecideRotation(Policy(absl::ZeroDuration()),
                             Key(crypto::KeyAlgorithm::kEcdsaP384, kT0), kT0)
                  .due);
}

}  // namespace
}  // namespace acmevault::service
