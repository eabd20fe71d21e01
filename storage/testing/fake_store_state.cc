#include "storage/testing/fake_store_state.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace acmevault::storage::fake {
namespace {

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

}  // namespace

// Four FNV-1a passes with different offsets.
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

void Audit(State& s, const Scope& scope, absl::Time at, const AuditEvent& event) {
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

absl::Status RequireTenant(const State& s, const Scope& scope) {
  if (scope.tenant <= 0) return absl::InvalidArgumentError("no tenant");
  if (s.tenants.count(scope.tenant) == 0) return NoSuch("tenant", scope.tenant);
  return absl::OkStatus();
}

absl::StatusOr<Account*> FindAccount(State& s, const Scope& scope, AccountId id) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.accounts.find(id);
  if (it == s.accounts.end() || it->second.tenant != scope.tenant) return NoSuch("account", id);
  return &it->second;
}

absl::StatusOr<State::KeyRow*> FindKey(State& s, const Scope& scope, AccountId account,
                                       int version) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.keys.find({account, version});
  if (it == s.keys.end() || it->second.tenant != scope.tenant) {
    return absl::NotFoundError(absl::StrCat("account ", account, " has no key version ", version));
  }
  return &it->second;
}

absl::StatusOr<Order*> FindOrder(State& s, const Scope& scope, OrderId id) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.orders.find(id);
  if (it == s.orders.end() || it->second.tenant != scope.tenant) return NoSuch("order", id);
  return &it->second;
}

const Job* LeaseJob(State& s, const Lease& lease) {
  if (lease.job == 0) return nullptr;
  auto it = s.jobs.find(lease.job);
  if (it == s.jobs.end() || it->second.tenant != lease.tenant) return nullptr;
  return &it->second;
}

// The order `lease` is for, if the lease is still current (rules::CheckLease).
absl::StatusOr<Order*> LeasedOrder(State& s, const Scope& scope, const Lease& lease) {
  ASSIGN_OR_RETURN(Order * o, FindOrder(s, scope, lease.order));
  RETURN_IF_ERROR(rules::CheckLease(scope, *o, lease, LeaseJob(s, lease)));
  return o;
}

absl::StatusOr<State::CertificateRow*> FindCertificate(State& s, const Scope& scope,
                                                       CertificateId id) {
  RETURN_IF_ERROR(RequireTenant(s, scope));
  auto it = s.certificates.find(id);
  if (it == s.certificates.end() || it->second.certificate.tenant != scope.tenant) {
    return NoSuch("certificate", id);
  }
  return &it->second;
}

}  // namespace acmevault::storage::fake
