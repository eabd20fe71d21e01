#include "storage/testing/key_material.h"

#include <stdexcept>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace acmevault::storage::testing {
namespace {

// One DER TLV at the front of `in`, which is advanced past it.
struct Tlv {
  unsigned char tag;
  absl::string_view value;
};

Tlv Next(absl::string_view& in) {
  if (in.size() < 2) throw std::runtime_error("truncated DER");
  Tlv t{static_cast<unsigned char>(in[0]), {}};
  size_t len = static_cast<unsigned char>(in[1]);
  size_t header = 2;
  if (len & 0x80) {
    size_t n = len & 0x7f;
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<unsigned char>(in[2 + i]);
    header += n;
  }
  if (in.size() < header + len) throw std::runtime_error("truncated DER");
  t.value = in.substr(header, len);
  in.remove_prefix(header + len);
  return t;
}

std::string StripLeadingZeros(absl::string_view v) {
  while (v.size() > 1 && v[0] == '\0') v.remove_prefix(1);
  return std::string(v);
}

// PKCS#8: SEQUENCE { version, AlgorithmIdentifier, OCTET STRING privateKey, ... }. EC keys hold
// ECPrivateKey { version, OCTET STRING d, ... }; RSA keys RSAPrivateKey { version, n, e, d, ...}.
std::string PrivateValue(absl::string_view der, bool ec) {
  absl::string_view outer = Next(der).value;
  Next(outer);                                  // version
  Next(outer);                                  // algorithm
  absl::string_view inner = Next(outer).value;  // privateKey OCTET STRING contents
  absl::string_view seq = Next(inner).value;
  Next(seq);  // version
  if (ec) return std::string(Next(seq).value);
  Next(seq);  // n
  Next(seq);  // e
  return StripLeadingZeros(Next(seq).value);
}

}  // namespace

KeyMaterial Describe(const crypto::PrivateKey& key) {
  KeyMaterial m;
  m.der = std::string(key.ToPkcs8Der().view());
  m.pem = std::string(key.ToPkcs8Pem().view());
  bool ec = key.algorithm() == crypto::KeyAlgorithm::kEcdsaP256 ||
            key.algorithm() == crypto::KeyAlgorithm::kEcdsaP384;
  m.d = PrivateValue(m.der, ec);
  m.jwk_d = absl::WebSafeBase64Escape(m.d);
  m.markers.push_back(m.der);
  m.markers.push_back(absl::BytesToHexString(m.der));
  m.markers.push_back(absl::BytesToHexString(m.d));
  m.markers.push_back(m.jwk_d);
  for (absl::string_view line : absl::StrSplit(m.pem, '\n')) {
    if (!line.empty() && line.find("-----") == absl::string_view::npos) {
      m.markers.emplace_back(line);
    }
  }
  return m;
}

std::vector<std::string> FindLeaks(const std::string& text, const std::vector<KeyMaterial>& keys) {
  std::vector<std::string> found;
  for (size_t k = 0; k < keys.size(); ++k) {
    for (size_t i = 0; i < keys[k].markers.size(); ++i) {
      // Short PEM tail lines could match by chance; every other marker is long.
      if (keys[k].markers[i].size() < 16) continue;
      if (text.find(keys[k].markers[i]) != std::string::npos) {
        found.push_back(absl::StrCat("key ", k, " marker ", i));
      }
    }
  }
  return found;
}

}  // namespace acmevault::storage::testing
