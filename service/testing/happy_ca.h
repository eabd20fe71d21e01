// Test helpers for service tests over acme/testing/scripted_server.h.
#ifndef ACMEVAULT_SERVICE_TESTING_HAPPY_CA_H_
#define ACMEVAULT_SERVICE_TESTING_HAPPY_CA_H_

#include <string>

#include "absl/time/time.h"

#include "acme/testing/scripted_server.h"
#include "crypto/keys.h"

namespace acmevault::service::testing {

// The whole text of a file in the test's runfiles ("" if unreadable).
std::string ReadTestFile(const std::string& path);

// The key that crypto/testdata/chain.pem certifies (the scripted CA's certificate).
crypto::PrivateKey TestLeafKey();

// A time inside the validity of crypto/testdata/chain.pem's leaf (2026-11-22 to 2027-02-20):
// 2026-12-01T00:00:00Z. The ACME client refuses a leaf that is not valid at its clock, so tests
// whose scripted CA issues that chain set their fake clock to this.
absl::Time TestChainValidTime();

// Scripts `ca` as a CA that behaves: a new order is pending until its http-01 or dns-01
// challenge is answered, then ready; after finalize it is valid and serves the test chain.
// `state` (borrowed; outlives the server's use) holds the order's status.
void ScriptHappyCa(acme::testing::ScriptedServer& ca, std::string* state);

}  // namespace acmevault::service::testing

#endif  // ACMEVAULT_SERVICE_TESTING_HAPPY_CA_H_
