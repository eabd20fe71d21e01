// One suite for every Signer: the in-memory key and the PKCS#11 key must produce JWS that verify
// with their public key, in the JWS signature format (R||S of the curve's size for ECDSA).
#include <functional>
#include <memory>
#include <string>

#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "crypto/keys.h"
#include "crypto/pkcs11.h"
#include "crypto/signer.h"
#include "crypto/testing/softhsm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

struct Kind {
  std::string name;
  bool token = false;
  KeyAlgorithm algorithm;
};

class SignerConformanceTest : public ::testing::TestWithParam<Kind> {
 protected:
  std::unique_ptr<Signer> Make() {
    const Kind& kind = GetParam();
    if (!kind.token) {
      auto key = PrivateKey::Generate(kind.algorithm);
      EXPECT_TRUE(key.ok()) << key.status();
      return key.ok() ? std::make_unique<PrivateKey>(*std::move(key)) : nullptr;
    }
    Pkcs11Token* token = testing::SharedTestToken();
    EXPECT_NE(token, nullptr) << "the test token did not open";
    if (token == nullptr) return nullptr;
    auto pair = token->GenerateKeyPair(kind.algorithm);
    EXPECT_TRUE(pair.ok()) << pair.status();
    if (!pair.ok()) return nullptr;
    auto signer = token->LoadSigner(pair->object_id);
    EXPECT_TRUE(signer.ok()) << signer.status();
    return signer.ok() ? *std::move(signer) : nullptr;
  }
};

TEST_P(SignerConformanceTest, SignaturesVerifyWithThePublicKeyOnly) {
  auto signer = Make();
  ASSERT_NE(signer, nullptr);
  EXPECT_EQ(signer->algorithm(), GetParam().algorithm);
  auto signature = signer->Sign("acme request");
  ASSERT_TRUE(signature.ok()) << signature.status();
  // Verified by a PublicKey parsed from the DER alone: nothing but the public half is needed.
  auto public_only = PublicKey::FromDer(signer->public_key().ToDer());
  ASSERT_TRUE(public_only.ok());
  EXPECT_TRUE(public_only->Verify("acme request", *signature).ok());
  EXPECT_FALSE(public_only->Verify("acme request!", *signature).ok());
  auto other = Make();
  ASSERT_NE(other, nullptr);
  EXPECT_FALSE(other->public_key().Verify("acme request", *signature).ok());
}

TEST_P(SignerConformanceTest, SignatureHasTheJwsFormat) {
  auto signer = Make();
  ASSERT_NE(signer, nullptr);
  auto signature = signer->Sign("x");
  ASSERT_TRUE(signature.ok()) << signature.status();
  switch (GetParam().algorithm) {
    case KeyAlgorithm::kEcdsaP256:
      EXPECT_EQ(signature->size(), 64u) << "R||S, 32 bytes each";
      break;
    case KeyAlgorithm::kEcdsaP384:
      EXPECT_EQ(signature->size(), 96u) << "R||S, 48 bytes each";
      break;
    default:
      EXPECT_EQ(signature->size(), 256u) << "PKCS#1 v1.5, the modulus size";
      // PKCS#1 v1.5 is deterministic: the same input signs the same.
      auto again = signer->Sign("x");
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(*again, *signature);
  }
}

TEST_P(SignerConformanceTest, JwsWithJwkAndKidVerify) {
  auto signer = Make();
  ASSERT_NE(signer, nullptr);
  auto with_jwk = SignJws(*signer, {"https://ca.test/new-account", "nonce-1", ""}, "{}");
  ASSERT_TRUE(with_jwk.ok()) << with_jwk.status();
  auto parsed = ParseJws(*with_jwk);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->header["alg"], std::string(signer->public_key().JwsAlgorithm()));
  EXPECT_EQ(parsed->header["jwk"], PublicJwk(signer->public_key()));
  EXPECT_FALSE(parsed->header["jwk"].contains("d"));
  auto from_jwk = PublicKeyFromJwk(parsed->header["jwk"]);
  ASSERT_TRUE(from_jwk.ok());
  EXPECT_EQ(Thumbprint(*from_jwk), Thumbprint(signer->public_key()));
  EXPECT_TRUE(VerifyJws(*parsed, *from_jwk).ok());

  auto with_kid = SignJws(*signer, {"https://ca.test/order", "nonce-2", "https://ca.test/acct/1"}, "");
  ASSERT_TRUE(with_kid.ok()) << with_kid.status();
  auto parsed_kid = ParseJws(*with_kid);
  ASSERT_TRUE(parsed_kid.ok());
  EXPECT_EQ(parsed_kid->header["kid"], "https://ca.test/acct/1");
  EXPECT_FALSE(parsed_kid->header.contains("jwk"));
  EXPECT_TRUE(VerifyJws(*parsed_kid, signer->public_key()).ok());
}

INSTANTIATE_TEST_SUITE_P(
    BothSigners, SignerConformanceTest,
    ::testing::Values(Kind{"memory_p256", false, KeyAlgorithm::kEcdsaP256},
                      Kind{"memory_p384", false, KeyAlgorithm::kEcdsaP384},
                      Kind{"memory_rsa2048", false, KeyAlgorithm::kRsa2048},
                      Kind{"pkcs11_p256", true, KeyAlgorithm::kEcdsaP256},
                      Kind{"pkcs11_p384", true, KeyAlgorithm::kEcdsaP384},
                      Kind{"pkcs11_rsa2048", true, KeyAlgorithm::kRsa2048}),
    [](const ::testing::TestParamInfo<Kind>& info) { return info.param.name; });

}  // namespace
}  // namespace acmevault::crypto
