#include "tests/security/canary_scan.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::security {
namespace {

using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::Contains;
using ::testing::Not;

crypto::PrivateKey Key(crypto::KeyAlgorithm a) {
  auto key = crypto::PrivateKey::Generate(a);
  EXPECT_TRUE(key.ok());
  return *std::move(key);
}

// Every encoding of every kind of key is found when planted in surrounding text, and only
// under the key it belongs to.
TEST(CanaryScannerTest, FindsEveryEncodingOfEveryKeyPlanted) {
  CanaryScanner scanner;
  std::vector<crypto::PrivateKey> keys;
  for (auto a : {crypto::KeyAlgorithm::kEcdsaP256, crypto::KeyAlgorithm::kEcdsaP384,
                 crypto::KeyAlgorithm::kRsa2048}) {
    keys.push_back(Key(a));
    scanner.AddKey(absl::StrCat("key", keys.size()), keys.back());
  }
  for (size_t k = 0; k < keys.size(); ++k) {
    for (const auto& [encoding, bytes] : CanaryScanner::Encodings(keys[k])) {
      const std::string text = absl::StrCat("{\"msg\":\"x\",\"detail\":\"", bytes, "\"}\n");
      auto found = scanner.Scan("log", text);
      EXPECT_THAT(found, Contains(::testing::AllOf(
                             Field(&CanaryScanner::Finding::key, absl::StrCat("key", k + 1)),
                             Field(&CanaryScanner::Finding::encoding, encoding))))
          << encoding;
      for (const auto& f : found) EXPECT_EQ(f.key, absl::StrCat("key", k + 1));
    }
  }
}

// A PEM quoted in a JSON log line (newlines escaped) is still found by its body lines.
TEST(CanaryScannerTest, FindsAPemWhoseNewlinesWereEscaped) {
  CanaryScanner scanner;
  crypto::PrivateKey key = Key(crypto::KeyAlgorithm::kRsa2048);
  scanner.AddKey("k", key);
  const std::string pem(key.ToPkcs8Pem().view());
  const std::string line =
      absl::StrCat("{\"error\":\"", absl::StrReplaceAll(pem, {{"\n", "\\n"}}), "\"}");
  EXPECT_THAT(scanner.Scan("log", line), Not(IsEmpty()));
}

TEST(CanaryScannerTest, FindsNothingInTextWithoutTheKeys) {
  CanaryScanner scanner;
  scanner.AddKey("k", Key(crypto::KeyAlgorithm::kEcdsaP256));
  crypto::PrivateKey other = Key(crypto::KeyAlgorithm::kEcdsaP256);
  std::string text;
  for (const auto& [encoding, bytes] : CanaryScanner::Encodings(other)) {
    absl::StrAppend(&text, bytes, "\n");
  }
  absl::StrAppend(&text, other.public_key().ToPem());
  EXPECT_THAT(scanner.Scan("log", text), IsEmpty());
  EXPECT_EQ(scanner.keys(), 1u);
  EXPECT_THAT(CanaryScanner::Encodings(other), SizeIs(scanner.needles()));
}

}  // namespace
}  // namespace acmevault::security
