// AES-256-GCM authenticated encryption, the primitive under the vault's envelope encryption
// (storage/envelope.h): a record's private key is sealed under a fresh data key, and the data
// key under a key-encryption key.
//
// Sealed format: nonce (12 bytes) || ciphertext (as long as the plaintext) || tag (16 bytes).
// Seal draws the nonce from the library's CSPRNG. A 96-bit random nonce is safe for about 2^32
// messages under one key (NIST SP 800-38D §8.3); the vault seals once per data key and wraps one
// data key per record under a key-encryption key, far below that bound.
//
// All functions are thread-safe. They build against OpenSSL 3 and BoringSSL (targets `aead` and
// `aead_boringssl`).
#ifndef ACMEVAULT_CRYPTO_AEAD_H_
#define ACMEVAULT_CRYPTO_AEAD_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/secret.h"

namespace acmevault::crypto {

inline constexpr size_t kAeadKeySize = 32;
inline constexpr size_t kAeadNonceSize = 12;
inline constexpr size_t kAeadTagSize = 16;
// Bytes Seal adds to a plaintext.
inline constexpr size_t kAeadOverhead = kAeadNonceSize + kAeadTagSize;

// `size` bytes from the library's CSPRNG, e.g. a fresh data key (kAeadKeySize). INTERNAL if the
// generator fails.
absl::StatusOr<SecretBytes> RandomSecret(size_t size);

// Encrypts and authenticates `plaintext` and authenticates `aad` under the 32-byte `key`, with a
// fresh random nonce. Returns nonce || ciphertext || tag. INVALID_ARGUMENT if the key is not 32
// bytes (the message gives the size only).
absl::StatusOr<std::string> Seal(absl::string_view key, absl::string_view plaintext,
                                 absl::string_view aad);

// As Seal, with the caller's 12-byte `nonce`. For known-answer tests only: a nonce used twice
// under one key reveals the XOR of the plaintexts and lets an attacker forge tags.
absl::StatusOr<std::string> SealWithNonce(absl::string_view key, absl::string_view nonce,
                                          absl::string_view plaintext, absl::string_view aad);

// Checks and decrypts the output of Seal. Any difference in key, nonce, ciphertext, tag or `aad`
// gives INVALID_ARGUMENT "sealed data does not authenticate", with no further detail and no
// partial plaintext; a wrong key size gives INVALID_ARGUMENT naming the size.
absl::StatusOr<SecretBytes> Open(absl::string_view key, absl::string_view sealed,
                                 absl::string_view aad);

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_AEAD_H_
