// The conformance suite (store_conformance.h): the audit chain, and envelope encryption with
// KEK rotation.
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

namespace {

// ---------------------------------------------------------------------------------------------
// Audit

TEST_P(StoreConformanceTest, AuditChainLinksEveryRowPerTenant) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  AuditEvent e;
  e.action = "Issue";
  e.identifiers = {"a.test", "with \"quotes\", commas\\"};
  e.account = 42;
  e.key_version = 3;
  e.acme_url = "https://ca.test/order/1";
  e.outcome = "rate limited";
  e.detail = "urn:ietf:params:acme:error:rateLimited";
  clock().Advance(absl::Seconds(1));
  ASSERT_OK(store().AppendAudit(scope, e));
  ASSERT_OK(store().AppendAudit(ScopeOf(b), e));
  ASSERT_OK(store().AppendAudit(
      scope, AuditEvent{"Deny", {}, std::nullopt, std::nullopt, "", "denied", ""}));
  EXPECT_THAT(store().AppendAudit(scope, AuditEvent{}), StatusIs(kInvalidArgument));

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rows, store().ListAudit(scope, {}));
  ASSERT_THAT(rows.items, SizeIs(3));
  const AuditRecord& issue = rows.items[1];
  EXPECT_EQ(issue.tenant, a.id);
  EXPECT_EQ(issue.seq, 2);
  EXPECT_EQ(issue.at, clock().Now());
  EXPECT_EQ(issue.actor.identity, "spiffe://test/admin");
  EXPECT_THAT(issue.event.identifiers, ElementsAre("a.test", "with \"quotes\", commas\\"));
  EXPECT_EQ(issue.event.account, 42);
  EXPECT_EQ(issue.event.key_version, 3);
  EXPECT_EQ(issue.event.acme_url, "https://ca.test/order/1");
  EXPECT_EQ(issue.event.outcome, "rate limited");
  EXPECT_EQ(issue.event.detail, "urn:ietf:params:acme:error:rateLimited");
  EXPECT_EQ(rows.items[2].event.account, std::nullopt);
  EXPECT_EQ(rows.items[0].prev_hash, std::string(32, '\0'));
  for (size_t i = 0; i < rows.items.size(); ++i) {
    EXPECT_EQ(rows.items[i].seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(rows.items[i].hash.size(), 32u);
    if (i > 0) {
      EXPECT_EQ(rows.items[i].prev_hash, rows.items[i - 1].hash);
    }
  }
  // Tenant b has its own chain from 1; the same event hashes differently there.
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> theirs, store().ListAudit(ScopeOf(b), {}));
  ASSERT_THAT(theirs.items, SizeIs(2));
  EXPECT_EQ(theirs.items[1].seq, 2);
  EXPECT_NE(theirs.items[1].hash, issue.hash);
  EXPECT_OK(store().VerifyAuditChain(scope));
  EXPECT_OK(store().VerifyAuditChain(ScopeOf(b)));

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> first, store().ListAudit(scope, {"", 2}));
  EXPECT_THAT(first.items, SizeIs(2));
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rest,
                       store().ListAudit(scope, {first.next_page_token, 2}));
  ASSERT_THAT(rest.items, SizeIs(1));
  EXPECT_EQ(rest.items[0].seq, 3);
  EXPECT_TRUE(rest.next_page_token.empty());
}

TEST_P(StoreConformanceTest, NoAuditRowCarriesKeyMaterial) {
  Tenant a = MakeTenant("alpha");
  const Scope scope = ScopeOf(a);
  Account account = MakeAccount(scope);
  const KeyLease lease = LeaseKeys(scope, account.id);
  crypto::PrivateKey next = NewKey(crypto::KeyAlgorithm::kEcdsaP384);
  ASSERT_OK(store().AddPendingKey(scope, lease, next, InfoFor(next)).status());
  ASSERT_OK(store().GetKey(scope, account.id, 2, "probe").status());
  ASSERT_OK(store().PromoteKey(scope, lease, 2));
  ASSERT_OK(store().GetActiveKey(scope, account.id, "sign").status());
  ASSERT_OK(store().MarkKeyCompromised(scope, lease, 1));
  crypto::PrivateKey cert_key = NewKey();
  NewCertificate cert = CertificateFor({"a.test"}, "0c");
  cert.private_key = &cert_key;
  ASSERT_OK_AND_ASSIGN(Certificate stored, store().InsertCertificate(scope, cert));
  ASSERT_OK(store().GetCertificateKey(scope, stored.id, "serve").status());
  crypto::PrivateKey order_key = NewKey(crypto::KeyAlgorithm::kRsa2048);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult order,
      store().CreateOrJoinOrder(
          scope, WithMaterial(NewOrder{account.id, {"b.test"}, "", "r", absl::Minutes(1)},
                              CsrBytes(700), &order_key)));
  ASSERT_OK(store().GetOrderCertificateKey(scope, order.order.id, "finalize").status());

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rows, store().ListAudit(scope, {"", 1000}));
  EXPECT_THAT(rows.items, SizeIs(11));
  for (const AuditRecord& r : rows.items) {
    std::string all = absl::StrCat(r.actor.identity, "|", r.actor.rpc, "|", r.event.action, "|",
                                   r.event.acme_url, "|", r.event.outcome, "|", r.event.detail);
    for (const std::string& id : r.event.identifiers) absl::StrAppend(&all, "|", id);
    EXPECT_THAT(FindLeaks(all, generated_keys()), IsEmpty()) << r.event.action;
  }
  EXPECT_OK(store().VerifyAuditChain(scope));
}

// Issue 11: a tenant's EAB credentials, kept for the accounts the service opens by itself: the
// HMAC key sealed and opened only by GetEabKey (audited with its purpose), shown by its key id;
// a second one replaces the first; forgotten on request; other tenants see none. No audit row
// carries the HMAC key.
TEST_P(StoreConformanceTest, AnEabKeyIsKeptSealedShownByItsIdAndEveryUseAudited) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  const Scope scope = ScopeOf(a);
  EXPECT_THAT(store().GetEabKeyInfo(scope), StatusIs(kNotFound, "no EAB key"));
  EXPECT_THAT(store().GetEabKey(scope, "x"), StatusIs(kNotFound, "no EAB key"));
  const std::string mac = "mac-bytes-7f3a91c0d2e4";
  ASSERT_OK_AND_ASSIGN(EabKeyInfo kept,
                       store().KeepEabKey(scope, "https://ca.test/dir", "kid-1", mac));
  EXPECT_EQ(kept.key_id, "kid-1");
  EXPECT_EQ(kept.directory_url, "https://ca.test/dir");
  EXPECT_EQ(kept.kept_at, clock().Now());
  ASSERT_OK_AND_ASSIGN(EabKeyInfo shown, store().GetEabKeyInfo(scope));
  EXPECT_EQ(shown.key_id, "kid-1");
  ASSERT_OK_AND_ASSIGN(EabKey opened, store().GetEabKey(scope, "ephemeral account"));
  EXPECT_EQ(opened.hmac_key.view(), mac);
  EXPECT_EQ(opened.info.key_id, "kid-1");
  EXPECT_THAT(store().GetEabKeyInfo(ScopeOf(b)), StatusIs(kNotFound));

  ASSERT_OK(store().KeepEabKey(scope, "https://ca.test/dir", "kid-2", "another mac").status());
  ASSERT_OK_AND_ASSIGN(EabKey second, store().GetEabKey(scope, "rollover"));
  EXPECT_EQ(second.info.key_id, "kid-2");
  EXPECT_EQ(second.hmac_key.view(), "another mac");
  ASSERT_OK(store().ForgetEabKey(scope));
  EXPECT_THAT(store().GetEabKeyInfo(scope), StatusIs(kNotFound));
  EXPECT_THAT(store().ForgetEabKey(scope), StatusIs(kNotFound));

  EXPECT_THAT(store().KeepEabKey(scope, "https://ca.test/dir", "", mac),
              StatusIs(kInvalidArgument, "eab_key_id"));
  EXPECT_THAT(store().KeepEabKey(scope, "https://ca.test/dir", "kid", ""),
              StatusIs(kInvalidArgument, "eab_hmac_key"));
  EXPECT_THAT(store().KeepEabKey(scope, "", "kid", mac), StatusIs(kInvalidArgument));
  EXPECT_THAT(store().KeepEabKey(scope, "https://ca.test/dir", "kid",
                                 std::string(kMaxEabHmacKeySize + 1, 'm')),
              StatusIs(kInvalidArgument, "eab_hmac_key"));

  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> rows, store().ListAudit(scope, {"", 1000}));
  std::vector<std::string> eab_rows;
  for (const AuditRecord& r : rows.items) {
    EXPECT_THAT(r.event.detail, Not(HasSubstr(mac))) << r.event.action;
    EXPECT_THAT(r.event.detail, Not(HasSubstr("another mac"))) << r.event.action;
    if (absl::StrContains(r.event.action, "EabKey")) {
      eab_rows.push_back(absl::StrCat(r.event.action, ": ", r.event.detail));
    }
  }
  EXPECT_THAT(eab_rows,
              ElementsAre("KeepEabKey: EAB key id kid-1 for https://ca.test/dir",
                          "UseEabKey: EAB key id kid-1 for https://ca.test/dir: ephemeral account",
                          "KeepEabKey: EAB key id kid-2 for https://ca.test/dir",
                          "UseEabKey: EAB key id kid-2 for https://ca.test/dir: rollover",
                          "ForgetEabKey: EAB key id kid-2 for https://ca.test/dir"));
  EXPECT_OK(store().VerifyAuditChain(scope));
}

// ---------------------------------------------------------------------------------------------
// Envelope encryption and KEK rotation

TEST_P(StoreConformanceTest, WithoutAKeyEncryptionKeyThereIsNoStore) {
  EXPECT_THAT(harness().Reopen(KekSet()), StatusIs(kFailedPrecondition, "no key-encryption key"));
}

TEST_P(StoreConformanceTest, RewrapMovesEveryKeyToTheNewKekSoTheOldCanBeDropped) {
  Tenant a = MakeTenant("alpha");
  Tenant b = MakeTenant("beta");
  std::vector<std::pair<Scope, AccountId>> accounts;
  for (const Tenant& t : {a, b}) {
    for (int i = 0; i < 2; ++i) {
      accounts.emplace_back(ScopeOf(t),
                            MakeAccount(ScopeOf(t), absl::StrCat("https://ca.test/dir", i)).id);
    }
  }
  crypto::PrivateKey pending = NewKey();
  ASSERT_OK(store()
                .AddPendingKey(accounts[0].first, LeaseKeys(accounts[0].first, accounts[0].second),
                               pending, InfoFor(pending))
                .status());
  crypto::PrivateKey cert_key = NewKey();
  NewCertificate cert = CertificateFor({"c.test"}, "0c");
  cert.private_key = &cert_key;
  ASSERT_OK_AND_ASSIGN(Certificate stored, store().InsertCertificate(ScopeOf(b), cert));
  // Orders' keys: one in flight, one of an order that failed (terminal, yet re-wrapped too).
  crypto::PrivateKey in_flight_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult in_flight,
      store().CreateOrJoinOrder(
          accounts[0].first,
          WithMaterial(NewOrder{accounts[0].second, {"o.test"}, "", "r", absl::Minutes(1)},
                       CsrBytes(200), &in_flight_key)));
  crypto::PrivateKey failed_key = NewKey();
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult failed,
      store().CreateOrJoinOrder(
          accounts[2].first,
          WithMaterial(NewOrder{accounts[2].second, {"f.test"}, "", "r", absl::Minutes(1)}, "",
                       &failed_key)));
  ASSERT_OK(store().TransitionOrder(accounts[2].first, *failed.lease, OrderState::kInvalid, {"no"}));
  // A kept EAB key (sealed like the private keys).
  ASSERT_OK(
      store().KeepEabKey(ScopeOf(b), "https://ca.test/dir0", "kid-b", "mac of beta").status());
  const int kRecords = 4 + 1 + 1 + 2 + 1;

  // A replica that knows only the new KEK cannot open the old records yet.
  ASSERT_OK_AND_ASSIGN(auto new_only, harness().Reopen(TestKeks(KekText("kek-b", 'b'))));
  EXPECT_THAT(new_only->GetActiveKey(accounts[0].first, accounts[0].second, "x"),
              StatusIs(kFailedPrecondition, "\"kek-a\", which is not configured"));

  ASSERT_OK_AND_ASSIGN(
      auto both, harness().Reopen(TestKeks(KekText("kek-a", 'a') + "\n" + KekText("kek-b", 'b'))));
  int64_t total = 0;
  for (int calls = 0; calls < 10; ++calls) {
    ASSERT_OK_AND_ASSIGN(VaultMaintenance::RewrapProgress p,
                         both->RewrapBatch(Actor{"job", "Rewrap"}, 4));
    EXPECT_LE(p.rewrapped, 4);
    total += p.rewrapped;
    if (p.done) break;
  }
  EXPECT_EQ(total, kRecords);
  ASSERT_OK_AND_ASSIGN(VaultMaintenance::RewrapProgress idle,
                       both->RewrapBatch(Actor{"job", "Rewrap"}, 4));
  EXPECT_EQ(idle.rewrapped, 0);
  EXPECT_TRUE(idle.done);

  for (const auto& [scope, account] : accounts) {
    ASSERT_OK_AND_ASSIGN(UnsealedAccountKey key, new_only->GetActiveKey(scope, account, "x"));
    EXPECT_EQ(key.info.kek_id, "kek-b");
  }
  ASSERT_OK_AND_ASSIGN(UnsealedAccountKey p2,
                       new_only->GetKey(accounts[0].first, accounts[0].second, 2, "x"));
  ASSERT_TRUE(p2.private_key.has_value());
  EXPECT_EQ(p2.private_key->public_key().ToDer(), pending.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey c,
                       new_only->GetCertificateKey(ScopeOf(b), stored.id, "x"));
  EXPECT_EQ(c.public_key().ToDer(), cert_key.public_key().ToDer());
  // new_only knows kek-b alone: the orders' keys opening there are wrapped under it.
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey o1, new_only->GetOrderCertificateKey(
                                                  accounts[0].first, in_flight.order.id, "x"));
  EXPECT_EQ(o1.public_key().ToDer(), in_flight_key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey o2,
                       new_only->GetOrderCertificateKey(accounts[2].first, failed.order.id, "x"));
  EXPECT_EQ(o2.public_key().ToDer(), failed_key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(EabKey eab, new_only->GetEabKey(ScopeOf(b), "x"));
  EXPECT_EQ(eab.hmac_key.view(), "mac of beta");
  EXPECT_THAT(AuditActions(ScopeOf(a)), ::testing::Contains("RewrapKeys"));
  EXPECT_THAT(AuditActions(ScopeOf(b)), ::testing::Contains("RewrapKeys"));
  EXPECT_OK(store().VerifyAuditChain(ScopeOf(a)));
}

}  // namespace
}  // namespace acmevault::storage::testing
