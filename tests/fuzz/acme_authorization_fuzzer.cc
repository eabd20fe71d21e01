// ACME authorization objects and the challenges in them (RFC 8555 §7.1.4, §7.5): the input is
// the CA's answer to an authorization's POST-as-GET and to its deactivation. Accepted: the
// client returned an authorization.
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

void CheckAuthorization(const acme::Authorization& authorization) {
  FUZZ_CHECK(!authorization.status.empty());
  FUZZ_CHECK(!authorization.identifier.value.empty());
  for (const acme::Challenge& challenge : authorization.challenges) {
    CheckOnCaOrigin(challenge.url);
    FUZZ_CHECK(authorization.Find(challenge.type) != nullptr);
  }
}

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  const std::string url = FakeCa::Url("/authz/1");
  auto authorization = h.client->GetAuthorization(Account(), url);
  bool accepted = CheckProblemMapping(authorization.status(), h.ca.fuzzed());
  if (accepted) {
    CheckAuthorization(*authorization);
    FUZZ_CHECK(authorization->url == url);
  }
  auto deactivated = h.client->DeactivateAuthorization(Account(), url);
  CheckProblemMapping(deactivated.status(), h.ca.fuzzed());
  if (deactivated.ok()) CheckAuthorization(*deactivated);
  return accepted ? Verdict::kAccepted : Verdict::kRejected;
}

}  // namespace acmevault::fuzz
