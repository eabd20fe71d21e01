// ApiClient: a plain gRPC client of a running acmevaultd for programs that drive the service
// from outside (the end-to-end benchmark, the chaos suites): a channel with the three public
// stubs, per-call contexts carrying a bearer token, and a tenant made through the API.
//
// Thread-safe as gRPC stubs are: one ApiClient may serve many calling threads.
#ifndef ACMEVAULT_TESTS_TESTING_API_CLIENT_H_
#define ACMEVAULT_TESTS_TESTING_API_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"

namespace acmevault::testing {

// A context carrying `token` (none when empty) with a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> ApiContext(const std::string& token,
                                                absl::Duration timeout = absl::Seconds(60));

// A tenant allowed "*.<name>.<domain>", with a host token and an ACME account.
struct ApiTenant {
  std::string name;
  std::string host_token;
  // OK, or the first call of the setup that failed.
  grpc::Status status;
};

class ApiClient {
 public:
  // Plaintext channel to `address` (host:port); the platform-admin token is read from
  // `root_token_file` (surrounding whitespace dropped; empty when the file cannot be read).
  ApiClient(const std::string& address, const std::string& root_token_file);

  // Creates tenant "<prefix><pid>-<millis>" as described at ApiTenant.
  // With `policy`, the tenant is created with it (else the service's default policy).
  ApiTenant NewTenant(absl::string_view prefix, absl::string_view domain = "example",
                      const v1::TenantPolicy* policy = nullptr);

  const std::shared_ptr<grpc::Channel>& channel() { return channel_; }
  v1::AdminService::Stub& admin() { return *admin_; }
  v1::AccountService::Stub& accounts() { return *accounts_; }
  v1::CertificateService::Stub& certs() { return *certs_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::CertificateService::Stub> certs_;
  std::string root_token_;
};

// The value at fraction `p` (0..1) of `values`, which it sorts; 0 when empty.
double Percentile(std::vector<double>& values, double p);

// The whole file at `path`; "" when it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace acmevault::testing

#endif  // ACMEVAULT_TESTS_TESTING_API_CLIENT_H_
