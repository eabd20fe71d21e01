// Two replicas, each with its own store and token cache, over one PostgreSQL database: a token
// revoked through one is refused by the other as soon as the other hears the revocation, long
// before its cached entry would age out (the caches' clock never moves).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/auth.h"
#include "service/token_cache.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;

struct Replica {
  std::unique_ptr<storage::PostgresStore> store;
  std::unique_ptr<TokenCache> cache;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<storage::JobWaker> follower;
};

class TokenCacheReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    const std::string keks = storage::testing::KekText("k", 'k');
    auto a =
        storage::testing::CreateStoreOnDatabase(url, &clock_, storage::testing::TestKeks(keks));
    ASSERT_TRUE(a.ok()) << a.status();
    db_ = std::move(a->db);
    a_.store = std::move(a->store);
    auto b = db_->OpenStore(&clock_, storage::testing::TestKeks(keks));
    ASSERT_TRUE(b.ok()) << b.status();
    b_.store = std::move(*b);
    for (Replica* r : {&a_, &b_}) {
      r->cache = *TokenCache::Create({.clock = &clock_, .positive_ttl = absl::Hours(1)});
      r->auth = *Authenticator::Create({r->store.get(), r->cache.get()});
    }
  }
  void TearDown() override {
    for (Replica* r : {&a_, &b_}) r->follower.reset();
  }

  // What b's cache heard, as "<tenant> <identity or ->".
  std::vector<std::string> HeardByB(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return heard_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
    return heard_;
  }

  acmevault::testing::FakeClock clock_;
  std::unique_ptr<storage::testing::TestDatabase> db_;
  Replica a_, b_;
  absl::Mutex mu_;
  std::vector<std::string> heard_ ABSL_GUARDED_BY(mu_);
};

TEST_F(TokenCacheReplicasTest, ATokenRevokedOnOneReplicaIsRefusedOnTheOtherOnceItHears) {
  const storage::Actor actor{"test", "test/Rpc"};
  storage::TenantSpec spec;
  spec.name = "alpha";
  spec.acme_directory_url = "https://ca.test/dir";
  ASSERT_OK_AND_ASSIGN(storage::Tenant tenant, a_.store->CreateTenant(actor, spec));
  const storage::Scope scope{tenant.id, actor};
  const std::string token = NewBearerToken();
  ASSERT_OK_AND_ASSIGN(storage::Identity identity,
                       a_.store->AddTokenIdentity(scope, TokenDigest(token), storage::Role::kHost,
                                                  "", std::nullopt));
  auto follower = b_.cache->Follow(*b_.store, [this](const storage::Revocation& r) {
    absl::MutexLock lock(&mu_);
    heard_.push_back(absl::StrCat(r.tenant, " ", r.identity ? absl::StrCat(*r.identity) : "-"));
  });
  ASSERT_TRUE(follower.ok()) << follower.status();
  b_.follower = std::move(*follower);
  // Listening now (everything dropped once, as after any connection): what b caches from here
  // on stays until b hears otherwise.
  ASSERT_THAT(HeardByB(1), ::testing::ElementsAre("0 -"));

  const Credentials bearer{"Bearer " + token, ""};
  ASSERT_OK(b_.auth->Authenticate(bearer).status());
  ASSERT_OK(a_.auth->Authenticate(bearer).status());
  ASSERT_OK(a_.store->RevokeIdentity(scope, identity.id));
  a_.cache->Forget(identity.id);  // What RevokeToken does on the replica it runs on.
  EXPECT_THAT(a_.auth->Authenticate(bearer), StatusIs(absl::StatusCode::kUnauthenticated));

  EXPECT_THAT(HeardByB(2),
              ::testing::ElementsAre("0 -", absl::StrCat(tenant.id, " ", identity.id)));
  EXPECT_THAT(b_.auth->Authenticate(bearer), StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace acmevault::service
