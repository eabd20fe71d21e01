// The gRPC adapters: thin conversions between acmevault.v1 messages and the domain objects.
// Every handler authenticates the caller from its credential (never from a request field), calls
// one domain method, converts the result, and maps the Status with ToGrpcStatus. Each call gets
// a request id (returned in the "x-request-id" trailer), one JSON log line and its metrics. No
// SQL, HTTP or crypto here.
#ifndef ACMEVAULT_SERVICE_GRPC_SERVICES_H_
#define ACMEVAULT_SERVICE_GRPC_SERVICES_H_

#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "common/clock.h"
#include "service/accounts.h"
#include "service/admin.h"
#include "service/auth.h"
#include "service/issuer.h"
#include "service/metrics.h"

namespace acmevault::service {

// What every adapter borrows; all must outlive the services.
struct ServiceDeps {
  Authenticator* auth = nullptr;
  Issuer* issuer = nullptr;
  AccountManager* accounts = nullptr;
  Admin* admin = nullptr;
  storage::Store* store = nullptr;  // Read-only lookups (GetOrder, GetCertificate, List...).
  Metrics* metrics = nullptr;       // May be null.
  const Clock* clock = Clock::Real();
  // IssueCertificate waits at most this long when the caller set no deadline.
  absl::Duration default_issue_wait = absl::Seconds(25);
};

class CertificateServiceImpl final : public v1::CertificateService::Service {
 public:
  explicit CertificateServiceImpl(ServiceDeps deps) : deps_(deps) {}
  grpc::Status IssueCertificate(grpc::ServerContext* context,
                                const v1::IssueCertificateRequest* request,
                                v1::IssueCertificateResponse* response) override;
  grpc::Status GetOrder(grpc::ServerContext* context, const v1::GetOrderRequest* request,
                        v1::Order* response) override;
  grpc::Status GetCertificate(grpc::ServerContext* context,
                              const v1::GetCertificateRequest* request,
                              v1::Certificate* response) override;
  grpc::Status ListCertificates(grpc::ServerContext* context,
                                const v1::ListCertificatesRequest* request,
                                v1::ListCertificatesResponse* response) override;
  grpc::Status RevokeCertificate(grpc::ServerContext* context,
                                 const v1::RevokeCertificateRequest* request,
                                 v1::RevokeCertificateResponse* response) override;

 private:
  const ServiceDeps deps_;
};

class AccountServiceImpl final : public v1::AccountService::Service {
 public:
  explicit AccountServiceImpl(ServiceDeps deps) : deps_(deps) {}
  grpc::Status CreateAccount(grpc::ServerContext* context, const v1::CreateAccountRequest* request,
                             v1::Account* response) override;
  grpc::Status GetAccount(grpc::ServerContext* context, const v1::GetAccountRequest* request,
                          v1::Account* response) override;
  grpc::Status RolloverAccountKey(grpc::ServerContext* context,
                                  const v1::RolloverAccountKeyRequest* request,
                                  v1::RolloverAccountKeyResponse* response) override;
  grpc::Status DeactivateAccount(grpc::ServerContext* context,
                                 const v1::DeactivateAccountRequest* request,
                                 v1::Account* response) override;
  grpc::Status DeactivateAuthorizations(grpc::ServerContext* context,
                                        const v1::DeactivateAuthorizationsRequest* request,
                                        v1::DeactivateAuthorizationsResponse* response) override;
  grpc::Status RespondToCompromise(grpc::ServerContext* context,
                                   const v1::RespondToCompromiseRequest* request,
                                   v1::RespondToCompromiseResponse* response) override;

 private:
  const ServiceDeps deps_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(ServiceDeps deps) : deps_(deps) {}
  grpc::Status CreateTenant(grpc::ServerContext* context, const v1::CreateTenantRequest* request,
                            v1::Tenant* response) override;
  grpc::Status UpdateTenant(grpc::ServerContext* context, const v1::UpdateTenantRequest* request,
                            v1::Tenant* response) override;
  grpc::Status GetTenant(grpc::ServerContext* context, const v1::GetTenantRequest* request,
                         v1::Tenant* response) override;
  grpc::Status ListTenants(grpc::ServerContext* context, const v1::ListTenantsRequest* request,
                           v1::ListTenantsResponse* response) override;
  grpc::Status CreateToken(grpc::ServerContext* context, const v1::CreateTokenRequest* request,
                           v1::CreateTokenResponse* response) override;
  grpc::Status RevokeToken(grpc::ServerContext* context, const v1::RevokeTokenRequest* request,
                           v1::RevokeTokenResponse* response) override;
  grpc::Status BindIdentity(grpc::ServerContext* context, const v1::BindIdentityRequest* request,
                            v1::BindIdentityResponse* response) override;

 private:
  const ServiceDeps deps_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_GRPC_SERVICES_H_
