// KeyEncryptionKey: what the vault wraps its data keys under (storage/envelope.h). Two
// implementations: a 32-byte AES key in process memory (MemoryKek, from a KEK file), and an AES
// key inside a PKCS#11 token (crypto/pkcs11.h), which never leaves it. Both wrap with
// AES-256-GCM into the same format, nonce (12) || ciphertext || tag (16), so a record's
// wrapped data key is 60 bytes whichever kind wrapped it, and KEK rotation re-wraps between
// kinds like between files.
#ifndef ACMEVAULT_CRYPTO_KEK_H_
#define ACMEVAULT_CRYPTO_KEK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/secret.h"

namespace acmevault::crypto {

// Implementations are immutable and thread-safe.
class KeyEncryptionKey {
 public:
  virtual ~KeyEncryptionKey() = default;

  // Encrypts and authenticates `data_key`, and authenticates `aad`, under this key with a fresh
  // random nonce. A token key that cannot be reached is UNAVAILABLE; one that is gone is
  // FAILED_PRECONDITION naming it.
  virtual absl::StatusOr<std::string> Wrap(absl::string_view data_key,
                                           absl::string_view aad) const = 0;
  // The inverse. INVALID_ARGUMENT "sealed data does not authenticate" when any byte of `wrapped`
  // or `aad` differs (no partial plaintext); otherwise Wrap's errors.
  virtual absl::StatusOr<SecretBytes> Unwrap(absl::string_view wrapped,
                                             absl::string_view aad) const = 0;
};

// A KEK held in process memory: crypto::Seal / crypto::Open (aead.h) under `key`.
// INVALID_ARGUMENT naming the size if `key` is not kAeadKeySize bytes.
absl::StatusOr<std::unique_ptr<KeyEncryptionKey>> MemoryKek(SecretBytes key);

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_KEK_H_
