// Renewer: runs the renew_certificate job (kRenewJob, service/renewal_policy.h) that the policy
// scheduler schedules for each service-held certificate due for renewal (issue 11, item 3).
//
// A run orders the renewal through the Issuer, as a host's IssueCertificate would (the same
// allow-list, account choice, order path and engine), for the certificate's identifiers with a
// new service-held key of the old key's algorithm. The order carries an idempotency key naming
// the certificate and the attempt ("renew:<certificate id>:<n>"), so every run of the job, on
// any replica, finds the order an earlier run made (kIdempotencyKeyLifetime) instead of making
// another: a renewal is ordered once however often the job is scheduled or retried. A run does
// not wait for the CA: while the order is in flight it asks to run again `check_interval` later.
// When the order is valid the new certificate records the old one's serial
// (CertificateStore::RecordReplacedCertificate) and the renewal is done (the new certificate
// supersedes the old one, which is not revoked); when it failed, the next attempt's order is made after `failure_backoff`
// doubled per failed order, and after `max_orders` failed orders the job is given up.
//
// A certificate that is no longer live (superseded by another issuance, expired), has no
// service-held key, or is not due any more when the run looks again, ends the job unchanged.
//
// Thread-safe. Borrowed collaborators must outlive the Renewer.
#ifndef ACMEVAULT_SERVICE_RENEWER_H_
#define ACMEVAULT_SERVICE_RENEWER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "service/engine.h"
#include "service/issuer.h"
#include "service/metrics.h"
#include "storage/store.h"

namespace acmevault::service {

class Renewer {
 public:
  struct Options {
    // Borrowed; required.
    storage::TenantStore* tenants = nullptr;
    storage::OrderStore* orders = nullptr;
    storage::CertificateStore* certificates = nullptr;
    Issuer* issuer = nullptr;
    // Create registers the kRenewJob handler on it, so it must not be started yet.
    Engine* engine = nullptr;
    // Optional (borrowed): acmevault_certificate_renewals_total.
    Metrics* metrics = nullptr;
    const Clock* clock = Clock::Real();
    // How long a run waits before looking at an order in flight again.
    absl::Duration check_interval = absl::Minutes(1);
    // The wait after the first failed renewal order; doubled for each further one.
    absl::Duration failure_backoff = absl::Hours(1);
    // Failed orders after which the job gives up (the next scan schedules it again once the
    // idempotency keys of the failed orders lapse).
    int max_orders = 5;
  };

  // INVALID_ARGUMENT naming a missing collaborator or a bad duration or count; the engine's
  // error when the handler cannot be registered.
  static absl::StatusOr<std::unique_ptr<Renewer>> Create(Options options);
  // Stops the engine (its renewal handler uses the Renewer).
  ~Renewer();

  Renewer(const Renewer&) = delete;
  Renewer& operator=(const Renewer&) = delete;

  // The kRenewJob handler (registered by Create); see the class comment.
  JobOutcome Renew(const JobRun& run);

  // The idempotency key of the `attempt`th renewal order (from 0) of `certificate`.
  static std::string OrderKey(storage::CertificateId certificate, int attempt);

 private:
  explicit Renewer(Options options) : options_(std::move(options)) {}

  const Options options_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_RENEWER_H_
