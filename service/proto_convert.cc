#include "service/proto_convert.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace acmevault::service {
namespace {

absl::Status Undefined(absl::string_view field, int value, absl::string_view type) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", value, " is not a ", type, " the API defines"));
}

// CreateTenantRequest and UpdateTenantRequest carry the same fields.
template <typename Request>
absl::StatusOr<storage::TenantSpec> SpecFromProto(const Request& r) {
  storage::TenantSpec spec;
  spec.name = r.name();
  RETURN_IF_ERROR(CheckCount("allowed_identifiers", r.allowed_identifiers_size(),
                             kMaxAllowedIdentifiers));
  spec.allowed_identifiers.assign(r.allowed_identifiers().begin(), r.allowed_identifiers().end());
  spec.acme_directory_url = r.directory_url();
  if (!r.has_policy()) return spec;
  const v1::TenantPolicy& p = r.policy();
  ASSIGN_OR_RETURN(
      std::optional<crypto::KeyAlgorithm> algorithm,
      KeyAlgorithmFromProto(p.account_key_algorithm(), "policy.account_key_algorithm"));
  if (algorithm) spec.policy.key_algorithm = *algorithm;
  RETURN_IF_ERROR(CheckCount("policy.allowed_certificate_key_algorithms",
                             p.allowed_certificate_key_algorithms_size(),
                             kMaxCertificateKeyAlgorithms));
  auto& allowed = spec.policy.certificate_key_algorithms;
  for (int i = 0; i < p.allowed_certificate_key_algorithms_size(); ++i) {
    const std::string field = absl::StrCat("policy.allowed_certificate_key_algorithms[", i, "]");
    ASSIGN_OR_RETURN(std::optional<crypto::KeyAlgorithm> a,
                     KeyAlgorithmFromProto(
                         static_cast<v1::KeyAlgorithm>(p.allowed_certificate_key_algorithms(i)),
                         field));
    if (!a) return absl::InvalidArgumentError(absl::StrCat(field, ": must name an algorithm"));
    if (std::find(allowed.begin(), allowed.end(), *a) != allowed.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", crypto::KeyAlgorithmName(*a), " is listed twice"));
    }
    allowed.push_back(*a);
  }
  if (p.has_max_account_key_age()) {
    spec.policy.max_key_age = DurationFromProto(p.max_account_key_age());
  }
  // Absent keeps the default (on): a policy sent for another field must not turn it off.
  if (p.has_deactivate_authorizations_after_issuance()) {
    spec.policy.deactivate_authorizations_after_issuance =
        p.deactivate_authorizations_after_issuance();
  }
  if (p.has_renewal_window()) spec.policy.renewal_window = DurationFromProto(p.renewal_window());
  spec.policy.ephemeral_accounts = p.ephemeral_accounts();
  ASSIGN_OR_RETURN(spec.policy.key_storage,
                   KeyStorageFromProto(p.key_storage(), "policy.key_storage"));
  return spec;
}

}  // namespace

absl::Status CheckCount(absl::string_view field, int size, int max) {
  if (size <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": at most ", max, " entries, got ", size));
}

// ---- Enums ---------------------------------------------------------------------------------

absl::StatusOr<std::optional<crypto::KeyAlgorithm>> KeyAlgorithmFromProto(v1::KeyAlgorithm value,
                                                                          absl::string_view field) {
  switch (value) {
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
      return Undefined(field, value, "KeyAlgorithm");
  }
}

absl::StatusOr<storage::KeyStorage> KeyStorageFromProto(v1::KeyStorage value,
                                                        absl::string_view field) {
  switch (value) {
    case v1::KEY_STORAGE_UNSPECIFIED:
    case v1::KEY_STORAGE_VAULT:
      return storage::KeyStorage::kVault;
    case v1::KEY_STORAGE_PKCS11:
      return storage::KeyStorage::kPkcs11;
    default:
      return Undefined(field, value, "KeyStorage");
  }
}

v1::KeyStorage KeyStorageToProto(storage::KeyStorage storage) {
  return storage == storage::KeyStorage::kPkcs11 ? v1::KEY_STORAGE_PKCS11 : v1::KEY_STORAGE_VAULT;
}

v1::KeyAlgorithm KeyAlgorithmToProto(crypto::KeyAlgorithm algorithm) {
  switch (algorithm) {
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

absl::StatusOr<ChallengePreference> ChallengeFromProto(v1::ChallengeType value,
                                                       absl::string_view field) {
  switch (value) {
    case v1::CHALLENGE_TYPE_UNSPECIFIED:
    case v1::CHALLENGE_TYPE_HTTP_01:
      return ChallengePreference::kHttp01;
    case v1::CHALLENGE_TYPE_DNS_01:
      return ChallengePreference::kDns01;
    default:
      return Undefined(field, value, "ChallengeType");
  }
}

absl::StatusOr<storage::Role> RoleFromProto(v1::Role value, absl::string_view field) {
  switch (value) {
    case v1::ROLE_HOST:
      return storage::Role::kHost;
    case v1::ROLE_ADMIN:
      return storage::Role::kAdmin;
    case v1::ROLE_PLATFORM_ADMIN:
      return storage::Role::kPlatformAdmin;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must be HOST, ADMIN or PLATFORM_ADMIN"));
  }
}

v1::Role RoleToProto(storage::Role role) {
  switch (role) {
    case storage::Role::kHost:
      return v1::ROLE_HOST;
    case storage::Role::kAdmin:
      return v1::ROLE_ADMIN;
    case storage::Role::kPlatformAdmin:
      return v1::ROLE_PLATFORM_ADMIN;
  }
  return v1::ROLE_UNSPECIFIED;
}

absl::StatusOr<crypto::RevocationReason> RevocationReasonFromProto(v1::RevocationReason value,
                                                                   absl::string_view field) {
  switch (value) {
    case v1::REVOCATION_REASON_UNSPECIFIED:
      return crypto::RevocationReason::kUnspecified;
    case v1::REVOCATION_REASON_KEY_COMPROMISE:
      return crypto::RevocationReason::kKeyCompromise;
    case v1::REVOCATION_REASON_AFFILIATION_CHANGED:
      return crypto::RevocationReason::kAffiliationChanged;
    case v1::REVOCATION_REASON_SUPERSEDED:
      return crypto::RevocationReason::kSuperseded;
    case v1::REVOCATION_REASON_CESSATION_OF_OPERATION:
      return crypto::RevocationReason::kCessationOfOperation;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": not a reason ACME revocation accepts"));
  }
}

v1::RevocationReason RevocationReasonToProto(crypto::RevocationReason reason) {
  switch (reason) {
    case crypto::RevocationReason::kUnspecified:
      return v1::REVOCATION_REASON_UNSPECIFIED;
    case crypto::RevocationReason::kKeyCompromise:
      return v1::REVOCATION_REASON_KEY_COMPROMISE;
    case crypto::RevocationReason::kAffiliationChanged:
      return v1::REVOCATION_REASON_AFFILIATION_CHANGED;
    case crypto::RevocationReason::kSuperseded:
      return v1::REVOCATION_REASON_SUPERSEDED;
    case crypto::RevocationReason::kCessationOfOperation:
      return v1::REVOCATION_REASON_CESSATION_OF_OPERATION;
    default:
      return static_cast<v1::RevocationReason>(crypto::RevocationReasonCode(reason));
  }
}

absl::StatusOr<storage::CertificateState> CertificateStateFromProto(v1::CertificateState value,
                                                                    absl::string_view field) {
  switch (value) {
    case v1::CERTIFICATE_STATE_UNSPECIFIED:
      return storage::CertificateState::kAny;
    case v1::CERTIFICATE_STATE_VALID:
      return storage::CertificateState::kLive;
    case v1::CERTIFICATE_STATE_REVOKED:
      return storage::CertificateState::kRevoked;
    case v1::CERTIFICATE_STATE_EXPIRED:
      return storage::CertificateState::kExpired;
    default:
      return Undefined(field, value, "CertificateState");
  }
}

v1::OrderState OrderStateToProto(storage::OrderState state) {
  switch (state) {
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

v1::AccountStatus AccountStatusToProto(storage::AccountStatus status) {
  switch (status) {
    case storage::AccountStatus::kValid:
      return v1::ACCOUNT_STATUS_VALID;
    case storage::AccountStatus::kDeactivated:
      return v1::ACCOUNT_STATUS_DEACTIVATED;
    case storage::AccountStatus::kRevoked:
      return v1::ACCOUNT_STATUS_REVOKED;
    default:
      return v1::ACCOUNT_STATUS_UNSPECIFIED;
  }
}

// ---- Times ---------------------------------------------------------------------------------

void TimeToProto(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(time);
  out->set_seconds(seconds);
  out->set_nanos(
      static_cast<int32_t>((time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

absl::Time TimeFromProto(const google::protobuf::Timestamp& time) {
  return absl::FromUnixSeconds(time.seconds()) + absl::Nanoseconds(time.nanos());
}

void DurationToProto(absl::Duration duration, google::protobuf::Duration* out) {
  const int64_t seconds = absl::ToInt64Seconds(duration);
  out->set_seconds(seconds);
  // Truncation toward zero leaves nanos with the sign of seconds, as Duration requires.
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(duration - absl::Seconds(seconds))));
}

absl::Duration DurationFromProto(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
}

// ---- Requests ------------------------------------------------------------------------------

absl::StatusOr<IssueRequest> IssueRequestFromProto(const v1::IssueCertificateRequest& request,
                                                   std::optional<absl::Time> deadline,
                                                   std::function<bool()> cancelled) {
  IssueRequest r;
  RETURN_IF_ERROR(
      CheckCount("identifiers", request.identifiers_size(), kMaxRequestIdentifiers));
  r.identifiers.assign(request.identifiers().begin(), request.identifiers().end());
  if (request.key_case() == v1::IssueCertificateRequest::kCsr) {
    r.csr = request.csr();
  } else if (request.key_case() == v1::IssueCertificateRequest::kKeyAlgorithm) {
    ASSIGN_OR_RETURN(r.key_algorithm,
                     KeyAlgorithmFromProto(request.key_algorithm(), "key_algorithm"));
  }
  r.idempotency_key = request.idempotency_key();
  ASSIGN_OR_RETURN(r.challenge, ChallengeFromProto(request.challenge_type(), "challenge_type"));
  r.deadline = deadline;
  r.max_wait = absl::Seconds(request.wait_seconds());
  r.cancelled = std::move(cancelled);
  return r;
}

absl::StatusOr<storage::OrderId> OrderIdFromProto(absl::string_view id, absl::string_view field) {
  storage::OrderId out;
  if (!absl::SimpleAtoi(id, &out) || out <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not an order id"));
  }
  return out;
}

CertificateSelector CertificateSelectorFromProto(const v1::GetCertificateRequest& request) {
  CertificateSelector selector;
  if (request.selector_case() == v1::GetCertificateRequest::kSerial) {
    selector.serial = request.serial();
  } else if (request.selector_case() == v1::GetCertificateRequest::kIdentifiers) {
    const auto& values = request.identifiers().values();
    selector.identifiers.emplace(values.begin(), values.end());
  }
  return selector;
}

absl::StatusOr<storage::CertificateFilter> CertificateFilterFromProto(
    const v1::ListCertificatesRequest& request) {
  storage::CertificateFilter filter;
  ASSIGN_OR_RETURN(filter.state, CertificateStateFromProto(request.state(), "state"));
  if (request.has_expires_before()) filter.expires_before = TimeFromProto(request.expires_before());
  return filter;
}

absl::StatusOr<CreateAccountSpec> CreateAccountSpecFromProto(
    const v1::CreateAccountRequest& request) {
  CreateAccountSpec spec;
  RETURN_IF_ERROR(CheckCount("contact", request.contact_size(), kMaxContacts));
  spec.contact.assign(request.contact().begin(), request.contact().end());
  spec.terms_of_service_agreed = request.terms_of_service_agreed();
  spec.eab_key_id = request.eab_key_id();
  spec.eab_hmac_key = request.eab_hmac_key();
  spec.keep_eab_key = request.keep_eab_key();
  ASSIGN_OR_RETURN(spec.key_algorithm,
                   KeyAlgorithmFromProto(request.key_algorithm(), "key_algorithm"));
  return spec;
}

absl::StatusOr<storage::TenantSpec> TenantSpecFromProto(const v1::CreateTenantRequest& request) {
  return SpecFromProto(request);
}

absl::StatusOr<storage::TenantSpec> TenantSpecFromProto(const v1::UpdateTenantRequest& request) {
  return SpecFromProto(request);
}

// ---- Results -------------------------------------------------------------------------------

void ToProto(const storage::Order& order, v1::Order* out) {
  out->set_id(absl::StrCat(order.id));
  out->set_state(OrderStateToProto(order.state));
  for (const auto& id : order.identifiers) out->add_identifiers(id);
  TimeToProto(order.created_at, out->mutable_created_at());
  TimeToProto(order.updated_at, out->mutable_updated_at());
  out->set_error(order.error);
  out->set_problem_type(order.problem_type);
  if (order.stalled_at.has_value()) TimeToProto(*order.stalled_at, out->mutable_stalled_at());
}

void ToProto(const OrderView& view, v1::Order* out) {
  ToProto(view.order, out);
  out->set_certificate_serial(view.certificate_serial);
  if (view.job.has_value()) {
    const storage::Job& job = *view.job;
    out->set_attempts(job.attempts);
    out->set_last_error(job.last_error);
    if (job.failed_at.has_value()) {
      TimeToProto(*job.failed_at, out->mutable_gave_up_at());
    } else {
      TimeToProto(job.not_before, out->mutable_next_attempt_at());
    }
  }
}

void ToProto(const storage::Certificate& certificate, absl::Time now, bool with_chain,
             v1::Certificate* out) {
  out->set_serial(certificate.serial);
  for (const auto& id : certificate.identifiers) out->add_identifiers(id);
  TimeToProto(certificate.not_before, out->mutable_not_before());
  TimeToProto(certificate.not_after, out->mutable_not_after());
  if (with_chain) out->set_chain_pem(certificate.chain_pem);
  if (certificate.revoked_at) {
    out->set_state(v1::CERTIFICATE_STATE_REVOKED);
    out->set_revocation_reason(RevocationReasonToProto(
        certificate.revocation_reason.value_or(crypto::RevocationReason::kUnspecified)));
  } else {
    out->set_state(certificate.not_after <= now ? v1::CERTIFICATE_STATE_EXPIRED
                                                : v1::CERTIFICATE_STATE_VALID);
  }
  out->set_issuing_key_version(certificate.account_key_version.value_or(0));
  out->set_service_holds_key(certificate.has_private_key);
  out->set_replaces_serial(certificate.replaces_serial);
}

void ToProto(const RenewalDecision& renewal, v1::Certificate* out) {
  TimeToProto(renewal.renew_at, out->mutable_renew_at());
  out->set_renewal_due(renewal.due);
}

void ToProto(const IssueResult& result, absl::Time now, v1::IssueCertificateResponse* out) {
  ToProto(result.order, out->mutable_order());
  if (result.certificate) {
    ToProto(*result.certificate, now, /*with_chain=*/true, out->mutable_certificate());
    out->mutable_order()->set_certificate_serial(result.certificate->serial);
    if (result.renewal) ToProto(*result.renewal, out->mutable_certificate());
  }
  if (!result.private_key_pem.empty()) {
    out->set_private_key_pem(std::string(result.private_key_pem.view()));
  }
  out->set_reused(result.reused);
}

void ToProto(const storage::Page<storage::Certificate>& page, absl::Time now,
             v1::ListCertificatesResponse* out) {
  for (const auto& c : page.items) {
    ToProto(c, now, /*with_chain=*/false, out->add_certificates());
  }
  out->set_next_page_token(page.next_page_token);
}

void ToProto(const AccountView& view, absl::Time now, v1::Account* out) {
  out->set_account_url(view.account.account_url);
  out->set_directory_url(view.account.directory_url);
  out->set_status(AccountStatusToProto(view.account.status));
  for (const std::string& c : view.account.contact) out->add_contact(c);
  out->set_key_version(view.active_key.version);
  out->set_key_algorithm(KeyAlgorithmToProto(view.active_key.algorithm));
  out->set_key_thumbprint(view.active_key.public_key.thumbprint);
  out->set_key_storage(view.active_key.token_object.empty() ? v1::KEY_STORAGE_VAULT
                                                            : v1::KEY_STORAGE_PKCS11);
  out->set_key_token_object(view.active_key.token_object);
  const absl::Time key_time = view.active_key.activated_at.value_or(view.active_key.created_at);
  TimeToProto(key_time, out->mutable_key_created_at());
  DurationToProto(now - key_time, out->mutable_key_age());
  TimeToProto(view.account.created_at, out->mutable_created_at());
  if (view.next_rotation) TimeToProto(*view.next_rotation, out->mutable_next_key_rotation());
  if (view.account.hijacked_at) TimeToProto(*view.account.hijacked_at, out->mutable_hijacked_at());
  out->set_kept_eab_key_id(view.kept_eab_key_id);
}

void ToProto(const RolloverResult& result, absl::Time now, v1::RolloverAccountKeyResponse* out) {
  ToProto(result.account, now, out->mutable_account());
  out->set_previous_key_version(result.previous_version);
  if (result.replacement) {
    v1::AccountReplacement* r = out->mutable_replacement();
    r->set_previous_account_url(result.replacement->previous_account_url);
    r->set_previous_deactivated(result.replacement->previous_deactivated);
    r->set_previous_outcome(result.replacement->previous_outcome);
    for (const std::string& lost : result.replacement->lost) r->add_lost(lost);
  }
}

void ToProto(const DeactivationCounts& counts, v1::DeactivateAuthorizationsResponse* out) {
  out->set_deactivated(counts.deactivated);
  out->set_skipped(counts.skipped);
  out->set_failed(counts.failed);
}

std::optional<storage::CompromiseRunId> CompromiseRunFromProto(
    const v1::RespondToCompromiseRequest& request) {
  if (request.run_id() == 0) return std::nullopt;
  return request.run_id();
}

void ToProto(const CompromiseReport& report, absl::Time now, v1::RespondToCompromiseResponse* out) {
  out->set_run_id(report.run_id);
  for (const auto& step : report.steps) {
    auto* s = out->add_steps();
    s->set_name(step.name);
    s->set_done(step.done);
    s->set_detail(step.detail);
    if (step.finished_at) TimeToProto(*step.finished_at, s->mutable_finished_at());
  }
  ToProto(report.account, now, out->mutable_account());
}

void ToProto(const storage::Tenant& tenant, v1::Tenant* out) {
  out->set_name(tenant.spec.name);
  for (const auto& p : tenant.spec.allowed_identifiers) out->add_allowed_identifiers(p);
  out->set_directory_url(tenant.spec.acme_directory_url);
  auto* policy = out->mutable_policy();
  policy->set_account_key_algorithm(KeyAlgorithmToProto(tenant.spec.policy.key_algorithm));
  DurationToProto(tenant.spec.policy.max_key_age, policy->mutable_max_account_key_age());
  policy->set_deactivate_authorizations_after_issuance(
      tenant.spec.policy.deactivate_authorizations_after_issuance);
  DurationToProto(tenant.spec.policy.renewal_window, policy->mutable_renewal_window());
  policy->set_ephemeral_accounts(tenant.spec.policy.ephemeral_accounts);
  policy->set_key_storage(KeyStorageToProto(tenant.spec.policy.key_storage));
  for (crypto::KeyAlgorithm a : tenant.spec.policy.certificate_key_algorithms) {
    policy->add_allowed_certificate_key_algorithms(KeyAlgorithmToProto(a));
  }
  TimeToProto(tenant.created_at, out->mutable_created_at());
}

void ToProto(const TenantView& view, v1::Tenant* out) {
  ToProto(view.tenant, out);
  if (view.next_account_key_rotation) {
    TimeToProto(*view.next_account_key_rotation, out->mutable_next_account_key_rotation());
  }
}

void ToProto(const storage::Page<storage::Tenant>& page, v1::ListTenantsResponse* out) {
  for (const auto& t : page.items) ToProto(t, out->add_tenants());
  out->set_next_page_token(page.next_page_token);
}

absl::StatusOr<TokenSpec> TokenSpecFromProto(const v1::CreateTokenRequest& request) {
  TokenSpec spec;
  spec.tenant = request.tenant();
  ASSIGN_OR_RETURN(spec.role, RoleFromProto(request.role(), "role"));
  spec.description = request.description();
  if (request.has_ttl()) spec.ttl = DurationFromProto(request.ttl());
  if (request.has_expires_at()) spec.expires_at = TimeFromProto(request.expires_at());
  return spec;
}

void ToProto(const NewToken& token, v1::CreateTokenResponse* out) {
  out->set_token_id(token.token_id);
  out->set_token(token.token);
  if (token.expires_at) TimeToProto(*token.expires_at, out->mutable_expires_at());
}

void ToProto(const IdentityListing& listing, v1::ListIdentitiesResponse* out) {
  for (const storage::Identity& identity : listing.identities) {
    v1::Identity* i = out->add_identities();
    i->set_id(CredentialId(listing.tenant, identity.id));
    i->set_spiffe_id(identity.spiffe_id);
    i->set_bearer_token(identity.bearer_token);
    i->set_role(RoleToProto(identity.role));
    i->set_description(identity.description);
    TimeToProto(identity.created_at, i->mutable_created_at());
    if (identity.expires_at) TimeToProto(*identity.expires_at, i->mutable_expires_at());
  }
}

}  // namespace acmevault::service
