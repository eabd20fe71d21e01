// Client: one connection to acmevaultd, shared by the acmevault CLI and the acmevault-agent.
// It adds the bearer token to every call (re-read from its file when the file changes), uses
// TLS or mTLS with certificate files that are reloaded when they rotate, gives every attempt a
// deadline, retries UNAVAILABLE with backoff and jitter, and turns errors into absl::Status
// (grpc_status.h). Issue() keeps one idempotency key across every attempt of one issuance, so a
// retried or repeated call joins the order the first one started instead of starting another.
#ifndef ACMEVAULT_CLIENTS_LIB_CLIENT_H_
#define ACMEVAULT_CLIENTS_LIB_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "clients/lib/backoff.h"
#include "clients/lib/grpc_status.h"
#include "clients/lib/token_source.h"
#include "common/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace acmevault::clients {

struct ClientOptions {
  // acmevaultd's gRPC address, "host:port".
  std::string server = "127.0.0.1:8443";
  // The bearer token: from `token_file` when set (re-read whenever it changes), else `token`
  // (e.g. from $ACMEVAULT_TOKEN); neither: calls carry no token (mTLS identity only).
  std::string token_file;
  std::string token;
  // PEM roots that verify the server. Empty: plaintext (a loopback development service).
  std::string tls_ca;
  // The client certificate (chain) and key for mTLS; both or neither, and only with tls_ca.
  // The three files are watched and reloaded every `tls_reload_interval`, so rotated
  // certificates are used for new connections without a restart.
  std::string tls_cert;
  std::string tls_key;
  absl::Duration tls_reload_interval = absl::Seconds(60);
  // The name the server's certificate must carry when it differs from `server`'s host.
  std::string tls_server_name;
  // Each attempt's deadline.
  absl::Duration timeout = absl::Seconds(60);
  // Attempts of a retried call (UNAVAILABLE only): 1 means no retry.
  int max_attempts = 5;
  BackoffPolicy backoff;
  // Sleeps between attempts; borrowed, must outlive the Client.
  const Clock* clock = Clock::Real();
  // Seeds the backoff jitter and the idempotency keys; 0: random.
  uint64_t seed = 0;
};

// Per call.
struct CallOptions {
  // Retry UNAVAILABLE. Off for a call that is not safe to repeat when its first attempt may
  // have reached the service (creating a token, rolling a key over).
  bool retry = true;
  // Overrides ClientOptions::timeout when positive.
  absl::Duration timeout = absl::ZeroDuration();
};

struct IssueOptions {
  // Give up (DEADLINE_EXCEEDED naming the order) when the certificate does not exist by then.
  absl::Duration max_wait = absl::Minutes(10);
  // How long each IssueCertificate call lets the service wait for the certificate before it
  // answers with the order's state (then the call is repeated with the same idempotency key).
  absl::Duration poll = absl::Seconds(20);
  // Called with the order after each answer that has no certificate yet (progress displays).
  std::function<void(const v1::Order&)> progress;
};

// Thread-safe.
class Client {
 public:
  // INVALID_ARGUMENT for inconsistent TLS options; NOT_FOUND for a TLS file that does not exist.
  // Does not connect (the first call does).
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);

  v1::CertificateService::Stub& certificates() { return *certificates_; }
  v1::AccountService::Stub& accounts() { return *accounts_; }
  v1::AdminService::Stub& admin() { return *admin_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

  // Calls `rpc` on `stub` (one of the stubs above): the response, or the error of the last
  // attempt (FromGrpcStatus). UNAVAILABLE is retried up to max_attempts with backoff when
  // `call.retry`; a token that cannot be read fails before any attempt.
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(Stub& stub,
                                grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&,
                                                          Response*),
                                const Request& request, CallOptions call = {}) {
    Response response;
    absl::Status status = Attempt(
        [&](grpc::ClientContext* context) { return (stub.*rpc)(context, request, &response); },
        call);
    if (!status.ok()) return status;
    return response;
  }

  // IssueCertificate until the certificate exists: with `request.idempotency_key`, or a new
  // random one when it is empty, kept for every retry and repetition. The response with the
  // certificate (and the service-generated key, when one was asked for). ABORTED with the
  // order's reason (and its ACME problem type) when the order failed; DEADLINE_EXCEEDED naming
  // the order when `options.max_wait` passed first; any other call error as Call.
  absl::StatusOr<v1::IssueCertificateResponse> Issue(v1::IssueCertificateRequest request,
                                                     const IssueOptions& options = {});

  // 32 random hex digits.
  std::string NewIdempotencyKey();

 private:
  Client(ClientOptions options, TokenSource token);
  absl::Status Attempt(const std::function<grpc::Status(grpc::ClientContext*)>& attempt,
                       const CallOptions& call);
  uint64_t NewSeed();

  const ClientOptions options_;
  const TokenSource token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CertificateService::Stub> certificates_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  absl::Mutex mu_;
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::clients

#endif  // ACMEVAULT_CLIENTS_LIB_CLIENT_H_
