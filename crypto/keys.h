// Asymmetric keys for ACME accounts and certificates: generation, PKCS#8 PEM import and export,
// and signatures in the form JWS (RFC 7518 §3) expects.
//
// This is the only layer that touches <openssl/...>; the header forward-declares the one type it
// needs so that callers never include OpenSSL or BoringSSL. The same source builds against both
// (see BUILD.bazel: targets `keys` and `keys_boringssl`).
#ifndef ACMEVAULT_CRYPTO_KEYS_H_
#define ACMEVAULT_CRYPTO_KEYS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/secret.h"
#include "crypto/signer.h"

struct evp_pkey_st;  // EVP_PKEY in both OpenSSL and BoringSSL.

namespace acmevault::crypto {

// Key types the service generates and accepts. Names follow RFC 7518 where a JWS algorithm
// exists: EC P-256 signs ES256, P-384 signs ES384, RSA signs RS256.
enum class KeyAlgorithm {
  kEcdsaP256,
  kEcdsaP384,
  kRsa2048,
  kRsa3072,
  kRsa4096,
};

// "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096".
absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm);
// Inverse of KeyAlgorithmName; INVALID_ARGUMENT naming the value for anything else.
absl::StatusOr<KeyAlgorithm> ParseKeyAlgorithm(absl::string_view name);

// "OpenSSL 3.x.y ..." or "BoringSSL": which library this build links.
std::string CryptoBackendName();
bool CryptoBackendIsBoringSsl();

// A public key. Immutable and thread-safe; cheap to copy (shares the underlying key).
class PublicKey {
 public:
  // Parses a SubjectPublicKeyInfo in PEM ("PUBLIC KEY") or DER form.
  static absl::StatusOr<PublicKey> FromPem(absl::string_view pem);
  static absl::StatusOr<PublicKey> FromDer(absl::string_view der);
  // Takes ownership of `key` (crypto internals only). INVALID_ARGUMENT for key types the
  // service does not use; `key` is freed either way.
  static absl::StatusOr<PublicKey> Adopt(evp_pkey_st* key);
  // An EC public key from its uncompressed point (0x04 || X || Y), as a PKCS#11 token reports
  // it (CKA_EC_POINT, unwrapped from its DER OCTET STRING). INVALID_ARGUMENT if the point is not
  // on the curve of `algorithm` (ES256 or ES384 keys only).
  static absl::StatusOr<PublicKey> FromEcPoint(KeyAlgorithm algorithm, absl::string_view point);
  // An RSA public key from its modulus and public exponent (unsigned big-endian), as a token
  // reports them (CKA_MODULUS, CKA_PUBLIC_EXPONENT). INVALID_ARGUMENT outside 2048-8192 bits.
  static absl::StatusOr<PublicKey> FromRsa(absl::string_view modulus, absl::string_view exponent);

  KeyAlgorithm algorithm() const { return algorithm_; }
  // "ES256", "ES384" or "RS256".
  absl::string_view JwsAlgorithm() const;

  // SubjectPublicKeyInfo, DER and PEM.
  std::string ToDer() const;
  std::string ToPem() const;

  // True when both hold the same public key.
  bool Equals(const PublicKey& other) const { return ToDer() == other.ToDer(); }

  // Verifies a JWS signature over `data`: R||S (fixed width) for ECDSA, PKCS#1 v1.5 for RSA.
  // OK when it verifies; INVALID_ARGUMENT (with no detail of the key) when it does not.
  absl::Status Verify(absl::string_view data, absl::string_view signature) const;

  // Borrowed; valid while this PublicKey or a copy lives. For crypto internals only.
  evp_pkey_st* raw() const { return key_.get(); }

 private:
  friend class PrivateKey;
  PublicKey(std::shared_ptr<evp_pkey_st> key, KeyAlgorithm algorithm)
      : key_(std::move(key)), algorithm_(algorithm) {}

  std::shared_ptr<evp_pkey_st> key_;
  KeyAlgorithm algorithm_;
};

// A private key in process memory: the in-memory Signer. Thread-safe for concurrent Sign calls
// (OpenSSL and BoringSSL allow concurrent use of one EVP_PKEY through separate contexts).
// Move-only; the key is freed, and its memory cleared by the library, on destruction.
class PrivateKey : public Signer {
 public:
  // Generates a fresh key. RSA 4096 takes about a second on this machine class.
  static absl::StatusOr<PrivateKey> Generate(KeyAlgorithm algorithm);
  // Parses a PKCS#8 PEM ("PRIVATE KEY"); also accepts the traditional "EC PRIVATE KEY" and
  // "RSA PRIVATE KEY" forms. INVALID_ARGUMENT for anything else, unsupported curves, or RSA
  // smaller than 2048 bits, an encrypted PEM (no passphrase is asked for), and a key whose
  // public half does not verify its own signatures. The error never repeats the input.
  static absl::StatusOr<PrivateKey> FromPem(absl::string_view pem);
  // Parses a PKCS#8 DER PrivateKeyInfo, with the same consistency check as FromPem.
  static absl::StatusOr<PrivateKey> FromDer(absl::string_view der);
  // FromDer without the pairwise consistency test, for the bytes of a key this service checked
  // (or made) when it entered, encoded with ToPkcs8Der and sealed: the vault's authenticated
  // encryption vouches that they are those bytes. The test costs a signature and its
  // verification, and every issuance opens two sealed keys (docs/benchmarks.md). Never for
  // bytes from outside.
  static absl::StatusOr<PrivateKey> FromSealedDer(absl::string_view der);

  PrivateKey(PrivateKey&&) = default;
  PrivateKey& operator=(PrivateKey&&) = default;

  KeyAlgorithm algorithm() const { return public_key_.algorithm(); }
  const PublicKey& public_key() const override { return public_key_; }

  // PKCS#8 PrivateKeyInfo, PEM and DER, in buffers that are wiped when released.
  SecretBytes ToPkcs8Pem() const;
  SecretBytes ToPkcs8Der() const;

  // Signs `data` with SHA-256 (P-256, RSA) or SHA-384 (P-384) and returns the JWS signature:
  // R||S, each left-padded to the curve size, for ECDSA; PKCS#1 v1.5 for RSA.
  absl::StatusOr<std::string> Sign(absl::string_view data) const override;

  // Borrowed; valid while this PrivateKey lives. For crypto internals only.
  evp_pkey_st* raw() const { return public_key_.raw(); }

 private:
  explicit PrivateKey(PublicKey key) : public_key_(std::move(key)) {}
  static absl::StatusOr<PrivateKey> Adopt(evp_pkey_st* key);
  // Adopt, then a pairwise consistency test (sign, verify): for keys read from outside.
  static absl::StatusOr<PrivateKey> Imported(evp_pkey_st* key);

  // Holds the private key too: an EVP_PKEY carries both halves.
  PublicKey public_key_;
};

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_KEYS_H_
