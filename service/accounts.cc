#include "service/accounts.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "acme/problem.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/x509.h"
#include "service/identifiers.h"
#include "service/log.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

// The CA's answer to onlyReturnExisting says it has no account for that key (a bare 404 from a
// proxy does not count: only the accountDoesNotExist problem).
bool NoSuchAccount(const absl::Status& s) {
  auto problem = acme::GetProblem(s);
  return absl::IsNotFound(s) && problem && problem->ShortType() == "accountDoesNotExist";
}

bool Retryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsAborted(s) ||
         absl::IsResourceExhausted(s);
}

absl::Status Audit(storage::AuditLog& audit, const storage::Scope& scope, const std::string& action,
                   const std::string& detail, std::optional<storage::AccountId> account = {}) {
  storage::AuditEvent e;
  e.action = action;
  e.detail = detail;
  e.account = account;
  return audit.AppendAudit(scope, e);
}

// Every certificate of the tenant, page by page.
absl::StatusOr<std::vector<storage::Certificate>> AllCertificates(
    storage::CertificateStore& certificates, const storage::Scope& scope) {
  std::vector<storage::Certificate> out;
  storage::PageRequest page{"", 1000};
  for (int pages = 0; pages < 10000; ++pages) {
    ASSIGN_OR_RETURN(auto p, certificates.ListCertificates(scope, {}, page));
    out.insert(out.end(), p.items.begin(), p.items.end());
    if (p.next_page_token.empty()) return out;
    page.page_token = p.next_page_token;
  }
  return absl::ResourceExhaustedError("too many certificates to list");
}

}  // namespace

absl::StatusOr<std::unique_ptr<AccountManager>> AccountManager::Create(Options options) {
  RETURN_IF_ERROR(
      RequireCollaborators("AccountManager", {{"tenants", options.tenants},
                                              {"accounts", options.accounts},
                                              {"authorizations", options.authorizations},
                                              {"certificates", options.certificates},
                                              {"audit", options.audit},
                                              {"clients", options.clients},
                                              {"issuer", options.issuer},
                                              {"clock", options.clock}}));
  return std::unique_ptr<AccountManager>(new AccountManager(std::move(options)));
}

struct AccountManager::Current {
  storage::Account account;
  std::optional<storage::UnsealedAccountKey> key;
  acme::AcmeClient* client = nullptr;
  acme::AccountRef Ref() const { return {&key->private_key, account.account_url}; }
};

absl::StatusOr<AccountView> AccountManager::View(const storage::Scope& scope,
                                                 storage::AccountId id) {
  ASSIGN_OR_RETURN(storage::Account account, options_.accounts->GetAccount(scope, id));
  ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys, options_.accounts->ListKeys(scope, id));
  for (const auto& k : keys) {
    if (k.state != storage::KeyState::kActive) continue;
    if (options_.metrics != nullptr) {
      auto tenant = options_.tenants->GetTenant(scope);
      if (tenant.ok()) {
        options_.metrics->SetAccountKeyAge(
            tenant->spec.name, options_.clock->Now() - k.activated_at.value_or(k.created_at));
      }
    }
    return AccountView{account, k};
  }
  return absl::NotFoundError("the account has no active key");
}

absl::StatusOr<AccountManager::Current> AccountManager::Load(const storage::Scope& scope) {
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  const storage::Account* valid = nullptr;
  for (const auto& a : accounts) {
    if (a.status == storage::AccountStatus::kValid && !a.account_url.empty()) valid = &a;
  }
  if (valid == nullptr) {
    return absl::FailedPreconditionError("the tenant has no valid ACME account");
  }
  Current c;
  c.account = *valid;
  ASSIGN_OR_RETURN(c.client, options_.clients->For(valid->directory_url));
  auto key = options_.accounts->GetActiveKey(scope, valid->id, scope.actor.rpc);
  if (key.ok()) c.key.emplace(*std::move(key));
  return c;
}

absl::StatusOr<AccountView> AccountManager::CreateAccount(const Caller& caller,
                                                          const CreateAccountSpec& spec) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("AccountService/CreateAccount");
  if (!spec.terms_of_service_agreed) {
    return absl::InvalidArgumentError(
        "terms_of_service_agreed: must be true (the CA's terms are agreed to for the tenant)");
  }
  std::string mac;
  if (!spec.eab_key_id.empty() && !crypto::Base64UrlDecode(spec.eab_hmac_key, &mac)) {
    return absl::InvalidArgumentError("eab_hmac_key: is not base64url");
  }
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
  const std::string& directory = tenant.spec.acme_directory_url;
  if (directory.empty()) {
    return absl::FailedPreconditionError("the tenant has no ACME directory configured");
  }
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  const storage::Account* pending = nullptr;
  for (const auto& a : accounts) {
    if (a.status == storage::AccountStatus::kValid) {
      return absl::AlreadyExistsError(
          absl::StrCat("the tenant already has a valid account: ", a.account_url));
    }
    if (a.status == storage::AccountStatus::kPending && a.directory_url == directory) pending = &a;
  }
  // A pending account is a creation that crashed before the CA answered: reuse its key, so the
  // CA (which keys accounts by key) returns the same account if it did create it.
  std::optional<crypto::PrivateKey> key;
  storage::AccountId id;
  if (pending != nullptr) {
    id = pending->id;
    ASSIGN_OR_RETURN(storage::UnsealedAccountKey k,
                     options_.accounts->GetKey(scope, id, 1, "CreateAccount (resume)"));
    key.emplace(std::move(k.private_key));
  } else {
    crypto::KeyAlgorithm algorithm = spec.key_algorithm.value_or(tenant.spec.policy.key_algorithm);
    ASSIGN_OR_RETURN(crypto::PrivateKey generated, crypto::PrivateKey::Generate(algorithm));
    ASSIGN_OR_RETURN(storage::Account created,
                     options_.accounts->CreateAccount(scope, directory, generated,
                                                      KeyInfo(generated.public_key()),
                                                      storage::KeyState::kPending));
    id = created.id;
    key.emplace(std::move(generated));
  }
  ASSIGN_OR_RETURN(acme::AcmeClient * client, options_.clients->For(directory));
  auto acct = client->NewAccount(*key, {spec.contact, true, false, spec.eab_key_id, mac});
  if (options_.metrics) options_.metrics->RecordAcme("newAccount", acct.status());
  RETURN_IF_ERROR(acct.status());
  RETURN_IF_ERROR(options_.accounts->RecordAccountUrl(scope, id, acct->url));
  ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys, options_.accounts->ListKeys(scope, id));
  for (const auto& k : keys) {
    if (k.state == storage::KeyState::kPending) {
      RETURN_IF_ERROR(options_.accounts->PromoteKey(scope, id, k.version));
    }
  }
  return View(scope, id);
}

absl::StatusOr<AccountView> AccountManager::GetAccount(const Caller& caller) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("AccountService/GetAccount");
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  if (accounts.empty()) return absl::NotFoundError("the tenant has no ACME account");
  // The newest valid account, else the newest of any status.
  const storage::Account* chosen = &accounts.back();
  for (const auto& a : accounts) {
    if (a.status == storage::AccountStatus::kValid) chosen = &a;
  }
  auto view = View(scope, chosen->id);
  if (view.ok() || !absl::IsNotFound(view.status())) return view;
  // A deactivated account may have no active key left; report its newest key.
  ASSIGN_OR_RETURN(auto keys, options_.accounts->ListKeys(scope, chosen->id));
  if (keys.empty()) return view.status();
  return AccountView{*chosen, keys.back()};
}

absl::Status AccountManager::RecoverPendingKey(const storage::Scope& scope, Current& current) {
  ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys,
                   options_.accounts->ListKeys(scope, current.account.id));
  const storage::AccountKey* pending = nullptr;
  for (const auto& k : keys) {
    if (k.state == storage::KeyState::kPending) pending = &k;
  }
  if (pending == nullptr) return absl::OkStatus();
  if (options_.clock->Now() - pending->created_at < options_.rollover_grace) {
    return absl::AbortedError(absl::StrCat("a rollover of this account is in progress (key version ",
                                           pending->version, "); retry shortly"));
  }
  // Left by a crash: the key the CA accepts is the active one (docs/flows.md, Rollover).
  ASSIGN_OR_RETURN(
      storage::UnsealedAccountKey candidate,
      options_.accounts->GetKey(scope, current.account.id, pending->version, "rollover recovery"));
  auto found = current.client->NewAccount(candidate.private_key, {.only_return_existing = true});
  if (found.ok() && found->url == current.account.account_url) {
    RETURN_IF_ERROR(options_.accounts->PromoteKey(scope, current.account.id, pending->version));
    Log(LogLevel::kWarning, "rollover recovery: the CA had applied keyChange; promoted",
        {{"tenant", absl::StrCat(scope.tenant)}, {"version", absl::StrCat(pending->version)}});
    ASSIGN_OR_RETURN(storage::UnsealedAccountKey active,
                     options_.accounts->GetActiveKey(scope, current.account.id, "rollover"));
    current.key.emplace(std::move(active));
    return absl::OkStatus();
  }
  if (NoSuchAccount(found.status())) {
    Log(LogLevel::kWarning, "rollover recovery: the CA never saw the pending key; discarded",
        {{"tenant", absl::StrCat(scope.tenant)}, {"version", absl::StrCat(pending->version)}});
    return options_.accounts->DiscardPendingKey(scope, current.account.id, pending->version);
  }
  return found.ok() ? absl::InternalError("the pending key belongs to another account at the CA")
                    : found.status();
}

absl::StatusOr<RolloverResult> AccountManager::RolloverScoped(
    const storage::Scope& scope, std::optional<crypto::KeyAlgorithm> algorithm,
    absl::string_view reason, bool mark_old_compromised) {
  ASSIGN_OR_RETURN(Current current, Load(scope));
  RETURN_IF_ERROR(RecoverPendingKey(scope, current));
  if (!current.key) return absl::FailedPreconditionError("the account has no usable active key");
  const int old_version = current.key->info.version;
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
  ASSIGN_OR_RETURN(crypto::PrivateKey new_key,
                   crypto::PrivateKey::Generate(algorithm.value_or(tenant.spec.policy.key_algorithm)));
  // RFC 8555 §7.3.5 (docs/flows.md, Rollover): stored before the CA hears of it.
  auto pending = options_.accounts->AddPendingKey(scope, current.account.id, new_key,
                                                  KeyInfo(new_key.public_key()));
  if (absl::IsAlreadyExists(pending.status())) {
    return absl::AbortedError("another rollover of this account is in progress");
  }
  RETURN_IF_ERROR(pending.status());
  absl::Status changed = current.client->KeyChange(current.Ref(), new_key);
  if (options_.metrics) options_.metrics->RecordAcme("keyChange", changed);
  // Whatever keyChange said, ask the CA which key it now knows.
  auto found = current.client->NewAccount(new_key, {.only_return_existing = true});
  if (found.ok() && found->url == current.account.account_url) {
    RETURN_IF_ERROR(options_.accounts->PromoteKey(scope, current.account.id, pending->version));
  } else if (NoSuchAccount(found.status()) && !changed.ok()) {
    RETURN_IF_ERROR(
        options_.accounts->DiscardPendingKey(scope, current.account.id, pending->version));
    return changed;
  } else {
    // Unknown outcome: leave the key pending; the next rollover (after the grace period)
    // resolves it by asking the CA again.
    return absl::UnavailableError(absl::StrCat(
        "could not tell whether the CA applied keyChange (", changed.ToString(), "; ",
        found.status().ToString(), "); the next rollover resolves it"));
  }
  if (mark_old_compromised) {
    RETURN_IF_ERROR(options_.accounts->MarkKeyCompromised(scope, current.account.id, old_version));
  }
  Audit(*options_.audit, scope, "Rollover", std::string(reason), current.account.id).IgnoreError();
  ASSIGN_OR_RETURN(AccountView view, View(scope, current.account.id));
  return RolloverResult{view, old_version};
}

absl::StatusOr<RolloverResult> AccountManager::Rollover(
    const Caller& caller, std::optional<crypto::KeyAlgorithm> algorithm,
    absl::string_view reason) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  return RolloverScoped(caller.ScopeFor("AccountService/RolloverAccountKey"), algorithm,
                        reason.empty() ? "requested" : reason, /*mark_old_compromised=*/false);
}

absl::StatusOr<AccountView> AccountManager::Deactivate(const Caller& caller,
                                                       absl::string_view confirm_account_url) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("AccountService/DeactivateAccount");
  ASSIGN_OR_RETURN(Current current, Load(scope));
  if (confirm_account_url != current.account.account_url) {
    return absl::InvalidArgumentError(
        "confirm_account_url: does not match the tenant's account URL");
  }
  if (!current.key) return absl::FailedPreconditionError("the account has no usable active key");
  auto result = current.client->DeactivateAccount(current.Ref());
  if (options_.metrics) options_.metrics->RecordAcme("deactivateAccount", result.status());
  RETURN_IF_ERROR(result.status());
  RETURN_IF_ERROR(options_.accounts->SetAccountStatus(scope, current.account.id,
                                                      storage::AccountStatus::kDeactivated));
  return View(scope, current.account.id);
}

absl::StatusOr<DeactivationCounts> AccountManager::DeactivateAuthorizationsScoped(
    const storage::Scope& scope, const std::vector<std::string>& identifiers) {
  ASSIGN_OR_RETURN(Current current, Load(scope));
  if (!current.key) return absl::FailedPreconditionError("the account has no usable active key");
  storage::AuthorizationFilter filter;
  filter.account = current.account.id;
  if (!identifiers.empty()) {
    ASSIGN_OR_RETURN(filter.identifiers, NormalizeDnsNames(identifiers, "identifiers"));
  }
  ASSIGN_OR_RETURN(std::vector<storage::Authorization> outstanding,
                   options_.authorizations->ListOutstandingAuthorizations(scope, filter));
  DeactivationCounts counts;
  for (const auto& a : outstanding) {
    auto r = current.client->DeactivateAuthorization(current.Ref(), a.record.url);
    if (options_.metrics) options_.metrics->RecordAcme("deactivateAuthorization", r.status());
    if (r.ok()) {
      RETURN_IF_ERROR(options_.authorizations->MarkAuthorizationDeactivated(
          scope, current.account.id, a.record.url));
      ++counts.deactivated;
    } else if (Retryable(r.status())) {
      ++counts.failed;
    } else {
      ++counts.skipped;  // The CA says it cannot be deactivated (expired, invalid, gone).
    }
  }
  return counts;
}

absl::StatusOr<DeactivationCounts> AccountManager::DeactivateAuthorizations(
    const Caller& caller, const std::vector<std::string>& identifiers) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("AccountService/DeactivateAuthorizations");
  if (!identifiers.empty()) {
    // A name the tenant may not hold is refused, as IssueCertificate refuses it, rather than
    // answered with zero counts that read as "nothing outstanding".
    ASSIGN_OR_RETURN(std::vector<std::string> names,
                     NormalizeDnsNames(identifiers, "identifiers"));
    ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
    ASSIGN_OR_RETURN(AllowList allow, AllowList::Create(tenant.spec.allowed_identifiers));
    RETURN_IF_ERROR(allow.CheckAll(names));
  }
  return DeactivateAuthorizationsScoped(scope, identifiers);
}

absl::StatusOr<storage::Certificate> AccountManager::RevokeCertificate(
    const Caller& caller, absl::string_view serial, crypto::RevocationReason reason,
    bool use_certificate_key) {
  if (serial.empty()) return absl::InvalidArgumentError("serial: required");
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("CertificateService/RevokeCertificate");
  ASSIGN_OR_RETURN(storage::Certificate cert,
                   options_.certificates->GetCertificateBySerial(scope, serial));
  if (cert.revoked_at) {
    return absl::FailedPreconditionError(absl::StrCat("certificate ", serial, " is already revoked"));
  }
  if (use_certificate_key && !cert.has_private_key) {
    return absl::FailedPreconditionError(
        "use_certificate_key: the service does not hold this certificate's key");
  }
  const bool with_cert_key =
      use_certificate_key ||
      (reason == crypto::RevocationReason::kKeyCompromise && cert.has_private_key);
  ASSIGN_OR_RETURN(std::vector<std::string> ders, crypto::SplitPemChain(cert.chain_pem));
  absl::Status revoked;
  if (with_cert_key) {
    ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
    std::string directory = tenant.spec.acme_directory_url;
    if (cert.account) {
      auto account = options_.accounts->GetAccount(scope, *cert.account);
      if (account.ok()) directory = account->directory_url;
    }
    ASSIGN_OR_RETURN(acme::AcmeClient * client, options_.clients->For(directory));
    ASSIGN_OR_RETURN(crypto::PrivateKey key,
                     options_.certificates->GetCertificateKey(scope, cert.id, "RevokeCertificate"));
    revoked = client->RevokeWithCertificateKey(key, ders.front(), reason);
  } else {
    ASSIGN_OR_RETURN(Current current, Load(scope));
    if (!current.key) return absl::FailedPreconditionError("the account has no usable key");
    revoked = current.client->RevokeCertificate(current.Ref(), ders.front(), reason);
  }
  if (options_.metrics) options_.metrics->RecordAcme("revokeCert", revoked);
  auto problem = acme::GetProblem(revoked);
  if (!revoked.ok() && !(problem && problem->ShortType() == "alreadyRevoked")) return revoked;
  RETURN_IF_ERROR(options_.certificates->MarkCertificateRevoked(scope, cert.id, reason));
  return options_.certificates->GetCertificate(scope, cert.id);
}

absl::StatusOr<AccountManager::Compromise> AccountManager::ResumeCompromise(
    const Caller& caller, bool deactivate_account, std::optional<crypto::KeyAlgorithm> algorithm) {
  Compromise c{.caller = caller,
               .scope = caller.ScopeFor("AccountService/RespondToCompromise"),
               .deactivate_account = deactivate_account,
               .algorithm = algorithm};
  // Where an earlier run stopped: the steps recorded since the last unfinished start.
  std::optional<absl::Time> started;
  storage::PageRequest page{"", 1000};
  for (int pages = 0; pages < 100000; ++pages) {
    ASSIGN_OR_RETURN(auto p, options_.audit->ListAudit(c.scope, page));
    for (const auto& r : p.items) {
      if (r.event.action == "CompromiseStart") {
        started = r.at;
        c.done.clear();
      } else if (r.event.action == "CompromiseStep" && started) {
        c.done[r.event.detail] = r.at;
      } else if (r.event.action == "CompromiseDone") {
        started.reset();
        c.done.clear();
      }
    }
    if (p.next_page_token.empty()) break;
    page.page_token = p.next_page_token;
  }
  if (!started) {
    RETURN_IF_ERROR(Audit(*options_.audit, c.scope, "CompromiseStart",
                          deactivate_account ? "deactivate_account=true" : ""));
    started = options_.clock->Now();
  }
  c.start = *started;
  return c;
}

absl::StatusOr<CompromiseReport> AccountManager::RespondToCompromise(
    const Caller& caller, bool deactivate_account, std::optional<crypto::KeyAlgorithm> algorithm) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  ASSIGN_OR_RETURN(const Compromise c, ResumeCompromise(caller, deactivate_account, algorithm));
  CompromiseReport report;
  for (const PlaybookStep& step : kPlaybook) {
    if (auto it = c.done.find(step.name); it != c.done.end()) {
      report.steps.push_back({step.name, true, "done by an earlier run", it->second});
      continue;
    }
    ASSIGN_OR_RETURN(StepOutcome outcome, (this->*step.run)(c));
    if (!outcome.done) {
      report.steps.push_back({step.name, false, outcome.detail, std::nullopt});
      continue;
    }
    RETURN_IF_ERROR(Audit(*options_.audit, c.scope, "CompromiseStep", step.name));
    report.steps.push_back({step.name, true, outcome.detail, options_.clock->Now()});
  }
  RETURN_IF_ERROR(Audit(*options_.audit, c.scope, "CompromiseDone", ""));
  auto view = GetAccount(caller);
  if (view.ok()) report.account = *view;
  return report;
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::RollOverCompromisedKey(
    const Compromise& c) {
  ASSIGN_OR_RETURN(RolloverResult r, RolloverScoped(c.scope, c.algorithm, "compromise", true));
  return StepOutcome{
      true, absl::StrCat("key version ", r.previous_version, " -> ", r.account.active_key.version,
                         "; old key marked compromised")};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::DeactivateOutstandingAuthorizations(
    const Compromise& c) {
  ASSIGN_OR_RETURN(DeactivationCounts counts, DeactivateAuthorizationsScoped(c.scope, {}));
  if (counts.failed > 0) {
    return absl::UnavailableError(absl::StrCat(
        counts.failed, " authorizations could not be deactivated; call again to resume"));
  }
  return StepOutcome{
      true, absl::StrCat(counts.deactivated, " deactivated, ", counts.skipped, " skipped")};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::ReissueLiveCertificates(
    const Compromise& c) {
  ASSIGN_OR_RETURN(auto certs, AllCertificates(*options_.certificates, c.scope));
  int reissued = 0, host_keys = 0;
  std::vector<std::string> refused;
  for (const auto& cert : certs) {
    if (cert.created_at >= c.start || cert.revoked_at || cert.superseded_at ||
        cert.not_after <= options_.clock->Now()) {
      continue;
    }
    if (!cert.has_private_key) {
      ++host_keys;  // The host holds the key: it must request a new certificate itself.
      continue;
    }
    auto chain = crypto::ParsePemChain(cert.chain_pem);
    IssueRequest request;
    request.identifiers = cert.identifiers;
    if (chain.ok()) request.key_algorithm = chain->front().public_key.algorithm();
    request.force_new = true;
    // No caller deadline here: the playbook bounds each reissue by its own wait.
    request.deadline = absl::InfiniteFuture();
    request.max_wait = options_.reissue_wait;
    auto issue = options_.issuer->Issue(c.caller, request);
    if (!issue.ok() && !Retryable(issue.status())) {
      // Not reissuable (the names left the allow-list, the CA refuses them, ...): report it
      // and go on, so revocation is not held up by it.
      refused.push_back(absl::StrCat(cert.serial, " (", issue.status().message(), ")"));
      continue;
    }
    RETURN_IF_ERROR(issue.status());
    if (!issue->certificate) {
      return absl::DeadlineExceededError(absl::StrCat("reissue of certificate ", cert.serial,
                                                      " is still running (order ", issue->order.id,
                                                      "); call again to resume"));
    }
    ++reissued;
  }
  std::string detail =
      absl::StrCat(reissued, " reissued; ", host_keys, " held by hosts, not reissued");
  if (!refused.empty()) {
    absl::StrAppend(&detail, "; not reissuable: ", absl::StrJoin(refused, "; "));
  }
  return StepOutcome{true, detail};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::RevokeReplacedCertificates(
    const Compromise& c) {
  ASSIGN_OR_RETURN(Current current, Load(c.scope));
  if (!current.key) return absl::FailedPreconditionError("the account has no usable key");
  ASSIGN_OR_RETURN(auto certs, AllCertificates(*options_.certificates, c.scope));
  int revoked = 0;
  for (const auto& cert : certs) {
    if (cert.created_at >= c.start || cert.revoked_at || !cert.has_private_key ||
        cert.not_after <= options_.clock->Now()) {
      continue;
    }
    ASSIGN_OR_RETURN(auto ders, crypto::SplitPemChain(cert.chain_pem));
    // Their keys were not compromised (the account key was): superseded, not keyCompromise.
    constexpr crypto::RevocationReason kReason = crypto::RevocationReason::kSuperseded;
    absl::Status s = current.client->RevokeCertificate(current.Ref(), ders.front(), kReason);
    if (options_.metrics) options_.metrics->RecordAcme("revokeCert", s);
    auto problem = acme::GetProblem(s);
    if (!s.ok() && !(problem && problem->ShortType() == "alreadyRevoked")) return s;
    RETURN_IF_ERROR(options_.certificates->MarkCertificateRevoked(c.scope, cert.id, kReason));
    ++revoked;
  }
  return StepOutcome{true, absl::StrCat(revoked, " revoked (reason superseded)")};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::DeactivateAccountIfAsked(
    const Compromise& c) {
  if (!c.deactivate_account) return StepOutcome{false, "not requested"};
  ASSIGN_OR_RETURN(Current current, Load(c.scope));
  RETURN_IF_ERROR(Deactivate(c.caller, current.account.account_url).status());
  return StepOutcome{true, "account deactivated"};
}

}  // namespace acmevault::service
