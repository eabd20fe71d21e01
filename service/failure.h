// How failures are told to callers, logs and audit rows: bounded and UTF-8-safe, never a CA's
// (or an exception's) text copied whole. A CA may answer with a megabyte of HTML; an order row,
// a log line and a gRPC message each get a clipped summary of it.
#ifndef ACMEVAULT_SERVICE_FAILURE_H_
#define ACMEVAULT_SERVICE_FAILURE_H_

#include <cstddef>
#include <exception>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace acmevault::service {

// The longest detail kept from a CA or an exception.
inline constexpr size_t kMaxFailureDetail = 300;

// `text` cut to at most `max` bytes on a UTF-8 character boundary, invalid UTF-8 and control
// characters replaced by '?', with "..." appended when anything was cut.
std::string ClipText(absl::string_view text, size_t max = kMaxFailureDetail);

// A failure as logs, audit rows and gRPC messages tell it: the status code, then for a CA
// problem "acme <type> (HTTP <status>): <clipped detail>", else the clipped message. Never the
// payload (the problem document) nor the CA's text whole.
std::string SummarizeFailure(const absl::Status& status);

// The ACME problem type `status` carries (the full URN, e.g.
// "urn:ietf:params:acme:error:rejectedIdentifier"), clipped to at most kMaxProblemTypeBytes:
// what an order records beside SummarizeFailure. "" when the failure is no CA problem, or the
// CA's answer was no problem document (acme marks those with an "http:<status>" type).
inline constexpr size_t kMaxProblemTypeBytes = 200;
std::string ProblemTypeOf(const absl::Status& status);

// The CA's rateLimited answer to a request with a Retry-After: the time no request of that kind
// may be sent before; nullopt for any other failure (or one without a Retry-After).
std::optional<absl::Time> RateLimitedUntil(const absl::Status& status);

// RESOURCE_EXHAUSTED "no request sent to the CA until <time>" for a request the CA's limits hold
// back (a stored hold, an empty budget), carrying a rateLimited problem with `detail` and
// `until` as its retry_after, so that the caller's gRPC answer says when it may try again
// (service/grpc_status.h).
absl::Status HeldUntil(absl::string_view detail, absl::Time until);

// What an exception that escaped a unit of background work is recorded as: "internal error: "
// and its clipped what() (or "unknown exception"). `e` must not be null.
std::string DescribeException(std::exception_ptr e);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_FAILURE_H_
