// Prometheus metrics of acmevaultd (prometheus-cpp): RPC counts and latency, RPCs in flight and
// refused by the server's limits, ACME requests and errors by problem type, issuance duration,
// account key age, the work engine's jobs. Thread-safe.
#ifndef ACMEVAULT_SERVICE_METRICS_H_
#define ACMEVAULT_SERVICE_METRICS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace acmevault::service {

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // acmevault_rpc_requests_total{method,code} and acmevault_rpc_latency_seconds{method}.
  void RecordRpc(absl::string_view method, absl::StatusCode code, absl::Duration latency);
  // acmevault_rpcs_in_flight: calls the gRPC server holds now, health checks included
  // (service/grpc_server.h adds 1 as a call starts and -1 as it ends).
  void AddRpcsInFlight(int delta);
  // acmevault_rpcs_rejected_total{limit}: calls the gRPC server refused for want of `limit`
  // before any handler ran.
  void RecordRpcRejected(absl::string_view limit);
  // acmevault_http01_requests_total{code}: requests the HTTP-01 responder answered, by status.
  void RecordHttp01(int status);
  // acmevault_acme_requests_total{operation} and, for failures,
  // acmevault_acme_errors_total{operation,type} (type: the ACME problem's short type, or the
  // status code name when there was no problem document).
  void RecordAcme(absl::string_view operation, const absl::Status& outcome);
  // acmevault_issuance_duration_seconds{outcome="ok"|"error"}.
  void RecordIssuance(absl::Duration duration, bool ok);
  // acmevault_account_key_age_seconds{tenant}.
  void SetAccountKeyAge(absl::string_view tenant, absl::Duration age);
  // acmevault_account_key_rotations_total{tenant,outcome}: rotations by policy (the
  // rotate_account_key job), "rotated" or "failed" (an attempt that will be retried or was
  // given up).
  void RecordKeyRotation(absl::string_view tenant, absl::string_view outcome);
  // acmevault_account_hijacks_detected_total{tenant}: accounts found taken over at the CA
  // (service/accounts.h, hijack detection), each counted once, when it is marked.
  void RecordAccountHijack(absl::string_view tenant);
  // acmevault_accounts_hijacked{tenant}: 1 while the tenant's account is marked hijacked and no
  // new account replaces it yet (issuance is stopped), else 0; set by each verification and by
  // the compromise response.
  void SetAccountHijacked(absl::string_view tenant, bool hijacked);
  // acmevault_account_verifications_total{result}: verifications of accounts at the CA, "ok",
  // "hijacked" or "failed" (no verdict; retried).
  void RecordAccountVerification(absl::string_view result);
  // acmevault_authorization_deactivations_total{result}: deactivations at the CA by policy
  // (after issuance, their retries, the sweep): "deactivated", "failed" (to be retried) or
  // "settled" (the CA says it is no longer outstanding; its status recorded).
  void RecordAuthorizationDeactivation(absl::string_view result);
  // acmevault_orders_held_total{reason}: order steps that sent no request to the CA because
  // its limits hold it back: "hold" (a rateLimited answer's Retry-After, any replica's),
  // "budget" (the account's new-order bucket is empty), "duplicate_budget" (the tenant's bucket
  // for the identifier set is), "account_budget" (the fleet's new-account bucket at the CA is,
  // for an ephemeral account) or "stalled" (set aside while the CA keeps it processing). The
  // order waits; it does not fail.
  void RecordOrderHeld(absl::string_view reason);
  // acmevault_crl_checks_total{result}: readings of a certificate's CRL by the policy scan:
  // "listed" (revoked outside the service), "not_listed", "no_crl" (the certificate names no
  // http(s) distribution point), or "failed" (no verdict: the CRL could not be fetched, parsed
  // or believed).
  void RecordCrlCheck(absl::string_view result);
  // acmevault_ephemeral_accounts_total{event}: accounts of ephemeral-account mode (one per
  // order): "created" (registered at the CA), "deactivated" (at the CA, after the order ended),
  // "deactivation_failed" (an attempt that is retried as a job) or "abandoned" (never
  // registered: its order ended first, or joined another).
  void RecordEphemeralAccount(absl::string_view event);
  // acmevault_authorizations_outstanding{tenant}: the ledger's valid and pending
  // authorizations of the tenant (each policy sweep).
  void SetAuthorizationsOutstanding(absl::string_view tenant, int64_t count);
  // acmevault_certificate_renewals_total{tenant,result}: background renewals (the
  // renew_certificate job) by result: "renewed", "started" (an order made), "failed" (its
  // order failed; retried later) or "given_up".
  void RecordRenewal(absl::string_view tenant, absl::string_view result);
  // acmevault_certificates_due_for_renewal: service-held certificates the last policy scan of
  // this replica found due.
  void SetCertificatesDue(int64_t due);
  // acmevault_token_cache_lookups_total{result}: "hit" (a known token, no store lookup),
  // "negative_hit" (a token refused without a store lookup) or "miss" (asked the store).
  void RecordTokenCacheLookup(absl::string_view result);
  // acmevault_certificate_cache_lookups_total{result}: "hit" (answered from memory) or "miss"
  // (read from the store).
  void RecordCertificateCacheLookup(absl::string_view result);

  // The text exposition format, as /metrics serves it.
  std::string Render() const;
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // The work engine (service/engine.h), by job kind. acmevault_jobs_due{kind}: due and not
  // claimed, across replicas, as last counted.
  void SetJobsDue(absl::string_view kind, int64_t due);
  // A job's run started on this replica: acmevault_jobs_running{kind} + 1, and its queue age
  // (how long after its not_before it started), when given, into
  // acmevault_job_queue_age_seconds{kind}: a kept job's next run gives none.
  void RecordJobStart(absl::string_view kind, std::optional<absl::Duration> queue_age);
  // A run ended: acmevault_jobs_running{kind} - 1, acmevault_job_runs_total{kind,outcome} + 1.
  // Outcomes: "completed", "rescheduled" (more to do later), "retried" (a failed attempt, to be
  // retried), "failed" (given up), "lost" (another replica holds the job now), "write_error"
  // (the outcome could not be stored; the lease will expire).
  void RecordJobEnd(absl::string_view kind, absl::string_view outcome);
  // acmevault_job_claim_seconds: one claim, sent to answered.
  void RecordJobClaim(absl::Duration latency);

 private:
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
};

// Serves GET /metrics on `listen_address` ("127.0.0.1:0" picks a port).
class MetricsServer {
 public:
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen_address,
                                                              const Metrics& metrics);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_METRICS_H_
