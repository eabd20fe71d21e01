#include "service/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "acme/problem.h"
#include "common/text.h"
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

// gRPC sends the message as a header, and a client refuses a response whose headers pass its
// limit (8 KiB by default), losing the whole message. A long one keeps its start (what failed)
// and its end (where a compromise run names its id): about 1.7 KiB, under the limit even if
// percent-encoding tripled every byte.
constexpr size_t kMaxMessageHead = 1200;
constexpr size_t kMaxMessageTail = 500;

std::string BoundedMessage(absl::string_view message) {
  if (message.size() <= kMaxMessageHead + kMaxMessageTail) return std::string(message);
  size_t tail = message.size() - kMaxMessageTail;
  while (tail < message.size() && (static_cast<unsigned char>(message[tail]) & 0xC0) == 0x80) {
    ++tail;  // Not inside a UTF-8 character.
  }
  std::string head = ClipUtf8(message.substr(0, tail), kMaxMessageHead);
  return absl::StrCat(head, " [", tail - (head.size() - 3), " bytes left out] ",
                      ClipUtf8(message.substr(tail), kMaxMessageTail));
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering (both follow google.rpc.Code).
  auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message = BoundedMessage(status.message());
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
