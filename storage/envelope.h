// Envelope encryption of private keys at rest.
//
// Each record (an account key version, a certificate's key, an order's certificate key) gets a
// fresh 32-byte data key; the private key (PKCS#8 DER) is sealed under it with AES-256-GCM, and
// the data key is sealed ("wrapped") under the current key-encryption key (KekSet), also
// AES-256-GCM. Both seals bind the record's identity as additional data, and the wrap binds the
// KEK id too:
//
//   wrapped = Seal(KEK[kek_id], data_key, "acmevault/data-key/v1|" kek_id "|" context)
//   sealed  = Seal(data_key, pkcs8_der,   "acmevault/private-key/v1|" context)
//   context = "account-key|tenant=T|account=A|version=V", "certificate-key|tenant=T|cert=C",
//             "order-key|tenant=T|order=O" or "eab-key|tenant=T|eab=ID" (an EAB HMAC key)
//
// so a ciphertext copied to another row, or a wrapped key relabelled with another KEK id, fails
// to open. Rotating the KEK re-wraps only the 60-byte data keys; sealed keys never change.
#ifndef ACMEVAULT_STORAGE_ENVELOPE_H_
#define ACMEVAULT_STORAGE_ENVELOPE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crypto/keys.h"
#include "crypto/secret.h"
#include "storage/kek_set.h"
#include "storage/types.h"

namespace acmevault::storage {

// What a row stores for one private key. None of it is secret without the KEK.
struct SealedKey {
  std::string kek_id;
  std::string wrapped_data_key;    // 32 + 28 bytes
  std::string sealed_private_key;  // DER + 28 bytes
};

// The binding contexts, one per kind of record.
std::string AccountKeyContext(TenantId tenant, AccountId account, int version);
std::string CertificateKeyContext(TenantId tenant, CertificateId certificate);
std::string OrderKeyContext(TenantId tenant, OrderId order);
// A tenant's kept EAB HMAC key, row `id` of eab_keys (sealed with Seal, not SealPrivateKey).
std::string EabKeyContext(TenantId tenant, int64_t id);

// Immutable; thread-safe. Move-only.
class Envelope {
 public:
  // FAILED_PRECONDITION if `keks` is empty: there is no plaintext mode.
  static absl::StatusOr<Envelope> Create(KekSet keks);

  Envelope(Envelope&&) = default;
  Envelope& operator=(Envelope&&) = default;

  const std::string& current_kek_id() const { return keks_.current_id(); }

  // Seals `plaintext` for the record named by `context` under the current KEK.
  absl::StatusOr<SealedKey> Seal(absl::string_view plaintext, absl::string_view context) const;
  // FAILED_PRECONDITION if the record's KEK is not in the set; DATA_LOSS "... does not
  // authenticate" (naming the context, nothing else) if either layer fails to open.
  absl::StatusOr<crypto::SecretBytes> Open(const SealedKey& sealed,
                                           absl::string_view context) const;
  // The same record with its data key wrapped under the current KEK (unchanged if it already
  // is). Errors as Open.
  absl::StatusOr<SealedKey> Rewrap(const SealedKey& sealed, absl::string_view context) const;

  // Seal and Open of a private key as PKCS#8 DER, what every record stores. SealPrivateKey:
  // INTERNAL if the key cannot be encoded. OpenPrivateKey: Open's errors, or the parser's if the
  // opened bytes are not a key. The opened bytes are read as crypto::PrivateKey::FromSealedDer
  // reads them, without the pairwise test the key passed when it was first sealed: Open
  // authenticated them.
  absl::StatusOr<SealedKey> SealPrivateKey(const crypto::PrivateKey& key,
                                           absl::string_view context) const;
  absl::StatusOr<crypto::PrivateKey> OpenPrivateKey(const SealedKey& sealed,
                                                    absl::string_view context) const;

 private:
  explicit Envelope(KekSet keks) : keks_(std::move(keks)) {}
  absl::StatusOr<crypto::SecretBytes> UnwrapDataKey(const SealedKey& sealed,
                                                    absl::string_view context) const;

  KekSet keks_;
};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_ENVELOPE_H_
