// Platform administration: tenants, bearer tokens and SPIFFE bindings (AdminService). Every
// operation needs role PLATFORM_ADMIN, except ListIdentities and UnbindIdentity, which a tenant's
// ADMIN may also call for its own tenant. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ADMIN_H_
#define ACMEVAULT_SERVICE_ADMIN_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "service/auth.h"
#include "service/token_cache.h"
#include "storage/store.h"

namespace acmevault::service {

// The tenant that holds platform-admin credentials; it may obtain no certificates.
inline constexpr char kPlatformTenant[] = "platform";

// How callers name a token or a SPIFFE binding: "<tenant>:<identity id>" (so RevokeToken and
// UnbindIdentity need no cross-tenant search). Not a secret.
std::string CredentialId(absl::string_view tenant, storage::IdentityId id);

struct TokenSpec {
  // Empty only for role PLATFORM_ADMIN.
  std::string tenant;
  storage::Role role = storage::Role::kHost;
  std::string description;
  // When the token stops authenticating: `ttl` from now (positive) or at `expires_at` (in the
  // future); at most one of them. Neither: never.
  std::optional<absl::Duration> ttl;
  std::optional<absl::Time> expires_at;
};

struct NewToken {
  std::string token_id;  // CredentialId: names the token for RevokeToken.
  std::string token;     // Shown once.
  std::optional<absl::Time> expires_at;
};

// A tenant's credentials that are not revoked (tokens past their expiry included), oldest first.
struct IdentityListing {
  std::string tenant;  // Its name, for CredentialId.
  std::vector<storage::Identity> identities;
};

// A tenant as GetTenant shows it.
struct TenantView {
  storage::Tenant tenant;
  // When its account key is due for rotation by policy (service/rotation_policy.h); unset
  // when it has no valid account, the policy never rotates, or Admin has no account store.
  std::optional<absl::Time> next_account_key_rotation;
};

class Admin {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::IdentityStore* identities = nullptr;
    storage::AuditLog* audit = nullptr;
    // Borrowed; optional. GetTenant reads the tenant's active account key from it to say when
    // the key is due for rotation.
    storage::AccountStore* accounts = nullptr;
    // Borrowed; optional. This replica's token cache, told at once when a token is revoked.
    TokenCache* token_cache = nullptr;
    // "Now" for token lifetimes.
    const Clock* clock = Clock::Real();
    // Used for tenants created without a directory.
    std::string default_directory_url;
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<Admin>> Create(Options options);

  // INVALID_ARGUMENT naming a bad name, pattern or directory; ALREADY_EXISTS for a taken name.
  absl::StatusOr<storage::Tenant> CreateTenant(const Caller& caller, storage::TenantSpec spec);
  absl::StatusOr<storage::Tenant> UpdateTenant(const Caller& caller, storage::TenantSpec spec);
  // NOT_FOUND for an unknown name.
  absl::StatusOr<TenantView> GetTenant(const Caller& caller, const std::string& name);
  // `page.max_results` is the caller's page size (see CheckPage).
  absl::StatusOr<storage::Page<storage::Tenant>> ListTenants(const Caller& caller,
                                                             const storage::PageRequest& page);
  // INVALID_ARGUMENT naming the field: a tenant given (or missing) against the role, a ttl that
  // is not positive, an expires_at not in the future, both of them.
  absl::StatusOr<NewToken> CreateToken(const Caller& caller, const TokenSpec& spec);
  // Revoked in the store, and in this replica's token cache at once (other replicas stop
  // trusting it within their cache's positive TTL). NOT_FOUND for an unknown id or one that
  // names a SPIFFE binding.
  absl::Status RevokeToken(const Caller& caller, const std::string& token_id);
  // The binding's CredentialId (for UnbindIdentity). ALREADY_EXISTS when the SPIFFE ID is bound.
  absl::StatusOr<std::string> BindIdentity(const Caller& caller, const std::string& spiffe_id,
                                           const std::string& tenant, storage::Role role);
  // `tenant` names the tenant; empty means the caller's own (for an ADMIN). Audited as
  // "ListIdentities". PERMISSION_DENIED for another tenant's ADMIN or a HOST.
  absl::StatusOr<IdentityListing> ListIdentities(const Caller& caller, const std::string& tenant);
  // Ends a SPIFFE binding (by BindIdentity's id): its ID no longer authenticates. Idempotent;
  // audited as "RevokeIdentity". NOT_FOUND for an unknown id or one that names a token;
  // PERMISSION_DENIED as ListIdentities.
  absl::Status UnbindIdentity(const Caller& caller, const std::string& binding_id);

  // At start-up: makes `token` (read from the operator's file) a platform-admin credential.
  // Idempotent. INVALID_ARGUMENT when the token is not a well-formed acmevault token.
  absl::Status Bootstrap(const std::string& token);

 private:
  explicit Admin(Options options) : options_(std::move(options)) {}
  absl::Status Validate(storage::TenantSpec& spec) const;
  absl::StatusOr<storage::Tenant> PlatformTenant(const storage::Actor& actor);
  // The tenant a credential of `role` belongs to: the reserved platform tenant for
  // PLATFORM_ADMIN (no name may be given), else the named tenant (never the platform one).
  absl::StatusOr<storage::Tenant> TenantForRole(const storage::Actor& actor,
                                                const std::string& tenant_name,
                                                storage::Role role);
  // The tenant whose credentials `caller` manages: any named one for PLATFORM_ADMIN, its own
  // (named or not) for ADMIN; PERMISSION_DENIED otherwise.
  absl::StatusOr<storage::Tenant> ManagedTenant(const Caller& caller,
                                                const std::string& tenant_name);
  // Parses a CredentialId (INVALID_ARGUMENT naming `field`) and finds the live identity of
  // kind `spiffe` (a binding) or not (a token) in the tenant `caller` may manage, else
  // NOT_FOUND.
  absl::StatusOr<std::pair<storage::Tenant, storage::Identity>> FindCredential(
      const Caller& caller, absl::string_view field, const std::string& id, bool spiffe);

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ADMIN_H_
