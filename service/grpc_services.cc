#include "service/grpc_services.h"

#include <grpc/grpc_security_constants.h>

#include <chrono>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "service/grpc_status.h"
#include "service/log.h"

namespace acmevault::service {
namespace {

// ---- Conversions --------------------------------------------------------------------------------

// An enum value the API does not define (a newer or a broken client) is refused, naming the field,
// rather than read as the default.
absl::Status Undefined(absl::string_view field, int value, absl::string_view type) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", value, " is not a ", type, " the API defines"));
}

// UNSPECIFIED: nullopt (the default).
absl::StatusOr<std::optional<crypto::KeyAlgorithm>> FromProto(v1::KeyAlgorithm a,
                                                              absl::string_view field) {
  switch (a) {
    case v1::KEY_ALGORITHM_UNSPECIFIED:
      return std::nullopt;
    case v1::KEY_ALGORITHM_ECDSA_P256:
      return crypto::KeyAlgorithm::kEcdsaP256;
    case v1::KEY_ALGORITHM_ECDSA_P384:
      return crypto::KeyAlgorithm::kEcdsaP384;
    case v1::KEY_ALGORITHM_RSA_2048:
      return crypto::KeyAlgorithm::kRsa2048;
    case v1::KEY_ALGORITHM_RSA_3072:
      return crypto::KeyAlgorithm::kRsa3072;
    case v1::KEY_ALGORITHM_RSA_4096:
      return crypto::KeyAlgorithm::kRsa4096;
    default:
      return Undefined(field, a, "KeyAlgorithm");
  }
}

absl::StatusOr<ChallengePreference> FromProto(v1::ChallengeType t, absl::string_view field) {
  switch (t) {
    case v1::CHALLENGE_TYPE_UNSPECIFIED:
    case v1::CHALLENGE_TYPE_HTTP_01:
      return ChallengePreference::kHttp01;
    case v1::CHALLENGE_TYPE_DNS_01:
      return ChallengePreference::kDns01;
    default:
      return Undefined(field, t, "ChallengeType");
  }
}

absl::StatusOr<storage::CertificateState> FromProto(v1::CertificateState s,
                                                    absl::string_view field) {
  switch (s) {
    case v1::CERTIFICATE_STATE_UNSPECIFIED:
      return storage::CertificateState::kAny;
    case v1::CERTIFICATE_STATE_VALID:
      return storage::CertificateState::kLive;
    case v1::CERTIFICATE_STATE_REVOKED:
      return storage::CertificateState::kRevoked;
    case v1::CERTIFICATE_STATE_EXPIRED:
      return storage::CertificateState::kExpired;
    default:
      return Undefined(field, s, "CertificateState");
  }
}

v1::KeyAlgorithm ToProto(crypto::KeyAlgorithm a) {
  switch (a) {
    case crypto::KeyAlgorithm::kEcdsaP256:
      return v1::KEY_ALGORITHM_ECDSA_P256;
    case crypto::KeyAlgorithm::kEcdsaP384:
      return v1::KEY_ALGORITHM_ECDSA_P384;
    case crypto::KeyAlgorithm::kRsa2048:
      return v1::KEY_ALGORITHM_RSA_2048;
    case crypto::KeyAlgorithm::kRsa3072:
      return v1::KEY_ALGORITHM_RSA_3072;
    case crypto::KeyAlgorithm::kRsa4096:
      return v1::KEY_ALGORITHM_RSA_4096;
  }
  return v1::KEY_ALGORITHM_UNSPECIFIED;
}

absl::StatusOr<storage::Role> FromProto(v1::Role r) {
  switch (r) {
    case v1::ROLE_HOST:
      return storage::Role::kHost;
    case v1::ROLE_ADMIN:
      return storage::Role::kAdmin;
    case v1::ROLE_PLATFORM_ADMIN:
      return storage::Role::kPlatformAdmin;
    default:
      return absl::InvalidArgumentError("role: must be HOST, ADMIN or PLATFORM_ADMIN");
  }
}

absl::StatusOr<acme::RevocationReason> ReasonFromProto(v1::RevocationReason r) {
  switch (r) {
    case v1::REVOCATION_REASON_UNSPECIFIED:
      return acme::RevocationReason::kUnspecified;
    case v1::REVOCATION_REASON_KEY_COMPROMISE:
      return acme::RevocationReason::kKeyCompromise;
    case v1::REVOCATION_REASON_AFFILIATION_CHANGED:
      return acme::RevocationReason::kAffiliationChanged;
    case v1::REVOCATION_REASON_SUPERSEDED:
      return acme::RevocationReason::kSuperseded;
    case v1::REVOCATION_REASON_CESSATION_OF_OPERATION:
      return acme::RevocationReason::kCessationOfOperation;
    default:
      return absl::InvalidArgumentError("reason: not a reason ACME revocation accepts");
  }
}

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  out->set_seconds(absl::ToUnixSeconds(t));
  out->set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(absl::ToUnixSeconds(t))) /
                                      absl::Nanoseconds(1)));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  out->set_seconds(absl::ToInt64Seconds(d));
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

v1::OrderState ToProto(storage::OrderState s) {
  switch (s) {
    case storage::OrderState::kCreated:
      return v1::ORDER_STATE_PENDING;
    case storage::OrderState::kPending:
      return v1::ORDER_STATE_AUTHORIZING;
    case storage::OrderState::kReady:
    case storage::OrderState::kProcessing:
      return v1::ORDER_STATE_FINALIZING;
    case storage::OrderState::kValid:
      return v1::ORDER_STATE_VALID;
    case storage::OrderState::kInvalid:
      return v1::ORDER_STATE_INVALID;
  }
  return v1::ORDER_STATE_UNSPECIFIED;
}

void ToProto(const storage::Order& o, v1::Order* out) {
  out->set_id(absl::StrCat(o.id));
  out->set_state(ToProto(o.state));
  for (const auto& id : o.identifiers) out->add_identifiers(id);
  SetTime(o.created_at, out->mutable_created_at());
  SetTime(o.updated_at, out->mutable_updated_at());
  out->set_error(o.error);
}

void ToProto(const storage::Certificate& c, absl::Time now, bool with_chain, v1::Certificate* out) {
  out->set_serial(c.serial);
  for (const auto& id : c.identifiers) out->add_identifiers(id);
  SetTime(c.not_before, out->mutable_not_before());
  SetTime(c.not_after, out->mutable_not_after());
  if (with_chain) out->set_chain_pem(c.chain_pem);
  if (c.revoked_at) {
    out->set_state(v1::CERTIFICATE_STATE_REVOKED);
    out->set_revocation_reason(static_cast<v1::RevocationReason>(
        crypto::RevocationReasonCode(c.revocation_reason.value_or(crypto::RevocationReason::kUnspecified))));
  } else {
    out->set_state(c.not_after <= now ? v1::CERTIFICATE_STATE_EXPIRED
                                      : v1::CERTIFICATE_STATE_VALID);
  }
  out->set_issuing_key_version(c.account_key_version.value_or(0));
  out->set_service_holds_key(c.has_private_key);
}

void ToProto(const AccountView& v, absl::Time now, v1::Account* out) {
  out->set_account_url(v.account.account_url);
  out->set_directory_url(v.account.directory_url);
  switch (v.account.status) {
    case storage::AccountStatus::kValid:
      out->set_status(v1::ACCOUNT_STATUS_VALID);
      break;
    case storage::AccountStatus::kDeactivated:
      out->set_status(v1::ACCOUNT_STATUS_DEACTIVATED);
      break;
    case storage::AccountStatus::kRevoked:
      out->set_status(v1::ACCOUNT_STATUS_REVOKED);
      break;
    default:
      out->set_status(v1::ACCOUNT_STATUS_UNSPECIFIED);
  }
  out->set_key_version(v.active_key.version);
  out->set_key_algorithm(ToProto(v.active_key.algorithm));
  out->set_key_thumbprint(v.active_key.public_key.thumbprint);
  absl::Time key_time = v.active_key.activated_at.value_or(v.active_key.created_at);
  SetTime(key_time, out->mutable_key_created_at());
  SetDuration(now - key_time, out->mutable_key_age());
  SetTime(v.account.created_at, out->mutable_created_at());
}

void ToProto(const storage::Tenant& t, v1::Tenant* out) {
  out->set_name(t.spec.name);
  for (const auto& p : t.spec.allowed_identifiers) out->add_allowed_identifiers(p);
  out->set_directory_url(t.spec.acme_directory_url);
  auto* policy = out->mutable_policy();
  policy->set_account_key_algorithm(ToProto(t.spec.policy.key_algorithm));
  SetDuration(t.spec.policy.max_key_age, policy->mutable_max_account_key_age());
  policy->set_deactivate_authorizations_after_issuance(
      t.spec.policy.deactivate_authorizations_after_issuance);
  SetDuration(t.spec.policy.renewal_window, policy->mutable_renewal_window());
  policy->set_ephemeral_accounts(t.spec.policy.ephemeral_accounts);
  SetTime(t.created_at, out->mutable_created_at());
}

template <typename Request>
absl::StatusOr<storage::TenantSpec> SpecFromProto(const Request& r) {
  storage::TenantSpec spec;
  spec.name = r.name();
  spec.allowed_identifiers.assign(r.allowed_identifiers().begin(), r.allowed_identifiers().end());
  spec.acme_directory_url = r.directory_url();
  if (r.has_policy()) {
    const auto& p = r.policy();
    ASSIGN_OR_RETURN(std::optional<crypto::KeyAlgorithm> algorithm,
                     FromProto(p.account_key_algorithm(), "policy.account_key_algorithm"));
    if (algorithm) spec.policy.key_algorithm = *algorithm;
    if (p.has_max_account_key_age()) spec.policy.max_key_age = FromProto(p.max_account_key_age());
    spec.policy.deactivate_authorizations_after_issuance =
        p.deactivate_authorizations_after_issuance();
    if (p.has_renewal_window()) spec.policy.renewal_window = FromProto(p.renewal_window());
    spec.policy.ephemeral_accounts = p.ephemeral_accounts();
  }
  return spec;
}

storage::PageRequest Page(int32_t size, const std::string& token) {
  return {token, size <= 0 ? 100 : std::min(size, 1000)};
}

// ---- The one wrapper ----------------------------------------------------------------------------

Credentials CredentialsOf(const grpc::ServerContext& context) {
  Credentials c;
  const auto& md = context.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    c.authorization.assign(it->second.data(), it->second.size());
  }
  if (auto auth = context.auth_context(); auth != nullptr) {
    auto values = auth->FindPropertyValues(GRPC_PEER_SPIFFE_ID_PROPERTY_NAME);
    if (!values.empty()) c.spiffe_id.assign(values[0].data(), values[0].size());
  }
  return c;
}

template <typename Fn>
grpc::Status Serve(const ServiceDeps& deps, grpc::ServerContext* context, absl::string_view method,
                   Fn&& fn) {
  const std::string request_id = NewRequestId();
  const absl::Time start = absl::Now();
  context->AddTrailingMetadata("x-request-id", request_id);
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

absl::StatusOr<storage::OrderId> ParseId(const std::string& id, absl::string_view field) {
  storage::OrderId out;
  if (!absl::SimpleAtoi(id, &out) || out <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not an order id"));
  }
  return out;
}

}  // namespace

// ---- CertificateService -------------------------------------------------------------------------

grpc::Status CertificateServiceImpl::IssueCertificate(grpc::ServerContext* context,
                                                      const v1::IssueCertificateRequest* request,
                                                      v1::IssueCertificateResponse* response) {
  return Serve(deps_, context, "IssueCertificate", [&](const Caller& caller) -> absl::Status {
    IssueRequest r;
    r.identifiers.assign(request->identifiers().begin(), request->identifiers().end());
    if (request->key_case() == v1::IssueCertificateRequest::kCsr) {
      if (request->csr().empty()) return absl::InvalidArgumentError("csr: is empty");
      r.csr = request->csr();
    } else if (request->key_case() == v1::IssueCertificateRequest::kKeyAlgorithm) {
      ASSIGN_OR_RETURN(r.key_algorithm, FromProto(request->key_algorithm(), "key_algorithm"));
    }
    r.idempotency_key = request->idempotency_key();
    if (r.idempotency_key.size() > 200) {
      return absl::InvalidArgumentError("idempotency_key: longer than 200 characters");
    }
    ASSIGN_OR_RETURN(r.challenge, FromProto(request->challenge_type(), "challenge_type"));
    if (request->wait_seconds() < 0) {
      return absl::InvalidArgumentError("wait_seconds: must not be negative");
    }
    // Answer a second before the caller gives up, so it gets the handle rather than an error.
    absl::Time until = absl::Now() + deps_.default_issue_wait;
    if (context->deadline() != std::chrono::system_clock::time_point::max()) {
      until = absl::FromChrono(context->deadline()) - absl::Seconds(1);
    }
    if (request->wait_seconds() > 0) {
      until = std::min(until, absl::Now() + absl::Seconds(request->wait_seconds()));
    }
    r.wait_until = until;
    r.cancelled = [context] { return context->IsCancelled(); };
    ASSIGN_OR_RETURN(IssueResult result, deps_.issuer->Issue(caller, r));
    ToProto(result.order, response->mutable_order());
    if (result.certificate) {
      ToProto(*result.certificate, deps_.clock->Now(), true, response->mutable_certificate());
      response->mutable_order()->set_certificate_serial(result.certificate->serial);
    }
    if (!result.private_key_pem.empty()) {
      response->set_private_key_pem(std::string(result.private_key_pem.view()));
    }
    response->set_reused(result.reused);
    return absl::OkStatus();
  });
}

grpc::Status CertificateServiceImpl::GetOrder(grpc::ServerContext* context,
                                              const v1::GetOrderRequest* request,
                                              v1::Order* response) {
  return Serve(deps_, context, "GetOrder", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::OrderId id, ParseId(request->id(), "id"));
    ASSIGN_OR_RETURN(storage::Order order, deps_.issuer->GetOrder(caller, id));
    ToProto(order, response);
    if (order.certificate) {
      auto cert = deps_.store->GetCertificate(caller.ScopeFor("CertificateService/GetOrder"),
                                              *order.certificate);
      if (cert.ok()) response->set_certificate_serial(cert->serial);
    }
    return absl::OkStatus();
  });
}

grpc::Status CertificateServiceImpl::GetCertificate(grpc::ServerContext* context,
                                                    const v1::GetCertificateRequest* request,
                                                    v1::Certificate* response) {
  return Serve(deps_, context, "GetCertificate", [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<storage::Certificate> cert;
    switch (request->selector_case()) {
      case v1::GetCertificateRequest::kSerial:
        cert = deps_.issuer->GetCertificateBySerial(caller, request->serial());
        break;
      case v1::GetCertificateRequest::kIdentifiers:
        cert = deps_.issuer->GetCurrentCertificate(
            caller, {request->identifiers().values().begin(), request->identifiers().values().end()});
        break;
      default:
        return absl::InvalidArgumentError("selector: give a serial or identifiers");
    }
    RETURN_IF_ERROR(cert.status());
    ToProto(*cert, deps_.clock->Now(), true, response);
    return absl::OkStatus();
  });
}

grpc::Status CertificateServiceImpl::ListCertificates(grpc::ServerContext* context,
                                                      const v1::ListCertificatesRequest* request,
                                                      v1::ListCertificatesResponse* response) {
  return Serve(deps_, context, "ListCertificates", [&](const Caller& caller) -> absl::Status {
    storage::CertificateFilter filter;
    ASSIGN_OR_RETURN(filter.state, FromProto(request->state(), "state"));
    if (request->has_expires_before()) {
      filter.expires_before = absl::FromUnixSeconds(request->expires_before().seconds());
    }
    if (request->page_size() < 0) return absl::InvalidArgumentError("page_size: negative");
    ASSIGN_OR_RETURN(auto page, deps_.issuer->ListCertificates(
                                    caller, filter, Page(request->page_size(), request->page_token())));
    for (const auto& c : page.items) {
      ToProto(c, deps_.clock->Now(), false, response->add_certificates());
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status CertificateServiceImpl::RevokeCertificate(grpc::ServerContext* context,
                                                       const v1::RevokeCertificateRequest* request,
                                                       v1::RevokeCertificateResponse* response) {
  return Serve(deps_, context, "RevokeCertificate", [&](const Caller& caller) -> absl::Status {
    if (request->serial().empty()) return absl::InvalidArgumentError("serial: required");
    ASSIGN_OR_RETURN(acme::RevocationReason reason, ReasonFromProto(request->reason()));
    ASSIGN_OR_RETURN(storage::Certificate cert,
                     deps_.accounts->RevokeCertificate(caller, request->serial(), reason,
                                                       request->use_certificate_key()));
    ToProto(cert, deps_.clock->Now(), false, response->mutable_certificate());
    return absl::OkStatus();
  });
}

// ---- AccountService -----------------------------------------------------------------------------

grpc::Status AccountServiceImpl::CreateAccount(grpc::ServerContext* context,
                                               const v1::CreateAccountRequest* request,
                                               v1::Account* response) {
  return Serve(deps_, context, "CreateAccount", [&](const Caller& caller) -> absl::Status {
    CreateAccountSpec spec;
    spec.contact.assign(request->contact().begin(), request->contact().end());
    spec.terms_of_service_agreed = request->terms_of_service_agreed();
    spec.eab_key_id = request->eab_key_id();
    spec.eab_hmac_key = request->eab_hmac_key();
    ASSIGN_OR_RETURN(spec.key_algorithm, FromProto(request->key_algorithm(), "key_algorithm"));
    ASSIGN_OR_RETURN(AccountView view, deps_.accounts->CreateAccount(caller, spec));
    ToProto(view, deps_.clock->Now(), response);
    response->mutable_contact()->CopyFrom(request->contact());
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::GetAccount(grpc::ServerContext* context,
                                            const v1::GetAccountRequest*, v1::Account* response) {
  return Serve(deps_, context, "GetAccount", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(AccountView view, deps_.accounts->GetAccount(caller));
    ToProto(view, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::RolloverAccountKey(grpc::ServerContext* context,
                                                    const v1::RolloverAccountKeyRequest* request,
                                                    v1::RolloverAccountKeyResponse* response) {
  return Serve(deps_, context, "RolloverAccountKey", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(auto algorithm, FromProto(request->key_algorithm(), "key_algorithm"));
    ASSIGN_OR_RETURN(RolloverResult r,
                     deps_.accounts->Rollover(caller, algorithm, request->reason()));
    ToProto(r.account, deps_.clock->Now(), response->mutable_account());
    response->set_previous_key_version(r.previous_version);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::DeactivateAccount(grpc::ServerContext* context,
                                                   const v1::DeactivateAccountRequest* request,
                                                   v1::Account* response) {
  return Serve(deps_, context, "DeactivateAccount", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(AccountView view,
                     deps_.accounts->Deactivate(caller, request->confirm_account_url()));
    ToProto(view, deps_.clock->Now(), response);
    return absl::OkStatus();
  });
}

grpc::Status AccountServiceImpl::DeactivateAuthorizations(
    grpc::ServerContext* context, const v1::DeactivateAuthorizationsRequest* request,
    v1::DeactivateAuthorizationsResponse* response) {
  return Serve(deps_, context, "DeactivateAuthorizations",
               [&](const Caller& caller) -> absl::Status {
                 ASSIGN_OR_RETURN(
                     DeactivationCounts c,
                     deps_.accounts->DeactivateAuthorizations(
                         caller, {request->identifiers().begin(), request->identifiers().end()}));
                 response->set_deactivated(c.deactivated);
                 response->set_skipped(c.skipped);
                 response->set_failed(c.failed);
                 return absl::OkStatus();
               });
}

grpc::Status AccountServiceImpl::RespondToCompromise(grpc::ServerContext* context,
                                                     const v1::RespondToCompromiseRequest* request,
                                                     v1::RespondToCompromiseResponse* response) {
  return Serve(deps_, context, "RespondToCompromise", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(auto algorithm,
                     FromProto(request->new_key_algorithm(), "new_key_algorithm"));
    ASSIGN_OR_RETURN(CompromiseReport report,
                     deps_.accounts->RespondToCompromise(caller, request->deactivate_account(),
                                                         algorithm));
    for (const auto& step : report.steps) {
      auto* s = response->add_steps();
      s->set_name(step.name);
      s->set_done(step.done);
      s->set_detail(step.detail);
      if (step.finished_at) SetTime(*step.finished_at, s->mutable_finished_at());
    }
    ToProto(report.account, deps_.clock->Now(), response->mutable_account());
    return absl::OkStatus();
  });
}

// ---- AdminService -------------------------------------------------------------------------------

grpc::Status AdminServiceImpl::CreateTenant(grpc::ServerContext* context,
                                            const v1::CreateTenantRequest* request,
                                            v1::Tenant* response) {
  return Serve(deps_, context, "CreateTenant", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::TenantSpec spec, SpecFromProto(*request));
    ASSIGN_OR_RETURN(storage::Tenant t, deps_.admin->CreateTenant(caller, spec));
    ToProto(t, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::UpdateTenant(grpc::ServerContext* context,
                                            const v1::UpdateTenantRequest* request,
                                            v1::Tenant* response) {
  return Serve(deps_, context, "UpdateTenant", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::TenantSpec spec, SpecFromProto(*request));
    ASSIGN_OR_RETURN(storage::Tenant t, deps_.admin->UpdateTenant(caller, spec));
    ToProto(t, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::GetTenant(grpc::ServerContext* context,
                                         const v1::GetTenantRequest* request,
                                         v1::Tenant* response) {
  return Serve(deps_, context, "GetTenant", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::Tenant t, deps_.admin->GetTenant(caller, request->name()));
    ToProto(t, response);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListTenants(grpc::ServerContext* context,
                                           const v1::ListTenantsRequest* request,
                                           v1::ListTenantsResponse* response) {
  return Serve(deps_, context, "ListTenants", [&](const Caller& caller) -> absl::Status {
    if (request->page_size() < 0) return absl::InvalidArgumentError("page_size: negative");
    ASSIGN_OR_RETURN(auto page, deps_.admin->ListTenants(
                                    caller, Page(request->page_size(), request->page_token())));
    for (const auto& t : page.items) ToProto(t, response->add_tenants());
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::CreateToken(grpc::ServerContext* context,
                                           const v1::CreateTokenRequest* request,
                                           v1::CreateTokenResponse* response) {
  return Serve(deps_, context, "CreateToken", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::Role role, FromProto(request->role()));
    ASSIGN_OR_RETURN(NewToken token, deps_.admin->CreateToken(caller, request->tenant(), role,
                                                              request->description()));
    response->set_token_id(token.token_id);
    response->set_token(token.token);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RevokeToken(grpc::ServerContext* context,
                                           const v1::RevokeTokenRequest* request,
                                           v1::RevokeTokenResponse*) {
  return Serve(deps_, context, "RevokeToken", [&](const Caller& caller) -> absl::Status {
    return deps_.admin->RevokeToken(caller, request->token_id());
  });
}

grpc::Status AdminServiceImpl::BindIdentity(grpc::ServerContext* context,
                                            const v1::BindIdentityRequest* request,
                                            v1::BindIdentityResponse*) {
  return Serve(deps_, context, "BindIdentity", [&](const Caller& caller) -> absl::Status {
    ASSIGN_OR_RETURN(storage::Role role, FromProto(request->role()));
    return deps_.admin->BindIdentity(caller, request->spiffe_id(), request->tenant(), role);
  });
}

}  // namespace acmevault::service
