// FakeStore: construction, test hooks, tenants, identities, challenges, the audit log and
// re-wrapping.
#include "storage/testing/fake_store.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::Audit;
using fake::FakeDigest;
using fake::NoSuch;
using fake::PageOf;
using fake::RequireTenant;
using fake::State;

// ---------------------------------------------------------------------------------------------
// Construction and test hooks

FakeStore::FakeStore(Options options, Envelope envelope, std::shared_ptr<State> state)
    : options_(options), envelope_(std::move(envelope)), state_(std::move(state)) {}

FakeStore::~FakeStore() = default;

int64_t FakeStore::transactions() const { return state_->transactions.load(); }

absl::StatusOr<std::unique_ptr<FakeStore>> FakeStore::Create(Options options, KekSet keks) {
  ASSIGN_OR_RETURN(Envelope envelope, Envelope::Create(std::move(keks)));
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  return std::unique_ptr<FakeStore>(
      new FakeStore(options, std::move(envelope), std::make_shared<State>()));
}

absl::StatusOr<std::unique_ptr<FakeStore>> FakeStore::Reopen(const FakeStore& other,
                                                             Options options, KekSet keks) {
  ASSIGN_OR_RETURN(Envelope envelope, Envelope::Create(std::move(keks)));
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock is null");
  return std::unique_ptr<FakeStore>(new FakeStore(options, std::move(envelope), other.state_));
}

absl::Time FakeStore::Now() const { return TruncateToMicros(options_.clock->Now()); }

absl::Status FakeStore::TamperAuditDetailForTesting(TenantId tenant, int64_t seq,
                                                    std::string detail) {
  fake::StoreLock lock(*state_);
  for (AuditRecord& r : state_->audit[tenant]) {
    if (r.seq == seq) {
      r.event.detail = std::move(detail);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError("no such audit row");
}

absl::Status FakeStore::DeleteAuditRowForTesting(TenantId tenant, int64_t seq) {
  fake::StoreLock lock(*state_);
  auto& rows = state_->audit[tenant];
  auto it =
      std::find_if(rows.begin(), rows.end(), [seq](const AuditRecord& r) { return r.seq == seq; });
  if (it == rows.end()) return absl::NotFoundError("no such audit row");
  rows.erase(it);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// TenantStore

namespace {

absl::Status NameTaken(const State& s, absl::string_view name, TenantId except)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  for (const auto& [id, t] : s.tenants) {
    if (id != except && t.spec.name == name) {
      return rules::TenantNameTaken(name);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Tenant> FakeStore::CreateTenant(const Actor& actor, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
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
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  return state_->tenants.at(scope.tenant);
}

absl::StatusOr<Tenant> FakeStore::FindTenantByName(absl::string_view name) {
  fake::StoreLock lock(*state_);
  for (const auto& [id, t] : state_->tenants) {
    if (t.spec.name == name) return t;
  }
  return absl::NotFoundError(absl::StrCat("tenant \"", name, "\" not found"));
}

absl::StatusOr<Tenant> FakeStore::UpdateTenant(const Scope& scope, const TenantSpec& spec) {
  RETURN_IF_ERROR(rules::ValidateTenantSpec(spec));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.tenants.find(scope.tenant);
  RETURN_IF_ERROR(NameTaken(s, spec.name, scope.tenant));
  it->second.spec = spec;
  it->second.spec.policy.max_key_age = absl::Seconds(absl::ToInt64Seconds(spec.policy.max_key_age));
  it->second.spec.policy.renewal_window =
      absl::Seconds(absl::ToInt64Seconds(spec.policy.renewal_window));
  it->second.updated_at = now;
  Audit(s, scope, now, rules::TenantEvent("UpdateTenant", spec));
  return it->second;
}

absl::Status FakeStore::DisableTenant(const Scope& scope) {
  const absl::Time now = Now();
  State& s = *state_;
  {
    fake::StoreLock lock(s);
    RETURN_IF_ERROR(RequireTenant(s, scope));
    auto it = s.tenants.find(scope.tenant);
    if (it->second.disabled_at.has_value()) return absl::OkStatus();
    it->second.disabled_at = now;
    it->second.updated_at = now;
    Audit(s, scope, now, rules::SimpleEvent("DisableTenant", ""));
  }
  fake::WakeRevoked(s, Revocation{scope.tenant, std::nullopt});
  return absl::OkStatus();
}

absl::StatusOr<Page<Tenant>> FakeStore::ListTenants(const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  fake::StoreLock lock(*state_);
  return PageOf<Tenant>(state_->tenants, after, PageSize(page),
                        [](const Tenant& t) { return std::optional<Tenant>(t); });
}

// ---------------------------------------------------------------------------------------------
// IdentityStore

namespace {

absl::StatusOr<Identity> AddIdentity(State& s, const Scope& scope, absl::Time now,
                                     std::string spiffe_id, std::string token_sha256, Role role,
                                     absl::string_view description,
                                     std::optional<absl::Time> expires_at)
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
  if (expires_at.has_value()) i.expires_at = TruncateToMicros(*expires_at);
  s.identities[i.id] = State::IdentityRow{i, std::move(token_sha256)};
  Audit(s, scope, now,
        i.bearer_token ? rules::TokenAddedEvent(i)
                       : rules::SimpleEvent("AddSpiffeIdentity",
                                            absl::StrCat("identity ", i.id, " ", spiffe_id, " as ",
                                                         RoleName(role))));
  return i;
}

absl::StatusOr<Identity> Authenticate(const State& s, absl::string_view spiffe_id,
                                      absl::string_view token_sha256, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  for (const auto& [id, row] : s.identities) {
    bool match =
        spiffe_id.empty() ? row.token_sha256 == token_sha256 : row.identity.spiffe_id == spiffe_id;
    if (!match || row.identity.revoked_at.has_value()) continue;
    if (row.identity.expires_at.has_value() && *row.identity.expires_at <= now) continue;
    if (s.tenants.at(row.identity.tenant).disabled_at.has_value()) continue;
    return row.identity;
  }
  return absl::NotFoundError(spiffe_id.empty() ? "unknown, revoked or expired token"
                                               : "unknown or revoked SPIFFE ID");
}

}  // namespace

absl::StatusOr<Identity> FakeStore::AddSpiffeIdentity(const Scope& scope,
                                                      absl::string_view spiffe_id, Role role,
                                                      absl::string_view description) {
  RETURN_IF_ERROR(rules::ValidateSpiffeId(spiffe_id));
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  return AddIdentity(*state_, scope, now, std::string(spiffe_id), "", role, description,
                     std::nullopt);
}

absl::StatusOr<Identity> FakeStore::AddTokenIdentity(const Scope& scope,
                                                     absl::string_view token_sha256, Role role,
                                                     absl::string_view description,
                                                     std::optional<absl::Time> expires_at) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  const absl::Time now = Now();
  RETURN_IF_ERROR(rules::ValidateTokenExpiry(expires_at, now));
  fake::StoreLock lock(*state_);
  return AddIdentity(*state_, scope, now, "", std::string(token_sha256), role, description,
                     expires_at);
}

absl::StatusOr<Identity> FakeStore::AuthenticateSpiffe(absl::string_view spiffe_id) {
  if (spiffe_id.empty()) return absl::NotFoundError("unknown or revoked SPIFFE ID");
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  return Authenticate(*state_, spiffe_id, "", now);
}

absl::StatusOr<Identity> FakeStore::AuthenticateToken(absl::string_view token_sha256) {
  RETURN_IF_ERROR(rules::ValidateTokenHash(token_sha256));
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  return Authenticate(*state_, "", token_sha256, now);
}

absl::Status FakeStore::RevokeIdentity(const Scope& scope, IdentityId id) {
  const absl::Time now = Now();
  State& s = *state_;
  {
    fake::StoreLock lock(s);
    RETURN_IF_ERROR(RequireTenant(s, scope));
    auto it = s.identities.find(id);
    if (it == s.identities.end() || it->second.identity.tenant != scope.tenant) {
      return NoSuch("identity", id);
    }
    if (it->second.identity.revoked_at.has_value()) return absl::OkStatus();
    it->second.identity.revoked_at = now;
    Audit(s, scope, now, rules::SimpleEvent("RevokeIdentity", absl::StrCat("identity ", id)));
  }
  fake::WakeRevoked(s, Revocation{scope.tenant, id});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Identity>> FakeStore::ListIdentities(const Scope& scope) {
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  std::vector<Identity> out;
  for (const auto& [id, row] : state_->identities) {
    if (row.identity.tenant == scope.tenant) out.push_back(row.identity);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ChallengeStore

namespace fake {

absl::Status CheckChallengeFree(State& s, const Scope& scope, absl::string_view token,
                                absl::string_view key_authorization) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.challenges.find(std::string(token));
  if (it == s.challenges.end() ||
      (it->second.tenant == scope.tenant && it->second.key_authorization == key_authorization)) {
    return absl::OkStatus();
  }
  return absl::AlreadyExistsError("challenge token is taken");
}

void PutChallengeLocked(State& s, const Scope& scope, absl::Time now, absl::string_view token,
                        absl::string_view key_authorization) {
  auto [it, inserted] = s.challenges.try_emplace(
      std::string(token), State::ChallengeRow{scope.tenant, std::string(key_authorization)});
  if (inserted) {
    Audit(s, scope, now, rules::SimpleEvent("PutChallenge", absl::StrCat("token ", token)));
  }
}

}  // namespace fake

absl::Status FakeStore::PutChallenge(const Scope& scope, absl::string_view token,
                                     absl::string_view key_authorization) {
  RETURN_IF_ERROR(rules::ValidateChallengeToken(token));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(fake::CheckChallengeFree(s, scope, token, key_authorization));
  fake::PutChallengeLocked(s, scope, now, token, key_authorization);
  return absl::OkStatus();
}

absl::StatusOr<std::string> FakeStore::LookupChallenge(absl::string_view token) {
  fake::StoreLock lock(*state_);
  auto it = state_->challenges.find(std::string(token));
  if (it == state_->challenges.end()) return absl::NotFoundError("unknown challenge token");
  return it->second.key_authorization;
}

void fake::DeleteChallengeLocked(State& s, const Scope& scope, absl::Time now,
                                 absl::string_view token) {
  auto it = s.challenges.find(std::string(token));
  if (it == s.challenges.end() || it->second.tenant != scope.tenant) return;
  s.challenges.erase(it);
  Audit(s, scope, now, rules::SimpleEvent("DeleteChallenge", absl::StrCat("token ", token)));
}

absl::Status FakeStore::DeleteChallenge(const Scope& scope, absl::string_view token) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  fake::DeleteChallengeLocked(s, scope, now, token);
  return absl::OkStatus();
}

absl::Status FakeStore::DeleteChallengeFenced(const Scope& scope, const Lease& lease,
                                              absl::string_view token) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  ASSIGN_OR_RETURN(Order * o, fake::FindOrder(s, scope, lease.order));
  RETURN_IF_ERROR(rules::CheckFence(scope, *o, lease, fake::LeaseJob(s, lease)));
  fake::DeleteChallengeLocked(s, scope, now, token);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// AuditLog

absl::Status FakeStore::AppendAudit(const Scope& scope, const AuditEvent& event) {
  RETURN_IF_ERROR(rules::ValidateAuditEvent(event));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  Audit(s, scope, now, event);
  return absl::OkStatus();
}

absl::StatusOr<Page<AuditRecord>> FakeStore::ListAudit(const Scope& scope,
                                                       const PageRequest& page) {
  ASSIGN_OR_RETURN(int64_t after, rules::DecodeIdToken(page.page_token));
  const int limit = PageSize(page);
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
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
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
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

absl::Status FakeStore::CheckHealth() { return absl::OkStatus(); }

absl::StatusOr<VaultMaintenance::RewrapProgress> FakeStore::RewrapBatch(const Actor& actor,
                                                                        int max_records) {
  if (max_records < 1) return absl::InvalidArgumentError("max_records must be positive");
  const absl::Time now = Now();
  const std::string& current = envelope_.current_kek_id();
  State& s = *state_;
  fake::StoreLock lock(s);
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
    if (!row.info.token_object.empty()) continue;  // Nothing wrapped: the token holds it.
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
  for (auto& [tenant, row] : s.eab_keys) {
    RETURN_IF_ERROR(rewrap(row.sealed, tenant, EabKeyContext(tenant, row.id)));
  }
  for (const auto& [tenant, count] : per_tenant) {
    Audit(s, Scope{tenant, actor}, now,
          rules::SimpleEvent("RewrapKeys", absl::StrCat(count,
                                                        " data keys re-wrapped under "
                                                        "key-encryption key ",
                                                        current)));
  }
  progress.done = !left;
  return progress;
}

}  // namespace acmevault::storage
