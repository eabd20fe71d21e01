// PostgresStore: orders, their finalization material and leases (OrderStore).
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::Bytes;
using pg::FirstOf;
using pg::GetById;
using pg::kOrders;
using pg::kSealedColumns;
using pg::Lock;
using pg::Micros;
using pg::Nullable;
using pg::OrderOf;
using pg::TimeOf;

namespace {

// The leased order, locked, if the lease is still current (rules::CheckLease); the job of a
// job's lease is locked first, then the order.
absl::StatusOr<Order> LockLeasedOrder(pqxx::dbtransaction& tx, const Scope& scope,
                                      const Lease& lease) {
  ASSIGN_OR_RETURN(std::optional<Job> job, pg::LeaseJob(tx, lease));
  ASSIGN_OR_RETURN(Order o, GetById(tx, kOrders, lease.order, Lock::kForUpdate));
  RETURN_IF_ERROR(rules::CheckLease(scope, o, lease, job ? &*job : nullptr));
  return o;
}

// The order `key` binds at `now` (rules::IdempotencyKeyBinds, here in the query: the expiry is
// the query's, not an index's, so an expired key finds nothing whatever rows remain).
pqxx::result BoundOrder(pqxx::dbtransaction& tx, absl::string_view key, absl::Time now) {
  return pg::Exec(tx,
      absl::StrCat("SELECT ", kOrders.rows.columns,
                   " FROM orders o WHERE idempotency_key = $1 AND created_at > av_ts($2) "
                   "AND NOT (state = 'valid' AND EXISTS (SELECT 1 FROM certificates c "
                   "WHERE c.id = o.certificate_id "
                   "AND (c.revoked_at IS NOT NULL OR c.not_after <= av_ts($3)))) "
                   "ORDER BY created_at DESC, id DESC LIMIT 1"),
      std::string(key), Micros(now - kIdempotencyKeyLifetime), Micros(now));
}

}  // namespace

absl::StatusOr<CreateOrderResult> PostgresStore::CreateOrJoinOrder(const Scope& scope,
                                                                   const NewOrder& order) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, rules::ValidateNewOrder(order));
  const absl::Time now = Now();
  const absl::Time expires = TruncateToMicros(now + order.lease_duration);
  const std::string id_array = ArrayParam(ids);
  const std::string select_orders = absl::StrCat("SELECT ", kOrders.rows.columns, " FROM orders");
  return InTenant<CreateOrderResult>(
      "CreateOrJoinOrder", scope,
      [&](pqxx::dbtransaction& tx) -> absl::StatusOr<CreateOrderResult> {
        CreateOrderResult out;
        // Two attempts: a concurrent creator may win the insert; then its order is joined.
        for (int attempt = 0; attempt < 2; ++attempt) {
          if (!order.idempotency_key.empty()) {
            pqxx::result r = BoundOrder(tx, order.idempotency_key, now);
            if (!r.empty()) {
              out.order = OrderOf(r[0]);
              RETURN_IF_ERROR(rules::CheckIdempotentJoin(scope, out.order, ids));
              return out;
            }
          }
          pqxx::result r = pg::Exec(
              tx,
              absl::StrCat(select_orders, " WHERE identifiers_hash = ", pg::IdentifiersHashOf(1),
                           " AND state NOT IN ('valid', 'invalid') AND stalled_at IS NULL"),
              id_array);
          if (!r.empty()) {
            out.order = OrderOf(r[0]);
            return out;
          }
          // The sealed key binds the order id, so the id is drawn first.
          OrderId id = pg::Exec1(tx, "SELECT nextval(pg_get_serial_sequence('orders', 'id'))")[0]
                           .as<int64_t>();
          SealedKey sealed;  // empty fields are stored as NULL: no key
          if (order.certificate_key != nullptr) {
            ASSIGN_OR_RETURN(sealed, envelope_.SealPrivateKey(*order.certificate_key,
                                                              OrderKeyContext(scope.tenant, id)));
          }
          r = pg::Exec(tx,
              absl::StrCat("INSERT INTO orders (id, tenant_id, account_id, identifiers, state, "
                           "idempotency_key, lease_owner, lease_expires_at, fencing_token, error, "
                           "created_at, updated_at, csr_der, kek_id, wrapped_data_key, "
                           "sealed_private_key, created_by, prefer_dns01, replaces) "
                           "VALUES ($1, $2, $3, $4::text[], 'created', $5, $6, av_ts($7), $14, '', "
                           "av_ts($8), av_ts($8), NULLIF($9::bytea, ''), NULLIF($10, ''), "
                           "NULLIF($11::bytea, ''), NULLIF($12::bytea, ''), NULLIF($13, ''), $15, "
                           "NULLIF($16, '')) "
                           "ON CONFLICT DO NOTHING RETURNING ",
                           kOrders.rows.columns),
              id, scope.tenant, order.account, id_array,
              Nullable(pg::NonEmpty(order.idempotency_key)), order.lease_owner, Micros(expires),
              Micros(now), Bytes(order.csr_der), sealed.kek_id, Bytes(sealed.wrapped_data_key),
              Bytes(sealed.sealed_private_key), scope.actor.identity,
              // The job's lease alone fences an order run by a job (rules::CheckFence refuses
              // the order's own, token 0); the order's lease columns still keep replicas of
              // earlier releases from resuming it while the creator holds the job.
              order.job_kind.empty() ? 1 : 0, order.prefer_dns01, order.replaces);
          if (!r.empty()) {
            out.order = OrderOf(r[0]);
            out.created = true;
            out.lease = Lease{scope.tenant, out.order.id, order.lease_owner, 1, expires};
            if (order.job_released) {
              // The order's work, claimable at once (as ScheduleJob makes a job).
              // Nothing reads its answer: sent with COMMIT.
              pg::ExecWithCommit(
                  tx,
                  "INSERT INTO jobs (tenant_id, kind, subject, ca, not_before, fencing_token, "
                  "attempts, last_error, created_at, updated_at) "
                  "VALUES ($1, $2, $3, $4, av_ts($5), 0, 0, '', av_ts($5), av_ts($5))",
                  {absl::StrCat(scope.tenant), order.job_kind, absl::StrCat(id), order.job_ca,
                   absl::StrCat(Micros(now))});
              pg::Notify(tx, kJobsChannel, order.job_kind);
              out.lease.reset();
            } else if (!order.job_kind.empty()) {
              // The order's work, leased to its creator (a job's first claim: token 1).
              out.lease->job =
                  pg::Exec1(tx,
                        "INSERT INTO jobs (tenant_id, kind, subject, ca, not_before, lease_owner, "
                        "lease_expires_at, fencing_token, attempts, last_error, created_at, "
                        "updated_at) VALUES ($1, $2, $3, $4, av_ts($5), $6, av_ts($7), 1, 0, '', "
                        "av_ts($5), av_ts($5)) RETURNING id",
                        scope.tenant, order.job_kind, absl::StrCat(id), order.job_ca,
                        Micros(now), order.lease_owner, Micros(expires))[0]
                      .as<int64_t>();
            }
            Audit(tx, scope, now, rules::OrderEvent("CreateOrder", out.order, ""));
            return out;
          }
        }
        if (!order.idempotency_key.empty()) {
          // Not a race lost twice, but the key's order from more than a day ago, in flight.
          pqxx::result r = pg::Exec(tx,
              "SELECT id FROM orders WHERE idempotency_key = $1 "
              "AND state NOT IN ('valid', 'invalid')",
              order.idempotency_key);
          if (!r.empty()) return rules::IdempotencyKeyInFlight(r[0][0].as<int64_t>());
        }
        return absl::AbortedError("order creation kept conflicting; retry");
      });
}

absl::StatusOr<Order> PostgresStore::GetOrder(const Scope& scope, OrderId order) {
  return InTenant<Order>("GetOrder", scope,
                         [&](pqxx::dbtransaction& tx) { return GetById(tx, kOrders, order); });
}

absl::StatusOr<Order> PostgresStore::FindOrderByIdempotencyKey(const Scope& scope,
                                                               absl::string_view key) {
  const absl::Time now = Now();
  return InTenant<Order>("FindOrderByIdempotencyKey", scope, [&](pqxx::dbtransaction& tx) {
    return FirstOf(BoundOrder(tx, key, now), OrderOf,
                   absl::NotFoundError("no order with this idempotency key"));
  });
}

absl::StatusOr<crypto::PrivateKey> PostgresStore::GetOrderCertificateKey(
    const Scope& scope, OrderId order, absl::string_view purpose) {
  const absl::Time now = Now();
  return InTenant<crypto::PrivateKey>(
      "GetOrderCertificateKey", scope,
      [&](pqxx::dbtransaction& tx) -> absl::StatusOr<crypto::PrivateKey> {
        ASSIGN_OR_RETURN(pqxx::row r, pg::GetRowById(tx, kOrders, order, kSealedColumns));
        std::optional<SealedKey> sealed = pg::SealedKeyOf(r);
        if (!sealed.has_value()) {
          return absl::NotFoundError(
              absl::StrCat("order ", order, " has no stored certificate key"));
        }
        ASSIGN_OR_RETURN(crypto::PrivateKey key,
                         envelope_.OpenPrivateKey(*sealed, OrderKeyContext(scope.tenant, order)));
        Audit(tx, scope, now,
              rules::OrderEvent("UseCertificateKey", OrderOf(r), std::string(purpose)));
        return key;
      });
}

absl::Status PostgresStore::AttachOrderMaterial(const Scope& scope, const Lease& lease,
                                                absl::string_view csr_der,
                                                const crypto::PrivateKey* certificate_key) {
  RETURN_IF_ERROR(rules::ValidateOrderCsr(csr_der));
  const absl::Time now = Now();
  return InTenant("AttachOrderMaterial", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    RETURN_IF_ERROR(rules::CheckMaterialAttachable(o));
    SealedKey sealed;  // empty fields are stored as NULL: no key
    if (certificate_key != nullptr) {
      ASSIGN_OR_RETURN(sealed, envelope_.SealPrivateKey(*certificate_key,
                                                        OrderKeyContext(scope.tenant, o.id)));
    }
    // The guard (migration 0009) admits this once, while the order is created and bare.
    pg::Exec0(tx,
        "UPDATE orders SET csr_der = $2::bytea, kek_id = NULLIF($3, ''), "
        "wrapped_data_key = NULLIF($4::bytea, ''), sealed_private_key = NULLIF($5::bytea, ''), "
        "updated_at = av_ts($6) WHERE id = $1",
        o.id, Bytes(csr_der), sealed.kek_id, Bytes(sealed.wrapped_data_key),
        Bytes(sealed.sealed_private_key), Micros(now));
    Audit(tx, scope, now,
          rules::OrderEvent("AttachOrderMaterial", o,
                            certificate_key != nullptr ? "CSR and certificate key" : "CSR"));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::RecordOrderUrlIn(pqxx::dbtransaction& tx, const Scope& scope,
                                             absl::Time now, Order& o, absl::string_view url) {
  ASSIGN_OR_RETURN(bool write, rules::OrderUrlNeedsWrite(o, url));
  if (!write) return absl::OkStatus();
  pg::Exec0(tx,
      "UPDATE orders SET acme_url = $2, state = 'pending', updated_at = av_ts($3) WHERE id = $1",
      o.id, std::string(url), Micros(now));
  o.acme_url = std::string(url);
  Audit(tx, scope, now, rules::OrderEvent("RecordOrderUrl", o, ""));
  return absl::OkStatus();
}

absl::Status PostgresStore::RecordOrderUrl(const Scope& scope, const Lease& lease,
                                           absl::string_view url) {
  RETURN_IF_ERROR(rules::ValidateUrl("order URL", url));
  const absl::Time now = Now();
  return InTenant("RecordOrderUrl", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    return RecordOrderUrlIn(tx, scope, now, o, url);
  });
}

absl::StatusOr<std::vector<Authorization>> PostgresStore::RecordOrderStart(
    const Scope& scope, const Lease& lease, absl::string_view url,
    const std::vector<AuthorizationRecord>& authorizations,
    const std::vector<ChallengeAnswer>& answers) {
  ASSIGN_OR_RETURN(std::vector<std::string> identifiers,
                   rules::ValidateOrderStart(url, authorizations, answers));
  const absl::Time now = Now();
  return InTenant<std::vector<Authorization>>(
      "RecordOrderStart", scope,
      [&](pqxx::dbtransaction& tx) -> absl::StatusOr<std::vector<Authorization>> {
        ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
        RETURN_IF_ERROR(RecordOrderUrlIn(tx, scope, now, o, url));
        std::vector<Authorization> out;
        for (size_t i = 0; i < authorizations.size(); ++i) {
          out.push_back(RecordAuthorizationIn(tx, scope, now, authorizations[i], identifiers[i]));
        }
        for (const ChallengeAnswer& answer : answers) {
          RETURN_IF_ERROR(PutChallengeIn(tx, scope, now, answer.token, answer.key_authorization));
        }
        return out;
      });
}

absl::Status PostgresStore::TransitionOrder(const Scope& scope, const Lease& lease, OrderState to,
                                            const OrderFailure& failure) {
  RETURN_IF_ERROR(rules::ValidateOrderFailure(failure));
  const OrderFailure kept = to == OrderState::kInvalid ? failure : OrderFailure{};
  const absl::Time now = Now();
  return InTenant("TransitionOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    RETURN_IF_ERROR(rules::CheckOrderTransition(o, to));
    if (o.state == to) return absl::OkStatus();
    // A terminal order needs no lease any more.
    pg::Exec0(tx,
        "UPDATE orders SET state = $2, error = $3, problem_type = $6, updated_at = av_ts($4), "
        "lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END, "
        "lease_expires_at = CASE WHEN $5 THEN NULL ELSE lease_expires_at END WHERE id = $1",
        o.id, std::string(OrderStateName(to)), kept.error, Micros(now), IsTerminal(to),
        kept.problem_type);
    Audit(tx, scope, now,
          rules::OrderEvent("TransitionOrder", o,
                            rules::TransitionDetail(o.state, to, failure.error)));
    return absl::OkStatus();
  });
}

absl::StatusOr<Certificate> PostgresStore::CompleteOrderIn(pqxx::dbtransaction& tx,
                                                           const Scope& scope, absl::Time now,
                                                           const Order& o,
                                                           const NewCertificate& linked) {
  ASSIGN_OR_RETURN(Certificate out, InsertCertificateIn(tx, scope, linked, now));
  pg::Exec0(tx,
      "UPDATE orders SET state = 'valid', certificate_id = $2, updated_at = av_ts($3), "
      "lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
      o.id, out.id, Micros(now));
  Audit(tx, scope, now, rules::OrderEvent("CompleteOrder", o, absl::StrCat("certificate ", out.id)));
  return out;
}

absl::StatusOr<Certificate> PostgresStore::CompleteOrder(const Scope& scope, const Lease& lease,
                                                         const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  absl::StatusOr<Certificate> out = InTenant<Certificate>(
      "CompleteOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Certificate> {
        ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
        RETURN_IF_ERROR(rules::CheckCompletable(o));
        NewCertificate linked = c;
        linked.order = o.id;
        if (!linked.account.has_value()) linked.account = o.account;
        return CompleteOrderIn(tx, scope, now, o, linked);
      });
  if (out.ok()) CertificatesChangedHere(scope);
  return out;
}

absl::StatusOr<OrderStepState> PostgresStore::LoadOrderStep(const Scope& scope, OrderId order,
                                                            absl::string_view purpose,
                                                            const StepAdmission* admission) {
  const absl::Time now = Now();
  return InTenant<OrderStepState>(
      "LoadOrderStep", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<OrderStepState> {
        OrderStepState out;
        ASSIGN_OR_RETURN(out.order, GetById(tx, kOrders, order));
        ASSIGN_OR_RETURN(out.account, GetById(tx, pg::kAccounts, out.order.account));
        ASSIGN_OR_RETURN(out.tenant, GetById(tx, pg::kTenants, scope.tenant));
        AuthorizationFilter filter;
        filter.order = order;
        out.authorizations = OutstandingAuthorizationsIn(tx, now, filter);
        if (rules::OrderStepUsesKey(out.order, out.account)) {
          absl::StatusOr<UnsealedAccountKey> key =
              UnsealKeyIn(tx, scope, now, out.account.id, std::nullopt, purpose);
          if (key.ok()) {
            out.key = *std::move(key);
          } else if (!absl::IsNotFound(key.status()) && !absl::IsFailedPrecondition(key.status())) {
            return key.status();  // DATA_LOSS: not a state a step can explain
          }
        }
        ASSIGN_OR_RETURN(std::optional<rules::AdmissionRequest> request,
                         rules::StepAdmissionOf(admission, out));
        if (request.has_value()) {
          out.admission = AdmitCaRequestIn(tx, scope, request->key, request->ids, request->budgets,
                                           admission->now);
          out.admission_budgets = std::move(request->budgets);
        }
        return out;
      });
}

absl::StatusOr<Certificate> PostgresStore::FinishOrder(const Scope& scope, const Lease& lease,
                                                       const OrderCompletion& completion) {
  RETURN_IF_ERROR(rules::ValidateOrderCompletion(lease, completion));
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(completion.certificate));
  const absl::Time now = Now();
  absl::StatusOr<Certificate> finished = InTenant<Certificate>(
      "FinishOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Certificate> {
        ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
        RETURN_IF_ERROR(rules::CheckCompletable(o));
        std::optional<crypto::PrivateKey> key;
        if (o.has_certificate_key) {
          ASSIGN_OR_RETURN(pqxx::row r, pg::GetRowById(tx, kOrders, o.id, kSealedColumns));
          std::optional<SealedKey> sealed = pg::SealedKeyOf(r);
          if (sealed.has_value()) {
            ASSIGN_OR_RETURN(key, envelope_.OpenPrivateKey(*sealed,
                                                           OrderKeyContext(scope.tenant, o.id)));
            Audit(tx, scope, now,
                  rules::OrderEvent("UseCertificateKey", o, absl::StrCat("order ", o.id)));
          }
        }
        NewCertificate linked = c;
        linked.order = o.id;
        if (!linked.account.has_value()) linked.account = o.account;
        linked.private_key = key ? &*key : nullptr;
        ASSIGN_OR_RETURN(Certificate out, CompleteOrderIn(tx, scope, now, o, linked));
        // RFC 8555 §7.1.6: the CA made the order valid, so each of its authorizations is.
        pg::Exec0(tx,
            "UPDATE authorizations SET status = 'valid', updated_at = av_ts($2) "
            "WHERE order_id = $1 AND status = 'pending' AND deactivated_at IS NULL",
            o.id, Micros(now));
        for (const std::string& url : completion.deactivated_authorizations) {
          MarkAuthorizationDeactivatedIn(tx, scope, now, o.account, url);
        }
        for (const std::string& token : completion.challenge_tokens) {
          DeleteChallengeTx(tx, scope, now, token);
        }
        // CompleteJob's write; LockLeasedOrder has checked its fencing token under a lock.
        pqxx::row job = pg::Exec1(tx,
            "DELETE FROM jobs WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL "
            "RETURNING kind, subject",
            lease.job, lease.fencing_token);
        pg::Notify(tx, kJobNoticeChannel,
                   rules::EncodeJobNotice(JobNotice{scope.tenant, job[0].as<std::string>(),
                                                    job[1].as<std::string>(), false}));
        return out;
      });
  if (finished.ok()) CertificatesChangedHere(scope);
  return finished;
}

absl::StatusOr<std::vector<Lease>> PostgresStore::ClaimStaleOrders(absl::string_view owner,
                                                                   absl::Duration lease_duration,
                                                                   int max_orders) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(owner, lease_duration));
  if (max_orders < 1) return absl::InvalidArgumentError("max_orders must be positive");
  const absl::Time now = Now();
  const absl::Time until = TruncateToMicros(now + lease_duration);
  return AcrossTenants<std::vector<Lease>>("ClaimStaleOrders", [&](pqxx::dbtransaction& tx) {
    std::vector<Lease> out;
    for (const pqxx::row& r :
         pg::Exec(tx, "SELECT tenant_id, order_id, fencing_token, av_us(lease_expires_at) "
                        "FROM av_claim_stale_orders($1, av_ts($2), av_ts($3), $4)",
                        std::string(owner), Micros(now), Micros(until), max_orders)) {
      out.push_back(Lease{r[0].as<int64_t>(), r[1].as<int64_t>(), std::string(owner),
                          r[2].as<int64_t>(), TimeOf(r[3])});
    }
    return out;
  });
}

absl::StatusOr<Lease> PostgresStore::RenewLease(const Scope& scope, const Lease& lease,
                                                absl::Duration lease_duration) {
  RETURN_IF_ERROR(rules::ValidateLeaseRequest(lease.owner, lease_duration));
  const absl::Time now = Now();
  Lease out = lease;
  out.expires_at = TruncateToMicros(now + lease_duration);
  RETURN_IF_ERROR(InTenant("RenewLease", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    pg::Exec0(tx,
        "UPDATE orders SET lease_owner = $2, lease_expires_at = av_ts($3), updated_at = "
        "av_ts($4) WHERE id = $1",
        o.id, lease.owner, Micros(out.expires_at), Micros(now));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status PostgresStore::ReleaseLease(const Scope& scope, const Lease& lease) {
  const absl::Time now = Now();
  return InTenant("ReleaseLease", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    pg::Exec0(tx,
        "UPDATE orders SET lease_owner = NULL, lease_expires_at = NULL, updated_at = av_ts($2) "
        "WHERE id = $1",
        o.id, Micros(now));
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::MarkOrderStalled(const Scope& scope, const Lease& lease,
                                             absl::Time at) {
  const absl::Time now = Now();
  return InTenant("MarkOrderStalled", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    RETURN_IF_ERROR(rules::CheckStallable(o));
    if (o.stalled_at.has_value()) return absl::OkStatus();
    pg::Exec0(tx, "UPDATE orders SET stalled_at = av_ts($2) WHERE id = $1", o.id, Micros(at));
    Audit(tx, scope, now, rules::OrderEvent("StallOrder", o, ""));
    return absl::OkStatus();
  });
}

}  // namespace acmevault::storage
