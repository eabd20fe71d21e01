#include "crypto/digest.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "crypto/internal.h"

namespace acmevault::crypto {
namespace {

std::string Digest(const EVP_MD* md, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace

std::string Sha256(absl::string_view data) { return Digest(internal::Sha256Md(), data); }
std::string Sha384(absl::string_view data) { return Digest(internal::Sha384Md(), data); }

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(internal::Sha256Md(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0) RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), n);
  return out;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Base64Url(absl::string_view data) {
  std::string out;
  absl::WebSafeBase64Escape(data, &out);  // Unpadded.
  return out;
}

bool Base64UrlDecode(absl::string_view in, std::string* out) {
  for (char c : in) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  if (in.size() % 4 == 1) return false;
  return absl::WebSafeBase64Unescape(in, out);
}

}  // namespace acmevault::crypto
