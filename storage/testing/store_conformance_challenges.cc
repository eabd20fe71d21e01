// Conformance: an order run's fenced cleanup of HTTP-01 answers (ChallengeStore::
// DeleteChallengeFenced). Registered with the rest of the suite (store_conformance.h).
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {
namespace {

constexpr char kToken[] = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

TEST_P(StoreConformanceTest, AStaleLeaseDeletesNoChallengeAnswer) {
  Tenant t = MakeTenant("alpha");
  const Scope scope = ScopeOf(t);
  Account account = MakeAccount(scope);
  Lease first = MakeOrder(scope, account.id, {"a.test"});
  ASSERT_OK(store().PutChallenge(scope, kToken, std::string(kToken) + ".thumb"));
  // The lease expires and another replica claims the order: the first holder is fenced out.
  clock().Advance(absl::Minutes(2));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("replica-2", absl::Minutes(1), 10));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_THAT(store().DeleteChallengeFenced(scope, first, kToken),
              StatusIs(absl::StatusCode::kFailedPrecondition, "lost"));
  ASSERT_OK(store().LookupChallenge(kToken).status());
  // The current holder deletes, also once the order is terminal; again is fine.
  ASSERT_OK(store().TransitionOrder(scope, claimed[0], OrderState::kInvalid, {"given up"}));
  ASSERT_OK(store().DeleteChallengeFenced(scope, claimed[0], kToken));
  EXPECT_THAT(store().LookupChallenge(kToken), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(store().DeleteChallengeFenced(scope, claimed[0], kToken));
  EXPECT_EQ(AuditActions(scope).back(), "DeleteChallenge");
  // Another tenant's order is not found.
  Tenant other = MakeTenant("beta");
  EXPECT_THAT(store().DeleteChallengeFenced(ScopeOf(other), claimed[0], kToken),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace acmevault::storage::testing
