// A CA for the ACME fuzz targets: an HttpTransport that serves a fixed directory and nonces and
// answers the one request under test with the fuzzed response, plus the text form fuzz inputs
// and seeds use for an HTTP response.
//
// The transport checks the client's promise that it never sends a request outside the
// directory's origin (RFC 8555 §7.1 URLs are the CA's to give, but acmevault only follows them
// on the directory's scheme, host and port). Not thread-safe: one client, one thread.
#ifndef ACMEVAULT_TESTS_FUZZ_FAKE_CA_H_
#define ACMEVAULT_TESTS_FUZZ_FAKE_CA_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "acme/client.h"
#include "acme/http.h"
#include "common/testing/fake_clock.h"
#include "crypto/keys.h"

namespace acmevault::fuzz {

// An HTTP response as text, the way a seed file holds it:
//
//   HTTP/1.1 201 Created          (or just "201"; the status is the first number on the line)
//   Content-Type: application/json
//   Location: https://ca.test/acct/1
//                                 (an empty line: the headers end)
//   {"status":"valid"}            (the body: every remaining byte, as is)
//
// Lines end in LF or CRLF. Header names are lower-cased, as the real transport delivers them.
// Lenient: any bytes make some response (a status of 0 when the first line has no number).
acme::HttpResponse ParseHttpText(absl::string_view text);

class FakeCa final : public acme::HttpTransport {
 public:
  static constexpr char kOrigin[] = "https://ca.test";
  // The origin in the normal form acme::UrlOrigin gives.
  static constexpr char kNormalOrigin[] = "https://ca.test:443";
  static std::string Url(absl::string_view path) {
    return std::string(kOrigin) + std::string(path);
  }

  // GET /dir answers the directory below (or `fuzzed`, when `fuzz_directory`), HEAD /nonce a
  // fresh nonce; every other request gets `fuzzed`. Directory: newNonce /nonce, newAccount
  // /new-acct, newOrder /new-order, revokeCert /revoke, keyChange /key-change, renewalInfo
  // /ari.
  explicit FakeCa(acme::HttpResponse fuzzed, bool fuzz_directory = false);

  absl::StatusOr<acme::HttpResponse> Send(const acme::HttpRequest& request) override;

  const acme::HttpResponse& fuzzed() const { return fuzzed_; }
  int fuzzed_answers() const { return fuzzed_answers_; }

 private:
  acme::HttpResponse fuzzed_;
  bool fuzz_directory_;
  int fuzzed_answers_ = 0;
};

// The pieces every ACME target needs: the fake CA, a fixed clock and a client of that CA with
// few badNonce retries (each one is another identical answer).
struct AcmeHarness {
  explicit AcmeHarness(absl::string_view input, bool fuzz_directory = false);

  FakeCa ca;
  testing::FakeClock clock;
  std::unique_ptr<acme::AcmeClient> client;
};

// A P-256 account key made once per process: a throwaway, never written anywhere.
const crypto::PrivateKey& AccountKey();
// The account AcmeHarness's requests sign for: AccountKey() and https://ca.test/acct/1.
acme::AccountRef Account();

// Known finding "problem-invalid-utf8" (README.md): true when it is skipped and `response` (an
// error, unless `any_status`) has a body that may decode to text outside ASCII (a byte above
// 0x7f or a \u escape), which acme::ProblemStatus may turn into an uncaught exception. Targets
// return early on such a response.
bool RepeatsKnownFinding(const acme::HttpResponse& response, bool any_status = false);

// FUZZ_CHECKs that `url` is on the fake CA's origin.
void CheckOnCaOrigin(absl::string_view url);

// FUZZ_CHECKs how a call answered with `response` failed or succeeded: a response with a status
// outside `success_from`..`success_to` must have become an error that carries the CA's problem
// (acme/problem.h) with that HTTP status. Returns whether `result` is OK.
bool CheckProblemMapping(const absl::Status& result, const acme::HttpResponse& response,
                         int success_from = 200, int success_to = 299);

}  // namespace acmevault::fuzz

#endif  // ACMEVAULT_TESTS_FUZZ_FAKE_CA_H_
