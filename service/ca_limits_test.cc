#include "service/ca_limits.h"

#include <memory>

#include "acme/problem.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/failure.h"
#include "storage/testing/fake_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_keks.h"

namespace acmevault::service {
namespace {

using ::acmevault::storage::testing::StatusIs;

constexpr char kCa[] = "https://ca.test/dir";

class CaLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::FakeStore::Create(
        {.clock = &clock_}, storage::testing::TestKeks(storage::testing::KekText("k", 'k')));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    limits_.defaults.new_accounts = {2, absl::Hours(2)};
  }

  absl::StatusOr<bool> Take() { return TakeNewAccountToken(*store_, limits_, kCa, clock_.Now()); }
  static absl::StatusOr<acme::Account> Answer(bool created) {
    acme::Account account;
    account.url = "https://ca.test/acct/1";
    account.created = created;
    return account;
  }

  testing::FakeClock clock_;
  std::unique_ptr<storage::FakeStore> store_;
  CaLimitsByDirectory limits_;
};

TEST_F(CaLimitsTest, TheDefaultsAreLetsEncryptsPublishedLimits) {
  const CaLimits limits;
  EXPECT_EQ(limits.new_orders.capacity, 300);
  EXPECT_EQ(limits.new_orders.period, absl::Hours(3));
  EXPECT_EQ(limits.duplicate_certificates.capacity, 5);
  EXPECT_EQ(limits.duplicate_certificates.period, absl::Hours(7 * 24));
  EXPECT_EQ(limits.new_accounts.capacity, 10);
  EXPECT_EQ(limits.new_accounts.period, absl::Hours(3));
  auto duplicates = DuplicateCertificateBucket(limits, {"a.test", "b.test"});
  ASSERT_TRUE(duplicates.has_value());
  EXPECT_EQ(duplicates->name, "duplicate_certificate");
  EXPECT_EQ(duplicates->identifiers, (std::vector<std::string>{"a.test", "b.test"}));
  CaLimits off;
  off.new_accounts.capacity = 0;
  EXPECT_FALSE(NewAccountBucket(off).has_value());
}

TEST_F(CaLimitsTest, ValidateNamesTheLimitAndTheCa) {
  EXPECT_TRUE(limits_.Validate().ok());
  limits_.by_directory[kCa].duplicate_certificates = {3, absl::ZeroDuration()};
  EXPECT_THAT(limits_.Validate(), StatusIs(absl::StatusCode::kInvalidArgument,
                                           "of https://ca.test/dir: duplicate_certificates"));
  limits_.by_directory[kCa].duplicate_certificates = {0, absl::ZeroDuration()};  // off
  EXPECT_TRUE(limits_.Validate().ok());
  limits_.defaults.new_orders.capacity = -1;
  EXPECT_THAT(limits_.Validate(), StatusIs(absl::StatusCode::kInvalidArgument, "new_orders"));
}

// The fleet's new-account budget: spent tokens hold the next newAccount until the bucket
// refills (RESOURCE_EXHAUSTED carrying the time, as a CA's rateLimited answer does); a CA that
// made no account (a problem document, or an account it had: 200) gets its token back; an
// answer that may have made one (201, or no answer) keeps it spent.
TEST_F(CaLimitsTest, NewAccountTokensAreHeldAndGivenBackOnlyWhenTheCaMadeNone) {
  ASSERT_OK_AND_ASSIGN(bool first, Take());
  EXPECT_TRUE(first);
  SettleNewAccountToken(*store_, limits_, kCa, Answer(/*created=*/true));
  ASSERT_OK_AND_ASSIGN(bool second, Take());
  EXPECT_TRUE(second);
  SettleNewAccountToken(*store_, limits_, kCa, absl::UnavailableError("connection reset"));
  absl::StatusOr<bool> held = Take();
  EXPECT_THAT(held.status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "no request sent to the CA until"));
  EXPECT_EQ(RateLimitedUntil(held.status()), clock_.Now() + absl::Hours(1));
  acme::Problem problem;
  problem.type = "urn:ietf:params:acme:error:badNonce";  // no account made
  problem.http_status = 400;
  problem.detail = "bad nonce";
  SettleNewAccountToken(
      *store_, limits_, kCa,
      acme::EmbeddedProblemStatus(absl::StatusCode::kFailedPrecondition, "newAccount", problem));
  ASSERT_OK_AND_ASSIGN(bool after_problem, Take());
  EXPECT_TRUE(after_problem);
  SettleNewAccountToken(*store_, limits_, kCa, Answer(/*created=*/false));
  ASSERT_OK_AND_ASSIGN(bool after_found, Take());
  EXPECT_TRUE(after_found);
  EXPECT_THAT(Take().status(), StatusIs(absl::StatusCode::kResourceExhausted));
  // Another CA's bucket, and a CA whose limit is off.
  limits_.by_directory["https://off.test/dir"].new_accounts.capacity = 0;
  ASSERT_OK_AND_ASSIGN(bool off,
                       TakeNewAccountToken(*store_, limits_, "https://off.test/dir", clock_.Now()));
  EXPECT_FALSE(off);
  ASSERT_OK_AND_ASSIGN(
      bool other, TakeNewAccountToken(*store_, limits_, "https://other.test/dir", clock_.Now()));
  EXPECT_TRUE(other);
  clock_.Advance(absl::Hours(1));
  ASSERT_OK_AND_ASSIGN(bool refilled, Take());
  EXPECT_TRUE(refilled);
}

}  // namespace
}  // namespace acmevault::service
