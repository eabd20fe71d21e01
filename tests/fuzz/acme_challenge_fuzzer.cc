// ACME challenge objects (RFC 8555 §7.1.5, §7.5.1): the input is the CA's answer to the POST
// that says a challenge is ready. Accepted: the client returned a challenge.
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  auto challenge = h.client->RespondToChallenge(Account(), FakeCa::Url("/chall/1"));
  if (!CheckProblemMapping(challenge.status(), h.ca.fuzzed())) return Verdict::kRejected;
  FUZZ_CHECK(!challenge->status.empty());
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
