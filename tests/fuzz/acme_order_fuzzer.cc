// ACME order objects (RFC 8555 §7.1.3, §7.4): the input is the CA's answer to the order's
// POST-as-GET, to newOrder and to finalize. Accepted: the POST-as-GET returned an order (newOrder
// also needs a Location header; finalize reads the order as the POST-as-GET does).
#include <algorithm>

#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

// What ParseOrder promises of any order it returns.
void CheckOrder(const acme::Order& order) {
  static const char* kStatuses[] = {"pending", "ready", "processing", "valid", "invalid"};
  FUZZ_CHECK_MSG(std::any_of(std::begin(kStatuses), std::end(kStatuses),
                             [&](const char* s) { return order.status == s; }),
                 order.status);
  for (const std::string& authorization : order.authorizations) CheckOnCaOrigin(authorization);
  CheckOnCaOrigin(order.finalize);
  if (!order.certificate.empty()) CheckOnCaOrigin(order.certificate);
  if (order.status == "valid") FUZZ_CHECK(!order.certificate.empty());
}

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  AcmeHarness h(input);
  if (RepeatsKnownFinding(h.ca.fuzzed())) return Verdict::kRejected;
  auto fetched = h.client->GetOrder(Account(), FakeCa::Url("/order/1"));
  bool accepted = CheckProblemMapping(fetched.status(), h.ca.fuzzed());
  if (accepted) CheckOrder(*fetched);
  auto created = h.client->NewOrder(Account(), {.identifiers = {{"dns", "www.example.com"}}});
  CheckProblemMapping(created.status(), h.ca.fuzzed());
  if (created.ok()) {
    CheckOrder(*created);
    CheckOnCaOrigin(created->url);
    FUZZ_CHECK(created->url == h.ca.fuzzed().Header("Location"));
    FUZZ_CHECK(accepted);
  }
  acme::Order to_finalize{.url = FakeCa::Url("/order/1"), .finalize = FakeCa::Url("/finalize/1")};
  auto finalized = h.client->Finalize(Account(), to_finalize, "csr");
  CheckProblemMapping(finalized.status(), h.ca.fuzzed());
  if (finalized.ok()) CheckOrder(*finalized);
  FUZZ_CHECK(finalized.ok() == accepted);
  return accepted ? Verdict::kAccepted : Verdict::kRejected;
}

}  // namespace acmevault::fuzz
