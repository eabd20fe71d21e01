#include "service/admin.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::Role;
using storage::testing::StatusIs;

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status boot = admin_->Bootstrap(root_token_);
    ASSERT_TRUE(boot.ok()) << boot;
    auto c = auth_->Authenticate({"Bearer " + root_token_, ""});
    ASSERT_TRUE(c.ok()) << c.status();
    root_ = *c;
  }
  storage::TenantSpec Spec(const std::string& name) {
    storage::TenantSpec s;
    s.name = name;
    s.allowed_identifiers = {"*.Example.com", "example.com"};
    return s;
  }

  testing::Fixture fx_;
  std::unique_ptr<Admin> admin_ =
      *Admin::Create(fx_.WithStore(Admin::Options{.default_directory_url = "https://ca.test/dir"}));
  std::unique_ptr<Authenticator> auth_ = *Authenticator::Create({&fx_.store()});
  std::string root_token_ = NewBearerToken();
  Caller root_;
};

TEST_F(AdminTest, BootstrapIsIdempotentAndGivesPlatformAdmin) {
  EXPECT_TRUE(admin_->Bootstrap(root_token_).ok());
  EXPECT_EQ(root_.identity.role, Role::kPlatformAdmin);
  EXPECT_THAT(admin_->Bootstrap("hunter2"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AdminTest, TenantsAreValidatedAndCanonical) {
  auto t = admin_->CreateTenant(root_, Spec("acme-corp"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->spec.allowed_identifiers, ::testing::ElementsAre("example.com", "*.example.com"));
  EXPECT_EQ(t->spec.acme_directory_url, "https://ca.test/dir");
  EXPECT_THAT(admin_->CreateTenant(root_, Spec("acme-corp")),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(admin_->CreateTenant(root_, Spec("Bad_Name")),
              StatusIs(absl::StatusCode::kInvalidArgument, "name:"));
  EXPECT_THAT(admin_->CreateTenant(root_, Spec("platform")),
              StatusIs(absl::StatusCode::kInvalidArgument, "reserved"));
  auto bad = Spec("other");
  bad.allowed_identifiers = {"*.com"};
  EXPECT_THAT(admin_->CreateTenant(root_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, "allowed_identifiers[0]"));
  bad = Spec("other");
  bad.acme_directory_url = "ftp://ca/dir";
  EXPECT_THAT(admin_->CreateTenant(root_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, "directory_url"));

  auto updated = Spec("acme-corp");
  updated.allowed_identifiers = {"*.corp.example"};
  auto u = admin_->UpdateTenant(root_, updated);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_THAT(u->spec.allowed_identifiers, ::testing::ElementsAre("*.corp.example"));
  auto list = admin_->ListTenants(root_, {});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), 2u);  // platform and acme-corp
}

TEST_F(AdminTest, TokensWorkUntilRevokedAndOnlyPlatformAdminsAdminister) {
  ASSERT_TRUE(admin_->CreateTenant(root_, Spec("acme-corp")).ok());
  auto token = admin_->CreateToken(root_, "acme-corp", Role::kHost, "sidecar");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_THAT(token->token_id, ::testing::StartsWith("acme-corp:"));
  auto host = auth_->Authenticate({"Bearer " + token->token, ""});
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->identity.role, Role::kHost);
  // A tenant's credentials administer nothing.
  EXPECT_THAT(admin_->CreateTenant(*host, Spec("mine")),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(admin_->CreateToken(*host, "acme-corp", Role::kAdmin, ""),
              StatusIs(absl::StatusCode::kPermissionDenied));

  ASSERT_TRUE(admin_->RevokeToken(root_, token->token_id).ok());
  EXPECT_THAT(auth_->Authenticate({"Bearer " + token->token, ""}),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(admin_->RevokeToken(root_, "acme-corp"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(admin_->CreateToken(root_, "", Role::kHost, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "tenant"));
  EXPECT_THAT(admin_->CreateToken(root_, "nobody", Role::kHost, ""),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AdminTest, BindIdentityMapsASpiffeId) {
  ASSERT_TRUE(admin_->CreateTenant(root_, Spec("acme-corp")).ok());
  ASSERT_TRUE(
      admin_->BindIdentity(root_, "spiffe://example.org/web", "acme-corp", Role::kHost).ok());
  auto c = auth_->Authenticate({"", "spiffe://example.org/web"});
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(admin_->BindIdentity(root_, "https://x", "acme-corp", Role::kHost),
              StatusIs(absl::StatusCode::kInvalidArgument, "spiffe_id"));
}

TEST_F(AdminTest, ListTenantsRefusesANegativePageSize) {
  EXPECT_THAT(admin_->ListTenants(root_, {"", -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
}

TEST_F(AdminTest, MissingCollaboratorsAreRefusedAtCreation) {
  EXPECT_THAT(Admin::Create({}),
              StatusIs(absl::StatusCode::kInvalidArgument, "Admin: Options.tenants is required"));
  auto no_identities = fx_.WithStore(Admin::Options{});
  no_identities.identities = nullptr;
  EXPECT_THAT(Admin::Create(no_identities),
              StatusIs(absl::StatusCode::kInvalidArgument, "Options.identities"));
}

}  // namespace
}  // namespace acmevault::service
