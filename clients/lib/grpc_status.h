// gRPC statuses as absl::Status: the same code (its name is the gRPC code's name, e.g.
// "UNAVAILABLE"), the server's message, and the ACME problem the service attached (an
// acmevault.v1.AcmeProblem in the standard binary error details) both in the message and as a
// payload.
#ifndef ACMEVAULT_CLIENTS_LIB_GRPC_STATUS_H_
#define ACMEVAULT_CLIENTS_LIB_GRPC_STATUS_H_

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "acmevault/v1/errors.pb.h"

namespace acmevault::clients {

// The payload URL under which FromGrpcStatus keeps the CA's problem.
inline constexpr char kAcmeProblemUrl[] = "type.googleapis.com/acmevault.v1.AcmeProblem";

// OK for OK. Otherwise the same code and message; when the details carry an AcmeProblem, the
// message gains "; CA problem TYPE: DETAIL" (and the retry time the CA gave) and the problem is
// kept under kAcmeProblemUrl.
absl::Status FromGrpcStatus(const grpc::Status& status);

// The problem FromGrpcStatus kept, if any.
std::optional<v1::AcmeProblem> AcmeProblemOf(const absl::Status& status);

// "UNAVAILABLE: message": for people.
std::string DescribeStatus(const absl::Status& status);

}  // namespace acmevault::clients

#endif  // ACMEVAULT_CLIENTS_LIB_GRPC_STATUS_H_
