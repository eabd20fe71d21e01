// Drives one order from whatever state it was left in to a stored certificate (valid) or a
// recorded failure (invalid). Every step is a state transition in the store, and the CA's own
// order status decides what to do next, so a replica that dies anywhere leaves an order another
// replica resumes: nothing is finalized twice (finalize is sent only while the CA says "ready"),
// and an issued certificate is always downloaded and stored. Writes carry the lease's fencing
// token: a replica that lost its lease cannot commit over the new owner. Thread-safe.
#ifndef ACMEVAULT_SERVICE_ORDER_RUNNER_H_
#define ACMEVAULT_SERVICE_ORDER_RUNNER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "acme/client.h"
#include "acme/http.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "service/account_keys.h"
#include "service/metrics.h"
#include "storage/store.h"

namespace acmevault::service {

// One AcmeClient per CA directory, created on first use; shares one transport. Thread-safe.
class AcmeClients {
 public:
  struct Options {
    acme::CurlTransportOptions transport;
    // When set (tests), used instead of a CurlTransport built from `transport`. Borrowed.
    acme::HttpTransport* transport_instance = nullptr;
    // Applied to every client (directory_url and transport are filled in).
    acme::AcmeClientOptions client;
  };
  static absl::StatusOr<std::unique_ptr<AcmeClients>> Create(Options options);
  // Borrowed; lives as long as this object.
  absl::StatusOr<acme::AcmeClient*> For(const std::string& directory_url);

 private:
  explicit AcmeClients(Options options) : options_(std::move(options)) {}
  const Options options_;
  std::unique_ptr<acme::HttpTransport> owned_transport_;
  acme::HttpTransport* transport_ = nullptr;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<acme::AcmeClient>> clients_ ABSL_GUARDED_BY(mu_);
};

// Publishes dns-01 TXT records (RFC 8555 §8.4). Implementations: RFC 2136 (production), the
// local stack's challtestsrv (tests).
class Dns01Solver {
 public:
  virtual ~Dns01Solver() = default;
  // `name` is the identifier without "*." (the record is _acme-challenge.<name>).
  virtual absl::Status Publish(absl::string_view name, absl::string_view txt_value) = 0;
  virtual absl::Status Remove(absl::string_view name, absl::string_view txt_value) = 0;
};

enum class ChallengePreference { kHttp01, kDns01 };

struct OrderJob {
  storage::Scope scope;
  storage::Lease lease;
  std::string csr_der;
  // The certificate key when the service generated it (stored sealed with the certificate).
  const crypto::PrivateKey* certificate_key = nullptr;
  ChallengePreference challenge = ChallengePreference::kHttp01;
  bool deactivate_authorizations_after_issuance = false;
};

class OrderRunner {
 public:
  struct Options {
    // Borrowed; required.
    storage::OrderStore* orders = nullptr;
    storage::AccountStore* accounts = nullptr;
    AccountKeys* keys = nullptr;  // Signs with the account's active key (vault or token).
    storage::AuthorizationStore* authorizations = nullptr;
    storage::ChallengeStore* challenges = nullptr;  // HTTP-01 answers for the responder.
    AcmeClients* clients = nullptr;
    Dns01Solver* dns01 = nullptr;          // Borrowed; may be null (then dns-01 is refused).
    Metrics* metrics = nullptr;            // Borrowed; may be null.
    const Clock* clock = Clock::Real();
    // How long one run may wait for the CA before giving the order up (it stays resumable).
    absl::Duration ca_timeout = absl::Minutes(2);
    absl::Duration lease_duration = absl::Minutes(2);
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<OrderRunner>> Create(Options options);

  // Runs the order of `job.lease` to valid or invalid. Returns the final order row. Errors:
  // FAILED_PRECONDITION when the lease was lost (another replica owns the order now);
  // UNAVAILABLE / DEADLINE_EXCEEDED when the CA or database did not answer in time (the order
  // stays where it was, for a later run); other codes from the CA mark the order invalid first.
  absl::StatusOr<storage::Order> Run(OrderJob job);

 private:
  struct Context;
  explicit OrderRunner(Options options) : options_(options) {}
  absl::Status AnswerAuthorizations(Context& ctx, const acme::Order& order);
  // True when the CA no longer needs an answer to the `type` challenge of the authorization:
  // it is valid, or the challenge is processing or valid.
  bool ChallengeAnswered(Context& ctx, const acme::Order& order, const std::string& authz_url,
                         const std::string& type);
  absl::Status Complete(Context& ctx, const acme::Order& order);
  absl::Status RenewIfDue(Context& ctx);
  // WaitForOrder until ctx.deadline, renewing the lease as it goes. FAILED_PRECONDITION when
  // the lease was lost meanwhile.
  absl::StatusOr<acme::Order> WaitAtCa(Context& ctx, const std::string& url, bool until_ready);
  void Cleanup(Context& ctx);

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ORDER_RUNNER_H_
