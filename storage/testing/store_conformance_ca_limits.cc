// The conformance suite (store_conformance.h): what keeps the fleet within a CA's limits
// (migration 0017): holds from rateLimited answers, per-account token buckets, and stalled
// orders that no longer hold their identifier set.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;

namespace {

TEST_P(StoreConformanceTest, ACaHoldIsSeenUntilItPassesAndTheLaterTimeWins) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("bravo");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const CaHoldKey key{account.id, {"www.alpha.test", "alpha.test"}, CaRequest::kNewOrder};
  EXPECT_THAT(store().GetCaHold(scope, key, clock().Now()), StatusIs(kNotFound));

  const absl::Time until = clock().Now() + absl::Minutes(30);
  ASSERT_OK(store().RecordCaHold(scope, key, until, "rateLimited: too many new orders"));
  // The same set in another order and case is the same hold.
  const CaHoldKey same{account.id, {"ALPHA.test", "www.alpha.test"}, CaRequest::kNewOrder};
  ASSERT_OK_AND_ASSIGN(CaHold hold, store().GetCaHold(scope, same, clock().Now()));
  EXPECT_EQ(hold.until, until);
  EXPECT_EQ(hold.problem, "rateLimited: too many new orders");
  // Another set, another request, another account, another tenant: no hold.
  EXPECT_THAT(store().GetCaHold(scope, {account.id, {"alpha.test"}, CaRequest::kNewOrder},
                                clock().Now()),
              StatusIs(kNotFound));
  EXPECT_THAT(store().GetCaHold(scope, {account.id, key.identifiers, CaRequest::kFinalize},
                                clock().Now()),
              StatusIs(kNotFound));
  EXPECT_THAT(store().GetCaHold(scope, {account.id + 1000, key.identifiers,
                                        CaRequest::kNewOrder},
                                clock().Now()),
              StatusIs(kNotFound));
  EXPECT_THAT(store().GetCaHold(ScopeOf(b), key, clock().Now()), StatusIs(kNotFound));

  // A shorter Retry-After told to another replica keeps the longer hold; a longer one wins.
  ASSERT_OK(store().RecordCaHold(scope, key, until - absl::Minutes(20), "shorter"));
  ASSERT_OK_AND_ASSIGN(hold, store().GetCaHold(scope, key, clock().Now()));
  EXPECT_EQ(hold.until, until);
  EXPECT_EQ(hold.problem, "shorter");
  ASSERT_OK(store().RecordCaHold(scope, key, until + absl::Minutes(5), "longer"));
  ASSERT_OK_AND_ASSIGN(hold, store().GetCaHold(scope, key, clock().Now()));
  EXPECT_EQ(hold.until, until + absl::Minutes(5));

  // Passed at its time exactly.
  EXPECT_THAT(store().GetCaHold(scope, key, until + absl::Minutes(5)), StatusIs(kNotFound));
  ASSERT_OK(store().GetCaHold(scope, key, until + absl::Minutes(5) - absl::Microseconds(1))
                .status());

  // A request that names no identifiers (newAccount) holds with the empty set.
  ASSERT_OK(store().RecordCaHold(scope, {0, {}, CaRequest::kNewAccount}, until, ""));
  ASSERT_OK(store().GetCaHold(scope, {0, {}, CaRequest::kNewAccount}, clock().Now()).status());

  EXPECT_THAT(store().RecordCaHold(scope, key, until, std::string(kMaxCaHoldProblemSize + 1, 'x')),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().RecordCaHold(scope, {account.id, {"a b"}, CaRequest::kNewOrder}, until, ""),
              StatusIs(kInvalidArgument));
  // Holds are not audited.
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CreateAccount"));
}

// Issue 10: the hold check and the budget's token before a request, in one transaction; a hold
// in force takes no token.
TEST_P(StoreConformanceTest, AdmitCaRequestTakesATokenOnlyWithoutAHold) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account free_account = MakeAccount(scope);
  Account held_account = MakeAccount(scope, "https://ca.test/other");
  const CaBudget budget{"new_order", 2, absl::Hours(2)};
  const CaHoldKey free_key{free_account.id, {"alpha.test"}, CaRequest::kNewOrder};
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(CaAdmission admitted,
                         store().AdmitCaRequest(scope, free_key, {budget}, clock().Now()));
    EXPECT_FALSE(admitted.hold.has_value());
    ASSERT_TRUE(admitted.take.has_value());
    EXPECT_TRUE(admitted.take->taken) << i;
  }
  ASSERT_OK_AND_ASSIGN(CaAdmission spent,
                       store().AdmitCaRequest(scope, free_key, {budget}, clock().Now()));
  ASSERT_TRUE(spent.take.has_value());
  EXPECT_FALSE(spent.take->taken);
  EXPECT_EQ(spent.take->next_token_at, clock().Now() + absl::Hours(1));
  // No budget asked for: only the hold is looked at.
  ASSERT_OK_AND_ASSIGN(CaAdmission unbudgeted,
                       store().AdmitCaRequest(scope, free_key, {}, clock().Now()));
  EXPECT_FALSE(unbudgeted.hold.has_value());
  EXPECT_FALSE(unbudgeted.take.has_value());

  const CaHoldKey held_key{held_account.id, {"alpha.test"}, CaRequest::kNewOrder};
  const absl::Time until = clock().Now() + absl::Minutes(10);
  ASSERT_OK(store().RecordCaHold(scope, held_key, until, "rateLimited"));
  ASSERT_OK_AND_ASSIGN(CaAdmission held,
                       store().AdmitCaRequest(scope, held_key, {budget}, clock().Now()));
  ASSERT_TRUE(held.hold.has_value());
  EXPECT_EQ(held.hold->until, until);
  EXPECT_EQ(held.hold->problem, "rateLimited");
  EXPECT_FALSE(held.take.has_value());
  // The held account's bucket is still full: the hold took nothing from it.
  ASSERT_OK_AND_ASSIGN(CaBudgetTake first,
                       store().TakeCaBudgetToken(scope, held_account.id, budget, clock().Now()));
  EXPECT_TRUE(first.taken);
  EXPECT_EQ(first.tokens_left, 1);

  EXPECT_THAT(
      store().AdmitCaRequest(scope, free_key, {CaBudget{"", 2, absl::Hours(1)}}, clock().Now()),
      StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, ABudgetStartsFullEmptiesAndRefillsWithTime) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  // 3 tokens per 3 hours: one per hour.
  const CaBudget budget{"new_order", 3, absl::Hours(3)};
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(CaBudgetTake take,
                         store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
    EXPECT_TRUE(take.taken) << i;
    EXPECT_NEAR(take.tokens_left, 2 - i, 1e-6);
  }
  ASSERT_OK_AND_ASSIGN(CaBudgetTake empty,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_FALSE(empty.taken);
  EXPECT_EQ(empty.next_token_at, clock().Now() + absl::Hours(1));
  // Another account's bucket, and another budget of this one, are full.
  Account other = MakeAccount(scope, "https://other.test/dir");
  ASSERT_OK_AND_ASSIGN(CaBudgetTake other_take,
                       store().TakeCaBudgetToken(scope, other.id, budget, clock().Now()));
  EXPECT_TRUE(other_take.taken);
  ASSERT_OK_AND_ASSIGN(CaBudgetTake other_budget,
                       store().TakeCaBudgetToken(scope, account.id,
                                                 {"new_account", 1, absl::Hours(1)},
                                                 clock().Now()));
  EXPECT_TRUE(other_budget.taken);

  // Half an hour later: half a token, not enough; the next one comes half an hour later.
  clock().Advance(absl::Minutes(30));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake half,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_FALSE(half.taken);
  EXPECT_NEAR(half.tokens_left, 0.5, 1e-6);
  EXPECT_EQ(half.next_token_at, clock().Now() + absl::Minutes(30));
  // A take that reads an earlier time (another replica's clock) refills nothing.
  ASSERT_OK_AND_ASSIGN(CaBudgetTake earlier,
                       store().TakeCaBudgetToken(scope, account.id, budget,
                                                 clock().Now() - absl::Minutes(10)));
  EXPECT_FALSE(earlier.taken);
  EXPECT_NEAR(earlier.tokens_left, 0.5, 1e-6);
  clock().Advance(absl::Minutes(30));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake one,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_TRUE(one.taken);
  // Never more than the capacity, however long it rests.
  clock().Advance(absl::Hours(24 * 7));
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(CaBudgetTake take,
                         store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
    EXPECT_TRUE(take.taken) << i;
  }
  ASSERT_OK_AND_ASSIGN(CaBudgetTake after_rest,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_FALSE(after_rest.taken);

  EXPECT_THAT(store().TakeCaBudgetToken(scope, account.id, {"", 3, absl::Hours(1)},
                                        clock().Now()),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().TakeCaBudgetToken(scope, account.id, {"x", 0.5, absl::Hours(1)},
                                        clock().Now()),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().TakeCaBudgetToken(scope, account.id, {"x", 3, absl::ZeroDuration()},
                                        clock().Now()),
              StatusIs(kInvalidArgument));
}

// A token taken for a request the CA did not take goes back to the bucket, to at most its
// capacity; a bucket never taken from stays as it is (it starts full anyway).
TEST_P(StoreConformanceTest, ATokenGivenBackIsTakenAgainAndNeverOverfills) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const CaBudget budget{"new_order", 2, absl::Hours(300)};  // no refill within the test
  ASSERT_OK(store().ReturnCaBudgetToken(scope, account.id, budget));  // no bucket yet
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(CaBudgetTake take,
                         store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
    EXPECT_TRUE(take.taken) << i;
  }
  ASSERT_OK_AND_ASSIGN(CaBudgetTake empty,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_FALSE(empty.taken);
  ASSERT_OK(store().ReturnCaBudgetToken(scope, account.id, budget));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake again,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_TRUE(again.taken);
  EXPECT_NEAR(again.tokens_left, 0, 1e-6);
  // Three given back to a bucket of two: it holds two.
  for (int i = 0; i < 3; ++i) ASSERT_OK(store().ReturnCaBudgetToken(scope, account.id, budget));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake full,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_TRUE(full.taken);
  EXPECT_NEAR(full.tokens_left, 1, 1e-6);
  // Another tenant's scope does not reach this account's bucket.
  Tenant b = MakeTenant("beta");
  ASSERT_OK(store().ReturnCaBudgetToken(ScopeOf(b), account.id, budget));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake last,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_TRUE(last.taken);
  EXPECT_NEAR(last.tokens_left, 0, 1e-6);
  EXPECT_THAT(store().ReturnCaBudgetToken(scope, account.id, CaBudget{"", 2, absl::Hours(1)}),
              StatusIs(kInvalidArgument));
}

// A token due at t is there at t: the refill is elapsed * capacity / period, so a whole
// period's share is exactly one token (125 per hour: one every 28.8 s; as elapsed times the
// rate, capacity / period, it came to 0.9999999999999999 and the take failed).
TEST_P(StoreConformanceTest, ABucketsNextTokenIsThereExactlyWhenItIsDue) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const CaBudget budget{"new_order", 125, absl::Hours(1)};
  for (int i = 0; i < 125; ++i) {
    ASSERT_OK_AND_ASSIGN(CaBudgetTake take,
                         store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
    ASSERT_TRUE(take.taken) << i;
  }
  ASSERT_OK_AND_ASSIGN(CaBudgetTake empty,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  ASSERT_FALSE(empty.taken);
  EXPECT_EQ(empty.next_token_at, clock().Now() + absl::Milliseconds(28800));
  clock().Set(empty.next_token_at);
  ASSERT_OK_AND_ASSIGN(CaBudgetTake due,
                       store().TakeCaBudgetToken(scope, account.id, budget, clock().Now()));
  EXPECT_TRUE(due.taken);
  // The fleet's buckets refill alike.
  for (int i = 0; i < 125; ++i) {
    ASSERT_OK(
        store().TakeCaDirectoryBudgetToken("https://ca.test/dir", budget, clock().Now()).status());
  }
  clock().Advance(absl::Milliseconds(28800));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake fleet, store().TakeCaDirectoryBudgetToken(
                                               "https://ca.test/dir", budget, clock().Now()));
  EXPECT_TRUE(fleet.taken);
}

// Issue 11: a tenant's bucket for one identifier set (Let's Encrypt's duplicate certificates)
// is shared by the tenant's accounts, apart from every other set's, other tenants' and the
// accounts' own buckets; the set is made canonical first.
TEST_P(StoreConformanceTest, AnIdentifierSetsBudgetIsTheTenantsWhateverTheAccount) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account first = MakeAccount(scope);
  Account second = MakeAccount(scope, "https://ca.test/other");
  CaBudget set{"duplicate_certificate", 2, absl::Hours(300)};
  set.identifiers = {"b.alpha.test", "a.alpha.test"};
  ASSERT_OK_AND_ASSIGN(CaBudgetTake one,
                       store().TakeCaBudgetToken(scope, first.id, set, clock().Now()));
  EXPECT_TRUE(one.taken);
  // The same set, in another order and from another account: the same bucket.
  CaBudget same = set;
  same.identifiers = {"a.alpha.test", "B.alpha.test"};
  ASSERT_OK_AND_ASSIGN(CaBudgetTake two,
                       store().TakeCaBudgetToken(scope, second.id, same, clock().Now()));
  EXPECT_TRUE(two.taken);
  EXPECT_NEAR(two.tokens_left, 0, 1e-6);
  ASSERT_OK_AND_ASSIGN(CaBudgetTake none,
                       store().TakeCaBudgetToken(scope, first.id, set, clock().Now()));
  EXPECT_FALSE(none.taken);
  // Another set, the account's bucket of the same name, another tenant's set: all full.
  CaBudget other_set = set;
  other_set.identifiers = {"a.alpha.test"};
  ASSERT_OK_AND_ASSIGN(CaBudgetTake other,
                       store().TakeCaBudgetToken(scope, first.id, other_set, clock().Now()));
  EXPECT_NEAR(other.tokens_left, 1, 1e-6);
  const CaBudget account_bucket{"duplicate_certificate", 2, absl::Hours(300)};
  ASSERT_OK_AND_ASSIGN(CaBudgetTake own,
                       store().TakeCaBudgetToken(scope, first.id, account_bucket, clock().Now()));
  EXPECT_NEAR(own.tokens_left, 1, 1e-6);
  Tenant b = MakeTenant("beta");
  Account theirs = MakeAccount(ScopeOf(b));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake beta,
                       store().TakeCaBudgetToken(ScopeOf(b), theirs.id, set, clock().Now()));
  EXPECT_NEAR(beta.tokens_left, 1, 1e-6);
  // Given back to the set's bucket, whichever account asks.
  ASSERT_OK(store().ReturnCaBudgetToken(scope, second.id, set));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake back,
                       store().TakeCaBudgetToken(scope, first.id, same, clock().Now()));
  EXPECT_TRUE(back.taken);
  CaBudget bad = set;
  bad.identifiers = {"a b"};
  EXPECT_THAT(store().TakeCaBudgetToken(scope, first.id, bad, clock().Now()),
              StatusIs(kInvalidArgument));
}

// Issue 11: several budgets before one request give a token each or none: the one that is
// short is named, and the tokens taken before it go back in the same transaction.
TEST_P(StoreConformanceTest, AdmitCaRequestTakesFromEveryBudgetOrFromNone) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const CaBudget orders{"new_order", 10, absl::Hours(300)};
  CaBudget duplicates{"duplicate_certificate", 1, absl::Hours(300)};
  duplicates.identifiers = {"alpha.test"};
  const CaHoldKey key{account.id, {"alpha.test"}, CaRequest::kNewOrder};
  ASSERT_OK_AND_ASSIGN(CaAdmission first,
                       store().AdmitCaRequest(scope, key, {orders, duplicates}, clock().Now()));
  ASSERT_TRUE(first.take.has_value());
  EXPECT_TRUE(first.take->taken);
  EXPECT_EQ(first.short_budget, "");
  ASSERT_OK_AND_ASSIGN(CaAdmission second,
                       store().AdmitCaRequest(scope, key, {orders, duplicates}, clock().Now()));
  ASSERT_TRUE(second.take.has_value());
  EXPECT_FALSE(second.take->taken);
  EXPECT_EQ(second.short_budget, "duplicate_certificate");
  EXPECT_EQ(second.take->next_token_at, clock().Now() + absl::Hours(300));
  // The new-order bucket lost one token only, for the first admission.
  ASSERT_OK_AND_ASSIGN(CaBudgetTake left,
                       store().TakeCaBudgetToken(scope, account.id, orders, clock().Now()));
  EXPECT_NEAR(left.tokens_left, 8, 1e-6);
}

// Issue 11: the fleet's bucket at a CA is one for every tenant, by directory and name; it
// takes, refills and takes back as a tenant's does.
TEST_P(StoreConformanceTest, ACasFleetBudgetIsSharedByEveryTenant) {
  MakeTenant("alpha");
  const std::string directory = "https://ca.test/dir";
  const CaBudget accounts{"new_account", 2, absl::Hours(2)};
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(CaBudgetTake take,
                         store().TakeCaDirectoryBudgetToken(directory, accounts, clock().Now()));
    EXPECT_TRUE(take.taken) << i;
  }
  ASSERT_OK_AND_ASSIGN(CaBudgetTake spent,
                       store().TakeCaDirectoryBudgetToken(directory, accounts, clock().Now()));
  EXPECT_FALSE(spent.taken);
  EXPECT_EQ(spent.next_token_at, clock().Now() + absl::Hours(1));
  // Another CA's bucket is full.
  ASSERT_OK_AND_ASSIGN(
      CaBudgetTake elsewhere,
      store().TakeCaDirectoryBudgetToken("https://other.test/dir", accounts, clock().Now()));
  EXPECT_NEAR(elsewhere.tokens_left, 1, 1e-6);
  // One given back (three times: never beyond the capacity), then refilled by time.
  ASSERT_OK(store().ReturnCaDirectoryBudgetToken(directory, accounts));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake back,
                       store().TakeCaDirectoryBudgetToken(directory, accounts, clock().Now()));
  EXPECT_TRUE(back.taken);
  for (int i = 0; i < 3; ++i) ASSERT_OK(store().ReturnCaDirectoryBudgetToken(directory, accounts));
  clock().Advance(absl::Hours(1));
  ASSERT_OK_AND_ASSIGN(CaBudgetTake full,
                       store().TakeCaDirectoryBudgetToken(directory, accounts, clock().Now()));
  EXPECT_NEAR(full.tokens_left, 1, 1e-6);
  EXPECT_THAT(store().TakeCaDirectoryBudgetToken("", accounts, clock().Now()),
              StatusIs(kInvalidArgument));
  CaBudget with_ids = accounts;
  with_ids.identifiers = {"alpha.test"};
  EXPECT_THAT(store().TakeCaDirectoryBudgetToken(directory, with_ids, clock().Now()),
              StatusIs(kInvalidArgument));
  EXPECT_THAT(store().ReturnCaDirectoryBudgetToken(directory, CaBudget{"", 2, absl::Hours(1)}),
              StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, AStalledOrderStaysInFlightButNoLongerHoldsItsNames) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"alpha.test"}, absl::Hours(1));
  // Only a processing order can stall.
  EXPECT_THAT(store().MarkOrderStalled(scope, lease, clock().Now()),
              StatusIs(kFailedPrecondition, "not processing"));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, {}));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kProcessing, {}));

  // Before it stalls, a request for its names joins it.
  const NewOrder again{account.id, {"alpha.test"}, "", "r2", absl::Minutes(1)};
  ASSERT_OK_AND_ASSIGN(CreateOrderResult joined, store().CreateOrJoinOrder(scope, again));
  EXPECT_FALSE(joined.created);
  EXPECT_EQ(joined.order.id, lease.order);
  EXPECT_FALSE(joined.order.stalled_at.has_value());

  const absl::Time stalled = clock().Now();
  ASSERT_OK(store().MarkOrderStalled(scope, lease, stalled));
  // Once is enough: the first time is kept.
  ASSERT_OK(store().MarkOrderStalled(scope, lease, stalled + absl::Hours(1)));
  ASSERT_OK_AND_ASSIGN(Order row, store().GetOrder(scope, lease.order));
  EXPECT_EQ(row.stalled_at, stalled);
  EXPECT_EQ(row.state, OrderState::kProcessing);
  EXPECT_EQ(row.acme_url, "https://ca.test/order/1");

  // A new request for the same names makes a new order.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult fresh, store().CreateOrJoinOrder(scope, again));
  EXPECT_TRUE(fresh.created);
  EXPECT_NE(fresh.order.id, lease.order);
  EXPECT_FALSE(fresh.order.stalled_at.has_value());
  // ... which the next request joins, not the stalled one.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult third, store().CreateOrJoinOrder(scope, again));
  EXPECT_EQ(third.order.id, fresh.order.id);

  // The stalled order can still finish (resumed from its URL).
  ASSERT_OK(store().CompleteOrder(scope, lease, CertificateFor({"alpha.test"}, "0a")).status());
  ASSERT_OK_AND_ASSIGN(row, store().GetOrder(scope, lease.order));
  EXPECT_EQ(row.state, OrderState::kValid);

  // A lost lease cannot stall an order.
  Lease stale = fresh.lease.value();
  stale.fencing_token -= 1;
  EXPECT_THAT(store().MarkOrderStalled(scope, stale, clock().Now()),
              StatusIs(kFailedPrecondition));
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "TransitionOrder", "TransitionOrder", "StallOrder", "CreateOrder",
                          "InsertCertificate", "CompleteOrder"));
}

}  // namespace
}  // namespace acmevault::storage::testing
