#include "service/grpc_services.h"

#include <grpc/grpc_security_constants.h>

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "service/grpc_server.h"
#include "service/grpc_status.h"
#include "service/log.h"
#include "service/proto_convert.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

// ---- The one wrapper ----------------------------------------------------------------------------

Credentials CredentialsOf(const grpc::ServerContextBase& context) {
  Credentials c;
  const auto& md = context.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    c.authorization.assign(it->second.data(), it->second.size());
  }
  if (auto auth = context.auth_context(); auth != nullptr) {
    auto values = auth->FindPropertyValues(GRPC_PEER_SPIFFE_ID_PROPERTY_NAME);
    if (!values.empty()) c.spiffe_id.assign(values[0].data(), values[0].size());
  }
  c.peer = context.peer();
  return c;
}

// The one place that authenticates, logs, records metrics and maps Status to grpc::Status:
// `fn(caller)` is the handler's body.
template <typename Fn>
grpc::Status HandleRpc(const ServiceDeps& deps, grpc::ServerContextBase* context,
                       absl::string_view method, Fn&& fn) {
  const std::string request_id = NewRequestId();
  // Latency is real elapsed time, whatever clock the responses use.
  const absl::Time start = absl::Now();
  context->AddTrailingMetadata(kRequestIdTrailer, request_id);
  absl::Status status;
  std::string caller_name = "-", tenant = "-";
  auto caller = deps.auth->Authenticate(CredentialsOf(*context));
  if (caller.ok()) {
    caller_name = caller->name;
    tenant = absl::StrCat(caller->identity.tenant);
    status = fn(*caller);
  } else {
    status = caller.status();
  }
  const absl::Duration took = absl::Now() - start;
  if (deps.metrics) deps.metrics->RecordRpc(method, status.code(), took);
  Log(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "rpc",
      {{"request_id", request_id},
       {"method", std::string(method)},
       {"caller", caller_name},
       {"tenant", tenant},
       {"code", absl::StatusCodeToString(status.code())},
       {"error", std::string(status.message())},
       {"ms", absl::StrCat(absl::ToInt64Milliseconds(took))}});
  return ToGrpcStatus(status);
}

// The caller's deadline (wall-clock time), if it set one.
std::optional<absl::Time> DeadlineOf(const grpc::ServerContext& context) {
  if (context.deadline() == std::chrono::system_clock::time_point::max()) return std::nullopt;
  return absl::FromChrono(context.deadline());
}

}  // namespace

// ---- CertificateService -------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<CertificateServiceImpl>> CertificateServiceImpl::Create(
    ServiceDeps deps) {
  RETURN_IF_ERROR(RequireCollaborators("CertificateService",
                                       {{"auth", deps.auth},
                                        {"issuer", deps.issuer},
                                        {"accounts", deps.accounts},
                                        {"clock", deps.clock}},
                                       "ServiceDeps"));
  return std::unique_ptr<CertificateServiceImpl>(new CertificateServiceImpl(deps));
}

grpc::Status CertificateServiceImpl::IssueCertificate(grpc::ServerContext* context,
                                                      const v1::IssueCertificateRequest* request,
                                                      v1::IssueCertificateResponse* response) {
  return HandleRpc(deps_, context, "IssueCertificate", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(IssueRequest r,
                     IssueRequestFromProto(*request, DeadlineOf(*context),
                                           [context] { return context->IsCancelled(); }));
    ASSIGN_OR_RETURN(IssueResult result, deps_.issuer->Issue(caller, r));
    ToProto(result, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status CertificateServiceImpl::GetOrder(grpc::ServerContext* context,
                                              const v1::GetOrderRequest* request,
                                              v1::Order* response) {
  return HandleRpc(deps_, context, "GetOrder", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::OrderId id, OrderIdFromProto(request->id(), "id"));
    ASSIGN_OR_RETURN(OrderView order, deps_.issuer->GetOrder(caller, id));
    ToProto(order, response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CertificateServiceImpl::GetCertificate(
    grpc::CallbackServerContext* context, const v1::GetCertificateRequest* request,
    v1::Certificate* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(
      HandleRpc(deps_, context, "GetCertificate", [&](const Caller& caller) -> absl::Status {
        ASSIGN_OR_RETURN(
            storage::Certificate cert,
            deps_.issuer->GetCertificate(caller, CertificateSelectorFromProto(*request)));
        ToProto(cert, deps_.clock->Now(), /*with_chain=*/true, response);
        if (auto renewal = deps_.issuer->RenewalOf(caller, cert)) ToProto(*renewal, response);
        return absl::OkStatus();
      }));
  return reactor;
}

grpc::Status CertificateServiceImpl::ListCertificates(grpc::ServerContext* context,
                                                      const v1::ListCertificatesRequest* request,
                                                      v1::ListCertificatesResponse* response) {
  return HandleRpc(deps_, context, "ListCertificates", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::CertificateFilter filter, CertificateFilterFromProto(*request));
    ASSIGN_OR_RETURN(
        auto page, deps_.issuer->ListCertificates(caller, filter, PageRequestFromProto(*request)));
    ToProto(page, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status CertificateServiceImpl::RevokeCertificate(grpc::ServerContext* context,
                                                       const v1::RevokeCertificateRequest* request,
                                                       v1::RevokeCertificateResponse* response) {
  return HandleRpc(deps_, context, "RevokeCertificate", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(crypto::RevocationReason reason,
                     RevocationReasonFromProto(request->reason(), "reason"));
    ASSIGN_OR_RETURN(storage::Certificate cert,
                     deps_.accounts->RevokeCertificate(caller, request->serial(), reason,
                                                       request->use_certificate_key()));
    ToProto(cert, deps_.clock->Now(), /*with_chain=*/false, response->mutable_certificate());
    return absl::OkStatus();
  });
}

// ---- AccountService -----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<AccountServiceImpl>> AccountServiceImpl::Create(ServiceDeps deps) {
  RETURN_IF_ERROR(RequireCollaborators(
      "AccountService", {{"auth", deps.auth}, {"accounts", deps.accounts}, {"clock", deps.clock}},
      "ServiceDeps"));
  return std::unique_ptr<AccountServiceImpl>(new AccountServiceImpl(deps));
}

grpc::Status AccountServiceImpl::CreateAccount(grpc::ServerContext* context,
                                               const v1::CreateAccountRequest* request,
                                               v1::Account* response) {
  return HandleRpc(deps_, context, "CreateAccount", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(CreateAccountSpec spec, CreateAccountSpecFromProto(*request));
    ASSIGN_OR_RETURN(AccountView view, deps_.accounts->CreateAccount(caller, spec));
    ToProto(view, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::GetAccount(grpc::ServerContext* context,
                                            const v1::GetAccountRequest*, v1::Account* response) {
  return HandleRpc(deps_, context, "GetAccount", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(AccountView view, deps_.accounts->GetAccount(caller));
    ToProto(view, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::SetEabKey(grpc::ServerContext* context,
                                           const v1::SetEabKeyRequest* request,
                                           v1::SetEabKeyResponse* response) {
  return HandleRpc(deps_, context, "SetEabKey", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::optional<storage::EabKeyInfo> kept,
        deps_.accounts->SetEabKey(caller, request->eab_key_id(), request->eab_hmac_key()));
    if (kept.has_value()) {
      response->set_kept_eab_key_id(kept->key_id);
      response->set_directory_url(kept->directory_url);
    }
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::RolloverAccountKey(grpc::ServerContext* context,
                                                    const v1::RolloverAccountKeyRequest* request,
                                                    v1::RolloverAccountKeyResponse* response) {
  return HandleRpc(deps_, context, "RolloverAccountKey", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(auto algorithm,
                     KeyAlgorithmFromProto(request->key_algorithm(), "key_algorithm"));
    ASSIGN_OR_RETURN(
        RolloverResult result,
        deps_.accounts->Rollover(caller, algorithm, request->reason(),
                                 DeadlineOf(*context).value_or(absl::InfiniteFuture())));
    ToProto(result, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::DeactivateAccount(grpc::ServerContext* context,
                                                   const v1::DeactivateAccountRequest* request,
                                                   v1::Account* response) {
  return HandleRpc(deps_, context, "DeactivateAccount", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(AccountView view,
                     deps_.accounts->Deactivate(caller, request->confirm_account_url()));
    ToProto(view, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::DeactivateAuthorizations(
    grpc::ServerContext* context, const v1::DeactivateAuthorizationsRequest* request,
    v1::DeactivateAuthorizationsResponse* response) {
  return HandleRpc(
      deps_, context, "DeactivateAuthorizations", [&](const Caller& caller) -> absl::Status {
        ASSIGN_OR_RETURN(DeactivationCounts counts, deps_.accounts->DeactivateAuthorizations(
                                                        caller, {request->identifiers().begin(),
                                                                 request->identifiers().end()}));
        ToProto(counts, response);
        return absl::OkStatus();
      });
}

grpc::Status AccountServiceImpl::RespondToCompromise(grpc::ServerContext* context,
                                                     const v1::RespondToCompromiseRequest* request,
                                                     v1::RespondToCompromiseResponse* response) {
  return HandleRpc(
      deps_, context, "RespondToCompromise", [&](const Caller& caller) -> absl::Status {
        ASSIGN_OR_RETURN(auto algorithm,
                         KeyAlgorithmFromProto(request->new_key_algorithm(), "new_key_algorithm"));
        ASSIGN_OR_RETURN(CompromiseReport report, deps_.accounts->RespondToCompromise(
                                                      caller, request->deactivate_account(),
                                                      algorithm, CompromiseRunFromProto(*request)));
        ToProto(report, deps_.clock->Now(), response);
        return absl::OkStatus();
      });
}

// ---- AdminService -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<AdminServiceImpl>> AdminServiceImpl::Create(ServiceDeps deps) {
  RETURN_IF_ERROR(RequireCollaborators("AdminService", {{"auth", deps.auth}, {"admin", deps.admin}},
                                       "ServiceDeps"));
  return std::unique_ptr<AdminServiceImpl>(new AdminServiceImpl(deps));
}

grpc::Status AdminServiceImpl::CreateTenant(grpc::ServerContext* context,
                                            const v1::CreateTenantRequest* request,
                                            v1::Tenant* response) {
  return HandleRpc(deps_, context, "CreateTenant", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::TenantSpec spec, TenantSpecFromProto(*request));
    ASSIGN_OR_RETURN(storage::Tenant tenant, deps_.admin->CreateTenant(caller, spec));
    ToProto(tenant, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::UpdateTenant(grpc::ServerContext* context,
                                            const v1::UpdateTenantRequest* request,
                                            v1::Tenant* response) {
  return HandleRpc(deps_, context, "UpdateTenant", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::TenantSpec spec, TenantSpecFromProto(*request));
    ASSIGN_OR_RETURN(storage::Tenant tenant, deps_.admin->UpdateTenant(caller, spec));
    ToProto(tenant, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GetTenant(grpc::ServerContext* context,
                                         const v1::GetTenantRequest* request,
                                         v1::Tenant* response) {
  return HandleRpc(deps_, context, "GetTenant", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(TenantView tenant, deps_.admin->GetTenant(caller, request->name()));
    ToProto(tenant, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListTenants(grpc::ServerContext* context,
                                           const v1::ListTenantsRequest* request,
                                           v1::ListTenantsResponse* response) {
  return HandleRpc(deps_, context, "ListTenants", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(auto page, deps_.admin->ListTenants(caller, PageRequestFromProto(*request)));
    ToProto(page, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::CreateToken(grpc::ServerContext* context,
                                           const v1::CreateTokenRequest* request,
                                           v1::CreateTokenResponse* response) {
  return HandleRpc(deps_, context, "CreateToken", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(TokenSpec spec, TokenSpecFromProto(*request));
    ASSIGN_OR_RETURN(NewToken token, deps_.admin->CreateToken(caller, spec));
    ToProto(token, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RevokeToken(grpc::ServerContext* context,
                                           const v1::RevokeTokenRequest* request,
                                           v1::RevokeTokenResponse*) {
  return HandleRpc(deps_, context, "RevokeToken", [&](const Caller& caller) -> absl::Status {
    return deps_.admin->RevokeToken(caller, request->token_id());
  });
}

grpc::Status AdminServiceImpl::BindIdentity(grpc::ServerContext* context,
                                            const v1::BindIdentityRequest* request,
                                            v1::BindIdentityResponse* response) {
  return HandleRpc(deps_, context, "BindIdentity", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::Role role, RoleFromProto(request->role(), "role"));
    ASSIGN_OR_RETURN(
        *response->mutable_binding_id(),
        deps_.admin->BindIdentity(caller, request->spiffe_id(), request->tenant(), role));
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListIdentities(grpc::ServerContext* context,
                                              const v1::ListIdentitiesRequest* request,
                                              v1::ListIdentitiesResponse* response) {
  return HandleRpc(deps_, context, "ListIdentities", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(IdentityListing listing,
                     deps_.admin->ListIdentities(caller, request->tenant()));
    ToProto(listing, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::UnbindIdentity(grpc::ServerContext* context,
                                              const v1::UnbindIdentityRequest* request,
                                              v1::UnbindIdentityResponse*) {
  return HandleRpc(deps_, context, "UnbindIdentity", [&](const Caller& caller) -> absl::Status {
    return deps_.admin->UnbindIdentity(caller, request->binding_id());
  });
}

}  // namespace acmevault::service
