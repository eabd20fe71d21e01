#include "crypto/jwk.h"

#include <openssl/obj_mac.h>
#include <openssl/rsa.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/internal.h"

namespace acmevault::crypto {
namespace {

using internal::BignumPtr;
using internal::LibraryError;

std::string BignumBytes(const BIGNUM* bn, size_t width) {
  size_t n = width == 0 ? BN_num_bytes(bn) : width;
  std::string out(n, '\0');
  BN_bn2binpad(bn, reinterpret_cast<uint8_t*>(out.data()), static_cast<int>(n));
  return out;
}

size_t CoordinateBytes(KeyAlgorithm a) { return a == KeyAlgorithm::kEcdsaP384 ? 48 : 32; }

// The members of a JWK as (name, value) pairs in lexicographic order.
std::vector<std::pair<const char*, std::string>> Members(const PublicKey& key) {
  EVP_PKEY* pkey = key.raw();
  if (EVP_PKEY_id(pkey) == EVP_PKEY_EC) {
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(pkey);
    BignumPtr x(BN_new()), y(BN_new());
    EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec), x.get(),
                                        y.get(), nullptr);
    size_t width = CoordinateBytes(key.algorithm());
    return {{"crv", key.algorithm() == KeyAlgorithm::kEcdsaP384 ? "P-384" : "P-256"},
            {"kty", "EC"},
            {"x", Base64Url(BignumBytes(x.get(), width))},
            {"y", Base64Url(BignumBytes(y.get(), width))}};
  }
  const RSA* rsa = EVP_PKEY_get0_RSA(pkey);
  const BIGNUM* n = nullptr;
  const BIGNUM* e = nullptr;
  RSA_get0_key(rsa, &n, &e, nullptr);
  return {{"e", Base64Url(BignumBytes(e, 0))},
          {"kty", "RSA"},
          {"n", Base64Url(BignumBytes(n, 0))}};
}

absl::StatusOr<std::string> Member(const nlohmann::json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("JWK member \"", name, "\" missing"));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::string> Base64Member(const nlohmann::json& jwk, const char* name) {
  ASSIGN_OR_RETURN(std::string encoded, Member(jwk, name));
  std::string out;
  if (!Base64UrlDecode(encoded, &out) || out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("JWK member \"", name, "\" is not base64url"));
  }
  return out;
}

BIGNUM* ToBignum(const std::string& bytes) {
  return BN_bin2bn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), nullptr);
}

absl::StatusOr<PublicKey> EcFromJwk(const nlohmann::json& jwk) {
  ASSIGN_OR_RETURN(std::string crv, Member(jwk, "crv"));
  int nid;
  size_t width;
  if (crv == "P-256") {
    nid = NID_X9_62_prime256v1;
    width = 32;
  } else if (crv == "P-384") {
    nid = NID_secp384r1;
    width = 48;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported JWK curve \"", crv, "\""));
  }
  ASSIGN_OR_RETURN(std::string x, Base64Member(jwk, "x"));
  ASSIGN_OR_RETURN(std::string y, Base64Member(jwk, "y"));
  if (x.size() != width || y.size() != width) {
    return absl::InvalidArgumentError("JWK coordinates have the wrong length for the curve");
  }
  internal::EcKeyPtr ec = internal::NewEcKey(nid);
  BignumPtr bx(ToBignum(x)), by(ToBignum(y));
  if (ec == nullptr || bx == nullptr || by == nullptr ||
      EC_KEY_set_public_key_affine_coordinates(ec.get(), bx.get(), by.get()) != 1) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "JWK point is not on the curve");
  }
  internal::EvpPkeyPtr pkey(EVP_PKEY_new());
  if (pkey == nullptr || EVP_PKEY_assign_EC_KEY(pkey.get(), ec.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "building EC key");
  }
  ec.release();
  return PublicKey::Adopt(pkey.release());
}

absl::StatusOr<PublicKey> RsaFromJwk(const nlohmann::json& jwk) {
  ASSIGN_OR_RETURN(std::string n, Base64Member(jwk, "n"));
  ASSIGN_OR_RETURN(std::string e, Base64Member(jwk, "e"));
  std::unique_ptr<RSA, internal::Deleter<RSA, RSA_free>> rsa(RSA_new());
  BignumPtr bn(ToBignum(n)), be(ToBignum(e));
  if (rsa == nullptr || bn == nullptr || be == nullptr ||
      RSA_set0_key(rsa.get(), bn.get(), be.get(), nullptr) != 1) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "building RSA key");
  }
  bn.release();
  be.release();
  internal::EvpPkeyPtr pkey(EVP_PKEY_new());
  if (pkey == nullptr || EVP_PKEY_assign_RSA(pkey.get(), rsa.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "building RSA key");
  }
  rsa.release();
  return PublicKey::Adopt(pkey.release());
}

}  // namespace

nlohmann::json PublicJwk(const PublicKey& key) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& [name, value] : Members(key)) out[name] = value;
  return out;
}

std::string CanonicalJwk(const PublicKey& key) {
  std::string out = "{";
  bool first = true;
  for (auto& [name, value] : Members(key)) {
    // Values are base64url or fixed names: nothing needs JSON escaping.
    absl::StrAppend(&out, first ? "" : ",", "\"", name, "\":\"", value, "\"");
    first = false;
  }
  return out + "}";
}

std::string Thumbprint(const PublicKey& key) { return Base64Url(Sha256(CanonicalJwk(key))); }

absl::StatusOr<PublicKey> PublicKeyFromJwk(const nlohmann::json& jwk) {
  if (!jwk.is_object()) return absl::InvalidArgumentError("JWK is not a JSON object");
  for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "k"}) {
    if (jwk.contains(secret)) {
      return absl::InvalidArgumentError("JWK carries private key members");
    }
  }
  ASSIGN_OR_RETURN(std::string kty, Member(jwk, "kty"));
  if (kty == "EC") return EcFromJwk(jwk);
  if (kty == "RSA") return RsaFromJwk(jwk);
  return absl::InvalidArgumentError(absl::StrCat("unsupported JWK kty \"", kty, "\""));
}

std::string KeyAuthorization(absl::string_view token, const PublicKey& account_key) {
  return absl::StrCat(token, ".", Thumbprint(account_key));
}

std::string Dns01TxtValue(absl::string_view key_authorization) {
  return Base64Url(Sha256(key_authorization));
}

std::string TlsAlpn01Digest(absl::string_view key_authorization) {
  return Sha256(key_authorization);
}

}  // namespace acmevault::crypto
