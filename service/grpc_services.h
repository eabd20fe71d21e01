// The gRPC adapters: thin conversions between acmevault.v1 messages and the domain objects.
// Every handler converts the request (service/proto_convert.h), calls one domain method and
// converts the result back. One wrapper around every handler authenticates the caller from its
// credential (never from a request field), gives the call a request id (returned in the
// "x-request-id" trailer), one JSON log line and its metrics, and maps the Status with
// ToGrpcStatus. Checks of the request's fields and the arithmetic of waits belong to the domain
// objects. No SQL, HTTP or crypto here.
#ifndef ACMEVAULT_SERVICE_GRPC_SERVICES_H_
#define ACMEVAULT_SERVICE_GRPC_SERVICES_H_

#include <memory>

#include "absl/status/statusor.h"
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

// What the adapters borrow; all must outlive the services. Each service's Create requires the
// collaborators it calls (INVALID_ARGUMENT naming a missing one).
struct ServiceDeps {
  Authenticator* auth = nullptr;       // Every service.
  Issuer* issuer = nullptr;            // CertificateService.
  AccountManager* accounts = nullptr;  // CertificateService (revocation), AccountService.
  Admin* admin = nullptr;              // AdminService.
  Metrics* metrics = nullptr;          // May be null.
  // "Now" for what responses report relative to it (expired certificates, key ages).
  const Clock* clock = Clock::Real();
};

// GetCertificate is served on gRPC's callback threads, as gRPC's own health check is: the
// call is answered where it arrives, with no hand-over to a thread of the synchronous pool
// (that hand-over, a wake-up and a context switch per call, was most of a cached read's cost).
// An answer from the certificate cache with a cached token touches no database; otherwise the
// callback thread waits for the one statement of the read. Every other method is synchronous.
class CertificateServiceImpl final
    : public v1::CertificateService::WithCallbackMethod_GetCertificate<
          v1::CertificateService::Service> {
 public:
  static absl::StatusOr<std::unique_ptr<CertificateServiceImpl>> Create(ServiceDeps deps);
  grpc::Status IssueCertificate(grpc::ServerContext* context,
                                const v1::IssueCertificateRequest* request,
                                v1::IssueCertificateResponse* response) override;
  grpc::Status GetOrder(grpc::ServerContext* context, const v1::GetOrderRequest* request,
                        v1::Order* response) override;
  grpc::ServerUnaryReactor* GetCertificate(grpc::CallbackServerContext* context,
                                           const v1::GetCertificateRequest* request,
                                           v1::Certificate* response) override;
  grpc::Status ListCertificates(grpc::ServerContext* context,
                                const v1::ListCertificatesRequest* request,
                                v1::ListCertificatesResponse* response) override;
  grpc::Status RevokeCertificate(grpc::ServerContext* context,
                                 const v1::RevokeCertificateRequest* request,
                                 v1::RevokeCertificateResponse* response) override;

 private:
  explicit CertificateServiceImpl(ServiceDeps deps) : deps_(deps) {}
  const ServiceDeps deps_;
};

class AccountServiceImpl final : public v1::AccountService::Service {
 public:
  static absl::StatusOr<std::unique_ptr<AccountServiceImpl>> Create(ServiceDeps deps);
  grpc::Status CreateAccount(grpc::ServerContext* context, const v1::CreateAccountRequest* request,
                             v1::Account* response) override;
  grpc::Status GetAccount(grpc::ServerContext* context, const v1::GetAccountRequest* request,
                          v1::Account* response) override;
  grpc::Status SetEabKey(grpc::ServerContext* context, const v1::SetEabKeyRequest* request,
                         v1::SetEabKeyResponse* response) override;
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
  explicit AccountServiceImpl(ServiceDeps deps) : deps_(deps) {}
  const ServiceDeps deps_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  static absl::StatusOr<std::unique_ptr<AdminServiceImpl>> Create(ServiceDeps deps);
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
  grpc::Status ListIdentities(grpc::ServerContext* context,
                              const v1::ListIdentitiesRequest* request,
                              v1::ListIdentitiesResponse* response) override;
  grpc::Status UnbindIdentity(grpc::ServerContext* context,
                              const v1::UnbindIdentityRequest* request,
                              v1::UnbindIdentityResponse* response) override;

 private:
  explicit AdminServiceImpl(ServiceDeps deps) : deps_(deps) {}
  const ServiceDeps deps_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_GRPC_SERVICES_H_
