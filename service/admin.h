// Platform administration: tenants, bearer tokens and SPIFFE bindings (AdminService). Every
// operation needs role PLATFORM_ADMIN. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ADMIN_H_
#define ACMEVAULT_SERVICE_ADMIN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/auth.h"
#include "storage/store.h"

namespace acmevault::service {

// The tenant that holds platform-admin credentials; it may obtain no certificates.
inline constexpr char kPlatformTenant[] = "platform";

struct NewToken {
  std::string token_id;  // "<tenant>:<identity id>": names the token for RevokeToken.
  std::string token;     // Shown once.
};

class Admin {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::IdentityStore* identities = nullptr;
    // Used for tenants created without a directory.
    std::string default_directory_url;
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<Admin>> Create(Options options);

  // INVALID_ARGUMENT naming a bad name, pattern or directory; ALREADY_EXISTS for a taken name.
  absl::StatusOr<storage::Tenant> CreateTenant(const Caller& caller, storage::TenantSpec spec);
  absl::StatusOr<storage::Tenant> UpdateTenant(const Caller& caller, storage::TenantSpec spec);
  absl::StatusOr<storage::Tenant> GetTenant(const Caller& caller, const std::string& name);
  // `page.max_results` is the caller's page size (see CheckPage).
  absl::StatusOr<storage::Page<storage::Tenant>> ListTenants(const Caller& caller,
                                                             const storage::PageRequest& page);
  // `tenant` may be empty only for role PLATFORM_ADMIN.
  absl::StatusOr<NewToken> CreateToken(const Caller& caller, const std::string& tenant,
                                       storage::Role role, const std::string& description);
  absl::Status RevokeToken(const Caller& caller, const std::string& token_id);
  absl::Status BindIdentity(const Caller& caller, const std::string& spiffe_id,
                            const std::string& tenant, storage::Role role);

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

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ADMIN_H_
