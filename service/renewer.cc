#include "service/renewer.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "acme/client.h"
#include "common/status_macros.h"
#include "crypto/x509.h"
#include "service/key_policy.h"
#include "service/log.h"
#include "service/renewal_policy.h"
#include "service/required.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<Renewer>> Renewer::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("Renewer", {{"tenants", options.tenants},
                                                   {"orders", options.orders},
                                                   {"certificates", options.certificates},
                                                   {"issuer", options.issuer},
                                                   {"engine", options.engine},
                                                   {"clock", options.clock}}));
  if (options.check_interval <= absl::ZeroDuration() ||
      options.failure_backoff <= absl::ZeroDuration() || options.max_orders < 1) {
    return absl::InvalidArgumentError(
        "Renewer: check_interval and failure_backoff must be positive, max_orders at least 1");
  }
  auto renewer = std::unique_ptr<Renewer>(new Renewer(std::move(options)));
  RETURN_IF_ERROR(renewer->options_.engine->Register(
      kRenewJob, [raw = renewer.get()](const JobRun& run) { return raw->Renew(run); }));
  return renewer;
}

Renewer::~Renewer() { options_.engine->Stop(); }

std::string Renewer::OrderKey(storage::CertificateId certificate, int attempt) {
  return absl::StrCat("renew:", certificate, ":", attempt);
}

JobOutcome Renewer::Renew(const JobRun& run) {
  storage::CertificateId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("a renewal job's subject is not a certificate id"));
  }
  const storage::Scope scope{run.job().tenant, {"renewal policy", kRenewJob}};
  absl::StatusOr<storage::Tenant> tenant = options_.tenants->GetTenant(scope);
  if (!tenant.ok()) return JobOutcome::Failed(tenant.status());
  auto count = [&](absl::string_view result) {
    if (options_.metrics != nullptr) options_.metrics->RecordRenewal(tenant->spec.name, result);
  };
  absl::StatusOr<storage::Certificate> old = options_.certificates->GetCertificate(scope, id);
  if (absl::IsNotFound(old.status())) return JobOutcome::Done();
  if (!old.ok()) return JobOutcome::Failed(old.status());
  const absl::Time now = options_.clock->Now();

  // The orders earlier runs made, in attempt order: the first not failed decides.
  int attempt = 0;
  for (; attempt < options_.max_orders; ++attempt) {
    absl::StatusOr<storage::Order> order =
        options_.orders->FindOrderByIdempotencyKey(scope, OrderKey(id, attempt));
    if (absl::IsNotFound(order.status())) break;
    if (!order.ok()) return JobOutcome::Failed(order.status());
    if (order->state == storage::OrderState::kValid) {
      if (order->certificate.has_value()) {
        if (absl::Status s =
                options_.certificates->RecordReplacedCertificate(scope, *order->certificate, id);
            !s.ok()) {
          return JobOutcome::Failed(s);
        }
      }
      count("renewed");
      Log(LogLevel::kInfo, "certificate renewed by policy",
          {{"tenant", tenant->spec.name}, {"replaced", old->serial}});
      return JobOutcome::Done();
    }
    if (order->state != storage::OrderState::kInvalid) {
      return JobOutcome::RetryAt(now + options_.check_interval);
    }
    // Failed: the next order waits failure_backoff * 2^attempt after this one ended.
    const absl::Time next = order->updated_at + options_.failure_backoff * (int64_t{1} << attempt);
    if (attempt + 1 < options_.max_orders && now < next) return JobOutcome::RetryAt(next);
  }
  if (attempt == options_.max_orders) {
    count("given_up");
    return JobOutcome::FailedPermanently(absl::ResourceExhaustedError(absl::StrCat(
        "renewal of certificate ", old->serial, ": ", options_.max_orders, " orders failed")));
  }

  // No order yet for this attempt: is one still wanted?
  if (!old->has_private_key || old->superseded_at.has_value() || old->not_after <= now ||
      !DecideRenewal(tenant->spec.policy, *old, StoredAriWindow(*old), now).due) {
    return JobOutcome::Done();
  }
  IssueRequest request;
  request.identifiers = old->identifiers;
  // A key of the old one's algorithm while the tenant's certificate key policy allows it;
  // otherwise the policy's default.
  if (auto chain = crypto::ParsePemChain(old->chain_pem); chain.ok() && !chain->empty()) {
    if (AllowsCertificateKey(tenant->spec.policy, chain->front().public_key.algorithm())) {
      request.key_algorithm = chain->front().public_key.algorithm();
    }
    // RFC 9773 §5: the order says which certificate it replaces (sent when the CA offers
    // renewalInfo), so the CA can treat it as a renewal (Let's Encrypt exempts such orders
    // from its rate limits).
    if (auto cert_id = acme::AriCertId(chain->front().der); cert_id.ok()) {
      request.replaces = *cert_id;
    }
  }
  request.force_new = true;
  request.idempotency_key = OrderKey(id, attempt);
  Caller caller;
  caller.identity.tenant = run.job().tenant;
  caller.identity.role = storage::Role::kAdmin;
  caller.name = "renewal policy";
  absl::StatusOr<Issuer::Started> started = options_.issuer->Start(caller, request);
  if (!started.ok()) {
    count("failed");
    Log(LogLevel::kWarning, "renewal by policy could not order",
        {{"tenant", tenant->spec.name},
         {"certificate", old->serial},
         {"status", started.status().ToString()}});
    return JobOutcome::Failed(started.status());
  }
  if (attempt > 0) count("failed");  // the earlier attempt's order failed
  count("started");
  return JobOutcome::RetryAt(now + options_.check_interval);
}

}  // namespace acmevault::service
