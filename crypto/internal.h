// Helpers shared by crypto's sources: owning pointers for library objects and the one
// mapping from the library's error queue to absl::Status. Not for use outside crypto.
#ifndef ACMEVAULT_CRYPTO_INTERNAL_H_
#define ACMEVAULT_CRYPTO_INTERNAL_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace acmevault::crypto::internal {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};

using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using EcKeyPtr = std::unique_ptr<EC_KEY, Deleter<EC_KEY, EC_KEY_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, Deleter<EC_POINT, EC_POINT_free>>;
using RsaPtr = std::unique_ptr<RSA, Deleter<RSA, RSA_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Pkcs8Ptr =
    std::unique_ptr<PKCS8_PRIV_KEY_INFO, Deleter<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free>>;

// A read-only memory BIO over `data` (borrowed: must outlive the BIO).
BioPtr MemoryBio(absl::string_view data);
// Everything written to a memory BIO, as a string.
std::string BioContents(BIO* bio);

// Builds a Status of `code` whose message is `what` followed by the library's first queued
// error reason (never data), and clears the queue so errors do not leak into later calls.
absl::Status LibraryError(absl::StatusCode code, absl::string_view what);

// The ECDSA_SIG of a raw ECDSA signature (R||S, as JWS and PrivateKey::Sign give it, `half`
// bytes each). INVALID_ARGUMENT for any other length.
absl::StatusOr<EcdsaSigPtr> EcdsaSigOfRaw(absl::string_view raw, size_t half);

// A new EC_KEY on the named curve `nid`, with no key in it yet; nullptr if the library fails.
// EC_KEY_new_by_curve_name does this, but OpenSSL 3 builds the curve's group from its
// parameters each time; the group of P-256 and P-384 is built once here and copied into each key.
EcKeyPtr NewEcKey(int nid);

// SHA-256, SHA-384 and AES-256-GCM, each fetched once from the default provider. OpenSSL 3
// looks EVP_sha256() and the like up in its provider store again on every use (EVP_Digest,
// EVP_EncryptInit_ex); one fetched object is used as often as wanted, from any thread.
// BoringSSL's are static already.
const EVP_MD* Sha256Md();
const EVP_MD* Sha384Md();
const EVP_CIPHER* Aes256GcmCipher();

}  // namespace acmevault::crypto::internal

#endif  // ACMEVAULT_CRYPTO_INTERNAL_H_
