// X.509 for ACME: certificate signing requests (RFC 2986) built from identifiers or received from
// hosts and checked, and certificate chains as CAs return them (RFC 8555 §7.4.2, §11.4).
#ifndef ACMEVAULT_CRYPTO_X509_H_
#define ACMEVAULT_CRYPTO_X509_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crypto/keys.h"

namespace acmevault::crypto {

// ---- CSRs -----------------------------------------------------------------------------------

// A DER CSR for `dns_names` (each a subjectAltName dNSName; the subject is left empty, so
// nothing relies on the common name), signed by `key`. INVALID_ARGUMENT for an empty list.
absl::StatusOr<std::string> BuildCsr(const std::vector<std::string>& dns_names,
                                     const PrivateKey& key);

struct CsrInfo {
  std::string der;
  std::vector<std::string> dns_names;  // subjectAltName dNSNames, as written.
  PublicKey public_key;
};

// Parses a CSR in PEM ("CERTIFICATE REQUEST") or DER form and verifies its self-signature.
// INVALID_ARGUMENT when it is malformed, unsigned by its key, uses a key type the service does
// not accept, or names anything but DNS names.
absl::StatusOr<CsrInfo> ParseCsr(absl::string_view pem_or_der);

// Checks a host's CSR before it reaches the CA: its SANs are exactly `identifiers` (case-
// insensitive, as sets), its key is none of `forbidden_keys` (the account keys: RFC 8555 §11.1
// forbids reusing them) and its algorithm is in `allowed`. INVALID_ARGUMENT saying which.
absl::Status CheckCsr(const CsrInfo& csr, const std::vector<std::string>& identifiers,
                      const std::vector<PublicKey>& forbidden_keys,
                      const std::vector<KeyAlgorithm>& allowed);

// ---- Certificates ---------------------------------------------------------------------------

struct CertificateInfo {
  std::string der;
  std::string serial_hex;    // Lower-case hex, no leading zeros (Pebble prints it this way).
  std::string serial_bytes;  // Content octets of the DER INTEGER (ARI CertID, RFC 9773 §4.1).
  std::string authority_key_id;  // Raw keyIdentifier bytes, or "" when absent.
  absl::Time not_before;
  absl::Time not_after;
  std::vector<std::string> dns_names;
  std::string subject_cn;
  std::string issuer_cn;
  PublicKey public_key;
};

// Splits a PEM chain into DER certificates, leaf first. RFC 8555 §11.4: any block that is not
// "CERTIFICATE", text between blocks other than whitespace, or an empty chain is
// INVALID_ARGUMENT.
absl::StatusOr<std::vector<std::string>> SplitPemChain(absl::string_view pem);
// INVALID_ARGUMENT for anything but exactly one DER certificate. The last 256 certificates
// parsed are kept by their exact bytes and answered again from memory (an issuance parses its
// chain several times). Thread-safe.
absl::StatusOr<CertificateInfo> ParseCertificate(absl::string_view der);
// SplitPemChain + ParseCertificate for each.
absl::StatusOr<std::vector<CertificateInfo>> ParsePemChain(absl::string_view pem);
// DER certificates as one PEM text.
std::string ToPemChain(const std::vector<std::string>& ders);

// Verifies that `chain` (leaf first, then intermediates) leads to one of `roots_pem` at time
// `at`. FAILED_PRECONDITION with the library's reason when it does not.
absl::Status VerifyChain(const std::vector<std::string>& chain_der, absl::string_view roots_pem,
                         absl::Time at);

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_X509_H_
