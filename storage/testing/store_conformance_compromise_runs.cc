// The conformance suite (store_conformance.h): compromise response runs (migration 0007).
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

namespace {

TEST_P(StoreConformanceTest, CompromiseRunRecordsEachStepOnceUntilFinished) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  const absl::Time started = clock().Now();
  ASSERT_OK_AND_ASSIGN(CompromiseRun run,
                       store().StartCompromiseRun(scope, true, started + absl::Hours(24)));
  EXPECT_GT(run.id, 0);
  EXPECT_EQ(run.tenant, a.id);
  EXPECT_TRUE(run.deactivate_account);
  EXPECT_EQ(run.started_at, started);
  EXPECT_EQ(run.expires_at, started + absl::Hours(24));
  EXPECT_FALSE(run.finished_at.has_value());
  EXPECT_THAT(run.steps, IsEmpty());

  clock().Advance(absl::Minutes(1));
  ASSERT_OK(store().RecordCompromiseStep(scope, run.id, "rollover"));
  const absl::Time rolled = clock().Now();
  clock().Advance(absl::Minutes(1));
  ASSERT_OK(store().RecordCompromiseStep(scope, run.id, "rollover"));  // once
  ASSERT_OK(store().RecordCompromiseStep(scope, run.id, "revoke"));
  EXPECT_THAT(store().RecordCompromiseStep(scope, run.id, ""), StatusIs(kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(CompromiseRun got, store().GetCompromiseRun(scope, run.id));
  EXPECT_THAT(got.steps, ElementsAre(Pair("revoke", clock().Now()), Pair("rollover", rolled)));
  EXPECT_FALSE(got.finished_at.has_value());

  ASSERT_OK(store().FinishCompromiseRun(scope, run.id));
  EXPECT_THAT(store().FinishCompromiseRun(scope, run.id),
              StatusIs(kFailedPrecondition, "is finished"));
  EXPECT_THAT(store().RecordCompromiseStep(scope, run.id, "deactivate_account"),
              StatusIs(kFailedPrecondition, "is finished"));
  ASSERT_OK_AND_ASSIGN(got, store().GetCompromiseRun(scope, run.id));
  EXPECT_EQ(got.finished_at, clock().Now());
  EXPECT_EQ(got.steps.size(), 2u);
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CompromiseStart", "CompromiseStep",
                                               "CompromiseStep", "CompromiseDone"));
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, {}));
  EXPECT_EQ(audit.items[1].event.detail, absl::StrCat("run ", run.id, " deactivate_account"));
  EXPECT_EQ(audit.items[2].event.detail, absl::StrCat("run ", run.id, ": rollover"));
}

TEST_P(StoreConformanceTest, CompromiseRunsAreTheirTenantsOnly) {
  Tenant a = MakeTenant("alpha");
  ASSERT_OK_AND_ASSIGN(CompromiseRun run, store().StartCompromiseRun(
                                              ScopeOf(a), false, clock().Now() + absl::Hours(1)));
  EXPECT_FALSE(run.deactivate_account);
  const Scope other = ScopeOf(MakeTenant("beta"));
  const std::string missing = absl::StrCat("compromise run ", run.id, " not found");
  EXPECT_THAT(store().GetCompromiseRun(other, run.id), StatusIs(kNotFound, missing));
  EXPECT_THAT(store().RecordCompromiseStep(other, run.id, "rollover"),
              StatusIs(kNotFound, missing));
  EXPECT_THAT(store().FinishCompromiseRun(other, run.id), StatusIs(kNotFound, missing));
  EXPECT_THAT(store().GetCompromiseRun(ScopeOf(a), run.id + 1000), StatusIs(kNotFound));
  EXPECT_THAT(store().GetCompromiseRun(Scope{0, {}}, run.id), StatusIs(kInvalidArgument));
  EXPECT_THAT(AuditActions(other), ElementsAre("CreateTenant"));
  // A run must expire after it starts.
  EXPECT_THAT(store().StartCompromiseRun(ScopeOf(a), false, clock().Now()),
              StatusIs(kInvalidArgument, "expire"));
}

}  // namespace
}  // namespace acmevault::storage::testing
