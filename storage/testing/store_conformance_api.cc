// Conformance tests for what the API returns from the stores: errors in the store's own words.
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {
namespace {

// A taken name is ALREADY_EXISTS in one sentence of ours, never PostgreSQL's constraint text.
TEST_P(StoreConformanceTest, ATakenTenantNameIsRefusedInTheStoresOwnWords) {
  Tenant alpha = MakeTenant("alpha");
  Tenant beta = MakeTenant("beta");
  TenantSpec again = alpha.spec;
  auto created = store().CreateTenant({}, again);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(created.status().message(), "tenant name \"alpha\" is taken");

  TenantSpec rename = beta.spec;
  rename.name = "alpha";
  auto updated = store().UpdateTenant(ScopeOf(beta), rename);
  EXPECT_EQ(updated.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(updated.status().message(), "tenant name \"alpha\" is taken");
}

}  // namespace
}  // namespace acmevault::storage::testing
