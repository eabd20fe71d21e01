#include "clients/testing/fake_service.h"

#include "absl/strings/str_cat.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace acmevault::clients::testing {
namespace {

namespace v1 = ::acmevault::v1;

// Each RPC of a generated service, forwarded to FakeServer::Handle under its method name.
#define ACMEVAULT_FAKE_RPC(Method, Request, Response)                                           \
  grpc::Status Method(grpc::ServerContext* context, const Request* request, Response* response) \
      override {                                                                                \
    return server_->Handle(#Method, context, *request, response);                               \
  }

// A generated service whose RPCs go to `server_`.
template <typename Service>
class Forwarding : public Service {
 public:
  explicit Forwarding(FakeServer* server) : server_(server) {}

 protected:
  FakeServer* server_;
};

class Certificates final : public Forwarding<v1::CertificateService::Service> {
 public:
  using Forwarding::Forwarding;
  ACMEVAULT_FAKE_RPC(IssueCertificate, v1::IssueCertificateRequest, v1::IssueCertificateResponse)
  ACMEVAULT_FAKE_RPC(GetOrder, v1::GetOrderRequest, v1::Order)
  ACMEVAULT_FAKE_RPC(GetCertificate, v1::GetCertificateRequest, v1::Certificate)
  ACMEVAULT_FAKE_RPC(ListCertificates, v1::ListCertificatesRequest, v1::ListCertificatesResponse)
  ACMEVAULT_FAKE_RPC(RevokeCertificate, v1::RevokeCertificateRequest, v1::RevokeCertificateResponse)
};

class Accounts final : public Forwarding<v1::AccountService::Service> {
 public:
  using Forwarding::Forwarding;
  ACMEVAULT_FAKE_RPC(CreateAccount, v1::CreateAccountRequest, v1::Account)
  ACMEVAULT_FAKE_RPC(GetAccount, v1::GetAccountRequest, v1::Account)
  ACMEVAULT_FAKE_RPC(RolloverAccountKey, v1::RolloverAccountKeyRequest,
                     v1::RolloverAccountKeyResponse)
  ACMEVAULT_FAKE_RPC(DeactivateAccount, v1::DeactivateAccountRequest, v1::Account)
  ACMEVAULT_FAKE_RPC(DeactivateAuthorizations, v1::DeactivateAuthorizationsRequest,
                     v1::DeactivateAuthorizationsResponse)
  ACMEVAULT_FAKE_RPC(RespondToCompromise, v1::RespondToCompromiseRequest,
                     v1::RespondToCompromiseResponse)
};

class Admin final : public Forwarding<v1::AdminService::Service> {
 public:
  using Forwarding::Forwarding;
  ACMEVAULT_FAKE_RPC(CreateTenant, v1::CreateTenantRequest, v1::Tenant)
  ACMEVAULT_FAKE_RPC(UpdateTenant, v1::UpdateTenantRequest, v1::Tenant)
  ACMEVAULT_FAKE_RPC(GetTenant, v1::GetTenantRequest, v1::Tenant)
  ACMEVAULT_FAKE_RPC(ListTenants, v1::ListTenantsRequest, v1::ListTenantsResponse)
  ACMEVAULT_FAKE_RPC(CreateToken, v1::CreateTokenRequest, v1::CreateTokenResponse)
  ACMEVAULT_FAKE_RPC(RevokeToken, v1::RevokeTokenRequest, v1::RevokeTokenResponse)
  ACMEVAULT_FAKE_RPC(BindIdentity, v1::BindIdentityRequest, v1::BindIdentityResponse)
  ACMEVAULT_FAKE_RPC(ListIdentities, v1::ListIdentitiesRequest, v1::ListIdentitiesResponse)
  ACMEVAULT_FAKE_RPC(UnbindIdentity, v1::UnbindIdentityRequest, v1::UnbindIdentityResponse)
};

class Health final : public Forwarding<grpc::health::v1::Health::Service> {
 public:
  using Forwarding::Forwarding;
  ACMEVAULT_FAKE_RPC(Check, grpc::health::v1::HealthCheckRequest,
                     grpc::health::v1::HealthCheckResponse)
};

#undef ACMEVAULT_FAKE_RPC

}  // namespace

std::unique_ptr<FakeServer> FakeServer::Start(const std::string& address) {
  auto fake = std::unique_ptr<FakeServer>(new FakeServer);
  fake->services_.push_back(std::make_unique<Certificates>(fake.get()));
  fake->services_.push_back(std::make_unique<Accounts>(fake.get()));
  fake->services_.push_back(std::make_unique<Admin>(fake.get()));
  fake->services_.push_back(std::make_unique<Health>(fake.get()));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  for (auto& s : fake->services_) builder.RegisterService(s.get());
  fake->server_ = builder.BuildAndStart();
  if (fake->server_ == nullptr || port == 0) return nullptr;
  fake->address_ = absl::StrCat("127.0.0.1:", port);
  return fake;
}

FakeServer::~FakeServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

void FakeServer::FailFirst(const std::string& method, int n) {
  absl::MutexLock lock(&mu_);
  fail_first_[method] = n;
}

void FakeServer::SetError(const std::string& method, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  errors_[method] = std::move(status);
}

void FakeServer::SetResponse(const std::string& method, const google::protobuf::Message& response) {
  absl::MutexLock lock(&mu_);
  responses_[method] = response.SerializeAsString();
}

void FakeServer::SetHandler(const std::string& method, Handler handler) {
  absl::MutexLock lock(&mu_);
  handlers_[method] = std::move(handler);
}

std::vector<RecordedCall> FakeServer::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::vector<RecordedCall> FakeServer::calls(const std::string& method) const {
  std::vector<RecordedCall> out;
  for (auto& c : calls()) {
    if (c.method == method) out.push_back(c);
  }
  return out;
}

grpc::Status FakeServer::Handle(const std::string& method, grpc::ServerContext* context,
                                const google::protobuf::Message& request,
                                google::protobuf::Message* response) {
  Handler handler;
  {
    absl::MutexLock lock(&mu_);
    RecordedCall call{method, request.SerializeAsString()};
    auto auth = context->client_metadata().find("authorization");
    if (auth != context->client_metadata().end()) {
      call.authorization = std::string(auth->second.data(), auth->second.size());
    }
    auto deadline = context->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      call.deadline_seconds =
          std::chrono::duration<double>(deadline - std::chrono::system_clock::now()).count();
    }
    calls_.push_back(std::move(call));
    if (int& n = fail_first_[method]; n > 0) {
      --n;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: unavailable");
    }
    if (auto it = errors_.find(method); it != errors_.end()) return it->second;
    if (auto it = responses_.find(method); it != responses_.end()) {
      response->ParseFromString(it->second);
      return grpc::Status::OK;
    }
    if (auto it = handlers_.find(method); it != handlers_.end()) handler = it->second;
  }
  return handler ? handler(request, response) : grpc::Status::OK;
}

}  // namespace acmevault::clients::testing
