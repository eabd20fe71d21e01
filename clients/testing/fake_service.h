// FakeServer: an in-process acmevaultd stand-in for client tests. It implements every RPC of
// acmevault.v1 (and grpc.health.v1.Health/Check) on a loopback port chosen by the kernel,
// records each call, and answers as a test scripts it: fail the first N calls of a method with
// UNAVAILABLE, answer a method with a fixed error or response, or hand it to a function.
#ifndef ACMEVAULT_CLIENTS_TESTING_FAKE_SERVICE_H_
#define ACMEVAULT_CLIENTS_TESTING_FAKE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/message.h"

namespace acmevault::clients::testing {

// One call the fake received.
struct RecordedCall {
  std::string method;         // "IssueCertificate", "Check", ...
  std::string request;        // The request, serialized.
  std::string authorization;  // The "authorization" metadata, or "".
  // Seconds from the call's arrival to its deadline (-1 without one).
  double deadline_seconds = -1;
};

// Thread-safe. Stops its server when destroyed.
class FakeServer {
 public:
  // Answers `request` into `response`; its status is the call's.
  using Handler = std::function<grpc::Status(const google::protobuf::Message& request,
                                             google::protobuf::Message* response)>;

  // Listens on 127.0.0.1:0 (or on `address`, e.g. a port a test wants to reuse).
  static std::unique_ptr<FakeServer> Start(const std::string& address = "127.0.0.1:0");
  ~FakeServer();

  // "127.0.0.1:PORT".
  const std::string& address() const { return address_; }

  // The next `n` calls of `method` fail with UNAVAILABLE before any other script applies.
  void FailFirst(const std::string& method, int n);
  // Every call of `method` answers `status` (after FailFirst's failures).
  void SetError(const std::string& method, grpc::Status status);
  // Every call of `method` answers `response` (a message of the method's response type).
  void SetResponse(const std::string& method, const google::protobuf::Message& response);
  void SetHandler(const std::string& method, Handler handler);

  std::vector<RecordedCall> calls() const;
  // The calls of one method, in order.
  std::vector<RecordedCall> calls(const std::string& method) const;

  // For the generated services (fake_service.cc): records the call and applies the script.
  grpc::Status Handle(const std::string& method, grpc::ServerContext* context,
                      const google::protobuf::Message& request,
                      google::protobuf::Message* response);

 private:
  FakeServer() = default;

  std::string address_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  std::vector<RecordedCall> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> fail_first_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, grpc::Status> errors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> responses_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Handler> handlers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::clients::testing

#endif  // ACMEVAULT_CLIENTS_TESTING_FAKE_SERVICE_H_
