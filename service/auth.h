// Who is calling, and may they do this. Identity comes only from the credential: a bearer token
// ("authorization: Bearer avt_...", stored as its SHA-256) or the SPIFFE ID in an mTLS client
// certificate's URI SAN, each mapped to a tenant and role in the identity store. Never from a
// request field. Thread-safe.
#ifndef ACMEVAULT_SERVICE_AUTH_H_
#define ACMEVAULT_SERVICE_AUTH_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/token_cache.h"
#include "storage/store.h"

namespace acmevault::service {

// An authenticated caller.
struct Caller {
  storage::Identity identity;
  // Names the caller in audit rows and logs without any secret: "spiffe://..." or "token:<id>".
  std::string name;

  storage::Scope ScopeFor(absl::string_view rpc) const {
    return {identity.tenant, {name, std::string(rpc)}};
  }
};

// What the transport tells us about a call.
struct Credentials {
  std::string authorization;  // The "authorization" metadata value, if any.
  std::string spiffe_id;      // From a verified client certificate, if any.
  // gRPC's peer, e.g. "ipv4:192.0.2.7:40001": unknown tokens are budgeted per address (the
  // token cache's unknown_per_peer_*). Empty: not budgeted (in-process callers).
  std::string peer;
};

// A new bearer token: "avt_" and 43 base64url characters (32 random bytes).
std::string NewBearerToken();
// True for "avt_" followed by 43 base64url characters.
bool WellFormedToken(absl::string_view token);
// The value stored for a token: SHA-256 of its text, 32 raw bytes.
std::string TokenDigest(absl::string_view token);

class Authenticator {
 public:
  struct Options {
    storage::IdentityStore* identities = nullptr;  // Borrowed; required.
    // Borrowed; optional. Without it every token costs a store lookup. SPIFFE IDs are never
    // cached: an unbinding takes effect at once on every replica.
    TokenCache* token_cache = nullptr;
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(Options options);

  // UNAUTHENTICATED when no credential is presented, the token is malformed, unknown, revoked
  // or expired (one message for all: no oracle for which tokens exist), or the SPIFFE ID is not
  // bound. A bearer token wins over a client certificate. RESOURCE_EXHAUSTED when the peer's
  // address sent more unknown tokens than the token cache's budget allows (no lookup is made).
  absl::StatusOr<Caller> Authenticate(const Credentials& credentials) const;

 private:
  explicit Authenticator(Options options) : options_(options) {}

  const Options options_;
};

// PERMISSION_DENIED unless the caller has `role` (ADMIN also satisfies HOST; PLATFORM_ADMIN
// satisfies only itself, keeping platform administration apart from tenants' keys).
absl::Status RequireRole(const Caller& caller, storage::Role role);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_AUTH_H_
