#include "service/accounts.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "acme/problem.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/x509.h"
#include "service/eab.h"
#include "service/failure.h"
#include "service/identifiers.h"
#include "service/key_policy.h"
#include "service/log.h"
#include "service/required.h"
#include "service/rotation_policy.h"

namespace acmevault::service {
namespace {

// The audit action written before the service asks the CA to deactivate an account.
constexpr char kDeactivationRequested[] = "DeactivateAccountRequested";

// The first `max` of `items` joined, then how many more: a message about a tenant's
// certificates stays short whatever their number.
std::string SomeOf(const std::vector<std::string>& items, absl::string_view separator,
                   size_t max = 10) {
  if (items.size() <= max) return absl::StrJoin(items, separator);
  return absl::StrCat(absl::StrJoin(items.begin(), items.begin() + max, separator), separator,
                      "and ", items.size() - max, " more");
}

// The CA's answer to onlyReturnExisting says it has no account for that key (a bare 404 from a
// proxy does not count: only the accountDoesNotExist problem).
bool NoSuchAccount(const absl::Status& s) {
  auto problem = acme::GetProblem(s);
  return absl::IsNotFound(s) && problem && problem->ShortType() == "accountDoesNotExist";
}

// RFC 8555 §6.7: the CA answered the request with a problem document on a 4xx status, so it
// refused this request (malformed, unauthorized, badPublicKey, rateLimited, ...). A timeout, a
// 5xx, a redirect or a transport error says nothing about whether the CA applied it; nor does
// badNonce, which is also the answer to a resent copy of a request the CA did apply.
bool DefinitelyRefused(const absl::Status& s) {
  auto problem = acme::GetProblem(s);
  return problem && problem->http_status >= 400 && problem->http_status < 500 &&
         problem->http_status != 408 && problem->ShortType() != "badNonce";
}

// A pending key settled by recovery: worth an operator's attention.
void LogRecovery(const storage::Scope& scope, int version, absl::string_view what) {
  Log(LogLevel::kWarning, absl::StrCat("rollover recovery: ", what),
      {{"tenant", absl::StrCat(scope.tenant)}, {"version", absl::StrCat(version)}});
}

// What a call that needed the account is told once the account was found closed at the CA.
absl::Status AccountClosedAtCa() {
  return absl::FailedPreconditionError(
      "the CA no longer accepts the tenant's account; it is now recorded as closed, and "
      "AccountService.CreateAccount makes a new one");
}

// A step's error, with the run to resume named (its payload, e.g. the CA's problem, kept).
absl::Status NamingTheRun(const absl::Status& error, storage::CompromiseRunId run) {
  absl::Status named(error.code(), absl::StrCat(error.message(), " (compromise run ", run,
                                                ": pass run_id ", run, " to resume)"));
  error.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { named.SetPayload(url, payload); });
  return named;
}

// What a rollover by a new account answered that settled nothing: the key stays pending.
absl::Status ReplacementUnsettled(int version, absl::string_view what,
                                  const absl::Status& answer) {
  return absl::UnavailableError(absl::StrCat(
      what, " (", SummarizeFailure(answer), "); key version ", version,
      " stays pending and the rollover by a new account is completed before the account key is "
      "next used"));
}

// What a new account does not carry over from the one it replaces (RFC 8555 §7.1.4: an
// authorization belongs to its account; RFC 8657: CAA accounturi names the account URL;
// RFC 9773 §5: a CA may require `replaces` to name a certificate of the same account).
std::vector<std::string> LostWithANewAccount(absl::string_view old_url,
                                             absl::string_view new_url) {
  return {
      "authorizations: the previous account's authorizations are not carried over; the next "
      "orders are validated afresh",
      absl::StrCat("CAA accounturi: a CAA record binding ", old_url,
                   " no longer matches; bind ", new_url, " instead"),
      "ARI replaces: the CA may not honour `replaces` naming certificates issued to the "
      "previous account"};
}

absl::Status CreationInProgress() {
  return absl::AbortedError("another CreateAccount of this tenant is in progress");
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
                                              {"keys", options.keys},
                                              {"authorizations", options.authorizations},
                                              {"certificates", options.certificates},
                                              {"audit", options.audit},
                                              {"compromise_runs", options.compromise_runs},
                                              {"clients", options.clients},
                                              {"issuer", options.issuer},
                                              {"engine", options.engine},
                                              {"notices", options.notices},
                                              {"clock", options.clock}}));
  auto manager = std::unique_ptr<AccountManager>(new AccountManager(std::move(options)));
  RETURN_IF_ERROR(manager->options_.engine->Register(
      kRevokeJob, [raw = manager.get()](const JobRun& run) { return raw->RevokeReplaced(run); }));
  RETURN_IF_ERROR(manager->options_.engine->Register(
      kRotateJob, [raw = manager.get()](const JobRun& run) { return raw->RotateByPolicy(run); }));
  RETURN_IF_ERROR(manager->options_.engine->Register(
      kVerifyAccountJob,
      [raw = manager.get()](const JobRun& run) { return raw->VerifyByPolicy(run); }));
  RETURN_IF_ERROR(manager->options_.engine->Register(
      kDeactivateAuthorizationJob,
      [raw = manager.get()](const JobRun& run) { return raw->DeactivateByPolicy(run); }));
  return manager;
}

AccountManager::~AccountManager() { options_.engine->Stop(); }

struct AccountManager::Current {
  storage::Account account;
  std::optional<SigningKey> key;
  acme::AcmeClient* client = nullptr;
  acme::AccountRef Ref() const { return {key->signer.get(), account.account_url}; }
};

absl::StatusOr<AccountView> AccountManager::View(const storage::Scope& scope,
                                                 storage::AccountId id) {
  ASSIGN_OR_RETURN(storage::Account account, options_.accounts->GetAccount(scope, id));
  ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys, options_.accounts->ListKeys(scope, id));
  for (const auto& k : keys) {
    if (k.state != storage::KeyState::kActive) continue;
    ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
    const absl::Time now = options_.clock->Now();
    if (options_.metrics != nullptr) {
      options_.metrics->SetAccountKeyAge(tenant.spec.name, KeyAge(k, now));
    }
    AccountView view{account, k, DecideRotation(tenant.spec.policy, k, now).due_at};
    auto eab = options_.accounts->GetEabKeyInfo(scope);
    if (eab.ok()) view.kept_eab_key_id = eab->key_id;
    if (!eab.ok() && !absl::IsNotFound(eab.status())) return eab.status();
    return view;
  }
  return absl::NotFoundError("the account has no active key");
}

absl::StatusOr<AccountManager::Current> AccountManager::FindValid(const storage::Scope& scope) {
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  const storage::Account* valid = nullptr;
  for (const auto& a : accounts) {
    // An ephemeral account (one order's) is never the tenant's account.
    if (a.status == storage::AccountStatus::kValid && !a.account_url.empty() && !a.ephemeral) {
      valid = &a;
    }
  }
  if (valid == nullptr) {
    return absl::FailedPreconditionError("the tenant has no valid ACME account");
  }
  if (valid->hijacked_at) return HijackedAccountError(*valid);
  Current c;
  c.account = *valid;
  ASSIGN_OR_RETURN(c.client, options_.clients->For(valid->directory_url));
  return c;
}

absl::StatusOr<AccountManager::Current> AccountManager::Load(const storage::Scope& scope) {
  ASSIGN_OR_RETURN(Current c, FindValid(scope));
  std::optional<Replaced> replaced;
  RETURN_IF_ERROR(ResolvePendingKey(scope, c, nullptr, /*mark_old_compromised=*/false, &replaced));
  // A rollover by a new account completed just now: the tenant's account is the new one.
  if (replaced) {
    ASSIGN_OR_RETURN(c, FindValid(scope));
  }
  auto key = options_.keys->Active(scope, c.account.id, scope.actor.rpc);
  if (key.ok()) {
    c.key.emplace(*std::move(key));
  } else if (!absl::IsNotFound(key.status())) {
    // A token that is away or a key object that is gone: say so, rather than "no usable key".
    return key.status();
  }
  return c;
}

absl::StatusOr<storage::KeyLease> AccountManager::TakeKeyLease(const storage::Scope& scope,
                                                               storage::AccountId account) {
  auto lease = options_.accounts->AcquireKeyLease(scope, account, options_.key_lease);
  if (absl::IsAborted(lease.status())) {
    return absl::AbortedError(
        "another change of this account's keys is in progress (a rollover or its recovery); "
        "retry shortly");
  }
  return lease;
}

void AccountManager::GiveBack(const storage::Scope& scope, const storage::KeyLease& lease) {
  absl::Status s = options_.accounts->ReleaseKeyLease(scope, lease);
  if (!s.ok()) {
    Log(LogLevel::kWarning, "could not release an account key lease; it expires by itself",
        {{"tenant", absl::StrCat(scope.tenant)}, {"error", SummarizeFailure(s)}});
  }
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
  if (spec.keep_eab_key && (spec.eab_key_id.empty() || mac.empty())) {
    return absl::InvalidArgumentError("keep_eab_key: needs eab_key_id and eab_hmac_key");
  }
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
  const std::string& directory = tenant.spec.acme_directory_url;
  if (directory.empty()) {
    return absl::FailedPreconditionError("the tenant has no ACME directory configured");
  }
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  const storage::Account* pending = nullptr;
  for (const auto& a : accounts) {
    if (a.ephemeral) continue;  // One order's, deactivated once it ends: not the tenant's.
    // A hijacked account is someone else's now: the tenant may have another.
    if (a.status == storage::AccountStatus::kValid && !a.hijacked_at) {
      return absl::AlreadyExistsError(
          absl::StrCat("the tenant already has a valid account: ", a.account_url));
    }
    if (a.status == storage::AccountStatus::kPending && a.directory_url == directory) pending = &a;
  }
  // A pending account is a creation that crashed before the CA answered: reuse its key, so the
  // CA (which keys accounts by key) returns the same account if it did create it. Either way the
  // account's key lease is held before the CA hears of it, so of concurrent calls only one
  // registers; the others are ABORTED without an ACME request.
  storage::AccountId id;
  if (pending == nullptr) {
    crypto::KeyAlgorithm algorithm = spec.key_algorithm.value_or(tenant.spec.policy.key_algorithm);
    ASSIGN_OR_RETURN(NewAccountKey generated,
                     options_.keys->Generate(tenant.spec.policy.key_storage, algorithm));
    auto created = options_.accounts->CreateAccount(scope, directory, generated.material,
                                                    generated.info, storage::KeyState::kPending);
    if (!created.ok()) options_.keys->Discard(generated);
    // One pending or valid account per tenant and directory: another call made one just now.
    if (absl::IsAlreadyExists(created.status())) return CreationInProgress();
    RETURN_IF_ERROR(created.status());
    id = created->id;
  } else {
    id = pending->id;
  }
  auto lease = options_.accounts->AcquireKeyLease(scope, id, options_.key_lease);
  if (absl::IsAborted(lease.status())) return CreationInProgress();
  RETURN_IF_ERROR(lease.status());
  absl::Cleanup release = [&] { GiveBack(scope, *lease); };
  // Read again under the lease: a concurrent call may have finished the creation meanwhile.
  ASSIGN_OR_RETURN(storage::Account account, options_.accounts->GetAccount(scope, id));
  if (account.status != storage::AccountStatus::kPending) {
    return absl::AlreadyExistsError(
        absl::StrCat("the tenant already has a valid account: ", account.account_url));
  }
  // A rateLimited answer to an earlier attempt (any replica's) holds newAccount for this
  // pending account, the same key and directory, until its Retry-After.
  const storage::CaHoldKey hold_key{id, {}, storage::CaRequest::kNewAccount};
  if (options_.limits != nullptr) {
    auto hold = options_.limits->GetCaHold(scope, hold_key, options_.clock->Now());
    if (hold.ok()) {
      return HeldUntil(absl::StrCat("the CA answered rateLimited to newAccount: ", hold->problem),
                       hold->until);
    }
    if (!absl::IsNotFound(hold.status())) return hold.status();
  }
  ASSIGN_OR_RETURN(SigningKey key, options_.keys->Version(scope, id, 1, "CreateAccount"));
  ASSIGN_OR_RETURN(acme::AcmeClient * client, options_.clients->For(directory));
  acme::NewAccountOptions request{spec.contact, true, false, spec.eab_key_id, mac};
  if (spec.eab_key_id.empty()) {
    // No key given: a CA that requires one gets the tenant's kept key (a hijacked account's
    // replacement comes here too).
    ASSIGN_OR_RETURN(acme::Directory d, client->GetDirectory());
    if (d.external_account_required) {
      ASSIGN_OR_RETURN(storage::EabKey eab, KeptEabKey(*options_.accounts, scope, directory,
                                                       "a new account", "CreateAccount"));
      BindWith(eab, request);
    }
  }
  ASSIGN_OR_RETURN(bool token, NewAccountToken(directory));
  auto acct = client->NewAccount(*key.signer, request);
  if (options_.metrics) options_.metrics->RecordAcme("newAccount", acct.status());
  if (token) SettleNewAccountToken(*options_.limits, options_.ca_limits, directory, acct);
  if (std::optional<absl::Time> until = RateLimitedUntil(acct.status());
      until.has_value() && options_.limits != nullptr && *until > options_.clock->Now()) {
    absl::Status stored = options_.limits->RecordCaHold(
        scope, hold_key, *until,
        ClipText(SummarizeFailure(acct.status()), storage::kMaxCaHoldProblemSize));
    if (!stored.ok()) {
      Log(LogLevel::kWarning, "could not store the CA's rate-limit hold",
          {{"account", absl::StrCat(id)}, {"status", stored.ToString()}});
    }
  }
  RETURN_IF_ERROR(acct.status());
  // The contact the CA holds, as its answer says; what was asked for when it says none.
  RETURN_IF_ERROR(options_.accounts->RecordAccountUrl(
      scope, id, acct->url, acct->contact.empty() ? spec.contact : acct->contact));
  if (key.info.state == storage::KeyState::kPending) {
    RETURN_IF_ERROR(options_.accounts->PromoteKey(scope, *lease, key.info.version));
  }
  if (spec.keep_eab_key) {
    // Kept once the CA has accepted it. The account exists either way: a failure here is
    // logged, and GetAccount shows that no key is kept.
    absl::Status kept =
        options_.accounts->KeepEabKey(scope, directory, spec.eab_key_id, mac).status();
    if (!kept.ok()) {
      Log(LogLevel::kWarning, "could not keep the EAB key",
          {{"tenant", absl::StrCat(scope.tenant)}, {"status", kept.ToString()}});
    }
  }
  return View(scope, id);
}

absl::StatusOr<std::optional<storage::EabKeyInfo>> AccountManager::SetEabKey(
    const Caller& caller, absl::string_view key_id, absl::string_view hmac_key) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("AccountService/SetEabKey");
  if (key_id.empty() && hmac_key.empty()) {
    RETURN_IF_ERROR(options_.accounts->ForgetEabKey(scope));
    return std::nullopt;
  }
  if (key_id.empty() || hmac_key.empty()) {
    return absl::InvalidArgumentError(
        "eab_key_id and eab_hmac_key go together (both empty: forget the kept key)");
  }
  std::string mac;
  if (!crypto::Base64UrlDecode(hmac_key, &mac)) {
    return absl::InvalidArgumentError("eab_hmac_key: is not base64url");
  }
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
  if (tenant.spec.acme_directory_url.empty()) {
    return absl::FailedPreconditionError("the tenant has no ACME directory configured");
  }
  return options_.accounts->KeepEabKey(scope, tenant.spec.acme_directory_url, key_id, mac);
}

absl::StatusOr<bool> AccountManager::NewAccountToken(absl::string_view directory_url) {
  if (options_.limits == nullptr) return false;
  return TakeNewAccountToken(*options_.limits, options_.ca_limits, directory_url,
                             options_.clock->Now());
}

absl::StatusOr<AccountView> AccountManager::GetAccount(const Caller& caller) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("AccountService/GetAccount");
  ASSIGN_OR_RETURN(std::vector<storage::Account> all, options_.accounts->ListAccounts(scope));
  // Ephemeral accounts (one per order, in ephemeral-account mode) are not the tenant's account.
  std::vector<storage::Account> accounts;
  for (auto& a : all) {
    if (!a.ephemeral) accounts.push_back(std::move(a));
  }
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

absl::StatusOr<std::optional<int>> AccountManager::PendingVersion(const storage::Scope& scope,
                                                                  storage::AccountId account) {
  ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys,
                   options_.accounts->ListKeys(scope, account));
  for (const auto& k : keys) {
    if (k.state == storage::KeyState::kPending) return k.version;
  }
  return std::nullopt;
}

absl::StatusOr<AccountManager::Settled> AccountManager::SettleKeyChange(
    const storage::Scope& scope, const Current& current, const storage::KeyLease& lease,
    const crypto::Signer& candidate, int version, const absl::Status& changed) {
  const storage::AccountId id = current.account.id;
  if (!changed.ok()) {
    // Even a refusal may answer a resent copy of a request the CA applied: ask with the key.
    auto found = current.client->NewAccount(candidate, {.only_return_existing = true});
    if (found.ok() && found->url != current.account.account_url) {
      return absl::InternalError(
          absl::StrCat("key version ", version, " belongs to another account at the CA"));
    }
    if (!found.ok()) {
      if (DefinitelyRefused(changed) && NoSuchAccount(found.status())) {
        RETURN_IF_ERROR(options_.accounts->DiscardPendingKey(scope, lease, version));
        return Settled::kDiscarded;
      }
      Audit(*options_.audit, scope, "RolloverPending",
            absl::StrCat("key version ", version, ": ", SummarizeFailure(changed)), id)
          .IgnoreError();
      return Settled::kPending;
    }
  }
  RETURN_IF_ERROR(options_.accounts->PromoteKey(scope, lease, version));
  return Settled::kPromoted;
}

absl::Status AccountManager::ResolvePendingKey(const storage::Scope& scope, const Current& current,
                                               const storage::KeyLease* held,
                                               bool mark_old_compromised,
                                               std::optional<Replaced>* replaced) {
  const storage::AccountId id = current.account.id;
  ASSIGN_OR_RETURN(std::optional<int> pending, PendingVersion(scope, id));
  if (!pending) return absl::OkStatus();
  std::optional<storage::KeyLease> own;
  absl::Cleanup release = [&] {
    if (own) GiveBack(scope, *own);
  };
  if (held == nullptr) {
    ASSIGN_OR_RETURN(own, TakeKeyLease(scope, id));
    held = &*own;
    // Read again under the lease: its previous holder may have settled it.
    ASSIGN_OR_RETURN(pending, PendingVersion(scope, id));
    if (!pending) return absl::OkStatus();
  }
  // Left by a keyChange whose outcome was unknown, or by a crash (docs/flows.md, Rollover).
  ASSIGN_OR_RETURN(SigningKey candidate,
                   options_.keys->Version(scope, id, *pending, "rollover recovery"));
  ASSIGN_OR_RETURN(acme::Directory directory, current.client->GetDirectory());
  if (directory.key_change.empty()) {
    // Left by a rollover by a new account: its steps are done again (each may be repeated).
    ASSIGN_OR_RETURN(Replaced done,
                     ReplaceByNewAccount(scope, current, *held, *candidate.signer, *pending,
                                         mark_old_compromised, "recovered"));
    LogRecovery(scope, *pending, "the rollover by a new account was completed");
    if (replaced != nullptr) *replaced = std::move(done);
    return absl::OkStatus();
  }
  auto found = current.client->NewAccount(*candidate.signer, {.only_return_existing = true});
  if (found.ok()) {
    if (found->url != current.account.account_url) {
      return absl::InternalError(
          absl::StrCat("key version ", *pending, " belongs to another account at the CA"));
    }
    RETURN_IF_ERROR(options_.accounts->PromoteKey(scope, *held, *pending));
    LogRecovery(scope, *pending, "the CA had applied keyChange; promoted");
    return Audit(*options_.audit, scope, "Rollover",
                 absl::StrCat("recovered: the CA knows key version ", *pending), id);
  }
  if (!NoSuchAccount(found.status())) {
    return absl::UnavailableError(absl::StrCat("could not ask the CA about pending key version ",
                                               *pending, " (", SummarizeFailure(found.status()),
                                               "); it stays pending"));
  }
  // The CA does not know it (yet): send that keyChange again, and settle it as a rollover does.
  // Only a definite refusal discards the key; an earlier copy still on its way can no longer
  // be applied after this one was (the old key is then no longer the account's).
  auto active = options_.keys->Active(scope, id, "rollover recovery");
  if (absl::IsNotFound(active.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("pending key version ", *pending,
                     " is unknown to the CA and the account has no active key to send "
                     "keyChange with"));
  }
  RETURN_IF_ERROR(active.status());
  absl::Status changed = current.client->KeyChange(
      {active->signer.get(), current.account.account_url}, *candidate.signer);
  if (options_.metrics) options_.metrics->RecordAcme("keyChange", changed);
  ASSIGN_OR_RETURN(Settled settled, SettleKeyChange(scope, current, *held, *candidate.signer,
                                                    *pending, changed));
  switch (settled) {
    case Settled::kPromoted:
      LogRecovery(scope, *pending, "keyChange sent again and applied; promoted");
      return Audit(*options_.audit, scope, "Rollover",
                   absl::StrCat("recovered: keyChange to key version ", *pending, " sent again"),
                   id);
    case Settled::kDiscarded:
      LogRecovery(scope, *pending, "the CA refused keyChange sent again; discarded");
      return absl::OkStatus();
    case Settled::kPending:
      break;
  }
  return StillPending(*pending, changed);
}

absl::StatusOr<AccountManager::Replaced> AccountManager::ReplaceByNewAccount(
    const storage::Scope& scope, const Current& current, const storage::KeyLease& lease,
    const crypto::Signer& candidate, int version, bool mark_old_compromised,
    absl::string_view why) {
  const storage::AccountId id = current.account.id;
  const std::string& old_url = current.account.account_url;
  ASSIGN_OR_RETURN(acme::Directory directory, current.client->GetDirectory());
  acme::NewAccountOptions request{.terms_of_service_agreed = true};
  if (directory.external_account_required) {
    auto eab = KeptEabKey(*options_.accounts, scope, current.account.directory_url,
                          "a rollover at a CA without keyChange (a new account)",
                          absl::StrCat("rollover by a new account, key version ", version));
    if (absl::IsFailedPrecondition(eab.status())) {
      RETURN_IF_ERROR(options_.accounts->DiscardPendingKey(scope, lease, version));
      return absl::FailedPreconditionError(
          absl::StrCat(eab.status().message(), " (the pending key was discarded)"));
    }
    RETURN_IF_ERROR(eab.status());
    BindWith(*eab, request);
  }
  // The old account's key: to read its contact and to deactivate it. A recovery may find it
  // unusable here (compromised, or a token object gone): then neither is possible.
  Replaced out;
  std::optional<SigningKey> loaded;
  const crypto::Signer* old_key = nullptr;
  if (current.key) {
    old_key = current.key->signer.get();
    out.previous_version = current.key->info.version;
  } else {
    auto active = options_.keys->Active(scope, id, "rollover by a new account");
    if (active.ok()) {
      loaded.emplace(*std::move(active));
      old_key = loaded->signer.get();
      out.previous_version = loaded->info.version;
    } else if (!absl::IsNotFound(active.status()) &&
               !absl::IsFailedPrecondition(active.status())) {
      return active.status();
    }
  }
  const acme::AccountRef old_ref{old_key, old_url};
  std::vector<std::string> contact;
  bool closed_at_ca = false;
  if (old_key != nullptr) {
    auto old_account = current.client->GetAccount(old_ref);
    if (options_.metrics) options_.metrics->RecordAcme("getAccount", old_account.status());
    if (old_account.ok()) {
      contact = old_account->contact;
      closed_at_ca = old_account->status == "deactivated" || old_account->status == "revoked";
    } else if (acme::IsAccountUnusable(old_account.status())) {
      closed_at_ca = true;  // E.g. deactivated by an earlier attempt whose recording was lost.
    } else {
      return ReplacementUnsettled(version, "could not read the old account at the CA",
                                  old_account.status());
    }
  }
  // RFC 8555 §7.3.1: for a key the CA knows already this answers with that account, so a
  // repeated attempt finds the account an earlier one registered.
  ASSIGN_OR_RETURN(bool token, NewAccountToken(current.account.directory_url));
  request.contact = contact;
  auto registered = current.client->NewAccount(candidate, request);
  if (options_.metrics) options_.metrics->RecordAcme("newAccount", registered.status());
  if (token) {
    SettleNewAccountToken(*options_.limits, options_.ca_limits, current.account.directory_url,
                          registered);
  }
  if (!registered.ok()) {
    // Discarded only while the old account is still usable at the CA: once an earlier attempt
    // closed it there, the pending key is the tenant's only way on, and is kept. A rate limit
    // passes.
    auto problem = acme::GetProblem(registered.status());
    if (DefinitelyRefused(registered.status()) && !closed_at_ca &&
        !(problem && problem->ShortType() == "rateLimited")) {
      RETURN_IF_ERROR(options_.accounts->DiscardPendingKey(scope, lease, version));
      return registered.status();
    }
    Audit(*options_.audit, scope, "RolloverPending",
          absl::StrCat("key version ", version, ": newAccount: ",
                       SummarizeFailure(registered.status())),
          id)
        .IgnoreError();
    return ReplacementUnsettled(version, "could not tell whether the CA registered the new account",
                                registered.status());
  }
  if (registered->url == old_url) {
    return absl::InternalError(absl::StrCat(
        "the CA answered newAccount for key version ", version, " with the old account's URL"));
  }
  // The old key may have leaked (that is often why it is rolled over): the old account must not
  // stay usable at the CA. RFC 8555 §7.3.6.
  AccountReplacement& report = out.report;
  report.previous_account_url = old_url;
  if (closed_at_ca) {
    report.previous_deactivated = true;
    report.previous_outcome = "already closed at the CA";
  } else if (old_key == nullptr) {
    report.previous_outcome =
        "not deactivated at the CA: its key can no longer be used here; deactivate it there";
  } else {
    auto deactivated = current.client->DeactivateAccount(old_ref);
    if (options_.metrics) options_.metrics->RecordAcme("deactivateAccount", deactivated.status());
    if (deactivated.ok() || acme::IsAccountUnusable(deactivated.status())) {
      report.previous_deactivated = true;
      report.previous_outcome = deactivated.ok() ? "deactivated at the CA"
                                                 : "already closed at the CA";
    } else if (DefinitelyRefused(deactivated.status())) {
      report.previous_outcome = absl::StrCat("the CA refused to deactivate it (",
                                             SummarizeFailure(deactivated.status()),
                                             "); it may still be valid there");
    } else {
      Audit(*options_.audit, scope, "RolloverPending",
            absl::StrCat("key version ", version, ": deactivating the old account: ",
                         SummarizeFailure(deactivated.status())),
            id)
          .IgnoreError();
      return ReplacementUnsettled(version, "could not deactivate the old account at the CA",
                                  deactivated.status());
    }
  }
  ASSIGN_OR_RETURN(storage::Account fresh,
                   options_.accounts->ReplaceAccount(scope, lease, version, registered->url,
                                                     mark_old_compromised));
  out.account = fresh.id;
  report.lost = LostWithANewAccount(old_url, fresh.account_url);
  Audit(*options_.audit, scope, "RolloverByNewAccount",
        absl::StrCat(why, ": the CA offers no keyChange; key version ", version, " of account ",
                     old_url, " registered as account ", fresh.account_url,
                     "; the previous account: ", report.previous_outcome),
        fresh.id)
      .IgnoreError();
  Log(report.previous_deactivated ? LogLevel::kInfo : LogLevel::kWarning,
      "account key rolled over by a new account",
      {{"tenant", absl::StrCat(scope.tenant)},
       {"account", fresh.account_url},
       {"previous", report.previous_outcome}});
  return out;
}

absl::Status AccountManager::StillPending(int version, const absl::Status& changed) {
  return absl::UnavailableError(
      absl::StrCat("could not tell whether the CA applied keyChange (", SummarizeFailure(changed),
                   "); key version ", version,
                   " stays pending and is resolved before the account key is next used"));
}

absl::Status AccountManager::ResolvePendingKeys(const storage::Actor& actor) {
  absl::Status first;
  storage::PageRequest page{"", 1000};
  for (int pages = 0; pages < 10000; ++pages) {
    ASSIGN_OR_RETURN(auto tenants, options_.tenants->ListTenants(page));
    for (const storage::Tenant& t : tenants.items) {
      if (t.disabled_at) continue;
      const storage::Scope scope{t.id, actor};
      auto current = FindValid(scope);
      if (!current.ok()) continue;  // No valid account: no key to resolve.
      absl::Status s = ResolvePendingKey(scope, *current, nullptr);
      if (!s.ok()) {
        Log(LogLevel::kWarning, "pending account key left unresolved",
            {{"tenant", t.spec.name}, {"error", SummarizeFailure(s)}});
        first.Update(s);
      }
    }
    if (tenants.next_page_token.empty()) return first;
    page.page_token = tenants.next_page_token;
  }
  return first;
}

absl::StatusOr<int> AccountManager::DestroyRetiredTokenKeys(const storage::Actor& actor) {
  absl::Status first;
  int destroyed = 0;
  storage::PageRequest page{"", 1000};
  for (int pages = 0; pages < 10000; ++pages) {
    ASSIGN_OR_RETURN(auto tenants, options_.tenants->ListTenants(page));
    for (const storage::Tenant& t : tenants.items) {
      auto n = options_.keys->DestroyRetiredKeys(storage::Scope{t.id, actor});
      if (n.ok()) {
        destroyed += *n;
        continue;
      }
      Log(LogLevel::kWarning, "retired token keys left in the token for now",
          {{"tenant", t.spec.name}, {"error", SummarizeFailure(n.status())}});
      first.Update(n.status());
    }
    if (tenants.next_page_token.empty()) break;
    page.page_token = tenants.next_page_token;
  }
  if (!first.ok()) return first;
  return destroyed;
}

absl::StatusOr<bool> AccountManager::ClosedAtCa(const storage::Scope& scope, const Current& current,
                                                const absl::Status& answer) {
  if (!acme::IsAccountUnusable(answer) || !current.key) return false;
  // RFC 8555 §7.3.6: ask the CA for the account (POST-as-GET). An earlier deactivation may have
  // been applied while its answer was lost, or the CA closed the account itself.
  auto probe = current.client->GetAccount(current.Ref());
  if (options_.metrics) options_.metrics->RecordAcme("getAccount", probe.status());
  storage::AccountStatus closed = storage::AccountStatus::kDeactivated;
  if (probe.ok()) {
    if (probe->status == "revoked") {
      closed = storage::AccountStatus::kRevoked;
    } else if (probe->status != "deactivated") {
      return false;
    }
  } else if (!acme::IsAccountUnusable(probe.status())) {
    return false;
  }
  RETURN_IF_ERROR(Audit(*options_.audit, scope, "AccountUnusableAtCa",
                        probe.ok() ? absl::StrCat("the CA reports it ", probe->status)
                                   : SummarizeFailure(probe.status()),
                        current.account.id));
  RETURN_IF_ERROR(options_.accounts->SetAccountStatus(scope, current.account.id, closed));
  Log(LogLevel::kWarning, "the CA no longer accepts the account; recorded",
      {{"tenant", absl::StrCat(scope.tenant)},
       {"status", std::string(storage::AccountStatusName(closed))}});
  return true;
}

absl::Status AccountManager::RevokeWithAccountKey(const storage::Scope& scope,
                                                  const Current& current, absl::string_view der,
                                                  crypto::RevocationReason reason) {
  if (!current.key) return absl::FailedPreconditionError("the account has no usable key");
  absl::Status revoked = current.client->RevokeCertificate(current.Ref(), der, reason);
  if (options_.metrics) options_.metrics->RecordAcme("revokeCert", revoked);
  auto problem = acme::GetProblem(revoked);
  if (revoked.ok() || (problem && problem->ShortType() == "alreadyRevoked")) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(bool closed, ClosedAtCa(scope, current, revoked));
  return closed ? AccountClosedAtCa() : revoked;
}

absl::StatusOr<RolloverResult> AccountManager::RolloverScoped(
    const storage::Scope& scope, std::optional<crypto::KeyAlgorithm> algorithm,
    absl::string_view reason, bool mark_old_compromised, absl::Time deadline, bool only_if_due) {
  ASSIGN_OR_RETURN(Current current, FindValid(scope));
  // One change of the account's keys at a time: the lease comes before any key is read or
  // unsealed, so the losers are ABORTED here, having written nothing.
  ASSIGN_OR_RETURN(const storage::KeyLease lease, TakeKeyLease(scope, current.account.id));
  absl::Cleanup release = [&] { GiveBack(scope, lease); };
  std::optional<Replaced> replaced;
  RETURN_IF_ERROR(ResolvePendingKey(scope, current, &lease, mark_old_compromised, &replaced));
  if (replaced) {
    // An earlier rollover by a new account, completed now: that is the rollover asked for.
    ASSIGN_OR_RETURN(AccountView view, View(scope, replaced->account));
    return RolloverResult{view, replaced->previous_version, true, std::move(replaced->report)};
  }
  // Read under the lease: an earlier holder may have rolled it over.
  ASSIGN_OR_RETURN(SigningKey active,
                   options_.keys->Active(scope, current.account.id, "rollover"));
  current.key.emplace(std::move(active));
  const int old_version = current.key->info.version;
  ASSIGN_OR_RETURN(storage::Tenant tenant, options_.tenants->GetTenant(scope));
  std::string why(reason);
  if (only_if_due) {
    RotationDecision decision =
        DecideRotation(tenant.spec.policy, current.key->info, options_.clock->Now());
    if (!decision.due) {
      ASSIGN_OR_RETURN(AccountView view, View(scope, current.account.id));
      return RolloverResult{view, old_version, /*rotated=*/false};
    }
    why = decision.reason;
  }
  ASSIGN_OR_RETURN(acme::Directory directory, current.client->GetDirectory());
  const bool by_new_account = directory.key_change.empty();
  if (by_new_account && directory.external_account_required) {
    // The new account will need the tenant's kept EAB key: without one, refused before
    // anything is staged.
    auto kept = options_.accounts->GetEabKeyInfo(scope);
    if (!kept.ok() && !absl::IsNotFound(kept.status())) return kept.status();
    if (!kept.ok() || kept->directory_url != current.account.directory_url) {
      return absl::FailedPreconditionError(
          "the CA offers no keyChange and requires External Account Binding for a new account, "
          "and the tenant keeps no EAB key for it: keep one with AccountService.SetEabKey; "
          "nothing was changed");
    }
  }
  // Made where the tenant's policy says now (a tenant moved to PKCS11 moves at its next key).
  ASSIGN_OR_RETURN(NewAccountKey new_key,
                   options_.keys->Generate(tenant.spec.policy.key_storage,
                                           algorithm.value_or(tenant.spec.policy.key_algorithm)));
  if (options_.clock->Now() + options_.key_change_time > deadline) {
    options_.keys->Discard(new_key);
    return absl::DeadlineExceededError(
        "too little of the call's deadline was left to send keyChange; nothing was changed");
  }
  // RFC 8555 §7.3.5 (docs/flows.md, Rollover): stored before the CA hears of it.
  auto pending = options_.accounts->AddPendingKey(scope, lease, new_key.material, new_key.info);
  if (!pending.ok()) {
    options_.keys->Discard(new_key);
    return pending.status();
  }
  // From here on the outcome is recorded whatever happens (promoted, discarded on a definite
  // refusal, or left pending for ResolvePendingKey); the caller's deadline no longer applies.
  if (by_new_account) {
    ASSIGN_OR_RETURN(Replaced done,
                     ReplaceByNewAccount(scope, current, lease, *new_key.signer, pending->version,
                                         mark_old_compromised, why));
    ASSIGN_OR_RETURN(AccountView view, View(scope, done.account));
    return RolloverResult{view, old_version, true, std::move(done.report)};
  }
  absl::Status changed = current.client->KeyChange(current.Ref(), *new_key.signer);
  if (options_.metrics) options_.metrics->RecordAcme("keyChange", changed);
  ASSIGN_OR_RETURN(Settled settled, SettleKeyChange(scope, current, lease, *new_key.signer,
                                                    pending->version, changed));
  if (settled == Settled::kDiscarded) {
    ASSIGN_OR_RETURN(bool closed, ClosedAtCa(scope, current, changed));
    return closed ? AccountClosedAtCa() : changed;
  }
  if (settled == Settled::kPending) return StillPending(pending->version, changed);
  if (mark_old_compromised) {
    // Every earlier version: a recovery on the way may already have retired the leaked key.
    ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys,
                     options_.accounts->ListKeys(scope, current.account.id));
    for (const auto& k : keys) {
      if (k.version < pending->version && k.state != storage::KeyState::kCompromised) {
        RETURN_IF_ERROR(options_.accounts->MarkKeyCompromised(scope, lease, k.version));
      }
    }
  }
  Audit(*options_.audit, scope, "Rollover", why, current.account.id).IgnoreError();
  ASSIGN_OR_RETURN(AccountView view, View(scope, current.account.id));
  return RolloverResult{view, old_version};
}

absl::StatusOr<RolloverResult> AccountManager::Rollover(
    const Caller& caller, std::optional<crypto::KeyAlgorithm> algorithm, absl::string_view reason,
    absl::Time deadline) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  return RolloverScoped(caller.ScopeFor("AccountService/RolloverAccountKey"), algorithm,
                        reason.empty() ? "requested" : reason, /*mark_old_compromised=*/false,
                        deadline);
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
  // Recorded before the request: should its answer be lost, the account is closed at the CA
  // while our record says valid, and hijack detection must know that we asked
  // (RequestedDeactivation).
  RETURN_IF_ERROR(Audit(*options_.audit, scope, kDeactivationRequested,
                        "deactivation sent to the CA", current.account.id));
  auto result = current.client->DeactivateAccount(current.Ref());
  if (options_.metrics) options_.metrics->RecordAcme("deactivateAccount", result.status());
  if (result.ok()) {
    RETURN_IF_ERROR(options_.accounts->SetAccountStatus(scope, current.account.id,
                                                        storage::AccountStatus::kDeactivated));
  } else {
    ASSIGN_OR_RETURN(bool closed, ClosedAtCa(scope, current, result.status()));
    if (!closed) return result.status();
  }
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
  // Sent up to deactivation_concurrency at once (one at a time took 23 ms each at Pebble, 23 s
  // for 1,000); each answer is recorded as it comes, the refusals judged afterwards in order.
  struct Answer {
    absl::Status ca;      // The CA's answer.
    absl::Status stored;  // Recording a deactivation in the ledger.
  };
  std::vector<Answer> answers(outstanding.size());
  std::atomic<size_t> next{0};
  auto deactivate = [&] {
    for (size_t i = next++; i < outstanding.size(); i = next++) {
      const std::string& url = outstanding[i].record.url;
      auto r = current.client->DeactivateAuthorization(current.Ref(), url);
      if (options_.metrics) options_.metrics->RecordAcme("deactivateAuthorization", r.status());
      answers[i].ca = r.status();
      if (r.ok()) {
        answers[i].stored = options_.authorizations->MarkAuthorizationDeactivated(
            scope, current.account.id, url);
      }
    }
  };
  std::vector<std::thread> workers;
  const size_t n_workers = std::min<size_t>(
      outstanding.size(), static_cast<size_t>(std::max(1, options_.deactivation_concurrency)));
  for (size_t w = 1; w < n_workers; ++w) workers.emplace_back(deactivate);
  deactivate();
  for (std::thread& w : workers) w.join();
  DeactivationCounts counts;
  for (const Answer& answer : answers) {
    RETURN_IF_ERROR(answer.stored);
    if (answer.ca.ok()) {
      ++counts.deactivated;
    } else if (Retryable(answer.ca)) {
      ++counts.failed;
    } else {
      ASSIGN_OR_RETURN(bool closed, ClosedAtCa(scope, current, answer.ca));
      if (closed) return AccountClosedAtCa();
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
  ASSIGN_OR_RETURN(const std::string canonical, NormalizeSerial(serial, "serial"));
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  const storage::Scope scope = caller.ScopeFor("CertificateService/RevokeCertificate");
  ASSIGN_OR_RETURN(storage::Certificate cert,
                   options_.certificates->GetCertificateBySerial(scope, canonical));
  if (cert.revoked_at) {
    return absl::FailedPreconditionError(absl::StrCat("certificate ", serial, " is already revoked"));
  }
  if (use_certificate_key && !cert.has_private_key) {
    return absl::FailedPreconditionError(
        "use_certificate_key: the service does not hold this certificate's key");
  }
  bool with_cert_key =
      use_certificate_key ||
      (reason == crypto::RevocationReason::kKeyCompromise && cert.has_private_key);
  if (!with_cert_key && cert.account) {
    // Issued under an ephemeral account (one order's, deactivated once it ended): no account
    // of the tenant holds the certificate or, since authorizations are not carried over, its
    // authorizations. RFC 8555 §7.6 leaves the certificate's own key.
    ASSIGN_OR_RETURN(storage::Account issuing, options_.accounts->GetAccount(scope, *cert.account));
    if (issuing.ephemeral) {
      if (!cert.has_private_key) {
        return absl::FailedPreconditionError(absl::StrCat(
            "certificate ", serial, " was issued under ephemeral account ", issuing.account_url,
            " (deactivated after its order) and its key is the host's: the service cannot "
            "revoke it; the host can, signing the revocation with the certificate's key "
            "(RFC 8555 §7.6)"));
      }
      with_cert_key = true;
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::string> ders, crypto::SplitPemChain(cert.chain_pem));
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
    absl::Status revoked = client->RevokeWithCertificateKey(key, ders.front(), reason);
    if (options_.metrics) options_.metrics->RecordAcme("revokeCert", revoked);
    auto problem = acme::GetProblem(revoked);
    if (!revoked.ok() && !(problem && problem->ShortType() == "alreadyRevoked")) return revoked;
  } else {
    ASSIGN_OR_RETURN(Current current, Load(scope));
    RETURN_IF_ERROR(RevokeWithAccountKey(scope, current, ders.front(), reason));
  }
  RETURN_IF_ERROR(options_.certificates->MarkCertificateRevoked(scope, cert.id, reason));
  return options_.certificates->GetCertificate(scope, cert.id);
}

absl::StatusOr<AccountManager::Compromise> AccountManager::ResumeCompromise(
    const Caller& caller, bool deactivate_account, std::optional<crypto::KeyAlgorithm> algorithm,
    std::optional<storage::CompromiseRunId> run_id) {
  Compromise c{.caller = caller,
               .scope = caller.ScopeFor("AccountService/RespondToCompromise"),
               .deactivate_account = deactivate_account,
               .algorithm = algorithm};
  std::optional<storage::CompromiseRun> run;
  if (run_id) {
    ASSIGN_OR_RETURN(run, options_.compromise_runs->GetCompromiseRun(c.scope, *run_id));
    if (run->finished_at || run->expires_at <= options_.clock->Now()) run.reset();
  }
  if (!run) {
    ASSIGN_OR_RETURN(run, options_.compromise_runs->StartCompromiseRun(
                              c.scope, deactivate_account,
                              options_.clock->Now() + options_.compromise_run_expiry));
  }
  c.run_id = run->id;
  c.start = run->started_at;
  c.done = run->steps;
  return c;
}

absl::StatusOr<CompromiseReport> AccountManager::RespondToCompromise(
    const Caller& caller, bool deactivate_account, std::optional<crypto::KeyAlgorithm> algorithm,
    std::optional<storage::CompromiseRunId> run_id) {
  RETURN_IF_ERROR(RequireRole(caller, storage::Role::kAdmin));
  ASSIGN_OR_RETURN(Compromise run,
                   ResumeCompromise(caller, deactivate_account, algorithm, run_id));
  Compromise c = std::move(run);
  CompromiseReport report;
  report.run_id = c.run_id;
  // Verification first (see the class comment): the path for a hijacked account needs no key.
  // A resumed run keeps the path its first call took.
  if (!c.done.contains(kHijackPlaybook[0].name)) {
    ASSIGN_OR_RETURN(c.hijacked, HijackedAccount(c.scope));
    if (!c.hijacked && c.done.empty()) {
      auto current = Load(c.scope);
      if (!current.ok()) return NamingTheRun(current.status(), c.run_id);
      auto verified = VerifyAtCa(c.scope, *current);
      if (!verified.ok()) {
        return NamingTheRun(
            absl::Status(verified.status().code(),
                         absl::StrCat("verifying the account at the CA: ",
                                      verified.status().message())),
            c.run_id);
      }
      if (verified->hijacked) {
        ASSIGN_OR_RETURN(c.hijacked, HijackedAccount(c.scope));
        c.hijack_what = verified->what;
      }
    }
  } else {
    ASSIGN_OR_RETURN(auto accounts, options_.accounts->ListAccounts(c.scope));
    for (const auto& a : accounts) {
      if (a.hijacked_at) c.hijacked = a;  // the newest hijacked one
    }
  }
  const absl::Span<const PlaybookStep> playbook =
      c.hijacked ? absl::MakeConstSpan(kHijackPlaybook) : absl::MakeConstSpan(kPlaybook);
  for (const PlaybookStep& step : playbook) {
    if (auto it = c.done.find(step.name); it != c.done.end()) {
      report.steps.push_back({step.name, true, "done by an earlier call of this run", it->second});
      continue;
    }
    auto outcome = (this->*step.run)(c);
    if (!outcome.ok()) return NamingTheRun(outcome.status(), c.run_id);
    if (!outcome->done) {
      report.steps.push_back({step.name, false, outcome->detail, std::nullopt});
      continue;
    }
    RETURN_IF_ERROR(options_.compromise_runs->RecordCompromiseStep(c.scope, c.run_id, step.name));
    report.steps.push_back({step.name, true, outcome->detail, options_.clock->Now()});
  }
  RETURN_IF_ERROR(options_.compromise_runs->FinishCompromiseRun(c.scope, c.run_id));
  auto view = GetAccount(caller);
  if (view.ok()) report.account = *view;
  return report;
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::RollOverCompromisedKey(
    const Compromise& c) {
  ASSIGN_OR_RETURN(RolloverResult r, RolloverScoped(c.scope, c.algorithm, "compromise", true,
                                                    absl::InfiniteFuture()));
  if (r.replacement) {
    // The CA offers no keyChange: a new account, the old one closed.
    return StepOutcome{
        true, absl::StrCat("new account ", r.account.account.account_url, " replaces ",
                           r.replacement->previous_account_url, " (",
                           r.replacement->previous_outcome, "); old keys marked compromised")};
  }
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
  ASSIGN_OR_RETURN(const storage::Tenant tenant, options_.tenants->GetTenant(c.scope));
  int reissued = 0, host_keys = 0;
  std::vector<std::string> refused;
  // Every order first (the engine runs them concurrently within the tenant's and the CA's
  // bounds), then the waits.
  std::vector<std::pair<std::string, storage::OrderId>> ordered;  // serial, order
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
    // The old key's algorithm while the tenant's certificate key policy allows it, else the
    // policy's default.
    if (chain.ok() && !chain->empty() &&
        AllowsCertificateKey(tenant.spec.policy, chain->front().public_key.algorithm())) {
      request.key_algorithm = chain->front().public_key.algorithm();
    }
    request.force_new = true;
    auto started = options_.issuer->Start(c.caller, request);
    if (!started.ok() && !Retryable(started.status())) {
      // Not reissuable (the names left the allow-list, ...): report it and go on, so
      // revocation is not held up by it.
      refused.push_back(absl::StrCat(cert.serial, " (", started.status().message(), ")"));
      continue;
    }
    RETURN_IF_ERROR(started.status());
    ordered.emplace_back(cert.serial, started->order.id);
  }
  const absl::Time until = absl::Now() + options_.reissue_wait;
  std::vector<std::string> running;
  for (const auto& [serial, order] : ordered) {
    ASSIGN_OR_RETURN(storage::Order row, options_.issuer->WaitForOrder(c.scope, order, until));
    if (row.state == storage::OrderState::kValid) {
      ++reissued;
    } else if (row.state == storage::OrderState::kInvalid) {
      // The CA refused the names: reported, as above.
      refused.push_back(absl::StrCat(serial, " (order ", order, " failed: ", row.error, ")"));
    } else {
      running.push_back(absl::StrCat(serial, " (order ", order, ")"));
    }
  }
  if (!running.empty()) {
    return absl::DeadlineExceededError(
        absl::StrCat("reissue of ", running.size(), " certificates (", SomeOf(running, ", "),
                     ") is still running; call again to resume"));
  }
  std::string detail =
      absl::StrCat(reissued, " reissued; ", host_keys, " held by hosts, not reissued");
  if (!refused.empty()) {
    absl::StrAppend(&detail, "; ", refused.size(), " not reissuable: ", SomeOf(refused, "; "));
  }
  return StepOutcome{true, detail};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::RevokeReplacedCertificates(
    const Compromise& c) {
  ASSIGN_OR_RETURN(Current current, FindValid(c.scope));
  ASSIGN_OR_RETURN(auto certs, AllCertificates(*options_.certificates, c.scope));
  std::vector<storage::CertificateId> replaced;
  std::vector<std::unique_ptr<JobNotices::Watch>> watches;
  for (const auto& cert : certs) {
    if (cert.created_at >= c.start || cert.revoked_at || !cert.has_private_key ||
        cert.not_after <= options_.clock->Now()) {
      continue;
    }
    const std::string subject = absl::StrCat(cert.id);
    // Opened before the job exists, so its end cannot pass unseen.
    watches.push_back(options_.notices->Open(c.scope.tenant, kRevokeJob, subject));
    RETURN_IF_ERROR(options_.engine
                        ->Schedule(c.scope, storage::NewJob{kRevokeJob, subject,
                                                            current.account.directory_url,
                                                            options_.clock->Now()})
                        .status());
    replaced.push_back(cert.id);
  }
  const absl::Time until = absl::Now() + options_.reissue_wait;
  for (auto& watch : watches) watch->Wait(until);
  int revoked = 0;
  std::vector<std::string> left;
  for (storage::CertificateId id : replaced) {
    ASSIGN_OR_RETURN(storage::Certificate cert, options_.certificates->GetCertificate(c.scope, id));
    if (cert.revoked_at) {
      ++revoked;
    } else {
      left.push_back(cert.serial);
    }
  }
  if (!left.empty()) {
    return absl::UnavailableError(absl::StrCat(
        left.size(), " of ", replaced.size(), " certificates are not revoked yet (",
        SomeOf(left, ", "), "); call again to resume"));
  }
  return StepOutcome{true, absl::StrCat(revoked, " revoked (reason superseded)")};
}

JobOutcome AccountManager::RevokeReplaced(const JobRun& run) {
  storage::CertificateId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("a revocation job's subject is not a certificate id"));
  }
  const storage::Scope scope{run.job().tenant, {"compromise playbook", kRevokeJob}};
  absl::StatusOr<storage::Certificate> cert = options_.certificates->GetCertificate(scope, id);
  if (absl::IsNotFound(cert.status())) return JobOutcome::FailedPermanently(cert.status());
  if (!cert.ok()) return JobOutcome::Failed(cert.status());
  if (cert->revoked_at) return JobOutcome::Done();
  absl::StatusOr<std::vector<std::string>> ders = crypto::SplitPemChain(cert->chain_pem);
  if (!ders.ok()) return JobOutcome::FailedPermanently(ders.status());
  absl::StatusOr<Current> current = Load(scope);
  if (!current.ok()) return JobOutcome::Failed(current.status());
  // Their keys were not compromised (the account key was): superseded, not keyCompromise.
  constexpr crypto::RevocationReason kReason = crypto::RevocationReason::kSuperseded;
  absl::Status s = RevokeWithAccountKey(scope, *current, ders->front(), kReason);
  if (s.ok()) s = options_.certificates->MarkCertificateRevoked(scope, id, kReason);
  if (!s.ok()) return JobOutcome::Failed(s);
  return JobOutcome::Done();
}

JobOutcome AccountManager::RotateByPolicy(const JobRun& run) {
  storage::AccountId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("a rotation job's subject is not an account id"));
  }
  const storage::Scope scope{run.job().tenant, {"key rotation policy", kRotateJob}};
  std::string tenant_name = absl::StrCat(run.job().tenant);
  if (auto tenant = options_.tenants->GetTenant(scope); tenant.ok()) {
    tenant_name = tenant->spec.name;
  }
  auto count = [&](absl::string_view outcome) {
    if (options_.metrics != nullptr) options_.metrics->RecordKeyRotation(tenant_name, outcome);
  };
  // The account the scan saw must still be the tenant's valid one; a replaced or closed account
  // has nothing left to rotate.
  absl::StatusOr<storage::Account> account = options_.accounts->GetAccount(scope, id);
  if (absl::IsNotFound(account.status())) return JobOutcome::Done();
  if (!account.ok()) {
    count("failed");
    return JobOutcome::Failed(account.status());
  }
  if (account->status != storage::AccountStatus::kValid || account->hijacked_at) {
    return JobOutcome::Done();
  }
  // A key left pending by an earlier attempt (or a replica that died in it) is settled first;
  // when that promotes it, this rotation is what finished.
  absl::StatusOr<std::optional<int>> pending = PendingVersion(scope, id);
  if (!pending.ok()) {
    count("failed");
    return JobOutcome::Failed(pending.status());
  }
  absl::StatusOr<RolloverResult> r =
      RolloverScoped(scope, std::nullopt, "", /*mark_old_compromised=*/false,
                     absl::InfiniteFuture(), /*only_if_due=*/true);
  if (!r.ok()) {
    count("failed");
    Log(LogLevel::kWarning, "rotation by policy failed",
        {{"tenant", tenant_name}, {"account", run.job().subject}, {"status", r.status().ToString()}});
    return JobOutcome::Failed(r.status());
  }
  if (r->rotated || (*pending && r->account.active_key.version == **pending)) {
    count("rotated");
    Log(LogLevel::kInfo, "account key rotated by policy",
        {{"tenant", tenant_name},
         {"account", run.job().subject},
         {"version", absl::StrCat(r->account.active_key.version)}});
  }
  return JobOutcome::Done();
}

JobOutcome AccountManager::DeactivateByPolicy(const JobRun& run) {
  storage::AuthorizationId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("a deactivation job's subject is not an authorization id"));
  }
  const storage::Scope scope{run.job().tenant,
                             {"authorization policy", kDeactivateAuthorizationJob}};
  auto count = [&](absl::string_view result) {
    if (options_.metrics != nullptr) options_.metrics->RecordAuthorizationDeactivation(result);
  };
  storage::AuthorizationFilter filter;
  filter.id = id;
  absl::StatusOr<std::vector<storage::Authorization>> listed =
      options_.authorizations->ListOutstandingAuthorizations(scope, filter);
  if (!listed.ok()) return JobOutcome::Failed(listed.status());
  if (listed->empty()) return JobOutcome::Done();  // deactivated, expired or settled meanwhile
  const storage::Authorization a = listed->front();
  // Nothing can be signed for a hijacked account (its key no longer speaks for it, or the CA
  // closed it): retrying cannot help, so the job ends here, saying why.
  absl::StatusOr<storage::Account> owner = options_.accounts->GetAccount(scope, a.record.account);
  if (!owner.ok()) return JobOutcome::Failed(owner.status());
  if (owner->hijacked_at) {
    count("failed");
    return JobOutcome::FailedPermanently(absl::FailedPreconditionError(absl::StrCat(
        "authorization ", a.id, " cannot be deactivated: ",
        HijackedAccountError(*owner).message())));
  }
  absl::StatusOr<Current> current = Load(scope);
  if (absl::IsNotFound(current.status())) return JobOutcome::Done();
  if (!current.ok()) return JobOutcome::Failed(current.status());
  if (!current->key || current->account.id != a.record.account) return JobOutcome::Done();
  auto r = current->client->DeactivateAuthorization(current->Ref(), a.record.url);
  if (options_.metrics) options_.metrics->RecordAcme("deactivateAuthorization", r.status());
  if (r.ok()) {
    absl::Status marked = options_.authorizations->MarkAuthorizationDeactivated(
        scope, a.record.account, a.record.url);
    if (!marked.ok()) return JobOutcome::Failed(marked);
    count("deactivated");
    return JobOutcome::Done();
  }
  if (Retryable(r.status())) {
    count("failed");
    return JobOutcome::Failed(r.status());
  }
  absl::StatusOr<bool> closed = ClosedAtCa(scope, *current, r.status());
  if (closed.ok() && *closed) return JobOutcome::Done();
  // Refused (RFC 8555 §7.5.2 allows deactivating only pending or valid ones): the CA holds it
  // as something else now; ask, and record what it says.
  auto seen = current->client->GetAuthorization(current->Ref(), a.record.url);
  if (options_.metrics) options_.metrics->RecordAcme("getAuthorization", seen.status());
  absl::StatusOr<storage::AuthorizationStatus> status =
      seen.ok() ? storage::ParseAuthorizationStatus(seen->status)
                : absl::StatusOr<storage::AuthorizationStatus>(seen.status());
  if (!status.ok() || *status == storage::AuthorizationStatus::kPending ||
      *status == storage::AuthorizationStatus::kValid) {
    count("failed");
    return JobOutcome::Failed(status.ok() ? r.status() : status.status());
  }
  absl::Status recorded;
  if (*status == storage::AuthorizationStatus::kDeactivated) {
    recorded = options_.authorizations->MarkAuthorizationDeactivated(scope, a.record.account,
                                                                     a.record.url);
  } else {
    storage::AuthorizationRecord record = a.record;
    record.status = *status;
    if (seen->expires.has_value()) record.expires_at = seen->expires;
    recorded = options_.authorizations->RecordAuthorization(scope, record).status();
  }
  if (!recorded.ok()) return JobOutcome::Failed(recorded);
  count("settled");
  return JobOutcome::Done();
}

std::string AccountManager::TenantName(const storage::Scope& scope) {
  auto tenant = options_.tenants->GetTenant(scope);
  return tenant.ok() ? tenant->spec.name : absl::StrCat(scope.tenant);
}

absl::StatusOr<std::optional<storage::Account>> AccountManager::HijackedAccount(
    const storage::Scope& scope) {
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  // Newest first: a valid account made after the hijacked one replaces it.
  for (auto it = accounts.rbegin(); it != accounts.rend(); ++it) {
    if (it->hijacked_at) return *it;
    if (it->status == storage::AccountStatus::kValid) return std::nullopt;
  }
  return std::nullopt;
}

absl::Status AccountManager::MarkHijacked(const storage::Scope& scope,
                                          const storage::Account& account,
                                          absl::string_view what) {
  ASSIGN_OR_RETURN(storage::Account marked,
                   options_.accounts->MarkAccountHijacked(scope, account.id, what));
  const std::string tenant = TenantName(scope);
  // Counted when this call marked it.
  if (options_.metrics != nullptr && !account.hijacked_at && marked.hijacked_at) {
    options_.metrics->RecordAccountHijack(tenant);
  }
  if (options_.metrics != nullptr) options_.metrics->SetAccountHijacked(tenant, true);
  Log(LogLevel::kError,
      "ACME account hijacked: the CA no longer ties it to the service's key; issuance under it "
      "is stopped, RespondToCompromise opens a new account",
      {{"tenant", tenant},
       {"account", absl::StrCat(account.id)},
       {"account_url", account.account_url},
       {"ca_said", std::string(what)}});
  return absl::OkStatus();
}

absl::StatusOr<bool> AccountManager::RequestedDeactivation(const storage::Scope& scope,
                                                           storage::AccountId account) {
  // Read only when the CA reports an account closed that our record holds valid: rare, so a
  // walk through the tenant's audit trail is affordable.
  storage::PageRequest page{"", 1000};
  for (int pages = 0; pages < 10000; ++pages) {
    ASSIGN_OR_RETURN(auto p, options_.audit->ListAudit(scope, page));
    for (const storage::AuditRecord& r : p.items) {
      if (r.event.action == kDeactivationRequested && r.event.account == account) return true;
    }
    if (p.next_page_token.empty()) return false;
    page.page_token = p.next_page_token;
  }
  return absl::ResourceExhaustedError("too many audit rows to read");
}

absl::StatusOr<AccountVerification> AccountManager::VerifyAtCa(const storage::Scope& scope,
                                                               const Current& current) {
  if (!current.key) return absl::FailedPreconditionError("the account has no usable active key");
  const storage::Account& account = current.account;
  AccountVerification v{.account = account.id};
  std::optional<storage::AccountStatus> closed;
  // RFC 8555 §7.3.1: the CA must answer our active key with our account.
  acme::NewAccountOptions find;
  find.only_return_existing = true;
  auto found = current.client->NewAccount(*current.key->signer, find);
  if (options_.metrics) options_.metrics->RecordAcme("newAccount", found.status());
  const int version = current.key->info.version;
  if (NoSuchAccount(found.status())) {
    v.hijacked = true;
    v.what = absl::StrCat("the CA knows no account for the active key (version ", version,
                          "): ", SummarizeFailure(found.status()));
  } else if (found.ok() && found->url != account.account_url) {
    v.hijacked = true;
    v.what = absl::StrCat("the CA answers the active key (version ", version,
                          ") with another account: ", found->url);
  } else if (!found.ok() && !acme::IsAccountUnusable(found.status())) {
    return found.status();  // no verdict
  } else {
    // §7.3: the account object, POST-as-GET with its URL.
    auto probe = current.client->GetAccount(current.Ref());
    if (options_.metrics) options_.metrics->RecordAcme("getAccount", probe.status());
    if (probe.ok() && probe->status == "valid" && found.ok()) {
      v.what = absl::StrCat("the CA knows the active key (version ", version,
                            ") for the account, and holds it valid");
      return v;
    }
    if (probe.ok() && (probe->status == "deactivated" || probe->status == "revoked")) {
      closed = probe->status == "revoked" ? storage::AccountStatus::kRevoked
                                          : storage::AccountStatus::kDeactivated;
      v.what = absl::StrCat("the CA reports the account ", probe->status,
                            ", which the service did not do");
    } else if (!probe.ok() && acme::IsAccountUnusable(probe.status()) && !found.ok()) {
      // Both requests refused as from an unusable account (Pebble answers so for a
      // deactivated one): closed at the CA, as ClosedAtCa records it.
      closed = storage::AccountStatus::kDeactivated;
      v.what = absl::StrCat("the CA refuses the account: ", SummarizeFailure(found.status()),
                            "; ", SummarizeFailure(probe.status()));
    } else if (!probe.ok()) {
      return probe.status();  // no verdict
    } else {
      return absl::UnknownError(absl::StrCat("the CA reports the account as \"",
                                             probe->status, "\""));
    }
    // Deactivated (not revoked) after we asked for it ourselves: our request's answer was lost.
    // That is a deactivation to record, not a hijack.
    if (closed == storage::AccountStatus::kDeactivated) {
      ASSIGN_OR_RETURN(bool asked, RequestedDeactivation(scope, account.id));
      if (asked) {
        v.what = absl::StrCat(
            "the CA reports the account closed after the service asked to deactivate it (the "
            "answer was lost): recorded deactivated; ",
            v.what.substr(0, v.what.find(',')));
        RETURN_IF_ERROR(Audit(*options_.audit, scope, "AccountUnusableAtCa", v.what, account.id));
        if (account.status == storage::AccountStatus::kValid) {
          RETURN_IF_ERROR(options_.accounts->SetAccountStatus(scope, account.id, *closed));
        }
        v.deactivated = true;
        return v;
      }
    }
    v.hijacked = true;
  }
  RETURN_IF_ERROR(MarkHijacked(scope, account, v.what));
  if (closed && account.status == storage::AccountStatus::kValid) {
    RETURN_IF_ERROR(options_.accounts->SetAccountStatus(scope, account.id, *closed));
  }
  return v;
}

JobOutcome AccountManager::VerifyByPolicy(const JobRun& run) {
  storage::AccountId id = 0;
  if (!absl::SimpleAtoi(run.job().subject, &id) || id <= 0) {
    return JobOutcome::FailedPermanently(
        absl::InvalidArgumentError("a verification job's subject is not an account id"));
  }
  const storage::Scope scope{run.job().tenant, {"hijack detection", kVerifyAccountJob}};
  auto count = [&](absl::string_view result) {
    if (options_.metrics != nullptr) options_.metrics->RecordAccountVerification(result);
  };
  absl::StatusOr<storage::Account> account = options_.accounts->GetAccount(scope, id);
  if (absl::IsNotFound(account.status())) return JobOutcome::Done();
  if (!account.ok()) return JobOutcome::Failed(account.status());
  if (account->status != storage::AccountStatus::kValid || account->account_url.empty() ||
      account->hijacked_at) {
    return JobOutcome::Done();
  }
  absl::StatusOr<Current> current = Load(scope);
  if (!current.ok() || current->account.id != id) {
    if (current.ok() || absl::IsFailedPrecondition(current.status())) return JobOutcome::Done();
    count("failed");
    return JobOutcome::Failed(current.status());
  }
  absl::StatusOr<AccountVerification> v = VerifyAtCa(scope, *current);
  if (!v.ok()) {
    count("failed");
    Log(LogLevel::kWarning, "account verification at the CA gave no verdict; retried",
        {{"tenant", absl::StrCat(scope.tenant)},
         {"account", run.job().subject},
         {"error", SummarizeFailure(v.status())}});
    return JobOutcome::Failed(v.status());
  }
  count(v->hijacked ? "hijacked" : v->deactivated ? "deactivated" : "ok");
  if (!v->hijacked && options_.metrics != nullptr) {
    options_.metrics->SetAccountHijacked(TenantName(scope), false);
  }
  return JobOutcome::Done();
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::RecordHijack(const Compromise& c) {
  const storage::Account& a = *c.hijacked;
  return StepOutcome{
      true, absl::StrCat("account ", a.account_url, " hijacked (marked ",
                         absl::FormatTime(absl::RFC3339_sec, *a.hijacked_at, absl::UTCTimeZone()),
                         c.hijack_what.empty() ? "" : "; ", c.hijack_what,
                         "); its key is no longer used")};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::OpenNewAccount(const Compromise& c) {
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts,
                   options_.accounts->ListAccounts(c.scope));
  for (const auto& a : accounts) {
    if (a.id > c.hijacked->id && a.status == storage::AccountStatus::kValid && !a.hijacked_at) {
      return StepOutcome{true, absl::StrCat("new account ", a.account_url, " (opened before)")};
    }
  }
  CreateAccountSpec spec;
  // Agreed when the hijacked account was made; the CA's contact for it is the attacker's to
  // change now, so none is copied. A CA that requires External Account Binding gets the
  // tenant's kept EAB key (CreateAccount); without one the error says how to keep one.
  spec.terms_of_service_agreed = true;
  spec.key_algorithm = c.algorithm;
  ASSIGN_OR_RETURN(AccountView view, CreateAccount(c.caller, spec));
  if (options_.metrics != nullptr) options_.metrics->SetAccountHijacked(TenantName(c.scope), false);
  return StepOutcome{
      true, absl::StrCat("new account ", view.account.account_url, " with a new key (",
                         crypto::KeyAlgorithmName(view.active_key.algorithm), "), replacing ",
                         c.hijacked->account_url)};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::RevokeWithCertificateKeys(
    const Compromise& c) {
  ASSIGN_OR_RETURN(auto certs, AllCertificates(*options_.certificates, c.scope));
  ASSIGN_OR_RETURN(acme::AcmeClient * client, options_.clients->For(c.hijacked->directory_url));
  // Their keys were not compromised (the account was): superseded, not keyCompromise.
  constexpr crypto::RevocationReason kReason = crypto::RevocationReason::kSuperseded;
  int revoked = 0;
  std::vector<std::string> left;
  for (const auto& cert : certs) {
    if (cert.created_at >= c.start || cert.revoked_at || !cert.has_private_key ||
        cert.not_after <= options_.clock->Now()) {
      continue;
    }
    auto ders = crypto::SplitPemChain(cert.chain_pem);
    absl::Status s = ders.status();
    if (s.ok()) {
      auto key = options_.certificates->GetCertificateKey(c.scope, cert.id, "RespondToCompromise");
      s = key.status();
      if (s.ok()) {
        // RFC 8555 §7.6: a revocation signed by the certificate's own key (jwk) needs no account.
        s = client->RevokeWithCertificateKey(*key, ders->front(), kReason);
        if (options_.metrics) options_.metrics->RecordAcme("revokeCert", s);
        auto problem = acme::GetProblem(s);
        if (problem && problem->ShortType() == "alreadyRevoked") s = absl::OkStatus();
      }
    }
    if (s.ok()) s = options_.certificates->MarkCertificateRevoked(c.scope, cert.id, kReason);
    if (s.ok()) {
      ++revoked;
    } else {
      left.push_back(absl::StrCat(cert.serial, " (", SummarizeFailure(s), ")"));
    }
  }
  if (!left.empty()) {
    return absl::UnavailableError(absl::StrCat(left.size(), " certificates are not revoked yet: ",
                                               SomeOf(left, "; "), "; call again to resume"));
  }
  return StepOutcome{true, absl::StrCat(revoked,
                                        " revoked with their certificate keys (reason superseded)")};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::ReportNotDone(const Compromise& c) {
  ASSIGN_OR_RETURN(auto certs, AllCertificates(*options_.certificates, c.scope));
  std::vector<std::string> host_keys;
  for (const auto& cert : certs) {
    if (cert.created_at >= c.start || cert.revoked_at || cert.has_private_key ||
        cert.not_after <= options_.clock->Now()) {
      continue;
    }
    host_keys.push_back(cert.serial);
  }
  storage::AuthorizationFilter filter;
  filter.account = c.hijacked->id;
  ASSIGN_OR_RETURN(std::vector<storage::Authorization> outstanding,
                   options_.authorizations->ListOutstandingAuthorizations(c.scope, filter));
  std::vector<std::string> lines;
  if (!host_keys.empty()) {
    lines.push_back(absl::StrCat(
        host_keys.size(), " certificates whose keys their hosts hold were neither reissued nor "
        "revoked (the hosts must request new ones; revoking needs their keys or the account's): ",
        SomeOf(host_keys, ", ")));
  }
  if (!outstanding.empty()) {
    lines.push_back(absl::StrCat(outstanding.size(),
                                 " authorizations of the hijacked account stay answerable at the "
                                 "CA until they expire (deactivating them needs its key)"));
  }
  lines.push_back(absl::StrCat("the hijacked account ", c.hijacked->account_url,
                               " cannot be deactivated (only its current key, which the service "
                               "does not hold, can); ask the CA to close it"));
  return StepOutcome{false, absl::StrJoin(lines, "; ")};
}

absl::StatusOr<AccountManager::StepOutcome> AccountManager::DeactivateAccountIfAsked(
    const Compromise& c) {
  if (!c.deactivate_account) return StepOutcome{false, "not requested"};
  ASSIGN_OR_RETURN(Current current, Load(c.scope));
  RETURN_IF_ERROR(Deactivate(c.caller, current.account.account_url).status());
  return StepOutcome{true, "account deactivated"};
}

}  // namespace acmevault::service
