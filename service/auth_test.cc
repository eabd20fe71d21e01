#include "service/auth.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
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
