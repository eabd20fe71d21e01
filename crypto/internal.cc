#include "crypto/internal.h"

#include "absl/strings/str_cat.h"

namespace acmevault::crypto {

namespace internal {

BioPtr MemoryBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int): library signature.
  return std::string(data, len > 0 ? static_cast<size_t>(len) : 0);
}

absl::Status LibraryError(absl::StatusCode code, absl::string_view what) {
  unsigned long err = ERR_get_error();  // NOLINT(runtime/int): library signature.
  ERR_clear_error();
  if (err == 0) return absl::Status(code, what);
  const char* reason = ERR_reason_error_string(err);
  return absl::Status(code, absl::StrCat(what, ": ", reason != nullptr ? reason : "unknown"));
}

absl::StatusOr<EcdsaSigPtr> EcdsaSigOfRaw(absl::string_view raw, size_t half) {
  if (raw.size() != 2 * half) {
    return absl::InvalidArgumentError(
        absl::StrCat("ECDSA signature is ", raw.size(), " bytes, want ", 2 * half));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data());
  BignumPtr r(BN_bin2bn(bytes, static_cast<int>(half), nullptr));
  BignumPtr s(BN_bin2bn(bytes + half, static_cast<int>(half), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (r == nullptr || s == nullptr || sig == nullptr ||
      ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "building ECDSA signature");
  }
  r.release();  // Owned by sig now.
  s.release();
  return sig;
}

EcKeyPtr NewEcKey(int nid) {
#if defined(OPENSSL_IS_BORINGSSL)
  return EcKeyPtr(EC_KEY_new_by_curve_name(nid));  // BoringSSL's named groups are static.
#else
  // Built once, never freed, and only read after: EC_KEY_set_group copies it into the key.
  static const EC_GROUP* const p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  static const EC_GROUP* const p384 = EC_GROUP_new_by_curve_name(NID_secp384r1);
  const EC_GROUP* group = nid == NID_X9_62_prime256v1 ? p256
                          : nid == NID_secp384r1      ? p384
                                                      : nullptr;
  if (group == nullptr) return EcKeyPtr(EC_KEY_new_by_curve_name(nid));
  EcKeyPtr key(EC_KEY_new());
  if (key == nullptr || EC_KEY_set_group(key.get(), group) != 1) return nullptr;
  return key;
#endif
}

#if defined(OPENSSL_IS_BORINGSSL)
const EVP_MD* Sha256Md() { return EVP_sha256(); }
const EVP_MD* Sha384Md() { return EVP_sha384(); }
const EVP_CIPHER* Aes256GcmCipher() { return EVP_aes_256_gcm(); }
#else
// Fetched once and never freed; if a fetch fails, the implicit object fetches as before.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  return md != nullptr ? md : EVP_sha256();
}
const EVP_MD* Sha384Md() {
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA2-384", nullptr);
  return md != nullptr ? md : EVP_sha384();
}
const EVP_CIPHER* Aes256GcmCipher() {
  static const EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher != nullptr ? cipher : EVP_aes_256_gcm();
}
#endif

}  // namespace internal
}  // namespace acmevault::crypto
