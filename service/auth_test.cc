#include "service/auth.h"

#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/admin.h"
#include "service/metrics.h"
#include "service/testing/fixture.h"
#include "service/token_cache.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::Role;
using storage::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Tokens, FormatAndDigest) {
  std::string a = NewBearerToken(), b = NewBearerToken();
  EXPECT_THAT(a, ::testing::MatchesRegex("avt_[A-Za-z0-9_-]{43}"));
  EXPECT_NE(a, b);
  EXPECT_EQ(TokenDigest(a).size(), 32u);
  EXPECT_NE(TokenDigest(a), TokenDigest(b));
}

class AuthTest : public ::testing::Test {
 protected:
  testing::Fixture fx_;
  std::unique_ptr<Authenticator> auth_ = *Authenticator::Create({&fx_.store()});
};

TEST_F(AuthTest, BearerTokenMapsToTenantAndRole) {
  auto tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  std::string token = fx_.AddToken(tenant, Role::kHost);
  auto caller = auth_->Authenticate({"Bearer " + token, ""});
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->identity.tenant, tenant);
  EXPECT_EQ(caller->identity.role, Role::kHost);
  EXPECT_EQ(caller->name, "token:" + std::to_string(caller->identity.id));
  EXPECT_THAT(caller->name, ::testing::Not(HasSubstr(token.substr(4))));
}

TEST_F(AuthTest, EverythingElseIsUnauthenticatedAlike) {
  auto tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  std::string token = fx_.AddToken(tenant, Role::kAdmin);
  std::string unknown = NewBearerToken();
  for (const std::string& header :
       {std::string(""), "Bearer " + unknown, "Basic " + token, "Bearer " + token.substr(0, 20),
        "Bearer avt_" + std::string(43, '*'), "Bearer " + token + "x"}) {
    EXPECT_THAT(auth_->Authenticate({header, ""}),
                StatusIs(absl::StatusCode::kUnauthenticated, "missing or invalid credentials"))
        << header;
  }
  EXPECT_THAT(auth_->Authenticate({"", "spiffe://example.org/unbound"}),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(auth_->Authenticate({"", "https://example.org/x"}),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(AuthTest, RevokedTokenStopsWorking) {
  auto tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  std::string token = fx_.AddToken(tenant, Role::kHost);
  auto caller = auth_->Authenticate({"Bearer " + token, ""});
  ASSERT_TRUE(caller.ok());
  ASSERT_TRUE(fx_.store().RevokeIdentity(fx_.AdminScope(tenant), caller->identity.id).ok());
  EXPECT_THAT(auth_->Authenticate({"Bearer " + token, ""}),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(AuthTest, SpiffeIdentityMapsToItsBinding) {
  auto tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  ASSERT_TRUE(fx_.store()
                  .AddSpiffeIdentity(fx_.AdminScope(tenant), "spiffe://example.org/ns/a/sa/web",
                                     Role::kHost, "web")
                  .ok());
  auto caller = auth_->Authenticate({"", "spiffe://example.org/ns/a/sa/web"});
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->identity.tenant, tenant);
  EXPECT_EQ(caller->name, "spiffe://example.org/ns/a/sa/web");
}

TEST_F(AuthTest, AnExpiredTokenIsRefusedLikeAnUnknownOne) {
  auto tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  std::string token = NewBearerToken();
  ASSERT_TRUE(fx_.store()
                  .AddTokenIdentity(fx_.AdminScope(tenant), TokenDigest(token), Role::kHost, "",
                                    fx_.clock().Now() + absl::Hours(1))
                  .ok());
  ASSERT_TRUE(auth_->Authenticate({"Bearer " + token, ""}).ok());
  fx_.clock().Advance(absl::Hours(1));
  EXPECT_THAT(auth_->Authenticate({"Bearer " + token, ""}),
              StatusIs(absl::StatusCode::kUnauthenticated, "missing or invalid credentials"));
}

// An IdentityStore that counts token lookups (each one a database round trip in production).
class CountingIdentities : public storage::IdentityStore {
 public:
  explicit CountingIdentities(storage::IdentityStore* store) : store_(store) {}
  int token_lookups() const { return token_lookups_.load(); }

  absl::StatusOr<storage::Identity> AuthenticateToken(absl::string_view digest) override {
    ++token_lookups_;
    return store_->AuthenticateToken(digest);
  }
  absl::StatusOr<storage::Identity> AddSpiffeIdentity(const storage::Scope& scope,
                                                      absl::string_view spiffe_id, Role role,
                                                      absl::string_view description) override {
    return store_->AddSpiffeIdentity(scope, spiffe_id, role, description);
  }
  absl::StatusOr<storage::Identity> AddTokenIdentity(
      const storage::Scope& scope, absl::string_view digest, Role role,
      absl::string_view description, std::optional<absl::Time> expires_at) override {
    return store_->AddTokenIdentity(scope, digest, role, description, expires_at);
  }
  absl::StatusOr<storage::Identity> AuthenticateSpiffe(absl::string_view spiffe_id) override {
    return store_->AuthenticateSpiffe(spiffe_id);
  }
  absl::Status RevokeIdentity(const storage::Scope& scope, storage::IdentityId id) override {
    return store_->RevokeIdentity(scope, id);
  }
  absl::StatusOr<std::vector<storage::Identity>> ListIdentities(
      const storage::Scope& scope) override {
    return store_->ListIdentities(scope);
  }

 private:
  storage::IdentityStore* const store_;
  std::atomic<int> token_lookups_{0};
};

// Two replicas over one store, each with its token cache (positive 5 s, negative 2 s).
class CachedAuthTest : public ::testing::Test {
 protected:
  std::unique_ptr<TokenCache> MakeCache() {
    return *TokenCache::Create({.clock = &fx_.clock(), .metrics = &metrics_});
  }

  testing::Fixture fx_;
  Metrics metrics_;
  CountingIdentities counted_{&fx_.store()};
  std::unique_ptr<TokenCache> cache_ = MakeCache(), other_cache_ = MakeCache();
  std::unique_ptr<Authenticator> auth_ =
      *Authenticator::Create({.identities = &counted_, .token_cache = cache_.get()});
  std::unique_ptr<Authenticator> other_replica_ =
      *Authenticator::Create({.identities = &counted_, .token_cache = other_cache_.get()});
};

TEST_F(CachedAuthTest, ABogusTokenCostsOneStoreLookupNotOnePerRequest) {
  const std::string bogus = "Bearer " + NewBearerToken();
  for (int i = 0; i < 50; ++i) {
    EXPECT_THAT(auth_->Authenticate({bogus, ""}),
                StatusIs(absl::StatusCode::kUnauthenticated, "missing or invalid credentials"));
  }
  EXPECT_EQ(counted_.token_lookups(), 1);
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_token_cache_lookups_total{result=\"negative_hit\"} 49"));
  fx_.clock().Advance(absl::Seconds(2));
  EXPECT_THAT(auth_->Authenticate({bogus, ""}), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(counted_.token_lookups(), 2);
}

// A peer that sends ever new well-formed bogus tokens (the negative cache never hits) costs a
// bounded number of store lookups; other peers and cached tokens are not held up.
TEST_F(CachedAuthTest, ManyDistinctBogusTokensFromOnePeerCostABoundedNumberOfLookups) {
  const std::string flooder = "ipv4:192.0.2.7:40001";
  int throttled = 0;
  for (int i = 0; i < 300; ++i) {
    // Another source port of the same address: one budget per address.
    auto caller = auth_->Authenticate(
        {"Bearer " + NewBearerToken(), "", absl::StrCat("ipv4:192.0.2.7:", 40000 + i)});
    if (absl::IsResourceExhausted(caller.status())) {
      ++throttled;
      EXPECT_THAT(caller.status().message(), HasSubstr("too many unknown bearer tokens"));
    } else {
      EXPECT_THAT(caller, StatusIs(absl::StatusCode::kUnauthenticated));
    }
  }
  EXPECT_EQ(counted_.token_lookups(), 100);  // The default burst; no time passed.
  EXPECT_EQ(throttled, 200);
  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_token_cache_lookups_total{result=\"throttled\"} 200"));

  // Another address still gets its lookups, and the flooder's budget refills with time.
  EXPECT_THAT(auth_->Authenticate({"Bearer " + NewBearerToken(), "", "ipv6:[2001:db8::1]:443"}),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(counted_.token_lookups(), 101);
  fx_.clock().Advance(absl::Seconds(1));  // 20 per second.
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(auth_->Authenticate({"Bearer " + NewBearerToken(), "", flooder}),
                StatusIs(absl::StatusCode::kUnauthenticated));
  }
  EXPECT_THAT(auth_->Authenticate({"Bearer " + NewBearerToken(), "", flooder}),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(counted_.token_lookups(), 121);

  // A real token already in the cache passes from the throttled address.
  const storage::TenantId tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  const std::string real = "Bearer " + fx_.AddToken(tenant, storage::Role::kHost);
  EXPECT_TRUE(auth_->Authenticate({real, "", "ipv4:198.51.100.1:1"}).ok());
  EXPECT_TRUE(auth_->Authenticate({real, "", flooder}).ok());
}

TEST_F(CachedAuthTest, ARevokedTokenIsRefusedAtOnceHereAndAfterTheTtlElsewhere) {
  fx_.AddTenant("acme-corp", {"*.acme.example"});
  Admin::Options options =
      fx_.WithStore(Admin::Options{.token_cache = cache_.get(), .clock = &fx_.clock()});
  auto admin = *Admin::Create(options);
  const std::string root = NewBearerToken();
  ASSERT_TRUE(admin->Bootstrap(root).ok());
  auto platform = auth_->Authenticate({"Bearer " + root, ""});
  ASSERT_TRUE(platform.ok()) << platform.status();
  auto made = admin->CreateToken(*platform, {.tenant = "acme-corp", .role = Role::kHost});
  ASSERT_TRUE(made.ok()) << made.status();
  const Credentials host{"Bearer " + made->token, ""};
  ASSERT_TRUE(auth_->Authenticate(host).ok());
  ASSERT_TRUE(other_replica_->Authenticate(host).ok());
  const int lookups = counted_.token_lookups();
  ASSERT_TRUE(auth_->Authenticate(host).ok());
  ASSERT_TRUE(other_replica_->Authenticate(host).ok());
  EXPECT_EQ(counted_.token_lookups(), lookups);  // Both from their caches.

  ASSERT_TRUE(admin->RevokeToken(*platform, made->token_id).ok());
  EXPECT_THAT(auth_->Authenticate(host), StatusIs(absl::StatusCode::kUnauthenticated));
  // The other replica learns it when its entry ages out: within the positive TTL (5 s).
  EXPECT_TRUE(other_replica_->Authenticate(host).ok());
  fx_.clock().Advance(absl::Seconds(5));
  EXPECT_THAT(other_replica_->Authenticate(host), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(CachedAuthTest, ACachedTokenStopsAtItsExpiry) {
  auto tenant = fx_.AddTenant("acme-corp", {"*.acme.example"});
  std::string token = NewBearerToken();
  ASSERT_TRUE(fx_.store()
                  .AddTokenIdentity(fx_.AdminScope(tenant), TokenDigest(token), Role::kHost, "",
                                    fx_.clock().Now() + absl::Seconds(3))
                  .ok());
  ASSERT_TRUE(auth_->Authenticate({"Bearer " + token, ""}).ok());
  fx_.clock().Advance(absl::Seconds(3));
  EXPECT_THAT(auth_->Authenticate({"Bearer " + token, ""}),
              StatusIs(absl::StatusCode::kUnauthenticated, "missing or invalid credentials"));
}

TEST(RequireRole, AdminCoversHostButPlatformAdminIsApart) {
  auto caller = [](Role r) {
    Caller c;
    c.identity.role = r;
    return c;
  };
  EXPECT_TRUE(RequireRole(caller(Role::kHost), Role::kHost).ok());
  EXPECT_TRUE(RequireRole(caller(Role::kAdmin), Role::kHost).ok());
  EXPECT_TRUE(RequireRole(caller(Role::kAdmin), Role::kAdmin).ok());
  EXPECT_THAT(RequireRole(caller(Role::kHost), Role::kAdmin),
              StatusIs(absl::StatusCode::kPermissionDenied, "needs role admin"));
  EXPECT_THAT(RequireRole(caller(Role::kPlatformAdmin), Role::kHost),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(RequireRole(caller(Role::kAdmin), Role::kPlatformAdmin),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(RequireRole(caller(Role::kPlatformAdmin), Role::kPlatformAdmin).ok());
}

TEST(Authenticator, NeedsAnIdentityStore) {
  EXPECT_THAT(Authenticator::Create({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  "Authenticator: Options.identities is required"));
}

}  // namespace
}  // namespace acmevault::service
