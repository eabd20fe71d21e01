#include "crypto/keys.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "crypto/internal.h"

namespace acmevault::crypto {
namespace {

using internal::BignumPtr;
using internal::BioContents;
using internal::EcdsaSigOfRaw;
using internal::EcdsaSigPtr;
using internal::EcKeyPtr;
using internal::EcPointPtr;
using internal::EvpMdCtxPtr;
using internal::EvpPkeyCtxPtr;
using internal::EvpPkeyPtr;
using internal::LibraryError;
using internal::MemoryBio;
using internal::NewEcKey;
using internal::Pkcs8Ptr;
using internal::RsaPtr;

constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;

std::shared_ptr<EVP_PKEY> Share(EVP_PKEY* key) {
  return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
}

// The algorithm of a parsed key, or INVALID_ARGUMENT for key types the service does not use.
absl::StatusOr<KeyAlgorithm> AlgorithmOf(EVP_PKEY* key) {
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
      if (ec == nullptr) return absl::InvalidArgumentError("EC key without parameters");
      switch (EC_GROUP_get_curve_name(EC_KEY_get0_group(ec))) {
        case NID_X9_62_prime256v1:
          return KeyAlgorithm::kEcdsaP256;
        case NID_secp384r1:
          return KeyAlgorithm::kEcdsaP384;
        default:
          return absl::InvalidArgumentError("unsupported EC curve (want P-256 or P-384)");
      }
    }
    case EVP_PKEY_RSA: {
      int bits = EVP_PKEY_bits(key);
      if (bits < kMinRsaBits || bits > kMaxRsaBits) {
        return absl::InvalidArgumentError(
            absl::StrCat("RSA key of ", bits, " bits (want 2048 to 8192)"));
      }
      // RFC 8017 §3.1: the public exponent is odd, at least 3 and below the modulus. A JWK or a
      // SubjectPublicKeyInfo may say anything (e = 0 read back as an empty JWK member).
      const RSA* rsa = EVP_PKEY_get0_RSA(key);
      const BIGNUM* n = nullptr;
      const BIGNUM* e = nullptr;
      if (rsa != nullptr) RSA_get0_key(rsa, &n, &e, nullptr);
      if (n == nullptr || e == nullptr || !BN_is_odd(e) || BN_is_one(e) || BN_cmp(e, n) >= 0) {
        return absl::InvalidArgumentError(
            "RSA public exponent is not odd, at least 3 and below the modulus");
      }
      if (bits <= 2048) return KeyAlgorithm::kRsa2048;
      if (bits <= 3072) return KeyAlgorithm::kRsa3072;
      return KeyAlgorithm::kRsa4096;
    }
    default:
      return absl::InvalidArgumentError("unsupported key type (want EC or RSA)");
  }
}

bool IsEc(KeyAlgorithm a) { return a == KeyAlgorithm::kEcdsaP256 || a == KeyAlgorithm::kEcdsaP384; }

const EVP_MD* DigestFor(KeyAlgorithm a) {
  return a == KeyAlgorithm::kEcdsaP384 ? internal::Sha384Md() : internal::Sha256Md();
}

// Bytes of one ECDSA signature half (R or S) for the curve.
size_t EcFieldBytes(KeyAlgorithm a) { return a == KeyAlgorithm::kEcdsaP384 ? 48 : 32; }

int CurveNid(KeyAlgorithm a) {
  return a == KeyAlgorithm::kEcdsaP384 ? NID_secp384r1 : NID_X9_62_prime256v1;
}

// An EVP_PKEY around `ec` (owned by it from then on), or nullptr.
EVP_PKEY* WrapEcKey(EcKeyPtr ec) {
  EvpPkeyPtr key(EVP_PKEY_new());
  if (ec == nullptr || key == nullptr || EVP_PKEY_assign_EC_KEY(key.get(), ec.get()) != 1) {
    return nullptr;
  }
  ec.release();
  return key.release();
}

// The DER SubjectPublicKeyInfo of a P-256 or P-384 key up to its point (id-ecPublicKey, the
// named curve, a BIT STRING of the uncompressed point); the point follows. RFC 5480 allows no
// other form for these curves.
constexpr char kP256SpkiBytes[] =
    "\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01"
    "\x07\x03\x42\x00";
constexpr char kP384SpkiBytes[] =
    "\x30\x76\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00\x22\x03\x62"
    "\x00";
// Sized by the arrays: the prefixes hold zero bytes.
constexpr absl::string_view kP256SpkiPrefix(kP256SpkiBytes, sizeof(kP256SpkiBytes) - 1);
constexpr absl::string_view kP384SpkiPrefix(kP384SpkiBytes, sizeof(kP384SpkiBytes) - 1);

#if !defined(OPENSSL_IS_BORINGSSL)
// OpenSSL 3 turns a PKCS#8 key into an EVP_PKEY through its provider decoders, which cost about
// a millisecond per key (a third of acmevaultd's time per certificate, docs/benchmarks.md),
// and every certificate opens three keys. An EC key named by a curve reads directly through
// the EC_KEY parser instead (the public point computed when the key omits it). nullptr for
// any other key: the decoders take it.
EVP_PKEY* EcKeyFromPkcs8(const PKCS8_PRIV_KEY_INFO* info) {
  const ASN1_OBJECT* algorithm = nullptr;
  const unsigned char* data = nullptr;
  int length = 0;
  const X509_ALGOR* parameters = nullptr;
  if (PKCS8_pkey_get0(&algorithm, &data, &length, &parameters, info) != 1 ||
      OBJ_obj2nid(algorithm) != NID_X9_62_id_ecPublicKey || parameters == nullptr) {
    return nullptr;
  }
  int type = 0;
  const void* value = nullptr;
  X509_ALGOR_get0(nullptr, &type, &value, parameters);
  if (type != V_ASN1_OBJECT) return nullptr;
  const int nid = OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(value));
  if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1) return nullptr;
  EcKeyPtr ec(NewEcKey(nid));
  EC_KEY* into = ec.get();
  if (into == nullptr || d2i_ECPrivateKey(&into, &data, length) == nullptr) {  // NOLINT
    ERR_clear_error();
    return nullptr;
  }
  return WrapEcKey(std::move(ec));
}
#endif

// R||S, each left-padded to `half` bytes (RFC 7518 §3.4).
absl::StatusOr<std::string> RawEcdsa(const ECDSA_SIG* sig, size_t half) {
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  std::string out(2 * half, '\0');
  auto* buf = reinterpret_cast<uint8_t*>(out.data());
  if (BN_bn2binpad(r, buf, static_cast<int>(half)) < 0 ||
      BN_bn2binpad(s, buf + half, static_cast<int>(half)) < 0) {
    return LibraryError(absl::StatusCode::kInternal, "encoding ECDSA signature");
  }
  return out;
}

}  // namespace

absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm) {
  switch (algorithm) {
    case KeyAlgorithm::kEcdsaP256:
      return "ecdsa-p256";
    case KeyAlgorithm::kEcdsaP384:
      return "ecdsa-p384";
    case KeyAlgorithm::kRsa2048:
      return "rsa-2048";
    case KeyAlgorithm::kRsa3072:
      return "rsa-3072";
    case KeyAlgorithm::kRsa4096:
      return "rsa-4096";
  }
  return "unknown";
}

absl::StatusOr<KeyAlgorithm> ParseKeyAlgorithm(absl::string_view name) {
  for (KeyAlgorithm a : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048,
                         KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096}) {
    if (KeyAlgorithmName(a) == name) return a;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown key algorithm \"", name,
      "\" (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)"));
}

std::string CryptoBackendName() {
#if defined(OPENSSL_IS_BORINGSSL)
  return "BoringSSL";
#else
  return OpenSSL_version(OPENSSL_VERSION);
#endif
}

bool CryptoBackendIsBoringSsl() {
#if defined(OPENSSL_IS_BORINGSSL)
  return true;
#else
  return false;
#endif
}

KeyAlgorithm Signer::algorithm() const { return public_key().algorithm(); }

// ---------------------------------------------------------------------------------------------
// PublicKey

absl::StatusOr<PublicKey> PublicKey::FromPem(absl::string_view pem) {
  auto bio = MemoryBio(pem);
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a PEM public key");
  }
  return Adopt(key);
}

absl::StatusOr<PublicKey> PublicKey::FromDer(absl::string_view der) {
  // A P-256 or P-384 key in the one form RFC 5480 gives it: its point, without a decoder.
  for (KeyAlgorithm a : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384}) {
    const absl::string_view prefix =
        a == KeyAlgorithm::kEcdsaP384 ? kP384SpkiPrefix : kP256SpkiPrefix;
    if (der.size() == prefix.size() + 1 + 2 * EcFieldBytes(a) && absl::StartsWith(der, prefix)) {
      return FromEcPoint(a, der.substr(prefix.size()));
    }
  }
  const auto* p = reinterpret_cast<const uint8_t*>(der.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));  // NOLINT
  if (key == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a DER public key");
  }
  return Adopt(key);
}

absl::StatusOr<PublicKey> PublicKey::Adopt(EVP_PKEY* raw) {
  EvpPkeyPtr key(raw);
  ASSIGN_OR_RETURN(KeyAlgorithm algorithm, AlgorithmOf(key.get()));
  return PublicKey(Share(key.release()), algorithm);
}

absl::StatusOr<PublicKey> PublicKey::FromEcPoint(KeyAlgorithm algorithm, absl::string_view point) {
  if (!IsEc(algorithm)) return absl::InvalidArgumentError("not an EC key algorithm");
  EcKeyPtr ec(NewEcKey(CurveNid(algorithm)));
  if (ec == nullptr) return LibraryError(absl::StatusCode::kInternal, "creating EC key");
  const EC_GROUP* group = EC_KEY_get0_group(ec.get());
  EcPointPtr p(EC_POINT_new(group));
  // P-256 and P-384 have prime order (cofactor 1), so a point on the curve other than infinity
  // is a valid public key (SP 800-56A's partial validation suffices). OpenSSL 3's
  // EC_KEY_check_key also multiplies the point by the group order to prove that, a scalar
  // multiplication of an arbitrary point: 48 us of the 59 a P-256 key took here
  // (tests/bench/key_ops_bench, PublicKey::FromDer).
  if (p == nullptr ||
      EC_POINT_oct2point(group, p.get(), reinterpret_cast<const uint8_t*>(point.data()),
                         point.size(), nullptr) != 1 ||
      EC_POINT_is_at_infinity(group, p.get()) == 1 ||
      EC_POINT_is_on_curve(group, p.get(), nullptr) != 1 ||
      EC_KEY_set_public_key(ec.get(), p.get()) != 1) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "EC point is not on the curve");
  }
  EvpPkeyPtr key(EVP_PKEY_new());
  if (key == nullptr || EVP_PKEY_assign_EC_KEY(key.get(), ec.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "wrapping EC key");
  }
  ec.release();  // Owned by key now.
  return Adopt(key.release());
}

absl::StatusOr<PublicKey> PublicKey::FromRsa(absl::string_view modulus,
                                             absl::string_view exponent) {
  BignumPtr n(BN_bin2bn(reinterpret_cast<const uint8_t*>(modulus.data()),
                        static_cast<int>(modulus.size()), nullptr));
  BignumPtr e(BN_bin2bn(reinterpret_cast<const uint8_t*>(exponent.data()),
                        static_cast<int>(exponent.size()), nullptr));
  RsaPtr rsa(RSA_new());
  if (n == nullptr || e == nullptr || rsa == nullptr ||
      RSA_set0_key(rsa.get(), n.get(), e.get(), nullptr) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "building RSA key");
  }
  n.release();  // Owned by rsa now.
  e.release();
  EvpPkeyPtr key(EVP_PKEY_new());
  if (key == nullptr || EVP_PKEY_assign_RSA(key.get(), rsa.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "wrapping RSA key");
  }
  rsa.release();
  return Adopt(key.release());
}

absl::string_view PublicKey::JwsAlgorithm() const {
  switch (algorithm_) {
    case KeyAlgorithm::kEcdsaP256:
      return "ES256";
    case KeyAlgorithm::kEcdsaP384:
      return "ES384";
    default:
      return "RS256";
  }
}

std::string PublicKey::ToDer() const {
  if (IsEc(algorithm_)) {
    // The fixed prefix and the point: no encoder (OpenSSL 3 builds one per call).
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key_.get());
    const size_t point_bytes = 1 + 2 * EcFieldBytes(algorithm_);
    std::string out(algorithm_ == KeyAlgorithm::kEcdsaP384 ? kP384SpkiPrefix : kP256SpkiPrefix);
    out.resize(out.size() + point_bytes);
    if (ec != nullptr &&
        EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                           POINT_CONVERSION_UNCOMPRESSED,
                           reinterpret_cast<uint8_t*>(out.data() + out.size() - point_bytes),
                           point_bytes, nullptr) == point_bytes) {
      return out;
    }
    ERR_clear_error();
  }
  int len = i2d_PUBKEY(key_.get(), nullptr);
  if (len <= 0) return "";
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  i2d_PUBKEY(key_.get(), &p);
  return out;
}

std::string PublicKey::ToPem() const {
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) return "";
  return BioContents(bio.get());
}

absl::Status PublicKey::Verify(absl::string_view data, absl::string_view signature) const {
  if (IsEc(algorithm_)) {
    // As Sign: hash, then ECDSA_do_verify on the EC_KEY, without a provider fetch per call.
    ASSIGN_OR_RETURN(EcdsaSigPtr sig, EcdsaSigOfRaw(signature, EcFieldBytes(algorithm_)));
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key_.get());
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (ec == nullptr || EVP_Digest(data.data(), data.size(), digest, &digest_len,
                                    DigestFor(algorithm_), nullptr) != 1) {
      return LibraryError(absl::StatusCode::kInternal, "hashing");
    }
    if (ECDSA_do_verify(digest, digest_len, sig.get(), const_cast<EC_KEY*>(ec)) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError("signature does not verify");
    }
    return absl::OkStatus();
  }
  const std::vector<uint8_t> sig(signature.begin(), signature.end());
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, DigestFor(algorithm_), nullptr, key_.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "initialising verification");
  }
  if (EVP_DigestVerify(ctx.get(), sig.data(), sig.size(),
                       reinterpret_cast<const uint8_t*>(data.data()), data.size()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("signature does not verify");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// PrivateKey

absl::StatusOr<PrivateKey> PrivateKey::Adopt(EVP_PKEY* raw) {
  EvpPkeyPtr key(raw);
  ASSIGN_OR_RETURN(KeyAlgorithm algorithm, AlgorithmOf(key.get()));
  return PrivateKey(PublicKey(Share(key.release()), algorithm));
}

absl::StatusOr<PrivateKey> PrivateKey::Generate(KeyAlgorithm algorithm) {
  if (IsEc(algorithm)) {
    // Through EC_KEY: OpenSSL 3 then encodes the key (PKCS#8 to seal it, its public half in a
    // CSR) with the EC code directly rather than through its provider encoders and decoders.
    EcKeyPtr ec(NewEcKey(CurveNid(algorithm)));
    if (ec == nullptr || EC_KEY_generate_key(ec.get()) != 1) {
      return LibraryError(absl::StatusCode::kInternal, "generating key");
    }
    EVP_PKEY* key = WrapEcKey(std::move(ec));
    if (key == nullptr) return LibraryError(absl::StatusCode::kInternal, "wrapping EC key");
    return Adopt(key);
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(IsEc(algorithm) ? EVP_PKEY_EC : EVP_PKEY_RSA, nullptr));
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "initialising key generation");
  }
  int ok = 0;
  switch (algorithm) {
    case KeyAlgorithm::kEcdsaP256:
      ok = EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1);
      break;
    case KeyAlgorithm::kEcdsaP384:
      ok = EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_secp384r1);
      break;
    case KeyAlgorithm::kRsa2048:
      ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 2048);
      break;
    case KeyAlgorithm::kRsa3072:
      ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 3072);
      break;
    case KeyAlgorithm::kRsa4096:
      ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 4096);
      break;
  }
  if (ok <= 0) return LibraryError(absl::StatusCode::kInternal, "setting key parameters");
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &key) != 1 || key == nullptr) {
    return LibraryError(absl::StatusCode::kInternal, "generating key");
  }
  return Adopt(key);
}

// Refuses a key whose public half does not verify what the private half signs (an RSA key whose
// modulus is not p*q parses, and then signs JWS no CA accepts). A pairwise test rather than the
// libraries' RSA_check_key, which in OpenSSL 3 tests p and q for primality on every import.
absl::StatusOr<PrivateKey> PrivateKey::Imported(EVP_PKEY* raw) {
  ASSIGN_OR_RETURN(PrivateKey key, Adopt(raw));
  constexpr absl::string_view kProbe = "acmevault pairwise consistency test";
  auto signature = key.Sign(kProbe);
  if (!signature.ok() || !key.public_key().Verify(kProbe, *signature).ok()) {
    return absl::InvalidArgumentError(
        "inconsistent private key: its public half does not verify its signatures");
  }
  return key;
}

absl::StatusOr<PrivateKey> PrivateKey::FromPem(absl::string_view pem) {
  auto bio = MemoryBio(pem);
  // No passphrase: without a callback of its own OpenSSL would prompt on the terminal for an
  // encrypted PEM and wait.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr);
  if (key == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a PEM private key");
  }
  return Imported(key);
}

namespace {

// The key of a PKCS#8 DER PrivateKeyInfo, unchecked. INVALID_ARGUMENT when it is none.
absl::StatusOr<EVP_PKEY*> ParsePkcs8(absl::string_view der) {
  const auto* p = reinterpret_cast<const uint8_t*>(der.data());
  Pkcs8Ptr info(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  if (info == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a DER PKCS#8 private key");
  }
  EVP_PKEY* key = nullptr;
#if !defined(OPENSSL_IS_BORINGSSL)
  key = EcKeyFromPkcs8(info.get());
#endif
  if (key == nullptr) key = EVP_PKCS82PKEY(info.get());
  if (key == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "unusable PKCS#8 private key");
  }
  return key;
}

}  // namespace

absl::StatusOr<PrivateKey> PrivateKey::FromDer(absl::string_view der) {
  ASSIGN_OR_RETURN(EVP_PKEY * key, ParsePkcs8(der));
  return Imported(key);
}

absl::StatusOr<PrivateKey> PrivateKey::FromSealedDer(absl::string_view der) {
  ASSIGN_OR_RETURN(EVP_PKEY * key, ParsePkcs8(der));
  return Adopt(key);
}

SecretBytes PrivateKey::ToPkcs8Pem() const {
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PKCS8PrivateKey(bio.get(), raw(), nullptr, nullptr, 0,
                                                      nullptr, nullptr) != 1) {
    ERR_clear_error();
    return SecretBytes();
  }
  SecretBytes out(BioContents(bio.get()));
  // The memory BIO's buffer held the key too; wipe it before it is freed.
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(runtime/int)
  if (data != nullptr && len > 0) SecureWipe(data, static_cast<size_t>(len));
  return out;
}

SecretBytes PrivateKey::ToPkcs8Der() const {
  Pkcs8Ptr info(EVP_PKEY2PKCS8(raw()));
  if (info == nullptr) {
    ERR_clear_error();
    return SecretBytes();
  }
  int len = i2d_PKCS8_PRIV_KEY_INFO(info.get(), nullptr);
  if (len <= 0) return SecretBytes();
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  i2d_PKCS8_PRIV_KEY_INFO(info.get(), &p);
  return SecretBytes(std::move(out));
}

absl::StatusOr<std::string> PrivateKey::Sign(absl::string_view data) const {
  if (IsEc(algorithm())) {
    // Fast path: hash, then ECDSA_do_sign on the EC_KEY. EVP_DigestSign costs OpenSSL 3 a
    // provider fetch per call and returns DER that must be decoded again; this yields R and S
    // directly. AlgorithmOf() already materialised the EC_KEY, so concurrent calls only read it.
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(raw());
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (ec == nullptr || EVP_Digest(data.data(), data.size(), digest, &digest_len,
                                    DigestFor(algorithm()), nullptr) != 1) {
      return LibraryError(absl::StatusCode::kInternal, "hashing");
    }
    EcdsaSigPtr sig(ECDSA_do_sign(digest, digest_len, const_cast<EC_KEY*>(ec)));
    if (sig == nullptr) return LibraryError(absl::StatusCode::kInternal, "signing");
    return RawEcdsa(sig.get(), EcFieldBytes(algorithm()));
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, DigestFor(algorithm()), nullptr, raw()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "initialising signature");
  }
  const auto* in = reinterpret_cast<const uint8_t*>(data.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "sizing signature");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(sig.data()), &len, in, data.size()) !=
      1) {
    return LibraryError(absl::StatusCode::kInternal, "signing");
  }
  sig.resize(len);
  return sig;
}

}  // namespace acmevault::crypto
