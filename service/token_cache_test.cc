#include "service/token_cache.h"

#include <string>

#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/metrics.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;
using ::testing::HasSubstr;

class TokenCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<TokenCache> MakeCache(size_t max_entries = 100) {
    return *TokenCache::Create({.clock = &clock_,
                                .positive_ttl = absl::Seconds(5),
                                .negative_ttl = absl::Seconds(2),
                                .max_entries = max_entries,
                                .metrics = &metrics_});
  }

  // A stand-in for the store: counts lookups, knows `known` as identity 7.
  absl::StatusOr<storage::Identity> Lookup(absl::string_view digest) {
    ++lookups_;
    if (!unavailable_.ok()) return unavailable_;
    if (digest != known_) return absl::NotFoundError("unknown token");
    storage::Identity i;
    i.id = 7;
    i.expires_at = expires_at_;
    return i;
  }
  absl::StatusOr<storage::Identity> Get(TokenCache& cache, const std::string& digest) {
    return cache.Get(digest, [&] { return Lookup(digest); });
  }

  acmevault::testing::FakeClock clock_;
  Metrics metrics_;
  int lookups_ = 0;
  std::string known_ = std::string(32, 'k');
  std::optional<absl::Time> expires_at_;
  absl::Status unavailable_;
};

TEST_F(TokenCacheTest, AnswersRepeatFromTheCacheUntilTheirTtl) {
  auto cache = MakeCache();
  const std::string bogus(32, 'b');
  for (int i = 0; i < 10; ++i) {
    EXPECT_THAT(Get(*cache, bogus), StatusIs(absl::StatusCode::kNotFound));
    ASSERT_TRUE(Get(*cache, known_).ok());
  }
  EXPECT_EQ(lookups_, 2);
  clock_.Advance(absl::Seconds(2));  // The negative entry is gone, the positive one is not.
  EXPECT_THAT(Get(*cache, bogus), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_TRUE(Get(*cache, known_).ok());
  EXPECT_EQ(lookups_, 3);
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(Get(*cache, known_).ok());
  EXPECT_EQ(lookups_, 4);

  const std::string text = metrics_.Render();
  EXPECT_THAT(text, HasSubstr("acmevault_token_cache_lookups_total{result=\"negative_hit\"} 9"));
  EXPECT_THAT(text, HasSubstr("acmevault_token_cache_lookups_total{result=\"hit\"} 10"));
  EXPECT_THAT(text, HasSubstr("acmevault_token_cache_lookups_total{result=\"miss\"} 4"));
}

TEST_F(TokenCacheTest, NeverTrustsATokenPastItsExpiry) {
  auto cache = MakeCache();
  expires_at_ = clock_.Now() + absl::Seconds(1);
  ASSERT_TRUE(Get(*cache, known_).ok());
  clock_.Advance(absl::Seconds(1));
  expires_at_.reset();
  ASSERT_TRUE(Get(*cache, known_).ok());  // Asked again: the store decides.
  EXPECT_EQ(lookups_, 2);
}

TEST_F(TokenCacheTest, ForgetDropsAnIdentityAtOnce) {
  auto cache = MakeCache();
  ASSERT_TRUE(Get(*cache, known_).ok());
  cache->Forget(7);
  ASSERT_TRUE(Get(*cache, known_).ok());
  EXPECT_EQ(lookups_, 2);
  // A lookup that a Forget overtakes is answered but not kept.
  auto raced = cache->Get(std::string(32, 'r'), [&]() -> absl::StatusOr<storage::Identity> {
    cache->Forget(9);
    storage::Identity i;
    i.id = 9;
    return i;
  });
  ASSERT_TRUE(raced.ok());
  EXPECT_EQ(cache->size(), 1u);
}

TEST_F(TokenCacheTest, InvalidateDropsAnIdentityATenantOrEverything) {
  auto cache = MakeCache();
  // Identities 1 and 2 of tenant 10, 3 of tenant 20; one unknown digest (negative entry).
  auto put = [&](char c, storage::IdentityId id, storage::TenantId tenant) {
    ASSERT_TRUE(cache
                    ->Get(std::string(32, c),
                          [&]() -> absl::StatusOr<storage::Identity> {
                            storage::Identity i;
                            i.id = id;
                            i.tenant = tenant;
                            return i;
                          })
                    .ok());
  };
  auto cached = [&](char c) {
    bool asked = false;
    auto got = cache->Get(std::string(32, c), [&]() -> absl::StatusOr<storage::Identity> {
      asked = true;
      return absl::UnavailableError("not kept");
    });
    return !asked && got.ok();
  };
  put('a', 1, 10);
  put('b', 2, 10);
  put('c', 3, 20);
  Get(*cache, std::string(32, 'u')).IgnoreError();
  cache->Invalidate({10, 1});
  EXPECT_FALSE(cached('a'));
  EXPECT_TRUE(cached('b'));
  put('a', 1, 10);
  cache->Invalidate({10, std::nullopt});  // the tenant was disabled
  EXPECT_FALSE(cached('a'));
  EXPECT_FALSE(cached('b'));
  EXPECT_TRUE(cached('c'));
  cache->Invalidate({});  // revocations may have been missed
  EXPECT_FALSE(cached('c'));
  EXPECT_EQ(lookups_, 1);  // the unknown digest's negative entry stayed: no revocation revives
  Get(*cache, std::string(32, 'u')).IgnoreError();
  EXPECT_EQ(lookups_, 1);
}

TEST_F(TokenCacheTest, KeepsNoOtherErrorAndStaysWithinItsBound) {
  auto cache = MakeCache(/*max_entries=*/2);
  unavailable_ = absl::UnavailableError("database down");
  EXPECT_THAT(Get(*cache, known_), StatusIs(absl::StatusCode::kUnavailable));
  unavailable_ = absl::OkStatus();
  ASSERT_TRUE(Get(*cache, known_).ok());
  EXPECT_EQ(lookups_, 2);
  // Bogus tokens fill their own kind, least recently used out first, and leave the known one.
  for (char c : {'a', 'b', 'c'}) Get(*cache, std::string(32, c)).IgnoreError();
  EXPECT_EQ(cache->size(), 3u);
  EXPECT_EQ(lookups_, 5);
  Get(*cache, std::string(32, 'c')).IgnoreError();
  ASSERT_TRUE(Get(*cache, known_).ok());
  EXPECT_EQ(lookups_, 5);
  Get(*cache, std::string(32, 'a')).IgnoreError();  // Evicted by 'c'.
  EXPECT_EQ(lookups_, 6);
}

TEST(TokenCache, RefusesBadOptions) {
  EXPECT_THAT(TokenCache::Create({.clock = nullptr}),
              StatusIs(absl::StatusCode::kInvalidArgument, "Options.clock"));
  EXPECT_THAT(TokenCache::Create({.positive_ttl = absl::Seconds(-1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, "TTL"));
  EXPECT_THAT(TokenCache::Create({.max_entries = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_entries"));
  EXPECT_THAT(TokenCache::Create({.unknown_per_peer_burst = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, "budget"));
  EXPECT_THAT(TokenCache::Create({.unknown_per_peer_per_second = -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, "budget"));
  EXPECT_TRUE(TokenCache::Create({.unknown_per_peer_per_second = 0, .unknown_per_peer_burst = 0})
                  .ok());
}

}  // namespace
}  // namespace acmevault::service
