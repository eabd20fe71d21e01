#include "service/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <exception>

#include "absl/strings/str_cat.h"
#include "acme/problem.h"

namespace acmevault::service {

struct Metrics::Families {
  prometheus::Family<prometheus::Counter>* rpc_requests;
  prometheus::Family<prometheus::Histogram>* rpc_latency;
  prometheus::Gauge* rpcs_in_flight;
  prometheus::Family<prometheus::Counter>* rpcs_rejected;
  prometheus::Family<prometheus::Counter>* http01_requests;
  prometheus::Family<prometheus::Counter>* acme_requests;
  prometheus::Family<prometheus::Counter>* acme_errors;
  prometheus::Family<prometheus::Histogram>* issuance;
  prometheus::Family<prometheus::Gauge>* key_age;
  prometheus::Family<prometheus::Counter>* key_rotations;
  prometheus::Family<prometheus::Counter>* authz_deactivations;
  prometheus::Family<prometheus::Counter>* orders_held;
  prometheus::Family<prometheus::Counter>* crl_checks;
  prometheus::Family<prometheus::Counter>* ephemeral_accounts;
  prometheus::Family<prometheus::Counter>* hijacks;
  prometheus::Family<prometheus::Gauge>* hijacked;
  prometheus::Family<prometheus::Counter>* verifications;
  prometheus::Family<prometheus::Gauge>* authz_outstanding;
  prometheus::Family<prometheus::Counter>* renewals;
  prometheus::Gauge* certificates_due;
  prometheus::Family<prometheus::Counter>* token_cache;
  prometheus::Family<prometheus::Counter>* certificate_cache;
  prometheus::Family<prometheus::Gauge>* jobs_due;
  prometheus::Family<prometheus::Gauge>* jobs_running;
  prometheus::Family<prometheus::Counter>* job_runs;
  prometheus::Family<prometheus::Histogram>* job_queue_age;
  prometheus::Family<prometheus::Histogram>* job_claim;
};

namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& IssuanceBuckets() {
  static const auto* b =
      new prometheus::Histogram::BucketBoundaries{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  return *b;
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), families_(new Families) {
  families_->rpc_requests = &prometheus::BuildCounter()
                                 .Name("acmevault_rpc_requests_total")
                                 .Help("RPCs handled, by method and status code")
                                 .Register(*registry_);
  families_->rpc_latency = &prometheus::BuildHistogram()
                                .Name("acmevault_rpc_latency_seconds")
                                .Help("RPC handling time")
                                .Register(*registry_);
  families_->rpcs_in_flight = &prometheus::BuildGauge()
                                   .Name("acmevault_rpcs_in_flight")
                                   .Help("RPCs the gRPC server holds now")
                                   .Register(*registry_)
                                   .Add({});
  families_->rpcs_rejected = &prometheus::BuildCounter()
                                  .Name("acmevault_rpcs_rejected_total")
                                  .Help("RPCs refused by a server limit before any handler ran")
                                  .Register(*registry_);
  families_->http01_requests = &prometheus::BuildCounter()
                                    .Name("acmevault_http01_requests_total")
                                    .Help("Requests the HTTP-01 responder answered, by status")
                                    .Register(*registry_);
  families_->acme_requests = &prometheus::BuildCounter()
                                  .Name("acmevault_acme_requests_total")
                                  .Help("ACME operations sent to CAs")
                                  .Register(*registry_);
  families_->acme_errors = &prometheus::BuildCounter()
                                .Name("acmevault_acme_errors_total")
                                .Help("ACME operations that failed, by problem type")
                                .Register(*registry_);
  families_->issuance = &prometheus::BuildHistogram()
                             .Name("acmevault_issuance_duration_seconds")
                             .Help("Time from order creation to stored certificate")
                             .Register(*registry_);
  families_->key_age = &prometheus::BuildGauge()
                            .Name("acmevault_account_key_age_seconds")
                            .Help("Age of each tenant's active ACME account key")
                            .Register(*registry_);
  families_->key_rotations = &prometheus::BuildCounter()
                                  .Name("acmevault_account_key_rotations_total")
                                  .Help("Account-key rotations by policy, by tenant and outcome")
                                  .Register(*registry_);
  families_->hijacks = &prometheus::BuildCounter()
                            .Name("acmevault_account_hijacks_detected_total")
                            .Help("Accounts found taken over at the CA, by tenant")
                            .Register(*registry_);
  families_->hijacked = &prometheus::BuildGauge()
                             .Name("acmevault_accounts_hijacked")
                             .Help("1 while the tenant's account is hijacked and not replaced")
                             .Register(*registry_);
  families_->verifications = &prometheus::BuildCounter()
                                  .Name("acmevault_account_verifications_total")
                                  .Help("Account verifications at the CA, by result")
                                  .Register(*registry_);
  families_->authz_deactivations =
      &prometheus::BuildCounter()
           .Name("acmevault_authorization_deactivations_total")
           .Help("Authorization deactivations by policy, by result")
           .Register(*registry_);
  families_->crl_checks = &prometheus::BuildCounter()
                               .Name("acmevault_crl_checks_total")
                               .Help("Certificates' CRL readings by the policy scan, by result")
                               .Register(*registry_);
  families_->orders_held =
      &prometheus::BuildCounter()
           .Name("acmevault_orders_held_total")
           .Help("Order steps the CA's limits held back without a request, by reason")
           .Register(*registry_);
  families_->ephemeral_accounts = &prometheus::BuildCounter()
                                      .Name("acmevault_ephemeral_accounts_total")
                                      .Help("Ephemeral ACME accounts (one per order), by event")
                                      .Register(*registry_);
  families_->authz_outstanding = &prometheus::BuildGauge()
                                      .Name("acmevault_authorizations_outstanding")
                                      .Help("Valid or pending authorizations in the ledger, by tenant")
                                      .Register(*registry_);
  families_->renewals = &prometheus::BuildCounter()
                             .Name("acmevault_certificate_renewals_total")
                             .Help("Background certificate renewals, by tenant and result")
                             .Register(*registry_);
  families_->certificates_due =
      &prometheus::BuildGauge()
           .Name("acmevault_certificates_due_for_renewal")
           .Help("Service-held certificates the last policy scan found due for renewal")
           .Register(*registry_)
           .Add({});
  families_->token_cache =
      &prometheus::BuildCounter()
           .Name("acmevault_token_cache_lookups_total")
           .Help("Bearer-token lookups by cache result: hit, negative_hit, miss")
           .Register(*registry_);
  families_->certificate_cache = &prometheus::BuildCounter()
                                      .Name("acmevault_certificate_cache_lookups_total")
                                      .Help("GetCertificate reads by cache result: hit, miss")
                                      .Register(*registry_);
  families_->jobs_due = &prometheus::BuildGauge()
                             .Name("acmevault_jobs_due")
                             .Help("Jobs due and not claimed, across replicas, by kind")
                             .Register(*registry_);
  families_->jobs_running = &prometheus::BuildGauge()
                                 .Name("acmevault_jobs_running")
                                 .Help("Jobs running on this replica, by kind")
                                 .Register(*registry_);
  families_->job_runs = &prometheus::BuildCounter()
                             .Name("acmevault_job_runs_total")
                             .Help("Job runs ended on this replica, by kind and outcome")
                             .Register(*registry_);
  families_->job_queue_age = &prometheus::BuildHistogram()
                                  .Name("acmevault_job_queue_age_seconds")
                                  .Help("How long after its not_before a job started, by kind")
                                  .Register(*registry_);
  families_->job_claim = &prometheus::BuildHistogram()
                              .Name("acmevault_job_claim_seconds")
                              .Help("Time one claim of due jobs took")
                              .Register(*registry_);
}

Metrics::~Metrics() = default;

void Metrics::RecordRpc(absl::string_view method, absl::StatusCode code, absl::Duration latency) {
  families_->rpc_requests
      ->Add({{"method", std::string(method)}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
  families_->rpc_latency->Add({{"method", std::string(method)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::AddRpcsInFlight(int delta) { families_->rpcs_in_flight->Increment(delta); }

void Metrics::RecordRpcRejected(absl::string_view limit) {
  families_->rpcs_rejected->Add({{"limit", std::string(limit)}}).Increment();
}

void Metrics::RecordHttp01(int status) {
  families_->http01_requests->Add({{"code", absl::StrCat(status)}}).Increment();
}

void Metrics::RecordAcme(absl::string_view operation, const absl::Status& outcome) {
  families_->acme_requests->Add({{"operation", std::string(operation)}}).Increment();
  if (outcome.ok()) return;
  auto problem = acme::GetProblem(outcome);
  std::string type = problem ? problem->ShortType() : absl::StatusCodeToString(outcome.code());
  families_->acme_errors->Add({{"operation", std::string(operation)}, {"type", type}}).Increment();
}

void Metrics::RecordIssuance(absl::Duration duration, bool ok) {
  families_->issuance->Add({{"outcome", ok ? "ok" : "error"}}, IssuanceBuckets())
      .Observe(absl::ToDoubleSeconds(duration));
}

void Metrics::SetAccountKeyAge(absl::string_view tenant, absl::Duration age) {
  families_->key_age->Add({{"tenant", std::string(tenant)}}).Set(absl::ToDoubleSeconds(age));
}

void Metrics::RecordKeyRotation(absl::string_view tenant, absl::string_view outcome) {
  families_->key_rotations->Add({{"tenant", std::string(tenant)}, {"outcome", std::string(outcome)}})
      .Increment();
}

void Metrics::RecordOrderHeld(absl::string_view reason) {
  families_->orders_held->Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::RecordCrlCheck(absl::string_view result) {
  families_->crl_checks->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::RecordAccountHijack(absl::string_view tenant) {
  families_->hijacks->Add({{"tenant", std::string(tenant)}}).Increment();
}

void Metrics::SetAccountHijacked(absl::string_view tenant, bool hijacked) {
  families_->hijacked->Add({{"tenant", std::string(tenant)}}).Set(hijacked ? 1 : 0);
}

void Metrics::RecordAccountVerification(absl::string_view result) {
  families_->verifications->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::RecordAuthorizationDeactivation(absl::string_view result) {
  families_->authz_deactivations->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::RecordEphemeralAccount(absl::string_view event) {
  families_->ephemeral_accounts->Add({{"event", std::string(event)}}).Increment();
}

void Metrics::SetAuthorizationsOutstanding(absl::string_view tenant, int64_t count) {
  families_->authz_outstanding->Add({{"tenant", std::string(tenant)}})
      .Set(static_cast<double>(count));
}

void Metrics::RecordRenewal(absl::string_view tenant, absl::string_view result) {
  families_->renewals->Add({{"tenant", std::string(tenant)}, {"result", std::string(result)}})
      .Increment();
}

void Metrics::SetCertificatesDue(int64_t due) {
  families_->certificates_due->Set(static_cast<double>(due));
}

void Metrics::RecordTokenCacheLookup(absl::string_view result) {
  families_->token_cache->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::RecordCertificateCacheLookup(absl::string_view result) {
  families_->certificate_cache->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::SetJobsDue(absl::string_view kind, int64_t due) {
  families_->jobs_due->Add({{"kind", std::string(kind)}}).Set(static_cast<double>(due));
}

void Metrics::RecordJobStart(absl::string_view kind, std::optional<absl::Duration> queue_age) {
  families_->jobs_running->Add({{"kind", std::string(kind)}}).Increment();
  if (!queue_age.has_value()) return;
  families_->job_queue_age->Add({{"kind", std::string(kind)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(std::max(*queue_age, absl::ZeroDuration())));
}

void Metrics::RecordJobEnd(absl::string_view kind, absl::string_view outcome) {
  families_->jobs_running->Add({{"kind", std::string(kind)}}).Decrement();
  families_->job_runs->Add({{"kind", std::string(kind)}, {"outcome", std::string(outcome)}})
      .Increment();
}

void Metrics::RecordJobClaim(absl::Duration latency) {
  families_->job_claim->Add({}, LatencyBuckets()).Observe(absl::ToDoubleSeconds(latency));
}

std::string Metrics::Render() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen_address, const Metrics& metrics) {
  auto server = std::unique_ptr<MetricsServer>(new MetricsServer());
  try {  // prometheus-cpp (civetweb) reports a failed bind by throwing; it stops here.
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen_address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics server cannot listen on ", listen_address, ": ", e.what()));
  }
  server->exposer_->RegisterCollectable(metrics.registry());
  auto ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::InternalError("metrics server has no port");
  server->port_ = ports[0];
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace acmevault::service
