// DNS identifiers: validation and normalisation before any ACME request, and the per-tenant
// allow-list that keeps tenant A from obtaining tenant B's names (the service controls DNS and
// HTTP-01 answers for every tenant, so this check is the boundary). Stateless; thread-safe.
#ifndef ACMEVAULT_SERVICE_IDENTIFIERS_H_
#define ACMEVAULT_SERVICE_IDENTIFIERS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace acmevault::service {

// Validates one DNS name and returns its canonical form: lower-case A-labels (Unicode input is
// converted with IDNA 2008, non-transitional), one trailing dot removed. Rules: at most 253
// octets; at least two labels; labels of 1 to 63 letters, digits and hyphens, not starting or
// ending with a hyphen, no "--" in positions 3-4 except valid "xn--" A-labels; a top-level label
// that is not all digits (so no IP addresses); a wildcard only as the whole leftmost label with
// at least two labels after it ("*.example.com"). INVALID_ARGUMENT naming `field` and the rule.
absl::StatusOr<std::string> NormalizeDnsName(absl::string_view name, absl::string_view field);

// Normalises a request's identifiers: each as above, 1 to `max` of them, no duplicates after
// normalisation. The result is sorted, so equal sets compare equal.
absl::StatusOr<std::vector<std::string>> NormalizeDnsNames(const std::vector<std::string>& names,
                                                           absl::string_view field,
                                                           size_t max = 100);

// A certificate serial as a caller may write it: hex in either case, with colons between
// octets (`openssl x509 -text`) or without (`openssl x509 -serial`), leading zeros or not.
// Returns the stored form: lower-case hex without leading zeros ("0" for zero).
// INVALID_ARGUMENT naming `field` when empty, too long (more than 20 octets, RFC 5280 §4.1.2.2)
// or not hex.
absl::StatusOr<std::string> NormalizeSerial(absl::string_view serial, absl::string_view field);

// A tenant's allowed identifiers. "example.com" allows exactly that name; "*.example.com" allows
// every name strictly below example.com, at any depth, including wildcard names.
class AllowList {
 public:
  // INVALID_ARGUMENT naming the bad pattern.
  static absl::StatusOr<AllowList> Create(const std::vector<std::string>& patterns);

  // `name` must already be normalised.
  bool Allows(absl::string_view name) const;
  // OK, or PERMISSION_DENIED naming the first name outside the list.
  absl::Status CheckAll(const std::vector<std::string>& names) const;

  const std::vector<std::string>& exact() const { return exact_; }
  const std::vector<std::string>& suffixes() const { return suffixes_; }

 private:
  std::vector<std::string> exact_;     // Canonical names.
  std::vector<std::string> suffixes_;  // ".example.com" for "*.example.com".
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_IDENTIFIERS_H_
