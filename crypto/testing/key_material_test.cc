#include "crypto/testing/key_material.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::_;

// Every component is in the key's own PKCS#8 encoding (so these are the key's bytes, not
// something else of the right length), and none is empty.
void ExpectEachInPkcs8(const PrivateKey& key,
                       const std::vector<std::pair<std::string, std::string>>& parts) {
  const SecretBytes der = key.ToPkcs8Der();
  const std::string der_text(der.view());
  for (const auto& [name, value] : parts) {
    EXPECT_FALSE(value.empty()) << name;
    EXPECT_NE(der_text.find(value), std::string::npos) << name << " is not in the key's DER";
  }
}

TEST(SecretComponentsTest, EcKeysHaveAPaddedD) {
  for (KeyAlgorithm a : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384}) {
    auto key = PrivateKey::Generate(a);
    ASSERT_TRUE(key.ok());
    auto parts = SecretComponents(*key);
    ASSERT_THAT(parts, ElementsAre(Pair("d", _)));
    EXPECT_EQ(parts[0].second.size(), a == KeyAlgorithm::kEcdsaP384 ? 48u : 32u);
    ExpectEachInPkcs8(*key, parts);
  }
}

TEST(SecretComponentsTest, RsaKeysHaveSixComponents) {
  auto key = PrivateKey::Generate(KeyAlgorithm::kRsa2048);
  ASSERT_TRUE(key.ok());
  auto parts = SecretComponents(*key);
  ASSERT_THAT(parts, ElementsAre(Pair("d", _), Pair("p", _), Pair("q", _), Pair("dp", _),
                                 Pair("dq", _), Pair("qi", _)));
  ExpectEachInPkcs8(*key, parts);
}

}  // namespace
}  // namespace acmevault::crypto::testing
