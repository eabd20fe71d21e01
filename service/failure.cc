#include "service/failure.h"

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "acme/problem.h"
#include "common/text.h"

namespace acmevault::service {

std::string ClipText(absl::string_view text, size_t max) { return ClipUtf8(text, max); }

std::string SummarizeFailure(const absl::Status& status) {
  std::string code = absl::StatusCodeToString(status.code());
  std::optional<acme::Problem> problem = acme::GetProblem(status);
  if (!problem) return absl::StrCat(code, ": ", ClipText(status.message()));
  return absl::StrCat(code, ": acme ", ClipText(problem->ShortType(), 80), " (HTTP ",
                      problem->http_status, "): ", ClipText(problem->detail));
}

std::string ProblemTypeOf(const absl::Status& status) {
  std::optional<acme::Problem> problem = acme::GetProblem(status);
  if (!problem || absl::StartsWith(problem->type, "http:")) return "";
  return ClipText(problem->type, kMaxProblemTypeBytes);
}

std::string DescribeException(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return absl::StrCat("internal error: ", ClipText(ex.what()));
  } catch (...) {
    return "internal error: unknown exception";
  }
}

namespace {
constexpr char kRateLimited[] = "urn:ietf:params:acme:error:rateLimited";
}  // namespace

std::optional<absl::Time> RateLimitedUntil(const absl::Status& status) {
  std::optional<acme::Problem> problem = acme::GetProblem(status);
  if (!problem || problem->type != kRateLimited) return std::nullopt;
  return problem->retry_after;
}

absl::Status HeldUntil(absl::string_view detail, absl::Time until) {
  acme::Problem problem;
  problem.type = kRateLimited;
  problem.detail = ClipText(detail);
  problem.retry_after = until;
  return acme::EmbeddedProblemStatus(
      absl::StatusCode::kResourceExhausted,
      absl::StrCat("no request sent to the CA until ",
                   absl::FormatTime(absl::RFC3339_sec, until, absl::UTCTimeZone())),
      problem);
}

}  // namespace acmevault::service
