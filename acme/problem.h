// ACME problem documents (RFC 8555 §6.7, RFC 7807) as absl::Status. This is the one place where
// CA errors become Status codes; the problem itself rides along as a payload so callers (and the
// service's gRPC errors) can report its exact type, detail and subproblems.
//
// Everything a Problem holds is valid UTF-8 on one line (acme/ca_input.h: CaText) and bounded, so
// a hostile CA can neither flood messages and logs nor make a strict JSON writer throw.
#ifndef ACMEVAULT_ACME_PROBLEM_H_
#define ACMEVAULT_ACME_PROBLEM_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "acme/http.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme {

// The detail is clipped to this many bytes (at a character boundary, then "..."); the type and
// the identifier to kMaxCaTextBytes.
inline constexpr size_t kMaxProblemDetailBytes = 512;

struct Problem {
  std::string type;    // Full URN, e.g. "urn:ietf:params:acme:error:badNonce".
  std::string detail;
  int http_status = 0;
  // The identifier a subproblem is about ("dns:example.com"), empty for the top level.
  std::string identifier;
  std::vector<Problem> subproblems;
  // From Retry-After (rateLimited and others), when the CA sent one.
  std::optional<absl::Time> retry_after;

  // The type without the "urn:ietf:params:acme:error:" prefix ("badNonce").
  std::string ShortType() const;
};

// The payload key under which a Status carries its Problem (as JSON).
inline constexpr char kProblemPayloadUrl[] = "acmevault.dev/acme-problem";

// Maps an error response (status >= 400) to a Status. The code follows the problem type:
//   badNonce -> ABORTED; rateLimited -> RESOURCE_EXHAUSTED; unauthorized (401 or 403: Pebble
//   answers 403 where RFC 8555 says 401) -> PERMISSION_DENIED; accountDoesNotExist -> NOT_FOUND;
//   malformed, badCSR, badPublicKey, badSignatureAlgorithm, badRevocationReason, invalidContact,
//   unsupportedContact, rejectedIdentifier, unsupportedIdentifier -> INVALID_ARGUMENT;
//   orderNotReady, alreadyRevoked, caa, dns, connection, incorrectResponse, tls,
//   userActionRequired, externalAccountRequired -> FAILED_PRECONDITION; serverInternal and 5xx
//   -> UNAVAILABLE; otherwise by HTTP status. The message names the request, the ACME type and
//   the detail; subproblems follow.
absl::Status ProblemStatus(const HttpResponse& response, absl::string_view what,
                           absl::Time now);

// The JSON form of a Problem, as a Status carries it in its payload. Its strings are valid UTF-8,
// so even a strict dump() of it does not throw.
nlohmann::json ToJson(const Problem& problem);

// The Problem a Status carries, if any.
std::optional<Problem> GetProblem(const absl::Status& status);

// True for the errors that mean the account can no longer act: deactivated, revoked or unknown
// (401 or 403 unauthorized, accountDoesNotExist).
bool IsAccountUnusable(const absl::Status& status);

// Parses Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. nullopt if absent or
// unparseable.
std::optional<absl::Time> ParseRetryAfter(absl::string_view value, absl::Time now);

}  // namespace acmevault::acme

#endif  // ACMEVAULT_ACME_PROBLEM_H_
