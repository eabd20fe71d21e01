// The ACME directory (RFC 8555 §7.1.1) as acme::AcmeClient::GetDirectory reads it: the input is
// the CA's whole answer to GET /dir. Accepted: the client took it as a directory.
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input, /*fuzz_directory=*/true);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  auto directory = h.client->GetDirectory();
  if (!CheckProblemMapping(directory.status(), h.ca.fuzzed(), 200, 200)) {
    return Verdict::kRejected;
  }
  // Every endpoint is on the directory's origin, and the required ones are there.
  for (const std::string* url :
       {&directory->new_nonce, &directory->new_account, &directory->new_order,
        &directory->revoke_cert}) {
    CheckOnCaOrigin(*url);
  }
  // Optional: empty when the CA does not offer them.
  if (!directory->key_change.empty()) CheckOnCaOrigin(directory->key_change);
  if (!directory->renewal_info.empty()) CheckOnCaOrigin(directory->renewal_info);
  // Cached: a second call within the TTL sends nothing.
  int answers = h.ca.fuzzed_answers();
  FUZZ_CHECK(h.client->GetDirectory().ok());
  FUZZ_CHECK(h.ca.fuzzed_answers() == answers);
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
