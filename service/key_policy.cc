#include "service/key_policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace acmevault::service {

std::vector<crypto::KeyAlgorithm> CertificateKeyAlgorithms(const storage::TenantPolicy& policy) {
  if (!policy.certificate_key_algorithms.empty()) return policy.certificate_key_algorithms;
  return {crypto::KeyAlgorithm::kEcdsaP256, crypto::KeyAlgorithm::kEcdsaP384,
          crypto::KeyAlgorithm::kRsa2048, crypto::KeyAlgorithm::kRsa3072,
          crypto::KeyAlgorithm::kRsa4096};
}

bool AllowsCertificateKey(const storage::TenantPolicy& policy, crypto::KeyAlgorithm algorithm) {
  const std::vector<crypto::KeyAlgorithm> allowed = CertificateKeyAlgorithms(policy);
  return std::find(allowed.begin(), allowed.end(), algorithm) != allowed.end();
}

crypto::KeyAlgorithm DefaultCertificateKey(const storage::TenantPolicy& policy) {
  if (AllowsCertificateKey(policy, crypto::KeyAlgorithm::kEcdsaP256)) {
    return crypto::KeyAlgorithm::kEcdsaP256;
  }
  return CertificateKeyAlgorithms(policy).front();
}

absl::Status CheckCertificateKey(const storage::TenantPolicy& policy,
                                 crypto::KeyAlgorithm algorithm, absl::string_view field) {
  if (AllowsCertificateKey(policy, algorithm)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": ", crypto::KeyAlgorithmName(algorithm),
      " is not allowed by the tenant's certificate key policy (allowed: ",
      absl::StrJoin(CertificateKeyAlgorithms(policy), ", ",
                    [](std::string* out, crypto::KeyAlgorithm a) {
                      absl::StrAppend(out, crypto::KeyAlgorithmName(a));
                    }),
      ")"));
}

}  // namespace acmevault::service
