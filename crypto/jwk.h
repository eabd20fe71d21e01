// JSON Web Keys (RFC 7517) of public keys, their thumbprints (RFC 7638), and the values ACME
// challenges derive from them (RFC 8555 §8.1, §8.3, §8.4; RFC 8737 §3).
#ifndef ACMEVAULT_CRYPTO_JWK_H_
#define ACMEVAULT_CRYPTO_JWK_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/keys.h"
#include "nlohmann/json.hpp"

namespace acmevault::crypto {

// The public JWK: {"crv","kty":"EC","x","y"} or {"e","kty":"RSA","n"}; never private members.
nlohmann::json PublicJwk(const PublicKey& key);
// RFC 7638 §3: the required members only, in lexicographic order, with no whitespace.
std::string CanonicalJwk(const PublicKey& key);
// base64url(SHA-256(CanonicalJwk(key))).
std::string Thumbprint(const PublicKey& key);

// Parses a public JWK (EC P-256/P-384 or RSA). INVALID_ARGUMENT naming the bad member.
// Private members ("d", ...) are rejected: a JWK reaching this function must be public.
absl::StatusOr<PublicKey> PublicKeyFromJwk(const nlohmann::json& jwk);

// token "." thumbprint (RFC 8555 §8.1).
std::string KeyAuthorization(absl::string_view token, const PublicKey& account_key);
// The TXT record value for dns-01: base64url(SHA-256(key authorization)) (§8.4).
std::string Dns01TxtValue(absl::string_view key_authorization);
// The acmeIdentifier extension value for tls-alpn-01: SHA-256(key authorization), 32 raw bytes
// (RFC 8737 §3).
std::string TlsAlpn01Digest(absl::string_view key_authorization);

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_JWK_H_
