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
#include "crypto/jwk.h"
#include "crypto/x509.h"
#include "service/failure.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

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

// How often one run tries the download again after a failure, and the pause before each.
constexpr int kDownloadRetries = 2;
constexpr absl::Duration kDownloadRetryPause = absl::Seconds(1);

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
  RETURN_IF_ERROR(RequireCollaborators("OrderRunner", {{"orders", options.orders},
                                                       {"accounts", options.accounts},
                                                       {"keys", options.keys},
                                                       {"authorizations", options.authorizations},
                                                       {"challenges", options.challenges},
                                                       {"clients", options.clients},
                                                       {"clock", options.clock}}));
  return std::unique_ptr<OrderRunner>(new OrderRunner(options));
}

struct OrderRunner::Context {
  OrderJob job;
  storage::Order order;
  storage::Account account;
  std::optional<SigningKey> key;
  acme::AcmeClient* client = nullptr;
  acme::AccountRef ref;
  absl::Time deadline;
  std::vector<std::string> http_tokens;
  std::vector<std::pair<std::string, std::string>> dns_records;

  const storage::Scope& scope() const { return job.scope; }
};

absl::Status OrderRunner::RenewIfDue(Context& ctx) {
  absl::Time now = options_.clock->Now();
  if (ctx.job.lease.expires_at - now > options_.lease_duration / 2) return absl::OkStatus();
  ASSIGN_OR_RETURN(ctx.job.lease, options_.orders->RenewLease(ctx.scope(), ctx.job.lease,
                                                              options_.lease_duration));
  return absl::OkStatus();
}

absl::Status OrderRunner::AnswerAuthorizations(Context& ctx, const acme::Order& order) {
  for (const std::string& url : order.authorizations) {
    RETURN_IF_ERROR(RenewIfDue(ctx));  // Many authorizations (or a slow DNS server) take long.
    // Matched to the order's identifiers: an authorization for another name is refused before
    // it reaches the ledger or gets an answer.
    auto authz = ctx.client->GetAuthorization(ctx.ref, order, url);
    if (options_.metrics) options_.metrics->RecordAcme("getAuthorization", authz.status());
    RETURN_IF_ERROR(authz.status());
    std::string identifier =
        authz->wildcard ? absl::StrCat("*.", authz->identifier.value) : authz->identifier.value;
    RETURN_IF_ERROR(
        options_.authorizations
            ->RecordAuthorization(ctx.scope(), {ctx.account.id, ctx.order.id, url, identifier,
                                                AuthzStatus(authz->status), authz->expires})
            .status());
    if (authz->status == "valid") continue;  // Reused by the CA.
    if (authz->status != "pending") {
      return absl::FailedPreconditionError(
          absl::StrCat("authorization for ", identifier, " is ", authz->status));
    }
    bool dns = authz->wildcard || ctx.job.challenge == ChallengePreference::kDns01;
    const acme::Challenge* ch = authz->Find(dns ? "dns-01" : "http-01");
    if (ch == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("the CA offers no ", dns ? "dns-01" : "http-01",
                                                        " challenge for ", identifier));
    }
    // Answered already (a resumed run, another replica): validated is done; one the CA is
    // validating keeps its published answer but is never answered again (RFC 8555 §7.5.1: the
    // CA refuses a response to a challenge that is not pending).
    if (ch->status == "valid") continue;
    if (ch->status != "pending" && ch->status != "processing") {
      return absl::FailedPreconditionError(
          absl::StrCat("the ", ch->type, " challenge for ", identifier, " is ", ch->status));
    }
    std::string key_auth = crypto::KeyAuthorization(ch->token, ctx.key->signer->public_key());
    if (dns) {
      if (options_.dns01 == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            identifier, " needs dns-01 and this server has no DNS-01 configuration"));
      }
      std::string value = crypto::Dns01TxtValue(key_auth);
      RETURN_IF_ERROR(options_.dns01->Publish(authz->identifier.value, value));
      ctx.dns_records.emplace_back(authz->identifier.value, value);
    } else {
      RETURN_IF_ERROR(options_.challenges->PutChallenge(ctx.scope(), ch->token, key_auth));
      ctx.http_tokens.push_back(ch->token);
    }
    if (ch->status != "pending") continue;
    auto responded = ctx.client->RespondToChallenge(ctx.ref, ch->url);
    if (options_.metrics) options_.metrics->RecordAcme("respondToChallenge", responded.status());
    if (responded.ok() || Retryable(responded.status())) {
      RETURN_IF_ERROR(responded.status());
      continue;
    }
    // Refused: the challenge may have left pending between our look and our answer (another
    // replica's answer was validated). Look again; answered is answered.
    RETURN_IF_ERROR(ChallengeAnswered(ctx, order, url, ch->type) ? absl::OkStatus()
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
  ASSIGN_OR_RETURN(crypto::CsrInfo csr, crypto::ParseCsr(ctx.job.csr_der));
  if (!leaf.public_key.Equals(csr.public_key)) {
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
  storage::NewCertificate cert;
  cert.account = ctx.account.id;
  cert.order = ctx.order.id;
  cert.identifiers = ctx.order.identifiers;
  cert.serial = leaf.serial_hex;
  cert.not_before = leaf.not_before;
  cert.not_after = leaf.not_after;
  cert.chain_pem = chain->pem;
  cert.account_key_version = ctx.key->info.version;
  cert.private_key = ctx.job.certificate_key;
  RETURN_IF_ERROR(options_.orders->CompleteOrder(ctx.scope(), ctx.job.lease, cert).status());
  if (options_.metrics) {
    options_.metrics->RecordIssuance(options_.clock->Now() - ctx.order.created_at, true);
  }
  if (ctx.job.deactivate_authorizations_after_issuance) {
    storage::AuthorizationFilter filter;
    filter.order = ctx.order.id;
    auto outstanding = options_.authorizations->ListOutstandingAuthorizations(ctx.scope(), filter);
    if (outstanding.ok()) {
      for (const auto& a : *outstanding) {
        auto d = ctx.client->DeactivateAuthorization(ctx.ref, a.record.url);
        if (options_.metrics) options_.metrics->RecordAcme("deactivateAuthorization", d.status());
        if (d.ok()) {
          options_.authorizations
              ->MarkAuthorizationDeactivated(ctx.scope(), ctx.account.id, a.record.url)
              .IgnoreError();
        }
      }
    }
  }
  return absl::OkStatus();
}

void OrderRunner::Cleanup(Context& ctx) {
  // Fenced by the lease: a run whose order another replica claimed leaves the answers the new
  // owner serves (the same tokens and TXT values) where they are.
  bool fenced_out = false;
  for (const auto& token : ctx.http_tokens) {
    absl::Status s = options_.challenges->DeleteChallengeFenced(ctx.scope(), ctx.job.lease, token);
    if (absl::IsFailedPrecondition(s)) fenced_out = true;
  }
  if (ctx.dns_records.empty() || options_.dns01 == nullptr || fenced_out) return;
  // A DNS server knows no fencing token: the records go only while the order is provably still
  // this run's (its token current). A lost race here leaves a stale TXT record, never removes a
  // needed one before the new owner's run has published it again.
  auto order = options_.orders->GetOrder(ctx.scope(), ctx.order.id);
  if (!order.ok() || order->fencing_token != ctx.job.lease.fencing_token) return;
  for (const auto& [name, value] : ctx.dns_records) {
    options_.dns01->Remove(name, value).IgnoreError();
  }
}

absl::StatusOr<acme::Order> OrderRunner::WaitAtCa(Context& ctx, const std::string& url,
                                                   bool until_ready) {
  // In slices of a third of the lease, renewing it between them: a CA that validates for
  // longer than a lease never lets the lease lapse under a live run.
  while (true) {
    RETURN_IF_ERROR(RenewIfDue(ctx));
    const absl::Time slice_end =
        std::min(ctx.deadline, options_.clock->Now() + options_.lease_duration / 3);
    auto order = ctx.client->WaitForOrder(ctx.ref, url, slice_end, until_ready);
    if (!absl::IsDeadlineExceeded(order.status()) || slice_end >= ctx.deadline) return order;
  }
}

absl::StatusOr<storage::Order> OrderRunner::Run(OrderJob job) {
  Context ctx;
  ctx.job = std::move(job);
  ctx.deadline = options_.clock->Now() + options_.ca_timeout;
  const storage::Scope& scope = ctx.job.scope;
  ASSIGN_OR_RETURN(ctx.order, options_.orders->GetOrder(scope, ctx.job.lease.order));
  if (storage::IsTerminal(ctx.order.state)) return ctx.order;
  // The job may have waited in a queue: prove (and extend) the lease before any ACME request,
  // so a replica whose lease was claimed never talks to the CA about this order.
  ASSIGN_OR_RETURN(ctx.job.lease,
                   options_.orders->RenewLease(scope, ctx.job.lease, options_.lease_duration));

  // Moves the recorded state forward (never back), under the lease.
  auto advance = [&](storage::OrderState to,
                     const storage::OrderFailure& failure = {}) -> absl::Status {
    if (ctx.order.state >= to && to != storage::OrderState::kInvalid) return absl::OkStatus();
    RETURN_IF_ERROR(options_.orders->TransitionOrder(scope, ctx.job.lease, to, failure));
    ctx.order.state = to;
    return absl::OkStatus();
  };
  // Ends the order as invalid with `s` recorded. (Store errors, such as a lost lease, are
  // returned directly, never through here.)
  auto give_up = [&](const absl::Status& s) -> absl::StatusOr<storage::Order> {
    Cleanup(ctx);
    // Summarised (type, status, clipped detail): the row, its audit entry and GetOrder's answer
    // never carry a CA's text whole. The CA's problem type is kept on its own too.
    RETURN_IF_ERROR(
        advance(storage::OrderState::kInvalid, {SummarizeFailure(s), ProblemTypeOf(s)}));
    if (options_.metrics) {
      options_.metrics->RecordIssuance(options_.clock->Now() - ctx.order.created_at, false);
    }
    return options_.orders->GetOrder(scope, ctx.order.id);
  };
  // A CA error that is permanent ends the order as invalid; a passing one leaves it for a later
  // run.
  bool finalized_at_ca = false;  // The CA said processing or valid: a certificate exists or will.
  auto fail = [&](const absl::Status& s) -> absl::StatusOr<storage::Order> {
    // A passing failure keeps challenge answers in place (the CA may still be validating) and
    // the order as it is; once the CA has a certificate for it, only a mismatch we detected
    // ourselves (INTERNAL) ends it here: anything else is retried by a later run (the download's
    // own verdicts are judged where it fails, DownloadMayRecover).
    if (Retryable(s) || (finalized_at_ca && !absl::IsInternal(s))) return s;
    return give_up(s);
  };

  ASSIGN_OR_RETURN(ctx.account, options_.accounts->GetAccount(scope, ctx.order.account));
  if (ctx.account.status != storage::AccountStatus::kValid || ctx.account.account_url.empty()) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "the tenant's ACME account is ", storage::AccountStatusName(ctx.account.status))));
  }
  auto key = options_.keys->Active(scope, ctx.account.id, absl::StrCat("order ", ctx.order.id));
  if (!key.ok()) return fail(key.status());
  ctx.key.emplace(*std::move(key));
  ASSIGN_OR_RETURN(ctx.client, options_.clients->For(ctx.account.directory_url));
  ctx.ref = {ctx.key->signer.get(), ctx.account.account_url};

  acme::Order ca;
  if (ctx.order.acme_url.empty()) {
    acme::NewOrderOptions request;
    for (const auto& id : ctx.order.identifiers) request.identifiers.push_back({"dns", id});
    auto created = ctx.client->NewOrder(ctx.ref, request);
    if (options_.metrics) options_.metrics->RecordAcme("newOrder", created.status());
    if (!created.ok()) return fail(created.status());
    // Recorded before anything else happens at the CA: a crash from here on resumes this order.
    RETURN_IF_ERROR(options_.orders->RecordOrderUrl(scope, ctx.job.lease, created->url));
    ctx.order.state = storage::OrderState::kPending;
    ca = *std::move(created);
  } else {
    auto fetched = ctx.client->GetOrder(ctx.ref, ctx.order.acme_url);
    if (options_.metrics) options_.metrics->RecordAcme("getOrder", fetched.status());
    if (!fetched.ok()) return fail(fetched.status());
    ca = *std::move(fetched);
  }

  // The CA may hold a certificate for this order already: it said so at our first look, or the
  // stored state says we finalized (a resumed run). From then on, only a mismatch we detect
  // ourselves ends the order; anything else leaves it for a later run to download.
  finalized_at_ca = ca.status == "processing" || ca.status == "valid" ||
                    ctx.order.state >= storage::OrderState::kProcessing;
  int download_retries = 0;
  // The CA's status decides each step. Bounded: each status is handled at most a few times.
  for (int step = 0; step < 12; ++step) {
    RETURN_IF_ERROR(RenewIfDue(ctx));
    absl::StatusOr<acme::Order> next;
    if (ca.status == "pending") {
      if (absl::Status s = AnswerAuthorizations(ctx, ca); !s.ok()) return fail(s);
      next = WaitAtCa(ctx, ca.url, /*until_ready=*/true);
    } else if (ca.status == "ready") {
      RETURN_IF_ERROR(advance(storage::OrderState::kReady));
      // RFC 8555 §7.4: finalize only while the CA says ready, and only while we provably hold the
      // lease (a fenced write right before it); after a crash past this point the CA says
      // processing or valid, and we never send it again.
      ASSIGN_OR_RETURN(ctx.job.lease,
                       options_.orders->RenewLease(scope, ctx.job.lease, options_.lease_duration));
      next = ctx.client->Finalize(ctx.ref, ca, ctx.job.csr_der);
      if (options_.metrics) options_.metrics->RecordAcme("finalize", next.status());
      if (next.ok()) {
        RETURN_IF_ERROR(advance(storage::OrderState::kProcessing));
      } else if (absl::IsFailedPrecondition(next.status())) {
        // orderNotReady: someone finalized already (or the CA moved on); look again.
        next = ctx.client->GetOrder(ctx.ref, ca.url);
      }
    } else if (ca.status == "processing") {
      RETURN_IF_ERROR(advance(storage::OrderState::kProcessing));
      next = WaitAtCa(ctx, ca.url, /*until_ready=*/false);
    } else if (ca.status == "valid") {
      absl::Status s = Complete(ctx, ca);
      if (s.ok()) {
        Cleanup(ctx);
        return options_.orders->GetOrder(scope, ctx.order.id);
      }
      // A failed download (a 404 while the CA's storage catches up, a dropped connection, a
      // proxy's page) is tried again in this run, after a pause and a fresh look at the order;
      // then it waits for a later run if asking again may help, and ends the order otherwise.
      if (absl::IsInternal(s)) return give_up(s);
      if (++download_retries > kDownloadRetries) {
        if (DownloadMayRecover(s)) return s;
        return give_up(s);
      }
      options_.clock->SleepFor(kDownloadRetryPause);
      next = ctx.client->GetOrder(ctx.ref, ca.url);
      if (options_.metrics) options_.metrics->RecordAcme("getOrder", next.status());
    } else {  // invalid
      // Final at the CA (RFC 8555 §7.1.6), whatever this run did before: the order ends here,
      // with the CA's problem (kept as the failure's payload, so its type is recorded too).
      constexpr char kWhat[] = "the CA marked the order invalid";
      if (!ca.error.is_object() || ca.error.empty()) {
        return give_up(absl::FailedPreconditionError(absl::StrCat(kWhat, " without a reason")));
      }
      return give_up(acme::EmbeddedProblemStatus(absl::StatusCode::kFailedPrecondition, kWhat,
                                                 acme::ProblemFromDocument(ca.error)));
    }
    if (!next.ok()) return fail(next.status());
    ca = *std::move(next);
    if (ca.status == "processing" || ca.status == "valid") finalized_at_ca = true;
  }
  return fail(absl::DeadlineExceededError("order did not settle"));
}

}  // namespace acmevault::service
