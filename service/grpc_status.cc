#include "service/grpc_status.h"

#include "acme/problem.h"
#include "acmevault/v1/errors.pb.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/status.pb.h"

namespace acmevault::service {
namespace {

void FillProblem(const acme::Problem& p, v1::AcmeProblem* out) {
  out->set_type(p.type);
  out->set_detail(p.detail);
  out->set_http_status(p.http_status);
  out->set_identifier(p.identifier);
  if (p.retry_after) out->mutable_retry_after()->set_seconds(absl::ToUnixSeconds(*p.retry_after));
  for (const auto& sub : p.subproblems) FillProblem(sub, out->add_subproblems());
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering (both follow google.rpc.Code).
  auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  auto problem = acme::GetProblem(status);
  if (!problem) return grpc::Status(code, message);
  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  v1::AcmeProblem p;
  FillProblem(*problem, &p);
  details.add_details()->PackFrom(p);
  return grpc::Status(code, message, details.SerializeAsString());
}

}  // namespace acmevault::service
