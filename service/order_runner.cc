#include "service/order_runner.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "acme/problem.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "crypto/jwk.h"
#include "crypto/x509.h"
#include "service/eab.h"
#include "service/failure.h"
#include "service/identifiers.h"
#include "service/log.h"
#include "service/required.h"

namespace acmevault::service {

absl::Status HijackedAccountError(const storage::Account& account) {
  return absl::FailedPreconditionError(absl::StrCat(
      "the tenant's ACME account ", account.account_url,
      " was taken over at the CA (hijacked ",
      account.hijacked_at
          ? absl::FormatTime(absl::RFC3339_sec, *account.hijacked_at, absl::UTCTimeZone())
          : std::string("earlier"),
      "); nothing is issued under it until AccountService.RespondToCompromise opens a new "
      "account"));
}

namespace {

// A CA's refusal of newOrder's `replaces` (RFC 9773 §5: alreadyReplaced; some CAs answer
// malformed naming the field), after which the order is sent without it.
bool RefusesReplaces(const absl::Status& s) {
  const std::optional<acme::Problem> problem = acme::GetProblem(s);
  if (!problem.has_value()) return false;
  const std::string type = problem->ShortType();
  return type == "alreadyReplaced" ||
         (type == "malformed" && absl::StrContains(absl::AsciiStrToLower(problem->detail),
                                                    "replace"));
}

// CA and transport errors after which the order stays as it is, to be resumed later.
bool Retryable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

// Whether a download that failed after the CA finalized may succeed when asked again, so the
// order waits for a later run: a transport error or an error answer (a 404 while the CA's storage
// catches up, a 5xx). What the service refused in an answer (a chain past its bounds or not a
// chain, a leaf not valid now or naming other names, a certificate for another key) and a
// redirect (never followed) stay the same however often it asks: they end the order.
bool DownloadMayRecover(const absl::Status& s) {
  if (Retryable(s)) return true;
  std::optional<acme::Problem> problem = acme::GetProblem(s);
  return problem.has_value() && problem->http_status >= 400;
}

storage::AuthorizationStatus AuthzStatus(const std::string& s) {
  auto parsed = storage::ParseAuthorizationStatus(s);
  return parsed.ok() ? *parsed : storage::AuthorizationStatus::kPending;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AcmeClients>> AcmeClients::Create(Options options) {
  auto clients = std::unique_ptr<AcmeClients>(new AcmeClients(std::move(options)));
  if (clients->options_.transport_instance != nullptr) {
    clients->transport_ = clients->options_.transport_instance;
  } else {
    ASSIGN_OR_RETURN(clients->owned_transport_,
                     acme::CurlTransport::Create(clients->options_.transport));
    clients->transport_ = clients->owned_transport_.get();
  }
  return clients;
}

absl::StatusOr<acme::AcmeClient*> AcmeClients::For(const std::string& directory_url) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(directory_url);
  if (it != clients_.end()) return it->second.get();
  acme::AcmeClientOptions o = options_.client;
  o.directory_url = directory_url;
  o.transport = transport_;
  ASSIGN_OR_RETURN(auto client, acme::AcmeClient::Create(o));
  acme::AcmeClient* raw = client.get();
  clients_.emplace(directory_url, std::move(client));
  return raw;
}

absl::StatusOr<std::unique_ptr<OrderRunner>> OrderRunner::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("OrderRunner", {{"tenants", options.tenants},
                                                       {"orders", options.orders},
                                                       {"accounts", options.accounts},
                                                       {"keys", options.keys},
                                                       {"authorizations", options.authorizations},
                                                       {"challenges", options.challenges},
                                                       {"jobs", options.jobs},
                                                       {"clients", options.clients},
                                                       {"limits", options.limits},
                                                       {"clock", options.clock}}));
  if (options.poll_first_delay <= absl::ZeroDuration() ||
      options.poll_max_delay < options.poll_first_delay ||
      options.lease_duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "OrderRunner: poll delays and the lease duration must be positive, the first delay at "
        "most the largest");
  }
  if (options.processing_timeout <= absl::ZeroDuration() ||
      options.stalled_look_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "OrderRunner: the processing timeout and the stalled look interval must be positive");
  }
  if (absl::Status limits = options.ca_limits.Validate(); !limits.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("OrderRunner: ", limits.message()));
  }
  return std::unique_ptr<OrderRunner>(new OrderRunner(options));
}

absl::Time OrderRunner::NextLook(absl::Time phase_start,
                                 std::optional<absl::Time> retry_after) const {
  const absl::Time now = options_.clock->Now();
  if (retry_after.has_value()) return std::max(*retry_after, now);
  const absl::Duration waited = now - phase_start;
  return now + std::clamp(waited, options_.poll_first_delay, options_.poll_max_delay);
}

struct OrderRunner::Context {
  const OrderJob* job = nullptr;
  storage::Order order;
  storage::Account account;
  storage::Tenant tenant;
  // The order's outstanding authorizations: as loaded, and as recorded by this step.
  std::vector<storage::Authorization> authorizations;
  std::optional<SigningKey> key;
  absl::Status key_status;  // why `key` is unset although the load returned one
  acme::AcmeClient* client = nullptr;
  acme::AccountRef ref;
  ChallengePreference challenge = ChallengePreference::kHttp01;
  Answers answers;  // published by this step, or by an earlier one here
  std::optional<storage::Certificate> certificate;  // stored by this step
  // `order.state` says processing (the CA answered our finalize) but the row still says ready:
  // the write waits for the certificate's (FinishOrder) while the steps stay in memory here.
  bool processing_unrecorded = false;
  // The newOrder's admission made with the step's load (LoadOrderStep), until
  // HeldBeforeNewOrder uses it; tokens it took go back when the step ends without sending
  // newOrder.
  std::optional<storage::CaAdmission> admission;
  std::vector<storage::CaBudget> admission_budgets;

  const storage::Scope& scope() const { return job->scope; }
  const storage::Lease& lease() const { return job->lease; }
};

void OrderRunner::RecordHold(Context& ctx, storage::CaRequest request, const absl::Status& s) {
  std::optional<absl::Time> until = RateLimitedUntil(s);
  if (!until || *until <= options_.clock->Now()) return;
  const storage::CaHoldKey key{ctx.account.id, ctx.order.identifiers, request};
  absl::Status stored =
      options_.limits->RecordCaHold(ctx.scope(), key, *until,
                                    ClipUtf8(SummarizeFailure(s), storage::kMaxCaHoldProblemSize));
  if (!stored.ok()) {
    Log(LogLevel::kWarning, "could not store the CA's rate-limit hold",
        {{"order", absl::StrCat(ctx.order.id)}, {"status", stored.ToString()}});
  }
}

absl::StatusOr<std::optional<OrderStepResult>> OrderRunner::HeldBeforeNewOrder(
    Context& ctx, std::vector<storage::CaBudget>* taken) {
  const absl::Time now = options_.clock->Now();
  auto held = [&](absl::string_view reason, absl::Time until, absl::Status why) {
    if (options_.metrics) options_.metrics->RecordOrderHeld(reason);
    Log(LogLevel::kInfo, "order held back by the CA's limits",
        {{"tenant", absl::StrCat(ctx.order.tenant)},
         {"order", absl::StrCat(ctx.order.id)},
         {"reason", std::string(reason)},
         {"until", absl::FormatTime(absl::RFC3339_sec, until, absl::UTCTimeZone())}});
    return std::optional<OrderStepResult>(
        OrderStepResult{OrderStepResult::Kind::kHeld, ctx.order, until, std::move(why)});
  };
  // A rateLimited answer to any replica's newOrder for this account and identifier set; then
  // the account's budget of new orders and the tenant's of certificates for this identifier
  // set at this CA, shared by the fleet: one transaction, a token from each or from none. The
  // step's load made it already, unless the step went on from memory.
  const CaLimits& limits = options_.ca_limits.For(ctx.account.directory_url);
  std::vector<storage::CaBudget> buckets;
  storage::CaAdmission admitted;
  if (ctx.admission.has_value()) {
    admitted = *std::move(ctx.admission);
    buckets = std::move(ctx.admission_budgets);
    ctx.admission.reset();
  } else {
    buckets = NewOrderBudgets(limits, ctx.order.identifiers);
    ASSIGN_OR_RETURN(
        admitted,
        options_.limits->AdmitCaRequest(
            ctx.scope(), {ctx.account.id, ctx.order.identifiers, storage::CaRequest::kNewOrder},
            buckets, now));
  }
  if (admitted.hold.has_value()) {
    const storage::CaHold& hold = *admitted.hold;
    return held("hold", hold.until,
                HeldUntil(absl::StrCat("the CA answered rateLimited for these identifiers: ",
                                       hold.problem),
                          hold.until));
  }
  if (!admitted.take.has_value()) return std::nullopt;
  if (admitted.take->taken) {
    *taken = std::move(buckets);
    return std::nullopt;
  }
  const absl::Time next = admitted.take->next_token_at;
  if (admitted.short_budget == "duplicate_certificate") {
    return held(
        "duplicate_budget", next,
        HeldUntil(absl::StrCat("the tenant's budget of ", limits.duplicate_certificates.capacity,
                               " certificates for this exact set of identifiers per ",
                               absl::FormatDuration(limits.duplicate_certificates.period),
                               " at this CA is spent"),
                  next));
  }
  return held(
      "budget", next,
      HeldUntil(
          absl::StrCat("the account's budget of ", limits.new_orders.capacity, " new orders per ",
                       absl::FormatDuration(limits.new_orders.period), " at this CA is spent"),
          next));
}

std::optional<std::vector<storage::CaBudget>> OrderRunner::AdmissionBudgets(
    const storage::OrderStepState& loaded) const {
  // As StepLoaded decides before it sends newOrder: an order not yet at the CA, with its CSR,
  // a registered account in good standing, its key unsealed and its names still allowed.
  const storage::Order& order = loaded.order;
  const storage::Account& account = loaded.account;
  if (storage::IsTerminal(order.state) || !order.acme_url.empty() || order.csr_der.empty() ||
      account.status != storage::AccountStatus::kValid || account.account_url.empty() ||
      account.hijacked_at.has_value() || !loaded.key.has_value()) {
    return std::nullopt;
  }
  absl::StatusOr<AllowList> allow = AllowList::Create(loaded.tenant.spec.allowed_identifiers);
  if (!allow.ok() || !allow->CheckAll(order.identifiers).ok()) return std::nullopt;
  return NewOrderBudgets(options_.ca_limits.For(account.directory_url), order.identifiers);
}

void OrderRunner::ReturnUnusedAdmission(Context& ctx) {
  if (!ctx.admission.has_value()) return;
  const bool taken = ctx.admission->take.has_value() && ctx.admission->take->taken;
  ctx.admission.reset();
  if (taken) ReturnBudgetTokens(ctx, ctx.admission_budgets);
}

void OrderRunner::GiveBackBudgetTokens(Context& ctx, const std::vector<storage::CaBudget>& taken,
                                       const absl::Status& s) {
  if (!ProblemTypeOf(s).empty()) ReturnBudgetTokens(ctx, taken);
}

void OrderRunner::GiveBackDuplicateToken(Context& ctx) {
  std::optional<storage::CaBudget> bucket = DuplicateCertificateBucket(
      options_.ca_limits.For(ctx.account.directory_url), ctx.order.identifiers);
  if (bucket.has_value()) ReturnBudgetTokens(ctx, {*std::move(bucket)});
}

void OrderRunner::ReturnBudgetTokens(Context& ctx, const std::vector<storage::CaBudget>& taken) {
  ReturnBudgetTokens(ctx.scope(), ctx.account.id, ctx.order.id, taken);
}

void OrderRunner::ReturnBudgetTokens(const storage::Scope& scope, storage::AccountId account,
                                     storage::OrderId order,
                                     const std::vector<storage::CaBudget>& taken) {
  for (const storage::CaBudget& bucket : taken) {
    absl::Status returned = options_.limits->ReturnCaBudgetToken(scope, account, bucket);
    if (!returned.ok()) {
      Log(LogLevel::kWarning, "could not give a budget token back",
          {{"order", absl::StrCat(order)},
           {"budget", bucket.name},
           {"status", returned.ToString()}});
    }
  }
}

absl::Status OrderRunner::ProveLease(Context& ctx) {
  return options_.jobs
      ->RenewJob(storage::JobLeaseOf(ctx.lease()), options_.lease_duration,
                 options_.clock->Now())
      .status();
}

absl::Status OrderRunner::AnswerAuthorizations(Context& ctx, const acme::Order& order) {
  // Looked at first (reads at the CA), then recorded with the order's URL in one transaction
  // (RecordOrderStart: URL, ledger rows, HTTP-01 answers), then answered: nothing that changes
  // the order at the CA happens before its URL is stored. Should a look fail, the URL is
  // stored alone, so that a later step resumes this order.
  struct Answer {
    std::string identifier;
    std::string authz_url;
    std::string type;
    std::string url;
    bool respond = false;
  };
  std::vector<storage::AuthorizationRecord> records;
  std::vector<storage::ChallengeAnswer> http_answers;
  std::vector<Answer> answers;
  std::vector<std::pair<std::string, std::string>> dns_records;  // name, TXT value
  // A look that fails or finds what cannot be answered: the URL and the authorizations seen so
  // far are recorded all the same (the ledger keeps what the account holds at the CA).
  auto record_seen = [&](absl::Status s) -> absl::Status {
    RETURN_IF_ERROR(
        options_.orders->RecordOrderStart(ctx.scope(), ctx.lease(), order.url, records, {})
            .status());
    ctx.order.state = std::max(ctx.order.state, storage::OrderState::kPending);
    return s;
  };
  for (const std::string& url : order.authorizations) {
    // Matched to the order's identifiers: an authorization for another name is refused before
    // it reaches the ledger or gets an answer.
    auto authz = ctx.client->GetAuthorization(ctx.ref, order, url);
    if (options_.metrics) options_.metrics->RecordAcme("getAuthorization", authz.status());
    if (!authz.ok()) return record_seen(authz.status());
    const acme::Authorization& a = *authz;
    std::string identifier = a.wildcard ? absl::StrCat("*.", a.identifier.value) : a.identifier.value;
    records.push_back({ctx.account.id, ctx.order.id, url, identifier, AuthzStatus(a.status),
                       a.expires});
    if (a.status == "valid") continue;  // Reused by the CA.
    if (a.status != "pending") {
      return record_seen(absl::FailedPreconditionError(
          absl::StrCat("authorization for ", identifier, " is ", a.status)));
    }
    bool dns = a.wildcard || ctx.challenge == ChallengePreference::kDns01;
    const acme::Challenge* ch = a.Find(dns ? "dns-01" : "http-01");
    if (ch == nullptr) {
      return record_seen(absl::FailedPreconditionError(absl::StrCat(
          "the CA offers no ", dns ? "dns-01" : "http-01", " challenge for ", identifier)));
    }
    // Answered already (a resumed run, another replica): validated is done; one the CA is
    // validating keeps its published answer but is never answered again (RFC 8555 §7.5.1: the
    // CA refuses a response to a challenge that is not pending).
    if (ch->status == "valid") continue;
    if (ch->status != "pending" && ch->status != "processing") {
      return record_seen(absl::FailedPreconditionError(
          absl::StrCat("the ", ch->type, " challenge for ", identifier, " is ", ch->status)));
    }
    std::string key_auth = crypto::KeyAuthorization(ch->token, ctx.key->signer->public_key());
    if (dns) {
      if (options_.dns01 == nullptr) {
        return record_seen(absl::FailedPreconditionError(absl::StrCat(
            identifier, " needs dns-01 and this server has no DNS-01 configuration")));
      }
      dns_records.emplace_back(a.identifier.value, crypto::Dns01TxtValue(key_auth));
    } else {
      http_answers.push_back({ch->token, key_auth});
    }
    answers.push_back({identifier, url, ch->type, ch->url, ch->status == "pending"});
  }
  ASSIGN_OR_RETURN(std::vector<storage::Authorization> recorded,
                   options_.orders->RecordOrderStart(ctx.scope(), ctx.lease(), order.url, records,
                                                     http_answers));
  ctx.order.state = std::max(ctx.order.state, storage::OrderState::kPending);
  for (const storage::Authorization& r : recorded) {
    if (std::none_of(ctx.authorizations.begin(), ctx.authorizations.end(),
                     [&](const storage::Authorization& a) { return a.record.url == r.record.url; }) &&
        (r.record.status == storage::AuthorizationStatus::kPending ||
         r.record.status == storage::AuthorizationStatus::kValid)) {
      ctx.authorizations.push_back(r);
    }
  }
  for (const storage::ChallengeAnswer& a : http_answers) {
    ctx.answers.http_tokens.push_back(a.token);
    if (options_.published != nullptr) options_.published->Add(a.token, a.key_authorization);
  }
  for (const auto& [name, value] : dns_records) {
    RETURN_IF_ERROR(options_.dns01->Publish(name, value));
    ctx.answers.dns_records.emplace_back(name, value);
  }
  for (const Answer& a : answers) {
    if (!a.respond) continue;
    auto responded = ctx.client->RespondToChallenge(ctx.ref, a.url);
    if (options_.metrics) options_.metrics->RecordAcme("respondToChallenge", responded.status());
    if (responded.ok() || Retryable(responded.status())) {
      RETURN_IF_ERROR(responded.status());
      continue;
    }
    // Refused: the challenge may have left pending between our look and our answer (another
    // replica's answer was validated). Look again; answered is answered.
    RETURN_IF_ERROR(ChallengeAnswered(ctx, order, a.authz_url, a.type) ? absl::OkStatus()
                                                                       : responded.status());
  }
  return absl::OkStatus();
}

bool OrderRunner::ChallengeAnswered(Context& ctx, const acme::Order& order,
                                    const std::string& authz_url, const std::string& type) {
  auto authz = ctx.client->GetAuthorization(ctx.ref, order, authz_url);
  if (options_.metrics) options_.metrics->RecordAcme("getAuthorization", authz.status());
  if (!authz.ok()) return false;
  if (authz->status == "valid") return true;
  const acme::Challenge* ch = authz->Find(type);
  return ch != nullptr && (ch->status == "processing" || ch->status == "valid");
}


absl::Status OrderRunner::Complete(Context& ctx, const acme::Order& order) {
  // Checked against the order: the chain's bounds, and a leaf valid now for exactly its names.
  auto chain = ctx.client->DownloadCertificate(ctx.ref, order);
  if (options_.metrics) options_.metrics->RecordAcme("downloadCertificate", chain.status());
  RETURN_IF_ERROR(chain.status());
  ASSIGN_OR_RETURN(std::vector<crypto::CertificateInfo> certs, crypto::ParsePemChain(chain->pem));
  const crypto::CertificateInfo& leaf = certs.front();
  // Never store a certificate for a key other than the one we asked for.
  ASSIGN_OR_RETURN(std::string csr_key, crypto::CsrKeyDer(ctx.order.csr_der));
  if (leaf.public_key.ToDer() != csr_key) {
    return absl::InternalError("the CA issued a certificate for another key than the CSR's");
  }
  std::vector<std::string> names;
  for (const auto& n : leaf.dns_names) names.push_back(absl::AsciiStrToLower(n));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (names != ctx.order.identifiers) {
    return absl::InternalError(absl::StrCat("the CA issued a certificate for other names [",
                                            absl::StrJoin(names, ", "), "] than the order's"));
  }
  storage::OrderCompletion done;
  storage::NewCertificate& cert = done.certificate;
  cert.account = ctx.account.id;
  cert.order = ctx.order.id;
  cert.identifiers = ctx.order.identifiers;
  cert.serial = leaf.serial_hex;
  cert.not_before = leaf.not_before;
  cert.not_after = leaf.not_after;
  cert.chain_pem = chain->pem;
  cert.account_key_version = ctx.key->info.version;
  // A certificate that names no CRL is never read for one (the policy scan's revocation check):
  // no transaction per certificate to find that out later.
  if (leaf.crl_distribution_points.empty()) cert.crl_next_check = leaf.not_after;
  // RFC 8555 §7.5.2: the authorizations are deactivated before the certificate is stored, so
  // that one transaction records both. Should that transaction not happen (the lease lost, the
  // replica killed), the CA reports the order deactivated with its certificate, the next step
  // downloads again, the CA refuses to deactivate what is deactivated and a look at the
  // authorization confirms it. One the CA failed to deactivate gets a job that tries again.
  std::vector<storage::AuthorizationId> undeactivated;
  if (ctx.tenant.spec.policy.deactivate_authorizations_after_issuance) {
    for (const auto& a : ctx.authorizations) {
      auto d = ctx.client->DeactivateAuthorization(ctx.ref, a.record.url);
      if (options_.metrics) options_.metrics->RecordAcme("deactivateAuthorization", d.status());
      if (!d.ok() && d.status().code() == absl::StatusCode::kInvalidArgument) {
        // Refused: deactivated already, by a step that died before its finishing transaction?
        d = ctx.client->GetAuthorization(ctx.ref, a.record.url);
        if (d.ok() && d->status != "deactivated") d = absl::FailedPreconditionError(d->status);
      }
      if (options_.metrics) {
        options_.metrics->RecordAuthorizationDeactivation(d.ok() ? "deactivated" : "failed");
      }
      if (d.ok()) {
        done.deactivated_authorizations.push_back(a.record.url);
      } else {
        undeactivated.push_back(a.id);
      }
    }
  }
  const Answers answers = AnswersOf(ctx, order);
  done.challenge_tokens = answers.http_tokens;
  // The CA validated them (the order has its certificate): no longer served from memory.
  if (options_.published != nullptr) {
    for (const std::string& token : answers.http_tokens) options_.published->Remove(token);
  }
  // The certificate, its key (the order's), the ledger, the HTTP-01 cleanup and the job's end:
  // one transaction, fenced by the job's lease.
  ASSIGN_OR_RETURN(ctx.certificate, options_.orders->FinishOrder(ctx.scope(), ctx.lease(), done));
  // A deactivation the CA failed is not forgotten: a job per authorization retries it with the
  // engine's backoff. Should scheduling fail too, the policy sweep finds the row later.
  for (storage::AuthorizationId id : undeactivated) {
    const absl::Time now = options_.clock->Now();
    absl::Status s = options_.jobs
                         ->ScheduleJob(ctx.scope(),
                                       {kDeactivateAuthorizationJob, absl::StrCat(id),
                                        ctx.account.directory_url, now},
                                       now)
                         .status();
    if (!s.ok()) {
      Log(LogLevel::kWarning, "could not schedule the retry of a deactivation",
          {{"authorization", absl::StrCat(id)}, {"status", s.ToString()}});
    }
  }
  Forget(ctx.order);
  ctx.order.state = storage::OrderState::kValid;
  ctx.order.certificate = ctx.certificate->id;
  ctx.order.updated_at = options_.clock->Now();
  if (options_.metrics) {
    options_.metrics->RecordIssuance(options_.clock->Now() - ctx.order.created_at, true);
  }
  // The job was this step's when the certificate was stored: the TXT records may go.
  if (options_.dns01 != nullptr) {
    for (const auto& [name, value] : answers.dns_records) {
      options_.dns01->Remove(name, value).IgnoreError();
    }
  }
  return absl::OkStatus();
}

void OrderRunner::Remember(const Context& ctx) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  // Orders another replica took over are never cleaned up here: forget them after a while.
  for (auto it = answers_.begin(); it != answers_.end();) {
    it = now - it->second.answered_at > kAnswersKept ? answers_.erase(it) : std::next(it);
  }
  answers_[{ctx.order.tenant, ctx.order.id}] = ctx.answers;
}

std::optional<OrderRunner::Answers> OrderRunner::Recall(const storage::Order& order) {
  absl::MutexLock lock(&mu_);
  auto it = answers_.find({order.tenant, order.id});
  if (it == answers_.end()) return std::nullopt;
  return it->second;
}

void OrderRunner::Forget(const storage::Order& order) {
  absl::MutexLock lock(&mu_);
  answers_.erase({order.tenant, order.id});
}

OrderRunner::Answers OrderRunner::AnswersOf(Context& ctx, const acme::Order& order) {
  std::optional<Answers> known = Recall(ctx.order);
  if (known.has_value()) return *std::move(known);
  Answers answers;
  // Answered by a step on another replica (or before a restart): the CA's authorizations
  // name the tokens.
  for (const std::string& url : order.authorizations) {
    auto authz = ctx.client->GetAuthorization(ctx.ref, order, url);
    if (options_.metrics) options_.metrics->RecordAcme("getAuthorization", authz.status());
    if (!authz.ok()) continue;
    const bool dns = authz->wildcard || ctx.challenge == ChallengePreference::kDns01;
    const acme::Challenge* ch = authz->Find(dns ? "dns-01" : "http-01");
    if (ch == nullptr || ch->token.empty()) continue;
    if (dns) {
      answers.dns_records.emplace_back(
          authz->identifier.value,
          crypto::Dns01TxtValue(crypto::KeyAuthorization(ch->token, ctx.key->signer->public_key())));
    } else {
      answers.http_tokens.push_back(ch->token);
    }
  }
  return answers;
}

void OrderRunner::Cleanup(Context& ctx, const acme::Order& order) {
  const Answers answers = AnswersOf(ctx, order);
  Forget(ctx.order);
  // Fenced by the job's lease: a step whose job another replica claimed leaves the answers the
  // new owner serves (the same tokens and TXT values) where they are.
  bool fenced_out = false;
  for (const auto& token : answers.http_tokens) {
    if (options_.published != nullptr) options_.published->Remove(token);
    absl::Status s = options_.challenges->DeleteChallengeFenced(ctx.scope(), ctx.lease(), token);
    if (absl::IsFailedPrecondition(s)) fenced_out = true;
  }
  if (answers.dns_records.empty() || options_.dns01 == nullptr || fenced_out) return;
  // A DNS server knows no fencing token: the records go only while the job is provably still
  // this step's (its token current). A lost race here leaves a stale TXT record, never removes
  // a needed one before the new owner's step has published it again.
  auto job = options_.jobs->GetJob(ctx.scope(), ctx.lease().job);
  if (!job.ok() || job->fencing_token != ctx.lease().fencing_token) return;
  for (const auto& [name, value] : answers.dns_records) {
    options_.dns01->Remove(name, value).IgnoreError();
  }
}

void OrderRunner::KeepLoaded(Context& ctx) {
  Loaded kept;
  kept.fencing_token = ctx.lease().fencing_token;
  kept.at = options_.clock->Now();
  kept.order = ctx.order;
  kept.account = ctx.account;
  kept.tenant = ctx.tenant;
  kept.authorizations = ctx.authorizations;
  kept.key = std::move(ctx.key);
  kept.processing_unrecorded = ctx.processing_unrecorded;
  ctx.key.reset();
  PutLoaded(std::move(kept));
}

storage::StepAdmission OrderRunner::FirstStepAdmission() {
  storage::StepAdmission admission;
  admission.now = options_.clock->Now();
  admission.budgets = [this](const storage::OrderStepState& loaded) {
    return AdmissionBudgets(loaded);
  };
  return admission;
}

OrderRunner::Loaded OrderRunner::Unpack(storage::OrderStepState loaded) {
  Loaded out;
  out.at = options_.clock->Now();
  out.order = std::move(loaded.order);
  out.account = std::move(loaded.account);
  out.tenant = std::move(loaded.tenant);
  out.authorizations = std::move(loaded.authorizations);
  if (loaded.key.has_value()) {
    absl::StatusOr<SigningKey> key = options_.keys->Open(*std::move(loaded.key));
    if (key.ok()) {
      out.key.emplace(*std::move(key));
    } else {
      out.key_status = key.status();
    }
  }
  out.admission = std::move(loaded.admission);
  out.admission_budgets = std::move(loaded.admission_budgets);
  return out;
}

void OrderRunner::Preload(const storage::Scope& scope, const storage::ClaimedJob& claimed,
                          storage::OrderStepState loaded) {
  Loaded first = Unpack(std::move(loaded));
  first.first = true;
  first.scope = scope;
  first.fencing_token = claimed.lease.fencing_token;
  PutLoaded(std::move(first));
}

void OrderRunner::PutLoaded(Loaded loaded) {
  const absl::Time now = options_.clock->Now();
  std::vector<Loaded> dropped;
  {
    absl::MutexLock lock(&mu_);
    // Left by steps whose jobs the engine rescheduled through the store instead, or by a job
    // that never ran here: the next step (here or elsewhere) loads the order, so these are
    // never taken.
    for (auto it = loaded_.begin(); it != loaded_.end();) {
      if (now - it->second.at > kLoadedKept) {
        dropped.push_back(std::move(it->second));
        it = loaded_.erase(it);
      } else {
        ++it;
      }
    }
    const std::pair<storage::TenantId, storage::OrderId> key{loaded.order.tenant, loaded.order.id};
    if (auto it = loaded_.find(key); it != loaded_.end()) dropped.push_back(std::move(it->second));
    loaded_.insert_or_assign(key, std::move(loaded));
  }
  ReturnUntaken(std::move(dropped));
}

void OrderRunner::ReturnUntaken(std::vector<Loaded> dropped) {
  for (const Loaded& l : dropped) {
    if (l.admission.has_value() && l.admission->take.has_value() && l.admission->take->taken) {
      ReturnBudgetTokens(l.scope, l.account.id, l.order.id, l.admission_budgets);
    }
  }
}

void OrderRunner::DropLoaded(storage::TenantId tenant, storage::OrderId order,
                             int64_t fencing_token) {
  std::vector<Loaded> dropped;
  {
    absl::MutexLock lock(&mu_);
    auto it = loaded_.find({tenant, order});
    if (it == loaded_.end() || it->second.first || it->second.fencing_token != fencing_token) {
      return;
    }
    dropped.push_back(std::move(it->second));
    loaded_.erase(it);
  }
  ReturnUntaken(std::move(dropped));
}

size_t OrderRunner::loaded_in_memory() const {
  absl::MutexLock lock(&mu_);
  return loaded_.size();
}

std::optional<OrderRunner::Loaded> OrderRunner::TakeLoaded(const OrderJob& job) {
  std::optional<Loaded> taken;
  std::vector<Loaded> dropped;
  {
    absl::MutexLock lock(&mu_);
    auto it = loaded_.find({job.scope.tenant, job.lease.order});
    if (it == loaded_.end()) return std::nullopt;
    // Only under the same lease: a claim since (here or elsewhere) may have moved the order on.
    // A kept step's for the job's next run here, a preloaded one for its first.
    if ((job.kept || it->second.first) && it->second.fencing_token == job.lease.fencing_token &&
        options_.clock->Now() - it->second.at <= kLoadedKept) {
      taken = std::move(it->second);
    } else {
      dropped.push_back(std::move(it->second));
    }
    loaded_.erase(it);
  }
  ReturnUntaken(std::move(dropped));
  return taken;
}

absl::StatusOr<OrderStepResult> OrderRunner::Step(const OrderJob& job) {
  Context ctx;
  ctx.job = &job;
  std::optional<Loaded> kept = TakeLoaded(job);
  if (!kept.has_value()) {
    // The order, its account, the tenant, the ledger and the active key, and for an order this
    // step will send to the CA the newOrder's admission: one transaction.
    const storage::StepAdmission admission = FirstStepAdmission();
    ASSIGN_OR_RETURN(
        storage::OrderStepState loaded,
        options_.orders->LoadOrderStep(job.scope, job.lease.order,
                                       storage::OrderStepPurpose(job.lease.order), &admission));
    if (storage::IsTerminal(loaded.order.state)) {
      ctx.order = std::move(loaded.order);
      Forget(ctx.order);
      // A step that ended the order (invalid) and died before closing its ephemeral account
      // left the job to this one.
      if (loaded.account.ephemeral) {
        ctx.account = std::move(loaded.account);
        EndEphemeral(ctx);
      }
      return OrderStepResult{OrderStepResult::Kind::kFinished, ctx.order};
    }
    kept = Unpack(std::move(loaded));
  }
  // Loaded now, or else kept in memory under this lease (every order write presents it, so
  // nothing wrote the order since): left by the previous step here, waiting for the CA, or
  // made with the order as this first step's load (Preload).
  ctx.order = std::move(kept->order);
  ctx.account = std::move(kept->account);
  ctx.tenant = std::move(kept->tenant);
  ctx.authorizations = std::move(kept->authorizations);
  ctx.key = std::move(kept->key);
  ctx.key_status = std::move(kept->key_status);
  ctx.processing_unrecorded = kept->processing_unrecorded;
  // A load's admission (this step's, or the order's creation's: Preload).
  ctx.admission = std::move(kept->admission);
  ctx.admission_budgets = std::move(kept->admission_budgets);
  // As the request that made the order asked (stored with it); a wildcard's is DNS-01 anyway.
  ctx.challenge =
      ctx.order.prefer_dns01 ? ChallengePreference::kDns01 : ChallengePreference::kHttp01;
  auto record = [orders = options_.orders, scope = job.scope, lease = job.lease] {
    return orders->TransitionOrder(scope, lease, storage::OrderState::kProcessing, {});
  };
  absl::StatusOr<OrderStepResult> result;
  try {
    result = StepLoaded(ctx);
  } catch (...) {
    // Whoever handles the exception reads the row (Issuer::RecordException): it must say that
    // finalize was sent, as the step knew.
    if (ctx.processing_unrecorded) record().IgnoreError();
    ReturnUnusedAdmission(ctx);
    throw;
  }
  // Admitted with the load, but the step stopped before newOrder (a key that would not open,
  // an unknown CA, ...): nothing was sent, so the tokens go back.
  ReturnUnusedAdmission(ctx);
  // The order's ephemeral account ends with it: after the certificate was stored (and the
  // authorizations deactivated), or once the order failed.
  if (result.ok() && result->kind == OrderStepResult::Kind::kFinished && ctx.account.ephemeral) {
    EndEphemeral(ctx);
  }
  // Waiting for the CA: the next step may come here under the same lease.
  const bool keep =
      result.ok() && result->kind == OrderStepResult::Kind::kWaiting && ctx.key.has_value();
  if (ctx.processing_unrecorded &&
      !(result.ok() && result->kind == OrderStepResult::Kind::kFinished)) {
    // Finalize was answered: what the row must say before the order leaves this memory, so
    // that no later step sends it again.
    if (keep && job.defers_writes) {
      result->unrecorded = record;
    } else if (!result.ok()) {
      record().IgnoreError();  // the step's own error is the answer
    } else {
      RETURN_IF_ERROR(record());
      ctx.processing_unrecorded = false;
    }
  }
  if (keep) {
    KeepLoaded(ctx);
    result->forget = [this, tenant = job.scope.tenant, order = job.lease.order,
                      token = job.lease.fencing_token] { DropLoaded(tenant, order, token); };
  }
  return result;
}

absl::Status OrderRunner::RegisterEphemeral(Context& ctx) {
  ASSIGN_OR_RETURN(acme::Directory directory, ctx.client->GetDirectory());
  acme::NewAccountOptions request{.terms_of_service_agreed = true};
  if (directory.external_account_required) {
    // Bound with the tenant's kept EAB key (the order's own account key signs the binding).
    ASSIGN_OR_RETURN(storage::EabKey eab,
                     KeptEabKey(*options_.accounts, ctx.scope(), ctx.account.directory_url,
                                "an ephemeral account (or turn ephemeral_accounts off)",
                                absl::StrCat("ephemeral account for order ", ctx.order.id)));
    BindWith(eab, request);
  }
  ASSIGN_OR_RETURN(bool token,
                   TakeNewAccountToken(*options_.limits, options_.ca_limits,
                                       ctx.account.directory_url, options_.clock->Now()));
  // RFC 8555 §7.3.1: for a key the CA knows already (an earlier step's newAccount whose answer
  // was lost) this answers with that account, so a repeated step registers nothing twice.
  auto registered = ctx.client->NewAccount(*ctx.key->signer, request);
  if (options_.metrics) options_.metrics->RecordAcme("newAccount", registered.status());
  if (token) {
    SettleNewAccountToken(*options_.limits, options_.ca_limits, ctx.account.directory_url,
                          registered);
  }
  RETURN_IF_ERROR(registered.status());
  RETURN_IF_ERROR(options_.accounts->RecordAccountUrl(ctx.scope(), ctx.account.id, registered->url,
                                                      registered->contact));
  ctx.account.account_url = registered->url;
  ctx.account.status = storage::AccountStatus::kValid;
  if (options_.metrics) options_.metrics->RecordEphemeralAccount("created");
  Log(LogLevel::kInfo, "ephemeral account registered for an order",
      {{"tenant", absl::StrCat(ctx.order.tenant)},
       {"order", absl::StrCat(ctx.order.id)},
       {"account", registered->url}});
  return absl::OkStatus();
}

void OrderRunner::EndEphemeral(Context& ctx) {
  absl::Status closed = CloseEphemeralAccount(ctx.scope(), ctx.account.id);
  if (closed.ok()) return;
  // Not forgotten: a job retries it with the engine's backoff.
  const absl::Time now = options_.clock->Now();
  absl::Status s = options_.jobs
                       ->ScheduleJob(ctx.scope(),
                                     {kDeactivateEphemeralAccountJob, absl::StrCat(ctx.account.id),
                                      ctx.account.directory_url, now},
                                     now)
                       .status();
  Log(s.ok() ? LogLevel::kInfo : LogLevel::kError,
      s.ok() ? "the ephemeral account's deactivation failed; a job retries it"
             : "the ephemeral account's deactivation failed and its retry could not be scheduled",
      {{"tenant", absl::StrCat(ctx.order.tenant)},
       {"account", absl::StrCat(ctx.account.id)},
       {"error", SummarizeFailure(closed)},
       {"status", SummarizeFailure(s)}});
}

absl::Status OrderRunner::CloseEphemeralAccount(const storage::Scope& scope,
                                                storage::AccountId id) {
  ASSIGN_OR_RETURN(storage::Account account, options_.accounts->GetAccount(scope, id));
  if (!account.ephemeral || (account.status != storage::AccountStatus::kPending &&
                             account.status != storage::AccountStatus::kValid)) {
    return absl::OkStatus();
  }
  auto count = [&](absl::string_view event) {
    if (options_.metrics) options_.metrics->RecordEphemeralAccount(event);
  };
  auto close = [&](absl::string_view event) -> absl::Status {
    absl::Status s =
        options_.accounts->SetAccountStatus(scope, id, storage::AccountStatus::kDeactivated);
    // Closed meanwhile by another attempt: done all the same.
    if (!s.ok() && !absl::IsFailedPrecondition(s)) return s;
    count(event);
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(SigningKey key, options_.keys->Active(scope, id, "ephemeral account close"));
  ASSIGN_OR_RETURN(acme::AcmeClient * client, options_.clients->For(account.directory_url));
  if (account.account_url.empty()) {
    // Never recorded as registered; a newAccount whose answer was lost may have registered it.
    auto found = client->NewAccount(*key.signer, {.only_return_existing = true});
    if (options_.metrics) options_.metrics->RecordAcme("newAccount", found.status());
    if (!found.ok()) {
      std::optional<acme::Problem> problem = acme::GetProblem(found.status());
      if (problem && problem->ShortType() == "accountDoesNotExist") return close("abandoned");
      count("deactivation_failed");
      return found.status();
    }
    RETURN_IF_ERROR(options_.accounts->RecordAccountUrl(scope, id, found->url, found->contact));
    account.account_url = found->url;
  }
  auto deactivated = client->DeactivateAccount({key.signer.get(), account.account_url});
  if (options_.metrics) options_.metrics->RecordAcme("deactivateAccount", deactivated.status());
  if (!deactivated.ok() && !acme::IsAccountUnusable(deactivated.status())) {
    count("deactivation_failed");
    return deactivated.status();
  }
  // RFC 8555 §7.3.6: the CA honours nothing of a deactivated account, so the ledger's
  // authorizations of it are no longer outstanding (nor work for the policy sweep).
  storage::AuthorizationFilter of_account;
  of_account.account = id;
  auto outstanding = options_.authorizations->ListOutstandingAuthorizations(scope, of_account);
  if (outstanding.ok()) {
    for (const storage::Authorization& a : *outstanding) {
      options_.authorizations->MarkAuthorizationDeactivated(scope, id, a.record.url).IgnoreError();
    }
  }
  return close("deactivated");
}

absl::StatusOr<OrderStepResult> OrderRunner::StepLoaded(Context& ctx) {
  using Kind = OrderStepResult::Kind;
  const storage::Scope& scope = ctx.scope();
  acme::Order ca;  // the CA's view, once fetched

  // Moves the recorded state forward (never back), under the lease.
  auto advance = [&](storage::OrderState to,
                     const storage::OrderFailure& failure = {}) -> absl::Status {
    if (ctx.order.state >= to && to != storage::OrderState::kInvalid) return absl::OkStatus();
    // With the order as this step holds it (kept or loaded under the lease): in one round trip
    // when the row is still as held.
    RETURN_IF_ERROR(options_.orders->TransitionOrder(scope, ctx.lease(), to, failure, &ctx.order));
    ctx.order.state = to;
    ctx.order.updated_at = options_.clock->Now();
    return absl::OkStatus();
  };
  // Ends the order as invalid with `s` recorded. (Store errors, such as a lost lease, are
  // returned directly, never through here.)
  auto give_up = [&](const absl::Status& s) -> absl::StatusOr<OrderStepResult> {
    if (ctx.client != nullptr && ctx.key.has_value()) Cleanup(ctx, ca);
    // The CA made the order but no certificate (it was never finalized there): the certificate
    // its newOrder was counted for will not exist.
    if (!ctx.order.acme_url.empty() && ctx.order.state < storage::OrderState::kProcessing &&
        ca.status != "processing" && ca.status != "valid" && !acme::HasCertificate(ca)) {
      GiveBackDuplicateToken(ctx);
    }
    // Summarised (type, status, clipped detail): the row, its audit entry and GetOrder's answer
    // never carry a CA's text whole. The CA's problem type is kept on its own too.
    const storage::OrderFailure failure{SummarizeFailure(s), ProblemTypeOf(s)};
    RETURN_IF_ERROR(advance(storage::OrderState::kInvalid, failure));
    ctx.order.error = failure.error;
    ctx.order.problem_type = failure.problem_type;
    if (options_.metrics) {
      options_.metrics->RecordIssuance(options_.clock->Now() - ctx.order.created_at, false);
    }
    return OrderStepResult{Kind::kFinished, ctx.order};
  };
  auto stopped = [&](const absl::Status& s, absl::Time at = absl::InfinitePast(),
                     bool quiet = false) {
    return OrderStepResult{Kind::kStopped, ctx.order, at, s, quiet};
  };
  auto waiting = [&](absl::Time phase_start) {
    return OrderStepResult{Kind::kWaiting, ctx.order, NextLook(phase_start, ca.retry_after)};
  };
  // The CA keeps the order processing (since its transition to processing, the row's
  // updated_at): look again on the poll schedule until the timeout, then set it aside.
  auto processing = [&]() -> absl::StatusOr<OrderStepResult> {
    const absl::Time now = options_.clock->Now();
    if (!ctx.order.stalled_at.has_value() &&
        now - ctx.order.updated_at < options_.processing_timeout) {
      return waiting(ctx.order.updated_at);
    }
    if (!ctx.order.stalled_at.has_value()) {
      RETURN_IF_ERROR(options_.orders->MarkOrderStalled(scope, ctx.lease(), now));
      ctx.order.stalled_at = now;
      Log(LogLevel::kWarning, "order stalled at the CA",
          {{"tenant", absl::StrCat(ctx.order.tenant)}, {"order", absl::StrCat(ctx.order.id)}});
    }
    if (options_.metrics) options_.metrics->RecordOrderHeld("stalled");
    absl::Time at = now + options_.stalled_look_interval;
    if (ca.retry_after.has_value()) at = std::max(at, *ca.retry_after);
    return OrderStepResult{
        Kind::kHeld, ctx.order, at,
        absl::UnavailableError(absl::StrCat(
            "order ", ctx.order.id, " stalled: the CA has kept it processing since ",
            absl::FormatTime(absl::RFC3339_sec, ctx.order.updated_at, absl::UTCTimeZone()),
            "; it is looked at again at ",
            absl::FormatTime(absl::RFC3339_sec, at, absl::UTCTimeZone()),
            " and a new request for its names makes a new order"))};
  };
  // A CA error that is permanent ends the order as invalid; a passing one leaves it for a later
  // step.
  bool finalized_at_ca = false;  // The CA said processing or valid: a certificate exists or will.
  auto fail = [&](const absl::Status& s) -> absl::StatusOr<OrderStepResult> {
    // A passing failure keeps challenge answers in place (the CA may still be validating) and
    // the order as it is; once the CA has a certificate for it, only a mismatch we detected
    // ourselves (INTERNAL) ends it here: anything else is retried by a later step (the
    // download's own verdicts are judged where it fails, DownloadMayRecover).
    if (Retryable(s) || (finalized_at_ca && !absl::IsInternal(s))) {
      std::optional<acme::Problem> problem = acme::GetProblem(s);
      return stopped(s, problem && problem->retry_after ? *problem->retry_after
                                                         : absl::InfinitePast());
    }
    return give_up(s);
  };

  if (ctx.order.csr_der.empty()) {
    // Its creator stopped before it attached a generated key: nobody can finalize it.
    return give_up(absl::FailedPreconditionError(
        "the order has no stored CSR to finalize with; request again"));
  }
  // An order's ephemeral account is registered by its first step (below), once the key is open.
  const bool unregistered =
      ctx.account.ephemeral && ctx.account.status == storage::AccountStatus::kPending;
  if (!unregistered &&
      (ctx.account.status != storage::AccountStatus::kValid || ctx.account.account_url.empty())) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "the tenant's ACME account is ", storage::AccountStatusName(ctx.account.status))));
  }
  if (ctx.account.hijacked_at) return fail(HijackedAccountError(ctx.account));
  if (!ctx.key_status.ok()) return fail(ctx.key_status);
  if (!ctx.key.has_value()) {
    // The load found no usable active key: the store says why.
    auto key = options_.keys->Active(scope, ctx.account.id, absl::StrCat("order ", ctx.order.id));
    if (!key.ok()) return fail(key.status());
    ctx.key.emplace(*std::move(key));
  }
  ASSIGN_OR_RETURN(ctx.client, options_.clients->For(ctx.account.directory_url));
  if (unregistered) {
    absl::Status registered = RegisterEphemeral(ctx);
    if (std::optional<absl::Time> until = RateLimitedUntil(registered)) {
      // The fleet's new-account budget at the CA is spent (nothing was sent), or the CA said
      // rateLimited with a Retry-After: the order waits without a failed attempt.
      if (options_.metrics) options_.metrics->RecordOrderHeld("account_budget");
      return OrderStepResult{Kind::kHeld, ctx.order, *until, registered};
    }
    if (!registered.ok()) return fail(registered);
  }
  ctx.ref = {ctx.key->signer.get(), ctx.account.account_url};

  std::optional<Answers> answered = Recall(ctx.order);
  if (ctx.order.acme_url.empty()) {
    // The tenant's allow-list may have shrunk since the order was made.
    ASSIGN_OR_RETURN(AllowList allow, AllowList::Create(ctx.tenant.spec.allowed_identifiers));
    if (absl::Status allowed = allow.CheckAll(ctx.order.identifiers); !allowed.ok()) {
      return give_up(absl::PermissionDeniedError(
          absl::StrCat("no longer allowed: ", allowed.message())));
    }
    // Within the CA's limits, as every replica keeps them: a hold from a rateLimited answer,
    // then a token of the account's budget (taken only when the request goes out).
    std::vector<storage::CaBudget> token_from;
    ASSIGN_OR_RETURN(std::optional<OrderStepResult> held, HeldBeforeNewOrder(ctx, &token_from));
    if (held.has_value()) return *std::move(held);
    acme::NewOrderOptions request;
    for (const auto& id : ctx.order.identifiers) request.identifiers.push_back({"dns", id});
    // A renewal says what it replaces (RFC 9773 §5), to a CA that offers renewalInfo only, and
    // only from an account that can hold the replaced certificate (never an ephemeral one).
    if (!ctx.order.replaces.empty() && !ctx.account.ephemeral) {
      auto directory = ctx.client->GetDirectory();
      if (directory.ok() && !directory->renewal_info.empty()) {
        request.replaces = ctx.order.replaces;
      }
    }
    auto created = ctx.client->NewOrder(ctx.ref, request);
    if (options_.metrics) options_.metrics->RecordAcme("newOrder", created.status());
    if (!created.ok() && !request.replaces.empty() && RefusesReplaces(created.status())) {
      // The CA will not take this order as the certificate's replacement (another order
      // replaced it already, or it does not know it for this account): ordered again as a
      // plain order, which is still a renewal here.
      Log(LogLevel::kInfo, "the CA refused the order's replaces; ordering without it",
          {{"order", absl::StrCat(ctx.order.id)},
           {"status", created.status().ToString()}});
      request.replaces.clear();
      created = ctx.client->NewOrder(ctx.ref, request);
      if (options_.metrics) options_.metrics->RecordAcme("newOrder", created.status());
    }
    if (!created.ok()) {
      RecordHold(ctx, storage::CaRequest::kNewOrder, created.status());
      GiveBackBudgetTokens(ctx, token_from, created.status());
      return fail(created.status());
    }
    // Recorded before anything else happens at the CA (with the ledger and the answers, when
    // the order is pending; see AnswerAuthorizations): a crash from here on resumes this order.
    ctx.order.acme_url = created->url;
    ca = *std::move(created);
    if (ca.status != "pending") {
      RETURN_IF_ERROR(options_.orders->RecordOrderUrl(scope, ctx.lease(), ca.url));
      ctx.order.state = storage::OrderState::kPending;
    }
  } else {
    auto fetched = ctx.client->GetOrder(ctx.ref, ctx.order.acme_url);
    if (options_.metrics) options_.metrics->RecordAcme("getOrder", fetched.status());
    if (!fetched.ok()) return fail(fetched.status());
    ca = *std::move(fetched);
  }

  // The CA may hold a certificate for this order already: it said so at our first look, or the
  // stored state says we finalized (a resumed order). From then on, only a mismatch we detect
  // ourselves ends the order; anything else leaves it for a later step to download.
  finalized_at_ca = ca.status == "processing" || acme::HasCertificate(ca) ||
                    ctx.order.state >= storage::OrderState::kProcessing;
  // The CA's status decides each move; the step goes on while no wait is needed. Bounded:
  // each status is handled at most a few times.
  for (int move = 0; move < 8; ++move) {
    absl::StatusOr<acme::Order> next;
    if (ca.status == "pending") {
      if (answered.has_value()) {
        // Answered by an earlier step here: the CA is validating.
        return waiting(answered->answered_at);
      }
      // Answered nowhere yet, or by a step elsewhere (answering again skips what the CA
      // validates or has validated).
      ctx.answers.answered_at = options_.clock->Now();
      if (absl::Status s = AnswerAuthorizations(ctx, ca); !s.ok()) return fail(s);
      Remember(ctx);
      return waiting(ctx.answers.answered_at);
    } else if (ca.status == "processing" ||
               (ca.status == "ready" && ctx.order.state >= storage::OrderState::kProcessing)) {
      // The CA works on the certificate. (A CA that says ready again after our finalize was
      // answered is treated alike: the stored state says finalize was sent, and it is never
      // sent twice.) Past the timeout, the order is set aside as stalled.
      RETURN_IF_ERROR(advance(storage::OrderState::kProcessing));
      return processing();
    } else if (ca.status == "ready") {
      // RFC 8555 §7.4: finalize only while the CA says ready, and only while we provably hold
      // the job (a fenced write right before it); after a crash past this point the CA says
      // processing or valid, and we never send it again. Recording ready is such a write (the
      // job row locked with it, its lease as fresh as the claim or the engine's last renewal);
      // an order found ready already is proved by renewing the lease.
      const bool recorded_here = ctx.order.state < storage::OrderState::kReady;
      RETURN_IF_ERROR(advance(storage::OrderState::kReady));
      if (!recorded_here) RETURN_IF_ERROR(ProveLease(ctx));
      next = ctx.client->Finalize(ctx.ref, ca, ctx.order.csr_der);
      if (options_.metrics) options_.metrics->RecordAcme("finalize", next.status());
      if (next.ok() && ctx.job->defers_writes) {
        // The CA has our finalize: never sent again, for the state says processing from here
        // on. The row learns it with the certificate (FinishOrder) while the steps stay here,
        // else before the order leaves this replica's memory (Step).
        ctx.order.state = storage::OrderState::kProcessing;
        ctx.order.updated_at = options_.clock->Now();
        ctx.processing_unrecorded = true;
      } else if (next.ok()) {
        RETURN_IF_ERROR(advance(storage::OrderState::kProcessing));
      } else if (absl::IsFailedPrecondition(next.status())) {
        // orderNotReady: someone finalized already (or the CA moved on); look again.
        next = ctx.client->GetOrder(ctx.ref, ca.url);
        if (options_.metrics) options_.metrics->RecordAcme("getOrder", next.status());
      }
    } else if (acme::HasCertificate(ca)) {
      absl::Status s = Complete(ctx, ca);
      if (s.ok()) {
        OrderStepResult done{Kind::kFinished, ctx.order};
        done.certificate = ctx.certificate;
        return done;
      }
      // A failed download (a 404 while the CA's storage catches up, a dropped connection, a
      // proxy's page) is tried again soon, a few times; then it waits for the engine's backoff
      // if asking again may help, and ends the order otherwise.
      if (absl::IsInternal(s)) return give_up(s);
      if (ctx.job->failed_attempts < kDownloadRetries) {
        return stopped(s, options_.clock->Now() + kDownloadRetryPause, /*quiet=*/true);
      }
      if (DownloadMayRecover(s)) return stopped(s);
      return give_up(s);
    } else if (ca.status == "deactivated") {
      // An authorization of the order was deactivated before the CA issued (a compromise
      // response, or someone holding the account key): final, no step can change it.
      return give_up(absl::FailedPreconditionError(
          "the CA reports the order deactivated (one of its authorizations was deactivated) "
          "before it issued a certificate"));
    } else {  // invalid
      // Final at the CA (RFC 8555 §7.1.6), whatever happened before: the order ends here, with
      // the CA's problem (kept as the failure's payload, so its type is recorded too).
      constexpr char kWhat[] = "the CA marked the order invalid";
      if (!ca.error.is_object() || ca.error.empty()) {
        return give_up(absl::FailedPreconditionError(absl::StrCat(kWhat, " without a reason")));
      }
      return give_up(acme::EmbeddedProblemStatus(absl::StatusCode::kFailedPrecondition, kWhat,
                                                 acme::ProblemFromDocument(ca.error)));
    }
    if (!next.ok()) return fail(next.status());
    ca = *std::move(next);
    if (ca.status == "processing" || acme::HasCertificate(ca)) finalized_at_ca = true;
  }
  return fail(absl::DeadlineExceededError("order did not settle"));
}

}  // namespace acmevault::service
