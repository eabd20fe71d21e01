// ACME Renewal Information (RFC 9773 §4.2): the input is the CA's answer to GET
// renewalInfo/<CertID> for the test leaf certificate. Accepted: the client returned a window.
#include "acme/problem.h"
#include "crypto/x509.h"
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

const std::string& LeafDer() {
  static const std::string* der = [] {
    auto ders = crypto::SplitPemChain(ReadRunfile("crypto/testdata/leaf.pem"));
    FUZZ_CHECK_MSG(ders.ok(), ders.status().ToString());
    return new std::string((*ders)[0]);
  }();
  return *der;
}

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  auto info = h.client->GetRenewalInfo(LeafDer());
  if (!CheckProblemMapping(info.status(), h.ca.fuzzed(), 200, 200)) return Verdict::kRejected;
  FUZZ_CHECK(h.ca.fuzzed_answers() == 1);
  FUZZ_CHECK(info->window_start <= info->window_end);
  FUZZ_CHECK(info->retry_after ==
             acme::ParseRetryAfter(h.ca.fuzzed().Header("Retry-After"), h.clock.Now()));
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
