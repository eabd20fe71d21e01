// Certificate chains as a CA returns them (RFC 8555 §11.4, crypto::ParsePemChain) and single DER
// certificates (crypto::ParseCertificate, with the RFC 9773 CertID the client derives). An input
// starting with "-" is read as PEM, any other as DER. Accepted: it parsed.
#include "absl/strings/match.h"
#include "acme/client.h"
#include "crypto/x509.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

void CheckCertificate(const crypto::CertificateInfo& info, absl::string_view der) {
  FUZZ_CHECK(info.der == der);
  FUZZ_CHECK(!info.serial_hex.empty());
  auto cert_id = acme::AriCertId(der);
  FUZZ_CHECK(cert_id.ok() == !info.authority_key_id.empty());
}

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  if (!absl::StartsWith(input, "-")) {
    auto info = crypto::ParseCertificate(input);
    if (!info.ok()) return Verdict::kRejected;
    CheckCertificate(*info, input);
    return Verdict::kAccepted;
  }
  auto ders = crypto::SplitPemChain(input);
  auto chain = crypto::ParsePemChain(input);
  FUZZ_CHECK(ders.ok() || !chain.ok());
  if (!chain.ok()) return Verdict::kRejected;
  FUZZ_CHECK(chain->size() == ders->size());
  for (size_t i = 0; i < ders->size(); ++i) CheckCertificate((*chain)[i], (*ders)[i]);
  // Written back out, the chain splits into the same certificates.
  auto again = crypto::SplitPemChain(crypto::ToPemChain(*ders));
  FUZZ_CHECK(again.ok() && *again == *ders);
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
