#include "service/key_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace acmevault::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using crypto::KeyAlgorithm;

TEST(KeyPolicyTest, AnEmptyListAllowsEveryAlgorithmTheServiceKnows) {
  storage::TenantPolicy policy;
  EXPECT_THAT(CertificateKeyAlgorithms(policy),
              ElementsAre(KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384,
                          KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072,
                          KeyAlgorithm::kRsa4096));
  EXPECT_TRUE(AllowsCertificateKey(policy, KeyAlgorithm::kRsa4096));
  EXPECT_EQ(DefaultCertificateKey(policy), KeyAlgorithm::kEcdsaP256);
  EXPECT_TRUE(CheckCertificateKey(policy, KeyAlgorithm::kRsa2048, "csr").ok());
}

TEST(KeyPolicyTest, AListAllowsOnlyItsAlgorithmsAndNamesThemWhenRefusing) {
  storage::TenantPolicy policy;
  policy.certificate_key_algorithms = {KeyAlgorithm::kRsa3072, KeyAlgorithm::kEcdsaP384};
  EXPECT_TRUE(AllowsCertificateKey(policy, KeyAlgorithm::kEcdsaP384));
  EXPECT_FALSE(AllowsCertificateKey(policy, KeyAlgorithm::kEcdsaP256));
  // P-256 is not allowed, so a key made without a named algorithm is the policy's first.
  EXPECT_EQ(DefaultCertificateKey(policy), KeyAlgorithm::kRsa3072);
  absl::Status refused = CheckCertificateKey(policy, KeyAlgorithm::kRsa2048, "key_algorithm");
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message(),
            "key_algorithm: rsa-2048 is not allowed by the tenant's certificate key policy "
            "(allowed: rsa-3072, ecdsa-p384)");
  policy.certificate_key_algorithms = {KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kEcdsaP256};
  EXPECT_EQ(DefaultCertificateKey(policy), KeyAlgorithm::kEcdsaP256);
  EXPECT_THAT(std::string(CheckCertificateKey(policy, KeyAlgorithm::kRsa4096, "csr").message()),
              HasSubstr("(allowed: ecdsa-p384, ecdsa-p256)"));
}

}  // namespace
}  // namespace acmevault::service
