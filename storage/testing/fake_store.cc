#include "storage/testing/fake_store.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"

namespace acmevault::storage {

struct FakeStore::State {
  struct IdentityRow {
    Identity identity;
    std::string token_sha256;
  };
  struct KeyRow {
    TenantId tenant = 0;
    AccountKey info;
    SealedKey sealed;
  };
  struct CertificateRow {
    Certificate certificate;
    std::optional<SealedKey> sealed;
  };
  struct ChallengeRow {
    TenantId tenant = 0;
    std::string key_authorization;
  };

  absl::Mutex mu;
  int64_t next_id ABSL_GUARDED_BY(mu) = 1;  // one sequence for every table: ids never collide
  std::map<TenantId, Tenant> tenants ABSL_GUARDED_BY(mu);
  std::map<IdentityId, IdentityRow> identities ABSL_GUARDED_BY(mu);
  std::map<AccountId, Account> accounts ABSL_GUARDED_BY(mu);
  std::map<std::pair<AccountId, int>, KeyRow> keys ABSL_GUARDED_BY(mu);
  std::map<OrderId, Order> orders ABSL_GUARDED_BY(mu);
  std::map<OrderId, SealedKey> order_keys ABSL_GUARDED_BY(mu);  // orders' certificate keys
  std::map<AuthorizationId, Authorization> authorizations ABSL_GUARDED_BY(mu);
  std::map<CertificateId, CertificateRow> certificates ABSL_GUARDED_BY(mu);
  std::map<std::string, ChallengeRow> challenges ABSL_GUARDED_BY(mu);
  std::map<TenantId, std::vector<AuditRecord>> audit ABSL_GUARDED_BY(mu);
  std::map<TenantId, std::pair<int64_t, std::string>> audit_heads ABSL_GUARDED_BY(mu);
};

namespace {

using State = FakeStore::State;

const std::string kGenesis(32, '\0');

// The fields of an audit record, length-prefixed, as migration 0005 encodes them.
std::string AuditEncoding(const AuditRecord& a) {
  std::string out = "acmevault-audit-v1" + a.prev_hash;
  auto text = [&out](absl::string_view s) { absl::StrAppend(&out, s.size(), ":", s); };
  auto number = [&out](std::optional<int64_t> v) {
    absl::StrAppend(&out, v.has_value() ? absl::StrCat("+", *v) : "-", ";");
  };
  number(a.tenant);
  number(a.seq);
  number(absl::ToUnixMicros(a.at));
  text(a.actor.identity);
  text(a.actor.rpc);
  text(a.event.action);
  number(static_cast<int64_t>(a.event.identifiers.size()));
  for (const std::string& id : a.event.identifiers) text(id);
  number(a.event.account);
  number(a.event.key_version);
  text(a.event.acme_url);
  text(a.event.outcome);
  text(a.event.detail);
  return out;
}

// Four FNV-1a passes with different offsets: 32 bytes, deterministic, not cryptographic.
std::string FakeDigest(const AuditRecord& a) {
  const std::string data = AuditEncoding(a);
  std::string out;
  for (uint64_t lane = 0; lane < 4; ++lane) {
    uint64_t h = 14695981039346656037ull ^ (lane * 0x9e3779b97f4a7c15ull);
    for (unsigned char c : data) {
      h ^= c;
      h *= 1099511628211ull;
    }
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(h >> (8 * i)));
  }
  return out;
}

void Audit(State& s, const Scope& scope, absl::Time at, const AuditEvent& event)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto& head = s.audit_heads.try_emplace(scope.tenant, 0, kGenesis).first->second;
  AuditRecord r;
  r.tenant = scope.tenant;
  r.seq = head.first + 1;
  r.at = at;
  r.actor = scope.actor;
  r.event = event;
  r.prev_hash = head.second;
  r.hash = FakeDigest(r);
  head = {r.seq, r.hash};
  s.audit[scope.tenant].push_back(std::move(r));
}

absl::Status NoSuch(absl::string_view what, int64_t id) {
  return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
}

absl::Status RequireTenant(const State& s, const Scope& scope)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  if (scope.tenant <= 0) return absl::InvalidArgumentError("no tenant");
  if (s.tenants.count(scope.tenant) == 0) return NoSuch("tenant", scope.tenant);
  return absl::OkStatus();
}

absl::StatusOr<Account*> FindAccount(State& s, const Scope& scope, AccountId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.accounts.find(id);
  if (it == s.accounts.end() || it->second.tenant != scope.tenant) return NoSuch("account", id);
  return &it->second;
}

absl::StatusOr<State::KeyRow*> FindKey(State& s, const Scope& scope, AccountId account,
                                       int version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.keys.find({account, version});
  if (it == s.keys.end() || it->second.tenant != scope.tenant) {
    return absl::NotFoundError(
        absl::StrCat("account ", account, " has no key version ", version));
  }
  return &it->second;
}

absl::StatusOr<Order*> FindOrder(State& s, const Scope& scope, OrderId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.orders.find(id);
  if (it == s.orders.end() || it->second.tenant != scope.tenant) return NoSuch("order", id);
  return &it->second;
}

// The order `lease` is for, if the lease is still current (rules::CheckLease).
absl::StatusOr<Order*> LeasedOrder(State& s, const Scope& scope, const Lease& lease)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  ASSIGN_OR_RETURN(Order * o, FindOrder(s, scope, lease.order));
  RETURN_IF_ERROR(rules::CheckLease(scope, *o, lease));
  return o;
}

absl::StatusOr<State::CertificateRow*> FindCertificate(State& s, const Scope& scope,
                                                       CertificateId id)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.certificates.find(id);
  if (it == s.certificates.end() || it->second.certificate.tenant != scope.tenant) {
    return NoSuch("certificate", id);
  }
  return &it->second;
}

absl::Status NameTaken(const State& s, absl::string_view name, TenantId except)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  for (const auto& [id, t] : s.tenants) {
    if (id != except && t.spec.name == name) {
      return rules::TenantNameTaken(name);
    }
  }
  return absl::OkStatus();
}

// The first page of `items` after `after` (by key), `limit` long, with the next token.
template <typename T, typename Map, typename Convert>
Page<T> PageOf(const Map& items, int64_t after, int limit, Convert convert) {
  Page<T> out;
  for (auto it = items.upper_bound(after); it != items.end(); ++it) {
    std::optional<T> item = convert(it->second);
    if (!item.has_value()) continue;
    if (static_cast<int>(out.items.size()) == limit) {
      out.next_page_token = rules::EncodeIdToken(std::prev(it)->first);
      break;
    }
    out.items.push_back(*std::move(item));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and test hooks

FakeStore::FakeStore(Options options, Envelope envelope, std::shared_ptr<State> state)
    : options_(options), envelope_(std::move(envelope)), state_(std::move(state)) {}

FakeStore::~FakeStore() = default;

absl::StatusOr<std::unique_ptr<FakeStore>> FakeStore::Create(Options options, KekSet keks) {
  ASSIGN_OR_RETURN(Envelope envelope, Envelope::Create(std::move(keks)));
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  return std::unique_ptr<FakeStore>(
      new FakeStore(options, std::move(envelope), std::make_shared<State>()));
}

absl::StatusOr<std::unique_ptr<FakeStore>> FakeStore::Reopen(const FakeStore& other,
                                                             Options options, KekSet keks) {
  ASSIGN_OR_RETURN(Envelope envelope, Envelope::Create(std::move(keks)));
  return std::unique_ptr<FakeStore>(new FakeStore(options, std::move(envelope), other.state_));
}

absl::Time FakeStore::Now() const { return TruncateToMicros(options_.clock->Now()); }

absl::Status FakeStore::TamperAuditDetailForTesting(TenantId tenant, int64_t seq,
                                                    std::string detail) {
  absl::MutexLock lock(&state_->mu);
  for (AuditRecord& r : state_->audit[tenant]) {
    if (r.seq == seq) {
      r.event.detail = std::move(detail);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("no such audit row");
}

absl::Status FakeStore::DeleteAuditRowForTesting(TenantId tenant, int64_t seq) {
  absl::MutexLock lock(&state_->mu);
  auto& rows = state_->audit[tenant];
  auto it = std::find_if(rows.begin(), rows.end(),
                         [seq](const AuditRecord& r) { return r.seq == seq; });
  if (it == rows.end()) return absl::NotFoundError("no such audit row");
  rows.erase(it);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// TenantStore

absl::StatusOr<Tenant> FakeStore::CreateTenant(const Actor& actor, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(NameTaken(s, spec.name, 0));
  Tenant t;
  t.id = s.next_id++;
  t.spec = spec;
  t.spec.policy.max_key_age = absl::Seconds(absl::ToInt64Seconds(spec.policy.max_key_age));
  t.spec.policy.renewal_window = absl::Seconds(absl::ToInt64Seconds(spec.policy.renewal_window));
  t.created_at = t.updated_at = now;
  s.tenants[t.id] = t;
  Audit(s, Scope{t.id, actor}, now, rules::TenantEvent("CreateTenant", spec));
  return t;
}

absl::StatusOr<Tenant> FakeStore::GetTenant(const Scope& scope) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->tenants.find(scope.tenant);
  if (it == state_->tenants.end()) return NoSuch("tenant", scope.tenant);
  return it->second;
}

absl::StatusOr<Tenant> FakeStore::FindTenantByName(absl::string_view name) {
  absl::MutexLock lock(&state_->mu);
  for (const auto& [id, t] : state_->tenants) {
    if (t.spec.name == name) return t;
  }
  return absl::NotFoundError(absl::StrCat("tenant \"", name, "\" not found"));
}

absl::StatusOr<Tenant> FakeStore::UpdateTenant(const Scope& scope, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto it = s.tenants.find(scope.tenant);
  if (it == s.tenants.end()) return NoSuch("tenant", scope.tenant);
  RETURN_IF_ERROR(NameTaken(s, spec.name, scope.tenant));
  it->second.spec = spec;
  it->second.spec.policy.max_key_age =
      absl::Seconds(absl::ToInt64Seconds(spec.policy.max_key_age));
  it->second.spec.policy.renewal_window =
      absl::Seconds(absl::ToInt64Seconds(spec.policy.renewal_window));
  it->second.updated_at = now;
  Audit(s, scope, now, rules::TenantEvent("UpdateTenant", spec));
  return it->second;
}

absl::Status FakeStore::DisableTenant(const Scope& scope) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto it = s.tenants.find(scope.tenant);
  if (it == s.tenants.end()) return NoSuch("tenant", scope.tenant);
  if (it->second.disabled_at.has_value()) return absl::OkStatus();
  it->second.disabled_at = now;
  it->second.updated_at = now;
  Audit(s, scope, now, rules::SimpleEvent("DisableTenant", ""));
  return absl::OkStatus();
}

absl::StatusOr<Page<Tenant>> FakeStore::ListTenants(const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  absl::MutexLock lock(&state_->mu);
  return PageOf<Tenant>(state_->tenants, after, PageSize(page),
                        [](const Tenant& t) { return std::optional<Tenant>(t); });
}

// ---------------------------------------------------------------------------------------------
// IdentityStore

namespace {

absl::StatusOr<Identity> AddIdentity(State& s, const Scope& scope, absl::Time now,
                                     std::string spiffe_id, std::string token_sha256, Role role,
                                     absl::string_view description)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  for (const auto& [id, row] : s.identities) {
    bool same_spiffe = !spiffe_id.empty() && row.identity.spiffe_id == spiffe_id &&
                       !row.identity.revoked_at.has_value();
    bool same_token = !token_sha256.empty() && row.token_sha256 == token_sha256;
    if (same_spiffe || same_token) return absl::AlreadyExistsError("identity already bound");
  }
  Identity i;
  i.id = s.next_id++;
  i.tenant = scope.tenant;
  i.role = role;
  i.spiffe_id = spiffe_id;
  i.bearer_token = !token_sha256.empty();
  i.description = std::string(description);
  i.created_at = now;
  s.identities[i.id] = State::IdentityRow{i, std::move(token_sha256)};
  Audit(s, scope, now,
        rules::SimpleEvent(i.bearer_token ? "AddTokenIdentity" : "AddSpiffeIdentity",
                           i.bearer_token
                               ? absl::StrCat("identity ", i.id, " as ", RoleName(role))
                               : absl::StrCat("identity ", i.id, " ", spiffe_id, " as ",
                                              RoleName(role))));
  return i;
}

absl::StatusOr<Identity> Authenticate(const State& s, absl::string_view spiffe_id,
                                      absl::string_view token_sha256)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  for (const auto& [id, row] : s.identities) {
    bool match = spiffe_id.empty() ? row.token_sha256 == token_sha256
                                   : row.identity.spiffe_id == spiffe_id;
    if (!match || row.identity.revoked_at.has_value()) continue;
    if (s.tenants.at(row.identity.tenant).disabled_at.has_value()) continue;
    return row.identity;
  }
  return absl::NotFoundError(spiffe_id.empty() ? "unknown or revoked token"
                                               : "unknown or revoked SPIFFE ID");
}

}  // namespace

absl::StatusOr<Identity> FakeStore::AddSpiffeIdentity(const Scope& scope,
                                                      absl::string_view spiffe_id, Role role,
                                                      absl::string_view description) {
  RETURN_IF_ERROR(rules::ValidateSpiffeId(spiffe_id));
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  return AddIdentity(*state_, scope, now, std::string(spiffe_id), "", role, description);
}

absl::StatusOr<Identity> FakeStore::AddTokenIdentity(const Scope& scope,
                                                     absl::string_view token_sha256, Role role,
                                                     absl::string_view description) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  return AddIdentity(*state_, scope, now, "", std::string(token_sha256), role, description);
}

absl::StatusOr<Identity> FakeStore::AuthenticateSpiffe(absl::string_view spiffe_id) {
  if (spiffe_id.empty()) return absl::NotFoundError("unknown or revoked SPIFFE ID");
  absl::MutexLock lock(&state_->mu);
  return Authenticate(*state_, spiffe_id, "");
}

absl::StatusOr<Identity> FakeStore::AuthenticateToken(absl::string_view token_sha256) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  absl::MutexLock lock(&state_->mu);
  return Authenticate(*state_, "", token_sha256);
}

absl::Status FakeStore::RevokeIdentity(const Scope& scope, IdentityId id) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto it = s.identities.find(id);
  if (it == s.identities.end() || it->second.identity.tenant != scope.tenant) {
    return NoSuch("identity", id);
  }
  if (it->second.identity.revoked_at.has_value()) return absl::OkStatus();
  it->second.identity.revoked_at = now;
  Audit(s, scope, now, rules::SimpleEvent("RevokeIdentity", absl::StrCat("identity ", id)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Identity>> FakeStore::ListIdentities(const Scope& scope) {
  absl::MutexLock lock(&state_->mu);
  std::vector<Identity> out;
  for (const auto& [id, row] : state_->identities) {
    if (row.identity.tenant == scope.tenant) out.push_back(row.identity);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// AccountStore

namespace {

absl::StatusOr<AccountKey> InsertKey(State& s, const Envelope& envelope, const Scope& scope,
                                     AccountId account, int version, KeyState state,
                                     const crypto::PrivateKey& key,
                                     const PublicKeyInfo& public_key, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  State::KeyRow row;
  ASSIGN_OR_RETURN(row.sealed,
                   envelope.SealPrivateKey(key, AccountKeyContext(scope.tenant, account, version)));
  row.tenant = scope.tenant;
  row.info.account = account;
  row.info.version = version;
  row.info.state = state;
  row.info.algorithm = key.algorithm();
  row.info.public_key = public_key;
  row.info.kek_id = row.sealed.kek_id;
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
                                                 const crypto::PrivateKey& key,
                                                 const PublicKeyInfo& public_key,
                                                 KeyState initial_state) {
  RETURN_IF_ERROR(rules::ValidateNewAccount(directory_url, public_key, initial_state));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(RequireTenant(s, scope));
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
                                         crypto::KeyAlgorithmName(key.algorithm()))));
  return a;
}

absl::StatusOr<Account> FakeStore::GetAccount(const Scope& scope, AccountId account) {
  absl::MutexLock lock(&state_->mu);
  ASSIGN_OR_RETURN(Account * a, FindAccount(*state_, scope, account));
  return *a;
}

absl::StatusOr<std::vector<Account>> FakeStore::ListAccounts(const Scope& scope) {
  absl::MutexLock lock(&state_->mu);
  std::vector<Account> out;
  for (const auto& [id, a] : state_->accounts) {
    if (a.tenant == scope.tenant) out.push_back(a);
  }
  return out;
}

absl::Status FakeStore::RecordAccountUrl(const Scope& scope, AccountId account,
                                         absl::string_view url) {
  RETURN_IF_ERROR(rules::ValidateUrl("account URL", url));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  ASSIGN_OR_RETURN(bool write, rules::AccountUrlNeedsWrite(*a, url));
  if (!write) return absl::OkStatus();
  a->account_url = std::string(url);
  a->status = AccountStatus::kValid;
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
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  RETURN_IF_ERROR(rules::CheckAccountOpen(*a, /*already=*/true));
  a->status = status;
  a->deactivated_at = now;
  AuditEvent e = rules::AccountEvent("SetAccountStatus", account, std::nullopt,
                                     std::string(AccountStatusName(status)));
  e.acme_url = a->account_url;
  Audit(s, scope, now, e);
  return absl::OkStatus();
}

absl::StatusOr<AccountKey> FakeStore::AddPendingKey(const Scope& scope, AccountId account,
                                                    const crypto::PrivateKey& key,
                                                    const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(rules::ValidatePublicKeyInfo(public_key));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  RETURN_IF_ERROR(rules::CheckAccountOpen(*a));
  int version = 1;
  for (auto it = s.keys.lower_bound({account, 0});
       it != s.keys.end() && it->first.first == account; ++it) {
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

absl::Status FakeStore::PromoteKey(const Scope& scope, AccountId account, int version) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(FindAccount(s, scope, account).status());
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  RETURN_IF_ERROR(RequirePending(*row));
  std::string detail;
  for (auto it = s.keys.lower_bound({account, 0});
       it != s.keys.end() && it->first.first == account; ++it) {
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

absl::Status FakeStore::DiscardPendingKey(const Scope& scope, AccountId account, int version) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(FindAccount(s, scope, account).status());
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  RETURN_IF_ERROR(RequirePending(*row));
  row->info.state = KeyState::kRetired;
  row->info.retired_at = now;
  Audit(s, scope, now, rules::AccountEvent("DiscardPendingKey", account, version, ""));
  return absl::OkStatus();
}

absl::Status FakeStore::MarkKeyCompromised(const Scope& scope, AccountId account, int version) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(FindAccount(s, scope, account).status());
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

absl::StatusOr<UnsealedAccountKey> Unseal(State& s, const Envelope& envelope,
                                          const Scope& scope, const State::KeyRow& row,
                                          absl::string_view purpose, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  if (row.info.state == KeyState::kCompromised) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key ", row.info.version, " of account ", row.info.account, " is compromised"));
  }
  ASSIGN_OR_RETURN(
      crypto::PrivateKey key,
      envelope.OpenPrivateKey(row.sealed,
                              AccountKeyContext(scope.tenant, row.info.account, row.info.version)));
  Audit(s, scope, now,
        rules::AccountEvent("UseAccountKey", row.info.account, row.info.version,
                            std::string(purpose)));
  return UnsealedAccountKey{row.info, std::move(key)};
}

}  // namespace

absl::StatusOr<UnsealedAccountKey> FakeStore::GetActiveKey(const Scope& scope,
                                                           AccountId account,
                                                           absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  for (auto it = s.keys.lower_bound({account, 0});
       it != s.keys.end() && it->first.first == account; ++it) {
    if (it->second.tenant == scope.tenant && it->second.info.state == KeyState::kActive) {
      return Unseal(s, envelope_, scope, it->second, purpose, now);
    }
  }
  return absl::NotFoundError(absl::StrCat("account ", account, " has no active key"));
}

absl::StatusOr<UnsealedAccountKey> FakeStore::GetKey(const Scope& scope, AccountId account,
                                                     int version, absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(State::KeyRow * row, FindKey(s, scope, account, version));
  return Unseal(s, envelope_, scope, *row, purpose, now);
}

absl::StatusOr<std::vector<AccountKey>> FakeStore::ListKeys(const Scope& scope,
                                                            AccountId account) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(FindAccount(s, scope, account).status());
  std::vector<AccountKey> out;
  for (auto it = s.keys.lower_bound({account, 0});
       it != s.keys.end() && it->first.first == account; ++it) {
    out.push_back(it->second.info);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// OrderStore

absl::StatusOr<CreateOrderResult> FakeStore::CreateOrJoinOrder(const Scope& scope,
                                                               const NewOrder& order) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateNewOrder(order));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  CreateOrderResult out;
  for (const auto& [id, o] : s.orders) {
    if (o.tenant != scope.tenant || order.idempotency_key.empty() ||
        o.idempotency_key != order.idempotency_key) {
      continue;
    }
    if (o.identifiers != ids) {
      return absl::InvalidArgumentError(absl::StrCat(
          "idempotency key was used for order ", o.id, " with other identifiers"));
    }
    out.order = o;
    return out;
  }
  for (const auto& [id, o] : s.orders) {
    if (o.tenant == scope.tenant && o.identifiers == ids && !IsTerminal(o.state)) {
      out.order = o;
      return out;
    }
  }
  ASSIGN_OR_RETURN(Account * account, FindAccount(s, scope, order.account));
  Order o;
  o.id = s.next_id++;
  o.tenant = scope.tenant;
  o.account = account->id;
  o.identifiers = ids;
  o.idempotency_key = order.idempotency_key;
  o.lease_owner = order.lease_owner;
  o.lease_expires_at = TruncateToMicros(now + order.lease_duration);
  o.fencing_token = 1;
  o.created_at = o.updated_at = now;
  o.csr_der = order.csr_der;
  if (order.certificate_key != nullptr) {
    ASSIGN_OR_RETURN(
        s.order_keys[o.id],
        envelope_.SealPrivateKey(*order.certificate_key, OrderKeyContext(scope.tenant, o.id)));
    o.has_certificate_key = true;
  }
  s.orders[o.id] = o;
  out.order = o;
  out.created = true;
  out.lease = Lease{scope.tenant, o.id, order.lease_owner, 1, *o.lease_expires_at};
  Audit(s, scope, now, rules::OrderEvent("CreateOrder", o, ""));
  return out;
}

absl::StatusOr<Order> FakeStore::GetOrder(const Scope& scope, OrderId order) {
  absl::MutexLock lock(&state_->mu);
  ASSIGN_OR_RETURN(Order * o, FindOrder(*state_, scope, order));
  return *o;
}

absl::StatusOr<Order> FakeStore::FindOrderByIdempotencyKey(const Scope& scope,
                                                           absl::string_view key) {
  absl::MutexLock lock(&state_->mu);
  for (const auto& [id, o] : state_->orders) {
    if (o.tenant == scope.tenant && !key.empty() && o.idempotency_key == key) return o;
  }
  return absl::NotFoundError("no order with this idempotency key");
}

absl::StatusOr<crypto::PrivateKey> FakeStore::GetOrderCertificateKey(const Scope& scope,
                                                                     OrderId order,
                                                                     absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Order * o, FindOrder(s, scope, order));
  auto sealed = s.order_keys.find(order);
  if (sealed == s.order_keys.end()) {
    return absl::NotFoundError(absl::StrCat("order ", order, " has no stored certificate key"));
  }
  ASSIGN_OR_RETURN(crypto::PrivateKey key,
                   envelope_.OpenPrivateKey(sealed->second, OrderKeyContext(scope.tenant, order)));
  Audit(s, scope, now, rules::OrderEvent("UseCertificateKey", *o, std::string(purpose)));
  return key;
}

absl::Status FakeStore::RecordOrderUrl(const Scope& scope, const Lease& lease,
                                       absl::string_view url) {
  RETURN_IF_ERROR(rules::ValidateUrl("order URL", url));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  ASSIGN_OR_RETURN(bool write, rules::OrderUrlNeedsWrite(*o, url));
  if (!write) return absl::OkStatus();
  o->acme_url = std::string(url);
  o->state = OrderState::kPending;
  o->updated_at = now;
  Audit(s, scope, now, rules::OrderEvent("RecordOrderUrl", *o, ""));
  return absl::OkStatus();
}

absl::Status FakeStore::TransitionOrder(const Scope& scope, const Lease& lease, OrderState to,
                                        absl::string_view error) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckOrderTransition(*o, to));
  if (o->state == to) return absl::OkStatus();
  Order before = *o;
  o->state = to;
  o->error = to == OrderState::kInvalid ? std::string(error) : "";
  o->updated_at = now;
  if (IsTerminal(to)) {
    o->lease_owner.clear();
    o->lease_expires_at.reset();
  }
  Audit(s, scope, now,
        rules::OrderEvent("TransitionOrder", before,
                          rules::TransitionDetail(before.state, to, error)));
  return absl::OkStatus();
}

namespace {

absl::StatusOr<Certificate> InsertCertificateLocked(State& s, const Envelope& envelope,
                                                    const Scope& scope, const NewCertificate& c,
                                                    absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  if (c.account.has_value()) RETURN_IF_ERROR(FindAccount(s, scope, *c.account).status());
  if (c.order.has_value()) RETURN_IF_ERROR(FindOrder(s, scope, *c.order).status());
  for (const auto& [id, row] : s.certificates) {
    if (row.certificate.tenant == scope.tenant && row.certificate.serial == c.serial) {
      return absl::AlreadyExistsError(absl::StrCat("serial ", c.serial, " is stored"));
    }
  }
  State::CertificateRow row;
  Certificate& out = row.certificate;
  out.id = s.next_id++;
  if (c.private_key != nullptr) {
    ASSIGN_OR_RETURN(row.sealed, envelope.SealPrivateKey(
                                     *c.private_key, CertificateKeyContext(scope.tenant, out.id)));
  }
  for (auto& [id, other] : s.certificates) {
    Certificate& o = other.certificate;
    if (o.tenant == scope.tenant && o.identifiers == c.identifiers && !o.revoked_at &&
        !o.superseded_at) {
      o.superseded_at = now;
    }
  }
  out.tenant = scope.tenant;
  out.account = c.account;
  out.order = c.order;
  out.identifiers = c.identifiers;
  out.serial = c.serial;
  out.not_before = c.not_before;
  out.not_after = c.not_after;
  out.chain_pem = c.chain_pem;
  out.account_key_version = c.account_key_version;
  out.has_private_key = row.sealed.has_value();
  out.created_at = now;
  Certificate result = out;
  s.certificates[result.id] = std::move(row);
  Audit(s, scope, now, rules::CertificateEvent("InsertCertificate", result, ""));
  return result;
}

}  // namespace

absl::StatusOr<Certificate> FakeStore::CompleteOrder(const Scope& scope, const Lease& lease,
                                                     const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckCompletable(*o));
  c.order = o->id;
  if (!c.account.has_value()) c.account = o->account;
  ASSIGN_OR_RETURN(Certificate out, InsertCertificateLocked(s, envelope_, scope, c, now));
  Order before = *o;
  o->state = OrderState::kValid;
  o->certificate = out.id;
  o->updated_at = now;
  o->lease_owner.clear();
  o->lease_expires_at.reset();
  Audit(s, scope, now,
        rules::OrderEvent("CompleteOrder", before, absl::StrCat("certificate ", out.id)));
  return out;
}

absl::StatusOr<std::vector<Lease>> FakeStore::ClaimStaleOrders(absl::string_view owner,
                                                               absl::Duration lease_duration,
                                                               int max_orders) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(owner, lease_duration));
  if (max_orders < 1) return absl::InvalidArgumentError("max_orders must be positive");
  const absl::Time now = Now();
  const absl::Time until = TruncateToMicros(now + lease_duration);
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  // Oldest lease first (unleased orders before all), then by id, as the SQL orders them.
  std::vector<std::tuple<bool, absl::Time, OrderId>> stale;
  for (const auto& [id, o] : s.orders) {
    if (IsTerminal(o.state) || s.tenants.at(o.tenant).disabled_at.has_value()) continue;
    if (o.lease_expires_at.has_value() && *o.lease_expires_at > now) continue;
    stale.emplace_back(o.lease_expires_at.has_value(),
                       o.lease_expires_at.value_or(absl::InfinitePast()), id);
  }
  std::sort(stale.begin(), stale.end());
  if (static_cast<int>(stale.size()) > max_orders) stale.resize(max_orders);
  std::vector<Lease> out;
  for (const auto& entry : stale) {
    Order& o = s.orders[std::get<2>(entry)];
    o.lease_owner = std::string(owner);
    o.lease_expires_at = until;
    o.fencing_token += 1;
    o.updated_at = now;
    out.push_back(Lease{o.tenant, o.id, o.lease_owner, o.fencing_token, until});
  }
  return out;
}

absl::StatusOr<Lease> FakeStore::RenewLease(const Scope& scope, const Lease& lease,
                                            absl::Duration lease_duration) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(lease.owner, lease_duration));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  o->lease_owner = lease.owner;
  o->lease_expires_at = TruncateToMicros(now + lease_duration);
  o->updated_at = now;
  Lease out = lease;
  out.expires_at = *o->lease_expires_at;
  return out;
}

absl::Status FakeStore::ReleaseLease(const Scope& scope, const Lease& lease) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  o->lease_owner.clear();
  o->lease_expires_at.reset();
  o->updated_at = now;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// AuthorizationStore

absl::StatusOr<Authorization> FakeStore::RecordAuthorization(
    const Scope& scope, const AuthorizationRecord& authorization) {
  RETURN_IF_ERROR(rules::ValidateUrl("authorization URL", authorization.url));
  ASSIGN_OR_RETURN(std::vector<std::string> identifier,
                   CanonicalIdentifiers({authorization.identifier}));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(FindAccount(s, scope, authorization.account).status());
  if (authorization.order.has_value()) {
    RETURN_IF_ERROR(FindOrder(s, scope, *authorization.order).status());
  }
  Authorization* row = nullptr;
  for (auto& [id, a] : s.authorizations) {
    if (a.record.account == authorization.account && a.record.url == authorization.url) {
      row = &a;
    }
  }
  if (row == nullptr) {
    Authorization a;
    a.id = s.next_id++;
    a.tenant = scope.tenant;
    a.record = authorization;
    a.record.identifier = identifier[0];
    row = &(s.authorizations[a.id] = a);
  } else {
    row->record.status = authorization.status;
    row->record.expires_at = authorization.expires_at;
    if (!row->record.order.has_value()) row->record.order = authorization.order;
  }
  if (row->record.expires_at.has_value()) {
    row->record.expires_at = TruncateToMicros(*row->record.expires_at);
  }
  row->updated_at = now;
  AuditEvent e = rules::AccountEvent("RecordAuthorization", authorization.account, std::nullopt,
                                     std::string(AuthorizationStatusName(row->record.status)));
  e.identifiers = identifier;
  e.acme_url = authorization.url;
  Audit(s, scope, now, e);
  return *row;
}

absl::StatusOr<std::vector<Authorization>> FakeStore::ListOutstandingAuthorizations(
    const Scope& scope, const AuthorizationFilter& filter) {
  std::vector<std::string> identifiers;
  if (!filter.identifiers.empty()) {
    ASSIGN_OR_RETURN(identifiers, CanonicalIdentifiers(filter.identifiers));
  }
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  std::vector<Authorization> out;
  for (const auto& [id, a] : state_->authorizations) {
    const AuthorizationRecord& r = a.record;
    bool outstanding = (r.status == AuthorizationStatus::kPending ||
                        r.status == AuthorizationStatus::kValid) &&
                       !a.deactivated_at.has_value() &&
                       (!r.expires_at.has_value() || *r.expires_at > now);
    bool matches = a.tenant == scope.tenant &&
                   (!filter.account.has_value() || r.account == *filter.account) &&
                   (!filter.order.has_value() || r.order == filter.order) &&
                   (identifiers.empty() || std::find(identifiers.begin(), identifiers.end(),
                                                     r.identifier) != identifiers.end());
    if (outstanding && matches) out.push_back(a);
  }
  return out;
}

absl::Status FakeStore::MarkAuthorizationDeactivated(const Scope& scope, AccountId account,
                                                     absl::string_view url) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  for (auto& [id, a] : s.authorizations) {
    if (a.tenant != scope.tenant || a.record.account != account || a.record.url != url) {
      continue;
    }
    a.record.status = AuthorizationStatus::kDeactivated;
    if (!a.deactivated_at.has_value()) a.deactivated_at = now;
    a.updated_at = now;
    AuditEvent e = rules::AccountEvent("MarkAuthorizationDeactivated", account, std::nullopt, "");
    e.identifiers = {a.record.identifier};
    e.acme_url = std::string(url);
    Audit(s, scope, now, e);
    return absl::OkStatus();
  }
  return absl::NotFoundError("no such authorization for this account");
}

// ---------------------------------------------------------------------------------------------
// CertificateStore

absl::StatusOr<Certificate> FakeStore::InsertCertificate(const Scope& scope,
                                                         const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  return InsertCertificateLocked(*state_, envelope_, scope, c, now);
}

absl::StatusOr<Certificate> FakeStore::GetCertificate(const Scope& scope, CertificateId id) {
  absl::MutexLock lock(&state_->mu);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(*state_, scope, id));
  return row->certificate;
}

absl::StatusOr<Certificate> FakeStore::GetCertificateBySerial(const Scope& scope,
                                                              absl::string_view serial) {
  std::string lower = absl::AsciiStrToLower(serial);
  absl::MutexLock lock(&state_->mu);
  for (const auto& [id, row] : state_->certificates) {
    if (row.certificate.tenant == scope.tenant && row.certificate.serial == lower) {
      return row.certificate;
    }
  }
  return absl::NotFoundError(absl::StrCat("no certificate with serial ", serial));
}

absl::StatusOr<Certificate> FakeStore::GetCurrentCertificate(
    const Scope& scope, const std::vector<std::string>& identifiers) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(identifiers));
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  const Certificate* best = nullptr;
  for (const auto& [id, row] : state_->certificates) {
    const Certificate& c = row.certificate;
    if (c.tenant != scope.tenant || c.identifiers != ids || c.revoked_at.has_value() ||
        c.not_after <= now) {
      continue;
    }
    if (best == nullptr || c.not_after > best->not_after) best = &c;
  }
  if (best == nullptr) return absl::NotFoundError("no live certificate for these identifiers");
  return *best;
}

absl::StatusOr<crypto::PrivateKey> FakeStore::GetCertificateKey(const Scope& scope,
                                                                CertificateId id,
                                                                absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, id));
  if (!row->sealed.has_value()) {
    return absl::NotFoundError(absl::StrCat("certificate ", id, " has no stored key"));
  }
  ASSIGN_OR_RETURN(crypto::PrivateKey key,
                   envelope_.OpenPrivateKey(*row->sealed, CertificateKeyContext(scope.tenant, id)));
  Audit(s, scope, now,
        rules::CertificateEvent("UseCertificateKey", row->certificate, std::string(purpose)));
  return key;
}

absl::StatusOr<Page<Certificate>> FakeStore::ListCertificates(const Scope& scope,
                                                              const CertificateFilter& filter,
                                                              const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  return PageOf<Certificate>(
      state_->certificates, after, PageSize(page),
      [&](const State::CertificateRow& row) -> std::optional<Certificate> {
        const Certificate& c = row.certificate;
        bool state_ok = true;
        switch (filter.state) {
          case CertificateState::kAny:
            break;
          case CertificateState::kLive:
            state_ok = !c.revoked_at && !c.superseded_at && c.not_after > now;
            break;
          case CertificateState::kRevoked:
            state_ok = c.revoked_at.has_value();
            break;
          case CertificateState::kExpired:
            state_ok = !c.revoked_at && c.not_after <= now;
            break;
        }
        if (c.tenant != scope.tenant || !state_ok ||
            (filter.expires_before && !(c.not_after < *filter.expires_before)) ||
            (filter.expires_after && !(c.not_after >= *filter.expires_after))) {
          return std::nullopt;
        }
        return c;
      });
}

absl::StatusOr<Page<DueCertificate>> FakeStore::ListCertificatesDueForRenewal(
    const PageRequest& page) {
  std::pair<int64_t, int64_t> cursor = {std::numeric_limits<int64_t>::min(), 0};
  if (!page.page_token.empty()) {
    ASSIGN_OR_RETURN(cursor, rules::DecodeDueToken(page.page_token));
  }
  const int limit = PageSize(page);
  const absl::Time now = Now();
  absl::MutexLock lock(&state_->mu);
  std::vector<DueCertificate> due;
  for (const auto& [id, row] : state_->certificates) {
    const Certificate& c = row.certificate;
    const Tenant& t = state_->tenants.at(c.tenant);
    if (c.revoked_at || c.superseded_at || t.disabled_at ||
        c.not_after > now + t.spec.policy.renewal_window) {
      continue;
    }
    if (std::make_pair(absl::ToUnixMicros(c.not_after), c.id) <= cursor) continue;
    due.push_back(DueCertificate{c.tenant, c.id, c.identifiers, c.not_after});
  }
  std::sort(due.begin(), due.end(), [](const DueCertificate& a, const DueCertificate& b) {
    return std::tie(a.not_after, a.id) < std::tie(b.not_after, b.id);
  });
  Page<DueCertificate> out;
  for (DueCertificate& d : due) {
    if (static_cast<int>(out.items.size()) == limit) {
      out.next_page_token =
          rules::EncodeDueToken(out.items.back().not_after, out.items.back().id);
      break;
    }
    out.items.push_back(std::move(d));
  }
  return out;
}

absl::Status FakeStore::MarkCertificateRevoked(const Scope& scope, CertificateId id,
                                               crypto::RevocationReason reason) {
  RETURN_IF_ERROR(rules::ValidateRevocationReason(reason));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  ASSIGN_OR_RETURN(State::CertificateRow * row, FindCertificate(s, scope, id));
  if (row->certificate.revoked_at.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("certificate ", id, " is already revoked"));
  }
  row->certificate.revoked_at = now;
  row->certificate.revocation_reason = reason;
  Audit(s, scope, now,
        rules::CertificateEvent("MarkCertificateRevoked", row->certificate,
                                absl::StrCat("reason ", crypto::RevocationReasonCode(reason))));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// ChallengeStore

absl::Status FakeStore::PutChallenge(const Scope& scope, absl::string_view token,
                                     absl::string_view key_authorization) {
  RETURN_IF_ERROR(rules::ValidateChallengeToken(token));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto [it, inserted] = s.challenges.try_emplace(
      std::string(token), State::ChallengeRow{scope.tenant, std::string(key_authorization)});
  if (!inserted) {
    if (it->second.tenant == scope.tenant &&
        it->second.key_authorization == key_authorization) {
      return absl::OkStatus();
    }
    return absl::AlreadyExistsError("challenge token is taken");
  }
  Audit(s, scope, now, rules::SimpleEvent("PutChallenge", absl::StrCat("token ", token)));
  return absl::OkStatus();
}

absl::StatusOr<std::string> FakeStore::LookupChallenge(absl::string_view token) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->challenges.find(std::string(token));
  if (it == state_->challenges.end()) return absl::NotFoundError("unknown challenge token");
  return it->second.key_authorization;
}

absl::Status FakeStore::DeleteChallenge(const Scope& scope, absl::string_view token) {
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto it = s.challenges.find(std::string(token));
  if (it == s.challenges.end() || it->second.tenant != scope.tenant) return absl::OkStatus();
  s.challenges.erase(it);
  Audit(s, scope, now, rules::SimpleEvent("DeleteChallenge", absl::StrCat("token ", token)));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// AuditLog

absl::Status FakeStore::AppendAudit(const Scope& scope, const AuditEvent& event) {
  RETURN_IF_ERROR(rules::ValidateAuditEvent(event));
  const absl::Time now = Now();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  Audit(s, scope, now, event);
  return absl::OkStatus();
}

absl::StatusOr<Page<AuditRecord>> FakeStore::ListAudit(const Scope& scope,
                                                       const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  absl::MutexLock lock(&state_->mu);
  Page<AuditRecord> out;
  for (const AuditRecord& r : state_->audit[scope.tenant]) {
    if (r.seq <= after) continue;
    if (static_cast<int>(out.items.size()) == limit) {
      out.next_page_token = rules::EncodeIdToken(out.items.back().seq);
      break;
    }
    out.items.push_back(r);
  }
  return out;
}

absl::Status FakeStore::VerifyAuditChain(const Scope& scope) {
  absl::MutexLock lock(&state_->mu);
  rules::AuditChainVerifier chain(scope.tenant);
  for (const AuditRecord& r : state_->audit[scope.tenant]) {
    RETURN_IF_ERROR(chain.Next(r.seq, r.prev_hash, r.hash, FakeDigest(r)));
  }
  auto head = state_->audit_heads.find(scope.tenant);
  if (head == state_->audit_heads.end()) return chain.Finish(0, "");
  return chain.Finish(head->second.first, head->second.second);
}

// ---------------------------------------------------------------------------------------------
// VaultMaintenance

absl::StatusOr<VaultMaintenance::RewrapProgress> FakeStore::RewrapBatch(const Actor& actor,
                                                                        int max_records) {
  if (max_records < 1) return absl::InvalidArgumentError("max_records must be positive");
  const absl::Time now = Now();
  const std::string& current = envelope_.current_kek_id();
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  RewrapProgress progress;
  std::map<TenantId, int64_t> per_tenant;
  bool left = false;
  // Re-wraps one record unless it is current or the batch is full.
  auto rewrap = [&](SealedKey& sealed, TenantId tenant, const std::string& context) {
    if (sealed.kek_id == current) return absl::OkStatus();
    if (progress.rewrapped == max_records) {
      left = true;
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(sealed, envelope_.Rewrap(sealed, context));
    ++per_tenant[tenant];
    ++progress.rewrapped;
    return absl::OkStatus();
  };
  for (auto& [key, row] : s.keys) {
    RETURN_IF_ERROR(
        rewrap(row.sealed, row.tenant, AccountKeyContext(row.tenant, key.first, key.second)));
    row.info.kek_id = row.sealed.kek_id;
  }
  for (auto& [id, row] : s.certificates) {
    if (!row.sealed.has_value()) continue;
    const TenantId tenant = row.certificate.tenant;
    RETURN_IF_ERROR(rewrap(*row.sealed, tenant, CertificateKeyContext(tenant, id)));
  }
  for (auto& [id, sealed] : s.order_keys) {
    const TenantId tenant = s.orders.at(id).tenant;
    RETURN_IF_ERROR(rewrap(sealed, tenant, OrderKeyContext(tenant, id)));
  }
  for (const auto& [tenant, count] : per_tenant) {
    Audit(s, Scope{tenant, actor}, now,
          rules::SimpleEvent("RewrapKeys", absl::StrCat(count, " data keys re-wrapped under "
                                                        "key-encryption key ", current)));
  }
  progress.done = !left;
  return progress;
}

}  // namespace acmevault::storage
