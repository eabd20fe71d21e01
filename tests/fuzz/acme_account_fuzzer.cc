// ACME account objects (RFC 8555 §7.1.2, §7.3): the input is the CA's answer to the account's
// POST-as-GET and to newAccount. Accepted: the POST-as-GET returned an account (newAccount
// also needs a Location header).
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  auto fetched = h.client->GetAccount(Account());
  bool accepted = CheckProblemMapping(fetched.status(), h.ca.fuzzed());
  if (accepted) FUZZ_CHECK(fetched->url == Account().url);
  auto created = h.client->NewAccount(AccountKey(), {.contact = {"mailto:ops@example.com"}});
  CheckProblemMapping(created.status(), h.ca.fuzzed());
  if (created.ok()) {
    // The account URL is the Location the CA gave, on the CA's origin.
    CheckOnCaOrigin(created->url);
    FUZZ_CHECK(created->url == h.ca.fuzzed().Header("Location"));
    FUZZ_CHECK(accepted);
  }
  return accepted ? Verdict::kAccepted : Verdict::kRejected;
}

}  // namespace acmevault::fuzz
