// The conformance suite (store_conformance.h): idempotency keys. A key binds the order its creator
// made, for that creator only, for kIdempotencyKeyLifetime, and no longer once the order's
// certificate is revoked or expired.
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/store_conformance.h"

namespace acmevault::storage::testing {
namespace {

// Two hosts of one tenant, as the service names its authenticated callers.
Scope As(const Tenant& tenant, const std::string& identity) {
  return Scope{tenant.id, Actor{identity, "test/IssueCertificate"}};
}

NewOrder KeyedOrder(AccountId account, std::vector<std::string> ids, std::string key) {
  return NewOrder{account, std::move(ids), std::move(key), "r1", absl::Minutes(1)};
}

TEST_P(StoreConformanceTest, AnIdempotencyKeyJoinsOnlyForTheIdentityThatCreatedIt) {
  Tenant a = MakeTenant("alpha");
  const Scope web1 = As(a, "token:1"), web2 = As(a, "token:2");
  Account account = MakeAccount(ScopeOf(a));
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult first,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  ASSERT_TRUE(first.created);

  // Another identity of the same tenant: refused, whatever identifiers it names.
  EXPECT_THAT(store().CreateOrJoinOrder(web2, KeyedOrder(account.id, {"a.test"}, "web01")),
              StatusIs(kAlreadyExists, "idempotency key in use by another identity"));
  EXPECT_THAT(store().CreateOrJoinOrder(web2, KeyedOrder(account.id, {"b.test"}, "web01")),
              StatusIs(kAlreadyExists, "idempotency key in use by another identity"));
  // The creator joins its order, in flight or done.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult again,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.order.id, first.order.id);
  ASSERT_OK(store().TransitionOrder(web1, *first.lease, OrderState::kInvalid, {"CA said no"}));
  EXPECT_THAT(store().CreateOrJoinOrder(web2, KeyedOrder(account.id, {"a.test"}, "web01")),
              StatusIs(kAlreadyExists, "idempotency key in use by another identity"));
  ASSERT_OK_AND_ASSIGN(
      again, store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  EXPECT_EQ(again.order.id, first.order.id);
  // A request without a key still joins an order in flight for the same names: the key, not
  // the names, is what hands an order (and a service-held key) back.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult keyed,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"c.test"}, "web03")));
  ASSERT_OK_AND_ASSIGN(CreateOrderResult unkeyed,
                       store().CreateOrJoinOrder(web2, KeyedOrder(account.id, {"c.test"}, "")));
  EXPECT_FALSE(unkeyed.created);
  EXPECT_EQ(unkeyed.order.id, keyed.order.id);
}

TEST_P(StoreConformanceTest, AnOrderRecordsItsCreator) {
  Tenant a = MakeTenant("alpha");
  const Scope web1 = As(a, "spiffe://example.org/web1");
  Account account = MakeAccount(ScopeOf(a));
  ASSERT_OK_AND_ASSIGN(CreateOrderResult made,
                       store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "")));
  EXPECT_EQ(made.order.created_by, "spiffe://example.org/web1");
  ASSERT_OK_AND_ASSIGN(Order read, store().GetOrder(ScopeOf(a), made.order.id));
  EXPECT_EQ(read.created_by, "spiffe://example.org/web1");
  // Joined by another, it stays its creator's.
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult joined,
      store().CreateOrJoinOrder(ScopeOf(a), KeyedOrder(account.id, {"a.test"}, "")));
  EXPECT_FALSE(joined.created);
  EXPECT_EQ(joined.order.created_by, "spiffe://example.org/web1");
}

TEST_P(StoreConformanceTest, AnOrderKeepsItsChallengePreference) {
  Tenant a = MakeTenant("alpha");
  Account account = MakeAccount(ScopeOf(a));
  NewOrder dns = KeyedOrder(account.id, {"dns.test"}, "");
  dns.prefer_dns01 = true;
  ASSERT_OK_AND_ASSIGN(CreateOrderResult made, store().CreateOrJoinOrder(ScopeOf(a), dns));
  EXPECT_TRUE(made.order.prefer_dns01);
  ASSERT_OK_AND_ASSIGN(Order read, store().GetOrder(ScopeOf(a), made.order.id));
  EXPECT_TRUE(read.prefer_dns01);
  ASSERT_OK_AND_ASSIGN(CreateOrderResult http, store().CreateOrJoinOrder(
                                                   ScopeOf(a), KeyedOrder(account.id, {"http.test"}, "")));
  ASSERT_OK_AND_ASSIGN(Order plain, store().GetOrder(ScopeOf(a), http.order.id));
  EXPECT_FALSE(plain.prefer_dns01);
}

TEST_P(StoreConformanceTest, AnOrderKeepsTheCertIdItReplaces) {
  Tenant a = MakeTenant("alpha");
  Account account = MakeAccount(ScopeOf(a));
  NewOrder renewal = KeyedOrder(account.id, {"renew.test"}, "");
  renewal.replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult made, store().CreateOrJoinOrder(ScopeOf(a), renewal));
  EXPECT_EQ(made.order.replaces, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
  ASSERT_OK_AND_ASSIGN(Order read, store().GetOrder(ScopeOf(a), made.order.id));
  EXPECT_EQ(read.replaces, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
  ASSERT_OK_AND_ASSIGN(CreateOrderResult plain, store().CreateOrJoinOrder(
                                                    ScopeOf(a), KeyedOrder(account.id, {"new.test"}, "")));
  EXPECT_EQ(plain.order.replaces, "");
  for (const std::string& bad : std::vector<std::string>{"no-dot", ".AIdl", "aYhb.", "a+b.c",
                                                          std::string(300, 'a') + ".b"}) {
    NewOrder wrong = KeyedOrder(account.id, {"bad.test"}, "");
    wrong.replaces = bad;
    EXPECT_THAT(store().CreateOrJoinOrder(ScopeOf(a), wrong), StatusIs(kInvalidArgument, "replaces"))
        << bad;
  }
}

TEST_P(StoreConformanceTest, AnIdempotencyKeyExpiresAfter24Hours) {
  Tenant a = MakeTenant("alpha");
  const Scope web1 = As(a, "token:1"), web2 = As(a, "token:2");
  Account account = MakeAccount(ScopeOf(a));
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult first,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  ASSERT_OK(store().TransitionOrder(web1, *first.lease, OrderState::kInvalid, {"CA said no"}));

  clock().Advance(absl::Hours(24) - absl::Microseconds(1));
  ASSERT_OK_AND_ASSIGN(Order bound, store().FindOrderByIdempotencyKey(web1, "web01"));
  EXPECT_EQ(bound.id, first.order.id);
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult within,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  EXPECT_FALSE(within.created);
  EXPECT_EQ(within.order.id, first.order.id);

  // 24 hours after the order was made the key is free: to its creator, with other names ...
  clock().Advance(absl::Microseconds(1));
  EXPECT_THAT(store().FindOrderByIdempotencyKey(web1, "web01"), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult renewed,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"b.test"}, "web01")));
  EXPECT_TRUE(renewed.created);
  ASSERT_OK_AND_ASSIGN(bound, store().FindOrderByIdempotencyKey(web1, "web01"));
  EXPECT_EQ(bound.id, renewed.order.id);
  // ... and to any identity once that order's 24 hours have passed too.
  ASSERT_OK(store().TransitionOrder(web1, *renewed.lease, OrderState::kInvalid, {"CA said no"}));
  clock().Advance(absl::Hours(25));
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult taken,
      store().CreateOrJoinOrder(web2, KeyedOrder(account.id, {"a.test"}, "web01")));
  EXPECT_TRUE(taken.created);
  ASSERT_OK_AND_ASSIGN(bound, store().FindOrderByIdempotencyKey(web2, "web01"));
  EXPECT_EQ(bound.id, taken.order.id);
}

TEST_P(StoreConformanceTest, AKeyWhoseCertificateIsRevokedOrExpiredStartsANewOrder) {
  Tenant a = MakeTenant("alpha");
  const Scope web1 = As(a, "token:1");
  Account account = MakeAccount(ScopeOf(a));
  auto issue = [&](const std::string& key, const std::string& name, const std::string& serial,
                   absl::Duration lifetime) -> CreateOrderResult {
    auto made = store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {name}, key));
    EXPECT_TRUE(made.ok() && made->created) << made.status();
    if (!made.ok() || !made->created) return {};
    EXPECT_OK(store().RecordOrderUrl(web1, *made->lease, "https://ca.test/order/" + serial));
    NewCertificate cert = CertificateFor({name}, serial, lifetime);
    cert.order = made->order.id;
    EXPECT_OK(store().CompleteOrder(web1, *made->lease, cert).status());
    return *made;
  };

  CreateOrderResult revoked = issue("web01", "a.test", "0a", absl::Hours(24 * 90));
  ASSERT_OK_AND_ASSIGN(
      CreateOrderResult again,
      store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.order.id, revoked.order.id);
  ASSERT_OK_AND_ASSIGN(Order done, store().GetOrder(web1, revoked.order.id));
  ASSERT_TRUE(done.certificate.has_value());
  ASSERT_OK(store().MarkCertificateRevoked(web1, *done.certificate,
                                           crypto::RevocationReason::kSuperseded));
  EXPECT_THAT(store().FindOrderByIdempotencyKey(web1, "web01"), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(
      again, store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"a.test"}, "web01")));
  EXPECT_TRUE(again.created);
  EXPECT_NE(again.order.id, revoked.order.id);

  CreateOrderResult expiring = issue("web02", "b.test", "0b", absl::Hours(1));
  clock().Advance(absl::Hours(1));
  EXPECT_THAT(store().FindOrderByIdempotencyKey(web1, "web02"), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(
      again, store().CreateOrJoinOrder(web1, KeyedOrder(account.id, {"b.test"}, "web02")));
  EXPECT_TRUE(again.created);
  EXPECT_NE(again.order.id, expiring.order.id);
}

TEST_P(StoreConformanceTest, ConcurrentFirstUsesOfAKeyMakeOneOrder) {
  Tenant a = MakeTenant("alpha");
  const Scope web1 = As(a, "token:1");
  Account account = MakeAccount(ScopeOf(a));
  constexpr int kThreads = 6;
  std::vector<absl::StatusOr<CreateOrderResult>> results(kThreads, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    // Different names, so only the key can bring them together.
    threads.emplace_back([&, i] {
      results[i] = store().CreateOrJoinOrder(
          web1, KeyedOrder(account.id, {"n" + std::to_string(i) + ".test"}, "web01"));
    });
  }
  for (std::thread& t : threads) t.join();
  int created = 0, refused = 0;
  for (const auto& r : results) {
    if (r.ok()) {
      created += r->created ? 1 : 0;
    } else {
      EXPECT_THAT(r, StatusIs(kInvalidArgument, "other identifiers"));
      ++refused;
    }
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(refused, kThreads - 1);
}

}  // namespace
}  // namespace acmevault::storage::testing
