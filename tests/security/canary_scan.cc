#include "tests/security/canary_scan.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "crypto/testing/key_material.h"

namespace acmevault::security {
namespace {

uint64_t Prefix(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Whole 64-character base64 lines of a PEM body but the first.
void AddPemLines(absl::string_view pem, const std::string& name,
                 std::vector<std::pair<std::string, std::string>>& out) {
  int body_line = 0;
  for (absl::string_view line : absl::StrSplit(pem, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '-') continue;
    if (++body_line > 1 && line.size() == 64) out.emplace_back(name, std::string(line));
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> CanaryScanner::Encodings(
    const crypto::PrivateKey& key, absl::string_view pem) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string der(key.ToPkcs8Der().view());
  out.emplace_back("PKCS#8 DER", der);
  out.emplace_back("base64 of DER", absl::Base64Escape(der));
  out.emplace_back("base64url of DER", absl::WebSafeBase64Escape(der));
  out.emplace_back("hex of DER", absl::BytesToHexString(der));
  AddPemLines(key.ToPkcs8Pem().view(), "PKCS#8 PEM line", out);
  if (!pem.empty()) AddPemLines(pem, "returned PEM line", out);
  for (const auto& [name, value] : crypto::testing::SecretComponents(key)) {
    out.emplace_back(name + " raw", value);
    out.emplace_back(name + " hex", absl::BytesToHexString(value));
    out.emplace_back(name + " HEX", absl::AsciiStrToUpper(absl::BytesToHexString(value)));
    out.emplace_back(name + " base64", absl::Base64Escape(value));
    out.emplace_back("JWK " + name + " (base64url)", absl::WebSafeBase64Escape(value));
  }
  return out;
}

void CanaryScanner::AddKey(const std::string& label, const crypto::PrivateKey& key,
                           absl::string_view pem) {
  ++keys_;
  for (auto& [encoding, bytes] : Encodings(key, pem)) {
    if (bytes.size() <= kPrefix) continue;  // Never so for real keys; kept out of the index.
    by_prefix_[Prefix(bytes.data())].push_back(needles_.size());
    needles_.push_back({label, encoding, std::move(bytes)});
  }
}

std::vector<CanaryScanner::Finding> CanaryScanner::Scan(const std::string& source,
                                                        absl::string_view text) const {
  std::vector<Finding> found;
  if (text.size() <= kPrefix) return found;
  for (size_t i = 0; i + kPrefix <= text.size(); ++i) {
    auto it = by_prefix_.find(Prefix(text.data() + i));
    if (it == by_prefix_.end()) continue;
    for (size_t n : it->second) {
      const Needle& needle = needles_[n];
      if (text.substr(i, needle.bytes.size()) == needle.bytes) {
        found.push_back({source, needle.key, needle.encoding, i});
      }
    }
  }
  return found;
}

}  // namespace acmevault::security
