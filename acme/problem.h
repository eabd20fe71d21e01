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

// Bounds on what a CA's problem document can put into a Problem, a Status message or a log line.
// The detail is clipped to kMaxProblemDetailBytes (at a character boundary, then "..."); the type
// and each part of an identifier to kMaxCaTextBytes.
inline constexpr size_t kMaxProblemDetailBytes = 512;
// Subproblems kept; later ones are dropped.
inline constexpr size_t kMaxSubproblems = 32;
// RFC 8555 §6.7.1 subproblems are one level deep: a subproblem's own subproblems are dropped.
inline constexpr int kMaxSubproblemDepth = 1;
// Longest Summarize(): subproblems that do not fit are counted, not listed.
inline constexpr size_t kMaxProblemMessageBytes = 1024;

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

// Maps a response that is not a success to a Status. A redirect (3xx, never followed) is
// FAILED_PRECONDITION "<what>: CA answered HTTP 302 redirect to <Location, clipped>". For an
// error (status >= 400) the code follows the problem type:
//   badNonce -> ABORTED; rateLimited -> RESOURCE_EXHAUSTED; unauthorized (401 or 403: Pebble
//   answers 403 where RFC 8555 says 401) -> PERMISSION_DENIED; accountDoesNotExist -> NOT_FOUND;
//   malformed, badCSR, badPublicKey, badSignatureAlgorithm, badRevocationReason, invalidContact,
//   unsupportedContact, rejectedIdentifier, unsupportedIdentifier -> INVALID_ARGUMENT;
//   orderNotReady, alreadyRevoked, caa, dns, connection, incorrectResponse, tls,
//   userActionRequired, externalAccountRequired -> FAILED_PRECONDITION; serverInternal and 5xx
//   -> UNAVAILABLE; otherwise by HTTP status. The message is "<what>: acme " and the problem's
//   Summarize(), then the Retry-After time if any: at most about kMaxProblemMessageBytes
//   whatever the CA sent.
absl::Status ProblemStatus(const HttpResponse& response, absl::string_view what,
                           absl::Time now);

// A Status of `code` whose message is "<what>: acme " and Summarize(problem), carrying `problem`
// as ProblemStatus does: for a problem the CA embedded in a resource (an invalid order's
// "error") rather than answered with.
absl::Status EmbeddedProblemStatus(absl::StatusCode code, absl::string_view what,
                                   const Problem& problem);

// A problem document as a CA sends it or embeds it in a resource (an order's, authorization's or
// challenge's "error"), reduced to the members a Problem reads and bounded as above: "type",
// "detail", "status" (an HTTP status), "identifier" {type, value} and at most kMaxSubproblems
// "subproblems", one level deep; every string valid UTF-8 on one line. Always an object (empty
// when `document` is not one). Its JSON is small, so copying and dumping it is cheap.
nlohmann::json BoundedProblemDocument(const nlohmann::json& document);

// The Problem of a problem document (bounded as above), its http_status from "status".
Problem ProblemFromDocument(const nlohmann::json& document);

// One line for messages, at most kMaxProblemMessageBytes for any Problem made here (the fields
// are bounded as above): "<short type> (HTTP <status>):
// <detail>", then "; <identifier>: <short type>: <detail clipped to kMaxCaTextBytes>" per
// subproblem while they fit, then "; <n> more subproblems" for those that did not.
std::string Summarize(const Problem& problem);

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
