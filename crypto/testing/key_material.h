// Test-only: the secret components of a private key, as the big-endian bytes a JWK would
// base64url-encode (RFC 7518 §6.2.2.1 "d" for EC; §6.3.2 "d", "p", "q", "dp", "dq", "qi" for
// RSA). For tests that search output for key material (tests/security/secrecy_scan_test); no
// product code may depend on it.
#ifndef ACMEVAULT_CRYPTO_TESTING_KEY_MATERIAL_H_
#define ACMEVAULT_CRYPTO_TESTING_KEY_MATERIAL_H_

#include <string>
#include <utility>
#include <vector>

#include "crypto/keys.h"

namespace acmevault::crypto::testing {

// (JWK member name, raw value) for every secret component of `key`: one ("d") for an EC key,
// six for an RSA key. An EC "d" is padded to the curve's size, as in a JWK.
std::vector<std::pair<std::string, std::string>> SecretComponents(const PrivateKey& key);

}  // namespace acmevault::crypto::testing

#endif  // ACMEVAULT_CRYPTO_TESTING_KEY_MATERIAL_H_
