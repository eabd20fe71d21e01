#include "crypto/testing/key_material.h"

#include "crypto/internal.h"

namespace acmevault::crypto::testing {
namespace {

std::string Bytes(const BIGNUM* bn, size_t width) {
  const size_t n = width == 0 ? BN_num_bytes(bn) : width;
  std::string out(n, '\0');
  BN_bn2binpad(bn, reinterpret_cast<uint8_t*>(out.data()), static_cast<int>(n));
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> SecretComponents(const PrivateKey& key) {
  EVP_PKEY* pkey = key.raw();
  if (EVP_PKEY_id(pkey) == EVP_PKEY_EC) {
    const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(pkey);
    const size_t width = key.algorithm() == KeyAlgorithm::kEcdsaP384 ? 48 : 32;
    return {{"d", Bytes(EC_KEY_get0_private_key(ec), width)}};
  }
  const RSA* rsa = EVP_PKEY_get0_RSA(pkey);
  const BIGNUM *d = nullptr, *p = nullptr, *q = nullptr, *dp = nullptr, *dq = nullptr,
               *qi = nullptr;
  RSA_get0_key(rsa, nullptr, nullptr, &d);
  RSA_get0_factors(rsa, &p, &q);
  RSA_get0_crt_params(rsa, &dp, &dq, &qi);
  return {{"d", Bytes(d, 0)},   {"p", Bytes(p, 0)},   {"q", Bytes(q, 0)},
          {"dp", Bytes(dp, 0)}, {"dq", Bytes(dq, 0)}, {"qi", Bytes(qi, 0)}};
}

}  // namespace acmevault::crypto::testing
