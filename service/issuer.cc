#include "service/issuer.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "crypto/jwk.h"
#include "crypto/x509.h"
#include "service/failure.h"
#include "service/identifiers.h"
#include "service/key_policy.h"
#include "service/log.h"
#include "service/paging.h"
#include "service/renewal_policy.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

bool IsRsa(crypto::KeyAlgorithm algorithm) {
  return algorithm == crypto::KeyAlgorithm::kRsa2048 ||
         algorithm == crypto::KeyAlgorithm::kRsa3072 ||
         algorithm == crypto::KeyAlgorithm::kRsa4096;
}

constexpr size_t kMaxIdempotencyKey = 200;

absl::Status Prefixed(absl::string_view field, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
}

// Whether a service-held key of `order` may go to this request: its caller (the scope's
// identity) made the order under the request's idempotency key. Keys like "web01" are easy to
// guess, so the key alone proves nothing.
bool MadeForCaller(const storage::Scope& scope, const storage::Order& order,
                   const IssueRequest& request) {
  return !request.idempotency_key.empty() && order.idempotency_key == request.idempotency_key &&
         !order.created_by.empty() && order.created_by == scope.actor.identity;
}

// The leaf key of a stored certificate.
absl::StatusOr<crypto::PublicKey> LeafKey(const storage::Certificate& cert) {
  ASSIGN_OR_RETURN(auto chain, crypto::ParsePemChain(cert.chain_pem));
  return chain.front().public_key;
}

}  // namespace

absl::StatusOr<absl::Time> IssueWaitUntil(const IssueRequest& request, absl::Time now,
                                          absl::Duration default_wait) {
  if (request.max_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("wait_seconds: must not be negative");
  }
  absl::Time until = request.deadline ? *request.deadline - absl::Seconds(1) : now + default_wait;
  if (request.max_wait > absl::ZeroDuration()) until = std::min(until, now + request.max_wait);
  return until;
}

absl::StatusOr<std::unique_ptr<Issuer>> Issuer::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("Issuer", {{"tenants", options.tenants},
                                                  {"accounts", options.accounts},
                                                  {"orders", options.orders},
                                                  {"certificates", options.certificates},
                                                  {"audit", options.audit},
                                                  {"runner", options.runner},
                                                  {"engine", options.engine},
                                                  {"notices", options.notices},
                                                  {"clock", options.clock},
                                                  {"wait_clock", options.wait_clock}}));
  auto issuer = std::unique_ptr<Issuer>(new Issuer(std::move(options)));
  RETURN_IF_ERROR(issuer->options_.engine->Register(
      kOrderStepJob, [raw = issuer.get()](const JobRun& run) { return raw->StepOrder(run); }));
  RETURN_IF_ERROR(issuer->options_.engine->Register(
      kDeactivateEphemeralAccountJob,
      [raw = issuer.get()](const JobRun& run) { return raw->CloseEphemeralAccount(run); }));
  return issuer;
}

Issuer::~Issuer() { options_.engine->Stop(); }

JobOutcome Issuer::CloseEphemeralAccount(const JobRun& run) {
  storage::AccountId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("an ephemeral account job's subject is not an account id"));
  }
  const storage::Scope scope{run.job().tenant,
                             {"ephemeral accounts", kDeactivateEphemeralAccountJob}};
  absl::Status s = options_.runner->CloseEphemeralAccount(scope, id);
  if (absl::IsNotFound(s)) return JobOutcome::FailedPermanently(s);
  if (!s.ok()) return JobOutcome::Failed(s);
  return JobOutcome::Done();
}

void Issuer::Announce(storage::TenantId tenant, storage::OrderId order) {
  options_.notices->Notify(storage::JobNotice{tenant, kOrderStepJob, absl::StrCat(order), false});
}

storage::Scope Issuer::StepScope(storage::TenantId tenant) const {
  return storage::Scope{tenant, {options_.replica_id, kOrderStepJob}};
}

JobOutcome Issuer::StepOrder(const JobRun& run) {
  storage::OrderId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("an order_step job's subject is not an order id"));
  }
  const storage::Scope scope = StepScope(run.job().tenant);
  OrderJob job{scope, storage::OrderLeaseOf(run.lease(), id), run.job().attempts, run.kept(),
               /*defers_writes=*/true};
  absl::StatusOr<OrderStepResult> result;
  std::exception_ptr thrown;
  try {
    result = options_.runner->Step(job);
  } catch (...) {
    thrown = std::current_exception();
  }
  if (thrown) {
    absl::StatusOr<storage::Order> row = RecordException(scope, job.lease, thrown);
    if (row.ok() && storage::IsTerminal(row->state)) {
      result = OrderStepResult{OrderStepResult::Kind::kFinished, *row};
    } else {
      result = row.status();
    }
  }
  const std::map<std::string, std::string> about{{"tenant", absl::StrCat(scope.tenant)},
                                                 {"order", absl::StrCat(id)}};
  if (!result.ok()) {
    // A store error (or a lost lease, which the engine's write of this outcome then meets):
    // the order stays where it was for a later step.
    Log(LogLevel::kWarning, "order step failed",
        {{"tenant", about.at("tenant")},
         {"order", about.at("order")},
         {"status", SummarizeFailure(result.status())}});
    return JobOutcome::Failed(result.status());
  }
  switch (result->kind) {
    case OrderStepResult::Kind::kFinished: {
      Log(LogLevel::kInfo, "order finished",
          {{"tenant", about.at("tenant")},
           {"order", about.at("order")},
           {"state", std::string(storage::OrderStateName(result->order.state))},
           {"error", result->order.error}});
      {
        absl::MutexLock lock(&mu_);
        stopped_.erase(id);
        const absl::Time now = options_.clock->Now();
        while (!ended_order_.empty() && now - ended_order_.front().first > kEndedKept) {
          const auto [at, order] = ended_order_.front();
          ended_order_.pop_front();
          // Unless the order ended here again since (the later entry is its own).
          if (auto it = ended_.find(order); it != ended_.end() && it->second.at == at) {
            ended_.erase(it);
          }
        }
        ended_[id] = Ended{result->order, result->certificate, now};
        ended_order_.emplace_back(now, id);
      }
      Announce(scope.tenant, id);
      // A stored certificate: the step's own transaction completed the job (FinishOrder).
      return result->certificate.has_value() ? JobOutcome::Recorded() : JobOutcome::Done();
    }
    case OrderStepResult::Kind::kWaiting: {
      absl::MutexLock lock(&mu_);
      stopped_.erase(id);
      // The CA works on it: looked at again soon, usually here under the same lease. Should
      // the job go back to the store instead, what the step left unwritten is written, then
      // what it left in memory for the next step here is dropped.
      std::function<absl::Status()> unkept;
      if (result->unrecorded || result->forget) {
        unkept = [unrecorded = std::move(result->unrecorded), forget = std::move(result->forget)] {
          absl::Status written = unrecorded ? unrecorded() : absl::OkStatus();
          if (forget) forget();
          return written;
        };
      }
      return JobOutcome::SoonAt(result->at, std::move(unkept));
    }
    case OrderStepResult::Kind::kHeld: {
      // Waiting for the CA's limits (a hold, the budget) or set aside as stalled: no failed
      // attempt (the order is not failing, and such waits can be long), but the callers
      // waiting here hear why and until when (RESOURCE_EXHAUSTED, UNAVAILABLE).
      {
        absl::MutexLock lock(&mu_);
        stopped_[id] = Stop{result->why, ++stops_};
      }
      Announce(scope.tenant, id);
      return JobOutcome::RetryAt(result->at);
    }
    case OrderStepResult::Kind::kStopped:
      break;
  }
  std::optional<absl::Time> at;
  if (result->at != absl::InfinitePast()) at = result->at;
  if (!result->quiet) {
    Log(LogLevel::kWarning, "order step stopped",
        {{"tenant", about.at("tenant")},
         {"order", about.at("order")},
         {"status", SummarizeFailure(result->why)}});
    {
      absl::MutexLock lock(&mu_);
      stopped_[id] = Stop{result->why, ++stops_};
    }
    Announce(scope.tenant, id);
  }
  return JobOutcome::Failed(result->why, at);
}

bool Issuer::AfterUnknownCreate(const storage::Scope& scope, const storage::NewOrder& spec) {
  if (spec.idempotency_key.empty() && spec.id <= 0) return true;  // nothing to look it up by
  // Without a key the order would have the id drawn for this request alone; with one, an order
  // the key binds for the same account is taken as this one.
  absl::StatusOr<storage::Order> order =
      spec.idempotency_key.empty()
          ? options_.orders->GetOrder(scope, spec.id)
          : options_.orders->FindOrderByIdempotencyKey(scope, spec.idempotency_key);
  if (absl::IsNotFound(order.status())) return false;
  if (!order.ok()) return true;
  if (order->account != spec.account) return false;
  if (!spec.claim.has_value()) return true;
  absl::StatusOr<storage::Job> job =
      options_.jobs->FindJob(scope, kOrderStepJob, absl::StrCat(order->id));
  if (!job.ok() || job->lease_owner != spec.claim->owner || job->fencing_token != 1 ||
      !job->lease_expires_at.has_value() || options_.engine->Holds(job->id)) {
    return true;
  }
  const storage::JobLease lease{scope.tenant, job->id, job->lease_owner, job->fencing_token,
                                *job->lease_expires_at};
  absl::Status released = options_.jobs->ReleaseJob(lease, options_.clock->Now());
  if (released.ok()) {
    options_.engine->Scheduled();
  } else {
    Log(LogLevel::kWarning, "could not give back an order's job after a lost commit",
        {{"tenant", absl::StrCat(scope.tenant)},
         {"order", absl::StrCat(order->id)},
         {"status", SummarizeFailure(released)}});
  }
  return true;
}

std::optional<Issuer::Ended> Issuer::EndedHere(storage::TenantId tenant,
                                               storage::OrderId order) {
  absl::MutexLock lock(&mu_);
  auto it = ended_.find(order);
  if (it == ended_.end() || it->second.order.tenant != tenant) return std::nullopt;
  return it->second;
}

absl::StatusOr<storage::Order> Issuer::RecordException(const storage::Scope& scope,
                                                       const storage::Lease& lease,
                                                       std::exception_ptr thrown) {
  const std::string what = DescribeException(thrown);
  Log(LogLevel::kError, "order step threw",
      {{"tenant", absl::StrCat(lease.tenant)}, {"order", absl::StrCat(lease.order)},
       {"error", what}});
  try {
    // Before finalize the order is given up (a new step would most likely throw again); once
    // the CA may hold a certificate for it, it stays for a later step to download.
    ASSIGN_OR_RETURN(storage::Order order, options_.orders->GetOrder(scope, lease.order));
    if (storage::IsTerminal(order.state)) return order;
    if (order.state >= storage::OrderState::kProcessing) return absl::InternalError(what);
    RETURN_IF_ERROR(
        options_.orders->TransitionOrder(scope, lease, storage::OrderState::kInvalid, {what}));
    return options_.orders->GetOrder(scope, lease.order);
  } catch (...) {
    return absl::InternalError(what);
  }
}

absl::StatusOr<storage::Order> Issuer::WaitForOrder(const storage::Scope& scope,
                                                    storage::OrderId order, absl::Time until,
                                                    const std::function<bool()>& cancelled) {
  std::unique_ptr<JobNotices::Watch> watch =
      options_.notices->Open(scope.tenant, kOrderStepJob, absl::StrCat(order),
                             JobNotices::From::kFromNow, JobNotices::Missed::kWake);
  while (true) {
    ASSIGN_OR_RETURN(storage::Order row, options_.orders->GetOrder(scope, order));
    if (storage::IsTerminal(row.state)) return row;
    if (!watch->Wait(until, cancelled)) return options_.orders->GetOrder(scope, order);
    // Ended by a step on this replica: the row as that step stored it, without reading it.
    if (std::optional<Ended> ended = EndedHere(scope.tenant, order);
        ended.has_value() && storage::IsTerminal(ended->order.state)) {
      return ended->order;
    }
  }
}

absl::StatusOr<Issuer::Started> Issuer::Start(const Caller& caller, const IssueRequest& request) {
  const storage::Scope scope = caller.ScopeFor("CertificateService/IssueCertificate");
  IssueRequest unbounded = request;
  unbounded.deadline = absl::InfiniteFuture();
  unbounded.max_wait = absl::ZeroDuration();
  ASSIGN_OR_RETURN(const Checked checked, CheckRequest(caller, scope, unbounded));
  Started started;
  ASSIGN_OR_RETURN(started.reused, FindReusable(scope, checked));
  if (started.reused) return started;
  ASSIGN_OR_RETURN(const std::optional<storage::Account> account, ChooseAccount(scope, checked));
  ASSIGN_OR_RETURN(storage::CreateOrderResult created,
                   CreateOrJoinOrder(scope, checked, account ? &*account : nullptr, true,
                                     nullptr));
  started.order = std::move(created.order);
  started.created = created.created;
  return started;
}

absl::StatusOr<IssueResult> Issuer::Issue(const Caller& caller, const IssueRequest& request) {
  const storage::Scope scope = caller.ScopeFor("CertificateService/IssueCertificate");
  ASSIGN_OR_RETURN(const Checked checked, CheckRequest(caller, scope, request));
  // The answer carries the renewal decision for its certificate, by the policy just read.
  auto with_renewal = [&](IssueResult result) {
    if (result.certificate) {
      result.renewal = DecideRenewal(checked.tenant.spec.policy, *result.certificate,
                                     StoredAriWindow(*result.certificate), options_.clock->Now());
    }
    return result;
  };
  ASSIGN_OR_RETURN(std::optional<IssueResult> reused, FindReusable(scope, checked));
  if (reused) return with_renewal(*std::move(reused));
  ASSIGN_OR_RETURN(const std::optional<storage::Account> account, ChooseAccount(scope, checked));
  // A joined order made for another host's key is waited out, then a fresh one is made for this
  // request (at most once, and without the idempotency key that led to the other order).
  for (int attempt = 0; attempt < 2; ++attempt) {
    Waiting waiting;
    ASSIGN_OR_RETURN(storage::CreateOrderResult created,
                     CreateOrJoinOrder(scope, checked, account ? &*account : nullptr,
                                       attempt == 0, &waiting));
    ASSIGN_OR_RETURN(storage::Order order,
                     WaitForResult(scope, created.order.id, waiting, checked));
    auto result = Finish(scope, std::move(order), checked, created.created,
                         waiting.generated_key ? &*waiting.generated_key : nullptr);
    if (result.ok()) return with_renewal(*std::move(result));
    if (!absl::IsAborted(result.status()) || created.created) return result;
  }
  return absl::AbortedError("the in-flight order for these identifiers certified another key");
}

absl::StatusOr<Issuer::Checked> Issuer::CheckRequest(const Caller& caller,
                                                     const storage::Scope& scope,
                                                     const IssueRequest& request) {
  Checked checked;
  checked.request = &request;
  if (request.csr && request.csr->empty()) return absl::InvalidArgumentError("csr: is empty");
  if (request.idempotency_key.size() > kMaxIdempotencyKey) {
    return absl::InvalidArgumentError(
        absl::StrCat("idempotency_key: longer than ", kMaxIdempotencyKey, " characters"));
  }
  const absl::Time now = options_.wait_clock->Now();
  ASSIGN_OR_RETURN(checked.wait_until, IssueWaitUntil(request, now, options_.default_wait));
  checked.wait_until = std::min(checked.wait_until, now + options_.max_wait);
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kHost));
  ASSIGN_OR_RETURN(checked.identifiers, NormalizeDnsNames(request.identifiers, "identifiers"));
  // The tenant, its accounts and the current certificate for these names: one transaction.
  ASSIGN_OR_RETURN(storage::IssueContext context,
                   options_.certificates->LoadIssueContext(scope, checked.identifiers));
  checked.tenant = std::move(context.tenant);
  checked.accounts = std::move(context.accounts);
  checked.current = std::move(context.current);
  checked.order_id = context.order_id;
  ASSIGN_OR_RETURN(AllowList allow, AllowList::Create(checked.tenant.spec.allowed_identifiers));
  if (absl::Status allowed = allow.CheckAll(checked.identifiers); !allowed.ok()) {
    storage::AuditEvent denied;
    denied.action = "IssueDenied";
    denied.identifiers = checked.identifiers;
    denied.outcome = "permission_denied";
    options_.audit->AppendAudit(scope, denied).IgnoreError();
    return allowed;
  }
  const storage::TenantPolicy& policy = checked.tenant.spec.policy;
  // The tenant's certificate key policy; a refusal is audited as the allow-list's is.
  auto refuse_key = [&](crypto::KeyAlgorithm algorithm, absl::string_view field) {
    absl::Status refused = CheckCertificateKey(policy, algorithm, field);
    if (!refused.ok()) {
      storage::AuditEvent denied;
      denied.action = "IssueDenied";
      denied.identifiers = checked.identifiers;
      denied.outcome = "invalid_argument";
      denied.detail = absl::StrCat("certificate key ", crypto::KeyAlgorithmName(algorithm),
                                   " not allowed by the tenant's policy");
      options_.audit->AppendAudit(scope, denied).IgnoreError();
    }
    return refused;
  };
  if (!request.csr) {
    if (request.key_algorithm) RETURN_IF_ERROR(refuse_key(*request.key_algorithm, "key_algorithm"));
    checked.key_algorithm = request.key_algorithm.value_or(DefaultCertificateKey(policy));
    return checked;
  }
  auto parsed = crypto::ParseCsr(*request.csr);
  if (!parsed.ok()) return Prefixed("csr", parsed.status());
  RETURN_IF_ERROR(refuse_key(parsed->public_key.algorithm(), "csr"));
  if (absl::Status s = crypto::CheckCsr(*parsed, checked.identifiers,
                                        AccountPublicKeys(scope, checked.accounts),
                                        CertificateKeyAlgorithms(policy));
      !s.ok()) {
    return Prefixed("csr", s);
  }
  checked.csr = *std::move(parsed);
  return checked;
}

std::vector<crypto::PublicKey> Issuer::AccountPublicKeys(
    const storage::Scope& scope, const std::vector<storage::Account>& accounts) {
  std::vector<crypto::PublicKey> out;
  for (const auto& a : accounts) {
    // A closed ephemeral account's key signs nothing any more; there may be thousands.
    if (a.ephemeral && a.status != storage::AccountStatus::kValid &&
        a.status != storage::AccountStatus::kPending) {
      continue;
    }
    auto keys = options_.accounts->ListKeys(scope, a.id);
    if (!keys.ok()) continue;
    for (const auto& k : *keys) {
      auto jwk = nlohmann::json::parse(k.public_key.public_jwk, nullptr, false);
      auto pub = crypto::PublicKeyFromJwk(jwk);
      if (pub.ok()) out.push_back(*pub);
    }
  }
  return out;
}

absl::StatusOr<std::optional<IssueResult>> Issuer::FindReusable(const storage::Scope& scope,
                                                                const Checked& checked) {
  const IssueRequest& request = *checked.request;
  if (!checked.current.has_value()) return std::nullopt;
  const storage::Certificate* current = &*checked.current;
  // The same decision as the background renewal's (service/renewal_policy.h): a certificate
  // due for renewal is not handed out again.
  if (request.force_new || DecideRenewal(checked.tenant.spec.policy, *current,
                                         StoredAriWindow(*current), options_.clock->Now())
                               .due) {
    return std::nullopt;
  }
  // A service-held key goes only to the request that made it: the reuse is open to its caller
  // repeating that order's idempotency key while the key still binds the order (24 hours), and
  // to nobody else (CreateOrJoinOrder refuses another identity; a caller without the key gets
  // a fresh one).
  bool usable = false;
  if (checked.csr) {
    auto leaf = LeafKey(*current);
    usable = leaf.ok() && leaf->Equals(checked.csr->public_key);
  } else if (current->has_private_key && current->order && !request.idempotency_key.empty()) {
    auto bound = options_.orders->FindOrderByIdempotencyKey(scope, request.idempotency_key);
    // A held key of another algorithm than the one this request gets (the policy changed, or
    // the request names another) is not handed out again.
    auto leaf = LeafKey(*current);
    usable = bound.ok() && bound->id == *current->order && MadeForCaller(scope, *bound, request) &&
             leaf.ok() && leaf->algorithm() == checked.key_algorithm;
  }
  if (!usable) return std::nullopt;
  IssueResult result;
  result.reused = true;
  result.certificate = *current;
  if (current->order) {
    auto order = options_.orders->GetOrder(scope, *current->order);
    if (order.ok()) result.order = *order;
  }
  if (!checked.csr) {
    ASSIGN_OR_RETURN(crypto::PrivateKey key, options_.certificates->GetCertificateKey(
                                                 scope, current->id, "IssueCertificate (reuse)"));
    result.private_key_pem = key.ToPkcs8Pem();
  }
  return result;
}

absl::StatusOr<std::optional<storage::Account>> Issuer::ChooseAccount(
    const storage::Scope& scope, const Checked& checked) {
  if (checked.tenant.spec.policy.ephemeral_accounts) return std::nullopt;
  const std::vector<storage::Account>& accounts = checked.accounts;
  for (auto it = accounts.rbegin(); it != accounts.rend(); ++it) {
    if (it->ephemeral) continue;  // One order's: never the tenant's account.
    // The newest account marked hijacked, with no valid one made after it: the attacker holds
    // it, so nothing more is issued under it (service/accounts.h, hijack detection).
    if (it->hijacked_at) return HijackedAccountError(*it);
    if (it->status == storage::AccountStatus::kValid && !it->account_url.empty()) return *it;
  }
  return absl::FailedPreconditionError(
      "the tenant has no valid ACME account: an admin must call AccountService.CreateAccount");
}

absl::StatusOr<storage::Account> Issuer::NewEphemeralAccount(const storage::Scope& scope,
                                                              const storage::Tenant& tenant) {
  if (options_.keys == nullptr) {
    return absl::FailedPreconditionError(
        "the tenant's policy asks for ephemeral accounts, but this service cannot make account "
        "keys for them");
  }
  const std::string& directory = tenant.spec.acme_directory_url;
  if (directory.empty()) {
    return absl::FailedPreconditionError("the tenant has no ACME directory configured");
  }
  ASSIGN_OR_RETURN(NewAccountKey key, options_.keys->Generate(tenant.spec.policy.key_storage,
                                                              tenant.spec.policy.key_algorithm));
  auto created = options_.accounts->CreateEphemeralAccount(scope, directory, key.material, key.info);
  if (!created.ok()) options_.keys->Discard(key);
  return created;
}

absl::StatusOr<storage::CreateOrderResult> Issuer::CreateOrJoinOrder(
    const storage::Scope& scope, const Checked& checked, const storage::Account* chosen,
    bool with_idempotency_key, Waiting* waiting) {
  const IssueRequest& request = *checked.request;
  // Ephemeral-account mode: an account of the order's own, stored before the order (which
  // names it); registered at the CA by the order's first step, on whichever replica.
  std::optional<storage::Account> ephemeral;
  if (chosen == nullptr) {
    ASSIGN_OR_RETURN(ephemeral, NewEphemeralAccount(scope, checked.tenant));
  }
  const storage::Account& account = chosen != nullptr ? *chosen : *ephemeral;
  // Closes the ephemeral account of an order that was not made (joined, or refused): it never
  // reached the CA.
  auto abandon = [&] {
    if (!ephemeral) return;
    absl::Status s = options_.accounts->SetAccountStatus(scope, ephemeral->id,
                                                         storage::AccountStatus::kDeactivated);
    if (!s.ok()) {
      Log(LogLevel::kWarning, "could not close an unused ephemeral account",
          {{"tenant", absl::StrCat(scope.tenant)},
           {"account", absl::StrCat(ephemeral->id)},
           {"status", SummarizeFailure(s)}});
    }
    if (options_.metrics != nullptr) options_.metrics->RecordEphemeralAccount("abandoned");
  };
  // A host's CSR goes with the new row (a joined order keeps its own and drops it). So does a
  // service-side EC key, made first since it costs microseconds: an order committed without
  // its material (a COMMIT whose answer was lost) would be joined by the caller's retry and
  // end invalid, its idempotency key bound to that failure. An RSA key is made only once the
  // order is known to be new (AttachGeneratedKey): a request that joins one costs no key
  // generation, which for RSA-4096 takes seconds of CPU. The order's job is made with it:
  // claimable at once when the order has its material (no hand-over transaction), else leased
  // to this replica until the material is attached.
  storage::NewOrder spec{account.id, checked.identifiers,
                         with_idempotency_key ? request.idempotency_key : "", options_.replica_id,
                         options_.lease_duration};
  // The id drawn with the first read, for the first attempt's order (one round trip fewer).
  if (with_idempotency_key) spec.id = checked.order_id;
  if (checked.csr) spec.csr_der = checked.csr->der;
  std::optional<GeneratedKey> early;
  if (!checked.csr && !IsRsa(checked.key_algorithm)) {
    ASSIGN_OR_RETURN(early, GenerateKey(checked));
    spec.csr_der = early->csr_der;
    spec.certificate_key = &early->key;
  }
  spec.job_kind = kOrderStepJob;
  spec.job_ca = account.directory_url;
  // Stored with the order, so a step on any replica answers as the request asked.
  spec.prefer_dns01 = request.challenge == ChallengePreference::kDns01;
  // RFC 9773 §5: `replaces` must name a certificate of the ordering account, which a fresh
  // account never holds.
  if (!ephemeral) spec.replaces = request.replaces;
  spec.job_released = !spec.csr_der.empty();
  // With room in this replica's queue and nothing due waiting, the job is leased to this
  // replica as it is made: no claim and no wake-up of any replica (Engine::ReserveForNew).
  if (spec.job_released) spec.claim = options_.engine->ReserveForNew();
  // Taken, the job's first step's load comes with the order too (Preload, below): its step
  // needs no transaction of its own.
  if (spec.claim.has_value()) spec.first_step = options_.runner->FirstStepAdmission();
  absl::StatusOr<storage::CreateOrderResult> made = options_.orders->CreateOrJoinOrder(scope, spec);
  const bool maybe_made = !made.ok() && storage::IsCommitOutcomeUnknown(made.status()) &&
                          AfterUnknownCreate(scope, spec);
  if (spec.claim.has_value() && !(made.ok() && made->claimed.has_value())) {
    options_.engine->Unreserve();
  }
  if ((!made.ok() && !maybe_made) || (made.ok() && !made->created)) abandon();
  ASSIGN_OR_RETURN(storage::CreateOrderResult created, std::move(made));
  // Begun before the job is handed over (a new order) or the order looked at again (a joined
  // one, by WaitForResult), so its end or a stop cannot pass unseen; a stop from before (of
  // the order joined) is not this caller's answer. A job made claimable with its order is
  // watched from the next statement on: a step here that ended or stopped it meanwhile is
  // seen (EndedHere, stopped_), and a notice another replica sent within that moment, while
  // nobody here watched, counts for the watch of the caller that created it.
  if (waiting != nullptr) {
    waiting->watch = options_.notices->Open(
        scope.tenant, kOrderStepJob, absl::StrCat(created.order.id),
        created.created ? JobNotices::From::kSinceCreated : JobNotices::From::kFromNow,
        // Each wake-up looks at the order again (WaitForResult).
        JobNotices::Missed::kWake);
    absl::MutexLock lock(&mu_);
    if (auto it = stopped_.find(created.order.id); it != stopped_.end() && !created.created) {
      waiting->stops_seen = it->second.number;
    }
  }
  if (!created.created) return created;
  if (waiting != nullptr) {
    waiting->created_here = true;
    if (early.has_value()) waiting->generated_key.emplace(std::move(early->key));
  }
  if (created.claimed.has_value()) {
    // Leased to this replica as it was made: it runs here, as if claimed now.
    if (created.first_step != nullptr) {
      options_.runner->Preload(StepScope(scope.tenant), *created.claimed,
                               std::move(*created.first_step));
    }
    options_.engine->Adopt(*created.claimed);
    return created;
  }
  if (spec.job_released) {
    // Claimable since it committed; the store's wake-up reaches every replica's engine.
    options_.engine->Scheduled();
    return created;
  }
  const storage::Lease& lease = *created.lease;
  // Here only an order made without its material: its service key (RSA) is made now, once the
  // order is known to be new. (A host CSR or an early key went in with the order, whose job
  // was then claimable at once.)
  if (spec.csr_der.empty()) {
    absl::Status attached = AttachGeneratedKey(scope, lease, checked);
    if (!attached.ok()) {
      // Nobody can finish an order without its material: it ends now, rather than keep the
      // requests that joined it waiting until its lease expires (its job then finds it ended).
      options_.orders
          ->TransitionOrder(scope, lease, storage::OrderState::kInvalid,
                            {SummarizeFailure(attached)})
          .IgnoreError();
      options_.engine->Release(storage::JobLeaseOf(lease)).IgnoreError();
      return attached;
    }
  }
  // Every replica's engine may run it now (its lease would otherwise expire first).
  if (absl::Status released = options_.engine->Release(storage::JobLeaseOf(lease));
      !released.ok()) {
    Log(LogLevel::kWarning, "could not hand an order's job over; it runs once its lease expires",
        {{"tenant", absl::StrCat(scope.tenant)},
         {"order", absl::StrCat(created.order.id)},
         {"status", SummarizeFailure(released)}});
  }
  return created;
}

absl::StatusOr<Issuer::GeneratedKey> Issuer::GenerateKey(const Checked& checked) {
  const crypto::KeyAlgorithm algorithm = checked.key_algorithm;
  ASSIGN_OR_RETURN(crypto::PrivateKey key, options_.generate_key
                                               ? options_.generate_key(algorithm)
                                               : crypto::PrivateKey::Generate(algorithm));
  ASSIGN_OR_RETURN(std::string csr_der, crypto::BuildCsr(checked.identifiers, key));
  return GeneratedKey{std::move(key), std::move(csr_der)};
}

absl::Status Issuer::AttachGeneratedKey(const storage::Scope& scope, const storage::Lease& lease,
                                        const Checked& checked) {
  ASSIGN_OR_RETURN(GeneratedKey generated, GenerateKey(checked));
  return options_.orders->AttachOrderMaterial(scope, lease, generated.csr_der, &generated.key);
}

absl::StatusOr<storage::Order> Issuer::WaitForResult(const storage::Scope& scope,
                                                     storage::OrderId id, Waiting& waiting,
                                                     const Checked& checked) {
  storage::Order order;
  bool read = false;  // `order` holds the row
  bool look = !waiting.created_here;
  absl::Status stopped;
  while (true) {
    // Ended by a step here: as that step left it, not read back.
    if (std::optional<Ended> ended = EndedHere(scope.tenant, id)) return ended->order;
    if (look) {
      ASSIGN_OR_RETURN(order, options_.orders->GetOrder(scope, id));
      read = true;
      if (storage::IsTerminal(order.state)) return order;
    }
    look = true;
    {
      absl::MutexLock lock(&mu_);
      auto it = stopped_.find(id);
      if (it != stopped_.end() && it->second.number != waiting.stops_seen) {
        stopped = it->second.why;
      }
    }
    if (!stopped.ok()) break;
    if (!waiting.watch->Wait(checked.wait_until, checked.request->cancelled)) {
      if (std::optional<Ended> ended = EndedHere(scope.tenant, id)) return ended->order;
      if (read) return order;
      return options_.orders->GetOrder(scope, id);
    }
  }
  if (!read) {
    ASSIGN_OR_RETURN(order, options_.orders->GetOrder(scope, id));
  }
  // The last step stopped short on a CA or network problem: say so (RESOURCE_EXHAUSTED with
  // the CA's retry time, UNAVAILABLE, ...) rather than hand back a handle that will not move
  // until a later step; the order stays and is retried.
  if (absl::IsResourceExhausted(stopped) || absl::IsUnavailable(stopped)) return stopped;
  // Finalized at the CA, but the certificate did not arrive: not a handle that says FINALIZING
  // as if all were well, but what went wrong (the order is retried by a later step).
  if (order.state >= storage::OrderState::kProcessing) {
    return absl::UnavailableError(absl::StrCat(
        "order ", order.id,
        ": the CA has (or is making) the certificate, but it could not be downloaded yet; the "
        "order is retried: ",
        SummarizeFailure(stopped)));
  }
  return order;
}

absl::StatusOr<IssueResult> Issuer::Finish(const storage::Scope& scope, storage::Order order,
                                           const Checked& checked, bool created_here,
                                           const crypto::PrivateKey* generated_key) {
  const IssueRequest& request = *checked.request;
  IssueResult result;
  result.order = order;
  if (order.state == storage::OrderState::kInvalid) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " failed: ", order.error));
  }
  if (order.state != storage::OrderState::kValid || !order.certificate) return result;
  // The certificate the step here stored, else the stored row.
  std::optional<Ended> ended = EndedHere(scope.tenant, order.id);
  storage::Certificate cert;
  if (ended.has_value() && ended->certificate.has_value() &&
      ended->certificate->id == *order.certificate) {
    cert = *ended->certificate;
  } else {
    ASSIGN_OR_RETURN(cert, options_.certificates->GetCertificate(scope, *order.certificate));
  }
  if (checked.csr) {
    ASSIGN_OR_RETURN(crypto::PublicKey leaf, LeafKey(cert));
    if (!leaf.Equals(checked.csr->public_key)) {
      return absl::AbortedError("joined order certified another key");
    }
  } else if (!cert.has_private_key) {
    return absl::AbortedError("joined order certified a host's own key");
  } else if (!created_here && !MadeForCaller(scope, order, request)) {
    // Another request's service-held key is never handed out: this caller gets its own.
    return absl::AbortedError("joined order holds another request's key");
  }
  std::optional<crypto::PublicKey> leaf;
  if (!checked.csr) {
    absl::StatusOr<crypto::PublicKey> certified = LeafKey(cert);
    if (!certified.ok() || certified->algorithm() != checked.key_algorithm) {
      // Nor a key of another algorithm than this request gets (its own choice, or a policy
      // that changed since the order was made).
      return absl::AbortedError("joined order holds a key of another algorithm");
    }
    leaf = *std::move(certified);
  }
  result.certificate = cert;
  if (!checked.csr) {
    if (generated_key != nullptr && created_here && leaf->Equals(generated_key->public_key())) {
      // The key this request made, certified: handed back from this request's memory (the
      // vault's copy was opened once, audited, by the step that stored the certificate).
      result.private_key_pem = generated_key->ToPkcs8Pem();
    } else {
      ASSIGN_OR_RETURN(crypto::PrivateKey key, options_.certificates->GetCertificateKey(
                                                   scope, cert.id, "IssueCertificate"));
      result.private_key_pem = key.ToPkcs8Pem();
    }
  }
  return result;
}

}  // namespace acmevault::service

namespace acmevault::service {

absl::StatusOr<OrderView> Issuer::GetOrder(const Caller& caller, storage::OrderId id) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kHost));
  const storage::Scope scope = caller.ScopeFor("CertificateService/GetOrder");
  OrderView view;
  ASSIGN_OR_RETURN(view.order, options_.orders->GetOrder(scope, id));
  if (view.order.certificate) {
    auto cert = options_.certificates->GetCertificate(scope, *view.order.certificate);
    if (cert.ok()) view.certificate_serial = cert->serial;
  }
  // An order in flight: how its job fares (one more read, GetOrder's only). An ended order's
  // job is done; its error says why it failed.
  if (options_.jobs != nullptr && !storage::IsTerminal(view.order.state)) {
    auto job = options_.jobs->FindJob(scope, kOrderStepJob, absl::StrCat(id));
    if (job.ok()) {
      view.job = *std::move(job);
    } else if (!absl::IsNotFound(job.status())) {
      return job.status();
    }
  }
  return view;
}

absl::StatusOr<storage::Certificate> Issuer::GetCertificate(const Caller& caller,
                                                            const CertificateSelector& selector) {
  if (!selector.serial && !selector.identifiers) {
    return absl::InvalidArgumentError("selector: give a serial or identifiers");
  }
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kHost));
  const storage::Scope scope = caller.ScopeFor("CertificateService/GetCertificate");
  if (selector.serial) {
    ASSIGN_OR_RETURN(std::string serial, NormalizeSerial(*selector.serial, "serial"));
    auto read = [&] { return options_.certificates->GetCertificateBySerial(scope, serial); };
    if (options_.certificate_cache == nullptr) return read();
    return options_.certificate_cache->Get(scope.tenant, CertificateCache::SerialKey(serial), read);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   NormalizeDnsNames(*selector.identifiers, "identifiers.values"));
  auto read = [&] { return options_.certificates->GetCurrentCertificate(scope, ids); };
  if (options_.certificate_cache == nullptr) return read();
  return options_.certificate_cache->Get(scope.tenant, CertificateCache::IdentifiersKey(ids), read);
}

std::optional<RenewalDecision> Issuer::RenewalOf(const Caller& caller,
                                                const storage::Certificate& certificate) {
  if (certificate.superseded_at.has_value()) return std::nullopt;
  const absl::Time now = options_.clock->Now();
  const storage::TenantId tenant = caller.identity.tenant;
  std::optional<storage::TenantPolicy> policy;
  {
    absl::MutexLock lock(&mu_);
    auto it = policies_.find(tenant);
    if (it != policies_.end() && now - it->second.read_at < options_.policy_cache_ttl) {
      policy = it->second.policy;
    }
  }
  if (!policy) {
    auto read = options_.tenants->GetTenant(caller.ScopeFor("CertificateService/GetCertificate"));
    if (!read.ok()) return std::nullopt;
    policy = read->spec.policy;
    absl::MutexLock lock(&mu_);
    policies_[tenant] = CachedPolicy{*policy, now};
  }
  return DecideRenewal(*policy, certificate, StoredAriWindow(certificate), now);
}

absl::StatusOr<storage::Page<storage::Certificate>> Issuer::ListCertificates(
    const Caller& caller, const storage::CertificateFilter& filter,
    const storage::PageRequest& page) {
  ASSIGN_OR_RETURN(storage::PageRequest checked, CheckPage(page));
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kHost));
  return options_.certificates->ListCertificates(
      caller.ScopeFor("CertificateService/ListCertificates"), filter, checked);
}

}  // namespace acmevault::service
