#include "service/resumer.h"

#include <fstream>
#include <stdexcept>
#include <sstream>

#include "absl/time/clock.h"
#include "acme/testing/scripted_server.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "service/testing/happy_ca.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::testing::StatusIs;
using Call = ScriptedServer::Call;


// Accepts every DNS-01 record (the scripted CA does not look).
class AcceptingDns : public Dns01Solver {
 public:
  absl::Status Publish(absl::string_view, absl::string_view) override {
    ++published;
    return absl::OkStatus();
  }
  absl::Status Remove(absl::string_view, absl::string_view) override { return absl::OkStatus(); }
  int published = 0;
};

TEST(OrderResumer, AnotherReplicaFinishesAnOrderFromItsStoredMaterial) {
  testing::Fixture fx;
  fx.clock().Set(testing::TestChainValidTime());  // The scripted CA issues the test chain.
  auto tenant = fx.AddTenant("acme-corp", {"*.example.com"}, ScriptedServer::Url("/dir"));
  auto auth = *Authenticator::Create({&fx.store()});
  Caller host = *auth->Authenticate({"Bearer " + fx.AddToken(tenant, storage::Role::kHost), ""});
  auto account_key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  auto account = fx.store().CreateAccount(fx.AdminScope(tenant), ScriptedServer::Url("/dir"),
                                          *account_key, KeyInfo(account_key->public_key()),
                                          storage::KeyState::kActive);
  ASSERT_TRUE(account.ok());
  ASSERT_TRUE(fx.store()
                  .RecordAccountUrl(fx.AdminScope(tenant), account->id, ScriptedServer::Url("/acct/1"))
                  .ok());

  // The CA: the first newOrder fails (replica 1 gives up for now); afterwards all is well.
  ScriptedServer ca;
  std::string state = "pending";
  bool first = true;
  ca.On("POST", "/new-order", [&](const Call&) {
    if (first) {
      first = false;
      return ScriptedServer::Problem(503, "serverInternal", "try later");
    }
    state = "pending";
    return ScriptedServer::Json(201, ScriptedServer::Order("pending"),
                                {{"Location", ScriptedServer::Url("/order/1")}});
  });
  ca.On("POST", "/chall/2", [&](const Call&) {  // The dns-01 challenge.
    state = "ready";
    return ScriptedServer::Json(200, {{"type", "dns-01"}, {"url", ScriptedServer::Url("/chall/2")},
                                      {"status", "processing"}, {"token", "tok-2"}});
  });
  ca.On("POST", "/order/1",
        [&](const Call&) { return ScriptedServer::Json(200, ScriptedServer::Order(state)); });
  ca.On("POST", "/finalize/1", [&](const Call&) {
    state = "valid";
    return ScriptedServer::Json(200, ScriptedServer::Order("processing"));
  });

  AcmeClients::Options options;
  options.transport_instance = &ca;
  options.client.clock = &fx.clock();
  options.client.poll_interval = absl::Seconds(10);
  auto clients = AcmeClients::Create(options);
  ASSERT_TRUE(clients.ok());
  AcceptingDns dns;
  auto runner = *OrderRunner::Create(fx.WithStore(
      OrderRunner::Options{.clients = clients->get(), .dns01 = &dns, .clock = &fx.clock()}));
  auto replica1 = *Issuer::Create(fx.WithStore(
      Issuer::Options{.runner = runner.get(), .clock = &fx.clock(), .replica_id = "replica-1"}));
  auto replica2 = *Issuer::Create(fx.WithStore(
      Issuer::Options{.runner = runner.get(), .clock = &fx.clock(), .replica_id = "replica-2"}));

  auto leaf_key = crypto::PrivateKey::FromPem(testing::ReadTestFile("crypto/testdata/leaf_key.pem"));
  ASSERT_TRUE(leaf_key.ok());
  std::vector<std::string> names = {"*.leaf.example.com", "leaf.example.com"};
  IssueRequest request;
  request.identifiers = names;
  request.csr = *crypto::BuildCsr(names, *leaf_key);
  request.deadline = absl::InfiniteFuture();
  request.max_wait = absl::Milliseconds(300);
  request.idempotency_key = "resume-me";
  // Replica 1's run stops on the CA's 503: the caller hears UNAVAILABLE; the order stays.
  auto issued = replica1->Issue(host, request);
  EXPECT_EQ(issued.status().code(), absl::StatusCode::kUnavailable) << issued.status();
  replica1.reset();  // "Dies".
  auto left = fx.store().FindOrderByIdempotencyKey(fx.AdminScope(tenant), "resume-me");
  ASSERT_TRUE(left.ok()) << left.status();

  auto resumer = *OrderResumer::Create(
      fx.WithStore(OrderResumer::Options{.issuer = replica2.get(), .replica_id = "replica-2"}));
  auto none = resumer->RunOnce();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);  // The lease has not expired yet.
  fx.clock().Advance(absl::Minutes(3));
  auto resumed = resumer->RunOnce();
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(*resumed, 1);
  const storage::Scope scope = fx.AdminScope(tenant);
  replica2->WaitForOrder(scope, left->id, absl::Now() + absl::Seconds(10));
  auto order = fx.store().GetOrder(scope, left->id);
  ASSERT_TRUE(order.ok());
  EXPECT_EQ(order->state, storage::OrderState::kValid) << order->error;
  EXPECT_EQ(ca.CountCalls("POST", "/finalize/1"), 1);
  // A wildcard order is resumed with DNS-01 (the preference is not stored; wildcards need it).
  EXPECT_EQ(dns.published, 1);
  EXPECT_FALSE(order->csr_der.empty());
}

// An order store whose every call throws, as a broken library might.
class ThrowingOrders : public storage::OrderStore {
 public:
  [[noreturn]] static void Throw() { throw std::runtime_error("store library threw"); }
  absl::StatusOr<storage::CreateOrderResult> CreateOrJoinOrder(const storage::Scope&,
                                                               const storage::NewOrder&) override {
    Throw();
  }
  absl::StatusOr<storage::Order> GetOrder(const storage::Scope&, storage::OrderId) override {
    Throw();
  }
  absl::StatusOr<crypto::PrivateKey> GetOrderCertificateKey(const storage::Scope&,
                                                            storage::OrderId,
                                                            absl::string_view) override {
    Throw();
  }
  absl::StatusOr<storage::Order> FindOrderByIdempotencyKey(const storage::Scope&,
                                                           absl::string_view) override {
    Throw();
  }
  absl::Status AttachOrderMaterial(const storage::Scope&, const storage::Lease&, absl::string_view,
                                   const crypto::PrivateKey*) override {
    Throw();
  }
  absl::Status RecordOrderUrl(const storage::Scope&, const storage::Lease&,
                              absl::string_view) override {
    Throw();
  }
  absl::Status TransitionOrder(const storage::Scope&, const storage::Lease&, storage::OrderState,
                               const storage::OrderFailure&) override {
    Throw();
  }
  absl::StatusOr<storage::Certificate> CompleteOrder(const storage::Scope&, const storage::Lease&,
                                                     const storage::NewCertificate&) override {
    Throw();
  }
  absl::StatusOr<std::vector<storage::Lease>> ClaimStaleOrders(absl::string_view, absl::Duration,
                                                               int) override {
    Throw();
  }
  absl::StatusOr<storage::Lease> RenewLease(const storage::Scope&, const storage::Lease&,
                                            absl::Duration) override {
    Throw();
  }
  absl::Status ReleaseLease(const storage::Scope&, const storage::Lease&) override { Throw(); }
};

TEST(OrderResumer, AnExceptionInAPassIsReturnedNotFatal) {
  testing::Fixture fx;
  ScriptedServer ca;
  AcmeClients::Options options;
  options.transport_instance = &ca;
  auto clients = AcmeClients::Create(options);
  ASSERT_TRUE(clients.ok());
  auto runner = *OrderRunner::Create(fx.WithStore(OrderRunner::Options{.clients = clients->get()}));
  auto issuer = *Issuer::Create(fx.WithStore(Issuer::Options{.runner = runner.get()}));
  ThrowingOrders orders;
  auto resumer = *OrderResumer::Create({.orders = &orders, .issuer = issuer.get()});
  EXPECT_THAT(resumer->RunOnceGuarded(),
              StatusIs(absl::StatusCode::kInternal, "internal error: store library threw"));
}

TEST(OrderResumer, MissingCollaboratorsAreRefusedAtCreation) {
  testing::Fixture fx;
  EXPECT_THAT(
      OrderResumer::Create(fx.WithStore(OrderResumer::Options{})),
      StatusIs(absl::StatusCode::kInvalidArgument, "OrderResumer: Options.issuer is required"));
  EXPECT_THAT(OrderResumer::Create({}),
              StatusIs(absl::StatusCode::kInvalidArgument, "Options.orders"));
}

}  // namespace
}  // namespace acmevault::service
