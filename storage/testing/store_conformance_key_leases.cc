// The conformance suite (store_conformance.h): account key leases and the one live account per
// tenant and directory (migration 0007).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;

namespace {

constexpr absl::StatusCode kAborted = absl::StatusCode::kAborted;

TEST_P(StoreConformanceTest, KeyLeaseHasOneHolderUntilReleasedOrExpired) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(KeyLease first,
                       store().AcquireKeyLease(scope, account.id, absl::Minutes(5)));
  EXPECT_EQ(first.tenant, a.id);
  EXPECT_EQ(first.account, account.id);
  EXPECT_EQ(first.expires_at, clock().Now() + absl::Minutes(5));
  EXPECT_THAT(store().AcquireKeyLease(scope, account.id, absl::Minutes(5)),
              StatusIs(kAborted, "being changed by another caller"));
  // Released: the next caller takes it at once, with a higher fencing token.
  ASSERT_OK(store().ReleaseKeyLease(scope, first));
  ASSERT_OK_AND_ASSIGN(KeyLease second,
                       store().AcquireKeyLease(scope, account.id, absl::Minutes(5)));
  EXPECT_GT(second.fencing_token, first.fencing_token);
  // Releasing a lease that was taken over changes nothing.
  ASSERT_OK(store().ReleaseKeyLease(scope, first));
  EXPECT_THAT(store().AcquireKeyLease(scope, account.id, absl::Minutes(5)), StatusIs(kAborted));
  // A holder that died: its lease expires, and then it is taken over.
  clock().Advance(absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(KeyLease third,
                       store().AcquireKeyLease(scope, account.id, absl::Minutes(5)));
  EXPECT_GT(third.fencing_token, second.fencing_token);
  // Leases are not audited.
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CreateAccount"));
}

TEST_P(StoreConformanceTest, KeyWritesWithALeaseTakenOverAreRefused) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(KeyLease stale,
                       store().AcquireKeyLease(scope, account.id, absl::Minutes(1)));
  crypto::PrivateKey next = NewKey();
  ASSERT_OK(store().AddPendingKey(scope, stale, next, InfoFor(next)).status());
  // Expired but not taken over: the holder may still write.
  clock().Advance(absl::Minutes(2));
  crypto::PrivateKey other = NewKey();
  EXPECT_THAT(store().AddPendingKey(scope, stale, other, InfoFor(other)),
              StatusIs(kAlreadyExists, "pending"));
  ASSERT_OK_AND_ASSIGN(KeyLease current,
                       store().AcquireKeyLease(scope, account.id, absl::Minutes(1)));
  const std::string lost = absl::StrCat("fencing token ", stale.fencing_token, " is stale");
  EXPECT_THAT(store().PromoteKey(scope, stale, 2), StatusIs(kFailedPrecondition, lost));
  EXPECT_THAT(store().DiscardPendingKey(scope, stale, 2), StatusIs(kFailedPrecondition, lost));
  EXPECT_THAT(store().MarkKeyCompromised(scope, stale, 1), StatusIs(kFailedPrecondition, lost));
  EXPECT_THAT(store().AddPendingKey(scope, stale, other, InfoFor(other)),
              StatusIs(kFailedPrecondition, lost));
  // The current holder is not held up by the stale one.
  ASSERT_OK(store().PromoteKey(scope, current, 2));
  ASSERT_OK_AND_ASSIGN(std::vector<AccountKey> keys, store().ListKeys(scope, account.id));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].state, KeyState::kRetired);
  EXPECT_EQ(keys[1].state, KeyState::kActive);
  // A lease presented in the scope of another tenant than its own is refused as such.
  KeyLease forged = current;
  forged.tenant = MakeTenant("beta").id;
  EXPECT_THAT(store().PromoteKey(scope, forged, 2), StatusIs(kInvalidArgument, "another tenant"));
  EXPECT_THAT(store().ReleaseKeyLease(scope, forged), StatusIs(kInvalidArgument));
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "AddPendingKey", "PromoteKey"));
}

TEST_P(StoreConformanceTest, AClosedAccountHasNoKeyLease) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(KeyLease lease,
                       store().AcquireKeyLease(scope, account.id, absl::Minutes(1)));
  ASSERT_OK(store().SetAccountStatus(scope, account.id, AccountStatus::kDeactivated));
  ASSERT_OK(store().ReleaseKeyLease(scope, lease));
  clock().Advance(absl::Minutes(2));
  EXPECT_THAT(store().AcquireKeyLease(scope, account.id, absl::Minutes(1)),
              StatusIs(kFailedPrecondition, "deactivated"));
}

TEST_P(StoreConformanceTest, OneLiveAccountPerTenantAndDirectory) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  const std::string dir = "https://ca.test/dir";
  crypto::PrivateKey k1 = NewKey(), k2 = NewKey(), k3 = NewKey(), k4 = NewKey();
  ASSERT_OK_AND_ASSIGN(Account first,
                       store().CreateAccount(scope, dir, k1, InfoFor(k1), KeyState::kPending));
  // Pending (a creation under way) or valid, a second one is refused.
  const std::string taken = "already has a pending or valid account for https://ca.test/dir";
  EXPECT_THAT(store().CreateAccount(scope, dir, k2, InfoFor(k2), KeyState::kPending),
              StatusIs(kAlreadyExists, taken));
  ASSERT_OK(store().RecordAccountUrl(scope, first.id, "https://ca.test/acct/1"));
  EXPECT_THAT(store().CreateAccount(scope, dir, k2, InfoFor(k2), KeyState::kActive),
              StatusIs(kAlreadyExists, taken));
  // Another directory, or another tenant, is another account.
  ASSERT_OK(
      store()
          .CreateAccount(scope, "https://other-ca.test/dir", k3, InfoFor(k3), KeyState::kPending)
          .status());
  ASSERT_OK(
      store()
          .CreateAccount(ScopeOf(MakeTenant("beta")), dir, k4, InfoFor(k4), KeyState::kPending)
          .status());
  // Once the first is deactivated, the tenant may register again.
  ASSERT_OK(store().SetAccountStatus(scope, first.id, AccountStatus::kDeactivated));
  ASSERT_OK(store().CreateAccount(scope, dir, k2, InfoFor(k2), KeyState::kPending).status());
  ASSERT_OK_AND_ASSIGN(std::vector<Account> accounts, store().ListAccounts(scope));
  EXPECT_EQ(accounts.size(), 3u);
}

}  // namespace
}  // namespace acmevault::storage::testing
