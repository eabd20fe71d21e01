// RFC 5280 §5.3.1 CRLReason codes: what ACME revocation sends (RFC 8555 §7.6), what the vault
// records for a revoked certificate, and what the API reports. Value 7 is unused by RFC 5280.
#ifndef ACMEVAULT_CRYPTO_REVOCATION_REASON_H_
#define ACMEVAULT_CRYPTO_REVOCATION_REASON_H_

#include <optional>

namespace acmevault::crypto {

enum class RevocationReason : int {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kCaCompromise = 2,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
  kCertificateHold = 6,
  kRemoveFromCrl = 8,
  kPrivilegeWithdrawn = 9,
  kAaCompromise = 10,
};

// The reason with RFC 5280 code `code`, or nullopt when no reason has that code.
inline std::optional<RevocationReason> RevocationReasonFromCode(int code) {
  if (code < 0 || code > 10 || code == 7) return std::nullopt;
  return static_cast<RevocationReason>(code);
}

inline int RevocationReasonCode(RevocationReason reason) { return static_cast<int>(reason); }

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_REVOCATION_REASON_H_
