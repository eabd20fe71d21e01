// CSRs (RFC 2986) as crypto::ParseCsr reads a host's request, PEM or DER, and crypto::CheckCsr
// over what it accepts. Accepted: it parsed and its self-signature verified.
#include "crypto/x509.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  auto csr = crypto::ParseCsr(input);
  if (!csr.ok()) return Verdict::kRejected;
  // The DER it keeps is the same request.
  auto again = crypto::ParseCsr(csr->der);
  FUZZ_CHECK_MSG(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->der == csr->der);
  FUZZ_CHECK(again->dns_names == csr->dns_names);
  FUZZ_CHECK(again->public_key.Equals(csr->public_key));
  // Its own names, its own key type and no forbidden key pass the check; its own key, forbidden,
  // does not.
  const std::vector<crypto::KeyAlgorithm> all = {
      crypto::KeyAlgorithm::kEcdsaP256, crypto::KeyAlgorithm::kEcdsaP384,
      crypto::KeyAlgorithm::kRsa2048, crypto::KeyAlgorithm::kRsa3072,
      crypto::KeyAlgorithm::kRsa4096};
  absl::Status own = crypto::CheckCsr(*csr, csr->dns_names, {}, all);
  FUZZ_CHECK_MSG(own.ok(), own.ToString());
  FUZZ_CHECK(!crypto::CheckCsr(*csr, csr->dns_names, {csr->public_key}, all).ok());
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
