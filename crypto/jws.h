// JSON Web Signatures (RFC 7515) in the flattened JSON serialization (§7.2.2), shaped for ACME
// (RFC 8555 §6.2): a protected header with "alg", "nonce", "url" and exactly one of "jwk" or
// "kid". Also the HS256 JWS of External Account Binding (§7.3.4) and a parser/verifier used by
// tests and the scripted fake server.
#ifndef ACMEVAULT_CRYPTO_JWS_H_
#define ACMEVAULT_CRYPTO_JWS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/keys.h"
#include "crypto/signer.h"
#include "nlohmann/json.hpp"

namespace acmevault::crypto {

struct JwsHeaderFields {
  std::string url;    // Required: the request URL (RFC 8555 §6.4).
  std::string nonce;  // Omitted when empty (the inner JWS of keyChange has none, §7.3.5).
  std::string kid;    // Account URL; when empty the public JWK is embedded instead.
};

// Signs `payload` (the exact bytes: "" for POST-as-GET) with `key` (in memory or in a token).
// Returns the JWS as a JSON string ready to send.
absl::StatusOr<std::string> SignJws(const Signer& key, const JwsHeaderFields& fields,
                                    absl::string_view payload);
// The same, as a JSON object (keyChange nests the inner JWS as the outer payload's object).
absl::StatusOr<nlohmann::json> SignJwsObject(const Signer& key, const JwsHeaderFields& fields,
                                             absl::string_view payload);

// The External Account Binding JWS (RFC 8555 §7.3.4): HS256 under the CA-issued MAC key,
// header {"alg":"HS256","kid":eab_kid,"url":new_account_url}, payload the account's public JWK.
// `mac_key` is the raw key (already base64url-decoded).
nlohmann::json SignEabJws(absl::string_view eab_kid, absl::string_view mac_key,
                          absl::string_view new_account_url, const PublicKey& account_key);

struct ParsedJws {
  nlohmann::json header;  // The decoded protected header.
  std::string payload;    // Decoded payload bytes.
  std::string signing_input;  // protected "." payload, as signed.
  std::string signature;      // Decoded signature bytes.
};

// Parses a flattened JSON JWS. INVALID_ARGUMENT naming what is malformed.
absl::StatusOr<ParsedJws> ParseJws(absl::string_view jws);
absl::StatusOr<ParsedJws> ParseJwsObject(const nlohmann::json& jws);
// Verifies `jws` under `key`, and that the header's "alg" matches the key. INVALID_ARGUMENT
// when it does not verify.
absl::Status VerifyJws(const ParsedJws& jws, const PublicKey& key);

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_JWS_H_
