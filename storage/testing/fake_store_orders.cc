// FakeStore: orders, leases and the authorization ledger (OrderStore, AuthorizationStore).
#include <algorithm>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::Audit;
using fake::FindAccount;
using fake::FindOrder;
using fake::InsertCertificateLocked;
using fake::LeasedOrder;
using fake::RequireTenant;
using fake::State;

// ---------------------------------------------------------------------------------------------
// OrderStore

namespace {

// LoadOrderStep's work, shared with CreateOrJoinOrder (NewOrder::first_step).
absl::StatusOr<OrderStepState> LoadOrderStepLocked(State& s, const Envelope& envelope,
                                                   const Scope& scope, absl::Time now,
                                                   OrderId order, absl::string_view purpose,
                                                   const StepAdmission* admission)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// The order `key` binds in scope.tenant at `now` (rules::IdempotencyKeyBinds), or null.
const Order* BoundOrder(const State& s, const Scope& scope, absl::string_view key, absl::Time now)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  const Order* newest = nullptr;
  for (const auto& [id, o] : s.orders) {
    if (key.empty() || o.tenant != scope.tenant || o.idempotency_key != key) continue;
    if (newest == nullptr ||
        std::tie(o.created_at, o.id) > std::tie(newest->created_at, newest->id)) {
      newest = &o;
    }
  }
  if (newest == nullptr) return nullptr;
  const Certificate* cert = nullptr;
  if (newest->certificate) cert = &s.certificates.at(*newest->certificate).certificate;
  return rules::IdempotencyKeyBinds(*newest, cert, now) ? newest : nullptr;
}

}  // namespace

absl::StatusOr<CreateOrderResult> FakeStore::CreateOrJoinOrder(const Scope& scope,
                                                               const NewOrder& order) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateNewOrder(order));
  fake::WakerSlots wakers;  // woken once the change is made, as a NOTIFY on commit
  absl::StatusOr<CreateOrderResult> created = [&]() -> absl::StatusOr<CreateOrderResult> {
    const absl::Time now = Now();
    State& s = *state_;
    fake::StoreLock lock(s);
    RETURN_IF_ERROR(RequireTenant(s, scope));
    CreateOrderResult out;
    if (const Order* bound = BoundOrder(s, scope, order.idempotency_key, now)) {
      RETURN_IF_ERROR(rules::CheckIdempotentJoin(scope, *bound, ids));
      out.order = *bound;
      return out;
    }
    for (const auto& [id, o] : s.orders) {
      // A stalled order no longer holds its identifier set (orders_one_in_flight).
      if (o.tenant == scope.tenant && o.identifiers == ids && !IsTerminal(o.state) &&
          !o.stalled_at.has_value()) {
        out.order = o;
        return out;
      }
    }
    for (const auto& [id, o] : s.orders) {
      if (o.tenant == scope.tenant && !order.idempotency_key.empty() &&
          o.idempotency_key == order.idempotency_key && !IsTerminal(o.state)) {
        return rules::IdempotencyKeyInFlight(o.id);
      }
    }
    ASSIGN_OR_RETURN(Account * account, FindAccount(s, scope, order.account));
    Order o;
    // An id drawn ahead, when free (as the insert's conflict tells it to PostgresStore); one
    // never drawn is not taken, so that the sequence cannot draw it later.
    o.id = order.id > 0 && order.id < s.next_id && order.idempotency_key.empty() &&
                   !s.orders.contains(order.id)
               ? order.id
               : s.next_id++;
    o.tenant = scope.tenant;
    o.account = account->id;
    o.identifiers = ids;
    o.idempotency_key = order.idempotency_key;
    o.lease_owner = order.lease_owner;
    o.lease_expires_at = TruncateToMicros(now + order.lease_duration);
    o.fencing_token = 1;
    o.created_at = o.updated_at = now;
    o.csr_der = order.csr_der;
    o.created_by = scope.actor.identity;
    o.prefer_dns01 = order.prefer_dns01;
    o.replaces = order.replaces;
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
    if (!order.job_kind.empty()) {
      // The order's work, leased to its creator (a job's first claim: token 1).
      Job j;
      j.id = s.next_id++;
      j.tenant = scope.tenant;
      j.kind = order.job_kind;
      j.subject = absl::StrCat(o.id);
      j.ca = order.job_ca;
      j.not_before = now;
      const bool taken =
          order.claim.has_value() && fake::TakesNewJobLocked(s, scope.tenant, j.ca, *order.claim);
      if (taken) {
        j.lease_owner = order.claim->owner;
        j.lease_expires_at = TruncateToMicros(order.claim->now + order.claim->lease_duration);
        j.fencing_token = 1;
      } else if (!order.job_released) {
        j.lease_owner = order.lease_owner;
        j.lease_expires_at = *o.lease_expires_at;
        j.fencing_token = 1;
      }
      j.created_at = j.updated_at = now;
      s.jobs[j.id] = j;
      s.open_jobs[std::make_tuple(j.tenant, j.kind, j.subject)] = j.id;
      out.lease->job = j.id;
      if (taken) {
        out.lease.reset();
        out.claimed = ClaimedJob{
            j, JobLease{j.tenant, j.id, j.lease_owner, j.fencing_token, *j.lease_expires_at}};
      } else if (order.job_released) {
        out.lease.reset();
        wakers = fake::Wakers(s);
      }
      // The job's lease alone fences the order (rules::CheckFence refuses the order's own).
      s.orders[o.id].fencing_token = 0;
      out.order.fencing_token = 0;
    }
    Audit(s, scope, now, rules::OrderEvent("CreateOrder", o, ""));
    if (out.claimed.has_value() && order.first_step.has_value()) {
      // One that fails is left to the step, as the database's store leaves it.
      absl::StatusOr<OrderStepState> first = LoadOrderStepLocked(
          s, envelope_, scope, now, o.id, OrderStepPurpose(o.id), &*order.first_step);
      if (first.ok()) out.first_step = std::make_shared<OrderStepState>(*std::move(first));
    }
    return out;
  }();
  fake::WakeScheduled(wakers);
  return created;
}

absl::StatusOr<Order> FakeStore::GetOrder(const Scope& scope, OrderId order) {
  fake::StoreLock lock(*state_);
  ASSIGN_OR_RETURN(Order * o, FindOrder(*state_, scope, order));
  return *o;
}

absl::StatusOr<Order> FakeStore::FindOrderByIdempotencyKey(const Scope& scope,
                                                           absl::string_view key) {
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  if (const Order* bound = BoundOrder(*state_, scope, key, now)) return *bound;
  return absl::NotFoundError("no order with this idempotency key");
}

absl::StatusOr<crypto::PrivateKey> FakeStore::GetOrderCertificateKey(const Scope& scope,
                                                                     OrderId order,
                                                                     absl::string_view purpose) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
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

absl::Status FakeStore::AttachOrderMaterial(const Scope& scope, const Lease& lease,
                                            absl::string_view csr_der,
                                            const crypto::PrivateKey* certificate_key) {
  RETURN_IF_ERROR(rules::ValidateOrderCsr(csr_der));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckMaterialAttachable(*o));
  if (certificate_key != nullptr) {
    ASSIGN_OR_RETURN(s.order_keys[o->id], envelope_.SealPrivateKey(
                                              *certificate_key, OrderKeyContext(scope.tenant, o->id)));
    o->has_certificate_key = true;
  }
  o->csr_der = std::string(csr_der);
  o->updated_at = now;
  Audit(s, scope, now,
        rules::OrderEvent("AttachOrderMaterial", *o,
                          certificate_key != nullptr ? "CSR and certificate key" : "CSR"));
  return absl::OkStatus();
}

absl::Status FakeStore::RecordOrderUrl(const Scope& scope, const Lease& lease,
                                       absl::string_view url) {
  RETURN_IF_ERROR(rules::ValidateUrl("order URL", url));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
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
                                        const OrderFailure& failure, const Order* /*seen*/) {
  RETURN_IF_ERROR(rules::ValidateOrderFailure(failure));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckOrderTransition(*o, to));
  if (o->state == to) return absl::OkStatus();
  Order before = *o;
  o->state = to;
  const bool failed = to == OrderState::kInvalid;
  o->error = failed ? failure.error : "";
  o->problem_type = failed ? failure.problem_type : "";
  o->updated_at = now;
  if (IsTerminal(to)) {
    o->lease_owner.clear();
    o->lease_expires_at.reset();
  }
  Audit(s, scope, now,
        rules::OrderEvent("TransitionOrder", before,
                          rules::TransitionDetail(before.state, to, failure.error)));
  return absl::OkStatus();
}

namespace {

// CompleteOrder's write after its checks (`c` names the order), shared with FinishOrder.
absl::StatusOr<Certificate> CompleteOrderLocked(State& s, const Envelope& envelope,
                                                const Scope& scope, absl::Time now, Order& o,
                                                const NewCertificate& c)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  ASSIGN_OR_RETURN(Certificate out, InsertCertificateLocked(s, envelope, scope, c, now));
  Order before = o;
  o.state = OrderState::kValid;
  o.certificate = out.id;
  o.updated_at = now;
  o.lease_owner.clear();
  o.lease_expires_at.reset();
  Audit(s, scope, now,
        rules::OrderEvent("CompleteOrder", before, absl::StrCat("certificate ", out.id)));
  return out;
}

}  // namespace

absl::StatusOr<Certificate> FakeStore::CompleteOrder(const Scope& scope, const Lease& lease,
                                                     const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  State& s = *state_;
  fake::CertificatesChangedWake changed(s);
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  RETURN_IF_ERROR(rules::CheckCompletable(*o));
  c.order = o->id;
  if (!c.account.has_value()) c.account = o->account;
  absl::StatusOr<Certificate> out = CompleteOrderLocked(s, envelope_, scope, now, *o, c);
  if (out.ok()) changed.Arm(scope.tenant);
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
  fake::StoreLock lock(s);
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
  fake::StoreLock lock(s);
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
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  o->lease_owner.clear();
  o->lease_expires_at.reset();
  o->updated_at = now;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// AuthorizationStore

namespace {

// RecordAuthorization's write after its checks (account and order found; `identifier`
// canonical), shared with RecordOrderStart.
Authorization RecordAuthorizationLocked(State& s, const Scope& scope, absl::Time now,
                                        const AuthorizationRecord& authorization,
                                        const std::string& identifier)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
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
    a.record.identifier = identifier;
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
  e.identifiers = {identifier};
  e.acme_url = authorization.url;
  Audit(s, scope, now, e);
  return *row;
}

// RecordAuthorization's checks: the account and the order (if named) are the tenant's.
absl::Status CheckAuthorizationRecord(State& s, const Scope& scope,
                                      const AuthorizationRecord& authorization)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  RETURN_IF_ERROR(FindAccount(s, scope, authorization.account).status());
  if (authorization.order.has_value()) {
    RETURN_IF_ERROR(FindOrder(s, scope, *authorization.order).status());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Authorization> FakeStore::RecordAuthorization(
    const Scope& scope, const AuthorizationRecord& authorization) {
  RETURN_IF_ERROR(rules::ValidateUrl("authorization URL", authorization.url));
  ASSIGN_OR_RETURN(std::vector<std::string> identifier,
                   CanonicalIdentifiers({authorization.identifier}));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(CheckAuthorizationRecord(s, scope, authorization));
  return RecordAuthorizationLocked(s, scope, now, authorization, identifier[0]);
}

absl::StatusOr<std::vector<Authorization>> FakeStore::RecordOrderStart(
    const Scope& scope, const Lease& lease, absl::string_view url,
    const std::vector<AuthorizationRecord>& authorizations,
    const std::vector<ChallengeAnswer>& answers) {
  ASSIGN_OR_RETURN(std::vector<std::string> identifiers,
                   rules::ValidateOrderStart(url, authorizations, answers));
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  // Every check before any write: all or nothing, as one PostgreSQL transaction.
  ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
  ASSIGN_OR_RETURN(bool write, rules::OrderUrlNeedsWrite(*o, url));
  for (const AuthorizationRecord& a : authorizations) {
    RETURN_IF_ERROR(CheckAuthorizationRecord(s, scope, a));
  }
  for (const ChallengeAnswer& answer : answers) {
    RETURN_IF_ERROR(fake::CheckChallengeFree(s, scope, answer.token, answer.key_authorization));
  }
  if (write) {
    o->acme_url = std::string(url);
    o->state = OrderState::kPending;
    o->updated_at = now;
    Audit(s, scope, now, rules::OrderEvent("RecordOrderUrl", *o, ""));
  }
  std::vector<Authorization> out;
  for (size_t i = 0; i < authorizations.size(); ++i) {
    out.push_back(RecordAuthorizationLocked(s, scope, now, authorizations[i], identifiers[i]));
  }
  for (const ChallengeAnswer& answer : answers) {
    fake::PutChallengeLocked(s, scope, now, answer.token, answer.key_authorization);
  }
  return out;
}

namespace {

// ListOutstandingAuthorizations' work (filter.identifiers canonical), shared with LoadOrderStep.
std::vector<Authorization> OutstandingLocked(const State& s, const Scope& scope, absl::Time now,
                                             const AuthorizationFilter& filter)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  std::vector<Authorization> out;
  for (const auto& [id, a] : s.authorizations) {
    const AuthorizationRecord& r = a.record;
    bool outstanding =
        (r.status == AuthorizationStatus::kPending || r.status == AuthorizationStatus::kValid) &&
        !a.deactivated_at.has_value() && (!r.expires_at.has_value() || *r.expires_at > now);
    bool matches = a.tenant == scope.tenant &&
                   (!filter.account.has_value() || r.account == *filter.account) &&
                   (!filter.order.has_value() || r.order == filter.order) &&
                   (filter.identifiers.empty() ||
                    std::find(filter.identifiers.begin(), filter.identifiers.end(),
                              r.identifier) != filter.identifiers.end()) &&
                   (!filter.id.has_value() || id == *filter.id) &&
                   (!filter.updated_before.has_value() || a.updated_at < *filter.updated_before);
    if (!outstanding || !matches) continue;
    out.push_back(a);
    if (filter.limit > 0 && static_cast<int>(out.size()) >= filter.limit) break;
  }
  return out;
}

absl::StatusOr<OrderStepState> LoadOrderStepLocked(State& s, const Envelope& envelope,
                                                   const Scope& scope, absl::Time now,
                                                   OrderId order, absl::string_view purpose,
                                                   const StepAdmission* admission) {
  OrderStepState out;
  ASSIGN_OR_RETURN(Order * o, FindOrder(s, scope, order));
  out.order = *o;
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, o->account));
  out.account = *a;
  out.tenant = s.tenants.at(scope.tenant);
  AuthorizationFilter filter;
  filter.order = order;
  out.authorizations = OutstandingLocked(s, scope, now, filter);
  if (rules::OrderStepUsesKey(out.order, out.account)) {
    absl::StatusOr<UnsealedAccountKey> key =
        fake::UnsealActiveKeyLocked(s, envelope, scope, a->id, purpose, now);
    if (key.ok()) {
      out.key = *std::move(key);
    } else if (!absl::IsNotFound(key.status()) && !absl::IsFailedPrecondition(key.status())) {
      return key.status();
    }
  }
  ASSIGN_OR_RETURN(std::optional<rules::AdmissionRequest> request,
                   rules::StepAdmissionOf(admission, out));
  if (request.has_value()) {
    out.admission = fake::AdmitCaRequestLocked(s, scope, request->key, request->ids,
                                               request->budgets, admission->now);
    out.admission_budgets = std::move(request->budgets);
  }
  return out;
}

// MarkAuthorizationDeactivated's work, shared with FinishOrder: false (nothing written) when
// the account has no such authorization.
bool MarkDeactivatedLocked(State& s, const Scope& scope, absl::Time now, AccountId account,
                           absl::string_view url) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
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
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<Authorization>> FakeStore::ListOutstandingAuthorizations(
    const Scope& scope, const AuthorizationFilter& filter) {
  AuthorizationFilter canonical = filter;
  if (!filter.identifiers.empty()) {
    ASSIGN_OR_RETURN(canonical.identifiers, CanonicalIdentifiers(filter.identifiers));
  }
  const absl::Time now = Now();
  fake::StoreLock lock(*state_);
  RETURN_IF_ERROR(RequireTenant(*state_, scope));
  return OutstandingLocked(*state_, scope, now, canonical);
}

absl::Status FakeStore::MarkAuthorizationDeactivated(const Scope& scope, AccountId account,
                                                     absl::string_view url) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  if (!MarkDeactivatedLocked(s, scope, now, account, url)) {
    return absl::NotFoundError("no such authorization for this account");
  }
  return absl::OkStatus();
}

absl::StatusOr<OrderStepState> FakeStore::LoadOrderStep(const Scope& scope, OrderId order,
                                                        absl::string_view purpose,
                                                        const StepAdmission* admission) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  RETURN_IF_ERROR(RequireTenant(s, scope));
  return LoadOrderStepLocked(s, envelope_, scope, now, order, purpose, admission);
}

absl::StatusOr<Certificate> FakeStore::FinishOrder(const Scope& scope, const Lease& lease,
                                                   const OrderCompletion& completion) {
  RETURN_IF_ERROR(rules::ValidateOrderCompletion(lease, completion));
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(completion.certificate));
  const absl::Time now = Now();
  State& s = *state_;
  Certificate out;
  JobNotice notice;
  fake::WakerSlots wakers;
  {
    fake::StoreLock lock(s);
    ASSIGN_OR_RETURN(Order * o, LeasedOrder(s, scope, lease));
    RETURN_IF_ERROR(rules::CheckCompletable(*o));
    std::optional<crypto::PrivateKey> key;
    if (auto sealed = s.order_keys.find(o->id); sealed != s.order_keys.end()) {
      ASSIGN_OR_RETURN(key, envelope_.OpenPrivateKey(sealed->second,
                                                     OrderKeyContext(scope.tenant, o->id)));
      Audit(s, scope, now,
            rules::OrderEvent("UseCertificateKey", *o, absl::StrCat("order ", o->id)));
    }
    c.order = o->id;
    if (!c.account.has_value()) c.account = o->account;
    c.private_key = key ? &*key : nullptr;
    const AccountId account = o->account;
    ASSIGN_OR_RETURN(out, CompleteOrderLocked(s, envelope_, scope, now, *o, c));
    for (auto& [id, a] : s.authorizations) {
      if (a.tenant == scope.tenant && a.record.order == out.order &&
          a.record.status == AuthorizationStatus::kPending && !a.deactivated_at.has_value()) {
        a.record.status = AuthorizationStatus::kValid;
        a.updated_at = now;
      }
    }
    for (const std::string& url : completion.deactivated_authorizations) {
      MarkDeactivatedLocked(s, scope, now, account, url);
    }
    for (const std::string& token : completion.challenge_tokens) {
      fake::DeleteChallengeLocked(s, scope, now, token);
    }
    // LeasedOrder checked the job's fencing token.
    notice = fake::DeleteLeasedJobLocked(s, *fake::LeaseJob(s, lease));
    wakers = fake::Wakers(s);
  }
  fake::WakeFinished(wakers, notice);
  fake::WakeCertificatesChanged(s, scope.tenant);
  return out;
}

}  // namespace acmevault::storage
