#include "crypto/aead.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdint>
#include <memory>

#include "absl/strings/str_cat.h"
#include "crypto/internal.h"

namespace acmevault::crypto {
namespace {

using CipherCtxPtr =
    std::unique_ptr<EVP_CIPHER_CTX, internal::Deleter<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>>;

const uint8_t* Bytes(absl::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }
uint8_t* Bytes(std::string& s) { return reinterpret_cast<uint8_t*>(s.data()); }

absl::Status CheckKey(absl::string_view key) {
  if (key.size() != kAeadKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("AES-256-GCM key is ", key.size(), " bytes, want ", kAeadKeySize));
  }
  return absl::OkStatus();
}

// Sets up `ctx` for AES-256-GCM with `key` and a 12-byte `nonce`, then feeds `aad`.
bool Init(EVP_CIPHER_CTX* ctx, bool encrypt, absl::string_view key, absl::string_view nonce,
          absl::string_view aad) {
  auto init = encrypt ? EVP_EncryptInit_ex : EVP_DecryptInit_ex;
  if (init(ctx, internal::Aes256GcmCipher(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kAeadNonceSize), nullptr) !=
          1 ||
      init(ctx, nullptr, nullptr, Bytes(key), Bytes(nonce)) != 1) {
    return false;
  }
  if (aad.empty()) return true;
  int len = 0;
  auto update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate;
  return update(ctx, nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) == 1;
}

}  // namespace

absl::StatusOr<SecretBytes> RandomSecret(size_t size) {
  std::string out(size, '\0');
  if (size > 0 && RAND_bytes(Bytes(out), size) != 1) {
    return internal::LibraryError(absl::StatusCode::kInternal, "random generator failed");
  }
  return SecretBytes(std::move(out));
}

absl::StatusOr<std::string> Seal(absl::string_view key, absl::string_view plaintext,
                                 absl::string_view aad) {
  std::string nonce(kAeadNonceSize, '\0');
  if (RAND_bytes(Bytes(nonce), nonce.size()) != 1) {
    return internal::LibraryError(absl::StatusCode::kInternal, "random generator failed");
  }
  return SealWithNonce(key, nonce, plaintext, aad);
}

absl::StatusOr<std::string> SealWithNonce(absl::string_view key, absl::string_view nonce,
                                          absl::string_view plaintext, absl::string_view aad) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (nonce.size() != kAeadNonceSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("AES-GCM nonce is ", nonce.size(), " bytes, want ", kAeadNonceSize));
  }
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr || !Init(ctx.get(), /*encrypt=*/true, key, nonce, aad)) {
    return internal::LibraryError(absl::StatusCode::kInternal, "initialising AES-256-GCM");
  }
  std::string out(kAeadNonceSize + plaintext.size() + kAeadTagSize, '\0');
  out.replace(0, kAeadNonceSize, nonce.data(), nonce.size());
  uint8_t* body = Bytes(out) + kAeadNonceSize;
  int len = 0;
  if (!plaintext.empty() && EVP_EncryptUpdate(ctx.get(), body, &len, Bytes(plaintext),
                                              static_cast<int>(plaintext.size())) != 1) {
    return internal::LibraryError(absl::StatusCode::kInternal, "AES-256-GCM encryption");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), body + len, &final_len) != 1 ||
      static_cast<size_t>(len + final_len) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAeadTagSize),
                          body + plaintext.size()) != 1) {
    return internal::LibraryError(absl::StatusCode::kInternal, "AES-256-GCM encryption");
  }
  return out;
}

absl::StatusOr<SecretBytes> Open(absl::string_view key, absl::string_view sealed,
                                 absl::string_view aad) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  const absl::Status not_authentic =
      absl::InvalidArgumentError("sealed data does not authenticate");
  if (sealed.size() < kAeadOverhead) return not_authentic;
  absl::string_view nonce = sealed.substr(0, kAeadNonceSize);
  absl::string_view body = sealed.substr(kAeadNonceSize, sealed.size() - kAeadOverhead);
  // GCM's tag is an input to the final check; copy it, as the API takes a non-const pointer.
  std::string tag(sealed.substr(sealed.size() - kAeadTagSize));

  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr || !Init(ctx.get(), /*encrypt=*/false, key, nonce, aad)) {
    return internal::LibraryError(absl::StatusCode::kInternal, "initialising AES-256-GCM");
  }
  std::string plaintext(body.size(), '\0');
  // On failure no partial plaintext survives: wipe it before the buffer is released.
  auto reject = [&plaintext, &not_authentic]() {
    SecureWipe(plaintext.data(), plaintext.size());
    ERR_clear_error();
    return not_authentic;
  };
  int len = 0;
  if (!body.empty() && EVP_DecryptUpdate(ctx.get(), Bytes(plaintext), &len, Bytes(body),
                                         static_cast<int>(body.size())) != 1) {
    return reject();
  }
  int final_len = 0;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAeadTagSize),
                          Bytes(tag)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), Bytes(plaintext) + len, &final_len) != 1 ||
      static_cast<size_t>(len + final_len) != body.size()) {
    return reject();
  }
  SecretBytes result(std::move(plaintext));
  // A short string lives inline and is copied, not moved: clear what the move left behind.
  plaintext.resize(plaintext.capacity());
  SecureWipe(plaintext.data(), plaintext.size());
  return result;
}

}  // namespace acmevault::crypto
