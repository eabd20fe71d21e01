#include "crypto/kek.h"

#include <memory>

#include "crypto/aead.h"
#include "crypto/pkcs11.h"
#include "crypto/testing/softhsm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

TEST(MemoryKekTest, RefusesAKeyOfTheWrongSize) {
  auto kek = MemoryKek(SecretBytes(std::string(16, 'k')));
  EXPECT_EQ(kek.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(kek.status().message(), ::testing::HasSubstr("16 bytes"));
}

TEST(MemoryKekTest, WrapsInTheAeadFormat) {
  auto kek = MemoryKek(SecretBytes(std::string(32, 'k')));
  ASSERT_TRUE(kek.ok());
  auto wrapped = (*kek)->Wrap(std::string(32, 'd'), "aad");
  ASSERT_TRUE(wrapped.ok());
  // What crypto::Open under the same key opens: the format the vault has always stored.
  auto opened = Open(std::string(32, 'k'), *wrapped, "aad");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->view(), std::string(32, 'd'));
}

// Both kinds of KEK, one contract.
class KekConformanceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!GetParam()) {
      auto kek = MemoryKek(SecretBytes(std::string(32, 'm')));
      ASSERT_TRUE(kek.ok());
      kek_ = *std::move(kek);
      return;
    }
    auto options = testing::TestTokenOptions();
    ASSERT_TRUE(options.ok()) << options.status();
    auto token = Pkcs11Token::Open(*std::move(options));
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *std::move(token);
    auto made = token_->GenerateAesKey("kek-conformance");
    ASSERT_TRUE(made.ok() || absl::IsAlreadyExists(made)) << made;
    auto kek = token_->LoadAesKey("kek-conformance");
    ASSERT_TRUE(kek.ok()) << kek.status();
    kek_ = *std::move(kek);
  }

  std::unique_ptr<Pkcs11Token> token_;
  std::unique_ptr<KeyEncryptionKey> kek_;
};

TEST_P(KekConformanceTest, WrapUnwrapRoundTripsAndBindsTheAad) {
  const std::string data_key(32, '\x11');
  auto wrapped = kek_->Wrap(data_key, "acmevault/data-key/v1|k|ctx");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->size(), data_key.size() + kAeadOverhead);
  auto opened = kek_->Unwrap(*wrapped, "acmevault/data-key/v1|k|ctx");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), data_key);
  EXPECT_THAT(kek_->Unwrap(*wrapped, "acmevault/data-key/v1|k|other").status().message(),
              ::testing::HasSubstr("does not authenticate"));
  for (size_t i : {size_t{0}, size_t{12}, wrapped->size() - 1}) {
    std::string flipped = *wrapped;
    flipped[i] ^= 0x80;
    EXPECT_EQ(kek_->Unwrap(flipped, "acmevault/data-key/v1|k|ctx").status().code(),
              absl::StatusCode::kInvalidArgument)
        << "byte " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(MemoryAndToken, KekConformanceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "pkcs11" : "memory";
                         });

}  // namespace
}  // namespace acmevault::crypto
