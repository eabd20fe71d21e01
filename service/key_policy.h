// A tenant's certificate key policy (issue 11, item 9): which key algorithms its hosts' CSRs may
// use and the service may generate. Pure functions of the tenant's policy, shared by
// IssueCertificate and the background renewal.
#ifndef ACMEVAULT_SERVICE_KEY_POLICY_H_
#define ACMEVAULT_SERVICE_KEY_POLICY_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "crypto/keys.h"
#include "storage/types.h"

namespace acmevault::service {

// The policy's list, or every algorithm the service knows (ECDSA P-256 and P-384, RSA 2048,
// 3072 and 4096) when the list is empty.
std::vector<crypto::KeyAlgorithm> CertificateKeyAlgorithms(const storage::TenantPolicy& policy);

bool AllowsCertificateKey(const storage::TenantPolicy& policy, crypto::KeyAlgorithm algorithm);

// The algorithm of a key the service makes when the request names none: ECDSA P-256 when the
// policy allows it, else the policy's first algorithm.
crypto::KeyAlgorithm DefaultCertificateKey(const storage::TenantPolicy& policy);

// OK when the policy allows `algorithm`; otherwise INVALID_ARGUMENT "<field>: <algorithm> is not
// allowed by the tenant's certificate key policy (allowed: ...)".
absl::Status CheckCertificateKey(const storage::TenantPolicy& policy,
                                 crypto::KeyAlgorithm algorithm, absl::string_view field);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_KEY_POLICY_H_
