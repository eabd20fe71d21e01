#include "crypto/keys.h"

#include <openssl/x509.h>

#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// The build compiles this test twice; each binary must really link the library it claims.
TEST(Backend, IsTheOneThisTargetLinks) {
#ifdef ACMEVAULT_EXPECT_BORINGSSL
  EXPECT_TRUE(CryptoBackendIsBoringSsl());
  EXPECT_EQ(CryptoBackendName(), "BoringSSL");
#else
  EXPECT_FALSE(CryptoBackendIsBoringSsl());
  EXPECT_THAT(CryptoBackendName(), StartsWith("OpenSSL 3."));
#endif
}

class KeysTest : public ::testing::TestWithParam<KeyAlgorithm> {};

TEST_P(KeysTest, GeneratedKeySignsAndTheSignatureVerifies) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->algorithm(), GetParam());
  auto sig = key->Sign("protected.payload");
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(key->public_key().Verify("protected.payload", *sig).ok());

  // Another message, a flipped bit, or another key must not verify.
  EXPECT_EQ(key->public_key().Verify("protected.payloaD", *sig).code(),
            absl::StatusCode::kInvalidArgument);
  std::string flipped = *sig;
  flipped[flipped.size() / 2] ^= 0x01;
  EXPECT_FALSE(key->public_key().Verify("protected.payload", flipped).ok());
  auto other = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->public_key().Verify("protected.payload", *sig).ok());
}

TEST_P(KeysTest, SignatureHasTheJwsSize) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  auto sig = key->Sign("x");
  ASSERT_TRUE(sig.ok());
  switch (GetParam()) {
    case KeyAlgorithm::kEcdsaP256:
      EXPECT_EQ(sig->size(), 64u);  // RFC 7518 §3.4: R||S, 32 bytes each.
      EXPECT_EQ(key->public_key().JwsAlgorithm(), "ES256");
      break;
    case KeyAlgorithm::kEcdsaP384:
      EXPECT_EQ(sig->size(), 96u);
      EXPECT_EQ(key->public_key().JwsAlgorithm(), "ES384");
      break;
    default:
      EXPECT_EQ(sig->size(), 256u);  // RSA-2048 modulus bytes.
      EXPECT_EQ(key->public_key().JwsAlgorithm(), "RS256");
  }
}

TEST_P(KeysTest, Pkcs8RoundTripKeepsTheKey) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  SecretBytes pem = key->ToPkcs8Pem();
  EXPECT_THAT(std::string(pem.view()), StartsWith("-----BEGIN PRIVATE KEY-----\n"));
  auto from_pem = PrivateKey::FromPem(pem.view());
  ASSERT_TRUE(from_pem.ok()) << from_pem.status();
  EXPECT_EQ(from_pem->public_key().ToDer(), key->public_key().ToDer());

  SecretBytes der = key->ToPkcs8Der();
  auto from_der = PrivateKey::FromDer(der.view());
  ASSERT_TRUE(from_der.ok()) << from_der.status();
  EXPECT_EQ(from_der->public_key().ToDer(), key->public_key().ToDer());

  // A signature by the re-imported key verifies under the original public key.
  auto sig = from_der->Sign("round trip");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(key->public_key().Verify("round trip", *sig).ok());

  auto pub = PublicKey::FromPem(key->public_key().ToPem());
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(pub->algorithm(), GetParam());
  EXPECT_TRUE(pub->Verify("round trip", *sig).ok());
}

INSTANTIATE_TEST_SUITE_P(Algorithms, KeysTest,
                         ::testing::Values(KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384,
                                           KeyAlgorithm::kRsa2048),
                         [](const auto& info) {
                           std::string name(KeyAlgorithmName(info.param));
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

TEST(Keys, LargerRsaKeysGenerateAndSignAtTheirSize) {
  for (auto [algorithm, bytes] : {std::pair{KeyAlgorithm::kRsa3072, 384u},
                                  std::pair{KeyAlgorithm::kRsa4096, 512u}}) {
    auto key = PrivateKey::Generate(algorithm);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(key->algorithm(), algorithm);
    auto sig = key->Sign("data");
    ASSERT_TRUE(sig.ok());
    EXPECT_EQ(sig->size(), bytes);
    EXPECT_TRUE(key->public_key().Verify("data", *sig).ok());
  }
}

TEST(Keys, GarbageIsRejectedWithoutEchoingIt) {
  auto key = PrivateKey::FromPem("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(key.status().message(), Not(HasSubstr("c2VjcmV0")));
  EXPECT_EQ(PrivateKey::FromDer("\x30\x03\x02\x01\x00").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// testdata/inconsistent_rsa_key.pem: a throwaway RSA key whose modulus is not p*q (found by the
// private_key fuzzer). Its signatures do not verify under its own public key, so a service that
// imported it would sign JWS no CA accepts.
TEST(Keys, AnInconsistentPrivateKeyIsRefusedOnImport) {
  std::ifstream in("crypto/testdata/inconsistent_rsa_key.pem");
  std::stringstream pem;
  pem << in.rdbuf();
  ASSERT_THAT(pem.str(), StartsWith("-----BEGIN RSA PRIVATE KEY-----"));
  auto key = PrivateKey::FromPem(pem.str());
  ASSERT_FALSE(key.ok());
  // BoringSSL refuses it while parsing; OpenSSL 3 parses it and the pairwise test refuses it.
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Keys, ImportedKeysSignWhatTheirPublicHalfVerifies) {
  for (KeyAlgorithm algorithm : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384,
                                 KeyAlgorithm::kRsa2048}) {
    auto generated = PrivateKey::Generate(algorithm);
    ASSERT_TRUE(generated.ok());
    auto from_pem = PrivateKey::FromPem(generated->ToPkcs8Pem().view());
    ASSERT_TRUE(from_pem.ok()) << from_pem.status();
    auto from_der = PrivateKey::FromDer(generated->ToPkcs8Der().view());
    ASSERT_TRUE(from_der.ok()) << from_der.status();
    EXPECT_TRUE(from_der->public_key().Equals(generated->public_key()));
  }
}

// Sealed keys are read back without the pairwise test, and are the same keys.
TEST(Keys, SealedDerReadsBackTheKeyThatWroteIt) {
  for (KeyAlgorithm algorithm :
       {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048}) {
    auto generated = PrivateKey::Generate(algorithm);
    ASSERT_TRUE(generated.ok());
    auto opened = PrivateKey::FromSealedDer(generated->ToPkcs8Der().view());
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(opened->algorithm(), algorithm);
    EXPECT_TRUE(opened->public_key().Equals(generated->public_key()));
    auto signature = opened->Sign("payload");
    ASSERT_TRUE(signature.ok()) << signature.status();
    EXPECT_TRUE(generated->public_key().Verify("payload", *signature).ok());
  }
  EXPECT_EQ(PrivateKey::FromSealedDer("\x30\x03\x02\x01\x00").status().code(),
            absl::StatusCode::kInvalidArgument);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// The library's own DER SubjectPublicKeyInfo of `key` (i2d_PUBKEY), against which ToDer's
// direct encoding of EC keys is checked.
std::string LibraryDer(const PublicKey& key) {
  int len = i2d_PUBKEY(key.raw(), nullptr);
  std::string out(static_cast<size_t>(len > 0 ? len : 0), '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  i2d_PUBKEY(key.raw(), &p);
  return out;
}

// EC keys are read and written without the library's generic encoders (OpenSSL 3's cost a
// millisecond a key): the results are the library's, for keys made every way the service
// makes or reads them.
TEST(Keys, EcKeysReadAndWrittenDirectlyAreTheLibrarysEncodings) {
  for (KeyAlgorithm algorithm : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384}) {
    SCOPED_TRACE(KeyAlgorithmName(algorithm));
    auto generated = PrivateKey::Generate(algorithm);
    ASSERT_TRUE(generated.ok());
    const std::string der = generated->public_key().ToDer();
    EXPECT_EQ(der, LibraryDer(generated->public_key()));
    EXPECT_EQ(der.size(), algorithm == KeyAlgorithm::kEcdsaP256 ? 91u : 120u);
    // Read back through the direct path (FromDer) and the library's (FromPem).
    auto from_der = PublicKey::FromDer(der);
    ASSERT_TRUE(from_der.ok()) << from_der.status();
    EXPECT_EQ(from_der->algorithm(), algorithm);
    EXPECT_EQ(from_der->ToDer(), der);
    auto from_pem = PublicKey::FromPem(generated->public_key().ToPem());
    ASSERT_TRUE(from_pem.ok());
    EXPECT_EQ(from_pem->ToDer(), der);
    EXPECT_EQ(LibraryDer(*from_pem), der);
    // A private key read from PKCS#8 DER (direct) and PEM (the library's decoders).
    auto key_der = PrivateKey::FromDer(generated->ToPkcs8Der().view());
    ASSERT_TRUE(key_der.ok()) << key_der.status();
    auto key_pem = PrivateKey::FromPem(generated->ToPkcs8Pem().view());
    ASSERT_TRUE(key_pem.ok()) << key_pem.status();
    EXPECT_EQ(std::string(key_der->ToPkcs8Der().view()),
              std::string(key_pem->ToPkcs8Der().view()));
    EXPECT_EQ(key_der->public_key().ToDer(), der);
    // A point off the curve is refused on the direct path too.
    std::string off = der;
    off.back() ^= 0x01;
    EXPECT_EQ(PublicKey::FromDer(off).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// testdata/p256_without_public_key.pk8: a PKCS#8 P-256 key whose ECPrivateKey omits the public
// point (RFC 5915 makes it optional); p256_without_public_key.pub.der is its public key as the
// openssl CLI writes it. secp256k1.pk8: a curve the service does not use.
TEST(Keys, Pkcs8EcKeysWithoutTheirPointOrOnAnotherCurve) {
  auto key = PrivateKey::FromDer(ReadFile("crypto/testdata/p256_without_public_key.pk8"));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->algorithm(), KeyAlgorithm::kEcdsaP256);
  EXPECT_EQ(key->public_key().ToDer(),
            ReadFile("crypto/testdata/p256_without_public_key.pub.der"));
  auto other = PrivateKey::FromDer(ReadFile("crypto/testdata/secp256k1.pk8"));
  // OpenSSL 3 parses it and refuses the curve; BoringSSL refuses it while parsing.
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Keys, AlgorithmNamesRoundTrip) {
  for (auto a : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048,
                 KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096}) {
    auto parsed = ParseKeyAlgorithm(KeyAlgorithmName(a));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, a);
  }
  auto bad = ParseKeyAlgorithm("dsa-1024");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("dsa-1024"));
}

TEST(SecretBytes, MoveLeavesTheSourceEmpty) {
  SecretBytes a(std::string("0123456789abcdef0123456789abcdef"));
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test.
  EXPECT_EQ(b.view(), "0123456789abcdef0123456789abcdef");
  b.Wipe();
  EXPECT_TRUE(b.empty());
}

TEST(WipeString, ZeroesTheWholeBufferAndEmptiesIt) {
  std::string pem = "-----BEGIN PRIVATE KEY-----\n" + std::string(100, 'k');
  pem.reserve(4 * pem.size());  // Bytes beyond the size are wiped too.
  const size_t capacity = pem.capacity();
  const char* buffer = pem.data();
  WipeString(&pem);
  EXPECT_TRUE(pem.empty());
  ASSERT_EQ(pem.data(), buffer);  // Still the same allocation: its bytes can be read.
  EXPECT_EQ(std::string(buffer, capacity), std::string(capacity, '\0'));
}

}  // namespace
}  // namespace acmevault::crypto
