#include "service/admin.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "acme/client.h"
#include "common/status_macros.h"
#include "service/identifiers.h"
#include "service/paging.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0);
    if (!ok) return false;
  }
  return true;
}

storage::Actor ActorOf(const Caller& caller, absl::string_view rpc) {
  return {caller.name, absl::StrCat("AdminService/", rpc)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<Admin>> Admin::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators(
      "Admin", {{"tenants", options.tenants}, {"identities", options.identities}}));
  return std::unique_ptr<Admin>(new Admin(std::move(options)));
}

absl::Status Admin::Validate(storage::TenantSpec& spec) const {
  if (!ValidName(spec.name)) {
    return absl::InvalidArgumentError(
        "name: must be 1 to 63 lower-case letters, digits or '-', not starting with '-'");
  }
  if (spec.name == kPlatformTenant) {
    return absl::InvalidArgumentError(absl::StrCat("name: \"", kPlatformTenant, "\" is reserved"));
  }
  ASSIGN_OR_RETURN(AllowList list, AllowList::Create(spec.allowed_identifiers));
  std::vector<std::string> canonical;
  for (const auto& e : list.exact()) canonical.push_back(e);
  for (const auto& s : list.suffixes()) canonical.push_back(absl::StrCat("*", s));
  spec.allowed_identifiers = canonical;
  if (spec.acme_directory_url.empty()) spec.acme_directory_url = options_.default_directory_url;
  if (!spec.acme_directory_url.empty() && !acme::UrlOrigin(spec.acme_directory_url).ok()) {
    return absl::InvalidArgumentError("directory_url: is not an http(s) URL");
  }
  if (spec.policy.renewal_window < absl::ZeroDuration() ||
      spec.policy.max_key_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("policy: durations must not be negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<storage::Tenant> Admin::CreateTenant(const Caller& caller,
                                                    storage::TenantSpec spec) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  RETURN_IF_ERROR(Validate(spec));
  return options_.tenants->CreateTenant(ActorOf(caller, "CreateTenant"), spec);
}

absl::StatusOr<storage::Tenant> Admin::UpdateTenant(const Caller& caller,
                                                    storage::TenantSpec spec) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  RETURN_IF_ERROR(Validate(spec));
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->FindTenantByName(spec.name));
  return options_.tenants->UpdateTenant({tenant.id, ActorOf(caller, "UpdateTenant")}, spec);
}

absl::StatusOr<storage::Tenant> Admin::GetTenant(const Caller& caller, const std::string& name) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  return options_.tenants->FindTenantByName(name);
}

absl::StatusOr<storage::Page<storage::Tenant>> Admin::ListTenants(
    const Caller& caller, const storage::PageRequest& page) {
  ASSIGN_OR_RETURN(storage::PageRequest checked, CheckPage(page));
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  return options_.tenants->ListTenants(checked);
}

absl::StatusOr<storage::Tenant> Admin::PlatformTenant(const storage::Actor& actor) {
  auto found = options_.tenants->FindTenantByName(kPlatformTenant);
  if (!absl::IsNotFound(found.status())) return found;
  storage::TenantSpec spec;
  spec.name = kPlatformTenant;
  // It never orders (no allowed identifiers); the store still wants a well-formed directory.
  spec.acme_directory_url = options_.default_directory_url.empty()
                                ? "https://platform.invalid/directory"
                                : options_.default_directory_url;
  auto created = options_.tenants->CreateTenant(actor, spec);
  if (absl::IsAlreadyExists(created.status())) {
    return options_.tenants->FindTenantByName(kPlatformTenant);
  }
  return created;
}

absl::StatusOr<storage::Tenant> Admin::TenantForRole(const storage::Actor& actor,
                                                     const std::string& tenant_name,
                                                     storage::Role role) {
  if (role == storage::Role::kPlatformAdmin) {
    if (!tenant_name.empty()) {
      return absl::InvalidArgumentError("tenant: must be empty for role PLATFORM_ADMIN");
    }
    return PlatformTenant(actor);
  }
  if (tenant_name.empty() || tenant_name == kPlatformTenant) {
    return absl::InvalidArgumentError("tenant: required for roles HOST and ADMIN");
  }
  return options_.tenants->FindTenantByName(tenant_name);
}

absl::StatusOr<NewToken> Admin::CreateToken(const Caller& caller, const std::string& tenant_name,
                                            storage::Role role, const std::string& description) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  const storage::Actor actor = ActorOf(caller, "CreateToken");
  ASSIGN_OR_RETURN(storage::Tenant tenant, TenantForRole(actor, tenant_name, role));
  std::string token = NewBearerToken();
  ASSIGN_OR_RETURN(storage::Identity identity,
                   options_.identities->AddTokenIdentity({tenant.id, actor}, TokenDigest(token),
                                                         role, description));
  return NewToken{absl::StrCat(tenant.spec.name, ":", identity.id), token};
}

absl::Status Admin::RevokeToken(const Caller& caller, const std::string& token_id) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  std::vector<std::string> parts = absl::StrSplit(token_id, absl::MaxSplits(':', 1));
  storage::IdentityId id;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &id)) {
    return absl::InvalidArgumentError("token_id: expected \"<tenant>:<number>\"");
  }
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->FindTenantByName(parts[0]));
  return options_.identities->RevokeIdentity({tenant.id, ActorOf(caller, "RevokeToken")}, id);
}

absl::Status Admin::BindIdentity(const Caller& caller, const std::string& spiffe_id,
                                 const std::string& tenant_name, storage::Role role) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  if (!absl::StartsWith(spiffe_id, "spiffe://") || spiffe_id.size() <= 9) {
    return absl::InvalidArgumentError("spiffe_id: must be a spiffe:// URI");
  }
  const storage::Actor actor = ActorOf(caller, "BindIdentity");
  ASSIGN_OR_RETURN(storage::Tenant tenant, TenantForRole(actor, tenant_name, role));
  return options_.identities->AddSpiffeIdentity({tenant.id, actor}, spiffe_id, role, "bound")
      .status();
}

absl::Status Admin::Bootstrap(const std::string& token) {
  if (!WellFormedToken(token)) {
    return absl::InvalidArgumentError(
        "bootstrap token: not an acmevault token (\"avt_\" and 43 base64url characters)");
  }
  const storage::Actor actor{"bootstrap", "acmevaultd start"};
  ASSIGN_OR_RETURN(storage::Tenant tenant, PlatformTenant(actor));
  auto added = options_.identities->AddTokenIdentity({tenant.id, actor}, TokenDigest(token),
                                                     storage::Role::kPlatformAdmin, "bootstrap");
  if (absl::IsAlreadyExists(added.status())) return absl::OkStatus();
  return added.status();
}

}  // namespace acmevault::service
