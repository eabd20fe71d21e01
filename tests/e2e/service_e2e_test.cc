// End to end: real acmevaultd processes against the local stack's PostgreSQL and a Pebble that
// validates HTTP-01 on the service's own responder. tests/run prepares the service
// (deploy/local/service prepare e2e) and passes its config as ACMEVAULT_E2E_CONFIG.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "acme/client.h"
#include "acme/http.h"
#include "acme/problem.h"
#include "acme/testing/pebble.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "common/testing/stack_env.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "storage/types.h"
#include "tests/e2e/e2e_fixture.h"

namespace acmevault {
namespace {

using ::testing::HasSubstr;

using e2e::Daemon;
using e2e::ReadFile;

class E2eTest : public e2e::E2eFixture {
 protected:
  void SetUp() override {
    E2eFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pebble_ = std::make_unique<acme::testing::PebbleManagement>(
        ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_E2E_MANAGEMENT"),
        ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA"));
  }

  // Against the root of the Pebble behind `management` (the default e2e one when empty): every
  // Pebble instance makes its own root.
  void ExpectChainVerifies(const std::string& chain_pem, const std::string& management = "") {
    auto pebble = management.empty()
                      ? nullptr
                      : std::make_unique<acme::testing::PebbleManagement>(
                            management, ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA"));
    auto root = (pebble ? pebble.get() : pebble_.get())->Root(0);
    ASSERT_TRUE(root.ok()) << root.status();
    auto ders = crypto::SplitPemChain(chain_pem);
    ASSERT_TRUE(ders.ok());
    EXPECT_TRUE(crypto::VerifyChain(*ders, *root, absl::Now()).ok());
  }

  std::unique_ptr<acme::testing::PebbleManagement> pebble_;
};

// The standard gRPC health service answers SERVING (checked with a generic stub: Debian ships
// no generated health client). HealthCheckRequest{} is empty; the reply is {status: SERVING=1}.
TEST_F(E2eTest, HealthServiceAnswersServing) {
  grpc::GenericStub stub(daemon_->channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = s;
                   done.Notify();
                 });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST_F(E2eTest, IssuesWithAHostCsrAndTheChainVerifies) {
  TenantTokens t = NewTenant();
  auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  std::string name = absl::StrCat("www.", t.name, ".example");
  auto csr = crypto::BuildCsr({name}, *key);
  ASSERT_TRUE(csr.ok());
  v1::IssueCertificateRequest r;
  r.add_identifiers(name);
  r.set_csr(*csr);
  v1::IssueCertificateResponse resp;
  auto c = Ctx(t.host);
  grpc::Status s = certs_->IssueCertificate(c.get(), r, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();
  EXPECT_TRUE(resp.private_key_pem().empty());
  auto chain = crypto::ParsePemChain(resp.certificate().chain_pem());
  ASSERT_TRUE(chain.ok());
  EXPECT_THAT((*chain)[0].dns_names, ::testing::ElementsAre(name));
  EXPECT_TRUE((*chain)[0].public_key.Equals(key->public_key()));
  ExpectChainVerifies(resp.certificate().chain_pem());
}

// Issue 11 item 4: with the default policy the order's authorizations are deactivated at the
// CA once the certificate is stored, as Pebble itself reports them (read with the tenant's
// account key, from the order's URL the service recorded), and the service's ledger holds none
// of them as outstanding.
TEST_F(E2eTest, AuthorizationsAreDeactivatedAtTheCaAfterIssuance) {
  TenantTokens t = NewTenant();
  v1::IssueCertificateResponse resp;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("a.", t.name, ".example"),
                                    absl::StrCat("b.", t.name, ".example")},
                                &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();

  auto store = OpenStore();
  ASSERT_TRUE(store.ok()) << store.status();
  auto tenant = (*store)->FindTenantByName(t.name);
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  const storage::Scope scope{tenant->id, {"e2e-test", "authorization hygiene"}};
  storage::OrderId order_id = 0;
  ASSERT_TRUE(absl::SimpleAtoi(resp.order().id(), &order_id)) << resp.order().id();
  auto order = (*store)->GetOrder(scope, order_id);
  ASSERT_TRUE(order.ok()) << order.status();
  auto accounts = (*store)->ListAccounts(scope);
  ASSERT_TRUE(accounts.ok() && accounts->size() == 1u);
  auto key = (*store)->GetActiveKey(scope, accounts->front().id, "e2e: read the order at the CA");
  ASSERT_TRUE(key.ok() && key->private_key) << key.status();

  const std::string ca_file = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA");
  auto http = acme::CurlTransport::Create({.ca_file = ca_file});
  ASSERT_TRUE(http.ok());
  auto acme = acme::AcmeClient::Create(
      {.directory_url = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_E2E_DIRECTORY"),
       .transport = http->get()});
  ASSERT_TRUE(acme.ok()) << acme.status();
  const acme::AccountRef ref{&*key->private_key, accounts->front().account_url};
  auto at_ca = (*acme)->GetOrder(ref, order->acme_url);
  ASSERT_TRUE(at_ca.ok()) << at_ca.status();
  ASSERT_EQ(at_ca->authorizations.size(), 2u);
  for (const std::string& url : at_ca->authorizations) {
    auto authz = (*acme)->GetAuthorization(ref, url);
    ASSERT_TRUE(authz.ok()) << url << ": " << authz.status();
    EXPECT_EQ(authz->status, "deactivated") << url;
  }
  storage::AuthorizationFilter of_order;
  of_order.order = order_id;
  auto outstanding = (*store)->ListOutstandingAuthorizations(scope, of_order);
  ASSERT_TRUE(outstanding.ok()) << outstanding.status();
  EXPECT_TRUE(outstanding->empty()) << outstanding->size() << " still outstanding in the ledger";
}

TEST_F(E2eTest, IssuesWithAServiceKeyReturnedOnlyToTheCaller) {
  TenantTokens t = NewTenant();
  v1::IssueCertificateResponse resp;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("api.", t.name, ".example")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();
  auto key = crypto::PrivateKey::FromPem(resp.private_key_pem());
  ASSERT_TRUE(key.ok()) << key.status();
  auto chain = crypto::ParsePemChain(resp.certificate().chain_pem());
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE((*chain)[0].public_key.Equals(key->public_key()));
  EXPECT_TRUE(resp.certificate().service_holds_key());
  ExpectChainVerifies(resp.certificate().chain_pem());
  // The renewal hint: the default policy's 30 days before expiry, not due; GetCertificate
  // gives the same.
  ASSERT_TRUE(resp.certificate().has_renew_at());
  EXPECT_EQ(resp.certificate().renew_at().seconds(),
            resp.certificate().not_after().seconds() - 30 * 86400);
  EXPECT_FALSE(resp.certificate().renewal_due());
  {
    v1::GetCertificateRequest get;
    get.set_serial(resp.certificate().serial());
    v1::Certificate read;
    auto gc = Ctx(t.host);
    ASSERT_TRUE(certs_->GetCertificate(gc.get(), get, &read).ok());
    EXPECT_EQ(read.renew_at().seconds(), resp.certificate().renew_at().seconds());
    EXPECT_FALSE(read.renewal_due());
  }

  // The default policy deactivated the order's authorizations once the certificate was stored.
  v1::DeactivateAuthorizationsResponse counts;
  auto dc = Ctx(t.admin);
  ASSERT_TRUE(accounts_->DeactivateAuthorizations(dc.get(), {}, &counts).ok());
  EXPECT_EQ(counts.deactivated() + counts.skipped() + counts.failed(), 0);

  // Listing never carries keys or chains.
  v1::ListCertificatesResponse list;
  auto c = Ctx(t.host);
  ASSERT_TRUE(certs_->ListCertificates(c.get(), {}, &list).ok());
  ASSERT_EQ(list.certificates_size(), 1);
  EXPECT_TRUE(list.certificates(0).chain_pem().empty());
}

// Requests for the same names share the order in flight (the database keeps one order in
// flight per identifier set; the store's conformance suite races the creations). A request
// that only arrives once the shared order has ended makes a new one: on a loaded machine an
// issuance takes a few tens of milliseconds, so a late thread can miss it. Of 8 requests
// started together, at least two share an order, and the requests of one order get its one
// certificate.
TEST_F(E2eTest, ConcurrentIdenticalRequestsShareOneOrder) {
  TenantTokens t = NewTenant();
  std::string name = absl::StrCat("shared.", t.name, ".example");
  auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  auto csr = crypto::BuildCsr({name}, *key);
  ASSERT_TRUE(csr.ok());
  constexpr int kRequests = 8;
  std::vector<std::thread> threads;
  std::vector<v1::IssueCertificateResponse> responses(kRequests);
  std::vector<grpc::Status> statuses(kRequests);
  absl::Notification go;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      v1::IssueCertificateRequest r;
      r.add_identifiers(name);
      r.set_csr(*csr);
      auto c = Ctx(t.host);
      go.WaitForNotification();
      statuses[i] = certs_->IssueCertificate(c.get(), r, &responses[i]);
    });
  }
  go.Notify();
  for (auto& th : threads) th.join();
  std::map<std::string, std::vector<int>> by_order;  // the requests that got each order
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    by_order[responses[i].order().id()].push_back(i);
  }
  size_t most_shared = 0;
  std::set<std::string> serials;
  for (const auto& [id, requests] : by_order) {
    most_shared = std::max(most_shared, requests.size());
    for (int i : requests) {
      EXPECT_EQ(responses[i].certificate().serial(), responses[requests[0]].certificate().serial())
          << "order " << id;
    }
    serials.insert(responses[requests[0]].certificate().serial());
  }
  EXPECT_GE(most_shared, 2u) << by_order.size() << " orders for " << kRequests << " requests";
  EXPECT_EQ(serials.size(), by_order.size());  // each order its own certificate
}

// A service-generated key goes only to the request that made it (or one repeating its
// idempotency key): another caller asking for the same names gets a new key and certificate.
TEST_F(E2eTest, ServiceKeysAreNeverHandedToAnotherRequest) {
  TenantTokens t = NewTenant();
  std::string name = absl::StrCat("own.", t.name, ".example");
  v1::IssueCertificateRequest r;
  r.add_identifiers(name);
  r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  r.set_idempotency_key("first");
  v1::IssueCertificateResponse first, again, other;
  auto c1 = Ctx(t.host);
  ASSERT_TRUE(certs_->IssueCertificate(c1.get(), r, &first).ok());
  ASSERT_FALSE(first.private_key_pem().empty());
  auto c2 = Ctx(t.host);
  ASSERT_TRUE(certs_->IssueCertificate(c2.get(), r, &again).ok());  // Same idempotency key.
  EXPECT_EQ(again.private_key_pem(), first.private_key_pem());
  EXPECT_EQ(again.certificate().serial(), first.certificate().serial());
  r.clear_idempotency_key();
  auto c3 = Ctx(t.host);
  grpc::Status s = certs_->IssueCertificate(c3.get(), r, &other);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_FALSE(other.private_key_pem().empty());
  EXPECT_NE(other.private_key_pem(), first.private_key_pem());
  EXPECT_NE(other.certificate().serial(), first.certificate().serial());
}

TEST_F(E2eTest, CreateAccountWithExternalAccountBinding) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_EAB_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(kid, "ACMEVAULT_PEBBLE_EAB_EAB_KID");
  ACMEVAULT_STACK_ENV_OR_SKIP(hmac, "ACMEVAULT_PEBBLE_EAB_EAB_HMAC");
  TenantTokens t = NewTenant(/*with_account=*/false, false, "", directory);
  v1::CreateAccountRequest req;
  req.set_terms_of_service_agreed(true);
  v1::Account account;
  auto c1 = Ctx(t.admin);
  grpc::Status s = accounts_->CreateAccount(c1.get(), req, &account);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("External Account Binding"));
  req.set_eab_key_id(kid);
  req.set_eab_hmac_key(hmac);
  auto c2 = Ctx(t.admin);
  s = accounts_->CreateAccount(c2.get(), req, &account);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(account.status(), v1::ACCOUNT_STATUS_VALID);
  EXPECT_EQ(account.directory_url(), directory);
}

TEST_F(E2eTest, RolloverThenIssueUsesTheNewKey) {
  TenantTokens t = NewTenant();
  v1::RolloverAccountKeyRequest r;
  r.set_reason("e2e");
  v1::RolloverAccountKeyResponse rolled;
  auto c = Ctx(t.admin);
  grpc::Status s = accounts_->RolloverAccountKey(c.get(), r, &rolled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(rolled.previous_key_version(), 1);
  EXPECT_EQ(rolled.account().key_version(), 2);
  v1::IssueCertificateResponse resp;
  s = IssueWithKey(t, {absl::StrCat("after-rollover.", t.name, ".example")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.certificate().issuing_key_version(), 2);
}

// A daemon whose policy scheduler scans every second and rotates and renews at once when due.
class PolicyE2eTest : public E2eTest {
 protected:
  std::string ExtraConfig() const override {
    return "policy { scan_interval_seconds: 1 scan_jitter_seconds: 1 "
           "rotation_spread_seconds: -1 renewal_spread_seconds: -1 "
           "renewal_check_interval_seconds: 1 }\n";
  }

  v1::Account GetAccount(const TenantTokens& t) {
    v1::Account account;
    auto c = Ctx(t.admin);
    EXPECT_TRUE(accounts_->GetAccount(c.get(), {}, &account).ok());
    return account;
  }

  void SetMaxKeyAge(const TenantTokens& t, int64_t seconds) {
    UpdatePolicy(t, [seconds](v1::TenantPolicy& p) {
      p.mutable_max_account_key_age()->set_seconds(seconds);
    });
  }

  void SetRenewalWindow(const TenantTokens& t, int64_t seconds) {
    UpdatePolicy(t, [seconds](v1::TenantPolicy& p) {
      p.mutable_renewal_window()->set_seconds(seconds);
    });
  }

  void UpdatePolicy(const TenantTokens& t, const std::function<void(v1::TenantPolicy&)>& change) {
    v1::GetTenantRequest get;
    get.set_name(t.name);
    v1::Tenant tenant;
    auto c = Ctx(root_token_);
    ASSERT_TRUE(admin_->GetTenant(c.get(), get, &tenant).ok());
    v1::UpdateTenantRequest update;
    update.set_name(t.name);
    *update.mutable_allowed_identifiers() = tenant.allowed_identifiers();
    *update.mutable_policy() = tenant.policy();
    change(*update.mutable_policy());
    update.set_directory_url(tenant.directory_url());
    v1::Tenant updated;
    auto uc = Ctx(root_token_);
    ASSERT_TRUE(admin_->UpdateTenant(uc.get(), update, &updated).ok());
  }
};

TEST_F(PolicyE2eTest, AServiceHeldCertificateIsRenewedInTheBackground) {
  TenantTokens t = NewTenant();
  const std::string name = absl::StrCat("renewed.", t.name, ".example");
  v1::IssueCertificateResponse first;
  grpc::Status s = IssueWithKey(t, {name}, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(first.certificate().service_holds_key());
  const std::string old_serial = first.certificate().serial();
  // A window longer than Pebble's certificates live: the certificate is due at once, and the
  // next scan (every second) renews it without any call.
  ASSERT_NO_FATAL_FAILURE(SetRenewalWindow(t, 20 * 365 * 86400));
  auto current = [&] {
    v1::GetCertificateRequest get;
    get.mutable_identifiers()->add_values(name);
    v1::Certificate cert;
    auto c = Ctx(t.host);
    return certs_->GetCertificate(c.get(), get, &cert).ok() ? cert : v1::Certificate{};
  };
  const absl::Time give_up = absl::Now() + absl::Seconds(90);
  while (current().serial() == old_serial && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  // Back to a short window (every renewal would be due again at once otherwise).
  ASSERT_NO_FATAL_FAILURE(SetRenewalWindow(t, 86400));
  const v1::Certificate renewed = current();
  ASSERT_NE(renewed.serial(), "") << "no current certificate";
  ASSERT_NE(renewed.serial(), old_serial) << "not renewed in the background within 90 s";
  EXPECT_TRUE(renewed.service_holds_key());
  EXPECT_EQ(renewed.state(), v1::CERTIFICATE_STATE_VALID);
  // The old one was not revoked.
  v1::GetCertificateRequest by_serial;
  by_serial.set_serial(old_serial);
  v1::Certificate old;
  auto c = Ctx(t.host);
  ASSERT_TRUE(certs_->GetCertificate(c.get(), by_serial, &old).ok());
  EXPECT_EQ(old.state(), v1::CERTIFICATE_STATE_VALID);
  EXPECT_EQ(old.revocation_reason(), v1::REVOCATION_REASON_UNSPECIFIED);
  // The certificate that renewed it records its serial (written as the renewal job ends).
  auto replacing = [&] {
    v1::ListCertificatesRequest list;
    list.set_page_size(1000);
    v1::ListCertificatesResponse page;
    auto lc = Ctx(t.host);
    if (!certs_->ListCertificates(lc.get(), list, &page).ok()) return 0;
    int n = 0;
    for (const auto& cert : page.certificates()) n += cert.replaces_serial() == old_serial;
    return n;
  };
  const absl::Time recorded_by = absl::Now() + absl::Seconds(30);
  while (replacing() == 0 && absl::Now() < recorded_by) absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(replacing(), 1);
}

TEST_F(PolicyE2eTest, RotationByPolicyMovesTheAccountToAKeyPebbleAccepts) {
  TenantTokens t = NewTenant();
  ASSERT_EQ(GetAccount(t).key_version(), 1);
  EXPECT_TRUE(GetAccount(t).has_next_key_rotation());
  ASSERT_NO_FATAL_FAILURE(SetMaxKeyAge(t, 1));
  const absl::Time give_up = absl::Now() + absl::Seconds(90);
  while (GetAccount(t).key_version() < 2 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_GE(GetAccount(t).key_version(), 2) << "no rotation by policy within 90 s";
  // Back to a long age; wait until a rotation that was under way has ended (the version holds).
  ASSERT_NO_FATAL_FAILURE(SetMaxKeyAge(t, 90 * 86400));
  int version = GetAccount(t).key_version();
  for (int same = 0; same < 3 && absl::Now() < give_up + absl::Seconds(30);) {
    absl::SleepFor(absl::Seconds(1));
    const int now = GetAccount(t).key_version();
    same = now == version ? same + 1 : 0;
    version = now;
  }
  // Pebble takes orders signed with the rotated key, and only with the account's current key.
  v1::IssueCertificateResponse resp;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("rotated.", t.name, ".example")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.certificate().issuing_key_version(), version);
  EXPECT_GE(version, 2);
  v1::GetTenantRequest get;
  get.set_name(t.name);
  v1::Tenant tenant;
  auto c = Ctx(root_token_);
  ASSERT_TRUE(admin_->GetTenant(c.get(), get, &tenant).ok());
  EXPECT_GT(tenant.next_account_key_rotation().seconds(), absl::ToUnixSeconds(absl::Now()) + 86400);
}

// Issue 11: at a CA that requires External Account Binding (a Pebble with EAB on, validating
// on the service's HTTP-01 port), the tenant keeps its EAB key when it creates its account; an
// order in ephemeral-account mode then opens an account of its own bound with the kept key,
// which Pebble accepts, and the certificate is issued.
TEST_F(PolicyE2eTest, TheKeptEabKeyBindsTheAccountsTheServiceOpensByItself) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_E2EEAB_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(kid, "ACMEVAULT_PEBBLE_E2EEAB_EAB_KID");
  ACMEVAULT_STACK_ENV_OR_SKIP(hmac, "ACMEVAULT_PEBBLE_E2EEAB_EAB_HMAC");
  TenantTokens t = NewTenant(/*with_account=*/false, false, "", directory);
  v1::CreateAccountRequest req;
  req.set_terms_of_service_agreed(true);
  req.set_eab_key_id(kid);
  req.set_eab_hmac_key(hmac);
  req.set_keep_eab_key(true);
  v1::Account account;
  auto c = Ctx(t.admin);
  grpc::Status s = accounts_->CreateAccount(c.get(), req, &account);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(account.kept_eab_key_id(), kid);
  EXPECT_EQ(GetAccount(t).kept_eab_key_id(), kid);

  ASSERT_NO_FATAL_FAILURE(
      UpdatePolicy(t, [](v1::TenantPolicy& p) { p.set_ephemeral_accounts(true); }));
  v1::IssueCertificateResponse resp;
  s = IssueWithKey(t, {absl::StrCat("eab-eph.", t.name, ".example")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();
  // The order's account is not the tenant's: one the service opened with the kept key.
  auto store = OpenStore();
  ASSERT_TRUE(store.ok()) << store.status();
  auto tenant = (*store)->FindTenantByName(t.name);
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  const storage::Scope scope{tenant->id, {"e2e-test", "kept EAB key"}};
  storage::OrderId order_id = 0;
  ASSERT_TRUE(absl::SimpleAtoi(resp.order().id(), &order_id)) << resp.order().id();
  auto order = (*store)->GetOrder(scope, order_id);
  ASSERT_TRUE(order.ok()) << order.status();
  auto order_account = (*store)->GetAccount(scope, order->account);
  ASSERT_TRUE(order_account.ok()) << order_account.status();
  EXPECT_TRUE(order_account->ephemeral);
  EXPECT_NE(order_account->account_url, account.account_url());
  EXPECT_FALSE(order_account->account_url.empty());
}

// Issue 11 item 7: a tenant in ephemeral-account mode, with no account of its own, issues; the
// order was made under an account of its own, which Pebble then reports deactivated (read with
// that account's key, as the service stored it), and the tenant still has no account.
TEST_F(PolicyE2eTest, AnEphemeralTenantsOrderAccountIsDeactivatedAtTheCaAfterIssuance) {
  TenantTokens t = NewTenant(/*with_account=*/false);
  ASSERT_NO_FATAL_FAILURE(
      UpdatePolicy(t, [](v1::TenantPolicy& p) { p.set_ephemeral_accounts(true); }));
  v1::IssueCertificateResponse resp;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("eph.", t.name, ".example")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();

  auto store = OpenStore();
  ASSERT_TRUE(store.ok()) << store.status();
  auto tenant = (*store)->FindTenantByName(t.name);
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  const storage::Scope scope{tenant->id, {"e2e-test", "ephemeral accounts"}};
  storage::OrderId order_id = 0;
  ASSERT_TRUE(absl::SimpleAtoi(resp.order().id(), &order_id)) << resp.order().id();
  auto order = (*store)->GetOrder(scope, order_id);
  ASSERT_TRUE(order.ok()) << order.status();
  // The caller may be answered a moment before the step that stored the certificate has
  // deactivated the account: wait for the row, bounded.
  absl::StatusOr<storage::Account> account;
  for (absl::Time until = absl::Now() + absl::Seconds(30); absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(100))) {
    account = (*store)->GetAccount(scope, order->account);
    if (!account.ok() || account->status != storage::AccountStatus::kValid) break;
  }
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_TRUE(account->ephemeral);
  EXPECT_EQ(account->status, storage::AccountStatus::kDeactivated);
  ASSERT_FALSE(account->account_url.empty());

  // Pebble's view, asked with the account's own key: deactivated (Pebble refuses a request of
  // a deactivated account as unauthorized, naming its status).
  auto keys = (*store)->ListKeys(scope, account->id);
  ASSERT_TRUE(keys.ok() && keys->size() == 1u);
  auto key = (*store)->GetKey(scope, account->id, 1, "e2e: read the account at the CA");
  ASSERT_TRUE(key.ok() && key->private_key) << key.status();
  const std::string ca_file = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA");
  auto http = acme::CurlTransport::Create({.ca_file = ca_file});
  ASSERT_TRUE(http.ok());
  auto acme = acme::AcmeClient::Create(
      {.directory_url = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_E2E_DIRECTORY"),
       .transport = http->get()});
  ASSERT_TRUE(acme.ok()) << acme.status();
  auto at_ca = (*acme)->GetAccount({&*key->private_key, account->account_url});
  if (at_ca.ok()) {
    EXPECT_EQ(at_ca->status, "deactivated");
  } else {
    EXPECT_TRUE(acme::IsAccountUnusable(at_ca.status())) << at_ca.status();
    EXPECT_THAT(std::string(at_ca.status().message()), HasSubstr("deactivated"));
  }

  // The tenant has no account of its own: its ephemeral accounts are not one.
  v1::Account main;
  auto c = Ctx(t.admin);
  EXPECT_EQ(accounts_->GetAccount(c.get(), {}, &main).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Issue 11 item 9: a tenant allowed ECDSA P-384 certificate keys only. GetTenant shows the
// policy; a P-256 key, asked for or in a host's CSR, is refused before any ACME request; a
// request naming no algorithm gets a P-384 key, and Pebble certifies it.
TEST_F(PolicyE2eTest, TheCertificateKeyPolicyIsEnforcedAndItsDefaultIsWhatPebbleCertifies) {
  TenantTokens t = NewTenant();
  ASSERT_NO_FATAL_FAILURE(UpdatePolicy(t, [](v1::TenantPolicy& p) {
    p.add_allowed_certificate_key_algorithms(v1::KEY_ALGORITHM_ECDSA_P384);
  }));
  v1::GetTenantRequest get;
  get.set_name(t.name);
  v1::Tenant tenant;
  auto gc = Ctx(root_token_);
  ASSERT_TRUE(admin_->GetTenant(gc.get(), get, &tenant).ok());
  EXPECT_THAT(tenant.policy().allowed_certificate_key_algorithms(),
              ::testing::ElementsAre(v1::KEY_ALGORITHM_ECDSA_P384));

  const std::string name = absl::StrCat("p384.", t.name, ".example");
  v1::IssueCertificateResponse resp;
  grpc::Status s = IssueWithKey(t, {name}, &resp);  // asks for ECDSA P-256
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("key_algorithm: ecdsa-p256 is not allowed"));
  auto p256 = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(p256.ok());
  auto csr = crypto::BuildCsr({name}, *p256);
  ASSERT_TRUE(csr.ok());
  v1::IssueCertificateRequest with_csr;
  with_csr.add_identifiers(name);
  with_csr.set_csr(*csr);
  auto cc = Ctx(t.host);
  s = certs_->IssueCertificate(cc.get(), with_csr, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("csr: ecdsa-p256 is not allowed"));

  v1::IssueCertificateRequest any_key;
  any_key.add_identifiers(name);
  any_key.set_key_algorithm(v1::KEY_ALGORITHM_UNSPECIFIED);
  auto ac = Ctx(t.host, 30);
  s = certs_->IssueCertificate(ac.get(), any_key, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();
  auto chain = crypto::ParsePemChain(resp.certificate().chain_pem());
  ASSERT_TRUE(chain.ok() && !chain->empty());
  EXPECT_EQ((*chain)[0].public_key.algorithm(), crypto::KeyAlgorithm::kEcdsaP384);
  auto key = crypto::PrivateKey::FromPem(resp.private_key_pem());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_TRUE((*chain)[0].public_key.Equals(key->public_key()));
  ExpectChainVerifies(resp.certificate().chain_pem());
}

TEST_F(E2eTest, RevokedSerialIsRevokedAtPebble) {
  TenantTokens t = NewTenant();
  v1::IssueCertificateResponse resp;
  ASSERT_TRUE(IssueWithKey(t, {absl::StrCat("rev.", t.name, ".example")}, &resp).ok());
  const std::string serial = resp.certificate().serial();
  auto before = pebble_->StatusBySerial(serial);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->status, "Valid");
  v1::RevokeCertificateRequest r;
  r.set_serial(serial);
  r.set_reason(v1::REVOCATION_REASON_SUPERSEDED);
  v1::RevokeCertificateResponse revoked;
  auto host = Ctx(t.host);
  EXPECT_EQ(certs_->RevokeCertificate(host.get(), r, &revoked).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto c = Ctx(t.admin);
  grpc::Status s = certs_->RevokeCertificate(c.get(), r, &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(revoked.certificate().state(), v1::CERTIFICATE_STATE_REVOKED);
  auto after = pebble_->StatusBySerial(serial);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->status, "Revoked");
  EXPECT_EQ(after->reason, 4);
}

TEST_F(E2eTest, DeactivatesAuthorizationsThenTheAccount) {
  TenantTokens t = NewTenant(/*with_account=*/true, /*keep_authorizations=*/true);
  v1::IssueCertificateResponse resp;
  ASSERT_TRUE(IssueWithKey(t, {absl::StrCat("authz.", t.name, ".example")}, &resp).ok());
  v1::DeactivateAuthorizationsResponse counts;
  auto c1 = Ctx(t.admin);
  grpc::Status s = accounts_->DeactivateAuthorizations(c1.get(), {}, &counts);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GE(counts.deactivated(), 1);
  auto c2 = Ctx(t.admin);
  ASSERT_TRUE(accounts_->DeactivateAuthorizations(c2.get(), {}, &counts).ok());
  EXPECT_EQ(counts.deactivated(), 0);

  v1::Account account;
  auto c3 = Ctx(t.admin);
  ASSERT_TRUE(accounts_->GetAccount(c3.get(), {}, &account).ok());
  v1::DeactivateAccountRequest d;
  d.set_confirm_account_url(account.account_url());
  auto c4 = Ctx(t.admin);
  s = accounts_->DeactivateAccount(c4.get(), d, &account);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(account.status(), v1::ACCOUNT_STATUS_DEACTIVATED);
  s = IssueWithKey(t, {absl::StrCat("later.", t.name, ".example")}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("no valid ACME account"));
}

TEST_F(E2eTest, CompromiseResponseReissuesAndRevokesEveryServiceHeldCertificate) {
  TenantTokens t = NewTenant();
  std::vector<std::string> old_serials;
  for (const char* host : {"one", "two", "three"}) {
    v1::IssueCertificateResponse resp;
    grpc::Status s = IssueWithKey(t, {absl::StrCat(host, ".", t.name, ".example")}, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    old_serials.push_back(resp.certificate().serial());
  }
  v1::RespondToCompromiseRequest r;
  r.set_deactivate_account(true);
  v1::RespondToCompromiseResponse report;
  auto c = Ctx(t.admin, 120);
  grpc::Status s = accounts_->RespondToCompromise(c.get(), r, &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(report.steps_size(), 5);
  for (const auto& step : report.steps()) EXPECT_TRUE(step.done()) << step.name();
  EXPECT_EQ(report.steps(2).detail(), "3 reissued; 0 held by hosts, not reissued");
  EXPECT_EQ(report.steps(3).detail(), "3 revoked (reason superseded)");
  EXPECT_EQ(report.account().status(), v1::ACCOUNT_STATUS_DEACTIVATED);
  for (const auto& serial : old_serials) {
    auto st = pebble_->StatusBySerial(serial);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->status, "Revoked") << serial;
  }
  // Three new live certificates replaced them.
  v1::ListCertificatesRequest lr;
  lr.set_state(v1::CERTIFICATE_STATE_VALID);
  v1::ListCertificatesResponse live;
  auto lc = Ctx(t.host);
  ASSERT_TRUE(certs_->ListCertificates(lc.get(), lr, &live).ok());
  EXPECT_EQ(live.certificates_size(), 3);
  for (const auto& cert : live.certificates()) {
    EXPECT_THAT(old_serials, ::testing::Not(::testing::Contains(cert.serial())));
  }
}

// Issue 11 item 6: the test plays the attacker. With the tenant's active account key (read from
// the vault, as someone who stole it would use it) it sends keyChange to a key of its own, behind
// the service's back. RespondToCompromise verifies the account first, finds Pebble no longer
// knows the service's key for it, marks it hijacked, and takes the path that needs no account
// key: a new account, the certificate reissued under it, the old one revoked at Pebble signed by
// its own certificate key.
TEST_F(E2eTest, AnAccountRolledOverBehindTheServicesBackIsDetectedAndReplaced) {
  TenantTokens t = NewTenant();
  v1::IssueCertificateResponse resp;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("hijack.", t.name, ".example")}, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string old_serial = resp.certificate().serial();

  auto store = OpenStore();
  ASSERT_TRUE(store.ok()) << store.status();
  auto tenant = (*store)->FindTenantByName(t.name);
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  const storage::Scope scope{tenant->id, {"e2e-test", "the attacker"}};
  auto accounts = (*store)->ListAccounts(scope);
  ASSERT_TRUE(accounts.ok() && accounts->size() == 1u);
  const storage::Account hijacked = accounts->front();
  auto key = (*store)->GetActiveKey(scope, hijacked.id, "e2e: the attacker's keyChange");
  ASSERT_TRUE(key.ok() && key->private_key) << key.status();
  const std::string ca_file = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA");
  auto http = acme::CurlTransport::Create({.ca_file = ca_file});
  ASSERT_TRUE(http.ok());
  auto acme = acme::AcmeClient::Create(
      {.directory_url = ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_E2E_DIRECTORY"),
       .transport = http->get()});
  ASSERT_TRUE(acme.ok()) << acme.status();
  auto attacker_key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(attacker_key.ok());
  ASSERT_TRUE(
      (*acme)->KeyChange({&*key->private_key, hijacked.account_url}, *attacker_key).ok());

  v1::RespondToCompromiseResponse report;
  auto c = Ctx(t.admin, 120);
  s = accounts_->RespondToCompromise(c.get(), v1::RespondToCompromiseRequest(), &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(report.steps_size(), 5);
  EXPECT_EQ(report.steps(0).name(), "hijack_detected");
  EXPECT_THAT(report.steps(0).detail(), HasSubstr("the CA knows no account for the active key"));
  EXPECT_EQ(report.steps(1).name(), "new_account");
  EXPECT_EQ(report.steps(2).detail(), "1 reissued; 0 held by hosts, not reissued");
  EXPECT_EQ(report.steps(3).detail(), "1 revoked with their certificate keys (reason superseded)");
  EXPECT_EQ(report.steps(4).name(), "not_done");
  EXPECT_FALSE(report.steps(4).done());
  EXPECT_THAT(report.steps(4).detail(),
              HasSubstr("the hijacked account " + hijacked.account_url + " cannot be deactivated"));
  EXPECT_NE(report.account().account_url(), hijacked.account_url);
  EXPECT_FALSE(report.account().has_hijacked_at());

  // Revoked at Pebble, by the certificate's key: the service no longer holds the account's.
  auto at_pebble = pebble_->StatusBySerial(old_serial);
  ASSERT_TRUE(at_pebble.ok()) << at_pebble.status();
  EXPECT_EQ(at_pebble->status, "Revoked");
  EXPECT_EQ(at_pebble->reason, 4);
  // The hijacked account stays marked; the audit log says what Pebble answered.
  auto marked = (*store)->GetAccount(scope, hijacked.id);
  ASSERT_TRUE(marked.ok()) << marked.status();
  EXPECT_TRUE(marked->hijacked_at.has_value());
  auto audit = (*store)->ListAudit(scope, {"", 1000});
  ASSERT_TRUE(audit.ok()) << audit.status();
  bool detected = false;
  for (const auto& row : audit->items) {
    if (row.event.action == "AccountHijackDetected") {
      detected = true;
      EXPECT_THAT(row.event.detail, HasSubstr("accountDoesNotExist"));
    }
  }
  EXPECT_TRUE(detected);
  // One live certificate replaced it, issued under the new account, and issuance goes on.
  v1::ListCertificatesRequest lr;
  lr.set_state(v1::CERTIFICATE_STATE_VALID);
  v1::ListCertificatesResponse live;
  auto lc = Ctx(t.host);
  ASSERT_TRUE(certs_->ListCertificates(lc.get(), lr, &live).ok());
  ASSERT_EQ(live.certificates_size(), 1);
  EXPECT_NE(live.certificates(0).serial(), old_serial);
  auto reissued = pebble_->StatusBySerial(live.certificates(0).serial());
  ASSERT_TRUE(reissued.ok()) << reissued.status();
  EXPECT_EQ(reissued->status, "Valid");
  s = IssueWithKey(t, {absl::StrCat("after.", t.name, ".example")}, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// A wildcard needs DNS-01: the service publishes the TXT record by an RFC 2136 update (TSIG) to
// the stack's BIND, and a Pebble that resolves through that BIND validates it.
TEST_F(E2eTest, IssuesAWildcardWithDns01ThroughBind) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_E2EDNS_DIRECTORY");
  TenantTokens t = NewTenant(/*with_account=*/true, /*keep_authorizations=*/false, "*.dns01.test",
                             directory);
  v1::Account account;
  auto c2 = Ctx(t.admin);
  grpc::Status s = accounts_->GetAccount(c2.get(), {}, &account);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(account.directory_url(), directory);

  const std::string base = absl::StrCat("w", getpid(), ".dns01.test");
  v1::IssueCertificateRequest r;
  r.add_identifiers("*." + base);
  r.add_identifiers(base);
  r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  r.set_challenge_type(v1::CHALLENGE_TYPE_DNS_01);  // The base name too: no HTTP here.
  v1::IssueCertificateResponse resp;
  auto c3 = Ctx(t.host);
  s = certs_->IssueCertificate(c3.get(), r, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.order().state(), v1::ORDER_STATE_VALID) << resp.order().error();
  auto chain = crypto::ParsePemChain(resp.certificate().chain_pem());
  ASSERT_TRUE(chain.ok());
  EXPECT_THAT((*chain)[0].dns_names, ::testing::UnorderedElementsAre("*." + base, base));
}

TEST_F(E2eTest, CrossTenantAndWrongRoleCallsAreDeniedWithoutAcmeRequests) {
  TenantTokens a = NewTenant();
  TenantTokens b = NewTenant();
  v1::IssueCertificateResponse issued;
  ASSERT_TRUE(IssueWithKey(a, {absl::StrCat("mine.", a.name, ".example")}, &issued).ok());
  const double acme_before = daemon_->Metric("acmevault_acme_requests_total");
  ASSERT_GT(acme_before, 0);

  // b's host asks for a's names.
  v1::IssueCertificateResponse resp;
  EXPECT_EQ(IssueWithKey(b, {absl::StrCat("www.", a.name, ".example")}, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // b reads a's order and certificate.
  v1::GetOrderRequest go;
  go.set_id(issued.order().id());
  v1::Order order;
  auto c1 = Ctx(b.admin);
  EXPECT_EQ(certs_->GetOrder(c1.get(), go, &order).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GetCertificateRequest gc;
  gc.set_serial(issued.certificate().serial());
  v1::Certificate cert;
  auto c2 = Ctx(b.admin);
  EXPECT_EQ(certs_->GetCertificate(c2.get(), gc, &cert).error_code(), grpc::StatusCode::NOT_FOUND);
  // b revokes a's certificate.
  v1::RevokeCertificateRequest rr;
  rr.set_serial(issued.certificate().serial());
  v1::RevokeCertificateResponse rev;
  auto c3 = Ctx(b.admin);
  EXPECT_EQ(certs_->RevokeCertificate(c3.get(), rr, &rev).error_code(), grpc::StatusCode::NOT_FOUND);
  // Wrong roles.
  v1::RolloverAccountKeyResponse rolled;
  auto c4 = Ctx(a.host);
  EXPECT_EQ(accounts_->RolloverAccountKey(c4.get(), {}, &rolled).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::Tenant tenant;
  v1::CreateTenantRequest ct;
  ct.set_name("stolen");
  auto c5 = Ctx(a.admin);
  EXPECT_EQ(admin_->CreateTenant(c5.get(), ct, &tenant).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(daemon_->Metric("acmevault_acme_requests_total"), acme_before);
}

// Two replicas on one database, one job queue. Replica B takes 40 orders and is killed
// (SIGKILL) while they are at the CA; replica A runs every step after that (a step B was in
// the middle of once B's 4 s lease expires) from the material stored with each order: every
// order ends valid, each with one certificate for the key the service generated.
TEST_F(E2eTest, AKilledReplicasOrdersAreFinishedByTheOther) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_E2ESLOW_DIRECTORY");
  daemon_.reset();  // Replica A below takes over the responder port Pebble validates on.
  const std::string base = ReadFile(config_) + "order_lease_seconds: 4\n";
  const std::string dir = ::acmevault::testing::StackEnv("TEST_TMPDIR");
  std::ofstream(dir + "/a.textproto") << base << "replica_id: \"replica-a\"\n";
  std::ofstream(dir + "/b.textproto")
      << std::regex_replace(base, std::regex("http01_listen_address: \"127.0.0.1:[0-9]+\""),
                            "http01_listen_address: \"127.0.0.1:0\"")
      << "replica_id: \"replica-b\"\n";
  auto a = Daemon::Start(dir + "/a.textproto", "replica-a");
  ASSERT_NE(a, nullptr);
  Bind(*a);
  TenantTokens t = NewTenant(/*with_account=*/true, /*keep_authorizations=*/false, "", directory);

  // Pebble sleeps a random 0-5 s before validating each: B is killed while most of the orders
  // wait at the CA.
  constexpr int kOrders = 40;
  auto b = Daemon::Start(dir + "/b.textproto", "replica-b");
  ASSERT_NE(b, nullptr);
  auto b_certs = v1::CertificateService::NewStub(b->channel());
  std::vector<std::string> order_ids(kOrders);
  std::vector<std::thread> callers;
  for (int i = 0; i < kOrders; ++i) {
    callers.emplace_back([&, i] {
      v1::IssueCertificateRequest r;
      r.add_identifiers(absl::StrCat("k", i, ".", t.name, ".example"));
      r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
      r.set_idempotency_key(absl::StrCat("kill-test-", i));
      r.set_wait_seconds(1);
      v1::IssueCertificateResponse handle;
      auto c = Ctx(t.host);
      grpc::Status s = b_certs->IssueCertificate(c.get(), r, &handle);
      EXPECT_TRUE(s.ok()) << s.error_message();
      order_ids[i] = handle.order().id();
    });
  }
  for (std::thread& c : callers) c.join();
  b->Stop(SIGKILL);

  int valid = 0;
  for (const std::string& id : order_ids) {
    ASSERT_FALSE(id.empty());
    v1::Order order;
    for (int i = 0; i < 1200; ++i) {
      v1::GetOrderRequest g;
      g.set_id(id);
      auto c = Ctx(t.host);
      ASSERT_TRUE(certs_->GetOrder(c.get(), g, &order).ok());
      if (order.state() == v1::ORDER_STATE_VALID || order.state() == v1::ORDER_STATE_INVALID) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    EXPECT_EQ(order.state(), v1::ORDER_STATE_VALID) << id << ": " << order.error();
    valid += order.state() == v1::ORDER_STATE_VALID;
  }
  EXPECT_EQ(valid, kOrders);
  // Each order once: one certificate per order, none issued twice.
  v1::ListCertificatesRequest list_request;
  list_request.set_page_size(1000);
  v1::ListCertificatesResponse list;
  auto lc = Ctx(t.host);
  ASSERT_TRUE(certs_->ListCertificates(lc.get(), list_request, &list).ok());
  EXPECT_EQ(list.certificates_size(), kOrders);

  // The same request again (same idempotency key) returns the certificate and the key the
  // service generated before B died, now from A.
  v1::IssueCertificateRequest again;
  again.add_identifiers(absl::StrCat("k0.", t.name, ".example"));
  again.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  again.set_idempotency_key("kill-test-0");
  v1::IssueCertificateResponse done;
  auto c3 = Ctx(t.host);
  grpc::Status s = certs_->IssueCertificate(c3.get(), again, &done);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(done.order().id(), order_ids[0]);
  auto chain = crypto::ParsePemChain(done.certificate().chain_pem());
  auto pem_key = crypto::PrivateKey::FromPem(done.private_key_pem());
  ASSERT_TRUE(chain.ok() && pem_key.ok());
  EXPECT_TRUE((*chain)[0].public_key.Equals(pem_key->public_key()));
  ExpectChainVerifies(done.certificate().chain_pem(),
                      ::acmevault::testing::StackEnv("ACMEVAULT_PEBBLE_E2ESLOW_MANAGEMENT"));
  EXPECT_THAT(ReadFile(dir + "/replica-a.log"), HasSubstr("\"msg\":\"order finished\""));
}

// mTLS: a client certificate whose URI SAN is a SPIFFE ID bound to a tenant authenticates the
// caller without any token; no certificate means no identity; another CA's certificate does
// not even connect.
TEST_F(E2eTest, SpiffeIdentityFromAClientCertificate) {
  const std::string dir = ::acmevault::testing::StackEnv("TEST_TMPDIR") + "/tls";
  ASSERT_TRUE(e2e::WriteTlsFiles(
      dir, {{"client", "spiffe://e2e.test/ns/prod/sa/web", "ca"},
            {"stranger", "spiffe://e2e.test/ns/prod/sa/web", "other"}}));

  TenantTokens t = NewTenant(/*with_account=*/false);
  v1::BindIdentityRequest bind;
  bind.set_spiffe_id("spiffe://e2e.test/ns/prod/sa/web");
  bind.set_tenant(t.name);
  bind.set_role(v1::ROLE_HOST);
  v1::BindIdentityResponse bound;
  auto c = Ctx(root_token_);
  ASSERT_TRUE(admin_->BindIdentity(c.get(), bind, &bound).ok());

  // A second daemon serving TLS that asks for client certificates; its own HTTP-01 port.
  auto tls_daemon = StartTlsDaemon(dir, "tls");
  ASSERT_NE(tls_daemon, nullptr);

  auto call = [&](const std::string& client) {
    auto stub = v1::CertificateService::NewStub(e2e::TlsChannel(*tls_daemon, dir, client));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListCertificatesResponse resp;
    return stub->ListCertificates(&ctx, {}, &resp);
  };
  grpc::Status with_cert = call("client");
  EXPECT_TRUE(with_cert.ok()) << with_cert.error_message();
  EXPECT_EQ(call("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("stranger").error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace acmevault
