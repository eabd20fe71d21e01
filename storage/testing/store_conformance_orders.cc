// The conformance suite (store_conformance.h): orders, leases and finalization material.
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

namespace {

// Makes `specs` concurrently, one thread each: every call succeeds and exactly one creates
// (the test fails otherwise). Returns the ids of the orders they made or joined.
std::set<OrderId> CreatedAtOnce(Store& store, const Scope& scope,
                                const std::vector<NewOrder>& specs) {
  std::vector<absl::StatusOr<CreateOrderResult>> results(specs.size(),
                                                         absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < specs.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = store.CreateOrJoinOrder(scope, specs[i]); });
  }
  for (std::thread& t : threads) t.join();
  int created = 0;
  std::set<OrderId> ids;
  for (const auto& r : results) {
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) continue;
    created += r->created ? 1 : 0;
    ids.insert(r->order.id);
  }
  EXPECT_EQ(created, 1);
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Orders and leases

TEST_P(StoreConformanceTest, ConcurrentRequestsForTheSameNamesJoinOneOrder) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult first,
      store().CreateOrJoinOrder(
          scope,
          NewOrder{account.id, {"www.alpha.test", "alpha.test"}, "", "r1", absl::Minutes(2)}));
  EXPECT_TRUE(first.created);
  ASSERT_TRUE(first.lease.has_value());
  EXPECT_EQ(first.lease->fencing_token, 1);
  EXPECT_EQ(first.lease->owner, "r1");
  EXPECT_EQ(first.lease->expires_at, clock().Now() + absl::Minutes(2));
  EXPECT_THAT(first.order.identifiers, ElementsAre("alpha.test", "www.alpha.test"));
  EXPECT_EQ(first.order.state, OrderState::kCreated);

  // The same set, in another order and case: joined.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult second,
      store().CreateOrJoinOrder(
          scope,
          NewOrder{account.id, {"ALPHA.test", "www.alpha.test"}, "", "r2", absl::Minutes(2)}));
  EXPECT_FALSE(second.created);
  EXPECT_FALSE(second.lease.has_value());
  EXPECT_EQ(second.order.id, first.order.id);
  EXPECT_EQ(second.order.lease_owner, "r1");
  // A different set: a new order.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult third,
      store().CreateOrJoinOrder(scope,
                                NewOrder{account.id, {"alpha.test"}, "", "r2", absl::Minutes(2)}));
  EXPECT_TRUE(third.created);
  EXPECT_NE(third.order.id, first.order.id);

  // Concurrent callers for one new set: exactly one creates, all see the same order.
  std::vector<NewOrder> specs;
  for (int i = 0; i < 6; ++i) {
    specs.push_back(
        NewOrder{account.id, {"race.alpha.test"}, "", absl::StrCat("t", i), absl::Minutes(2)});
  }
  EXPECT_THAT(CreatedAtOnce(store(), scope, specs), SizeIs(1));
}

// IssueCertificate's first read draws an id for the order it may make (IssueContext::order_id);
// a new order takes it (NewOrder::id). Offered while an order for the names is in flight, or
// when another order holds it, it is not taken: the order in flight is joined, or the new one
// gets an id of its own. Concurrent creators with ids of their own still make one order.
TEST_P(StoreConformanceTest, AnOrderIdDrawnAheadIsTakenOnlyByANewOrderAndOnlyOnce) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  auto spec = [&](std::vector<std::string> names, OrderId id) {
    NewOrder out{account.id, std::move(names), "", "r1", absl::Minutes(2)};
    out.id = id;
    return out;
  };
  ASSERT_OK_AND_ASSIGN(IssueContext first_read, store().LoadIssueContext(scope, {"a.test"}));
  ASSERT_OK_AND_ASSIGN(IssueContext second_read, store().LoadIssueContext(scope, {"a.test"}));
  EXPECT_GT(first_read.order_id, 0);
  EXPECT_NE(second_read.order_id, first_read.order_id);

  ASSERT_OK_AND_ASSIGN(CreateOrderResult made,
                       store().CreateOrJoinOrder(scope, spec({"a.test"}, first_read.order_id)));
  EXPECT_TRUE(made.created);
  EXPECT_EQ(made.order.id, first_read.order_id);
  ASSERT_OK_AND_ASSIGN(Order stored, store().GetOrder(scope, first_read.order_id));
  EXPECT_THAT(stored.identifiers, ElementsAre("a.test"));

  // In flight for the same names: joined; the offered id stays unused.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult joined,
                       store().CreateOrJoinOrder(scope, spec({"a.test"}, second_read.order_id)));
  EXPECT_FALSE(joined.created);
  EXPECT_EQ(joined.order.id, first_read.order_id);
  EXPECT_THAT(store().GetOrder(scope, second_read.order_id), StatusIs(kNotFound));

  // An id another order holds: the new order gets one of its own.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult taken,
                       store().CreateOrJoinOrder(scope, spec({"b.test"}, first_read.order_id)));
  EXPECT_TRUE(taken.created);
  EXPECT_NE(taken.order.id, first_read.order_id);
  EXPECT_THAT(taken.order.identifiers, ElementsAre("b.test"));
  ASSERT_OK_AND_ASSIGN(Order still, store().GetOrder(scope, first_read.order_id));
  EXPECT_THAT(still.identifiers, ElementsAre("a.test"));

  // The unused id is still free for a new order.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult later,
                       store().CreateOrJoinOrder(scope, spec({"c.test"}, second_read.order_id)));
  EXPECT_TRUE(later.created);
  EXPECT_EQ(later.order.id, second_read.order_id);

  // Concurrent creators for one new set, each with an id drawn ahead: one order.
  std::vector<OrderId> drawn;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK_AND_ASSIGN(IssueContext read, store().LoadIssueContext(scope, {"race.test"}));
    drawn.push_back(read.order_id);
  }
  std::vector<NewOrder> specs;
  for (OrderId id : drawn) specs.push_back(spec({"race.test"}, id));
  const std::set<OrderId> ids = CreatedAtOnce(store(), scope, specs);
  ASSERT_THAT(ids, SizeIs(1));
  EXPECT_THAT(drawn, ::testing::Contains(*ids.begin()));
}

TEST_P(StoreConformanceTest, IdempotencyKeyFindsItsOrderEvenWhenDone) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult first,
      store().CreateOrJoinOrder(scope,
                                NewOrder{account.id, {"a.test"}, "req-1", "r1", absl::Minutes(1)}));
  ASSERT_TRUE(first.created);
  ASSERT_OK(store().TransitionOrder(scope, *first.lease, OrderState::kInvalid, {"CA said no"}));
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult again,
      store().CreateOrJoinOrder(scope,
                                NewOrder{account.id, {"a.test"}, "req-1", "r1", absl::Minutes(1)}));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.order.id, first.order.id);
  EXPECT_EQ(again.order.state, OrderState::kInvalid);
  EXPECT_EQ(again.order.error, "CA said no");
  EXPECT_THAT(store().CreateOrJoinOrder(
                  scope, NewOrder{account.id, {"b.test"}, "req-1", "r1", absl::Minutes(1)}),
              StatusIs(kInvalidArgument, "other identifiers"));
  ASSERT_OK_AND_ASSIGN(Order found, store().FindOrderByIdempotencyKey(scope, "req-1"));
  EXPECT_EQ(found.id, first.order.id);
  EXPECT_THAT(store().FindOrderByIdempotencyKey(scope, "req-2"), StatusIs(kNotFound));
  // Without a key, the terminal order does not block a new one.
  ASSERT_OK_AND_ASSIGN(CreateOrderResult fresh,
                       store().CreateOrJoinOrder(
                           scope, NewOrder{account.id, {"a.test"}, "", "r1", absl::Minutes(1)}));
  EXPECT_TRUE(fresh.created);
  // Another tenant's key space is separate.
  Tenant b = MakeTenant("beta");
  EXPECT_THAT(store().FindOrderByIdempotencyKey(ScopeOf(b), "req-1"), StatusIs(kNotFound));
}

// Issue 10: an order's start at the CA (URL, ledger, HTTP-01 answers) is one write fenced by the
// order's lease, all or nothing.
TEST_P(StoreConformanceTest, RecordOrderStartWritesUrlLedgerAndAnswersAllOrNothing) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test", "b.test"});
  ASSERT_OK(store().PutChallenge(ScopeOf(b), "tok-taken", "theirs"));
  const std::string url = "https://ca.test/order/1";
  const std::vector<AuthorizationRecord> records = {
      {account.id, lease.order, "https://ca.test/authz/a", "a.test",
       AuthorizationStatus::kPending, clock().Now() + absl::Hours(1)},
      {account.id, lease.order, "https://ca.test/authz/b", "B.test", AuthorizationStatus::kValid,
       std::nullopt}};
  auto nothing_written = [&] {
    ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
    EXPECT_EQ(o.state, OrderState::kCreated);
    EXPECT_EQ(o.acme_url, "");
    ASSERT_OK_AND_ASSIGN(std::vector<Authorization> ledger,
                         store().ListOutstandingAuthorizations(scope, {}));
    EXPECT_TRUE(ledger.empty());
    EXPECT_THAT(store().LookupChallenge("tok-a"), StatusIs(kNotFound));
  };
  // A token another tenant holds: nothing is written, not even the URL.
  EXPECT_THAT(store().RecordOrderStart(scope, lease, url, records,
                                       {{"tok-a", "ka-a"}, {"tok-taken", "ka-b"}}),
              StatusIs(kAlreadyExists));
  nothing_written();
  // A stale lease writes nothing.
  Lease stale = lease;
  stale.fencing_token += 1;
  EXPECT_THAT(store().RecordOrderStart(scope, stale, url, records, {{"tok-a", "ka-a"}}),
              StatusIs(kFailedPrecondition));
  nothing_written();

  ASSERT_OK_AND_ASSIGN(std::vector<Authorization> recorded,
                       store().RecordOrderStart(scope, lease, url, records, {{"tok-a", "ka-a"}}));
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0].record.url, "https://ca.test/authz/a");
  EXPECT_EQ(recorded[1].record.identifier, "b.test");
  EXPECT_EQ(recorded[1].record.status, AuthorizationStatus::kValid);
  EXPECT_NE(recorded[0].id, recorded[1].id);
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kPending);
  EXPECT_EQ(o.acme_url, url);
  ASSERT_OK_AND_ASSIGN(std::vector<Authorization> ledger,
                       store().ListOutstandingAuthorizations(scope, {}));
  EXPECT_EQ(ledger.size(), 2u);
  ASSERT_OK_AND_ASSIGN(std::string answer, store().LookupChallenge("tok-a"));
  EXPECT_EQ(answer, "ka-a");
  // A resumed step records again under the same URL (its rows updated); another URL is refused.
  ASSERT_OK(store().RecordOrderStart(scope, lease, url, {records[0]}, {{"tok-a", "ka-a"}}).status());
  EXPECT_THAT(store().RecordOrderStart(scope, lease, "https://ca.test/order/2", {}, {}),
              StatusIs(kFailedPrecondition, "another ACME URL"));
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "RecordAuthorization", "RecordAuthorization", "PutChallenge",
                          "RecordAuthorization"));
}

TEST_P(StoreConformanceTest, OrderUrlIsImmutableAndStatesMoveForwardOnly) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test"});
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kReady, {}),
              StatusIs(kFailedPrecondition, "no ACME URL"));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  EXPECT_THAT(store().RecordOrderUrl(scope, lease, "https://ca.test/order/2"),
              StatusIs(kFailedPrecondition, "another ACME URL"));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kPending);
  EXPECT_EQ(o.acme_url, "https://ca.test/order/1");

  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, {}));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, {}));  // a retried call
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kProcessing, {}));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kPending, {}),
              StatusIs(kFailedPrecondition, "cannot go from processing to pending"));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kValid, {}),
              StatusIs(kInvalidArgument, "CompleteOrder"));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kInvalid, {"finalize failed"}));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kInvalid, {}),
              StatusIs(kFailedPrecondition, "is invalid"));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kInvalid);
  EXPECT_EQ(o.error, "finalize failed");
  EXPECT_TRUE(o.lease_owner.empty());
  EXPECT_FALSE(o.lease_expires_at.has_value());
  EXPECT_EQ(o.acme_url, "https://ca.test/order/1");
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "TransitionOrder", "TransitionOrder", "TransitionOrder"));
}

// TransitionOrder answers for the row as it is, whatever the order its lease holder says it saw
// (`seen`, which a store may use to try the move in fewer round trips): the same moves and
// refusals as above with a `seen` left behind after the first, audited from the row's state.
TEST_P(StoreConformanceTest, ATransitionAnswersForTheRowWhateverItsLeaseHolderSaw) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test"});
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK_AND_ASSIGN(const Order seen, store().GetOrder(scope, lease.order));
  ASSERT_EQ(seen.state, OrderState::kPending);

  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, {}, &seen));
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady, {}, &seen));  // retried
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kProcessing, {}, &seen));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kPending, {}, &seen),
              StatusIs(kFailedPrecondition, "cannot go from processing to pending"));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kValid, {}, &seen),
              StatusIs(kInvalidArgument, "CompleteOrder"));
  // A lease whose token is not the order's: refused, whatever was seen.
  Lease stale = lease;
  stale.fencing_token += 1;
  EXPECT_THAT(store().TransitionOrder(scope, stale, OrderState::kInvalid, {"x"}, &seen),
              StatusIs(kFailedPrecondition, "stale"));
  // Another tenant's scope finds no such order, whatever was seen.
  Tenant b = MakeTenant("beta");
  Lease elsewhere = lease;
  elsewhere.tenant = b.id;
  EXPECT_THAT(store().TransitionOrder(ScopeOf(b), elsewhere, OrderState::kInvalid, {"x"}, &seen),
              StatusIs(kNotFound));
  ASSERT_OK(
      store().TransitionOrder(scope, lease, OrderState::kInvalid, {"finalize failed"}, &seen));
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kInvalid, {}, &seen),
              StatusIs(kFailedPrecondition, "is invalid"));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kInvalid);
  EXPECT_EQ(o.error, "finalize failed");
  EXPECT_TRUE(o.lease_owner.empty());
  std::vector<std::string> moves;
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, PageRequest{}));
  for (const AuditRecord& r : audit.items) {
    if (r.event.action == "TransitionOrder") moves.push_back(r.event.detail);
  }
  const std::string id = absl::StrCat("order ", lease.order, ": ");
  EXPECT_THAT(moves, ElementsAre(id + "pending -> ready", id + "ready -> processing",
                                 id + "processing -> invalid: finalize failed"));
  EXPECT_OK(store().VerifyAuditChain(scope));
}

TEST_P(StoreConformanceTest, AFailedOrderKeepsTheCasProblemTypeBesideItsError) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test"});
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  // Kept only on the move to invalid.
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kReady,
                                    {"not yet", "urn:ietf:params:acme:error:caa"}));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(o.problem_type, "");
  EXPECT_THAT(store().TransitionOrder(scope, lease, OrderState::kInvalid,
                                      {"too long", std::string(kMaxProblemTypeSize + 1, 't')}),
              StatusIs(kInvalidArgument, "problem type"));
  const std::string type = "urn:ietf:params:acme:error:badCSR";
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kInvalid,
                                    {"INVALID_ARGUMENT: acme badCSR (HTTP 400): weak key", type}));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kInvalid);
  EXPECT_EQ(o.error, "INVALID_ARGUMENT: acme badCSR (HTTP 400): weak key");
  EXPECT_EQ(o.problem_type, type);
  // A failure without a CA problem has none.
  Lease other = MakeOrder(scope, account.id, {"b.test"});
  ASSERT_OK(store().TransitionOrder(scope, other, OrderState::kInvalid, {"internal error: boom"}));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, other.order));
  EXPECT_EQ(o.problem_type, "");
}

TEST_P(StoreConformanceTest, CompleteOrderStoresTheCertificateAndFreesTheNames) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test", "b.test"});
  NewCertificate cert = CertificateFor({"b.test", "a.test"}, "0A1B");
  EXPECT_THAT(store().CompleteOrder(scope, lease, cert), StatusIs(kFailedPrecondition));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/7"));
  crypto::PrivateKey cert_key = NewKey();
  cert.private_key = &cert_key;
  cert.account_key_version = 1;
  ASSERT_OK_AND_ASSIGN(Certificate stored, store().CompleteOrder(scope, lease, cert));
  EXPECT_EQ(stored.serial, "0a1b");
  EXPECT_EQ(stored.order, lease.order);
  EXPECT_EQ(stored.account, account.id);
  EXPECT_TRUE(stored.has_private_key);
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kValid);
  EXPECT_EQ(o.certificate, stored.id);
  EXPECT_TRUE(o.lease_owner.empty());
  EXPECT_THAT(store().CompleteOrder(scope, lease, CertificateFor({"a.test"}, "ff")),
              StatusIs(kFailedPrecondition, "is valid"));

  ASSERT_OK_AND_ASSIGN(Certificate current,
                       store().GetCurrentCertificate(scope, {"A.test", "b.test"}));
  EXPECT_EQ(current.id, stored.id);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetCertificateKey(scope, stored.id, "serve"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult next,
      store().CreateOrJoinOrder(
          scope, NewOrder{account.id, {"a.test", "b.test"}, "", "r", absl::Minutes(1)}));
  EXPECT_TRUE(next.created);
  EXPECT_THAT(
      AuditActions(scope),
      ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                  "InsertCertificate", "CompleteOrder", "UseCertificateKey", "CreateOrder"));
}

// ---------------------------------------------------------------------------------------------
// Order finalization material

TEST_P(StoreConformanceTest, AnotherReplicaFinalizesACrashedReplicasOrderFromItsMaterial) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const std::string csr = CsrBytes(1500);
  crypto::PrivateKey cert_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult created,
      store().CreateOrJoinOrder(
          scope,
          WithMaterial(
              NewOrder{account.id, {"www.alpha.test"}, "req-1", "replica-1", absl::Minutes(1)}, csr,
              &cert_key)));
  ASSERT_TRUE(created.created);
  EXPECT_EQ(created.order.csr_der, csr);
  EXPECT_TRUE(created.order.has_certificate_key);
  ASSERT_OK(store().RecordOrderUrl(scope, *created.lease, "https://ca.test/order/1"));

  // replica-1 dies; replica-2 claims the order and finds all it needs to finalize it.
  clock().Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("replica-2", absl::Minutes(1), 10));
  ASSERT_THAT(claimed, SizeIs(1));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, claimed[0].order));
  EXPECT_EQ(o.csr_der, csr);
  EXPECT_TRUE(o.has_certificate_key);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, o.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  auto signature = unsealed.Sign("payload");
  ASSERT_TRUE(signature.ok());
  EXPECT_OK(cert_key.public_key().Verify("payload", *signature));
  NewCertificate cert = CertificateFor({"www.alpha.test"}, "0b");
  cert.private_key = &unsealed;
  ASSERT_OK(store().CompleteOrder(scope, claimed[0], cert).status());
  // The finished order keeps its material.
  ASSERT_OK_AND_ASSIGN(Order done, store().FindOrderByIdempotencyKey(scope, "req-1"));
  EXPECT_EQ(done.state, OrderState::kValid);
  EXPECT_EQ(done.csr_der, csr);
  EXPECT_TRUE(done.has_certificate_key);

  // The unsealing is a key use of the order, audited with its id and the purpose.
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "UseCertificateKey", "InsertCertificate", "CompleteOrder"));
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, {}));
  const AuditRecord& use = audit.items[4];
  EXPECT_EQ(use.event.detail, absl::StrCat("order ", o.id, ": finalize"));
  EXPECT_THAT(use.event.identifiers, ElementsAre("www.alpha.test"));
  EXPECT_EQ(use.event.account, account.id);
  EXPECT_EQ(use.event.acme_url, "https://ca.test/order/1");
  EXPECT_EQ(use.actor.identity, "spiffe://test/admin");
}

TEST_P(StoreConformanceTest, OrderMaterialIsOptionalBoundedAndConfinedToItsTenant) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease bare = MakeOrder(scope, account.id, {"bare.test"});
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, bare.order));
  EXPECT_EQ(o.csr_der, "");
  EXPECT_FALSE(o.has_certificate_key);
  EXPECT_THAT(
      store().GetOrderCertificateKey(scope, bare.order, "finalize"),
      StatusIs(kNotFound, absl::StrCat("order ", bare.order, " has no stored certificate key")));
  EXPECT_THAT(store().GetOrderCertificateKey(scope, bare.order + 1000, "finalize"),
              StatusIs(kNotFound, "not found"));

  // A CSR of exactly the limit round-trips; one byte more is refused.
  crypto::PrivateKey cert_key = NewKey(crypto::KeyAlgorithm::kRsa2048);
  const std::string largest = CsrBytes(kMaxCsrDerSize, 1);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult full,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"full.test"}, "", "r", absl::Minutes(1)},
                              largest, &cert_key)));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, full.order.id));
  EXPECT_EQ(o.csr_der, largest);
  EXPECT_THAT(store().CreateOrJoinOrder(
                  scope, WithMaterial(NewOrder{account.id, {"big.test"}, "", "r", absl::Minutes(1)},
                                      CsrBytes(kMaxCsrDerSize + 1), nullptr)),
              StatusIs(kInvalidArgument, "CSR is 16385 bytes"));
  // A key without a CSR is kept too.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult key_only,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"key.test"}, "", "r", absl::Minutes(1)}, "",
                              &cert_key)));
  EXPECT_EQ(key_only.order.csr_der, "");
  EXPECT_TRUE(key_only.order.has_certificate_key);

  // Another tenant's order, with its key, does not exist for this one.
  EXPECT_THAT(store().GetOrderCertificateKey(ScopeOf(b), full.order.id, "finalize"),
              StatusIs(kNotFound, absl::StrCat("order ", full.order.id, " not found")));
  EXPECT_THAT(store().GetOrder(ScopeOf(b), full.order.id), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, key_only.order.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  // Only the successful unsealing was audited.
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CreateAccount", "CreateOrder",
                                               "CreateOrder", "CreateOrder", "UseCertificateKey"));
  EXPECT_THAT(AuditActions(ScopeOf(b)), ElementsAre("CreateTenant"));
}

TEST_P(StoreConformanceTest, AJoinedOrderKeepsTheMaterialItWasCreatedWith) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const NewOrder request{account.id, {"a.test"}, "req-1", "r1", absl::Minutes(1)};
  crypto::PrivateKey first_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult first,
      store().CreateOrJoinOrder(scope, WithMaterial(request, CsrBytes(300, 1), &first_key)));
  ASSERT_TRUE(first.created);

  // Joined by the idempotency key, and by the identifier set: the request's material is ignored.
  crypto::PrivateKey second_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult by_key,
      store().CreateOrJoinOrder(scope, WithMaterial(request, CsrBytes(400, 2), &second_key)));
  NewOrder same_names = request;
  same_names.idempotency_key = "";
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult by_names,
      store().CreateOrJoinOrder(scope, WithMaterial(same_names, CsrBytes(500, 3), nullptr)));
  for (const CreateOrderResult& joined : {by_key, by_names}) {
    EXPECT_FALSE(joined.created);
    EXPECT_EQ(joined.order.id, first.order.id);
    EXPECT_EQ(joined.order.csr_der, CsrBytes(300, 1));
    EXPECT_TRUE(joined.order.has_certificate_key);
  }
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, first.order.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), first_key.public_key().ToDer());

  // An order created without material stays without when joined with some.
  Lease bare = MakeOrder(scope, account.id, {"b.test"});
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult joined_bare,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"b.test"}, "", "r2", absl::Minutes(1)},
                              CsrBytes(600, 4), &second_key)));
  EXPECT_FALSE(joined_bare.created);
  EXPECT_EQ(joined_bare.order.id, bare.order);
  EXPECT_EQ(joined_bare.order.csr_der, "");
  EXPECT_FALSE(joined_bare.order.has_certificate_key);
  EXPECT_THAT(store().GetOrderCertificateKey(scope, bare.order, "finalize"),
              StatusIs(kNotFound, "has no stored certificate key"));
  // Joining writes nothing.
  EXPECT_THAT(AuditActions(scope), ElementsAre("CreateTenant", "CreateAccount", "CreateOrder",
                                               "UseCertificateKey", "CreateOrder"));
}

TEST_P(StoreConformanceTest, MaterialIsAttachedOnceToABareNewOrderUnderItsLease) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease lease = MakeOrder(scope, account.id, {"a.test"});
  crypto::PrivateKey cert_key = NewKey();
  EXPECT_THAT(store().AttachOrderMaterial(scope, lease, "", &cert_key),
              StatusIs(kInvalidArgument, "CSR is empty"));
  EXPECT_THAT(store().AttachOrderMaterial(scope, lease, CsrBytes(kMaxCsrDerSize + 1), &cert_key),
              StatusIs(kInvalidArgument, "CSR is 16385 bytes"));
  ASSERT_OK(store().AttachOrderMaterial(scope, lease, CsrBytes(700, 5), &cert_key));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kCreated);
  EXPECT_EQ(o.csr_der, CsrBytes(700, 5));
  EXPECT_TRUE(o.has_certificate_key);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetOrderCertificateKey(scope, o.id, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  // Once: neither replaced nor completed later.
  EXPECT_THAT(store().AttachOrderMaterial(scope, lease, CsrBytes(800, 6), nullptr),
              StatusIs(kFailedPrecondition, "has its finalization material already"));

  // An order made with material, one at the CA already, and a lost lease all refuse it.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult made_with,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"b.test"}, "", "r1", absl::Minutes(1)},
                              CsrBytes(300, 1), nullptr)));
  EXPECT_THAT(store().AttachOrderMaterial(scope, *made_with.lease, CsrBytes(300, 2), &cert_key),
              StatusIs(kFailedPrecondition, "has its finalization material already"));
  Lease at_ca = MakeOrder(scope, account.id, {"c.test"});
  ASSERT_OK(store().RecordOrderUrl(scope, at_ca, "https://ca.test/order/3"));
  EXPECT_THAT(store().AttachOrderMaterial(scope, at_ca, CsrBytes(300, 3), nullptr),
              StatusIs(kFailedPrecondition, "is pending: too late"));
  Lease stale = MakeOrder(scope, account.id, {"d.test"});
  clock().Advance(absl::Minutes(5));
  ASSERT_OK(store().ClaimStaleOrders("r2", absl::Minutes(1), 10).status());
  EXPECT_THAT(store().AttachOrderMaterial(scope, stale, CsrBytes(300, 4), nullptr),
              StatusIs(kFailedPrecondition, "lost"));
  ASSERT_OK_AND_ASSIGN(o, store().GetOrder(scope, stale.order));
  EXPECT_EQ(o.csr_der, "");
  // Another tenant's order does not exist for this one.
  Tenant b = MakeTenant("beta");
  EXPECT_FALSE(store().AttachOrderMaterial(ScopeOf(b), stale, CsrBytes(300, 4), nullptr).ok());

  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "AttachOrderMaterial",
                          "UseCertificateKey", "CreateOrder", "CreateOrder", "RecordOrderUrl",
                          "CreateOrder"));
}

TEST_P(StoreConformanceTest, StaleLeaseIsClaimedOnceAndFencesTheOldOwner) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  Lease old_lease = MakeOrder(scope, account.id, {"a.test"}, absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> none,
                       store().ClaimStaleOrders("r2", absl::Minutes(1), 10));
  EXPECT_THAT(none, IsEmpty());  // The lease is live.

  clock().Advance(absl::Minutes(1));  // Expired (expiry <= now).
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("r2", absl::Minutes(5), 10));
  ASSERT_THAT(claimed, SizeIs(1));
  const Lease new_lease = claimed[0];
  EXPECT_EQ(new_lease.tenant, a.id);
  EXPECT_EQ(new_lease.order, old_lease.order);
  EXPECT_EQ(new_lease.owner, "r2");
  EXPECT_EQ(new_lease.fencing_token, 2);
  EXPECT_EQ(new_lease.expires_at, clock().Now() + absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> again,
                       store().ClaimStaleOrders("r3", absl::Minutes(5), 10));
  EXPECT_THAT(again, IsEmpty());

  // The old owner woke up: every write it attempts is rejected.
  EXPECT_THAT(store().RecordOrderUrl(scope, old_lease, "https://ca.test/order/old"),
              StatusIs(kFailedPrecondition, "lease on order"));
  EXPECT_THAT(store().TransitionOrder(scope, old_lease, OrderState::kInvalid, {}),
              StatusIs(kFailedPrecondition, "fencing token 1 is stale"));
  EXPECT_THAT(store().RenewLease(scope, old_lease, absl::Minutes(5)),
              StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().ReleaseLease(scope, old_lease), StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().CompleteOrder(scope, old_lease, CertificateFor({"a.test"}, "01")),
              StatusIs(kFailedPrecondition));
  ASSERT_OK(store().RecordOrderUrl(scope, new_lease, "https://ca.test/order/new"));
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, old_lease.order));
  EXPECT_EQ(o.acme_url, "https://ca.test/order/new");
  EXPECT_EQ(o.lease_owner, "r2");
  EXPECT_EQ(o.fencing_token, 2);

  clock().Advance(absl::Minutes(4));
  ASSERT_OK_AND_ASSIGN(Lease renewed, store().RenewLease(scope, new_lease, absl::Minutes(5)));
  EXPECT_EQ(renewed.fencing_token, 2);
  EXPECT_EQ(renewed.expires_at, clock().Now() + absl::Minutes(5));
  clock().Advance(absl::Minutes(2));  // Past the first expiry, within the renewed one.
  ASSERT_OK_AND_ASSIGN(none, store().ClaimStaleOrders("r3", absl::Minutes(5), 10));
  EXPECT_THAT(none, IsEmpty());

  // Released: claimable at once, with the next token.
  ASSERT_OK(store().ReleaseLease(scope, renewed));
  ASSERT_OK_AND_ASSIGN(claimed, store().ClaimStaleOrders("r3", absl::Minutes(5), 10));
  ASSERT_THAT(claimed, SizeIs(1));
  EXPECT_EQ(claimed[0].fencing_token, 3);
  // Another tenant cannot even see the order.
  EXPECT_THAT(store().RenewLease(ScopeOf(MakeTenant("beta")), claimed[0], absl::Minutes(1)),
              StatusIs(kNotFound));
}

TEST_P(StoreConformanceTest, AnOrderMadeWithAJobIsFencedByTheJobsLeaseAlone) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  NewOrder spec{account.id, {"a.test"}, "", "r1", absl::Minutes(1)};
  spec.job_kind = "order_step";
  spec.job_ca = "https://ca.test/dir";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store().CreateOrJoinOrder(scope, spec));
  ASSERT_TRUE(created.lease.has_value());
  const Lease first = *created.lease;
  ASSERT_NE(first.job, 0);
  EXPECT_EQ(first.fencing_token, 1);
  ASSERT_OK_AND_ASSIGN(Job job, store().GetJob(scope, first.job));
  EXPECT_EQ(job.kind, "order_step");
  EXPECT_EQ(job.subject, absl::StrCat(created.order.id));
  EXPECT_EQ(job.ca, "https://ca.test/dir");
  EXPECT_EQ(job.lease_owner, "r1");
  EXPECT_EQ(job.fencing_token, 1);
  EXPECT_EQ(job.not_before, clock().Now());
  // The creator's lease writes, and no claim takes the job while it holds it.
  ASSERT_OK(store().AttachOrderMaterial(scope, first, "csr", nullptr));
  JobClaim claim{"r2", clock().Now(), 10, absl::Minutes(1), 0, 0, {"order_step"}};
  ASSERT_OK_AND_ASSIGN(JobClaimResult none, store().ClaimJobs(claim));
  EXPECT_THAT(none.jobs, IsEmpty());

  // The creator stalls; its lease expires and another replica claims the job.
  clock().Advance(absl::Minutes(1));
  claim.now = clock().Now();
  ASSERT_OK_AND_ASSIGN(JobClaimResult claimed, store().ClaimJobs(claim));
  ASSERT_THAT(claimed.jobs, SizeIs(1));
  const Lease second = OrderLeaseOf(claimed.jobs[0].lease, created.order.id);
  EXPECT_EQ(second.fencing_token, 2);
  EXPECT_THAT(store().RecordOrderUrl(scope, first, "https://ca.test/order/old"),
              StatusIs(kFailedPrecondition, "fencing token 1 of job"));
  EXPECT_THAT(store().DeleteChallengeFenced(scope, first, "tok"),
              StatusIs(kFailedPrecondition, "is stale"));
  ASSERT_OK(store().RecordOrderUrl(scope, second, "https://ca.test/order/new"));
  ASSERT_OK(store().TransitionOrder(scope, second, OrderState::kReady, {}));
  ASSERT_OK_AND_ASSIGN(Order row, store().GetOrder(scope, created.order.id));
  EXPECT_EQ(row.state, OrderState::kReady);
  // The order's own token plays no part: a lease without the job is refused, whatever its token.
  EXPECT_EQ(row.fencing_token, 0);
  for (int64_t token : {0, 1, 2}) {
    Lease own = second;
    own.job = 0;
    own.fencing_token = token;
    EXPECT_THAT(store().TransitionOrder(scope, own, OrderState::kInvalid, {}),
                StatusIs(kFailedPrecondition, "present its job's lease"));
  }

  // A lease for another order than the job's is refused; so is one whose job is gone.
  Lease elsewhere = second;
  elsewhere.order = MakeOrder(scope, account.id, {"b.test"}, absl::Minutes(1)).order;
  EXPECT_THAT(store().TransitionOrder(scope, elsewhere, OrderState::kInvalid, {}),
              StatusIs(kFailedPrecondition, "is gone"));
  ASSERT_OK(store().CompleteJob(claimed.jobs[0].lease));
  EXPECT_THAT(store().TransitionOrder(scope, second, OrderState::kInvalid, {}),
              StatusIs(kFailedPrecondition, "is gone"));
  EXPECT_THAT(store().CompleteOrder(scope, second, CertificateFor({"a.test"}, "01")),
              StatusIs(kFailedPrecondition));

  // A bad job kind is refused before anything is written.
  spec.identifiers = {"c.test"};
  spec.job_kind = "Order Step";
  EXPECT_THAT(store().CreateOrJoinOrder(scope, spec), StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, ClaimsTakeTheOldestFirstAndSkipDoneOrDisabled) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  Account account_a = MakeAccount(ScopeOf(a));
  Account account_b = MakeAccount(ScopeOf(b));
  Lease first = MakeOrder(ScopeOf(a), account_a.id, {"1.test"}, absl::Minutes(1));
  Lease second = MakeOrder(ScopeOf(b), account_b.id, {"2.test"}, absl::Minutes(2));
  Lease third = MakeOrder(ScopeOf(a), account_a.id, {"3.test"}, absl::Minutes(3));
  Lease done = MakeOrder(ScopeOf(a), account_a.id, {"4.test"}, absl::Minutes(1));
  ASSERT_OK(store().TransitionOrder(ScopeOf(a), done, OrderState::kInvalid, {}));
  clock().Advance(absl::Minutes(10));

  ASSERT_OK_AND_ASSIGN(std::vector<Lease> claimed,
                       store().ClaimStaleOrders("r", absl::Minutes(1), 2));
  ASSERT_THAT(claimed, SizeIs(2));
  EXPECT_EQ(claimed[0].order, first.order);
  EXPECT_EQ(claimed[1].order, second.order);
  EXPECT_EQ(claimed[1].tenant, b.id);

  ASSERT_OK(store().DisableTenant(ScopeOf(a)));
  clock().Advance(absl::Minutes(10));
  ASSERT_OK_AND_ASSIGN(claimed, store().ClaimStaleOrders("r", absl::Minutes(1), 10));
  ASSERT_THAT(claimed, SizeIs(1));  // Only beta's; alpha is disabled and 4.test is done.
  EXPECT_EQ(claimed[0].order, second.order);
  EXPECT_EQ(claimed[0].fencing_token, 3);
  EXPECT_NE(third.order, 0);
  EXPECT_THAT(store().ClaimStaleOrders("", absl::Minutes(1), 1), StatusIs(kInvalidArgument));
  EXPECT_THAT(store().ClaimStaleOrders("r", absl::Minutes(1), 0), StatusIs(kInvalidArgument));
}

TEST_P(StoreConformanceTest, ConcurrentClaimersShareStaleOrdersExactlyOnce) {
  Tenant a = MakeTenant("alpha");
  Account account = MakeAccount(ScopeOf(a));
  constexpr int kOrders = 24;
  std::set<OrderId> all;
  for (int i = 0; i < kOrders; ++i) {
    all.insert(MakeOrder(ScopeOf(a), account.id, {absl::StrCat(i, ".test")}).order);
  }
  clock().Advance(absl::Hours(1));
  absl::Mutex mu;
  std::vector<Lease> claimed;
  std::vector<std::thread> claimers;
  for (int c = 0; c < 4; ++c) {
    claimers.emplace_back([&, c] {
      for (int round = 0; round < kOrders; ++round) {
        auto got = store().ClaimStaleOrders(absl::StrCat("replica-", c), absl::Hours(1), 3);
        ASSERT_TRUE(got.ok()) << got.status();
        if (got->empty()) break;
        absl::MutexLock lock(&mu);
        claimed.insert(claimed.end(), got->begin(), got->end());
      }
    });
  }
  for (std::thread& t : claimers) t.join();
  std::set<OrderId> distinct;
  for (const Lease& l : claimed) {
    distinct.insert(l.order);
    EXPECT_EQ(l.fencing_token, 2);
  }
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kOrders));  // no order twice
  EXPECT_EQ(distinct, all);                                 // and none left out
}

}  // namespace
}  // namespace acmevault::storage::testing
