// Signer: the seam every JWS signature goes through. Two implementations: crypto::PrivateKey (a
// key in process memory, sealed in the vault at rest) and the PKCS#11 signer of crypto/pkcs11.h
// (a key that never leaves its token). Both produce the same bytes for the same algorithm: R||S
// (each half left-padded to the curve size) for ES256 and ES384, PKCS#1 v1.5 for RS256
// (RFC 7518 §3), so a JWS made by either verifies with PublicKey::Verify.
#ifndef ACMEVAULT_CRYPTO_SIGNER_H_
#define ACMEVAULT_CRYPTO_SIGNER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace acmevault::crypto {

class PublicKey;           // crypto/keys.h
enum class KeyAlgorithm;   // crypto/keys.h

// Implementations are thread-safe for concurrent Sign calls.
class Signer {
 public:
  virtual ~Signer() = default;

  // The public half, from which the JWK and thumbprint (crypto/jwk.h) are computed. For a token
  // key it is the one the token reports.
  virtual const PublicKey& public_key() const = 0;
  KeyAlgorithm algorithm() const;  // public_key().algorithm()

  // Signs `data` with SHA-256 (P-256, RSA) or SHA-384 (P-384) and returns the JWS signature.
  // A token key that is gone is FAILED_PRECONDITION naming it; a token that cannot be reached
  // is UNAVAILABLE. No error carries key material.
  virtual absl::StatusOr<std::string> Sign(absl::string_view data) const = 0;
};

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_SIGNER_H_
