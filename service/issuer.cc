#include "service/issuer.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "crypto/jwk.h"
#include "crypto/x509.h"
#include "service/failure.h"
#include "service/identifiers.h"
#include "service/log.h"
#include "service/paging.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

constexpr size_t kMaxQueuedJobs = 1000;
constexpr size_t kMaxIdempotencyKey = 200;
constexpr absl::Duration kStorePoll = absl::Milliseconds(200);

const std::vector<crypto::KeyAlgorithm>& AllowedCertificateKeys() {
  static const auto* all = new std::vector<crypto::KeyAlgorithm>{
      crypto::KeyAlgorithm::kEcdsaP256, crypto::KeyAlgorithm::kEcdsaP384,
      crypto::KeyAlgorithm::kRsa2048, crypto::KeyAlgorithm::kRsa3072,
      crypto::KeyAlgorithm::kRsa4096};
  return *all;
}

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
                                                  {"clock", options.clock},
                                                  {"wait_clock", options.wait_clock}}));
  auto issuer = std::unique_ptr<Issuer>(new Issuer(std::move(options)));
  for (int i = 0; i < std::max(1, issuer->options_.worker_threads); ++i) {
    issuer->workers_.emplace_back([raw = issuer.get()] { raw->WorkLoop(); });
  }
  return issuer;
}

Issuer::~Issuer() {
  std::deque<Job> handed_over;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    handed_over.swap(queue_);
  }
  // Orders not started here go back to the pool at once: their leases are released, so another
  // replica claims them without waiting for expiry. Running orders finish their current run.
  for (Job& job : handed_over) {
    options_.orders->ReleaseLease(job.order.scope, job.order.lease).IgnoreError();
    {
      absl::MutexLock lock(&mu_);
      running_.erase(job.order.lease.order);
      Finished(job.order.scope.tenant);
    }
    job.done->Notify();
  }
  for (auto& t : workers_) t.join();
}

void Issuer::Submit(Job job) {
  absl::MutexLock lock(&mu_);
  running_[job.order.lease.order] = job.done;
  ++per_tenant_[job.order.scope.tenant];
  queue_.push_back(std::move(job));
}

void Issuer::Finished(storage::TenantId tenant) {
  auto it = per_tenant_.find(tenant);
  if (it != per_tenant_.end() && --it->second == 0) per_tenant_.erase(it);
}

void Issuer::WorkLoop() {
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Issuer* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // Stopping with nothing left.
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    const storage::OrderId id = job.order.lease.order;
    auto result = RunGuarded(job.order);
    if (result.ok()) {
      Log(LogLevel::kInfo, "order finished",
          {{"tenant", absl::StrCat(job.order.scope.tenant)},
           {"order", absl::StrCat(id)},
           {"state", std::string(storage::OrderStateName(result->state))},
           {"error", result->error}});
    } else {
      Log(LogLevel::kWarning, "order run stopped",
          {{"tenant", absl::StrCat(job.order.scope.tenant)},
           {"order", absl::StrCat(id)},
           {"status", SummarizeFailure(result.status())}});
    }
    {
      absl::MutexLock lock(&mu_);
      running_.erase(id);
      Finished(job.order.scope.tenant);
      if (result.ok()) {
        stopped_.erase(id);
      } else {
        stopped_[id] = result.status();
      }
    }
    job.done->Notify();
  }
}

absl::StatusOr<storage::Order> Issuer::RunGuarded(const OrderJob& job) {
  std::exception_ptr thrown;
  try {
    return options_.runner->Run(job);
  } catch (...) {
    thrown = std::current_exception();
  }
  return RecordException(job.scope, job.lease, thrown);
}

absl::StatusOr<storage::Order> Issuer::RecordException(const storage::Scope& scope,
                                                       const storage::Lease& lease,
                                                       std::exception_ptr thrown) {
  const std::string what = DescribeException(thrown);
  Log(LogLevel::kError, "order run threw",
      {{"tenant", absl::StrCat(lease.tenant)}, {"order", absl::StrCat(lease.order)},
       {"error", what}});
  try {
    // Before finalize the order is given up (a new run would most likely throw again); once the
    // CA may hold a certificate for it, it stays for a later run to download.
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

void Issuer::WaitForOrder(const storage::Scope& scope, storage::OrderId order,
                          absl::Time until, const std::function<bool()>& cancelled) {
  const Clock& clock = *options_.wait_clock;
  auto gone = [&] { return cancelled && cancelled(); };
  std::shared_ptr<absl::Notification> done;
  {
    absl::MutexLock lock(&mu_);
    auto it = running_.find(order);
    if (it != running_.end()) done = it->second;
  }
  if (done != nullptr) {
    // In slices, so a cancelled caller stops waiting within one.
    for (absl::Time now = clock.Now(); now < until && !gone(); now = clock.Now()) {
      if (done->WaitForNotificationWithTimeout(std::min(until - now, kStorePoll))) return;
    }
    return;
  }
  for (absl::Time now = clock.Now(); now < until && !gone(); now = clock.Now()) {
    auto row = options_.orders->GetOrder(scope, order);
    if (!row.ok() || storage::IsTerminal(row->state)) return;
    clock.SleepFor(std::min(kStorePoll, until - now));
  }
}

absl::StatusOr<IssueResult> Issuer::Issue(const Caller& caller, const IssueRequest& request) {
  const storage::Scope scope = caller.ScopeFor("CertificateService/IssueCertificate");
  ASSIGN_OR_RETURN(const Checked checked, CheckRequest(caller, scope, request));
  ASSIGN_OR_RETURN(std::optional<IssueResult> reused, FindReusable(scope, checked));
  if (reused) return *std::move(reused);
  ASSIGN_OR_RETURN(const storage::Account account, ChooseAccount(scope));
  // A joined order made for another host's key is waited out, then a fresh one is made for this
  // request (at most once, and without the idempotency key that led to the other order).
  for (int attempt = 0; attempt < 2; ++attempt) {
    ASSIGN_OR_RETURN(storage::CreateOrderResult created,
                     CreateOrJoinOrder(scope, checked, account, attempt == 0));
    ASSIGN_OR_RETURN(storage::Order order, WaitForResult(scope, created.order.id, checked));
    auto result = Finish(scope, std::move(order), checked, created.created);
    if (result.ok() || !absl::IsAborted(result.status()) || created.created) return result;
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
  ASSIGN_OR_RETURN(checked.tenant, options_.tenants->GetTenant(scope));
  ASSIGN_OR_RETURN(AllowList allow, AllowList::Create(checked.tenant.spec.allowed_identifiers));
  if (absl::Status allowed = allow.CheckAll(checked.identifiers); !allowed.ok()) {
    storage::AuditEvent denied;
    denied.action = "IssueDenied";
    denied.identifiers = checked.identifiers;
    denied.outcome = "permission_denied";
    options_.audit->AppendAudit(scope, denied).IgnoreError();
    return allowed;
  }
  if (!request.csr) return checked;
  auto parsed = crypto::ParseCsr(*request.csr);
  if (!parsed.ok()) return Prefixed("csr", parsed.status());
  if (absl::Status s = crypto::CheckCsr(*parsed, checked.identifiers, AccountPublicKeys(scope),
                                        AllowedCertificateKeys());
      !s.ok()) {
    return Prefixed("csr", s);
  }
  checked.csr = *std::move(parsed);
  return checked;
}

std::vector<crypto::PublicKey> Issuer::AccountPublicKeys(const storage::Scope& scope) {
  std::vector<crypto::PublicKey> out;
  auto accounts = options_.accounts->ListAccounts(scope);
  if (!accounts.ok()) return out;
  for (const auto& a : *accounts) {
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
  auto current = options_.certificates->GetCurrentCertificate(scope, checked.identifiers);
  if (!current.ok()) {
    if (absl::IsNotFound(current.status())) return std::nullopt;
    return current.status();
  }
  // Renewal is due within the tenant's window of expiry; a window of 0 means a third of the
  // certificate's lifetime.
  absl::Duration window = checked.tenant.spec.policy.renewal_window;
  if (window <= absl::ZeroDuration()) window = (current->not_after - current->not_before) / 3;
  if (request.force_new || current->not_after - options_.clock->Now() <= window) {
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
    usable = bound.ok() && bound->id == *current->order && MadeForCaller(scope, *bound, request);
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

absl::StatusOr<storage::Account> Issuer::ChooseAccount(const storage::Scope& scope) {
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  for (auto it = accounts.rbegin(); it != accounts.rend(); ++it) {
    if (it->status == storage::AccountStatus::kValid && !it->account_url.empty()) return *it;
  }
  return absl::FailedPreconditionError(
      "the tenant has no valid ACME account: an admin must call AccountService.CreateAccount");
}

absl::StatusOr<storage::CreateOrderResult> Issuer::CreateOrJoinOrder(
    const storage::Scope& scope, const Checked& checked, const storage::Account& account,
    bool with_idempotency_key) {
  const IssueRequest& request = *checked.request;
  // A host's CSR goes with the new row (a joined order keeps its own and drops it). A
  // service-side key is made only once the order is known to be new (AttachGeneratedKey): a
  // request that joins one costs no key generation, which for RSA-4096 takes seconds of CPU.
  storage::NewOrder spec{account.id, checked.identifiers,
                         with_idempotency_key ? request.idempotency_key : "", options_.replica_id,
                         options_.lease_duration};
  if (checked.csr) spec.csr_der = checked.csr->der;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.size() >= kMaxQueuedJobs) {
      return absl::UnavailableError("issuance queue is full; retry later");
    }
    auto mine = per_tenant_.find(scope.tenant);
    if (mine != per_tenant_.end() && mine->second >= options_.max_orders_per_tenant) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the tenant has ", mine->second, " orders in progress here (the most allowed); retry "
          "once some finish"));
    }
  }
  ASSIGN_OR_RETURN(storage::CreateOrderResult created,
                   options_.orders->CreateOrJoinOrder(scope, spec));
  if (!created.created) return created;
  Job job;
  std::string csr_der = spec.csr_der;
  if (!checked.csr) {
    absl::StatusOr<std::string> csr = AttachGeneratedKey(scope, *created.lease, checked, job);
    if (!csr.ok()) {
      // Nobody can finish an order without its material: it ends now, rather than keep the
      // requests that joined it waiting until its lease expires.
      options_.orders
          ->TransitionOrder(scope, *created.lease, storage::OrderState::kInvalid,
                            {SummarizeFailure(csr.status())})
          .IgnoreError();
      return csr.status();
    }
    csr_der = *std::move(csr);
  }
  job.order = OrderJob{scope,
                       *created.lease,
                       std::move(csr_der),
                       job.certificate_key.get(),
                       request.challenge,
                       checked.tenant.spec.policy.deactivate_authorizations_after_issuance};
  job.done = std::make_shared<absl::Notification>();
  Submit(std::move(job));
  return created;
}

absl::StatusOr<std::string> Issuer::AttachGeneratedKey(const storage::Scope& scope,
                                                       const storage::Lease& lease,
                                                       const Checked& checked, Job& job) {
  const crypto::KeyAlgorithm algorithm =
      checked.request->key_algorithm.value_or(crypto::KeyAlgorithm::kEcdsaP256);
  ASSIGN_OR_RETURN(crypto::PrivateKey key, options_.generate_key
                                               ? options_.generate_key(algorithm)
                                               : crypto::PrivateKey::Generate(algorithm));
  job.certificate_key = std::make_unique<crypto::PrivateKey>(std::move(key));
  ASSIGN_OR_RETURN(std::string csr_der,
                   crypto::BuildCsr(checked.identifiers, *job.certificate_key));
  RETURN_IF_ERROR(
      options_.orders->AttachOrderMaterial(scope, lease, csr_der, job.certificate_key.get()));
  return csr_der;
}

absl::StatusOr<storage::Order> Issuer::WaitForResult(const storage::Scope& scope,
                                                     storage::OrderId id, const Checked& checked) {
  WaitForOrder(scope, id, checked.wait_until, checked.request->cancelled);
  ASSIGN_OR_RETURN(storage::Order order, options_.orders->GetOrder(scope, id));
  if (storage::IsTerminal(order.state)) return order;
  // The run stopped short on a CA or network problem: say so (RESOURCE_EXHAUSTED with the
  // CA's retry time, UNAVAILABLE, ...) rather than hand back a handle that will not move
  // until another run; the order stays and is retried.
  absl::MutexLock lock(&mu_);
  auto stopped = stopped_.find(order.id);
  if (stopped == stopped_.end() || running_.count(order.id) != 0) return order;
  if (absl::IsResourceExhausted(stopped->second) || absl::IsUnavailable(stopped->second)) {
    return stopped->second;
  }
  // Finalized at the CA, but the certificate did not arrive: not a handle that says FINALIZING
  // as if all were well, but what went wrong (the order is retried by a later run).
  if (order.state >= storage::OrderState::kProcessing) {
    return absl::UnavailableError(absl::StrCat(
        "order ", order.id,
        ": the CA has (or is making) the certificate, but it could not be downloaded yet; the "
        "order is retried: ",
        SummarizeFailure(stopped->second)));
  }
  return order;
}

absl::Status Issuer::Resume(const storage::Lease& lease) {
  const storage::Scope scope{lease.tenant, {options_.replica_id, "resume"}};
  std::exception_ptr thrown;
  try {
    return ResumeUnguarded(scope, lease);
  } catch (...) {
    thrown = std::current_exception();
  }
  return RecordException(scope, lease, thrown).status();
}

absl::Status Issuer::ResumeUnguarded(const storage::Scope& scope, const storage::Lease& lease) {
  storage::OrderStore& orders = *options_.orders;
  ASSIGN_OR_RETURN(storage::Order order, orders.GetOrder(scope, lease.order));
  if (storage::IsTerminal(order.state)) return absl::OkStatus();
  if (order.csr_der.empty()) {
    // Made before orders carried their material, or its creator stopped before it attached a
    // generated key: nobody else can finalize it.
    return orders.TransitionOrder(scope, lease, storage::OrderState::kInvalid,
                                  {"the order has no stored CSR to finalize with; request again"});
  }
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
  // The tenant's allow-list may have shrunk since the order was made.
  ASSIGN_OR_RETURN(AllowList allow, AllowList::Create(tenant.spec.allowed_identifiers));
  if (absl::Status allowed = allow.CheckAll(order.identifiers); !allowed.ok()) {
    return orders.TransitionOrder(scope, lease, storage::OrderState::kInvalid,
                                  {absl::StrCat("no longer allowed: ", allowed.message())});
  }
  Job job;
  if (order.has_certificate_key) {
    ASSIGN_OR_RETURN(crypto::PrivateKey key,
                     orders.GetOrderCertificateKey(scope, order.id, "resume order"));
    job.certificate_key = std::make_unique<crypto::PrivateKey>(std::move(key));
  }
  // The challenge preference is not stored: an order with a wildcard was necessarily a DNS-01
  // order, so resume it with DNS-01 throughout; others with HTTP-01.
  bool wildcard = std::any_of(order.identifiers.begin(), order.identifiers.end(),
                              [](const std::string& id) { return absl::StartsWith(id, "*."); });
  job.order = OrderJob{scope, lease, order.csr_der, job.certificate_key.get(),
                       wildcard ? ChallengePreference::kDns01 : ChallengePreference::kHttp01,
                       tenant.spec.policy.deactivate_authorizations_after_issuance};
  job.done = std::make_shared<absl::Notification>();
  Log(LogLevel::kInfo, "resuming order",
      {{"tenant", absl::StrCat(lease.tenant)}, {"order", absl::StrCat(lease.order)},
       {"state", std::string(storage::OrderStateName(order.state))}});
  Submit(std::move(job));
  return absl::OkStatus();
}

absl::StatusOr<IssueResult> Issuer::Finish(const storage::Scope& scope, storage::Order order,
                                           const Checked& checked, bool created_here) {
  const IssueRequest& request = *checked.request;
  IssueResult result;
  result.order = order;
  if (order.state == storage::OrderState::kInvalid) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " failed: ", order.error));
  }
  if (order.state != storage::OrderState::kValid || !order.certificate) return result;
  ASSIGN_OR_RETURN(storage::Certificate cert,
                   options_.certificates->GetCertificate(scope, *order.certificate));
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
  result.certificate = cert;
  if (!checked.csr) {
    ASSIGN_OR_RETURN(crypto::PrivateKey key,
                     options_.certificates->GetCertificateKey(scope, cert.id, "IssueCertificate"));
    result.private_key_pem = key.ToPkcs8Pem();
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
    return options_.certificates->GetCertificateBySerial(scope, *selector.serial);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   NormalizeDnsNames(*selector.identifiers, "identifiers.values"));
  return options_.certificates->GetCurrentCertificate(scope, ids);
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
