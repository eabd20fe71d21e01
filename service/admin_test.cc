#include "service/admin.h"

#include "crypto/jwk.h"
#include "crypto/keys.h"
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
  std::unique_ptr<Admin> admin_ = *Admin::Create(fx_.WithStore(
      Admin::Options{.clock = &fx_.clock(), .default_directory_url = "https://ca.test/dir"}));
  std::unique_ptr<Authenticator> auth_ = *Authenticator::Create({&fx_.store()});
  std::string root_token_ = NewBearerToken();
  Caller root_;
};

TEST_F(AdminTest, BootstrapIsIdempotentAndGivesPlatformAdmin) {
  EXPECT_TRUE(admin_->Bootstrap(root_token_).ok());
  EXPECT_EQ(root_.identity.role, Role::kPlatformAdmin);
  EXPECT_THAT(admin_->Bootstrap("hunter2"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AdminTest, GetTenantShowsWhenTheAccountKeyIsDueForRotation) {
  auto spec = Spec("acme-corp");
  spec.policy.max_key_age = absl::Hours(24 * 10);
  ASSERT_OK_AND_ASSIGN(storage::Tenant tenant, admin_->CreateTenant(root_, spec));
  ASSERT_OK_AND_ASSIGN(TenantView view, admin_->GetTenant(root_, "acme-corp"));
  EXPECT_FALSE(view.next_account_key_rotation.has_value());  // no account yet

  const storage::Scope scope = fx_.AdminScope(tenant.id);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey key,
                       crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256));
  const crypto::PublicKey pub = key.public_key();
  ASSERT_OK_AND_ASSIGN(
      storage::Account account,
      fx_.store().CreateAccount(scope, "https://ca.test/dir", key,
                                {crypto::PublicJwk(pub).dump(), crypto::Thumbprint(pub)},
                                storage::KeyState::kActive));
  ASSERT_OK(fx_.store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1"));
  ASSERT_OK_AND_ASSIGN(view, admin_->GetTenant(root_, "acme-corp"));
  EXPECT_EQ(view.next_account_key_rotation, fx_.clock().Now() + absl::Hours(24 * 10));
  EXPECT_EQ(view.tenant.id, tenant.id);
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
  auto token = admin_->CreateToken(root_, {"acme-corp", Role::kHost, "sidecar"});
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_THAT(token->token_id, ::testing::StartsWith("acme-corp:"));
  auto host = auth_->Authenticate({"Bearer " + token->token, ""});
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->identity.role, Role::kHost);
  // A tenant's credentials administer nothing.
  EXPECT_THAT(admin_->CreateTenant(*host, Spec("mine")),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(admin_->CreateToken(*host, {"acme-corp", Role::kAdmin}),
              StatusIs(absl::StatusCode::kPermissionDenied));

  ASSERT_TRUE(admin_->RevokeToken(root_, token->token_id).ok());
  EXPECT_THAT(auth_->Authenticate({"Bearer " + token->token, ""}),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(admin_->RevokeToken(root_, "acme-corp"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(admin_->CreateToken(root_, {"", Role::kHost}),
              StatusIs(absl::StatusCode::kInvalidArgument, "tenant"));
  EXPECT_THAT(admin_->CreateToken(root_, {"nobody", Role::kHost}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AdminTest, TokensMayExpire) {
  ASSERT_TRUE(admin_->CreateTenant(root_, Spec("acme-corp")).ok());
  auto hour = admin_->CreateToken(root_, {"acme-corp", Role::kHost, "ci", absl::Hours(1)});
  ASSERT_TRUE(hour.ok()) << hour.status();
  EXPECT_EQ(hour->expires_at, fx_.clock().Now() + absl::Hours(1));
  const absl::Time at = fx_.clock().Now() + absl::Hours(2);
  auto until = admin_->CreateToken(root_, {"acme-corp", Role::kHost, "ci", std::nullopt, at});
  ASSERT_TRUE(until.ok()) << until.status();
  EXPECT_EQ(until->expires_at, at);
  auto forever = admin_->CreateToken(root_, {"acme-corp", Role::kHost});
  ASSERT_TRUE(forever.ok());
  EXPECT_FALSE(forever->expires_at.has_value());

  fx_.clock().Advance(absl::Hours(1));
  EXPECT_THAT(auth_->Authenticate({"Bearer " + hour->token, ""}),
              StatusIs(absl::StatusCode::kUnauthenticated, "missing or invalid credentials"));
  EXPECT_TRUE(auth_->Authenticate({"Bearer " + until->token, ""}).ok());
  EXPECT_TRUE(auth_->Authenticate({"Bearer " + forever->token, ""}).ok());

  EXPECT_THAT(admin_->CreateToken(root_, {"acme-corp", Role::kHost, "", absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument, "ttl"));
  EXPECT_THAT(
      admin_->CreateToken(root_, {"acme-corp", Role::kHost, "", std::nullopt, fx_.clock().Now()}),
      StatusIs(absl::StatusCode::kInvalidArgument, "expires_at"));
  EXPECT_THAT(admin_->CreateToken(root_, {"acme-corp", Role::kHost, "", absl::Hours(1), at}),
              StatusIs(absl::StatusCode::kInvalidArgument, "not both"));
}

TEST_F(AdminTest, BindIdentityMapsASpiffeIdAndNamesTheBinding) {
  ASSERT_TRUE(admin_->CreateTenant(root_, Spec("acme-corp")).ok());
  auto bound = admin_->BindIdentity(root_, "spiffe://example.org/web", "acme-corp", Role::kHost);
  ASSERT_TRUE(bound.ok()) << bound.status();
  auto c = auth_->Authenticate({"", "spiffe://example.org/web"});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*bound, CredentialId("acme-corp", c->identity.id));
  EXPECT_THAT(admin_->BindIdentity(root_, "https://x", "acme-corp", Role::kHost),
              StatusIs(absl::StatusCode::kInvalidArgument, "spiffe_id"));
}

TEST_F(AdminTest, BindingsAreListedAndRemovedByTheirTenantsAdmins) {
  ASSERT_TRUE(admin_->CreateTenant(root_, Spec("acme-corp")).ok());
  ASSERT_TRUE(admin_->CreateTenant(root_, Spec("other")).ok());
  auto web = admin_->BindIdentity(root_, "spiffe://example.org/web", "acme-corp", Role::kHost);
  ASSERT_TRUE(web.ok());
  auto token = admin_->CreateToken(root_, {"acme-corp", Role::kAdmin, "ops", absl::Hours(1)});
  ASSERT_TRUE(token.ok());
  auto tenant_admin = auth_->Authenticate({"Bearer " + token->token, ""});
  ASSERT_TRUE(tenant_admin.ok());
  auto outsider_token = admin_->CreateToken(root_, {"other", Role::kAdmin});
  ASSERT_TRUE(outsider_token.ok());
  auto outsider = auth_->Authenticate({"Bearer " + outsider_token->token, ""});
  ASSERT_TRUE(outsider.ok());
  auto host_token = admin_->CreateToken(root_, {"acme-corp", Role::kHost});
  ASSERT_TRUE(host_token.ok());
  auto host = auth_->Authenticate({"Bearer " + host_token->token, ""});
  ASSERT_TRUE(host.ok());

  auto listed = admin_->ListIdentities(*tenant_admin, "");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->tenant, "acme-corp");
  ASSERT_EQ(listed->identities.size(), 3u);  // The binding and two tokens, oldest first.
  EXPECT_EQ(CredentialId(listed->tenant, listed->identities[0].id), *web);
  EXPECT_EQ(listed->identities[0].spiffe_id, "spiffe://example.org/web");
  EXPECT_EQ(CredentialId(listed->tenant, listed->identities[1].id), token->token_id);
  EXPECT_TRUE(listed->identities[1].bearer_token);
  EXPECT_EQ(listed->identities[1].expires_at, token->expires_at);
  ASSERT_TRUE(admin_->ListIdentities(root_, "acme-corp").ok());
  EXPECT_THAT(admin_->ListIdentities(root_, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "tenant"));
  EXPECT_THAT(admin_->ListIdentities(*outsider, "acme-corp"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(admin_->ListIdentities(*host, ""), StatusIs(absl::StatusCode::kPermissionDenied));

  // Only a binding is unbound, and only by an administrator of its tenant.
  EXPECT_THAT(admin_->UnbindIdentity(*outsider, *web),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(admin_->UnbindIdentity(*tenant_admin, token->token_id),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(admin_->RevokeToken(root_, *web), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(admin_->UnbindIdentity(*tenant_admin, "acme-corp"),
              StatusIs(absl::StatusCode::kInvalidArgument, "binding_id"));
  ASSERT_TRUE(admin_->UnbindIdentity(*tenant_admin, *web).ok());
  ASSERT_TRUE(admin_->UnbindIdentity(*tenant_admin, *web).ok());  // Idempotent.
  EXPECT_THAT(auth_->Authenticate({"", "spiffe://example.org/web"}),
              StatusIs(absl::StatusCode::kUnauthenticated));
  listed = admin_->ListIdentities(root_, "acme-corp");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->identities.size(), 2u);
  // The id can be bound again, as a new binding.
  auto again = admin_->BindIdentity(root_, "spiffe://example.org/web", "acme-corp", Role::kHost);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_NE(*again, *web);

  // Both calls are in the tenant's audit log, with who made them.
  auto tenant = fx_.store().FindTenantByName("acme-corp");
  ASSERT_TRUE(tenant.ok());
  auto audit = fx_.store().ListAudit(fx_.AdminScope(tenant->id), {"", 1000});
  ASSERT_TRUE(audit.ok());
  int listings = 0, unbinds = 0;
  for (const auto& r : audit->items) {
    if (r.event.action == "ListIdentities") ++listings;
    if (r.event.action == "RevokeIdentity" && r.actor.rpc == "AdminService/UnbindIdentity") {
      ++unbinds;
      EXPECT_EQ(r.actor.identity, tenant_admin->name);
    }
  }
  EXPECT_EQ(listings, 3);
  EXPECT_EQ(unbinds, 1);
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
