#include "crypto/aead.h"

#include <random>
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "crypto/keys.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

using ::testing::HasSubstr;

std::string Hex(absl::string_view hex) { return absl::HexStringToBytes(hex); }

void ExpectNotAuthentic(const absl::StatusOr<SecretBytes>& opened) {
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(opened.status().message(), "sealed data does not authenticate");
}

// Known answers: the GCM specification (McGrew and Viega, "The Galois/Counter Mode of Operation",
// Appendix B, test cases 13 to 16, the 256-bit-key cases) and one NIST CAVP gcmEncryptExtIV256
// vector (96-bit IV, 160-bit AAD, 128-bit tag).
struct KnownAnswer {
  const char* name;
  const char* key;
  const char* nonce;
  const char* plaintext;
  const char* aad;
  const char* ciphertext;
  const char* tag;
};

constexpr char kSpecKey[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr char kSpecPlaintext[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr char kSpecCiphertext[] =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

std::string Prefix(const char* hex, size_t bytes) { return std::string(hex, 2 * bytes); }

const KnownAnswer kKnownAnswers[] = {
    {"GcmSpecCase13", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"GcmSpecCase14", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"GcmSpecCase15", kSpecKey, "cafebabefacedbaddecaf888", kSpecPlaintext, "", kSpecCiphertext,
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"NistCavpEncryptExtIV256", "83688deb4af8007f9b713b47cfa6c73e35ea7a3aa4ecdb414dded03bf7a0fd3a",
     "0b459724904e010a46901cf3", "33d893a2114ce06fc15d55e454cf90c3",
     "794a14ccd178c8ebfd1379dc704c5e208f9d8424", "cc66bee423e3fcd4c0865715e9586696",
     "0fb291bd3dba94a1dfd8b286cfb97ac5"},
};

// The build compiles this test twice; each binary must really link the library it claims.
TEST(Backend, IsTheOneThisTargetLinks) {
#ifdef ACMEVAULT_EXPECT_BORINGSSL
  EXPECT_TRUE(CryptoBackendIsBoringSsl());
#else
  EXPECT_FALSE(CryptoBackendIsBoringSsl());
#endif
}

TEST(AeadKnownAnswer, SealWithNonceGivesTheExactBytesAndOpenInvertsIt) {
  for (const KnownAnswer& v : kKnownAnswers) {
    SCOPED_TRACE(v.name);
    auto sealed = SealWithNonce(Hex(v.key), Hex(v.nonce), Hex(v.plaintext), Hex(v.aad));
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_EQ(absl::BytesToHexString(*sealed),
              absl::StrCat(v.nonce, v.ciphertext, v.tag));
    auto opened = Open(Hex(v.key), *sealed, Hex(v.aad));
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(absl::BytesToHexString(opened->view()), v.plaintext);
  }
}

// Test case 16: case 15's key and nonce, a 60-byte plaintext and 20 bytes of AAD.
TEST(AeadKnownAnswer, GcmSpecCase16WithAad) {
  const std::string aad = Hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  auto sealed = SealWithNonce(Hex(kSpecKey), Hex("cafebabefacedbaddecaf888"),
                              Hex(Prefix(kSpecPlaintext, 60)), aad);
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(absl::BytesToHexString(*sealed),
            absl::StrCat("cafebabefacedbaddecaf888", Prefix(kSpecCiphertext, 60),
                         "76fc6ece0f4e1768cddf8853bb2d551b"));
  ExpectNotAuthentic(Open(Hex(kSpecKey), *sealed, ""));
  auto opened = Open(Hex(kSpecKey), *sealed, aad);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(absl::BytesToHexString(opened->view()), Prefix(kSpecPlaintext, 60));
}

class AeadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = RandomSecret(kAeadKeySize);
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = std::move(*key);
  }
  SecretBytes key_;
};

TEST_F(AeadTest, RoundTripWithAFreshNonceEachTime) {
  const std::string plaintext = "-----BEGIN PRIVATE KEY-----\nnot really\n";
  auto a = Seal(key_.view(), plaintext, "tenant=1");
  auto b = Seal(key_.view(), plaintext, "tenant=1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), plaintext.size() + kAeadOverhead);
  EXPECT_NE(a->substr(0, kAeadNonceSize), b->substr(0, kAeadNonceSize));
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->find(plaintext), std::string::npos);
  auto opened = Open(key_.view(), *a, "tenant=1");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), plaintext);
}

TEST_F(AeadTest, EmptyPlaintextAndEmptyAadRoundTrip) {
  auto sealed = Seal(key_.view(), "", "");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), kAeadOverhead);
  auto opened = Open(key_.view(), *sealed, "");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->empty());
}

TEST_F(AeadTest, EverySingleBitFlipIsRejected) {
  const std::string aad = "tenant=7;account=3;version=2";
  auto sealed = Seal(key_.view(), std::string(121, 'k'), aad);
  ASSERT_TRUE(sealed.ok());
  std::mt19937 rng(20240611);  // Fixed seed: the same 1,000 flips on every run.
  std::uniform_int_distribution<size_t> bit(0, sealed->size() * 8 - 1);
  std::set<size_t> flipped;
  for (int i = 0; i < 1000; ++i) {
    size_t b = bit(rng);
    flipped.insert(b);
    std::string tampered = *sealed;
    tampered[b / 8] = static_cast<char>(tampered[b / 8] ^ (1 << (b % 8)));
    SCOPED_TRACE(b);
    ExpectNotAuthentic(Open(key_.view(), tampered, aad));
  }
  // Flips landed in the nonce, the ciphertext and the tag alike.
  EXPECT_LT(*flipped.begin(), kAeadNonceSize * 8);
  EXPECT_GE(*flipped.rbegin(), (sealed->size() - kAeadTagSize) * 8);
  EXPECT_GT(flipped.size(), 600u);
}

TEST_F(AeadTest, WrongAadWrongKeyOrTruncationIsRejected) {
  auto sealed = Seal(key_.view(), "secret", "tenant=1;account=1;version=1");
  ASSERT_TRUE(sealed.ok());
  ExpectNotAuthentic(Open(key_.view(), *sealed, "tenant=2;account=1;version=1"));
  ExpectNotAuthentic(Open(key_.view(), *sealed, ""));
  auto other = RandomSecret(kAeadKeySize);
  ASSERT_TRUE(other.ok());
  ExpectNotAuthentic(Open(other->view(), *sealed, "tenant=1;account=1;version=1"));
  ExpectNotAuthentic(Open(key_.view(), sealed->substr(0, sealed->size() - 1),
                          "tenant=1;account=1;version=1"));
  ExpectNotAuthentic(Open(key_.view(), sealed->substr(0, kAeadOverhead - 1), ""));
  ExpectNotAuthentic(Open(key_.view(), "", ""));
  ExpectNotAuthentic(Open(key_.view(), *sealed + "x", "tenant=1;account=1;version=1"));
}

TEST_F(AeadTest, KeyAndNonceSizesAreChecked) {
  auto short_key = Seal(std::string(16, 'k'), "x", "");
  EXPECT_EQ(short_key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(short_key.status().message(), "AES-256-GCM key is 16 bytes, want 32");
  auto bad_open = Open(std::string(33, 'k'), std::string(40, 's'), "");
  EXPECT_EQ(bad_open.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_open.status().message(), HasSubstr("33 bytes"));
  auto bad_nonce = SealWithNonce(key_.view(), std::string(8, 'n'), "x", "");
  EXPECT_EQ(bad_nonce.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_nonce.status().message(), "AES-GCM nonce is 8 bytes, want 12");
}

TEST(RandomSecret, HasTheSizeAskedForAndDiffers) {
  auto a = RandomSecret(32);
  auto b = RandomSecret(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(a->view(), b->view());
  auto none = RandomSecret(0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace acmevault::crypto
