// X.509 for ACME: certificate signing requests (RFC 2986) built from identifiers or received from
// hosts and checked, and certificate chains as CAs return them (RFC 8555 §7.4.2, §11.4).
#ifndef ACMEVAULT_CRYPTO_X509_H_
#define ACMEVAULT_CRYPTO_X509_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crypto/keys.h"
#include "crypto/revocation_reason.h"

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

// The SubjectPublicKeyInfo (DER, as PublicKey::ToDer writes it) of a CSR that ParseCsr accepts,
// with ParseCsr's errors. The last 256 CSRs built by BuildCsr or parsed by ParseCsr are
// answered from memory, by their exact DER: an issuance compares its leaf's key with its CSR's
// without reading the CSR again. Thread-safe.
absl::StatusOr<std::string> CsrKeyDer(absl::string_view csr_der);

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
  // As CrlDistributionPoints reads them.
  std::vector<std::string> crl_distribution_points;
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

// ---- Certificate revocation lists (RFC 5280 §5) ---------------------------------------------

// The http(s) URIs of a certificate's CRL distribution points (RFC 5280 §4.2.1.13: each
// point's fullName URIs; other names are skipped); none when it has the extension not.
// INVALID_ARGUMENT for bytes that are not one DER certificate.
absl::StatusOr<std::vector<std::string>> CrlDistributionPoints(absl::string_view certificate_der);

// An entry of a CRL.
struct RevokedEntry {
  absl::Time revoked_at;
  RevocationReason reason = RevocationReason::kUnspecified;  // the entry's reasonCode, if any
};

// The larger CRLs of public CAs are a few MiB; anything beyond this is refused unread.
inline constexpr size_t kMaxCrlBytes = 16 << 20;

// A CRL that was checked: its entries by serial. Holds no library objects; copyable.
class RevocationList {
 public:
  // Parses `crl_der` (at most kMaxCrlBytes), and checks it as RFC 5280 §6.3.3 asks of a
  // complete CRL: it names the issuer certificate `issuer_der` as its issuer, carries that
  // issuer's signature, and is current at `now` (thisUpdate not later, nextUpdate, when given,
  // not earlier). INVALID_ARGUMENT for bytes that are no CRL (or no issuer certificate);
  // FAILED_PRECONDITION for another issuer, a signature that does not verify, or a CRL that is
  // not current. Delta CRLs and indirect CRLs are not told apart: use the CA's own full CRLs.
  static absl::StatusOr<RevocationList> Parse(absl::string_view crl_der,
                                              absl::string_view issuer_der, absl::Time now);

  // The entry for the certificate with `serial_hex` (as CertificateInfo::serial_hex writes it);
  // nullopt when the CRL does not list it.
  std::optional<RevokedEntry> Find(absl::string_view serial_hex) const;
  absl::Time this_update() const { return this_update_; }
  std::optional<absl::Time> next_update() const { return next_update_; }
  size_t size() const { return revoked_.size(); }

 private:
  absl::Time this_update_;
  std::optional<absl::Time> next_update_;
  std::map<std::string, RevokedEntry> revoked_;
};

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_X509_H_
