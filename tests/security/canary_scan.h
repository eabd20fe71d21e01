// A scanner for private-key material in text that must never hold it (RPC responses, log
// output, audit rows, a database dump): each key registered is searched for in every encoding
// it could leak in. Not thread-safe for AddKey; Scan is const.
#ifndef ACMEVAULT_TESTS_SECURITY_CANARY_SCAN_H_
#define ACMEVAULT_TESTS_SECURITY_CANARY_SCAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "crypto/keys.h"

namespace acmevault::security {

class CanaryScanner {
 public:
  // One hit: which key (its label), in which encoding, where.
  struct Finding {
    std::string source, key, encoding;
    size_t offset = 0;
  };

  // Registers `key` under `label` (a name for reports; never the key) in these encodings:
  // PKCS#8 DER raw, base64, base64url and hex (as PostgreSQL prints bytea); every whole
  // 64-character body line of its PKCS#8 PEM and of `pem` (the PEM the service returned, when
  // in another form) but the first, which is the same for every key of a type; and each secret
  // component (JWK "d"; RSA's "p", "q", "dp", "dq", "qi") raw, in hex (both cases), base64 and
  // base64url.
  void AddKey(const std::string& label, const crypto::PrivateKey& key, absl::string_view pem = "");

  // Every occurrence of every registered needle in `text`, named `source` in the findings.
  std::vector<Finding> Scan(const std::string& source, absl::string_view text) const;

  size_t keys() const { return keys_; }
  size_t needles() const { return needles_.size(); }

  // The encodings of one key the scanner searches for, by encoding name (for positive
  // controls that plant one).
  static std::vector<std::pair<std::string, std::string>> Encodings(const crypto::PrivateKey& key,
                                                                    absl::string_view pem = "");

 private:
  struct Needle {
    std::string key, encoding, bytes;
  };
  static constexpr size_t kPrefix = 8;  // Every needle is longer; the index is by this prefix.
  std::vector<Needle> needles_;
  absl::flat_hash_map<uint64_t, std::vector<size_t>> by_prefix_;
  size_t keys_ = 0;
};

}  // namespace acmevault::security

#endif  // ACMEVAULT_TESTS_SECURITY_CANARY_SCAN_H_
