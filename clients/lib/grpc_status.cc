#include "clients/lib/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/rpc/status.pb.h"

namespace acmevault::clients {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // gRPC and Abseil number their canonical codes alike.
  auto code = static_cast<absl::StatusCode>(status.error_code());
  std::string message = status.error_message();
  google::rpc::Status details;
  std::optional<v1::AcmeProblem> problem;
  if (!status.error_details().empty() && details.ParseFromString(status.error_details())) {
    for (const auto& any : details.details()) {
      v1::AcmeProblem p;
      if (any.UnpackTo(&p)) {
        problem = std::move(p);
        break;
      }
    }
  }
  if (problem) {
    absl::StrAppend(&message, "; CA problem ", problem->type());
    if (!problem->detail().empty()) absl::StrAppend(&message, ": ", problem->detail());
    if (problem->has_retry_after()) {
      absl::StrAppend(&message, " (retry after ",
                      absl::FormatTime(absl::RFC3339_sec,
                                       absl::FromUnixSeconds(problem->retry_after().seconds()),
                                       absl::UTCTimeZone()),
                      ")");
    }
  }
  absl::Status out(code, message);
  if (problem) out.SetPayload(kAcmeProblemUrl, absl::Cord(problem->SerializeAsString()));
  return out;
}

std::optional<v1::AcmeProblem> AcmeProblemOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kAcmeProblemUrl);
  if (!payload) return std::nullopt;
  v1::AcmeProblem p;
  if (!p.ParseFromString(std::string(*payload))) return std::nullopt;
  return p;
}

std::string DescribeStatus(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

}  // namespace acmevault::clients
