#include "crypto/x509.h"

#include <openssl/asn1.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#include <openssl/provider.h>
#endif

#include <deque>
#include <optional>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "crypto/internal.h"

namespace acmevault::crypto {
namespace {

using internal::Deleter;
using internal::LibraryError;

using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using AsnTimePtr = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>>;
using AlgorPtr = std::unique_ptr<X509_ALGOR, Deleter<X509_ALGOR, X509_ALGOR_free>>;
using AuthorityKeyIdPtr =
    std::unique_ptr<AUTHORITY_KEYID, Deleter<AUTHORITY_KEYID, AUTHORITY_KEYID_free>>;
using CrlDistPointsPtr =
    std::unique_ptr<CRL_DIST_POINTS, Deleter<CRL_DIST_POINTS, CRL_DIST_POINTS_free>>;
using AsnEnumeratedPtr =
    std::unique_ptr<ASN1_ENUMERATED, Deleter<ASN1_ENUMERATED, ASN1_ENUMERATED_free>>;
using BnPtr = internal::BignumPtr;
using internal::EvpPkeyPtr;

constexpr absl::string_view kBegin = "-----BEGIN ";
constexpr absl::string_view kDashes = "-----";

void FreeExtensions(STACK_OF(X509_EXTENSION) * exts) {
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

// Frees the stack only: its certificates are owned elsewhere.
void FreeCertStack(STACK_OF(X509) * certs) { sk_X509_free(certs); }

// DNS names of a GENERAL_NAMES; INVALID_ARGUMENT for any other kind of name.
absl::StatusOr<std::vector<std::string>> DnsNames(const GENERAL_NAMES* names) {
  std::vector<std::string> out;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_DNS) {
      return absl::InvalidArgumentError("subjectAltName holds a name that is not a DNS name");
    }
    const ASN1_STRING* s = name->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     ASN1_STRING_length(s));
  }
  return out;
}

const EVP_MD* SigningDigest(const PrivateKey& key) {
  return key.algorithm() == KeyAlgorithm::kEcdsaP384 ? internal::Sha384Md() : internal::Sha256Md();
}

// Signs `req` with `key`. OpenSSL 3's X509_REQ_sign signs through EVP_DigestSign, which first
// exports a key it has not seen to its provider, and every CSR built here has a key made for it:
// about 18 us of the 54 a CSR took (tests/bench/key_ops_bench). An EC key signs the request's
// CertificationRequestInfo itself, with PrivateKey::Sign's ECDSA on the key as it is, and the
// request gets the signature as X509_REQ_sign would give it (ecdsa-with-SHA256 or -SHA384, no
// parameters, the DER ECDSA-Sig-Value in a BIT STRING). BoringSSL signs without an export.
bool SignCsr(X509_REQ* req, const PrivateKey& key) {
#if !defined(OPENSSL_IS_BORINGSSL)
  if (key.algorithm() == KeyAlgorithm::kEcdsaP256 || key.algorithm() == KeyAlgorithm::kEcdsaP384) {
    unsigned char* tbs = nullptr;
    const int tbs_len = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbs_len <= 0) return false;
    absl::StatusOr<std::string> raw =
        key.Sign(absl::string_view(reinterpret_cast<const char*>(tbs), tbs_len));
    OPENSSL_free(tbs);
    if (!raw.ok() || raw->empty()) return false;
    absl::StatusOr<internal::EcdsaSigPtr> sig = internal::EcdsaSigOfRaw(*raw, raw->size() / 2);
    if (!sig.ok()) return false;
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(sig->get(), &der);
    if (der_len <= 0) return false;
    ASN1_BIT_STRING* bits = ASN1_BIT_STRING_new();
    if (bits == nullptr) {
      OPENSSL_free(der);
      return false;
    }
    ASN1_STRING_set0(bits, der, der_len);  // Owns der now.
    bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
    bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;  // No unused bits.
    AlgorPtr algorithm(X509_ALGOR_new());
    const int nid =
        key.algorithm() == KeyAlgorithm::kEcdsaP384 ? NID_ecdsa_with_SHA384 : NID_ecdsa_with_SHA256;
    if (algorithm == nullptr ||
        X509_ALGOR_set0(algorithm.get(), OBJ_nid2obj(nid), V_ASN1_UNDEF, nullptr) != 1 ||
        X509_REQ_set1_signature_algo(req, algorithm.get()) != 1) {
      ASN1_BIT_STRING_free(bits);
      return false;
    }
    X509_REQ_set0_signature(req, bits);
    return true;
  }
#endif
  return X509_REQ_sign(req, key.raw(), SigningDigest(key)) > 0;
}

absl::Time AsnTimeToTime(const ASN1_TIME* t) {
  AsnTimePtr epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (epoch == nullptr || ASN1_TIME_diff(&days, &seconds, epoch.get(), t) != 1) {
    return absl::InfinitePast();
  }
  return absl::FromUnixSeconds(int64_t{days} * 86400 + seconds);
}

std::string NameEntry(const X509_NAME* name, int nid) {
  char buf[256] = {0};
  int len = X509_NAME_get_text_by_NID(const_cast<X509_NAME*>(name), nid, buf, sizeof(buf));
  return len > 0 ? std::string(buf, len) : "";
}

// A serial as CertificateInfo::serial_hex writes it: lower-case hex, no leading zeros.
absl::StatusOr<std::string> SerialHex(const ASN1_INTEGER* serial) {
  BnPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  char* hex = bn ? BN_bn2hex(bn.get()) : nullptr;
  if (hex == nullptr) return LibraryError(absl::StatusCode::kInvalidArgument, "bad serial");
  std::string serial_hex = absl::AsciiStrToLower(hex);
  OPENSSL_free(hex);
  while (serial_hex.size() > 1 && serial_hex[0] == '0') serial_hex.erase(0, 1);
  return serial_hex;
}

// The content octets of a DER INTEGER (strips tag and length).
std::string IntegerContent(const ASN1_INTEGER* integer) {
  int len = i2d_ASN1_INTEGER(const_cast<ASN1_INTEGER*>(integer), nullptr);
  if (len <= 2) return "";
  std::string der(len, '\0');
  auto* p = reinterpret_cast<uint8_t*>(der.data());
  i2d_ASN1_INTEGER(const_cast<ASN1_INTEGER*>(integer), &p);
  size_t header = 2;
  auto first_len = static_cast<uint8_t>(der[1]);
  if (first_len & 0x80) header += first_len & 0x7f;
  return der.substr(header);
}

// What was read last from DER inputs, by their exact bytes. An issuance parses the same chain
// several times (the download's checks, the store, the answer) and compares the leaf's key with
// its CSR's, and a parse is the DER decoding plus the key's, about 270 us on OpenSSL 3
// (docs/benchmarks.md): answered again from here, a parse is a lookup and a copy (copies of
// a CertificateInfo share the key, which is immutable). Bounded: the oldest entry goes first.
template <typename T>
class ParsedByDer {
 public:
  static constexpr size_t kCapacity = 256;

  std::optional<T> Find(absl::string_view der) {
    absl::MutexLock lock(&mu_);
    auto it = parsed_.find(der);
    if (it == parsed_.end()) return std::nullopt;
    return it->second;
  }
  void Keep(absl::string_view der, const T& value) {
    absl::MutexLock lock(&mu_);
    if (!parsed_.emplace(der, value).second) return;
    order_.emplace_back(der);
    if (order_.size() > kCapacity) {
      parsed_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, T> parsed_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // keys of parsed_, oldest first
};

// The SubjectPublicKeyInfo of the CSRs built or parsed last (CsrKeyDer). Public keys only: a
// CSR built here is signed by a private key, but what is kept is the public half's DER.
ParsedByDer<std::string>& CsrKeys() {
  static auto* keys = new ParsedByDer<std::string>();
  return *keys;
}

}  // namespace

absl::StatusOr<std::string> BuildCsr(const std::vector<std::string>& dns_names,
                                     const PrivateKey& key) {
  if (dns_names.empty()) return absl::InvalidArgumentError("a CSR needs at least one name");
  X509ReqPtr req(X509_REQ_new());
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (req == nullptr || names == nullptr || X509_REQ_set_version(req.get(), 0) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "allocating CSR");
  }
  for (const std::string& dns : dns_names) {
    GENERAL_NAME* name = GENERAL_NAME_new();
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    if (name == nullptr || ia5 == nullptr ||
        ASN1_STRING_set(ia5, dns.data(), static_cast<int>(dns.size())) != 1) {
      GENERAL_NAME_free(name);
      ASN1_IA5STRING_free(ia5);
      return LibraryError(absl::StatusCode::kInternal, "building subjectAltName");
    }
    GENERAL_NAME_set0_value(name, GEN_DNS, ia5);
    sk_GENERAL_NAME_push(names.get(), name);
  }
  STACK_OF(X509_EXTENSION)* exts = nullptr;
  bool ok = X509V3_add1_i2d(&exts, NID_subject_alt_name, names.get(), 0, 0) == 1 &&
            X509_REQ_add_extensions(req.get(), exts) == 1;
  FreeExtensions(exts);
  if (!ok || X509_REQ_set_pubkey(req.get(), key.raw()) != 1 || !SignCsr(req.get(), key)) {
    return LibraryError(absl::StatusCode::kInternal, "signing CSR");
  }
  int len = i2d_X509_REQ(req.get(), nullptr);
  if (len <= 0) return LibraryError(absl::StatusCode::kInternal, "encoding CSR");
  std::string der(len, '\0');
  auto* p = reinterpret_cast<uint8_t*>(der.data());
  i2d_X509_REQ(req.get(), &p);
  CsrKeys().Keep(der, key.public_key().ToDer());
  return der;
}

absl::StatusOr<CsrInfo> ParseCsr(absl::string_view pem_or_der) {
  X509ReqPtr req;
  if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(pem_or_der), "-----BEGIN")) {
    auto bio = internal::MemoryBio(pem_or_der);
    req.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const auto* p = reinterpret_cast<const uint8_t*>(pem_or_der.data());
    req.reset(d2i_X509_REQ(nullptr, &p, static_cast<long>(pem_or_der.size())));  // NOLINT
  }
  if (req == nullptr) return LibraryError(absl::StatusCode::kInvalidArgument, "not a CSR");
  EVP_PKEY* raw_key = X509_REQ_get_pubkey(req.get());  // A new reference.
  if (raw_key == nullptr) return LibraryError(absl::StatusCode::kInvalidArgument, "CSR has no key");
  if (X509_REQ_verify(req.get(), raw_key) != 1) {
    EVP_PKEY_free(raw_key);
    return LibraryError(absl::StatusCode::kInvalidArgument, "CSR signature does not verify");
  }
  ASSIGN_OR_RETURN(PublicKey key, PublicKey::Adopt(raw_key));
  std::vector<std::string> dns_names;
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req.get());
  for (size_t i = 0; exts != nullptr && i < sk_X509_EXTENSION_num(exts); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
    GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    if (names == nullptr) {
      FreeExtensions(exts);
      return LibraryError(absl::StatusCode::kInvalidArgument, "CSR subjectAltName is malformed");
    }
    auto parsed = DnsNames(names.get());
    if (!parsed.ok()) {
      FreeExtensions(exts);
      return parsed.status();
    }
    dns_names.insert(dns_names.end(), parsed->begin(), parsed->end());
  }
  FreeExtensions(exts);
  int len = i2d_X509_REQ(req.get(), nullptr);
  std::string der(len > 0 ? len : 0, '\0');
  auto* p = reinterpret_cast<uint8_t*>(der.data());
  i2d_X509_REQ(req.get(), &p);
  CsrKeys().Keep(der, key.ToDer());
  return CsrInfo{std::move(der), std::move(dns_names), std::move(key)};
}

absl::StatusOr<std::string> CsrKeyDer(absl::string_view csr_der) {
  if (std::optional<std::string> known = CsrKeys().Find(csr_der)) return *std::move(known);
  ASSIGN_OR_RETURN(CsrInfo csr, ParseCsr(csr_der));
  return csr.public_key.ToDer();
}

absl::Status CheckCsr(const CsrInfo& csr, const std::vector<std::string>& identifiers,
                      const std::vector<PublicKey>& forbidden_keys,
                      const std::vector<KeyAlgorithm>& allowed) {
  std::set<std::string> want, got;
  for (const auto& id : identifiers) want.insert(absl::AsciiStrToLower(id));
  for (const auto& name : csr.dns_names) got.insert(absl::AsciiStrToLower(name));
  if (want != got) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSR names [", absl::StrJoin(got, ", "),
                     "] are not exactly the requested identifiers [", absl::StrJoin(want, ", "),
                     "]"));
  }
  for (const PublicKey& k : forbidden_keys) {
    if (k.Equals(csr.public_key)) {
      return absl::InvalidArgumentError("CSR key is the account key (RFC 8555 §11.1)");
    }
  }
  bool ok = false;
  for (KeyAlgorithm a : allowed) ok = ok || a == csr.public_key.algorithm();
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR key type ", KeyAlgorithmName(csr.public_key.algorithm()), " is not allowed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SplitPemChain(absl::string_view pem) {
  std::vector<std::string> out;
  absl::string_view rest = pem;
  while (true) {
    rest = absl::StripLeadingAsciiWhitespace(rest);
    if (rest.empty()) break;
    if (!absl::ConsumePrefix(&rest, kBegin)) {
      return absl::InvalidArgumentError("PEM chain has text outside PEM blocks");
    }
    size_t label_end = rest.find(kDashes);
    if (label_end == absl::string_view::npos) {
      return absl::InvalidArgumentError("PEM block header is not terminated");
    }
    absl::string_view label = rest.substr(0, label_end);
    if (label != "CERTIFICATE") {
      return absl::InvalidArgumentError(
          absl::StrCat("PEM chain holds a \"", label, "\" block; only CERTIFICATE is allowed"));
    }
    rest.remove_prefix(label_end + kDashes.size());
    const std::string end_marker = absl::StrCat("-----END ", label, kDashes);
    size_t end = rest.find(end_marker);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError("PEM block is not terminated");
    }
    std::string body;
    for (char c : rest.substr(0, end)) {
      if (!absl::ascii_isspace(static_cast<unsigned char>(c))) body.push_back(c);
    }
    std::string der;
    if (body.empty() || !absl::Base64Unescape(body, &der)) {
      return absl::InvalidArgumentError("PEM block body is not base64");
    }
    out.push_back(std::move(der));
    rest.remove_prefix(end + end_marker.size());
  }
  if (out.empty()) return absl::InvalidArgumentError("PEM chain is empty");
  return out;
}

namespace {

// The http(s) URIs of `cert`'s CRL distribution points (CrlDistributionPoints).
std::vector<std::string> CrlUris(X509* cert) {
  std::vector<std::string> out;
  CrlDistPointsPtr points(static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr)));
  ERR_clear_error();
  if (points == nullptr) return out;
  for (size_t i = 0; i < sk_DIST_POINT_num(points.get()); ++i) {
    const DIST_POINT* point = sk_DIST_POINT_value(points.get(), i);
    // RFC 5280 §4.2.1.13: a fullName (type 0) holds the URIs; a name relative to the issuer
    // locates nothing fetchable.
    if (point->distpoint == nullptr || point->distpoint->type != 0) continue;
    const GENERAL_NAMES* names = point->distpoint->name.fullname;
    for (size_t j = 0; j < sk_GENERAL_NAME_num(names); ++j) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, j);
      if (name->type != GEN_URI) continue;
      const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
      std::string url(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      ASN1_STRING_length(uri));
      if (absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://")) {
        out.push_back(std::move(url));
      }
    }
  }
  return out;
}

// The certificate `*in` (DER) starts with, `*in` moved past it; nullptr if it does not parse.
// OpenSSL 3 decodes a certificate's SubjectPublicKeyInfo as it reads it, through its provider
// decoders: most of what parsing a new leaf cost (tests/bench/key_ops_bench). Read in a library
// context whose only provider is the null one, the key is left undecoded (the decoders find
// nothing, which d2i_X509 ignores) and the rest reads the same; CertificateKey then reads the
// key. BoringSSL has no providers and decodes the key cheaply. ParseCsr reads a CSR as before:
// it checks the CSR's signature with the key, and with a key read this way that check cost
// OpenSSL 3 more than the decoding saved (196-201 against 185-191 us a CSR, key_ops_bench).
X509Ptr ReadCertificate(const uint8_t** in, long len) {
#if defined(OPENSSL_IS_BORINGSSL)
  return X509Ptr(d2i_X509(nullptr, in, len));  // NOLINT
#else
  static OSSL_LIB_CTX* const keyless = [] {
    OSSL_LIB_CTX* ctx = OSSL_LIB_CTX_new();
    if (ctx != nullptr && OSSL_PROVIDER_load(ctx, "null") == nullptr) {
      OSSL_LIB_CTX_free(ctx);
      ctx = nullptr;
    }
    ERR_clear_error();
    return ctx;
  }();
  X509* into = keyless != nullptr ? X509_new_ex(keyless, nullptr) : nullptr;
  // d2i_X509 frees `into` when the bytes do not parse.
  return X509Ptr(d2i_X509(into != nullptr ? &into : nullptr, in, len));  // NOLINT
#endif
}

// The certificate's public key, read from its SubjectPublicKeyInfo as PublicKey::FromDer reads
// one: a P-256 or P-384 key in RFC 5480's form without a decoder, any other through the
// default library context's decoders.
absl::StatusOr<PublicKey> CertificateKey(const X509* cert) {
  unsigned char* spki = nullptr;
  const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
  if (len <= 0) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "certificate key is unreadable");
  }
  absl::StatusOr<PublicKey> key =
      PublicKey::FromDer(absl::string_view(reinterpret_cast<const char*>(spki), len));
  OPENSSL_free(spki);
  return key;
}

absl::StatusOr<CertificateInfo> ParseCertificateOnce(absl::string_view der) {
  const auto* p = reinterpret_cast<const uint8_t*>(der.data());
  X509Ptr cert = ReadCertificate(&p, static_cast<long>(der.size()));
  if (cert == nullptr || p != reinterpret_cast<const uint8_t*>(der.data()) + der.size()) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a DER certificate");
  }
  ASSIGN_OR_RETURN(PublicKey key, CertificateKey(cert.get()));
  const ASN1_INTEGER* serial = X509_get_serialNumber(cert.get());
  ASSIGN_OR_RETURN(std::string serial_hex, SerialHex(serial));

  std::vector<std::string> dns_names;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (names != nullptr) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type != GEN_DNS) continue;  // CAs may add IP names; ACME here is DNS only.
      const ASN1_STRING* s = name->d.dNSName;
      dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             ASN1_STRING_length(s));
    }
  }
  // Read from the extension itself: X509_get0_authority_key_id caches every extension first,
  // which hashes the certificate with a digest the keyless context cannot fetch.
  std::string aki;
  AuthorityKeyIdPtr akid(static_cast<AUTHORITY_KEYID*>(
      X509_get_ext_d2i(cert.get(), NID_authority_key_identifier, nullptr, nullptr)));
  if (akid != nullptr && akid->keyid != nullptr) {
    aki.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(akid->keyid)),
               ASN1_STRING_length(akid->keyid));
  }
  ERR_clear_error();
  return CertificateInfo{
      std::string(der),
      std::move(serial_hex),
      IntegerContent(serial),
      std::move(aki),
      AsnTimeToTime(X509_get0_notBefore(cert.get())),
      AsnTimeToTime(X509_get0_notAfter(cert.get())),
      std::move(dns_names),
      NameEntry(X509_get_subject_name(cert.get()), NID_commonName),
      NameEntry(X509_get_issuer_name(cert.get()), NID_commonName),
      std::move(key),
      CrlUris(cert.get()),
  };
}

ParsedByDer<CertificateInfo>& ParsedCertificates() {
  static auto* parsed = new ParsedByDer<CertificateInfo>();
  return *parsed;
}

}  // namespace

absl::StatusOr<CertificateInfo> ParseCertificate(absl::string_view der) {
  if (std::optional<CertificateInfo> known = ParsedCertificates().Find(der)) {
    return *std::move(known);
  }
  ASSIGN_OR_RETURN(CertificateInfo info, ParseCertificateOnce(der));
  ParsedCertificates().Keep(info.der, info);
  return info;
}

absl::StatusOr<std::vector<CertificateInfo>> ParsePemChain(absl::string_view pem) {
  ASSIGN_OR_RETURN(std::vector<std::string> ders, SplitPemChain(pem));
  std::vector<CertificateInfo> out;
  for (const auto& der : ders) {
    ASSIGN_OR_RETURN(CertificateInfo info, ParseCertificate(der));
    out.push_back(std::move(info));
  }
  return out;
}

std::string ToPemChain(const std::vector<std::string>& ders) {
  std::string out;
  for (const auto& der : ders) {
    std::string b64 = absl::Base64Escape(der);
    absl::StrAppend(&out, "-----BEGIN CERTIFICATE-----\n");
    for (size_t i = 0; i < b64.size(); i += 64) absl::StrAppend(&out, b64.substr(i, 64), "\n");
    absl::StrAppend(&out, "-----END CERTIFICATE-----\n");
  }
  return out;
}

absl::Status VerifyChain(const std::vector<std::string>& chain_der, absl::string_view roots_pem,
                         absl::Time at) {
  if (chain_der.empty()) return absl::InvalidArgumentError("empty chain");
  ASSIGN_OR_RETURN(std::vector<std::string> root_ders, SplitPemChain(roots_pem));
  StorePtr store(X509_STORE_new());
  std::vector<X509Ptr> owned;
  auto parse = [&](const std::string& der) -> X509* {
    const auto* p = reinterpret_cast<const uint8_t*>(der.data());
    owned.emplace_back(d2i_X509(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
    return owned.back().get();
  };
  for (const auto& der : root_ders) {
    X509* root = parse(der);
    if (root == nullptr || X509_STORE_add_cert(store.get(), root) != 1) {
      return LibraryError(absl::StatusCode::kInvalidArgument, "bad root certificate");
    }
  }
  X509* leaf = parse(chain_der[0]);
  std::unique_ptr<STACK_OF(X509), Deleter<STACK_OF(X509), FreeCertStack>> untrusted(
      sk_X509_new_null());
  for (size_t i = 1; i < chain_der.size(); ++i) {
    X509* c = parse(chain_der[i]);
    if (c == nullptr) return LibraryError(absl::StatusCode::kInvalidArgument, "bad chain cert");
    sk_X509_push(untrusted.get(), c);
  }
  if (leaf == nullptr) return LibraryError(absl::StatusCode::kInvalidArgument, "bad leaf");
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (ctx == nullptr ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "initialising verification");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(at));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat("chain does not verify: ", X509_verify_cert_error_string(err)));
  }
  return absl::OkStatus();
}

// ---- Certificate revocation lists ----------------------------------------------------------

absl::StatusOr<std::vector<std::string>> CrlDistributionPoints(absl::string_view certificate_der) {
  const auto* p = reinterpret_cast<const uint8_t*>(certificate_der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(certificate_der.size())));  // NOLINT
  if (cert == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a DER certificate");
  }
  return CrlUris(cert.get());
}

absl::StatusOr<RevocationList> RevocationList::Parse(absl::string_view crl_der,
                                                     absl::string_view issuer_der, absl::Time now) {
  if (crl_der.size() > kMaxCrlBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("CRL of ", crl_der.size(), " bytes, more than ", kMaxCrlBytes));
  }
  const auto* p = reinterpret_cast<const uint8_t*>(crl_der.data());
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(crl_der.size())));  // NOLINT
  if (crl == nullptr || p != reinterpret_cast<const uint8_t*>(crl_der.data()) + crl_der.size()) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "not a DER CRL");
  }
  const auto* q = reinterpret_cast<const uint8_t*>(issuer_der.data());
  X509Ptr issuer(d2i_X509(nullptr, &q, static_cast<long>(issuer_der.size())));  // NOLINT
  if (issuer == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "CRL issuer: not a DER certificate");
  }
  // RFC 5280 §6.3.3: the CRL names the certificate's issuer and carries its signature.
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(issuer.get())) != 0) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        "the CRL is not the certificate issuer's (its issuer "
        "name differs)");
  }
  EvpPkeyPtr key(X509_get_pubkey(issuer.get()));
  if (key == nullptr || X509_CRL_verify(crl.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError("the CRL's signature is not the issuer's");
  }
  RevocationList out;
  out.this_update_ = AsnTimeToTime(X509_CRL_get0_lastUpdate(crl.get()));
  if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get()); next != nullptr) {
    out.next_update_ = AsnTimeToTime(next);
  }
  if (out.this_update_ > now) {
    return absl::FailedPreconditionError("the CRL is not valid yet (thisUpdate is later)");
  }
  if (out.next_update_.has_value() && *out.next_update_ < now) {
    return absl::FailedPreconditionError("the CRL is stale (its nextUpdate has passed)");
  }
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (size_t i = 0; revoked != nullptr && i < sk_X509_REVOKED_num(revoked); ++i) {
    const X509_REVOKED* entry = sk_X509_REVOKED_value(revoked, i);
    ASSIGN_OR_RETURN(std::string serial, SerialHex(X509_REVOKED_get0_serialNumber(entry)));
    RevokedEntry listed;
    listed.revoked_at = AsnTimeToTime(X509_REVOKED_get0_revocationDate(entry));
    int critical = 0;
    AsnEnumeratedPtr reason(static_cast<ASN1_ENUMERATED*>(
        X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, &critical, nullptr)));
    if (reason != nullptr) {
      listed.reason = RevocationReasonFromCode(static_cast<int>(ASN1_ENUMERATED_get(reason.get())))
                          .value_or(RevocationReason::kUnspecified);
    }
    out.revoked_.emplace(std::move(serial), listed);
  }
  ERR_clear_error();
  return out;
}

std::optional<RevokedEntry> RevocationList::Find(absl::string_view serial_hex) const {
  auto it = revoked_.find(std::string(serial_hex));
  if (it == revoked_.end()) return std::nullopt;
  return it->second;
}

}  // namespace acmevault::crypto
