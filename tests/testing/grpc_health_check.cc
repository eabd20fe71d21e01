// grpc_health_check ADDRESS [TIMEOUT_SECONDS]: asks grpc.health.v1.Health/Check (service "")
// over plaintext gRPC, as Kubernetes' native gRPC probe does, and prints the answer.
// Exit status: 0 SERVING, 1 any other health status, 2 the call failed (printed with its code).
// Checked with a generic stub, since Debian ships no generated health client:
// HealthCheckRequest{} is empty and the reply is {status: N} (SERVING is 1).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: grpc_health_check ADDRESS [TIMEOUT_SECONDS]\n");
    return 2;
  }
  const int timeout_seconds = argc == 3 ? std::atoi(argv[2]) : 5;
  grpc::GenericStub stub(grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    std::printf("call failed: code %d: %s\n", static_cast<int>(status.error_code()),
                status.error_message().c_str());
    return 2;
  }
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const auto& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  // Field 1 (varint): 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
  const int code = bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : 0;
  static const char* const kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  std::printf("%s\n", code >= 0 && code <= 3 ? kNames[code] : "UNKNOWN");
  return code == 1 ? 0 : 1;
}
