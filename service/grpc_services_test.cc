// The three services in process, through real gRPC stubs on loopback, over the fake store and
// the scripted CA: each RPC's success and its documented errors, credentials from metadata
// only, tenant isolation, request ids and ACME problem details.
#include "service/grpc_services.h"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <sstream>

#include "acme/testing/scripted_server.h"
#include "acmevault/v1/errors.pb.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "service/testing/fixture.h"
#include "service/testing/issuing.h"
#include "service/testing/happy_ca.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using acme::testing::ScriptedServer;
using storage::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Call = ScriptedServer::Call;


class GrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fx_.clock().Set(testing::TestChainValidTime());  // The scripted CA issues the test chain.
    AcmeClients::Options options;
    options.transport_instance = &ca_;
    options.client.clock = &fx_.clock();
    options.client.poll_interval = absl::Seconds(10);
    clients_ = *AcmeClients::Create(options);
    replica_ = testing::IssuingReplica::Create(fx_, {.clients = clients_.get()});
    issuer_ = &replica_->issuer();
    accounts_ = *AccountManager::Create(fx_.WithStore(
        AccountManager::Options{.clients = clients_.get(),
                                .issuer = issuer_,
                                .engine = &replica_->engine(),
                                .notices = &replica_->notices(),
                                .clock = &fx_.clock()}));
    replica_->Start();
    admin_ = *Admin::Create(fx_.WithStore(Admin::Options{
        .clock = &fx_.clock(), .default_directory_url = ScriptedServer::Url("/dir")}));
    auth_ = *Authenticator::Create({&fx_.store()});
    deps_ = {.auth = auth_.get(),
             .issuer = issuer_,
             .accounts = accounts_.get(),
             .admin = admin_.get(),
             .metrics = &metrics_,
             .clock = &fx_.clock()};
    certs_ = *CertificateServiceImpl::Create(deps_);
    accts_ = *AccountServiceImpl::Create(deps_);
    adm_ = *AdminServiceImpl::Create(deps_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(certs_.get());
    builder.RegisterService(accts_.get());
    builder.RegisterService(adm_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    cert_stub_ = v1::CertificateService::NewStub(channel);
    acct_stub_ = v1::AccountService::NewStub(channel);
    admin_stub_ = v1::AdminService::NewStub(channel);

    root_ = NewBearerToken();
    ASSERT_TRUE(admin_->Bootstrap(root_).ok());
    testing::ScriptHappyCa(ca_, &state_);
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return ctx;
  }

  // Creates tenant `name` allowed `pattern` and returns {admin token, host token}.
  std::pair<std::string, std::string> Tenant(const std::string& name,
                                             const std::string& pattern = "*.example.com") {
    v1::CreateTenantRequest req;
    req.set_name(name);
    req.add_allowed_identifiers(pattern);
    v1::Tenant t;
    auto ctx = Ctx(root_);
    EXPECT_TRUE(admin_stub_->CreateTenant(ctx.get(), req, &t).ok());
    auto token = [&](v1::Role role) {
      v1::CreateTokenRequest r;
      r.set_tenant(name);
      r.set_role(role);
      v1::CreateTokenResponse resp;
      auto c = Ctx(root_);
      EXPECT_TRUE(admin_stub_->CreateToken(c.get(), r, &resp).ok());
      return resp.token();
    };
    return {token(v1::ROLE_ADMIN), token(v1::ROLE_HOST)};
  }

  // Creates the tenant's ACME account (terms agreed) as its admin; the account, or an empty one
  // after a failed expectation.
  v1::Account CreateAccount(const std::string& admin) {
    v1::CreateAccountRequest create;
    create.set_terms_of_service_agreed(true);
    v1::Account account;
    auto ctx = Ctx(admin);
    grpc::Status s = acct_stub_->CreateAccount(ctx.get(), create, &account);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return account;
  }

  testing::Fixture fx_;
  ScriptedServer ca_;
  std::string state_ = "pending";
  Metrics metrics_;
  std::unique_ptr<AcmeClients> clients_;
  // Fake time runs while orders run on the engine (RetryAt times come due).
  testing::ClockTicker ticker_{fx_.clock()};
  std::unique_ptr<testing::IssuingReplica> replica_;
  Issuer* issuer_ = nullptr;
  std::unique_ptr<AccountManager> accounts_;
  std::unique_ptr<Admin> admin_;
  std::unique_ptr<Authenticator> auth_;
  ServiceDeps deps_;
  std::unique_ptr<CertificateServiceImpl> certs_;
  std::unique_ptr<AccountServiceImpl> accts_;
  std::unique_ptr<AdminServiceImpl> adm_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::CertificateService::Stub> cert_stub_;
  std::unique_ptr<v1::AccountService::Stub> acct_stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
  std::string root_;
};

TEST_F(GrpcTest, NoOrBadCredentialIsUnauthenticatedWithARequestId) {
  v1::GetAccountRequest req;
  v1::Account resp;
  auto ctx = Ctx("");
  grpc::Status s = acct_stub_->GetAccount(ctx.get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto trailers = ctx->GetServerTrailingMetadata();
  auto it = trailers.find("x-request-id");
  ASSERT_NE(it, trailers.end());
  EXPECT_EQ(it->second.size(), 16u);
  auto bad = Ctx(NewBearerToken());
  EXPECT_EQ(acct_stub_->GetAccount(bad.get(), req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GrpcTest, AccountIssueAndReadThroughTheWire) {
  auto [admin, host] = Tenant("acme");
  v1::CreateAccountRequest create;
  create.set_terms_of_service_agreed(true);
  create.add_contact("mailto:pki@acme.example");
  v1::Account account;
  auto c1 = Ctx(admin);
  grpc::Status s = acct_stub_->CreateAccount(c1.get(), create, &account);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(account.status(), v1::ACCOUNT_STATUS_VALID);
  EXPECT_EQ(account.key_version(), 1);
  EXPECT_EQ(account.key_algorithm(), v1::KEY_ALGORITHM_ECDSA_P256);
  EXPECT_EQ(account.key_thumbprint().size(), 43u);
  EXPECT_THAT(account.contact(), ElementsAre("mailto:pki@acme.example"));
  v1::Account read;
  auto c0 = Ctx(admin);
  ASSERT_TRUE(acct_stub_->GetAccount(c0.get(), {}, &read).ok());
  EXPECT_THAT(read.contact(), ElementsAre("mailto:pki@acme.example"));

  // A host may not manage the account.
  auto c2 = Ctx(host);
  EXPECT_EQ(acct_stub_->GetAccount(c2.get(), {}, &account).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  auto leaf_key = crypto::PrivateKey::FromPem(testing::ReadTestFile("crypto/testdata/leaf_key.pem"));
  ASSERT_TRUE(leaf_key.ok());
  // The scripted CA issues the test chain, which certifies leaf.example.com.
  auto csr = crypto::BuildCsr({"*.leaf.example.com", "leaf.example.com"}, *leaf_key);
  ASSERT_TRUE(csr.ok());
  v1::IssueCertificateRequest issue;
  issue.add_identifiers("leaf.example.com");
  issue.add_identifiers("*.leaf.example.com");
  issue.set_csr(*csr);
  v1::IssueCertificateResponse issued;
  auto c3 = Ctx(host);
  s = cert_stub_->IssueCertificate(c3.get(), issue, &issued);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(issued.order().state(), v1::ORDER_STATE_VALID);
  EXPECT_EQ(issued.certificate().serial(), "8f00d1e2c3b4a59687");
  EXPECT_EQ(issued.order().certificate_serial(), "8f00d1e2c3b4a59687");
  EXPECT_THAT(issued.certificate().chain_pem(), HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_TRUE(issued.private_key_pem().empty());

  v1::GetOrderRequest get_order;
  get_order.set_id(issued.order().id());
  v1::Order order;
  auto c4 = Ctx(host);
  ASSERT_TRUE(cert_stub_->GetOrder(c4.get(), get_order, &order).ok());
  EXPECT_EQ(order.state(), v1::ORDER_STATE_VALID);

  v1::GetCertificateRequest by_names;
  by_names.mutable_identifiers()->add_values("LEAF.example.com");
  by_names.mutable_identifiers()->add_values("*.leaf.example.com");
  v1::Certificate cert;
  auto c5 = Ctx(host);
  ASSERT_TRUE(cert_stub_->GetCertificate(c5.get(), by_names, &cert).ok());
  EXPECT_EQ(cert.serial(), "8f00d1e2c3b4a59687");
  EXPECT_EQ(cert.state(), v1::CERTIFICATE_STATE_VALID);
  // By serial, as `openssl x509 -serial` and `-text` print it.
  for (const char* serial : {"008F00D1E2C3B4A59687", "00:8f:00:d1:e2:c3:b4:a5:96:87"}) {
    v1::GetCertificateRequest printed;
    printed.set_serial(serial);
    v1::Certificate found;
    auto c = Ctx(host);
    grpc::Status got = cert_stub_->GetCertificate(c.get(), printed, &found);
    EXPECT_TRUE(got.ok()) << serial << ": " << got.error_message();
    EXPECT_EQ(found.serial(), "8f00d1e2c3b4a59687") << serial;
  }

  v1::ListCertificatesResponse list;
  auto c6 = Ctx(host);
  ASSERT_TRUE(cert_stub_->ListCertificates(c6.get(), {}, &list).ok());
  ASSERT_EQ(list.certificates_size(), 1);
  EXPECT_TRUE(list.certificates(0).chain_pem().empty());

  // Another tenant sees none of it, and cannot issue for these names.
  auto [other_admin, other_host] = Tenant("other", "*.other.example");
  auto c7 = Ctx(other_host);
  EXPECT_EQ(cert_stub_->GetOrder(c7.get(), get_order, &order).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::GetCertificateRequest by_serial;
  by_serial.set_serial("8f00d1e2c3b4a59687");
  auto c8 = Ctx(other_host);
  EXPECT_EQ(cert_stub_->GetCertificate(c8.get(), by_serial, &cert).error_code(),
            grpc::StatusCode::NOT_FOUND);
  int orders_before = ca_.CountCalls("POST", "/new-order");
  auto c9 = Ctx(other_host);
  s = cert_stub_->IssueCertificate(c9.get(), issue, &issued);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), orders_before);

  EXPECT_THAT(metrics_.Render(),
              HasSubstr("acmevault_rpc_requests_total{code=\"OK\",method=\"IssueCertificate\"} 1"));
}

TEST_F(GrpcTest, BadInputNamesTheFieldAndCaProblemsTravelAsDetails) {
  auto [admin, host] = Tenant("acme");
  v1::Account account = CreateAccount(admin);
  ASSERT_FALSE(account.account_url().empty());

  v1::IssueCertificateRequest issue;
  issue.add_identifiers("under_score.example.com");
  issue.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  v1::IssueCertificateResponse resp;
  auto c2 = Ctx(host);
  grpc::Status s = cert_stub_->IssueCertificate(c2.get(), issue, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("identifiers[0]"));

  ca_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Problem(429, "rateLimited", "too many", {{"Retry-After", "60"}});
  });
  v1::DeactivateAccountRequest deactivate;
  deactivate.set_confirm_account_url(account.account_url());
  auto c3 = Ctx(admin);
  s = acct_stub_->DeactivateAccount(c3.get(), deactivate, &account);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(s.error_details()));
  v1::AcmeProblem problem;
  ASSERT_EQ(details.details_size(), 1);
  ASSERT_TRUE(details.details(0).UnpackTo(&problem));
  EXPECT_EQ(problem.type(), "urn:ietf:params:acme:error:rateLimited");
  EXPECT_GT(problem.retry_after().seconds(), 0);
}

// Issue 9, defect 11: every failure is visible to the caller through GetOrder, with its ACME
// problem type.
TEST_F(GrpcTest, ACaProblemOnFinalizeReachesGetOrderWithItsType) {
  auto [admin, host] = Tenant("acme");
  ASSERT_FALSE(CreateAccount(admin).account_url().empty());
  ca_.On("POST", "/finalize/1", [](const Call&) {
    return ScriptedServer::Problem(400, "badCSR", "the CSR's key is too weak");
  });

  v1::IssueCertificateRequest issue;
  issue.add_identifiers("leaf.example.com");
  issue.add_identifiers("*.leaf.example.com");
  issue.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  issue.set_idempotency_key("web01");
  v1::IssueCertificateResponse issued;
  auto c2 = Ctx(host);
  grpc::Status s = cert_stub_->IssueCertificate(c2.get(), issue, &issued);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("badCSR"));

  auto tenant = fx_.store().FindTenantByName("acme");
  ASSERT_TRUE(tenant.ok());
  auto row = fx_.store().FindOrderByIdempotencyKey(fx_.AdminScope(tenant->id), "web01");
  ASSERT_TRUE(row.ok()) << row.status();
  v1::GetOrderRequest get;
  get.set_id(absl::StrCat(row->id));
  v1::Order order;
  auto c3 = Ctx(host);
  s = cert_stub_->GetOrder(c3.get(), get, &order);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(order.state(), v1::ORDER_STATE_INVALID);
  EXPECT_EQ(order.problem_type(), "urn:ietf:params:acme:error:badCSR");
  EXPECT_THAT(order.error(), HasSubstr("badCSR (HTTP 400): the CSR's key is too weak"));
}

TEST_F(GrpcTest, AdminServiceIsForPlatformAdminsOnly) {
  auto [admin, host] = Tenant("acme");
  v1::CreateTenantRequest req;
  req.set_name("sneaky");
  v1::Tenant t;
  auto c1 = Ctx(admin);
  EXPECT_EQ(admin_stub_->CreateTenant(c1.get(), req, &t).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ListTenantsResponse list;
  auto c2 = Ctx(root_);
  ASSERT_TRUE(admin_stub_->ListTenants(c2.get(), {}, &list).ok());
  EXPECT_EQ(list.tenants_size(), 2);  // platform, acme
  v1::CreateTokenRequest bad_role;
  bad_role.set_tenant("acme");
  v1::CreateTokenResponse token;
  auto c3 = Ctx(root_);
  grpc::Status s = admin_stub_->CreateToken(c3.get(), bad_role, &token);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("role"));
}

// A call refused as INVALID_ARGUMENT with a message naming `field`.
MATCHER_P(RefusedNaming, field, "") {
  *result_listener << "code " << arg.error_code() << ": " << arg.error_message();
  return arg.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
         arg.error_message().find(field) != std::string::npos;
}

// An enum value the API does not define is refused, naming the field, before anything happens;
// UNSPECIFIED keeps meaning the default.
TEST_F(GrpcTest, UndefinedEnumValuesAreInvalidArgumentNamingTheField) {
  auto [admin, host] = Tenant("acme");
  v1::CreateAccountRequest create;
  create.set_terms_of_service_agreed(true);
  create.set_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  v1::Account account;
  EXPECT_THAT(acct_stub_->CreateAccount(Ctx(admin).get(), create, &account),
              RefusedNaming("key_algorithm"));
  EXPECT_TRUE(ca_.calls().empty());
  create.set_key_algorithm(v1::KEY_ALGORITHM_UNSPECIFIED);
  ASSERT_TRUE(acct_stub_->CreateAccount(Ctx(admin).get(), create, &account).ok());
  EXPECT_EQ(account.key_algorithm(), v1::KEY_ALGORITHM_ECDSA_P256);

  const int orders_before = ca_.CountCalls("POST", "/new-order");
  v1::IssueCertificateRequest issue;
  issue.add_identifiers("leaf.example.com");
  issue.set_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  v1::IssueCertificateResponse issued;
  EXPECT_THAT(cert_stub_->IssueCertificate(Ctx(host).get(), issue, &issued),
              RefusedNaming("key_algorithm"));
  issue.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  issue.set_challenge_type(static_cast<v1::ChallengeType>(77));
  EXPECT_THAT(cert_stub_->IssueCertificate(Ctx(host).get(), issue, &issued),
              RefusedNaming("challenge_type"));
  EXPECT_EQ(ca_.CountCalls("POST", "/new-order"), orders_before);

  v1::RolloverAccountKeyRequest rollover;
  rollover.set_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  v1::RolloverAccountKeyResponse rolled;
  EXPECT_THAT(acct_stub_->RolloverAccountKey(Ctx(admin).get(), rollover, &rolled),
              RefusedNaming("key_algorithm"));
  v1::RespondToCompromiseRequest compromise;
  compromise.set_new_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  v1::RespondToCompromiseResponse report;
  EXPECT_THAT(acct_stub_->RespondToCompromise(Ctx(admin).get(), compromise, &report),
              RefusedNaming("new_key_algorithm"));
  EXPECT_EQ(ca_.CountCalls("POST", "/key-change"), 0);

  v1::ListCertificatesRequest list;
  list.set_state(static_cast<v1::CertificateState>(9));
  v1::ListCertificatesResponse page;
  EXPECT_THAT(cert_stub_->ListCertificates(Ctx(host).get(), list, &page), RefusedNaming("state"));
  v1::RevokeCertificateRequest revoke;
  revoke.set_serial("abc123");
  revoke.set_reason(static_cast<v1::RevocationReason>(2));  // cACompromise: not in the API.
  v1::RevokeCertificateResponse revoked;
  EXPECT_THAT(cert_stub_->RevokeCertificate(Ctx(admin).get(), revoke, &revoked),
              RefusedNaming("reason"));

  v1::CreateTenantRequest tenant;
  tenant.set_name("strict");
  tenant.mutable_policy()->set_account_key_algorithm(static_cast<v1::KeyAlgorithm>(99));
  v1::Tenant created;
  EXPECT_THAT(admin_stub_->CreateTenant(Ctx(root_).get(), tenant, &created),
              RefusedNaming("policy.account_key_algorithm"));
  v1::CreateTokenRequest token;
  token.set_tenant("acme");
  token.set_role(static_cast<v1::Role>(99));
  v1::CreateTokenResponse made;
  EXPECT_THAT(admin_stub_->CreateToken(Ctx(root_).get(), token, &made), RefusedNaming("role"));
  v1::BindIdentityRequest bind;
  bind.set_spiffe_id("spiffe://example.org/web");
  bind.set_tenant("acme");
  bind.set_role(static_cast<v1::Role>(99));
  v1::BindIdentityResponse bound;
  EXPECT_THAT(admin_stub_->BindIdentity(Ctx(root_).get(), bind, &bound), RefusedNaming("role"));
}

// Every repeated request field has a documented cap; past it the request is refused naming the
// field, before anything is stored or sent to the CA.
TEST_F(GrpcTest, RepeatedFieldsPastTheirCapAreInvalidArgumentNamingTheField) {
  auto [admin, host] = Tenant("acme");
  v1::CreateTenantRequest tenant;
  tenant.set_name("wide");
  for (int i = 0; i <= 1000; ++i) tenant.add_allowed_identifiers(absl::StrCat("h", i, ".example"));
  v1::Tenant created;
  EXPECT_THAT(admin_stub_->CreateTenant(Ctx(root_).get(), tenant, &created),
              RefusedNaming("allowed_identifiers: at most 1000"));
  tenant.clear_allowed_identifiers();
  tenant.add_allowed_identifiers("*.wide.example");
  for (int i = 0; i < 9; ++i) {
    tenant.mutable_policy()->add_allowed_certificate_key_algorithms(v1::KEY_ALGORITHM_ECDSA_P256);
  }
  EXPECT_THAT(admin_stub_->CreateTenant(Ctx(root_).get(), tenant, &created),
              RefusedNaming("policy.allowed_certificate_key_algorithms: at most 8"));
  tenant.mutable_policy()->clear_allowed_certificate_key_algorithms();
  tenant.mutable_policy()->add_allowed_certificate_key_algorithms(
      static_cast<v1::KeyAlgorithm>(99));
  EXPECT_THAT(admin_stub_->CreateTenant(Ctx(root_).get(), tenant, &created),
              RefusedNaming("policy.allowed_certificate_key_algorithms"));

  v1::CreateAccountRequest account;
  account.set_terms_of_service_agreed(true);
  for (int i = 0; i <= 10; ++i) account.add_contact(absl::StrCat("mailto:a", i, "@example.com"));
  v1::Account made;
  EXPECT_THAT(acct_stub_->CreateAccount(Ctx(admin).get(), account, &made),
              RefusedNaming("contact: at most 10"));
  EXPECT_TRUE(ca_.calls().empty());

  v1::IssueCertificateRequest issue;
  for (int i = 0; i <= 100; ++i) issue.add_identifiers(absl::StrCat("h", i, ".example.com"));
  v1::IssueCertificateResponse issued;
  EXPECT_THAT(cert_stub_->IssueCertificate(Ctx(host).get(), issue, &issued),
              RefusedNaming("identifiers: at most 100"));
}

// The RPCs the tests above do not reach, each with its success and a documented error.
TEST_F(GrpcTest, EveryOtherRpcSucceedsAndFailsAsDocumented) {
  auto [admin, host] = Tenant("acme");
  v1::Account account = CreateAccount(admin);
  ASSERT_FALSE(account.account_url().empty());
  std::unique_ptr<grpc::ClientContext> c;

  // RolloverAccountKey: ok; PERMISSION_DENIED for a host.
  v1::RolloverAccountKeyResponse rolled;
  c = Ctx(admin);
  grpc::Status s = acct_stub_->RolloverAccountKey(c.get(), {}, &rolled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(rolled.account().key_version(), 2);
  c = Ctx(host);
  EXPECT_EQ(acct_stub_->RolloverAccountKey(c.get(), {}, &rolled).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // DeactivateAuthorizations: ok (nothing outstanding); INVALID_ARGUMENT for a bad name.
  v1::DeactivateAuthorizationsResponse counts;
  c = Ctx(admin);
  ASSERT_TRUE(acct_stub_->DeactivateAuthorizations(c.get(), {}, &counts).ok());
  EXPECT_EQ(counts.deactivated(), 0);
  v1::DeactivateAuthorizationsRequest bad_names;
  bad_names.add_identifiers("not a name");
  c = Ctx(admin);
  EXPECT_EQ(acct_stub_->DeactivateAuthorizations(c.get(), bad_names, &counts).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // RevokeCertificate: NOT_FOUND for an unknown serial; INVALID_ARGUMENT without one.
  v1::RevokeCertificateRequest revoke;
  revoke.set_serial("abc123");
  v1::RevokeCertificateResponse revoked;
  c = Ctx(admin);
  EXPECT_EQ(cert_stub_->RevokeCertificate(c.get(), revoke, &revoked).error_code(),
            grpc::StatusCode::NOT_FOUND);
  c = Ctx(admin);
  EXPECT_EQ(cert_stub_->RevokeCertificate(c.get(), {}, &revoked).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // RespondToCompromise: every step done (no certificates, no authorizations).
  v1::RespondToCompromiseRequest compromise;
  v1::RespondToCompromiseResponse report;
  c = Ctx(admin);
  s = acct_stub_->RespondToCompromise(c.get(), compromise, &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(report.steps_size(), 5);
  EXPECT_TRUE(report.steps(0).done());
  EXPECT_FALSE(report.steps(4).done());  // Account deactivation was not asked for.
  EXPECT_EQ(report.account().key_version(), 3);

  // GetTenant / UpdateTenant: ok; NOT_FOUND for an unknown name.
  v1::GetTenantRequest get;
  get.set_name("acme");
  v1::Tenant tenant;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->GetTenant(c.get(), get, &tenant).ok());
  EXPECT_EQ(tenant.allowed_identifiers(0), "*.example.com");
  v1::UpdateTenantRequest update;
  update.set_name("acme");
  update.add_allowed_identifiers("*.acme.example");
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->UpdateTenant(c.get(), update, &tenant).ok());
  EXPECT_EQ(tenant.allowed_identifiers(0), "*.acme.example");
  update.set_name("nobody");
  c = Ctx(root_);
  EXPECT_EQ(admin_stub_->UpdateTenant(c.get(), update, &tenant).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // BindIdentity: ok; INVALID_ARGUMENT for a non-SPIFFE ID.
  v1::BindIdentityRequest bind;
  bind.set_spiffe_id("spiffe://example.org/web");
  bind.set_tenant("acme");
  bind.set_role(v1::ROLE_HOST);
  v1::BindIdentityResponse bound;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->BindIdentity(c.get(), bind, &bound).ok());
  EXPECT_THAT(bound.binding_id(), ::testing::StartsWith("acme:"));
  bind.set_spiffe_id("https://example.org/web");
  c = Ctx(root_);
  EXPECT_EQ(admin_stub_->BindIdentity(c.get(), bind, &bound).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // ListIdentities names the binding by the id BindIdentity gave; UnbindIdentity ends it.
  v1::ListIdentitiesRequest list_req;
  list_req.set_tenant("acme");
  v1::ListIdentitiesResponse listed;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->ListIdentities(c.get(), list_req, &listed).ok());
  ASSERT_GE(listed.identities_size(), 1);
  const v1::Identity& web = listed.identities(listed.identities_size() - 1);
  EXPECT_EQ(web.id(), bound.binding_id());
  EXPECT_EQ(web.spiffe_id(), "spiffe://example.org/web");
  EXPECT_EQ(web.role(), v1::ROLE_HOST);
  EXPECT_FALSE(web.bearer_token());
  v1::UnbindIdentityRequest unbind;
  unbind.set_binding_id(bound.binding_id());
  v1::UnbindIdentityResponse unbound;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->UnbindIdentity(c.get(), unbind, &unbound).ok());
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->ListIdentities(c.get(), list_req, &listed).ok());
  for (const v1::Identity& i : listed.identities()) EXPECT_NE(i.id(), bound.binding_id());

  // A token may expire; the response says when.
  v1::CreateTokenRequest expiring;
  expiring.set_tenant("acme");
  expiring.set_role(v1::ROLE_HOST);
  expiring.mutable_ttl()->set_seconds(3600);
  v1::CreateTokenResponse made;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->CreateToken(c.get(), expiring, &made).ok());
  EXPECT_EQ(made.expires_at().seconds(), absl::ToUnixSeconds(fx_.clock().Now()) + 3600);
  expiring.mutable_ttl()->set_seconds(-1);
  c = Ctx(root_);
  EXPECT_THAT(admin_stub_->CreateToken(c.get(), expiring, &made), RefusedNaming("ttl"));

  // RevokeToken: the host token stops working; a malformed id is INVALID_ARGUMENT.
  v1::CreateTokenRequest extra;
  extra.set_tenant("acme");
  extra.set_role(v1::ROLE_HOST);
  v1::CreateTokenResponse token;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->CreateToken(c.get(), extra, &token).ok());
  v1::RevokeTokenRequest rt;
  rt.set_token_id(token.token_id());
  v1::RevokeTokenResponse rtr;
  c = Ctx(root_);
  ASSERT_TRUE(admin_stub_->RevokeToken(c.get(), rt, &rtr).ok());
  v1::ListCertificatesResponse list;
  c = Ctx(token.token());
  EXPECT_EQ(cert_stub_->ListCertificates(c.get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  rt.set_token_id("garbage");
  c = Ctx(root_);
  EXPECT_EQ(admin_stub_->RevokeToken(c.get(), rt, &rtr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcTest, EachServiceRequiresWhatItCalls) {
  ServiceDeps no_auth = deps_;
  no_auth.auth = nullptr;
  EXPECT_THAT(CertificateServiceImpl::Create(no_auth),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "CertificateService: ServiceDeps.auth is required"));
  EXPECT_THAT(AccountServiceImpl::Create(no_auth),
              StatusIs(absl::StatusCode::kInvalidArgument, "ServiceDeps.auth"));
  EXPECT_THAT(AdminServiceImpl::Create(no_auth),
              StatusIs(absl::StatusCode::kInvalidArgument, "ServiceDeps.auth"));
  // Each needs only its own domain object.
  EXPECT_THAT(CertificateServiceImpl::Create({.auth = auth_.get(), .accounts = accounts_.get()}),
              StatusIs(absl::StatusCode::kInvalidArgument, "ServiceDeps.issuer"));
  EXPECT_THAT(AccountServiceImpl::Create({.auth = auth_.get(), .issuer = issuer_}),
              StatusIs(absl::StatusCode::kInvalidArgument, "ServiceDeps.accounts"));
  EXPECT_THAT(AdminServiceImpl::Create({.auth = auth_.get(), .accounts = accounts_.get()}),
              StatusIs(absl::StatusCode::kInvalidArgument, "ServiceDeps.admin"));
  EXPECT_TRUE(AdminServiceImpl::Create({.auth = auth_.get(), .admin = admin_.get()}).ok());
}

}  // namespace
}  // namespace acmevault::service
