// ACME problem documents (acme/problem.h): an error response as a CA may send it, status line,
// headers (Retry-After) and body, through ProblemStatus and back out with GetProblem.
// Accepted: the body was a problem document with a type, rather than the "http:<status>"
// stand-in for an error without one.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "acme/problem.h"
#include "tests/fuzz/fake_ca.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  const acme::HttpResponse response = ParseHttpText(input);
  if (RepeatsKnownFinding(response, /*any_status=*/true)) return Verdict::kRejected;
  const absl::Time now = absl::FromUnixSeconds(1893456000);
  absl::Status status = acme::ProblemStatus(response, "POST fuzz", now);

  // Every answer maps to an error that carries its problem (the service reports it from there).
  FUZZ_CHECK(!status.ok());
  // A 3xx is no problem document: redirects are refused and said so (acme/problem.cc).
  const bool redirect = response.status >= 300 && response.status < 400;
  FUZZ_CHECK_MSG(absl::StartsWith(status.message(), redirect ? "POST fuzz: CA answered HTTP "
                                                             : "POST fuzz: acme "),
                 status.message());
  if (redirect) FUZZ_CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
  // The message is one printable line however hostile the CA (problem.cc clips what it quotes).
  for (char c : status.message()) {
    FUZZ_CHECK_MSG(static_cast<unsigned char>(c) >= 0x20, status.message());
  }
  auto problem = acme::GetProblem(status);
  FUZZ_CHECK(problem.has_value());
  FUZZ_CHECK(problem->http_status == response.status);
  FUZZ_CHECK(!problem->type.empty());
  FUZZ_CHECK(problem->detail.size() <= 512 + 3);
  FUZZ_CHECK(problem->subproblems.size() <= 32);
  // The documented mapping for the types callers branch on.
  const std::string type = problem->ShortType();
  if (type == "badNonce") FUZZ_CHECK(status.code() == absl::StatusCode::kAborted);
  if (type == "rateLimited") FUZZ_CHECK(status.code() == absl::StatusCode::kResourceExhausted);
  if (type == "accountDoesNotExist") FUZZ_CHECK(status.code() == absl::StatusCode::kNotFound);
  if (type == "serverInternal") FUZZ_CHECK(status.code() == absl::StatusCode::kUnavailable);
  FUZZ_CHECK(acme::IsAccountUnusable(status) ==
             (type == "accountDoesNotExist" ||
              (type == "unauthorized" && (response.status == 401 || response.status == 403))));
  if (problem->retry_after.has_value()) {
    FUZZ_CHECK(absl::StrContains(status.message(), "; retry after "));
  }
  return problem->type == absl::StrCat("http:", response.status) ? Verdict::kRejected
                                                                 : Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
