// Conversions between the acmevault.v1 messages and the domain types, for the gRPC adapters.
// Pure functions: no I/O and no clock (what depends on "now" takes it as an argument).
//
// A request becomes the domain's request as the caller sent it; checking it (lengths, ranges,
// required fields, waits, page sizes) is the domain's job. The one check made here is the one
// the domain types cannot express: an enum value the API does not define has no domain value,
// so it is INVALID_ARGUMENT naming the field. UNSPECIFIED means "the default" wherever the API
// says so.
#ifndef ACMEVAULT_SERVICE_PROTO_CONVERT_H_
#define ACMEVAULT_SERVICE_PROTO_CONVERT_H_

#include <functional>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "acmevault/v1/account_service.pb.h"
#include "acmevault/v1/admin_service.pb.h"
#include "acmevault/v1/certificate_service.pb.h"
#include "acmevault/v1/common.pb.h"
#include "crypto/keys.h"
#include "crypto/revocation_reason.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "service/accounts.h"
#include "service/admin.h"
#include "service/issuer.h"
#include "service/order_runner.h"
#include "storage/types.h"

namespace acmevault::service {

// ---- Size caps of repeated request fields (documented in the .proto files) ----------------

inline constexpr int kMaxAllowedIdentifiers = 1000;           // Tenant allowed_identifiers
inline constexpr int kMaxCertificateKeyAlgorithms = 8;        // allowed_certificate_key_algorithms
// CreateAccountRequest.contact: as many as an account keeps.
inline constexpr int kMaxContacts = static_cast<int>(storage::kMaxAccountContacts);
inline constexpr int kMaxRequestIdentifiers = 100;            // a request's DNS names

// INVALID_ARGUMENT "<field>: at most <max> entries" when `size` exceeds `max`.
absl::Status CheckCount(absl::string_view field, int size, int max);

// ---- Enums ---------------------------------------------------------------------------------
// `field` names the request field in the error.

// UNSPECIFIED: nullopt (the tenant policy's or the service's default).
absl::StatusOr<std::optional<crypto::KeyAlgorithm>> KeyAlgorithmFromProto(v1::KeyAlgorithm value,
                                                                          absl::string_view field);
v1::KeyAlgorithm KeyAlgorithmToProto(crypto::KeyAlgorithm algorithm);
// UNSPECIFIED is VAULT; INVALID_ARGUMENT naming `field` for a value the API does not define.
absl::StatusOr<storage::KeyStorage> KeyStorageFromProto(v1::KeyStorage value,
                                                        absl::string_view field);
v1::KeyStorage KeyStorageToProto(storage::KeyStorage storage);
// UNSPECIFIED: HTTP-01 (wildcards use DNS-01 regardless).
absl::StatusOr<ChallengePreference> ChallengeFromProto(v1::ChallengeType value,
                                                       absl::string_view field);
// A credential needs a role: UNSPECIFIED is INVALID_ARGUMENT too.
absl::StatusOr<storage::Role> RoleFromProto(v1::Role value, absl::string_view field);
// The reasons ACME revocation accepts; UNSPECIFIED is RFC 5280's unspecified (0).
v1::Role RoleToProto(storage::Role role);
absl::StatusOr<crypto::RevocationReason> RevocationReasonFromProto(v1::RevocationReason value,
                                                                   absl::string_view field);
// The API's values are RFC 5280 codes: a reason it does not name travels as its code (proto3
// keeps unknown enum values), so the caller still sees the true reason.
v1::RevocationReason RevocationReasonToProto(crypto::RevocationReason reason);
// UNSPECIFIED: any state.
absl::StatusOr<storage::CertificateState> CertificateStateFromProto(v1::CertificateState value,
                                                                    absl::string_view field);
v1::OrderState OrderStateToProto(storage::OrderState state);
v1::AccountStatus AccountStatusToProto(storage::AccountStatus status);

// ---- Times ---------------------------------------------------------------------------------

void TimeToProto(absl::Time time, google::protobuf::Timestamp* out);
absl::Time TimeFromProto(const google::protobuf::Timestamp& time);
void DurationToProto(absl::Duration duration, google::protobuf::Duration* out);
absl::Duration DurationFromProto(const google::protobuf::Duration& duration);

// ---- Requests ------------------------------------------------------------------------------

// `deadline` is the RPC's (none when the caller set none); `cancelled` says the caller is gone.
absl::StatusOr<IssueRequest> IssueRequestFromProto(const v1::IssueCertificateRequest& request,
                                                   std::optional<absl::Time> deadline,
                                                   std::function<bool()> cancelled);
// A positive decimal order id.
absl::StatusOr<storage::OrderId> OrderIdFromProto(absl::string_view id, absl::string_view field);
CertificateSelector CertificateSelectorFromProto(const v1::GetCertificateRequest& request);
// The compromise run a request names to resume; none for 0.
std::optional<storage::CompromiseRunId> CompromiseRunFromProto(
    const v1::RespondToCompromiseRequest& request);
absl::StatusOr<storage::CertificateFilter> CertificateFilterFromProto(
    const v1::ListCertificatesRequest& request);
// The page a List request asks for, its size as sent (CheckPage applies the API's rules).
template <typename Request>
storage::PageRequest PageRequestFromProto(const Request& request) {
  return {request.page_token(), request.page_size()};
}
absl::StatusOr<CreateAccountSpec> CreateAccountSpecFromProto(
    const v1::CreateAccountRequest& request);
absl::StatusOr<storage::TenantSpec> TenantSpecFromProto(const v1::CreateTenantRequest& request);
absl::StatusOr<storage::TenantSpec> TenantSpecFromProto(const v1::UpdateTenantRequest& request);
// The role must be one the API defines ("role"); the expiry is checked by Admin::CreateToken.
absl::StatusOr<TokenSpec> TokenSpecFromProto(const v1::CreateTokenRequest& request);

// ---- Results -------------------------------------------------------------------------------
// `now` decides whether a certificate is reported expired and how old an account key is.

void ToProto(const storage::Order& order, v1::Order* out);
void ToProto(const OrderView& view, v1::Order* out);
// The chain PEM only `with_chain` (lists leave it out to keep pages small).
void ToProto(const storage::Certificate& certificate, absl::Time now, bool with_chain,
             v1::Certificate* out);
// A certificate's renew_at and renewal_due.
void ToProto(const RenewalDecision& renewal, v1::Certificate* out);
void ToProto(const IssueResult& result, absl::Time now, v1::IssueCertificateResponse* out);
void ToProto(const storage::Page<storage::Certificate>& page, absl::Time now,
             v1::ListCertificatesResponse* out);
void ToProto(const AccountView& view, absl::Time now, v1::Account* out);
void ToProto(const RolloverResult& result, absl::Time now, v1::RolloverAccountKeyResponse* out);
void ToProto(const DeactivationCounts& counts, v1::DeactivateAuthorizationsResponse* out);
void ToProto(const CompromiseReport& report, absl::Time now, v1::RespondToCompromiseResponse* out);
void ToProto(const storage::Tenant& tenant, v1::Tenant* out);
void ToProto(const TenantView& view, v1::Tenant* out);
void ToProto(const storage::Page<storage::Tenant>& page, v1::ListTenantsResponse* out);
void ToProto(const NewToken& token, v1::CreateTokenResponse* out);
void ToProto(const IdentityListing& listing, v1::ListIdentitiesResponse* out);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_PROTO_CONVERT_H_
