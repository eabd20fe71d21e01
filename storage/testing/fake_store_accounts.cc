// FakeStore: ACME accounts and their sealed keys (AccountStore).

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::Audit;
using fake::FindAccount;
using fake::FindKey;
using fake::LeasedAccount;
using fake::RequireTenant;
using fake::State;

// ---------------------------------------------------------------------------------------------
// AccountStore

namespace {

absl::StatusOr<AccountKey> InsertKey(State& s, const Envelope& envelope, const Scope& scope,
                                     AccountId account, int version, KeyState state,
                                     const AccountKeyMaterial& key,
                                     const PublicKeyInfo& public_key,
                                     absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  State::KeyRow row;
  if (key.vault_key != nullptr) {
    ASSIGN_OR_RETURN(row.sealed, envelope.SealPrivateKey(
                                     *key.vault_key, AccountKeyContext(scope.tenant, account, version)));
  }
  row.tenant = scope.tenant;
  row.info.account = account;
  row.info.version = version;
  row.info.state = state;
  row.info.algorithm = key.algorithm;
  row.info.public_key = public_key;
  row.info.kek_id = row.sealed.kek_id;
  row.info.token_object = key.token_object;
  row.info.created_at = now;
  if (state == KeyState::kActive) row.info.activated_at = now;
  AccountKey info = row.info;
  s.keys[{account, version}] = std::move(row);
  return info;
}

absl::Status RequirePending(const State::KeyRow& row) {
  return rules::CheckKeyPending(row.info.account, row.info.version, row.info.state);
}

}  // namespace

absl::StatusOr<Account> FakeStore::CreateAccount(const Scope& scope,
                                                 absl::string_view directory_url,
                                                 const AccountKeyMaterial& key,
                                                 const PublicKeyInfo& public_key,
                                                 KeyState initial_state) {
  RETURN_IF_ERROR(rules::ValidateNewAccount(directory_url, key, public_key, initial_state));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  for (const auto& [id, other] : s.accounts) {
    if (other.tenant == scope.tenant && other.directory_url == directory_url && !other.ephemeral &&
        (other.status == AccountStatus::kPending || other.status == AccountStatus::kValid) &&
        !other.hijacked_at.has_value()) {
      return rules::LiveAccountExists(directory_url);
    }
  }
  Account a;
  a.id = s.next_id++;
  a.tenant = scope.tenant;
  a.directory_url = std::string(directory_url);
  a.created_at = now;
  RETURN_IF_ERROR(
      InsertKey(s, envelope_, scope, a.id, 1, initial_state, key, public_key, now).status());
  s.accounts[a.id] = a;
  Audit(s, scope, now,
        rules::AccountEvent("CreateAccount", a.id, 1,
                            absl::StrCat("key 1 ", KeyStateName(initial_state), " ",
                                         crypto::KeyAlgorithmName(key.algorithm),
                                         key.token_object.empty() ? "" : " in the token")));
  return a;
}

absl::StatusOr<Account> FakeStore::CreateEphemeralAccount(const Scope& scope,
                                                          absl::string_view directory_url,
                                                          const AccountKeyMaterial& key,
                                                          const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(
      rules::ValidateNewAccount(directory_url, key, public_key, KeyState::kActive));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  Account a;
  a.id = s.next_id++;
  a.tenant = scope.tenant;
  a.directory_url = std::string(directory_url);
  a.created_at = now;
  a.ephemeral = true;
  RETURN_IF_ERROR(
      InsertKey(s, envelope_, scope, a.id, 1, KeyState::kActive, key, public_key, now).status());
  s.accounts[a.id] = a;
  Audit(s, scope, now,
        rules::AccountEvent("CreateAccount", a.id, 1,
                            absl::StrCat("ephemeral; key 1 active ",
                                         crypto::KeyAlgorithmName(key.algorithm),
                                         key.token_object.empty() ? "" : " in the token")));
  return a;
}

absl::StatusOr<Account> FakeStore::GetAccount(const Scope& scope, AccountId account) {
  fake::StoreLock lock(*state_);
  ASSIGN_OR_RETURN(Account * a, FindAccount(*state_, scope, account));
  return *a;
}

absl::StatusOr<std::vector<Account>> FakeStore::ListAccounts(const Scope& scope) {
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  std::vector<Account> out;
  for (const auto& [id, a] : state_->accounts) {
    if (a.tenant == scope.tenant) out.push_back(a);
  }
  return out;
}

absl::StatusOr<std::vector<Account>> FakeStore::ListEphemeralAccountsToClose(
    const Scope& scope, absl::Time created_before, absl::string_view close_job_kind) {
  RETURN_IF_ERROR(ValidateJobKind(close_job_kind));
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  created_before = TruncateToMicros(created_before);
  std::vector<Account> out;
  for (const auto& [id, a] : s.accounts) {
    if (a.tenant != scope.tenant || !a.ephemeral || a.created_at >= created_before ||
        (a.status != AccountStatus::kPending && a.status != AccountStatus::kValid)) {
      continue;
    }
    const bool in_flight = std::any_of(s.orders.begin(), s.orders.end(), [&](const auto& o) {
      return o.second.tenant == scope.tenant && o.second.account == id &&
             !IsTerminal(o.second.state);
    });
    const std::string subject = absl::StrCat(id);
    const bool closing = std::any_of(s.jobs.begin(), s.jobs.end(), [&](const auto& j) {
      return j.second.tenant == scope.tenant && j.second.kind == close_job_kind &&
             j.second.subject == subject && !j.second.failed_at.has_value();
    });
    if (!in_flight && !closing) out.push_back(a);
  }
  return out;
}

absl::Status FakeStore::RecordAccountUrl(const Scope& scope, AccountId account,
                                         absl::string_view url,
                                         const std::vector<std::string>& contact) {
  RETURN_IF_ERROR(rules::ValidateUrl("account URL", url));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  ASSIGN_OR_RETURN(bool write, rules::AccountUrlNeedsWrite(*a, url));
  if (!write) return absl::OkStatus();
  a->account_url = std::string(url);
  a->status = AccountStatus::kValid;
  a->contact = rules::ClipAccountContact(contact);
  AuditEvent e = rules::AccountEvent("RecordAccountUrl", account, std::nullopt, "");
  e.acme_url = a->account_url;
  Audit(s, scope, now, e);
  return absl::OkStatus();
}

absl::Status FakeStore::SetAccountStatus(const Scope& scope, AccountId account,
                                         AccountStatus status) {
  RETURN_IF_ERROR(rules::ValidateAccountStatusChange(status));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  RETURN_IF_ERROR(rules::CheckAccountOpen(*a, /*already=*/true));
  a->status = status;
  a->deactivated_at = now;
  Audit(s, scope, now, rules::AccountStatusEvent(*a, status));
  return absl::OkStatus();
}

absl::StatusOr<Account> FakeStore::MarkAccountHijacked(const Scope& scope, AccountId account,
                                                       absl::string_view what) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  RETURN_IF_ERROR(rules::CheckHijackable(*a));
  if (a->hijacked_at.has_value()) return *a;
  a->hijacked_at = now;
  Audit(s, scope, now, rules::AccountHijackedEvent(*a, what));
  return *a;
}

absl::StatusOr<AccountKey> FakeStore::AddPendingKey(const Scope& scope, const KeyLease& lease,
                                                    const AccountKeyMaterial& key,
                                                    const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(rules::ValidateKeyMaterial(key, public_key));
  const AccountId account = lease.account;
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * a, LeasedAccount(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckAccountOpen(*a));
  int version = 1;
  for (auto it = s.keys.lower_bound({account, 0}); it != s.keys.end() && it->first.first == account;
       ++it) {
    if (it->second.info.state == KeyState::kPending) {
      return absl::AlreadyExistsError(
          absl::StrCat("account ", account, " already has a pending key"));
    }
    version = it->first.second + 1;
  }
  ASSIGN_OR_RETURN(AccountKey info, InsertKey(s, envelope_, scope, account, version,
                                              KeyState::kPending, key, public_key, now));
  Audit(s, scope, now, rules::AccountEvent("AddPendingKey", account, version, ""));
  return info;
}

absl::Status FakeStore::PromoteKey(const Scope& scope, const KeyLease& lease, int version) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(LeasedAccount(s, scope, lease).status());
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  RETURN_IF_ERROR(RequirePending(*row));
  std::string detail;
  for (auto it = s.keys.lower_bound({account, 0}); it != s.keys.end() && it->first.first == account;
       ++it) {
    if (it->second.info.state == KeyState::kActive) {
      it->second.info.state = KeyState::kRetired;
      it->second.info.retired_at = now;
      detail = absl::StrCat("retired key ", it->first.second);
    }
  }
  row->info.state = KeyState::kActive;
  row->info.activated_at = now;
  Audit(s, scope, now, rules::AccountEvent("PromoteKey", account, version, detail));
  return absl::OkStatus();
}

absl::StatusOr<Account> FakeStore::ReplaceAccount(const Scope& scope, const KeyLease& lease,
                                                  int version, absl::string_view new_account_url,
                                                  bool old_keys_compromised) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * old, LeasedAccount(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckReplaceable(*old, new_account_url));
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  RETURN_IF_ERROR(RequirePending(*row));
  // Everything that can fail comes before the first change: a failed call changes nothing.
  std::optional<crypto::PrivateKey> key;
  if (row->info.token_object.empty()) {
    ASSIGN_OR_RETURN(key, envelope_.OpenPrivateKey(
                              row->sealed, AccountKeyContext(scope.tenant, account, version)));
  }
  Account out;
  out.id = s.next_id++;
  out.tenant = scope.tenant;
  out.directory_url = old->directory_url;
  out.account_url = std::string(new_account_url);
  out.status = AccountStatus::kValid;
  out.created_at = now;
  out.contact = old->contact;
  const AccountKey moved = row->info;
  RETURN_IF_ERROR(InsertKey(s, envelope_, scope, out.id, 1, KeyState::kActive,
                            key ? AccountKeyMaterial(*key)
                                : AccountKeyMaterial::InToken(moved.token_object, moved.algorithm),
                            moved.public_key, now)
                      .status());
  old->status = AccountStatus::kDeactivated;
  old->deactivated_at = now;
  for (auto it = s.keys.lower_bound({account, 0}); it != s.keys.end() && it->first.first == account;
       ++it) {
    State::KeyRow& k = it->second;
    if (it->first.second == version) {
      k.info.state = KeyState::kRetired;
      k.info.retired_at = now;
    } else if (old_keys_compromised && k.info.state != KeyState::kCompromised) {
      k.info.state = KeyState::kCompromised;
      k.info.compromised_at = now;
    }
  }
  const Account old_copy = *old;
  s.accounts[out.id] = out;
  Audit(s, scope, now, rules::ReplaceAccountEvent(old_copy, out, version, old_keys_compromised));
  return out;
}

absl::Status FakeStore::DiscardPendingKey(const Scope& scope, const KeyLease& lease, int version) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(LeasedAccount(s, scope, lease).status());
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  RETURN_IF_ERROR(RequirePending(*row));
  row->info.state = KeyState::kRetired;
  row->info.retired_at = now;
  Audit(s, scope, now, rules::AccountEvent("DiscardPendingKey", account, version, ""));
  return absl::OkStatus();
}

absl::Status FakeStore::MarkKeyCompromised(const Scope& scope, const KeyLease& lease, int version) {
  const AccountId account = lease.account;
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(LeasedAccount(s, scope, lease).status());
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  if (row->info.state == KeyState::kCompromised) return absl::OkStatus();
  KeyState was = row->info.state;
  row->info.state = KeyState::kCompromised;
  row->info.compromised_at = now;
  Audit(s, scope, now,
        rules::AccountEvent("MarkKeyCompromised", account, version,
                            absl::StrCat("was ", KeyStateName(was))));
  return absl::OkStatus();
}

namespace {

absl::StatusOr<UnsealedAccountKey> Unseal(State& s, const Envelope& envelope, const Scope& scope,
                                          const State::KeyRow& row, absl::string_view purpose,
                                          absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  RETURN_IF_ERROR(rules::CheckKeyUsable(row.info));
  std::optional<crypto::PrivateKey> key;
  if (row.info.token_object.empty()) {
    ASSIGN_OR_RETURN(key, envelope.OpenPrivateKey(row.sealed,
                                                  AccountKeyContext(scope.tenant, row.info.account,
                                                                    row.info.version)));
  }
  Audit(s, scope, now,
        rules::AccountEvent("UseAccountKey", row.info.account, row.info.version,
                            std::string(purpose)));
  return UnsealedAccountKey{row.info, std::move(key)};
}

}  // namespace

absl::StatusOr<UnsealedAccountKey> fake::UnsealActiveKeyLocked(State& s, const Envelope& envelope,
                                                               const Scope& scope,
                                                               AccountId account,
                                                               absl::string_view purpose,
                                                               absl::Time now) {
  for (auto it = s.keys.lower_bound({account, 0}); it != s.keys.end() && it->first.first == account;
       ++it) {
    if (it->second.tenant == scope.tenant && it->second.info.state == KeyState::kActive) {
      return Unseal(s, envelope, scope, it->second, purpose, now);
    }
  }
  return absl::NotFoundError(absl::StrCat("account ", account, " has no active key"));
}

absl::StatusOr<UnsealedAccountKey> FakeStore::GetActiveKey(const Scope& scope, AccountId account,
                                                           absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  return fake::UnsealActiveKeyLocked(s, envelope_, scope, account, purpose, now);
}

absl::StatusOr<UnsealedAccountKey> FakeStore::GetKey(const Scope& scope, AccountId account,
                                                     int version, absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  return Unseal(s, envelope_, scope, *row, purpose, now);
}

absl::Status FakeStore::MarkKeyDestroyed(const Scope& scope, AccountId account, int version) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  RETURN_IF_ERROR(rules::CheckKeyDestroyable(row->info));
  if (row->info.destroyed_at) return absl::OkStatus();
  row->info.destroyed_at = now;
  Audit(s, scope, now,
        rules::AccountEvent("DestroyAccountKey", account, version,
                            absl::StrCat("token object ", row->info.token_object)));
  return absl::OkStatus();
}

absl::StatusOr<EabKeyInfo> FakeStore::KeepEabKey(const Scope& scope,
                                                 absl::string_view directory_url,
                                                 absl::string_view key_id,
                                                 absl::string_view hmac_key) {
  RETURN_IF_ERROR(rules::ValidateEabKey(directory_url, key_id, hmac_key));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  State::EabRow row;
  row.id = s.next_id++;
  row.info = EabKeyInfo{std::string(directory_url), std::string(key_id), now};
  ASSIGN_OR_RETURN(row.sealed, envelope_.Seal(hmac_key, EabKeyContext(scope.tenant, row.id)));
  Audit(s, scope, now, rules::EabKeyEvent("KeepEabKey", row.info));
  EabKeyInfo info = row.info;
  s.eab_keys[scope.tenant] = std::move(row);
  return info;
}

absl::StatusOr<EabKeyInfo> FakeStore::GetEabKeyInfo(const Scope& scope) {
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  auto it = s.eab_keys.find(scope.tenant);
  if (it == s.eab_keys.end()) return absl::NotFoundError("the tenant keeps no EAB key");
  return it->second.info;
}

absl::StatusOr<EabKey> FakeStore::GetEabKey(const Scope& scope, absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  auto it = s.eab_keys.find(scope.tenant);
  if (it == s.eab_keys.end()) return absl::NotFoundError("the tenant keeps no EAB key");
  EabKey out;
  out.info = it->second.info;
  ASSIGN_OR_RETURN(out.hmac_key,
                   envelope_.Open(it->second.sealed, EabKeyContext(scope.tenant, it->second.id)));
  Audit(s, scope, now, rules::EabKeyEvent("UseEabKey", out.info, purpose));
  return out;
}

absl::Status FakeStore::ForgetEabKey(const Scope& scope) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::RequireTenant(s, scope));
  auto it = s.eab_keys.find(scope.tenant);
  if (it == s.eab_keys.end()) return absl::NotFoundError("the tenant keeps no EAB key");
  Audit(s, scope, now, rules::EabKeyEvent("ForgetEabKey", it->second.info));
  s.eab_keys.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AccountKey>> FakeStore::ListKeys(const Scope& scope, AccountId account) {
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(FindAccount(s, scope, account).status());
  std::vector<AccountKey> out;
  for (auto it = s.keys.lower_bound({account, 0}); it != s.keys.end() && it->first.first == account;
       ++it) {
    out.push_back(it->second.info);
  }
  return out;
}

}  // namespace acmevault::storage
