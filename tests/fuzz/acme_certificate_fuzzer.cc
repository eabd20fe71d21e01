// Certificate download (RFC 8555 §7.4.2): the input is the CA's answer to the certificate
// POST-as-GET, a PEM chain with its content type and Link headers (rel="alternate" chains,
// RFC 8288), which is also the answer to every alternate the client follows. The client asks
// for an issuer no chain has, so it follows every alternate it accepted. Accepted: a chain came
// back.
#include "crypto/x509.h"
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

constexpr char kIssuer[] = "No Such Issuer";

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  const std::string url = FakeCa::Url("/cert/1");
  auto chain = h.client->DownloadCertificate(Account(), url, kIssuer);
  if (!CheckProblemMapping(chain.status(), h.ca.fuzzed())) return Verdict::kRejected;
  // §11.4: what comes back parses as CERTIFICATE blocks only.
  auto certificates = crypto::ParsePemChain(chain->pem);
  FUZZ_CHECK(certificates.ok());
  FUZZ_CHECK(chain->pem == h.ca.fuzzed().body);
  FUZZ_CHECK(chain->url == url);
  for (const std::string& alternate : chain->alternates) CheckOnCaOrigin(alternate);
  // Unless the default chain was the one asked for, it and then each alternate were fetched
  // once.
  bool preferred = false;
  for (const auto& certificate : *certificates) preferred |= certificate.issuer_cn == kIssuer;
  if (!preferred) {
    FUZZ_CHECK(h.ca.fuzzed_answers() == 1 + static_cast<int>(chain->alternates.size()));
  }
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
