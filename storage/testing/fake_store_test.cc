// The conformance suite against FakeStore, and the fake's own test hooks.
#include "storage/testing/fake_store.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {
namespace {

class FakeHarness final : public StoreHarness {
 public:
  FakeHarness(std::unique_ptr<FakeStore> store, const Clock* clock)
      : store_(std::move(store)), clock_(clock) {}
  Store& store() override { return *store_; }
  absl::StatusOr<std::unique_ptr<Store>> Reopen(KekSet keks) override {
    auto reopened = FakeStore::Reopen(*store_, FakeStore::Options{clock_}, std::move(keks));
    if (!reopened.ok()) return reopened.status();
    return std::unique_ptr<Store>(std::move(*reopened));
  }

 private:
  std::unique_ptr<FakeStore> store_;
  const Clock* clock_;
};

StoreFactory FakeStoreFactory() {
  return StoreFactory{"Fake", false,
                      [](const Clock* clock, KekSet keks, const std::string&)
                          -> absl::StatusOr<std::unique_ptr<StoreHarness>> {
                        auto store = FakeStore::Create(FakeStore::Options{clock}, std::move(keks));
                        if (!store.ok()) return store.status();
                        return std::unique_ptr<StoreHarness>(
                            new FakeHarness(std::move(*store), clock));
                      }};
}

INSTANTIATE_TEST_SUITE_P(Fake, StoreConformanceTest, ::testing::Values(FakeStoreFactory()),
                         FactoryName);

TEST(FakeStoreCreate, RefusesANullClockOnCreateAndReopen) {
  EXPECT_THAT(FakeStore::Create({nullptr}, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kInvalidArgument, "clock is null"));
  auto store = FakeStore::Create({}, TestKeks(KekText("k", 'k')));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_THAT(FakeStore::Reopen(**store, {nullptr}, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kInvalidArgument, "clock is null"));
}

class FakeAuditTamperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = FakeStore::Create({}, TestKeks(KekText("k", 'k')));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    TenantSpec spec;
    spec.name = "alpha";
    spec.acme_directory_url = "https://ca.test/dir";
    auto tenant = store_->CreateTenant({}, spec);
    ASSERT_TRUE(tenant.ok());
    scope_ = Scope{tenant->id, {"me", "rpc"}};
    for (int i = 0; i < 3; ++i) {
      ASSERT_OK(store_->AppendAudit(scope_, AuditEvent{"Event", {}, std::nullopt, std::nullopt,
                                                       "", "ok", absl::StrCat(i)}));
    }
    ASSERT_OK(store_->VerifyAuditChain(scope_));
  }
  std::unique_ptr<FakeStore> store_;
  Scope scope_;
};

TEST_F(FakeAuditTamperTest, EditedRowIsDetected) {
  ASSERT_OK(store_->TamperAuditDetailForTesting(scope_.tenant, 3, "forged"));
  EXPECT_THAT(store_->VerifyAuditChain(scope_),
              StatusIs(absl::StatusCode::kDataLoss, "broken at seq 3: row does not match"));
}

TEST_F(FakeAuditTamperTest, DeletedRowsAreDetected) {
  ASSERT_OK(store_->DeleteAuditRowForTesting(scope_.tenant, 2));
  EXPECT_THAT(store_->VerifyAuditChain(scope_),
              StatusIs(absl::StatusCode::kDataLoss, "broken at seq 2: row missing"));
}

TEST_F(FakeAuditTamperTest, DeletedNewestRowIsDetectedByTheHead) {
  ASSERT_OK(store_->DeleteAuditRowForTesting(scope_.tenant, 4));
  EXPECT_THAT(store_->VerifyAuditChain(scope_),
              StatusIs(absl::StatusCode::kDataLoss, "chain ends at seq 3 but its head is at seq 4"));
}

}  // namespace
}  // namespace acmevault::storage::testing
