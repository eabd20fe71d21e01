#include "service/certificate_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/metrics.h"
#include "storage/testing/fake_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_keks.h"

namespace acmevault::service {
namespace {

using ::acmevault::storage::testing::StatusIs;
using ::testing::HasSubstr;

class CertificateCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::FakeStore::Create(
        {.clock = &clock_}, storage::testing::TestKeks(storage::testing::KekText("k", 'k')));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto cache = CertificateCache::Create(
        {.clock = &clock_, .ttl = absl::Seconds(30), .metrics = &metrics_});
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = *std::move(cache);
    alpha_ = Tenant("alpha");
    beta_ = Tenant("beta");
  }

  storage::Scope Tenant(const std::string& name) {
    const storage::Actor actor{"test", "test/Rpc"};
    storage::TenantSpec spec;
    spec.name = name;
    spec.acme_directory_url = "https://ca.test/dir";
    auto tenant = store_->CreateTenant(actor, spec);
    EXPECT_TRUE(tenant.ok()) << tenant.status();
    return storage::Scope{tenant.ok() ? tenant->id : 0, actor};
  }
  storage::Certificate Insert(const storage::Scope& scope, std::vector<std::string> ids,
                              const std::string& serial,
                              absl::Duration lifetime = absl::Hours(24 * 90)) {
    storage::NewCertificate c;
    c.identifiers = std::move(ids);
    c.serial = serial;
    c.not_before = clock_.Now();
    c.not_after = clock_.Now() + lifetime;
    c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    auto out = store_->InsertCertificate(scope, c);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : storage::Certificate{};
  }
  // GetCertificate's read by serial through the cache, counting the store reads it made.
  absl::StatusOr<storage::Certificate> BySerial(const storage::Scope& scope,
                                                const std::string& serial) {
    return cache_->Get(scope.tenant, CertificateCache::SerialKey(serial), [&] {
      ++reads_;
      return store_->GetCertificateBySerial(scope, serial);
    });
  }
  absl::StatusOr<storage::Certificate> Current(const storage::Scope& scope,
                                               const std::vector<std::string>& ids) {
    return cache_->Get(scope.tenant, CertificateCache::IdentifiersKey(ids), [&] {
      ++reads_;
      return store_->GetCurrentCertificate(scope, ids);
    });
  }

  testing::FakeClock clock_;
  Metrics metrics_;
  std::unique_ptr<storage::FakeStore> store_;
  std::unique_ptr<CertificateCache> cache_;
  storage::Scope alpha_, beta_;
  int reads_ = 0;
};

TEST_F(CertificateCacheTest, ARepeatedReadIsAnsweredFromMemoryPerTenantAndKey) {
  Insert(alpha_, {"a.test", "b.test"}, "0a");
  Insert(beta_, {"a.test", "b.test"}, "0b");
  ASSERT_OK_AND_ASSIGN(storage::Certificate first, BySerial(alpha_, "0a"));
  ASSERT_OK_AND_ASSIGN(storage::Certificate again, BySerial(alpha_, "0a"));
  EXPECT_EQ(reads_, 1);
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.chain_pem, first.chain_pem);
  // Another tenant's read of the same names is its own: its own certificate.
  ASSERT_OK_AND_ASSIGN(storage::Certificate alpha, Current(alpha_, {"b.test", "a.test"}));
  ASSERT_OK_AND_ASSIGN(storage::Certificate beta, Current(beta_, {"a.test", "b.test"}));
  EXPECT_EQ(alpha.serial, "0a");
  EXPECT_EQ(beta.serial, "0b");
  EXPECT_EQ(reads_, 3);
  // The same set in another order or with a repeat is the same read.
  ASSERT_OK_AND_ASSIGN(alpha, Current(alpha_, {"a.test", "b.test", "a.test"}));
  EXPECT_EQ(alpha.serial, "0a");
  EXPECT_EQ(reads_, 3);
  EXPECT_EQ(cache_->size(), 3u);
  const std::string text = metrics_.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_certificate_cache_lookups_total{result=\"hit\"} 2"));
  EXPECT_THAT(text, HasSubstr("acmevault_certificate_cache_lookups_total{result=\"miss\"} 3"));
}

TEST_F(CertificateCacheTest, AMissIsNotKeptSoTheFirstReadAfterAnIssuanceFindsIt) {
  EXPECT_THAT(Current(alpha_, {"a.test"}), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(BySerial(alpha_, "0a"), StatusIs(absl::StatusCode::kNotFound));
  Insert(alpha_, {"a.test"}, "0a");
  cache_->Invalidate(0);  // even had nothing been heard, a miss was not kept
  ASSERT_OK_AND_ASSIGN(storage::Certificate found, Current(alpha_, {"a.test"}));
  EXPECT_EQ(found.serial, "0a");
  EXPECT_EQ(reads_, 3);
}

TEST_F(CertificateCacheTest, InvalidateDropsOneTenantsEntriesOrAll) {
  Insert(alpha_, {"a.test"}, "0a");
  Insert(beta_, {"a.test"}, "0b");
  ASSERT_OK(BySerial(alpha_, "0a").status());
  ASSERT_OK(Current(alpha_, {"a.test"}).status());
  ASSERT_OK(BySerial(beta_, "0b").status());
  const size_t bytes = cache_->bytes();
  cache_->Invalidate(alpha_.tenant);
  EXPECT_EQ(cache_->size(), 1u);
  EXPECT_LT(cache_->bytes(), bytes);
  ASSERT_OK(BySerial(beta_, "0b").status());
  EXPECT_EQ(reads_, 3);  // beta's entry stayed
  ASSERT_OK(BySerial(alpha_, "0a").status());
  EXPECT_EQ(reads_, 4);
  cache_->Invalidate(0);
  EXPECT_EQ(cache_->size(), 0u);
  EXPECT_EQ(cache_->bytes(), 0u);
}

// A read that ran while a change was heard may have read the row from before it: not kept.
TEST_F(CertificateCacheTest, AReadThatRacedAChangeIsNotKept) {
  Insert(alpha_, {"a.test"}, "0a");
  auto raced = cache_->Get(alpha_.tenant, CertificateCache::SerialKey("0a"), [&] {
    auto read = store_->GetCertificateBySerial(alpha_, "0a");
    cache_->Invalidate(beta_.tenant);  // any change heard meanwhile
    return read;
  });
  ASSERT_OK(raced.status());
  EXPECT_EQ(cache_->size(), 0u);
  ASSERT_OK(BySerial(alpha_, "0a").status());
  EXPECT_EQ(reads_, 1);
  EXPECT_EQ(cache_->size(), 1u);
}

TEST_F(CertificateCacheTest, AnEntryEndsAfterTheTtlOrAtItsCertificatesExpiry) {
  Insert(alpha_, {"a.test"}, "0a");
  Insert(alpha_, {"b.test"}, "0b", absl::Seconds(10));
  ASSERT_OK(BySerial(alpha_, "0a").status());
  ASSERT_OK(Current(alpha_, {"b.test"}).status());
  clock_.Advance(absl::Seconds(9));
  ASSERT_OK(BySerial(alpha_, "0a").status());
  ASSERT_OK(Current(alpha_, {"b.test"}).status());
  EXPECT_EQ(reads_, 2);
  // At not_after the certificate is no longer current: the store says so, not the cache.
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(Current(alpha_, {"b.test"}), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(reads_, 3);
  clock_.Advance(absl::Seconds(20));
  ASSERT_OK(BySerial(alpha_, "0a").status());
  EXPECT_EQ(reads_, 4);
}

TEST_F(CertificateCacheTest, MemoryIsBoundedLeastRecentlyUsedFirst) {
  auto small = CertificateCache::Create({.clock = &clock_, .max_bytes = 3000});
  ASSERT_OK(small.status());
  cache_ = *std::move(small);
  for (int i = 0; i < 20; ++i)
    Insert(alpha_, {absl::StrCat("h", i, ".test")}, absl::StrCat("0", i));
  ASSERT_OK(BySerial(alpha_, "00").status());
  for (int i = 1; i < 20; ++i) {
    ASSERT_OK(BySerial(alpha_, absl::StrCat("0", i)).status());
    ASSERT_OK(BySerial(alpha_, "00").status());  // kept in use
  }
  EXPECT_LE(cache_->bytes(), 3000u);
  EXPECT_GT(cache_->size(), 1u);
  EXPECT_LT(cache_->size(), 20u);
  const int reads = reads_;
  ASSERT_OK(BySerial(alpha_, "00").status());
  EXPECT_EQ(reads_, reads) << "the entry in use was pushed out";
  ASSERT_OK(BySerial(alpha_, "01").status());
  EXPECT_EQ(reads_, reads + 1) << "the least recently used entry was kept";
  // A certificate larger than the whole budget is read every time.
  storage::NewCertificate big;
  big.identifiers = {"big.test"};
  big.serial = "0f";
  big.not_before = clock_.Now();
  big.not_after = clock_.Now() + absl::Hours(1);
  big.chain_pem = std::string(4000, 'x');
  ASSERT_OK(store_->InsertCertificate(alpha_, big).status());
  ASSERT_OK(BySerial(alpha_, "0f").status());
  ASSERT_OK(BySerial(alpha_, "0f").status());
  EXPECT_EQ(reads_, reads + 3);
}

// Following the store: a write to the tenant's certificates (here a revocation and a renewal)
// drops its entries before the write returns, so the next read sees it; other tenants' stay.
TEST_F(CertificateCacheTest, FollowingTheStoreAWriteIsSeenByTheNextRead) {
  std::vector<storage::TenantId> heard;
  ASSERT_OK_AND_ASSIGN(auto follower,
                       cache_->Follow(*store_, [&](storage::TenantId t) { heard.push_back(t); }));
  storage::Certificate old = Insert(alpha_, {"a.test"}, "0a");
  Insert(beta_, {"a.test"}, "0b");
  ASSERT_OK(BySerial(alpha_, "0a").status());
  ASSERT_OK(Current(alpha_, {"a.test"}).status());
  ASSERT_OK(BySerial(beta_, "0b").status());
  EXPECT_EQ(reads_, 3);

  ASSERT_OK(store_->MarkCertificateRevoked(alpha_, old.id, crypto::RevocationReason::kSuperseded));
  ASSERT_OK_AND_ASSIGN(storage::Certificate revoked, BySerial(alpha_, "0a"));
  EXPECT_TRUE(revoked.revoked_at.has_value());
  Insert(alpha_, {"a.test"}, "0c");
  ASSERT_OK_AND_ASSIGN(storage::Certificate current, Current(alpha_, {"a.test"}));
  EXPECT_EQ(current.serial, "0c");
  ASSERT_OK(BySerial(beta_, "0b").status());
  EXPECT_EQ(reads_, 5);
  EXPECT_EQ(heard, (std::vector<storage::TenantId>{0, alpha_.tenant, beta_.tenant, alpha_.tenant,
                                                   alpha_.tenant}));
  // Kept: alpha's current certificate (read after the last write) and beta's; alpha's read by
  // serial was dropped by the renewal.
  EXPECT_EQ(cache_->size(), 2u);
  follower.reset();
  Insert(alpha_, {"a.test"}, "0d");  // no longer followed: nothing dropped
  EXPECT_EQ(cache_->size(), 2u);
}

TEST_F(CertificateCacheTest, CreateRefusesBadOptions) {
  EXPECT_THAT(CertificateCache::Create({.clock = nullptr}),
              StatusIs(absl::StatusCode::kInvalidArgument, "clock"));
  EXPECT_THAT(CertificateCache::Create({.clock = &clock_, .ttl = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument, "ttl"));
  EXPECT_THAT(CertificateCache::Create({.clock = &clock_, .max_bytes = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_bytes"));
}

}  // namespace
}  // namespace acmevault::service
