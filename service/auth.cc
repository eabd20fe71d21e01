#include "service/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

constexpr absl::string_view kTokenPrefix = "avt_";
constexpr size_t kTokenBody = 43;  // base64url of 32 bytes, unpadded.

absl::Status Unauthenticated() {
  // One message for every failure: no oracle for which tokens exist.
  return absl::UnauthenticatedError("missing or invalid credentials");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("Authenticator", {{"identities", options.identities}}));
  return std::unique_ptr<Authenticator>(new Authenticator(options));
}

bool WellFormedToken(absl::string_view token) {
  if (!absl::ConsumePrefix(&token, kTokenPrefix) || token.size() != kTokenBody) return false;
  std::string ignored;
  return crypto::Base64UrlDecode(token, &ignored);
}

std::string NewBearerToken() {
  return absl::StrCat(kTokenPrefix, crypto::Base64Url(crypto::RandomBytes(32)));
}

std::string TokenDigest(absl::string_view token) { return crypto::Sha256(token); }

absl::StatusOr<Caller> Authenticator::Authenticate(const Credentials& credentials) const {
  absl::string_view auth = absl::StripAsciiWhitespace(credentials.authorization);
  if (!auth.empty()) {
    if (!absl::ConsumePrefix(&auth, "Bearer ") && !absl::ConsumePrefix(&auth, "bearer ")) {
      return Unauthenticated();
    }
    auth = absl::StripAsciiWhitespace(auth);
    if (!WellFormedToken(auth)) return Unauthenticated();
    const std::string digest = TokenDigest(auth);
    auto lookup = [&] { return options_.identities->AuthenticateToken(digest); };
    auto identity = options_.token_cache != nullptr
                        ? options_.token_cache->Get(digest, credentials.peer, lookup)
                        : lookup();
    if (!identity.ok()) {
      if (absl::IsNotFound(identity.status())) return Unauthenticated();
      return identity.status();  // UNAVAILABLE etc.: the caller should retry.
    }
    return Caller{*identity, absl::StrCat("token:", identity->id)};
  }
  if (!credentials.spiffe_id.empty()) {
    if (!absl::StartsWith(credentials.spiffe_id, "spiffe://")) return Unauthenticated();
    auto identity = options_.identities->AuthenticateSpiffe(credentials.spiffe_id);
    if (!identity.ok()) {
      if (absl::IsNotFound(identity.status())) return Unauthenticated();
      return identity.status();
    }
    return Caller{*identity, credentials.spiffe_id};
  }
  return Unauthenticated();
}

absl::Status RequireRole(const Caller& caller, storage::Role role) {
  storage::Role have = caller.identity.role;
  bool ok = have == role || (role == storage::Role::kHost && have == storage::Role::kAdmin);
  if (ok) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("this call needs role ", storage::RoleName(role),
                                                  "; the caller has ",
                                                  storage::RoleName(have)));
}

}  // namespace acmevault::service
