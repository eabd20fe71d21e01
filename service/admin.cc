#include "service/admin.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "acme/client.h"
#include "common/status_macros.h"
#include "service/identifiers.h"
#include "service/paging.h"
#include "service/rotation_policy.h"
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

std::string CredentialId(absl::string_view tenant, storage::IdentityId id) {
  return absl::StrCat(tenant, ":", id);
}

absl::StatusOr<std::unique_ptr<Admin>> Admin::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("Admin", {{"tenants", options.tenants},
                                                 {"identities", options.identities},
                                                 {"audit", options.audit},
                                                 {"clock", options.clock}}));
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

absl::StatusOr<TenantView> Admin::GetTenant(const Caller& caller, const std::string& name) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  TenantView view;
  ASSIGN_OR_RETURN(view.tenant, options_.tenants->FindTenantByName(name));
  if (options_.accounts != nullptr) {
    ASSIGN_OR_RETURN(std::optional<ActiveAccountKey> active,
                     FindActiveAccountKey(*options_.accounts,
                                          {view.tenant.id, ActorOf(caller, "GetTenant")}));
    if (active) {
      view.next_account_key_rotation =
          DecideRotation(view.tenant.spec.policy, active->key, options_.clock->Now()).due_at;
    }
  }
  return view;
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

absl::StatusOr<storage::Tenant> Admin::ManagedTenant(const Caller& caller,
                                                     const std::string& tenant_name) {
  if (caller.identity.role == storage::Role::kPlatformAdmin) {
    if (tenant_name.empty()) return absl::InvalidArgumentError("tenant: required");
    return options_.tenants->FindTenantByName(tenant_name);
  }
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  ASSIGN_OR_RETURN(storage::Tenant own,
                   options_.tenants->GetTenant(caller.ScopeFor("AdminService/ManagedTenant")));
  if (!tenant_name.empty() && tenant_name != own.spec.name) {
    return absl::PermissionDeniedError("an ADMIN manages only its own tenant's credentials");
  }
  return own;
}

absl::StatusOr<std::pair<storage::Tenant, storage::Identity>> Admin::FindCredential(
    const Caller& caller, absl::string_view field, const std::string& id, bool spiffe) {
  std::vector<std::string> parts = absl::StrSplit(id, absl::MaxSplits(':', 1));
  storage::IdentityId number;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &number)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected \"<tenant>:<number>\""));
  }
  ASSIGN_OR_RETURN(storage::Tenant tenant, ManagedTenant(caller, parts[0]));
  ASSIGN_OR_RETURN(std::vector<storage::Identity> all,
                   options_.identities->ListIdentities(
                       {tenant.id, ActorOf(caller, spiffe ? "UnbindIdentity" : "RevokeToken")}));
  for (storage::Identity& identity : all) {
    if (identity.id == number && identity.bearer_token != spiffe) {
      return std::make_pair(std::move(tenant), std::move(identity));
    }
  }
  return absl::NotFoundError(absl::StrCat("no ", spiffe ? "SPIFFE binding " : "token ", id));
}

absl::StatusOr<NewToken> Admin::CreateToken(const Caller& caller, const TokenSpec& spec) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  const absl::Time now = options_.clock->Now();
  std::optional<absl::Time> expires_at = spec.expires_at;
  if (spec.ttl.has_value() && spec.expires_at.has_value()) {
    return absl::InvalidArgumentError("expiry: give ttl or expires_at, not both");
  }
  if (spec.ttl.has_value()) {
    if (*spec.ttl <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("ttl: must be positive");
    }
    expires_at = now + *spec.ttl;
  } else if (expires_at.has_value() && *expires_at <= now) {
    return absl::InvalidArgumentError("expires_at: must be in the future");
  }
  const storage::Actor actor = ActorOf(caller, "CreateToken");
  ASSIGN_OR_RETURN(storage::Tenant tenant, TenantForRole(actor, spec.tenant, spec.role));
  std::string token = NewBearerToken();
  ASSIGN_OR_RETURN(storage::Identity identity,
                   options_.identities->AddTokenIdentity({tenant.id, actor}, TokenDigest(token),
                                                         spec.role, spec.description, expires_at));
  return NewToken{CredentialId(tenant.spec.name, identity.id), token, identity.expires_at};
}

absl::Status Admin::RevokeToken(const Caller& caller, const std::string& token_id) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  ASSIGN_OR_RETURN(auto found, FindCredential(caller, "token_id", token_id, /*spiffe=*/false));
  RETURN_IF_ERROR(options_.identities->RevokeIdentity(
      {found.first.id, ActorOf(caller, "RevokeToken")}, found.second.id));
  if (options_.token_cache != nullptr) options_.token_cache->Forget(found.second.id);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Admin::BindIdentity(const Caller& caller, const std::string& spiffe_id,
                                                const std::string& tenant_name,
                                                storage::Role role) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kPlatformAdmin));
  if (!absl::StartsWith(spiffe_id, "spiffe://") || spiffe_id.size() <= 9) {
    return absl::InvalidArgumentError("spiffe_id: must be a spiffe:// URI");
  }
  const storage::Actor actor = ActorOf(caller, "BindIdentity");
  ASSIGN_OR_RETURN(storage::Tenant tenant, TenantForRole(actor, tenant_name, role));
  ASSIGN_OR_RETURN(storage::Identity bound, options_.identities->AddSpiffeIdentity(
                                                {tenant.id, actor}, spiffe_id, role, "bound"));
  return CredentialId(tenant.spec.name, bound.id);
}

absl::StatusOr<IdentityListing> Admin::ListIdentities(const Caller& caller,
                                                      const std::string& tenant_name) {
  ASSIGN_OR_RETURN(storage::Tenant tenant, ManagedTenant(caller, tenant_name));
  const storage::Scope scope{tenant.id, ActorOf(caller, "ListIdentities")};
  ASSIGN_OR_RETURN(std::vector<storage::Identity> all, options_.identities->ListIdentities(scope));
  IdentityListing out{tenant.spec.name, {}};
  for (storage::Identity& identity : all) {
    if (!identity.revoked_at.has_value()) out.identities.push_back(std::move(identity));
  }
  // Listing credentials is itself worth a row: who looked at a tenant's access, and when.
  storage::AuditEvent listed;
  listed.action = "ListIdentities";
  listed.detail = absl::StrCat(out.identities.size(), " identities");
  RETURN_IF_ERROR(options_.audit->AppendAudit(scope, listed));
  return out;
}

absl::Status Admin::UnbindIdentity(const Caller& caller, const std::string& binding_id) {
  ASSIGN_OR_RETURN(auto found, FindCredential(caller, "binding_id", binding_id, /*spiffe=*/true));
  return options_.identities->RevokeIdentity({found.first.id, ActorOf(caller, "UnbindIdentity")},
                                             found.second.id);
}

absl::Status Admin::Bootstrap(const std::string& token) {
  if (!WellFormedToken(token)) {
    return absl::InvalidArgumentError(
        "bootstrap token: not an acmevault token (\"avt_\" and 43 base64url characters)");
  }
  const storage::Actor actor{"bootstrap", "acmevaultd start"};
  ASSIGN_OR_RETURN(storage::Tenant tenant, PlatformTenant(actor));
  auto added = options_.identities->AddTokenIdentity({tenant.id, actor}, TokenDigest(token),
                                                     storage::Role::kPlatformAdmin, "bootstrap",
                                                     std::nullopt);
  if (absl::IsAlreadyExists(added.status())) return absl::OkStatus();
  return added.status();
}

}  // namespace acmevault::service
