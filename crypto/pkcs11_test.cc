#include "crypto/pkcs11.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "crypto/testing/softhsm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

using ::testing::HasSubstr;

class Pkcs11TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto options = testing::TestTokenOptions();
    ASSERT_TRUE(options.ok()) << options.status();
    auto token = Pkcs11Token::Open(*std::move(options));
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *std::move(token);
  }

  const TokenKeyObject* Find(const std::vector<TokenKeyObject>& objects, const std::string& id) {
    for (const auto& o : objects) {
      if (o.object_id == id) return &o;
    }
    return nullptr;
  }

  std::unique_ptr<Pkcs11Token> token_;
};

TEST(Pkcs11OpenTest, MissingModuleIsFailedPreconditionNamingIt) {
  Pkcs11Options options;
  options.module_path = "/nonexistent/libnothing.so";
  options.token_label = "x";
  auto token = Pkcs11Token::Open(std::move(options));
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(token.status().message(), HasSubstr("/nonexistent/libnothing.so"));
  EXPECT_THAT(token.status().message(), HasSubstr("could not be loaded"));
}

TEST(Pkcs11OpenTest, LibraryThatIsNotAModuleIsRefused) {
  Pkcs11Options options;
  options.module_path = "libm.so.6";
  options.token_label = "x";
  auto token = Pkcs11Token::Open(std::move(options));
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(token.status().message(), HasSubstr("C_GetFunctionList"));
}

TEST(Pkcs11OpenTest, MissingTokenIsFailedPreconditionListingThePresentOnes) {
  auto options = testing::TestTokenOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  options->token_label = "no-such-token";
  auto token = Pkcs11Token::Open(*std::move(options));
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(token.status().message(), HasSubstr("no PKCS#11 token labelled \"no-such-token\""));
  EXPECT_THAT(token.status().message(), HasSubstr("\"acmevault-test\""));
}

TEST(Pkcs11OpenTest, WrongPinIsPermissionDeniedWithoutThePin) {
  auto options = testing::TestTokenOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  options->pin = SecretBytes("wrong-pin-4711");
  auto token = Pkcs11Token::Open(*std::move(options));
  EXPECT_EQ(token.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(token.status().message(), HasSubstr("refused the PIN"));
  EXPECT_THAT(token.status().message(), ::testing::Not(HasSubstr("4711")));
}

TEST(Pkcs11OpenTest, NoModuleOrNoTokenIsInvalidArgument) {
  EXPECT_EQ(Pkcs11Token::Open({}).status().code(), absl::StatusCode::kInvalidArgument);
  Pkcs11Options options;
  options.module_path = "/usr/lib/softhsm/libsofthsm2.so";
  EXPECT_EQ(Pkcs11Token::Open(std::move(options)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11TokenTest, GeneratedKeysSignAndVerify) {
  for (KeyAlgorithm algorithm :
       {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048}) {
    SCOPED_TRACE(std::string(KeyAlgorithmName(algorithm)));
    auto pair = token_->GenerateKeyPair(algorithm);
    ASSERT_TRUE(pair.ok()) << pair.status();
    EXPECT_EQ(pair->public_key.algorithm(), algorithm);
    EXPECT_THAT(pair->object_id, ::testing::StartsWith("acmevault-"));
    auto signer = token_->LoadSigner(pair->object_id);
    ASSERT_TRUE(signer.ok()) << signer.status();
    EXPECT_TRUE((*signer)->public_key().Equals(pair->public_key));
    auto signature = (*signer)->Sign("payload");
    ASSERT_TRUE(signature.ok()) << signature.status();
    EXPECT_TRUE(pair->public_key.Verify("payload", *signature).ok());
    EXPECT_FALSE(pair->public_key.Verify("other payload", *signature).ok());
  }
}

TEST_F(Pkcs11TokenTest, EveryKeyMadeIsSensitiveAndNotExtractable) {
  auto pair = token_->GenerateKeyPair(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE(token_->GenerateAesKey("kek-protection").ok());
  auto objects = token_->ListKeyObjects();
  ASSERT_TRUE(objects.ok()) << objects.status();
  const TokenKeyObject* key = Find(*objects, pair->object_id);
  const TokenKeyObject* kek = Find(*objects, "kek-protection");
  ASSERT_NE(key, nullptr);
  ASSERT_NE(kek, nullptr);
  EXPECT_TRUE(kek->secret_key);
  for (const TokenKeyObject* o : {key, kek}) {
    EXPECT_TRUE(o->sensitive);
    EXPECT_FALSE(o->extractable);
    EXPECT_TRUE(o->always_sensitive);
    EXPECT_TRUE(o->never_extractable);
    EXPECT_FALSE(o->value_readable);
  }
}

TEST_F(Pkcs11TokenTest, DestroyedKeyIsFailedPreconditionNamingTheObject) {
  auto pair = token_->GenerateKeyPair(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto signer = token_->LoadSigner(pair->object_id);
  ASSERT_TRUE(signer.ok()) << signer.status();
  ASSERT_TRUE((*signer)->Sign("before").ok());
  ASSERT_TRUE(token_->DestroyKeyPair(pair->object_id).ok());
  EXPECT_TRUE(token_->DestroyKeyPair(pair->object_id).ok()) << "gone already is OK";

  auto signed_after = (*signer)->Sign("after");
  EXPECT_EQ(signed_after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(signed_after.status().message(), HasSubstr(pair->object_id));
  auto loaded = token_->LoadSigner(pair->object_id);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr(pair->object_id));
  auto objects = token_->ListKeyObjects();
  ASSERT_TRUE(objects.ok());
  EXPECT_EQ(Find(*objects, pair->object_id), nullptr);
}

TEST_F(Pkcs11TokenTest, SessionsClosedUnderneathAreReopened) {
  auto pair = token_->GenerateKeyPair(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto signer = token_->LoadSigner(pair->object_id);
  ASSERT_TRUE(signer.ok());
  ASSERT_TRUE(token_->SimulateRestartForTesting(/*finalize=*/false).ok());
  auto signature = (*signer)->Sign("after the sessions were closed");
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(pair->public_key.Verify("after the sessions were closed", *signature).ok());
}

TEST_F(Pkcs11TokenTest, FinalizedModuleIsInitialisedAgain) {
  auto pair = token_->GenerateKeyPair(KeyAlgorithm::kEcdsaP384);
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto signer = token_->LoadSigner(pair->object_id);
  ASSERT_TRUE(signer.ok());
  ASSERT_TRUE(token_->GenerateAesKey("kek-restart").ok());
  auto kek = token_->LoadAesKey("kek-restart");
  ASSERT_TRUE(kek.ok()) << kek.status();
  auto wrapped = (*kek)->Wrap(std::string(32, 'k'), "aad");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();

  ASSERT_TRUE(token_->SimulateRestartForTesting(/*finalize=*/true).ok());
  auto signature = (*signer)->Sign("after a restart");
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(pair->public_key.Verify("after a restart", *signature).ok());
  ASSERT_TRUE(token_->SimulateRestartForTesting(/*finalize=*/true).ok());
  auto unwrapped = (*kek)->Unwrap(*wrapped, "aad");
  ASSERT_TRUE(unwrapped.ok()) << unwrapped.status();
  EXPECT_EQ(unwrapped->view(), std::string(32, 'k'));
}

TEST_F(Pkcs11TokenTest, ConcurrentSignersShareTheSessionPool) {
  auto pair = token_->GenerateKeyPair(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto signer = token_->LoadSigner(pair->object_id);
  ASSERT_TRUE(signer.ok());
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string data = "message " + std::to_string(t * 100 + i);
        auto signature = (*signer)->Sign(data);
        if (signature.ok() && pair->public_key.Verify(data, *signature).ok()) ++verified;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(verified.load(), 200);
}

TEST_F(Pkcs11TokenTest, AesKeyWrapsAndAuthenticates) {
  ASSERT_TRUE(token_->GenerateAesKey("kek-wrap").ok());
  EXPECT_EQ(token_->GenerateAesKey("kek-wrap").code(), absl::StatusCode::kAlreadyExists);
  auto kek = token_->LoadAesKey("kek-wrap");
  ASSERT_TRUE(kek.ok()) << kek.status();
  const std::string data_key(32, '\x5a');
  auto wrapped = (*kek)->Wrap(data_key, "context-a");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->size(), 60u) << "nonce || ciphertext || tag, as the in-memory KEK's";
  EXPECT_EQ(wrapped->find(data_key), std::string::npos);
  auto again = (*kek)->Wrap(data_key, "context-a");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *wrapped) << "a fresh nonce each time";

  auto opened = (*kek)->Unwrap(*wrapped, "context-a");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), data_key);
  auto other_aad = (*kek)->Unwrap(*wrapped, "context-b");
  EXPECT_EQ(other_aad.status().code(), absl::StatusCode::kInvalidArgument);
  std::string flipped = *wrapped;
  flipped[20] ^= 1;
  EXPECT_EQ((*kek)->Unwrap(flipped, "context-a").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*kek)->Unwrap("short", "context-a").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11TokenTest, MissingAesKeyIsFailedPreconditionNamingIt) {
  auto kek = token_->LoadAesKey("kek-never-made");
  EXPECT_EQ(kek.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(kek.status().message(), HasSubstr("\"kek-never-made\""));
}

}  // namespace
}  // namespace acmevault::crypto
