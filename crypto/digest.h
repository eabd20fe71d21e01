// Hashes, HMAC and randomness: the primitives JWK thumbprints, key authorizations, External
// Account Binding and nonces need. Stateless and thread-safe.
#ifndef ACMEVAULT_CRYPTO_DIGEST_H_
#define ACMEVAULT_CRYPTO_DIGEST_H_

#include <string>

#include "absl/strings/string_view.h"

namespace acmevault::crypto {

// Raw digests (32 and 48 bytes).
std::string Sha256(absl::string_view data);
std::string Sha384(absl::string_view data);
// HMAC-SHA-256 (RFC 2104) of `data` under `key`, 32 raw bytes.
std::string HmacSha256(absl::string_view key, absl::string_view data);
// `n` bytes from the library's CSPRNG.
std::string RandomBytes(size_t n);
// Equality in time independent of where the inputs differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// base64url without padding (RFC 7515 §2, "Base64url Encoding"), and its strict inverse:
// decoding fails on padding, whitespace or characters outside the URL-safe alphabet.
std::string Base64Url(absl::string_view data);
bool Base64UrlDecode(absl::string_view in, std::string* out);

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_DIGEST_H_
