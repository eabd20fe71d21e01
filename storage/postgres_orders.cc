// PostgresStore: orders, their finalization material and leases (OrderStore).
#include <iterator>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/postgres_rows.h"
#include "storage/postgres_store.h"
#include "storage/rules.h"

namespace acmevault::storage {

using pg::ArrayParam;
using pg::Bytes;
using pg::FirstOf;
using pg::kOrders;
using pg::kSealedColumns;
using pg::Lock;
using pg::Micros;
using pg::OrderOf;
using pg::TimeOf;

namespace {

// What LockLeasedOrderWith read: the order, and what was asked for with it.
struct LockedOrder {
  Order order;
  std::optional<Job> job;            // the lease's job, if it has one
  std::optional<SealedKey> sealed;   // with_sealed: the order's certificate key
  CertificateId certificate_id = 0;  // draw_certificate_id: a fresh certificate id
  std::vector<pqxx::result> then;    // the results of `then`, in order
};

// The leased order, locked, if the lease is still current (rules::CheckLease); the job of a
// job's lease is locked first (pg::LeaseJob), then the order. With the order, if asked: its
// sealed certificate key, and a certificate id drawn for the transaction's certificate (a
// sealed key binds its certificate's id, so the id comes first). Then the statements of `then`,
// which must not depend on what the lease's check decides: they run before it, and a failed
// check returns an error, which rolls them back with the transaction. One round trip for all.
absl::StatusOr<LockedOrder> LockLeasedOrderWith(pqxx::dbtransaction& tx, const Scope& scope,
                                                const Lease& lease, bool with_sealed = false,
                                                bool draw_certificate_id = false,
                                                const std::vector<pg::Sql>& then = {}) {
  std::vector<pg::Sql> reads;
  if (lease.job != 0) {
    reads.push_back({pg::SelectByIdSql(pg::kJobs.name, pg::kJobs.rows.columns, Lock::kForShare),
                     {absl::StrCat(lease.job)}});
  }
  reads.push_back(
      {pg::SelectByIdSql(kOrders.name,
                         with_sealed ? absl::StrCat(kOrders.rows.columns, ", ", kSealedColumns)
                                     : kOrders.rows.columns,
                         Lock::kForUpdate),
       {absl::StrCat(lease.order)}});
  if (draw_certificate_id) reads.push_back({pg::kDrawCertificateId, {}});
  const size_t first_then = reads.size();
  reads.insert(reads.end(), then.begin(), then.end());
  std::vector<pqxx::result> r = pg::Together(tx, reads);
  LockedOrder out;
  size_t i = 0;
  if (lease.job != 0) {
    if (!r[0].empty()) out.job = pg::kJobs.rows.map(r[0][0]);
    i = 1;
  }
  if (r[i].empty()) return pg::NoSuch(kOrders.noun, lease.order);
  out.order = OrderOf(r[i][0]);
  if (with_sealed) out.sealed = pg::SealedKeyOf(r[i][0]);
  if (draw_certificate_id) out.certificate_id = r[++i][0][0].as<int64_t>();
  out.then.assign(std::make_move_iterator(r.begin() + first_then),
                  std::make_move_iterator(r.end()));
  RETURN_IF_ERROR(rules::CheckLease(scope, out.order, lease, out.job ? &*out.job : nullptr));
  return out;
}

absl::StatusOr<Order> LockLeasedOrder(pqxx::dbtransaction& tx, const Scope& scope,
                                      const Lease& lease) {
  ASSIGN_OR_RETURN(LockedOrder locked, LockLeasedOrderWith(tx, scope, lease));
  return std::move(locked.order);
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

// TransitionOrder's move of an order as its lease holder saw it, in one statement: the update
// TransitionOrder makes ($1-$6), made only when the row is as seen (state $9, URL $10, account
// $11, identifiers $12: what its audit row says) and the lease holds (rules::CheckLease: the
// job $7, locked FOR SHARE first as LockLeasedOrderWith locks it, with fencing token $8, not
// failed, of this order; without a job, the order's own token $8). Otherwise it raises
// (av_refuse, FAILED_PRECONDITION), which ends the transaction before its audit row and COMMIT.
std::string TransitionSeenSql(bool with_job) {
  return absl::StrCat(
      with_job ? "WITH j AS (SELECT 1 FROM jobs WHERE id = $7 AND fencing_token = $8 "
                 "AND failed_at IS NULL AND subject = $1::bigint::text FOR SHARE), "
               : "WITH j AS (SELECT 1 WHERE $7::bigint = 0 AND $8::bigint <> 0), ",
      "u AS (UPDATE orders SET state = $2, error = $3, problem_type = $6, "
      "updated_at = av_ts($4), "
      "lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END, "
      "lease_expires_at = CASE WHEN $5 THEN NULL ELSE lease_expires_at END "
      "WHERE id = $1 AND state = $9 AND coalesce(acme_url, '') = $10 AND account_id = $11 "
      "AND identifiers = $12::text[] AND EXISTS (SELECT 1 FROM j)",
      with_job ? "" : " AND fencing_token = $8",
      " RETURNING 1) "
      "SELECT av_refuse('order ' || $1 || ' is not as its lease holder saw it') "
      "FROM (SELECT count(*) AS n FROM u) c WHERE c.n <> 1");
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
        // An id drawn ahead (NewOrder::id): the first attempt inserts under it without looking
        // for an order in flight, which a conflict then shows.
        const bool drawn_ahead = order.id > 0 && order.idempotency_key.empty();
        // Two attempts (three after one with the id drawn ahead): a concurrent creator may win
        // the insert; then its order is joined.
        const int attempts = drawn_ahead ? 3 : 2;
        for (int attempt = 0; attempt < attempts; ++attempt) {
          if (!order.idempotency_key.empty()) {
            pqxx::result r = BoundOrder(tx, order.idempotency_key, now);
            if (!r.empty()) {
              out.order = OrderOf(r[0]);
              RETURN_IF_ERROR(rules::CheckIdempotentJoin(scope, out.order, ids));
              return out;
            }
          }
          OrderId id = order.id;
          if (attempt > 0 || !drawn_ahead) {
            // The order in flight for these identifiers, if any, and an id for a new one (the
            // sealed key binds the order id, so the id is drawn first), in one round trip.
            const std::vector<pqxx::result> found = pg::Together(
                tx, {{absl::StrCat(select_orders,
                                   " WHERE identifiers_hash = ", pg::IdentifiersHashOf(1),
                                   " AND state NOT IN ('valid', 'invalid') AND stalled_at IS NULL"),
                      {id_array}},
                     {pg::kDrawOrderId, {}}});
            if (!found[0].empty()) {
              out.order = OrderOf(found[0][0]);
              return out;
            }
            id = found[1][0][0].as<int64_t>();
          }
          SealedKey sealed;  // empty fields are stored as NULL: no key
          if (order.certificate_key != nullptr) {
            ASSIGN_OR_RETURN(sealed, envelope_.SealPrivateKey(*order.certificate_key,
                                                              OrderKeyContext(scope.tenant, id)));
          }
          // The order's INSERT, sent with what follows it when the creator claims its job.
          std::vector<pg::Sql> statements = {
              {absl::StrCat("INSERT INTO orders (id, tenant_id, account_id, identifiers, state, "
                            "idempotency_key, lease_owner, lease_expires_at, fencing_token, "
                            "error, created_at, updated_at, csr_der, kek_id, wrapped_data_key, "
                            "sealed_private_key, created_by, prefer_dns01, replaces) "
                            "VALUES ($1, $2, $3, $4::text[], 'created', $5, $6, av_ts($7), $14, "
                            "'', av_ts($8), av_ts($8), NULLIF($9::bytea, ''), NULLIF($10, ''), "
                            "NULLIF($11::bytea, ''), NULLIF($12::bytea, ''), NULLIF($13, ''), "
                            "$15, NULLIF($16, '')) "
                            "ON CONFLICT DO NOTHING RETURNING ",
                            kOrders.rows.columns),
               {absl::StrCat(id), absl::StrCat(scope.tenant), absl::StrCat(order.account), id_array,
                pg::NonEmpty(order.idempotency_key), order.lease_owner,
                absl::StrCat(Micros(expires)), absl::StrCat(Micros(now)),
                pg::ByteaText(order.csr_der), sealed.kek_id, pg::ByteaText(sealed.wrapped_data_key),
                pg::ByteaText(sealed.sealed_private_key), scope.actor.identity,
                // The job's lease alone fences an order run by a job (rules::CheckFence refuses
                // the order's own, token 0); the order's lease columns still keep replicas of
                // earlier releases from resuming it while the creator holds the job.
                order.job_kind.empty() ? "1" : "0", order.prefer_dns01 ? "true" : "false",
                order.replaces}}};
          const bool claiming = order.job_released && order.claim.has_value();
          const bool loading = claiming && order.first_step.has_value();
          if (claiming) {
            // The order's work, claimed by its creator when a claim now would take it
            // (av_take_new_job, migration 0030), else claimable at once as below; made only if
            // the order was (a conflict inserted nothing). av_take_new_job holds the claims'
            // advisory lock to the end of the transaction, so the job goes in the order's round
            // trip: under the lock then run the step's reads, one client turn (the key opened,
            // the admission's statements) and COMMIT's round trip.
            const JobClaim& claim = *order.claim;
            statements.push_back(
                {absl::StrCat(
                     "INSERT INTO jobs (tenant_id, kind, subject, ca, not_before, lease_owner, "
                     "lease_expires_at, fencing_token, attempts, last_error, created_at, "
                     "updated_at) SELECT $1, $2, $3, $4, av_ts($5), "
                     "CASE WHEN d.take THEN $6 END, CASE WHEN d.take THEN av_ts($7) END, "
                     "CASE WHEN d.take THEN 1 ELSE 0 END, 0, '', av_ts($5), av_ts($5) "
                     "FROM (SELECT av_take_new_job($1, $4, av_ts($8), $9, $10, $11::text[]) "
                     "AS take WHERE EXISTS (SELECT 1 FROM orders WHERE id = $12)) d RETURNING ",
                     pg::kJobs.rows.columns),
                 {absl::StrCat(scope.tenant), order.job_kind, absl::StrCat(id), order.job_ca,
                  absl::StrCat(Micros(now)), claim.owner,
                  absl::StrCat(Micros(TruncateToMicros(claim.now + claim.lease_duration))),
                  absl::StrCat(Micros(claim.now)), absl::StrCat(claim.per_tenant_limit),
                  absl::StrCat(claim.per_ca_limit), ArrayParam(claim.kinds), absl::StrCat(id)}});
          }
          std::optional<CaHoldRead> hold_ahead;
          if (loading) {
            // The first step's rows, read after the claim (each statement sees what committed
            // before it began, so what committed while the claim waited for its lock is seen,
            // as by LoadOrderStep just after). Reads only: the key is opened and audited, and the
            // admission made, only for a claimed job.
            for (pg::Sql& read : OrderStepReadsSql(scope, now, id)) {
              statements.push_back(std::move(read));
            }
            // The CA hold the step's admission, if it makes one, asks for first (newOrder's,
            // for the order's account and identifiers): read with them, not in a round trip of
            // its own under the claims' lock.
            if (order.first_step->budgets) {
              const CaHoldKey key{order.account, ids, CaRequest::kNewOrder};
              absl::StatusOr<std::vector<std::string>> hold_ids = rules::ValidateCaHold(key);
              if (hold_ids.ok()) {
                hold_ahead = CaHoldRead{key, *std::move(hold_ids), order.first_step->now};
                statements.push_back(CaHoldSql(key, hold_ahead->ids, hold_ahead->now));
              }
            }
          }
          const std::vector<pqxx::result> r = pg::Together(tx, statements);
          if (!r[0].empty()) {
            out.order = OrderOf(r[0][0]);
            out.created = true;
            out.lease = Lease{scope.tenant, out.order.id, order.lease_owner, 1, expires};
            if (claiming) {
              if (r[1].empty()) return absl::InternalError("a new order's job was not made");
              Job job = pg::JobOf(r[1][0]);
              if (job.lease_owner.empty()) {
                pg::Notify(tx, kJobsChannel, order.job_kind);
              } else {
                const absl::Time until =
                    TruncateToMicros(order.claim->now + order.claim->lease_duration);
                JobLease lease{scope.tenant, job.id, order.claim->owner, job.fencing_token, until};
                out.claimed = ClaimedJob{std::move(job), std::move(lease)};
              }
              out.lease.reset();
            } else if (order.job_released) {
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
            if (out.claimed.has_value() && loading) {
              // The first step's load, in this transaction rather than one of its own. One that
              // fails is left to the step (the key's use is audited only once it opened).
              if (hold_ahead.has_value()) hold_ahead->rows = &r.back();
              absl::StatusOr<OrderStepState> first =
                  OrderStepOf(tx, scope, now, out.order, &r[2], OrderStepPurpose(id),
                              &*order.first_step, hold_ahead ? &*hold_ahead : nullptr);
              if (first.ok()) out.first_step = std::make_shared<OrderStepState>(*std::move(first));
            }
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
  // One statement that sets its tenant (pg::kTenantFirst), no transaction block: a caller
  // waiting on an order reads it again when it completes.
  return ReadInTenant<Order>("GetOrder", scope,
                             [&](pqxx::nontransaction& tx, const std::string& tenant) {
                               return FirstOf(tx.exec_prepared(kOrderById, tenant, order), OrderOf,
                                              pg::NoSuch(kOrders.noun, order));
                             });
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
  // Nothing after it in the transaction reads the row: sent with COMMIT.
  pg::ExecWithCommit(
      tx,
      "UPDATE orders SET acme_url = $2, state = 'pending', updated_at = av_ts($3) WHERE id = $1",
      {absl::StrCat(o.id), std::string(url), absl::StrCat(Micros(now))});
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
        // The ledger's rows and the answers, written in the locks' round trip (rolled back
        // should the lease or the order's state refuse the start).
        std::vector<pg::Sql> writes;
        for (size_t i = 0; i < authorizations.size(); ++i) {
          writes.push_back(RecordAuthorizationSql(scope, now, authorizations[i], identifiers[i]));
        }
        for (const ChallengeAnswer& answer : answers) {
          writes.push_back(PutChallengeSql(scope, now, answer.token, answer.key_authorization));
        }
        ASSIGN_OR_RETURN(LockedOrder locked,
                         LockLeasedOrderWith(tx, scope, lease, /*with_sealed=*/false,
                                             /*draw_certificate_id=*/false, writes));
        RETURN_IF_ERROR(RecordOrderUrlIn(tx, scope, now, locked.order, url));
        const std::vector<pqxx::result>& written = locked.then;
        std::vector<Authorization> out;
        for (size_t i = 0; i < authorizations.size(); ++i) {
          out.push_back(
              RecordedAuthorization(tx, scope, now, authorizations[i], identifiers[i], written[i]));
        }
        for (size_t i = 0; i < answers.size(); ++i) {
          RETURN_IF_ERROR(PutChallengeAnswered(tx, scope, now, answers[i].token,
                                               answers[i].key_authorization,
                                               written[authorizations.size() + i]));
        }
        return out;
      });
}

absl::Status PostgresStore::TransitionOrder(const Scope& scope, const Lease& lease, OrderState to,
                                            const OrderFailure& failure, const Order* seen) {
  RETURN_IF_ERROR(rules::ValidateOrderFailure(failure));
  const OrderFailure kept = to == OrderState::kInvalid ? failure : OrderFailure{};
  const absl::Time now = Now();
  // The order as its lease holder saw it, when the move is one that order allows: tried in one
  // round trip (TransitionSeenSql). When the row is not as seen (or the lease no longer holds,
  // or the tenant does not exist), that refuses, and the move is made as below, which answers
  // for the row as it is.
  if (seen != nullptr && seen->id == lease.order && lease.tenant == scope.tenant &&
      seen->state != to && (lease.job != 0 || lease.fencing_token != 0) &&
      rules::CheckOrderTransition(*seen, to).ok()) {
    absl::Status tried =
        InTenant("TransitionOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
          pg::OpenWithCommit(tx);
          pg::ExecWithCommit(
              tx, TransitionSeenSql(lease.job != 0),
              {absl::StrCat(seen->id), std::string(OrderStateName(to)), kept.error,
               absl::StrCat(Micros(now)), IsTerminal(to) ? "true" : "false", kept.problem_type,
               absl::StrCat(lease.job), absl::StrCat(lease.fencing_token),
               std::string(OrderStateName(seen->state)), seen->acme_url,
               absl::StrCat(seen->account), ArrayParam(seen->identifiers)});
          Audit(tx, scope, now,
                rules::OrderEvent("TransitionOrder", *seen,
                                  rules::TransitionDetail(seen->state, to, failure.error)));
          return absl::OkStatus();
        });
    if (!absl::IsFailedPrecondition(tried)) return tried;
  }
  return InTenant("TransitionOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Order o, LockLeasedOrder(tx, scope, lease));
    RETURN_IF_ERROR(rules::CheckOrderTransition(o, to));
    if (o.state == to) return absl::OkStatus();
    // A terminal order needs no lease any more. Nothing reads the update's answer, and
    // nothing after it in the transaction reads the row: sent with COMMIT.
    pg::ExecWithCommit(
        tx,
        "UPDATE orders SET state = $2, error = $3, problem_type = $6, updated_at = av_ts($4), "
        "lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END, "
        "lease_expires_at = CASE WHEN $5 THEN NULL ELSE lease_expires_at END WHERE id = $1",
        {absl::StrCat(o.id), std::string(OrderStateName(to)), kept.error, absl::StrCat(Micros(now)),
         IsTerminal(to) ? "true" : "false", kept.problem_type});
    Audit(tx, scope, now,
          rules::OrderEvent("TransitionOrder", o,
                            rules::TransitionDetail(o.state, to, failure.error)));
    return absl::OkStatus();
  });
}

absl::StatusOr<Certificate> PostgresStore::CompleteOrderIn(pqxx::dbtransaction& tx,
                                                           const Scope& scope, absl::Time now,
                                                           const Order& o,
                                                           const NewCertificate& linked,
                                                           CertificateId certificate_id) {
  ASSIGN_OR_RETURN(Certificate out, InsertCertificateIn(tx, scope, linked, now, certificate_id));
  // Nothing after it in the transaction reads the row: sent with COMMIT.
  pg::ExecWithCommit(
      tx,
      "UPDATE orders SET state = 'valid', certificate_id = $2, updated_at = av_ts($3), "
      "lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
      {absl::StrCat(o.id), absl::StrCat(out.id), absl::StrCat(Micros(now))});
  Audit(tx, scope, now, rules::OrderEvent("CompleteOrder", o, absl::StrCat("certificate ", out.id)));
  return out;
}

absl::StatusOr<Certificate> PostgresStore::CompleteOrder(const Scope& scope, const Lease& lease,
                                                         const NewCertificate& certificate) {
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(certificate));
  const absl::Time now = Now();
  absl::StatusOr<Certificate> out = InTenant<Certificate>(
      "CompleteOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Certificate> {
        ASSIGN_OR_RETURN(LockedOrder locked,
                         LockLeasedOrderWith(tx, scope, lease, /*with_sealed=*/false,
                                             /*draw_certificate_id=*/true));
        const Order& o = locked.order;
        RETURN_IF_ERROR(rules::CheckCompletable(o));
        NewCertificate linked = c;
        linked.order = o.id;
        if (!linked.account.has_value()) linked.account = o.account;
        return CompleteOrderIn(tx, scope, now, o, linked, locked.certificate_id);
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
        return LoadOrderStepIn(tx, scope, now, order, purpose, admission);
      });
}

absl::StatusOr<OrderStepState> PostgresStore::LoadOrderStepIn(pqxx::dbtransaction& tx,
                                                              const Scope& scope, absl::Time now,
                                                              OrderId order,
                                                              absl::string_view purpose,
                                                              const StepAdmission* admission) {
  // The order and the rest of the step's rows, in one round trip.
  std::vector<pg::Sql> reads = {
      {pg::SelectByIdSql(kOrders.name, kOrders.rows.columns, Lock::kNone), {absl::StrCat(order)}}};
  for (pg::Sql& read : OrderStepReadsSql(scope, now, order)) reads.push_back(std::move(read));
  const std::vector<pqxx::result> r = pg::Together(tx, reads);
  if (r[0].empty()) return pg::NoSuch(kOrders.noun, order);
  return OrderStepOf(tx, scope, now, OrderOf(r[0][0]), &r[1], purpose, admission);
}

std::vector<pg::Sql> PostgresStore::OrderStepReadsSql(const Scope& scope, absl::Time now,
                                                      OrderId order) {
  AuthorizationFilter filter;
  filter.order = order;
  const std::string id = absl::StrCat(order);
  return {{absl::StrCat("SELECT ", pg::kAccounts.rows.columns,
                        " FROM accounts WHERE id = "
                        "(SELECT account_id FROM orders WHERE id = $1)"),
           {id}},
          {pg::SelectByIdSql(pg::kTenants.name, pg::kTenants.rows.columns, Lock::kNone),
           {absl::StrCat(scope.tenant)}},
          OutstandingAuthorizationsSql(now, filter),
          {ActiveKeyOfOrderSql(), {id}}};
}

absl::StatusOr<OrderStepState> PostgresStore::OrderStepOf(
    pqxx::dbtransaction& tx, const Scope& scope, absl::Time now, Order order, const pqxx::result* r,
    absl::string_view purpose, const StepAdmission* admission, const CaHoldRead* hold_ahead) {
  OrderStepState out;
  out.order = std::move(order);
  if (r[0].empty()) return pg::NoSuch(pg::kAccounts.noun, out.order.account);
  out.account = pg::kAccounts.rows.map(r[0][0]);
  if (r[1].empty()) return pg::NoSuch(pg::kTenants.noun, scope.tenant);
  out.tenant = pg::kTenants.rows.map(r[1][0]);
  out.authorizations = pg::AllOf(r[2], pg::AuthorizationOf);
  // No active key, or one not usable, is a state the step explains.
  if (rules::OrderStepUsesKey(out.order, out.account) && !r[3].empty()) {
    absl::StatusOr<UnsealedAccountKey> key =
        UnsealKeyRowIn(tx, scope, now, out.account.id, r[3][0], purpose);
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
                                     admission->now, hold_ahead);
    out.admission_budgets = std::move(request->budgets);
  }
  return out;
}

absl::StatusOr<Certificate> PostgresStore::FinishOrder(const Scope& scope, const Lease& lease,
                                                       const OrderCompletion& completion) {
  RETURN_IF_ERROR(rules::ValidateOrderCompletion(lease, completion));
  ASSIGN_OR_RETURN(NewCertificate c, rules::ValidateNewCertificate(completion.certificate));
  const absl::Time now = Now();
  absl::StatusOr<Certificate> finished = InTenant<Certificate>(
      "FinishOrder", scope, [&](pqxx::dbtransaction& tx) -> absl::StatusOr<Certificate> {
        // The order with its sealed key, the certificate's id, the ledger's deactivations and
        // the answers' removal, in one round trip (the two writes are rolled back should the
        // lease or the order's state refuse the completion).
        std::vector<pg::Sql> cleanup;
        for (const std::string& url : completion.deactivated_authorizations) {
          cleanup.push_back(OrderDeactivationSql(now, lease.order, url));
        }
        for (const std::string& token : completion.challenge_tokens) {
          cleanup.push_back(ChallengeDeletionSql(token));
        }
        ASSIGN_OR_RETURN(LockedOrder locked,
                         LockLeasedOrderWith(tx, scope, lease, /*with_sealed=*/true,
                                             /*draw_certificate_id=*/true, cleanup));
        const Order& o = locked.order;
        RETURN_IF_ERROR(rules::CheckCompletable(o));
        if (!locked.job.has_value()) return absl::InternalError("a checked job lease had no job");
        std::optional<crypto::PrivateKey> key;
        if (o.has_certificate_key && locked.sealed.has_value()) {
          ASSIGN_OR_RETURN(
              key, envelope_.OpenPrivateKey(*locked.sealed, OrderKeyContext(scope.tenant, o.id)));
          Audit(tx, scope, now,
                rules::OrderEvent("UseCertificateKey", o, absl::StrCat("order ", o.id)));
        }
        NewCertificate linked = c;
        linked.order = o.id;
        if (!linked.account.has_value()) linked.account = o.account;
        linked.private_key = key ? &*key : nullptr;
        ASSIGN_OR_RETURN(Certificate out,
                         CompleteOrderIn(tx, scope, now, o, linked, locked.certificate_id));
        // RFC 8555 §7.1.6: the CA made the order valid, so each of its authorizations is.
        // Sent with COMMIT: a deactivation made with the locks leaves its row deactivated
        // either way.
        pg::ExecWithCommit(tx,
                           "UPDATE authorizations SET status = 'valid', updated_at = av_ts($2) "
                           "WHERE order_id = $1 AND status = 'pending' AND deactivated_at IS NULL",
                           {absl::StrCat(o.id), absl::StrCat(Micros(now))});
        // The ledger's deactivations and the answers' removal, made with the locks.
        size_t i = 0;
        for (const std::string& url : completion.deactivated_authorizations) {
          AuditDeactivation(tx, scope, now, o.account, url, locked.then[i++]);
        }
        for (const std::string& token : completion.challenge_tokens) {
          AuditChallengeDeletion(tx, scope, now, token, locked.then[i++]);
        }
        // CompleteJob's write, sent with COMMIT: the job is locked and its fencing token
        // checked (LockLeasedOrderWith), so it deletes that row.
        pg::ExecWithCommit(
            tx, "DELETE FROM jobs WHERE id = $1 AND fencing_token = $2 AND failed_at IS NULL",
            {absl::StrCat(lease.job), absl::StrCat(lease.fencing_token)});
        pg::Notify(tx, kJobNoticeChannel,
                   rules::EncodeJobNotice(
                       JobNotice{scope.tenant, locked.job->kind, locked.job->subject, false}));
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
