// Keys that never leave hardware: a PKCS#11 token (an HSM, a cloud KMS's PKCS#11 library,
// SoftHSM2) holding account key pairs, which sign through the Signer seam, and AES keys that
// wrap the vault's data keys (KeyEncryptionKey).
//
// The module is a shared library loaded with dlopen at run time (Pkcs11Options::module_path),
// so the binary links no vendor library. Every key this class makes is CKA_TOKEN, CKA_PRIVATE,
// CKA_SENSITIVE and not CKA_EXTRACTABLE: the token never hands out its value, wrapped or not.
//
// Signatures: ES256/ES384 hash in the process (SHA-256/384) and sign the hash with CKM_ECDSA,
// whose output is already R||S of the curve's size, the JWS form (RFC 7518 §3.4); RS256 signs
// with CKM_SHA256_RSA_PKCS, or CKM_RSA_PKCS over the DigestInfo when the token lacks it. Key
// wrapping: CKM_AES_GCM (C_Encrypt/C_Decrypt of the 32-byte data key, with the vault's AAD and a
// fresh 96-bit nonce), the same format as the in-memory KEK's.
//
// Sessions come from a pool of `session_pool_size`, all logged in as the user. When the token
// restarts or the connection to it is lost (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
// CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN,
// CKR_CRYPTOKI_NOT_INITIALIZED), the failed call re-opens every session (re-initialising the
// module when reopening alone fails), logs in again and is retried once; a token still away is
// UNAVAILABLE. Thread-safe.
#ifndef ACMEVAULT_CRYPTO_PKCS11_H_
#define ACMEVAULT_CRYPTO_PKCS11_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/kek.h"
#include "crypto/keys.h"
#include "crypto/secret.h"
#include "crypto/signer.h"

namespace acmevault::crypto {

struct Pkcs11Options {
  // The module, e.g. /usr/lib/softhsm/libsofthsm2.so. Required.
  std::string module_path;
  // The token: the one whose label is `token_label`, or, when that is empty, the one in slot
  // `slot_id`. One of the two is required.
  std::string token_label;
  std::optional<uint64_t> slot_id;
  // The user PIN (from a file or the environment; never a flag).
  SecretBytes pin;
  // Sessions opened and logged in: how many token operations run at once. Size it for the
  // replica's concurrency (order workers plus account calls). Default 4.
  int session_pool_size = 4;
};

// A key pair made in the token. `object_id` is the CKA_ID and CKA_LABEL of both of its objects;
// it is all the vault stores besides the public key.
struct TokenKeyPair {
  std::string object_id;
  PublicKey public_key;
};

// A key object in the token as a check of its protection sees it.
struct TokenKeyObject {
  std::string object_id;    // CKA_ID (printable for the keys this class made)
  std::string label;        // CKA_LABEL
  bool secret_key = false;  // CKO_SECRET_KEY (an AES KEK); else CKO_PRIVATE_KEY
  bool sensitive = false;
  bool extractable = true;
  bool always_sensitive = false;
  bool never_extractable = false;
  // The token handed out the key's value (CKA_VALUE, or CKA_PRIVATE_EXPONENT for RSA) when
  // asked. Never true for a key made by this class.
  bool value_readable = false;
};

class Pkcs11Token {
 public:
  // Loads the module, finds the token, opens the pool's sessions and logs in.
  // FAILED_PRECONDITION "PKCS#11 module ... could not be loaded" (a missing file, not a
  // PKCS#11 module), "no PKCS#11 token labelled ..." (naming the tokens present) or a slot
  // without a token; PERMISSION_DENIED when the token refuses the PIN (wrong, locked);
  // INVALID_ARGUMENT for options missing a module or a token.
  static absl::StatusOr<std::unique_ptr<Pkcs11Token>> Open(Pkcs11Options options);
  ~Pkcs11Token();
  Pkcs11Token(const Pkcs11Token&) = delete;
  Pkcs11Token& operator=(const Pkcs11Token&) = delete;

  // "token \"LABEL\" (slot N)", for messages.
  const std::string& name() const { return name_; }

  // Generates an account key pair inside the token (sensitive, not extractable). Its object id
  // is "acmevault-" followed by 32 random hex digits.
  absl::StatusOr<TokenKeyPair> GenerateKeyPair(KeyAlgorithm algorithm);
  // A Signer for the key pair `object_id`, with the public key the token reports. The Signer
  // borrows this token, which must outlive it. FAILED_PRECONDITION naming the object when it is
  // gone (then, and at any later Sign).
  absl::StatusOr<std::unique_ptr<Signer>> LoadSigner(absl::string_view object_id);
  // Destroys both objects of the key pair. OK when they are gone already.
  absl::Status DestroyKeyPair(absl::string_view object_id);

  // Generates a 256-bit AES key labelled `label` (also its CKA_ID) for wrapping data keys.
  // ALREADY_EXISTS when the token has a secret key so labelled.
  absl::Status GenerateAesKey(absl::string_view label);
  // The AES key labelled `label` as a KeyEncryptionKey that borrows this token (which must
  // outlive it). FAILED_PRECONDITION naming it when the token has none.
  absl::StatusOr<std::unique_ptr<KeyEncryptionKey>> LoadAesKey(absl::string_view label);

  // Every private and secret key object in the token, with its protection, for audits and
  // tests.
  absl::StatusOr<std::vector<TokenKeyObject>> ListKeyObjects();

  // What a token restart does to this process, for tests of reconnection: closes every session
  // of the slot behind the pool's back (C_CloseAllSessions) or, with `finalize`, finalizes the
  // module (C_Finalize).
  absl::Status SimulateRestartForTesting(bool finalize);

 private:
  class Impl;
  class TokenSigner;
  class TokenKek;
  explicit Pkcs11Token(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  std::string name_;
};

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_PKCS11_H_
