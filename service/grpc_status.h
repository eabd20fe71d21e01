// The one mapping from absl::Status to grpc::Status used by every RPC handler. Codes map one to
// one; an ACME problem carried by the status (acme/problem.h) becomes an acmevault.v1.AcmeProblem
// in the standard binary error details, so clients see the CA's problem type and detail.
#ifndef ACMEVAULT_SERVICE_GRPC_STATUS_H_
#define ACMEVAULT_SERVICE_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace acmevault::service {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_GRPC_STATUS_H_
