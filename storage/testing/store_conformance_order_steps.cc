// The conformance suite (store_conformance.h): what an order's job step reads and writes in one
// transaction (OrderStore::LoadOrderStep, OrderStore::FinishOrder).
#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

namespace {

TEST_P(StoreConformanceTest, LoadOrderStepReadsOrderAccountTenantLedgerAndKeyTogether) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1"));
  NewOrder spec{account.id, {"a.test"}, "", "r1", absl::Minutes(1)};
  spec.job_kind = "order_step";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store().CreateOrJoinOrder(scope, spec));
  const Lease lease = *created.lease;

  // No CSR yet: nothing a step could sign for, so the key stays sealed (and unaudited).
  ASSERT_OK_AND_ASSIGN(OrderStepState bare,
                       store().LoadOrderStep(scope, lease.order, "order", nullptr));
  EXPECT_EQ(bare.order.id, lease.order);
  EXPECT_EQ(bare.account.id, account.id);
  EXPECT_EQ(bare.account.status, AccountStatus::kValid);
  EXPECT_EQ(bare.tenant.id, a.id);
  EXPECT_EQ(bare.tenant.spec.name, "alpha");
  EXPECT_FALSE(bare.key.has_value());
  EXPECT_THAT(bare.authorizations, IsEmpty());

  ASSERT_OK(store().AttachOrderMaterial(scope, lease, "csr", nullptr));
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  ASSERT_OK(store()
                .RecordAuthorization(scope, {account.id, lease.order, "https://ca.test/authz/1",
                                             "a.test", AuthorizationStatus::kPending,
                                             clock().Now() + absl::Hours(1)})
                .status());
  ASSERT_OK(store()
                .RecordAuthorization(scope, {account.id, lease.order, "https://ca.test/authz/2",
                                             "a.test", AuthorizationStatus::kInvalid,
                                             clock().Now() + absl::Hours(1)})
                .status());
  ASSERT_OK_AND_ASSIGN(OrderStepState ready,
                       store().LoadOrderStep(scope, lease.order, "order 1", nullptr));
  EXPECT_EQ(ready.order.state, OrderState::kPending);
  EXPECT_EQ(ready.order.csr_der, "csr");
  ASSERT_TRUE(ready.key.has_value());
  EXPECT_EQ(ready.key->info.version, 1);
  ASSERT_TRUE(ready.key->private_key.has_value());
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey direct, store().GetActiveKey(scope, account.id, "cmp"));
  EXPECT_EQ(ready.key->private_key->public_key().ToDer(),
            direct.private_key->public_key().ToDer());
  // The ledger as ListOutstandingAuthorizations has it for the order.
  ASSERT_THAT(ready.authorizations, SizeIs(1));
  EXPECT_EQ(ready.authorizations[0].record.url, "https://ca.test/authz/1");
  // The unsealing is a key use, audited with its purpose, as GetActiveKey's.
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store().ListAudit(scope, {}));
  ASSERT_GE(audit.items.size(), 2u);
  const AuditRecord& use = audit.items[audit.items.size() - 2];
  EXPECT_EQ(use.event.action, "UseAccountKey");
  EXPECT_EQ(use.event.detail, "order 1");

  // A terminal order needs no key either.
  ASSERT_OK(store().TransitionOrder(scope, lease, OrderState::kInvalid, {"gave up"}));
  ASSERT_OK_AND_ASSIGN(OrderStepState ended,
                       store().LoadOrderStep(scope, lease.order, "x", nullptr));
  EXPECT_EQ(ended.order.state, OrderState::kInvalid);
  EXPECT_FALSE(ended.key.has_value());

  // Another tenant's order does not exist for this tenant.
  Tenant b = MakeTenant("beta");
  EXPECT_THAT(store().LoadOrderStep(ScopeOf(b), lease.order, "x", nullptr), StatusIs(kNotFound));
  EXPECT_THAT(store().LoadOrderStep(scope, lease.order + 1000, "x", nullptr), StatusIs(kNotFound));
}

// A step's first load admits its newOrder in the same transaction: the budgets the step names
// for what was loaded, then a hold or a token exactly as AdmitCaRequest gives them.
TEST_P(StoreConformanceTest, LoadOrderStepAdmitsTheNewOrderInItsTransaction) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1"));
  NewOrder spec{account.id, {"b.test", "a.test"}, "", "r1", absl::Minutes(1)};
  spec.job_kind = "order_step";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store().CreateOrJoinOrder(scope, spec));
  const Lease lease = *created.lease;
  ASSERT_OK(store().AttachOrderMaterial(scope, lease, "csr", nullptr));
  const CaBudget budget{"new_order", 1, absl::Hours(1)};
  int asked = 0;
  StepAdmission admission;
  admission.now = clock().Now();
  admission.budgets = [&](const OrderStepState& loaded) -> std::optional<std::vector<CaBudget>> {
    ++asked;
    // What the step decides on was loaded first.
    EXPECT_EQ(loaded.order.id, lease.order);
    EXPECT_TRUE(loaded.key.has_value());
    return std::vector<CaBudget>{budget};
  };
  ASSERT_OK_AND_ASSIGN(OrderStepState first,
                       store().LoadOrderStep(scope, lease.order, "order", &admission));
  EXPECT_EQ(asked, 1);
  ASSERT_TRUE(first.admission.has_value());
  EXPECT_FALSE(first.admission->hold.has_value());
  ASSERT_TRUE(first.admission->take.has_value());
  EXPECT_TRUE(first.admission->take->taken);
  ASSERT_THAT(first.admission_budgets, SizeIs(1));
  EXPECT_EQ(first.admission_budgets[0].name, "new_order");
  ASSERT_TRUE(first.key.has_value());

  // The token was taken: the bucket of one is empty now, as AdmitCaRequest sees it.
  ASSERT_OK_AND_ASSIGN(OrderStepState second,
                       store().LoadOrderStep(scope, lease.order, "order", &admission));
  ASSERT_TRUE(second.admission.has_value() && second.admission->take.has_value());
  EXPECT_FALSE(second.admission->take->taken);
  EXPECT_EQ(second.admission->short_budget, "new_order");
  ASSERT_OK(store().ReturnCaBudgetToken(scope, account.id, budget));

  // A hold on the order's newOrder (its identifiers in any order) is found; no token taken.
  ASSERT_OK(store().RecordCaHold(scope, {account.id, {"a.test", "b.test"}, CaRequest::kNewOrder},
                                 clock().Now() + absl::Minutes(5), "rateLimited"));
  ASSERT_OK_AND_ASSIGN(OrderStepState held,
                       store().LoadOrderStep(scope, lease.order, "order", &admission));
  ASSERT_TRUE(held.admission.has_value() && held.admission->hold.has_value());
  EXPECT_EQ(held.admission->hold->problem, "rateLimited");
  EXPECT_FALSE(held.admission->take.has_value());
  ASSERT_OK_AND_ASSIGN(CaAdmission direct,
                       store().AdmitCaRequest(scope, {account.id, {"c.test"}, CaRequest::kNewOrder},
                                              {budget}, clock().Now()));
  EXPECT_TRUE(direct.take.has_value() && direct.take->taken);  // the token was still there

  // No budgets asked for, or no admission: none made.
  admission.budgets = [&](const OrderStepState&) -> std::optional<std::vector<CaBudget>> {
    return std::nullopt;
  };
  ASSERT_OK_AND_ASSIGN(OrderStepState none,
                       store().LoadOrderStep(scope, lease.order, "order", &admission));
  EXPECT_FALSE(none.admission.has_value());
  EXPECT_THAT(none.admission_budgets, IsEmpty());
  ASSERT_OK_AND_ASSIGN(OrderStepState plain,
                       store().LoadOrderStep(scope, lease.order, "order", nullptr));
  EXPECT_FALSE(plain.admission.has_value());

  // A budget AdmitCaRequest refuses is refused here, and nothing is loaded.
  admission.budgets = [&](const OrderStepState&) -> std::optional<std::vector<CaBudget>> {
    return std::vector<CaBudget>{CaBudget{"", 1, absl::Hours(1)}};
  };
  EXPECT_THAT(store().LoadOrderStep(scope, lease.order, "order", &admission),
              StatusIs(kInvalidArgument));
}

// NewOrder::first_step: an order whose creator takes its job has its first step's load made in
// the same transaction, as LoadOrderStep would make it then; an order whose job is not taken,
// or a load that fails, leaves the load to the step.
TEST_P(StoreConformanceTest, AClaimedNewOrdersFirstStepIsLoadedInItsTransaction) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  ASSERT_OK(store().RecordAccountUrl(scope, account.id, "https://ca.test/acct/1"));
  const CaBudget budget{"new_order", 1, absl::Hours(1)};
  int asked = 0;
  StepAdmission admission;
  admission.now = clock().Now();
  admission.budgets = [&](const OrderStepState& loaded) -> std::optional<std::vector<CaBudget>> {
    ++asked;
    EXPECT_TRUE(loaded.key.has_value());  // what the step decides on was loaded first
    return std::vector<CaBudget>{budget};
  };
  auto spec_for = [&](const std::string& name) {
    NewOrder spec{account.id, {name}, "", "r1", absl::Minutes(1)};
    spec.job_kind = "order_step";
    spec.job_ca = "https://ca.test/dir";
    spec.csr_der = "csr";
    spec.job_released = true;
    JobClaim claim;
    claim.owner = "r1";
    claim.now = clock().Now();
    claim.lease_duration = absl::Minutes(2);
    claim.per_tenant_limit = 2;
    claim.kinds = {"order_step"};
    spec.claim = claim;
    spec.first_step = admission;
    return spec;
  };
  auto audited = [&] {
    std::vector<std::string> out;
    absl::StatusOr<Page<AuditRecord>> page = store().ListAudit(scope, {});
    EXPECT_OK(page.status());
    if (!page.ok()) return out;
    for (const AuditRecord& r : page->items) {
      out.push_back(absl::StrCat(r.event.action, ":", r.event.detail));
    }
    return out;
  };
  const size_t audited_before = audited().size();

  ASSERT_OK_AND_ASSIGN(CreateOrderResult made,
                       store().CreateOrJoinOrder(scope, spec_for("a.test")));
  ASSERT_TRUE(made.claimed.has_value());
  ASSERT_NE(made.first_step, nullptr);
  const OrderStepState& first = *made.first_step;
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(first.order.id, made.order.id);
  EXPECT_EQ(first.order.state, OrderState::kCreated);
  EXPECT_EQ(first.order.csr_der, "csr");
  EXPECT_EQ(first.account.id, account.id);
  EXPECT_EQ(first.account.account_url, "https://ca.test/acct/1");
  EXPECT_EQ(first.tenant.id, a.id);
  EXPECT_THAT(first.authorizations, IsEmpty());
  ASSERT_TRUE(first.key.has_value() && first.key->private_key.has_value());
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey direct, store().GetActiveKey(scope, account.id, "cmp"));
  EXPECT_EQ(first.key->private_key->public_key().ToDer(), direct.private_key->public_key().ToDer());
  ASSERT_TRUE(first.admission.has_value() && first.admission->take.has_value());
  EXPECT_TRUE(first.admission->take->taken);
  ASSERT_THAT(first.admission_budgets, SizeIs(1));
  EXPECT_EQ(first.admission_budgets[0].name, "new_order");
  // The order's creation, then the key's use for its step (before GetActiveKey's, above).
  std::vector<std::string> rows = audited();
  ASSERT_EQ(rows.size(), audited_before + 3);
  EXPECT_EQ(rows[audited_before], absl::StrCat("CreateOrder:order ", made.order.id));
  EXPECT_EQ(rows[audited_before + 1],
            absl::StrCat("UseAccountKey:", OrderStepPurpose(made.order.id)));
  EXPECT_EQ(OrderStepPurpose(made.order.id), absl::StrCat("order ", made.order.id));
  // The token was taken: the bucket of one is empty now, as AdmitCaRequest sees it.
  ASSERT_OK_AND_ASSIGN(CaAdmission after,
                       store().AdmitCaRequest(scope, {account.id, {"z.test"}, CaRequest::kNewOrder},
                                              {budget}, clock().Now()));
  ASSERT_TRUE(after.take.has_value());
  EXPECT_FALSE(after.take->taken);
  ASSERT_OK(store().ReturnCaBudgetToken(scope, account.id, budget));

  // A load that fails (here a budget AdmitCaRequest refuses) leaves the order made and its job
  // taken, without the load.
  admission.budgets = [&](const OrderStepState&) -> std::optional<std::vector<CaBudget>> {
    return std::vector<CaBudget>{CaBudget{"", 1, absl::Hours(1)}};
  };
  ASSERT_OK_AND_ASSIGN(CreateOrderResult failed,
                       store().CreateOrJoinOrder(scope, spec_for("b.test")));
  EXPECT_TRUE(failed.created);
  EXPECT_TRUE(failed.claimed.has_value());
  EXPECT_EQ(failed.first_step, nullptr);

  // The job not taken (the tenant is at its bound of 2): no load, no key use, no token.
  admission.budgets = [&](const OrderStepState&) -> std::optional<std::vector<CaBudget>> {
    ++asked;
    return std::vector<CaBudget>{budget};
  };
  asked = 0;
  const size_t before_third = audited().size();
  ASSERT_OK_AND_ASSIGN(CreateOrderResult third,
                       store().CreateOrJoinOrder(scope, spec_for("c.test")));
  EXPECT_TRUE(third.created);
  EXPECT_FALSE(third.claimed.has_value());
  EXPECT_EQ(third.first_step, nullptr);
  EXPECT_EQ(asked, 0);
  rows = audited();
  ASSERT_EQ(rows.size(), before_third + 1);
  EXPECT_EQ(rows.back(), absl::StrCat("CreateOrder:order ", third.order.id));

  // Without first_step a taken job has no load either (the third's claimed first: a job due
  // and unleased is never passed over by a creator's claim).
  ASSERT_OK(store().CompleteJob(made.claimed->lease));
  ASSERT_OK(store().CompleteJob(failed.claimed->lease));
  JobClaim claim = *spec_for("x.test").claim;
  claim.max_jobs = 5;
  ASSERT_OK_AND_ASSIGN(JobClaimResult got, store().ClaimJobs(claim));
  ASSERT_THAT(got.jobs, SizeIs(1));
  EXPECT_EQ(got.jobs[0].job.subject, absl::StrCat(third.order.id));
  NewOrder plain = spec_for("d.test");
  plain.first_step.reset();
  ASSERT_OK_AND_ASSIGN(CreateOrderResult unloaded, store().CreateOrJoinOrder(scope, plain));
  EXPECT_TRUE(unloaded.claimed.has_value());
  EXPECT_EQ(unloaded.first_step, nullptr);
}

TEST_P(StoreConformanceTest, FinishOrderStoresTheCertificateLedgerCleanupAndJobEndAtOnce) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  crypto::PrivateKey cert_key = NewKey();
  NewOrder spec = WithMaterial(NewOrder{account.id, {"a.test"}, "", "r1", absl::Minutes(1)},
                               "csr", &cert_key);
  spec.job_kind = "order_step";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store().CreateOrJoinOrder(scope, spec));
  const Lease lease = *created.lease;
  ASSERT_OK(store().RecordOrderUrl(scope, lease, "https://ca.test/order/1"));
  // As answered: one the CA reused (valid), one answered here (pending); and one of no order.
  for (const char* url : {"https://ca.test/authz/1", "https://ca.test/authz/2"}) {
    ASSERT_OK(store()
                  .RecordAuthorization(
                      scope, {account.id, lease.order, url, "a.test",
                              absl::EndsWith(url, "1") ? AuthorizationStatus::kValid
                                                       : AuthorizationStatus::kPending,
                              clock().Now() + absl::Hours(1)})
                  .status());
  }
  ASSERT_OK(store()
                .RecordAuthorization(scope, {account.id, std::nullopt, "https://ca.test/authz/3",
                                             "a.test", AuthorizationStatus::kPending,
                                             clock().Now() + absl::Hours(1)})
                .status());
  ASSERT_OK(store().PutChallenge(scope, "tok-1", "tok-1.thumb"));
  ASSERT_OK(store().PutChallenge(scope, "tok-other", "tok-other.thumb"));

  OrderCompletion done;
  done.certificate = CertificateFor({"a.test"}, "0C");
  done.certificate.account_key_version = 1;
  done.deactivated_authorizations = {"https://ca.test/authz/1", "https://ca.test/authz/unknown"};
  done.challenge_tokens = {"tok-1"};

  // Refused before anything is written: a lease without its job, a key of the caller's.
  Lease no_job = lease;
  no_job.job = 0;
  EXPECT_THAT(store().FinishOrder(scope, no_job, done), StatusIs(kInvalidArgument));
  OrderCompletion with_key = done;
  with_key.certificate.private_key = &cert_key;
  EXPECT_THAT(store().FinishOrder(scope, lease, with_key), StatusIs(kInvalidArgument));
  // A stale fencing token writes nothing.
  Lease stale = lease;
  stale.fencing_token = 7;
  EXPECT_THAT(store().FinishOrder(scope, stale, done), StatusIs(kFailedPrecondition, "stale"));
  EXPECT_THAT(store().GetCertificateBySerial(scope, "0c"), StatusIs(kNotFound));

  ASSERT_OK_AND_ASSIGN(Certificate stored, store().FinishOrder(scope, lease, done));
  EXPECT_EQ(stored.serial, "0c");
  EXPECT_EQ(stored.order, lease.order);
  EXPECT_EQ(stored.account, account.id);
  // The order's own certificate key went with it.
  EXPECT_TRUE(stored.has_private_key);
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store().GetCertificateKey(scope, stored.id, "serve"));
  EXPECT_EQ(unsealed.public_key().ToDer(), cert_key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(Order o, store().GetOrder(scope, lease.order));
  EXPECT_EQ(o.state, OrderState::kValid);
  EXPECT_EQ(o.certificate, stored.id);
  // The ledger: the deactivated one is no longer outstanding; the unknown URL was skipped.
  AuthorizationFilter filter;
  filter.order = lease.order;
  ASSERT_OK_AND_ASSIGN(std::vector<Authorization> outstanding,
                       store().ListOutstandingAuthorizations(scope, filter));
  ASSERT_THAT(outstanding, SizeIs(1));
  EXPECT_EQ(outstanding[0].record.url, "https://ca.test/authz/2");
  // The valid order's pending one is valid now (RFC 8555 §7.1.6); another order's is not.
  EXPECT_EQ(outstanding[0].record.status, AuthorizationStatus::kValid);
  ASSERT_OK_AND_ASSIGN(std::vector<Authorization> all,
                       store().ListOutstandingAuthorizations(scope, {}));
  ASSERT_THAT(all, SizeIs(2));
  EXPECT_EQ(all[1].record.url, "https://ca.test/authz/3");
  EXPECT_EQ(all[1].record.status, AuthorizationStatus::kPending);
  // The answer removed, another kept.
  EXPECT_THAT(store().LookupChallenge("tok-1"), StatusIs(kNotFound));
  EXPECT_OK(store().LookupChallenge("tok-other").status());
  // The job is complete: gone, and its lease writes nothing more.
  EXPECT_THAT(store().GetJob(scope, lease.job), StatusIs(kNotFound));
  EXPECT_THAT(store().CompleteJob(JobLeaseOf(lease)), StatusIs(kFailedPrecondition));
  EXPECT_THAT(store().FinishOrder(scope, lease, done), StatusIs(kFailedPrecondition));
  // The rows each of those calls would have written, in one chain.
  EXPECT_THAT(AuditActions(scope),
              ElementsAre("CreateTenant", "CreateAccount", "CreateOrder", "RecordOrderUrl",
                          "RecordAuthorization", "RecordAuthorization", "RecordAuthorization",
                          "PutChallenge",
                          "PutChallenge", "UseCertificateKey", "InsertCertificate",
                          "CompleteOrder", "MarkAuthorizationDeactivated", "DeleteChallenge",
                          "UseCertificateKey"));
  EXPECT_OK(store().VerifyAuditChain(scope));
}

}  // namespace
}  // namespace acmevault::storage::testing
