#include "storage/rules.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/text.h"

namespace acmevault::storage::rules {
namespace {

int Rank(OrderState state) {
  switch (state) {
    case OrderState::kCreated:
      return 0;
    case OrderState::kPending:
      return 1;
    case OrderState::kReady:
      return 2;
    case OrderState::kProcessing:
      return 3;
    case OrderState::kValid:
    case OrderState::kInvalid:
      return 4;
  }
  return 0;
}

bool ValidTenantName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = absl::ascii_islower(static_cast<unsigned char>(c)) ||
              absl::ascii_isdigit(static_cast<unsigned char>(c)) || (i > 0 && c == '-');
    if (!ok) return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateUrl(absl::string_view what, absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "https://") && !absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be an http(s) URL"));
  }
  if (rest.empty() || rest[0] == '/' || rest[0] == '?' || rest[0] == '#') {
    return absl::InvalidArgumentError(absl::StrCat(what, " has no host"));
  }
  return absl::OkStatus();
}

absl::Status TenantNameTaken(absl::string_view name) {
  return absl::AlreadyExistsError(absl::StrCat("tenant name \"", name, "\" is taken"));
}

absl::Status ValidateTenantSpec(const TenantSpec& spec) {
  if (!ValidTenantName(spec.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant name \"", spec.name, "\" must match [a-z0-9][a-z0-9-]{0,62}"));
  }
  for (const std::string& pattern : spec.allowed_identifiers) {
    if (pattern.empty()) return absl::InvalidArgumentError("empty allowed identifier pattern");
  }
  if (spec.policy.max_key_age < absl::Seconds(1) ||
      spec.policy.renewal_window < absl::Seconds(1)) {
    return absl::InvalidArgumentError("max key age and renewal window must be at least 1s");
  }
  const auto& algorithms = spec.policy.certificate_key_algorithms;
  if (algorithms.size() > 8) {
    return absl::InvalidArgumentError("at most 8 certificate key algorithms");
  }
  for (size_t i = 0; i < algorithms.size(); ++i) {
    if (std::find(algorithms.begin(), algorithms.begin() + i, algorithms[i]) !=
        algorithms.begin() + i) {
      return absl::InvalidArgumentError(absl::StrCat(
          "certificate key algorithm ", crypto::KeyAlgorithmName(algorithms[i]), " listed twice"));
    }
  }
  return ValidateUrl("ACME directory URL", spec.acme_directory_url);
}

absl::Status ValidatePublicKeyInfo(const PublicKeyInfo& info) {
  if (info.public_jwk.empty() || info.thumbprint.empty()) {
    return absl::InvalidArgumentError("public JWK and thumbprint are required");
  }
  return absl::OkStatus();
}

absl::Status ValidateSpiffeId(absl::string_view spiffe_id) {
  if (!absl::StartsWith(spiffe_id, "spiffe://") || spiffe_id.size() <= 9) {
    return absl::InvalidArgumentError("SPIFFE ID must start with spiffe://<trust domain>");
  }
  return absl::OkStatus();
}

absl::Status ValidateKeyMaterial(const AccountKeyMaterial& key, const PublicKeyInfo& public_key) {
  RETURN_IF_ERROR(ValidatePublicKeyInfo(public_key));
  if ((key.vault_key == nullptr) == key.token_object.empty()) {
    return absl::InvalidArgumentError("a new key is either sealed in the vault or in a token");
  }
  if (key.token_object.size() > kMaxTokenObjectSize ||
      !std::all_of(key.token_object.begin(), key.token_object.end(),
                   [](char c) { return absl::ascii_isgraph(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("token object id must be 1 to ", kMaxTokenObjectSize, " printable bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyDestroyable(const AccountKey& key) {
  if (key.token_object.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key ", key.version, " of account ", key.account, " is sealed in the vault, not in a token"));
  }
  if (key.state != KeyState::kRetired && key.state != KeyState::kCompromised) {
    return absl::FailedPreconditionError(absl::StrCat("key ", key.version, " of account ",
                                                      key.account, " is ", KeyStateName(key.state),
                                                      ": only a retired or compromised key goes"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyUsable(const AccountKey& key) {
  if (key.state == KeyState::kCompromised) {
    return absl::FailedPreconditionError(
        absl::StrCat("key ", key.version, " of account ", key.account, " is compromised"));
  }
  if (key.destroyed_at) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key ", key.version, " of account ", key.account, " was destroyed in the token"));
  }
  return absl::OkStatus();
}

absl::Status ValidateNewAccount(absl::string_view directory_url, const AccountKeyMaterial& key,
                                const PublicKeyInfo& public_key, KeyState initial_state) {
  RETURN_IF_ERROR(ValidateUrl("directory URL", directory_url));
  RETURN_IF_ERROR(ValidateKeyMaterial(key, public_key));
  if (initial_state != KeyState::kPending && initial_state != KeyState::kActive) {
    return absl::InvalidArgumentError("a new account's key starts pending or active");
  }
  return absl::OkStatus();
}

absl::Status ValidateAccountStatusChange(AccountStatus status) {
  if (status != AccountStatus::kDeactivated && status != AccountStatus::kRevoked) {
    return absl::InvalidArgumentError("an account can only be set deactivated or revoked");
  }
  return absl::OkStatus();
}

absl::StatusOr<NewCertificate> ValidateNewCertificate(const NewCertificate& certificate) {
  NewCertificate out = certificate;
  ASSIGN_OR_RETURN(out.identifiers, CanonicalIdentifiers(certificate.identifiers));
  absl::AsciiStrToLower(&out.serial);
  if (out.serial.empty() || out.serial.size() > 64 ||
      out.serial.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::InvalidArgumentError("serial must be 1 to 64 hex digits");
  }
  out.not_before = TruncateToMicros(out.not_before);
  out.not_after = TruncateToMicros(out.not_after);
  if (out.not_after <= out.not_before) {
    return absl::InvalidArgumentError("not_after must be after not_before");
  }
  if (out.chain_pem.empty()) return absl::InvalidArgumentError("certificate chain is empty");
  if (out.account_key_version.has_value() && *out.account_key_version < 1) {
    return absl::InvalidArgumentError("account key version must be positive");
  }
  return out;
}

Certificate StoredCertificate(const NewCertificate& c, TenantId tenant, CertificateId id,
                              bool has_private_key, absl::Time now) {
  Certificate out;
  out.id = id;
  out.tenant = tenant;
  out.account = c.account;
  out.order = c.order;
  out.identifiers = c.identifiers;
  out.serial = c.serial;
  out.not_before = TruncateToMicros(c.not_before);
  out.not_after = TruncateToMicros(c.not_after);
  out.chain_pem = c.chain_pem;
  out.account_key_version = c.account_key_version;
  out.has_private_key = has_private_key;
  if (c.crl_next_check.has_value()) out.crl_next_check = TruncateToMicros(*c.crl_next_check);
  out.created_at = TruncateToMicros(now);
  return out;
}

absl::Status ValidateReplacement(CertificateId renewal, CertificateId replaced) {
  if (renewal == replaced) {
    return absl::InvalidArgumentError("a certificate cannot replace itself");
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> CheckReplacement(const Certificate& renewal, const Certificate& replaced) {
  if (renewal.replaces_serial.empty()) return true;
  if (renewal.replaces_serial == replaced.serial) return false;
  return absl::FailedPreconditionError(
      absl::StrCat("certificate ", renewal.serial, " already replaces ", renewal.replaces_serial));
}

absl::Status ValidateAriCheck(const AriCheck& check) {
  if (check.window_start.has_value() != check.window_end.has_value()) {
    return absl::InvalidArgumentError("an ARI window needs both its start and its end");
  }
  if (check.window_start.has_value() && *check.window_end < *check.window_start) {
    return absl::InvalidArgumentError("an ARI window ends before it starts");
  }
  return absl::OkStatus();
}

absl::Status ValidateRevocationReason(crypto::RevocationReason reason) {
  const int code = crypto::RevocationReasonCode(reason);
  if (!crypto::RevocationReasonFromCode(code).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("revocation reason ", code, " is not an RFC 5280 CRLReason"));
  }
  return absl::OkStatus();
}

absl::Status ValidateChallengeToken(absl::string_view token) {
  bool ok = !token.empty() && token.size() <= 255;
  for (char c : token) {
    ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  }
  if (!ok) return absl::InvalidArgumentError("challenge token must be 1-255 base64url characters");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ValidateOrderStart(
    absl::string_view url, const std::vector<AuthorizationRecord>& authorizations,
    const std::vector<ChallengeAnswer>& answers) {
  RETURN_IF_ERROR(ValidateUrl("order URL", url));
  std::vector<std::string> identifiers;
  for (const AuthorizationRecord& a : authorizations) {
    RETURN_IF_ERROR(ValidateUrl("authorization URL", a.url));
    ASSIGN_OR_RETURN(std::vector<std::string> canonical, CanonicalIdentifiers({a.identifier}));
    identifiers.push_back(canonical[0]);
  }
  for (const ChallengeAnswer& answer : answers) {
    RETURN_IF_ERROR(ValidateChallengeToken(answer.token));
  }
  return identifiers;
}

absl::Status ValidateTokenHash(absl::string_view token_sha256) {
  if (token_sha256.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("token hash is ", token_sha256.size(), " bytes, want 32 (SHA-256)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTokenExpiry(std::optional<absl::Time> expires_at, absl::Time now) {
  if (expires_at.has_value() && *expires_at <= now) {
    return absl::InvalidArgumentError("token expiry is not in the future");
  }
  return absl::OkStatus();
}

absl::Status ValidateAuditEvent(const AuditEvent& event) {
  if (event.action.empty()) return absl::InvalidArgumentError("audit event has no action");
  return absl::OkStatus();
}

absl::Status ValidateLeaseRequest(absl::string_view owner, absl::Duration duration) {
  if (owner.empty()) return absl::InvalidArgumentError("lease owner is empty");
  if (duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease duration must be positive");
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckCsrSize(absl::string_view csr_der) {
  if (csr_der.size() > kMaxCsrDerSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSR is ", csr_der.size(), " bytes, more than ", kMaxCsrDerSize));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ValidateNewOrder(const NewOrder& order) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, CanonicalIdentifiers(order.identifiers));
  RETURN_IF_ERROR(ValidateLeaseRequest(order.lease_owner, order.lease_duration));
  RETURN_IF_ERROR(CheckCsrSize(order.csr_der));
  if (!order.job_kind.empty()) {
    RETURN_IF_ERROR(ValidateNewJob(NewJob{order.job_kind, "1", order.job_ca, absl::Time()}));
  }
  if (!order.replaces.empty()) {
    const size_t dot = order.replaces.find('.');
    const auto base64url = [](absl::string_view s) {
      return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
      });
    };
    if (order.replaces.size() > 256 || dot == std::string::npos ||
        !base64url(absl::string_view(order.replaces).substr(0, dot)) ||
        !base64url(absl::string_view(order.replaces).substr(dot + 1))) {
      return absl::InvalidArgumentError(
          "replaces: an RFC 9773 CertID (base64url \".\" base64url, at most 256 bytes)");
    }
  }
  if (order.job_released && (order.job_kind.empty() || order.csr_der.empty())) {
    return absl::InvalidArgumentError(
        "job_released: only for an order run by a job and made with its CSR");
  }
  if (order.claim.has_value()) {
    if (!order.job_released) {
      return absl::InvalidArgumentError("claim: only with job_released");
    }
    RETURN_IF_ERROR(ValidateJobClaim(*order.claim));
  }
  return ids;
}

absl::Status LiveAccountExists(absl::string_view directory_url) {
  return absl::AlreadyExistsError(
      absl::StrCat("the tenant already has a pending or valid account for ", directory_url));
}

bool IdempotencyKeyBinds(const Order& order, const Certificate* certificate, absl::Time now) {
  if (order.idempotency_key.empty() || now - order.created_at >= kIdempotencyKeyLifetime) {
    return false;
  }
  if (order.state != OrderState::kValid || certificate == nullptr) return true;
  return !certificate->revoked_at.has_value() && certificate->not_after > now;
}

absl::Status CheckIdempotentJoin(const Scope& scope, const Order& order,
                                 const std::vector<std::string>& identifiers) {
  // Names neither the order nor its creator: another host learns only that the key is taken.
  if (order.created_by.empty() || order.created_by != scope.actor.identity) {
    return absl::AlreadyExistsError(
        "idempotency key in use by another identity; choose another key");
  }
  if (order.identifiers != identifiers) {
    return absl::InvalidArgumentError(
        absl::StrCat("idempotency key was used for order ", order.id, " with other identifiers"));
  }
  return absl::OkStatus();
}

absl::Status ValidateOrderCsr(absl::string_view csr_der) {
  if (csr_der.empty()) return absl::InvalidArgumentError("CSR is empty");
  return CheckCsrSize(csr_der);
}

absl::Status CheckMaterialAttachable(const Order& order) {
  if (!order.csr_der.empty() || order.has_certificate_key) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " has its finalization material already"));
  }
  if (order.state != OrderState::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat(
        "order ", order.id, " is ", OrderStateName(order.state), ": too late for its material"));
  }
  return absl::OkStatus();
}

absl::Status IdempotencyKeyInFlight(OrderId order) {
  return absl::AlreadyExistsError(
      absl::StrCat("idempotency key in use by order ", order,
                   ", still in flight after the key's 24 hours; choose another key"));
}

absl::Status ValidateOrderFailure(const OrderFailure& failure) {
  if (failure.problem_type.size() > kMaxProblemTypeSize) {
    return absl::InvalidArgumentError(absl::StrCat("problem type is ", failure.problem_type.size(),
                                                   " bytes, more than ", kMaxProblemTypeSize));
  }
  return absl::OkStatus();
}

absl::Status CheckStallable(const Order& order) {
  if (order.state != OrderState::kProcessing) {
    return absl::FailedPreconditionError(absl::StrCat(
        "order ", order.id, " is ", OrderStateName(order.state), ", not processing"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ValidateCaHold(const CaHoldKey& key,
                                                        absl::string_view problem) {
  if (problem.size() > kMaxCaHoldProblemSize) {
    return absl::InvalidArgumentError(absl::StrCat("hold problem is ", problem.size(),
                                                   " bytes, more than ", kMaxCaHoldProblemSize));
  }
  if (key.identifiers.empty()) return std::vector<std::string>{};
  return CanonicalIdentifiers(key.identifiers);
}

absl::StatusOr<CaBudget> ValidateCaBudget(const CaBudget& budget) {
  if (budget.name.empty() || budget.name.size() > 64) {
    return absl::InvalidArgumentError("budget name must be 1 to 64 bytes");
  }
  if (!(budget.capacity >= 1) || budget.period <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "budget capacity must be at least 1 and its period positive");
  }
  CaBudget valid = budget;
  if (!budget.identifiers.empty()) {
    ASSIGN_OR_RETURN(valid.identifiers, CanonicalIdentifiers(budget.identifiers));
  }
  return valid;
}

absl::StatusOr<std::vector<CaBudget>> ValidateCaBudgets(const std::vector<CaBudget>& budgets) {
  std::vector<CaBudget> valid;
  for (const CaBudget& budget : budgets) {
    ASSIGN_OR_RETURN(CaBudget checked, ValidateCaBudget(budget));
    valid.push_back(std::move(checked));
  }
  return valid;
}

absl::StatusOr<std::optional<AdmissionRequest>> StepAdmissionOf(const StepAdmission* admission,
                                                                const OrderStepState& loaded) {
  if (admission == nullptr || !admission->budgets) return std::nullopt;
  std::optional<std::vector<CaBudget>> budgets = admission->budgets(loaded);
  if (!budgets.has_value()) return std::nullopt;
  AdmissionRequest out;
  out.key = CaHoldKey{loaded.order.account, loaded.order.identifiers, CaRequest::kNewOrder};
  ASSIGN_OR_RETURN(out.ids, ValidateCaHold(out.key));
  ASSIGN_OR_RETURN(out.budgets, ValidateCaBudgets(*budgets));
  return out;
}

absl::Status ValidateCaDirectoryBudget(absl::string_view directory_url, const CaBudget& budget) {
  if (directory_url.empty() || directory_url.size() > 2048) {
    return absl::InvalidArgumentError("directory URL must be 1 to 2048 bytes");
  }
  if (!budget.identifiers.empty()) {
    return absl::InvalidArgumentError("a CA's budget for the fleet has no identifiers");
  }
  return ValidateCaBudget(budget).status();
}

absl::Time NextTokenAt(const CaBudget& budget, double tokens, absl::Time now) {
  // The period per token, not the inverse of the rate: an empty bucket's next token is then
  // exactly period / capacity away, not a rounding of its reciprocal (1 µs late).
  const double us = (1 - tokens) * absl::ToDoubleMicroseconds(budget.period) / budget.capacity;
  return now + absl::Microseconds(std::ceil(us));
}

absl::Status ValidateCrlCheck(const CrlCheck& check) {
  RETURN_IF_ERROR(ValidateRevocationReason(check.reason));
  if (check.crl_url.size() > 2048) {
    return absl::InvalidArgumentError("CRL URL over 2048 bytes");
  }
  return absl::OkStatus();
}

AuditEvent RevokedOutsideEvent(const Certificate& certificate, const CrlCheck& check) {
  return CertificateEvent(
      "CertificateRevokedOutside", certificate,
      absl::StrCat("listed in the CRL ", check.crl_url, " as revoked at ",
                   absl::FormatTime(absl::RFC3339_sec, *check.revoked_at, absl::UTCTimeZone()),
                   ", reason ", crypto::RevocationReasonCode(check.reason)));
}

absl::Status ValidateEabKey(absl::string_view directory_url, absl::string_view key_id,
                            absl::string_view hmac_key) {
  if (directory_url.empty() || directory_url.size() > 2048) {
    return absl::InvalidArgumentError("EAB key: the directory URL must be 1 to 2048 bytes");
  }
  if (key_id.empty() || key_id.size() > kMaxEabKeyIdSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("eab_key_id: must be 1 to ", kMaxEabKeyIdSize, " bytes"));
  }
  if (hmac_key.empty() || hmac_key.size() > kMaxEabHmacKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("eab_hmac_key: must be 1 to ", kMaxEabHmacKeySize, " bytes"));
  }
  return absl::OkStatus();
}

AuditEvent EabKeyEvent(absl::string_view action, const EabKeyInfo& info,
                       absl::string_view purpose) {
  return SimpleEvent(action, absl::StrCat("EAB key id ", info.key_id, " for ", info.directory_url,
                                          purpose.empty() ? "" : ": ", purpose));
}

CaBudgetTake TakeToken(const CaBudget& budget, double& tokens, absl::Time updated_at,
                       absl::Time now) {
  // elapsed * capacity / period, in that order, as the stores' statements compute it: a whole
  // period's refill is then exactly the capacity, and a token due at t is there at t.
  const double elapsed_us = std::max(0.0, absl::ToDoubleMicroseconds(now - updated_at));
  const double period_us = absl::ToDoubleMicroseconds(budget.period);
  tokens = std::min(budget.capacity, tokens + elapsed_us * budget.capacity / period_us);
  CaBudgetTake take;
  if (tokens >= 1) {
    tokens -= 1;
    take.taken = true;
  } else {
    take.next_token_at = NextTokenAt(budget, tokens, now);
  }
  take.tokens_left = tokens;
  return take;
}

absl::Status CheckAccountOpen(const Account& account, bool already) {
  if (account.status == AccountStatus::kDeactivated || account.status == AccountStatus::kRevoked) {
    return absl::FailedPreconditionError(absl::StrCat("account ", account.id, " is ",
                                                      already ? "already " : "",
                                                      AccountStatusName(account.status)));
  }
  return absl::OkStatus();
}

absl::Status CheckHijackable(const Account& account) {
  if (account.account_url.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("account ", account.id, " was never registered at its CA"));
  }
  return absl::OkStatus();
}

AuditEvent AccountHijackedEvent(const Account& account, absl::string_view what) {
  // Room for the "..." that marks a cut.
  AuditEvent e = AccountEvent("AccountHijackDetected", account.id, std::nullopt,
                              ClipUtf8(what, kMaxHijackDetailSize - 3));
  e.acme_url = account.account_url;
  return e;
}

absl::Status CheckReplaceable(const Account& old, absl::string_view new_account_url) {
  RETURN_IF_ERROR(ValidateUrl("new account URL", new_account_url));
  if (new_account_url == old.account_url) {
    return absl::InvalidArgumentError(
        absl::StrCat("new account URL: is account ", old.id, "'s own"));
  }
  if (old.status != AccountStatus::kValid) {
    return absl::FailedPreconditionError(absl::StrCat("account ", old.id, " is ",
                                                      AccountStatusName(old.status),
                                                      ", not valid: nothing to replace"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> AccountUrlNeedsWrite(const Account& account, absl::string_view url) {
  if (account.account_url == url) return false;
  if (!account.account_url.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("account ", account.id, " already has another URL"));
  }
  if (account.status != AccountStatus::kPending) {
    return absl::FailedPreconditionError(
        absl::StrCat("account ", account.id, " is ", AccountStatusName(account.status)));
  }
  return true;
}

absl::Status CheckKeyPending(AccountId account, int version, KeyState state) {
  if (state != KeyState::kPending) {
    return absl::FailedPreconditionError(absl::StrCat("key ", version, " of account ", account,
                                                      " is ", KeyStateName(state),
                                                      ", not pending"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyLease(const Scope& scope, int64_t current_token, const KeyLease& lease) {
  if (lease.tenant != scope.tenant) {
    return absl::InvalidArgumentError("key lease belongs to another tenant than the scope");
  }
  if (lease.fencing_token != current_token) {
    return absl::FailedPreconditionError(absl::StrCat("key lease on account ", lease.account,
                                                      " lost: fencing token ", lease.fencing_token,
                                                      " is stale (current ", current_token, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyLeaseFree(AccountId account, std::optional<absl::Time> expires_at,
                               absl::Time now) {
  if (expires_at.has_value() && *expires_at > now) {
    return absl::AbortedError(
        absl::StrCat("the keys of account ", account, " are being changed by another caller"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCompromiseRunExpiry(absl::Time now, absl::Time expires_at) {
  if (expires_at <= now) {
    return absl::InvalidArgumentError("a compromise run must expire after it starts");
  }
  return absl::OkStatus();
}

absl::Status CheckCompromiseRunOpen(const CompromiseRun& run) {
  if (run.finished_at.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("compromise run ", run.id, " is finished"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCompromiseStep(absl::string_view step) {
  if (step.empty() || step.size() > 64) {
    return absl::InvalidArgumentError("a compromise step is named by 1 to 64 bytes");
  }
  return absl::OkStatus();
}

absl::Status CheckFence(const Scope& scope, const Order& order, const Lease& lease,
                        const Job* job) {
  if (lease.tenant != scope.tenant) {
    return absl::InvalidArgumentError("lease belongs to another tenant than the scope");
  }
  if (lease.job != 0) {
    if (job == nullptr || job->id != lease.job || job->failed_at.has_value() ||
        job->subject != absl::StrCat(order.id)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease on order ", order.id, " lost: its job ", lease.job, " is gone or has failed"));
    }
    if (lease.fencing_token != job->fencing_token) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease on order ", order.id, " lost: fencing token ", lease.fencing_token,
          " of job ", lease.job, " is stale (current ", job->fencing_token, ")"));
    }
    return absl::OkStatus();
  }
  if (order.fencing_token == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "order ", order.id, " is run by a job: present its job's lease"));
  }
  if (lease.fencing_token != order.fencing_token) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease on order ", order.id, " lost: fencing token ", lease.fencing_token,
                     " is stale (current ", order.fencing_token, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckLease(const Scope& scope, const Order& order, const Lease& lease,
                        const Job* job) {
  RETURN_IF_ERROR(CheckFence(scope, order, lease, job));
  if (IsTerminal(order.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " is ", OrderStateName(order.state)));
  }
  return absl::OkStatus();
}

absl::Status CheckOrderTransition(const Order& order, OrderState to) {
  if (to == OrderState::kValid) {
    return absl::InvalidArgumentError("an order becomes valid only through CompleteOrder");
  }
  if (IsTerminal(order.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " is ", OrderStateName(order.state)));
  }
  if (Rank(to) < Rank(order.state)) {
    return absl::FailedPreconditionError(absl::StrCat("order ", order.id, " cannot go from ",
                                                      OrderStateName(order.state), " to ",
                                                      OrderStateName(to)));
  }
  if (to != OrderState::kInvalid && to != OrderState::kCreated && order.acme_url.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " has no ACME URL yet (RecordOrderUrl first)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> OrderUrlNeedsWrite(const Order& order, absl::string_view url) {
  if (order.acme_url == url) return false;
  if (!order.acme_url.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.id, " already has another ACME URL"));
  }
  return true;
}

bool OrderStepUsesKey(const Order& order, const Account& account) {
  return !IsTerminal(order.state) && !order.csr_der.empty() &&
         account.status == AccountStatus::kValid;
}

absl::Status ValidateOrderCompletion(const Lease& lease, const OrderCompletion& completion) {
  if (lease.job == 0) {
    return absl::InvalidArgumentError("FinishOrder: the order's lease must name its job");
  }
  if (completion.certificate.private_key != nullptr) {
    return absl::InvalidArgumentError(
        "FinishOrder: the certificate key is the order's own, not the caller's");
  }
  return absl::OkStatus();
}

absl::Status CheckCompletable(const Order& order) {
  if (order.acme_url.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("order ", order.id, " has no ACME URL"));
  }
  return absl::OkStatus();
}

std::string TransitionDetail(OrderState from, OrderState to, absl::string_view error) {
  return absl::StrCat(OrderStateName(from), " -> ", OrderStateName(to), error.empty() ? "" : ": ",
                      error);
}

AuditChainVerifier::AuditChainVerifier(TenantId tenant)
    : what_(absl::StrCat("audit chain of tenant ", tenant)), last_hash_(32, '\0') {}

absl::Status AuditChainVerifier::Next(int64_t seq, absl::string_view prev_hash,
                                      absl::string_view hash, absl::string_view recomputed) {
  if (seq != last_seq_ + 1) {
    return absl::DataLossError(absl::StrCat(what_, " broken at seq ", last_seq_ + 1,
                                            ": row missing (next is ", seq, ")"));
  }
  if (prev_hash != last_hash_) {
    return absl::DataLossError(absl::StrCat(what_, " broken at seq ", seq,
                                            ": prev_hash is not the hash of seq ", last_seq_));
  }
  if (hash != recomputed) {
    return absl::DataLossError(
        absl::StrCat(what_, " broken at seq ", seq, ": row does not match its hash"));
  }
  last_seq_ = seq;
  last_hash_ = std::string(hash);
  return absl::OkStatus();
}

absl::Status AuditChainVerifier::Finish(int64_t head_seq, absl::string_view head_hash) const {
  if (head_seq != last_seq_ || (head_seq != 0 && head_hash != last_hash_)) {
    return absl::DataLossError(absl::StrCat(what_, " broken at seq ", last_seq_ + 1,
                                            ": the chain ends at seq ", last_seq_,
                                            " but its head is at seq ", head_seq));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> DecodeIdToken(absl::string_view token) {
  if (token.empty()) return 0;
  int64_t id = 0;
  if (!absl::SimpleAtoi(token, &id) || id < 0) {
    return absl::InvalidArgumentError("malformed page token");
  }
  return id;
}

std::string EncodeIdToken(int64_t id) { return absl::StrCat(id); }

absl::StatusOr<std::pair<int64_t, int64_t>> DecodeDueToken(absl::string_view token) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(token, ':');
  std::pair<int64_t, int64_t> out;
  if (!absl::SimpleAtoi(parts.first, &out.first) || !absl::SimpleAtoi(parts.second, &out.second)) {
    return absl::InvalidArgumentError("malformed page token");
  }
  return out;
}

std::string EncodeDueToken(absl::Time not_after, int64_t id) {
  return absl::StrCat(absl::ToUnixMicros(not_after), ":", id);
}

AuditEvent TenantEvent(absl::string_view action, const TenantSpec& spec) {
  AuditEvent e;
  e.action = std::string(action);
  e.detail = absl::StrCat("tenant ", spec.name, ", directory ", spec.acme_directory_url,
                          ", key ", crypto::KeyAlgorithmName(spec.policy.key_algorithm), " in ",
                          KeyStorageName(spec.policy.key_storage));
  if (!spec.policy.certificate_key_algorithms.empty()) {
    absl::StrAppend(&e.detail, ", certificate keys ",
                    absl::StrJoin(spec.policy.certificate_key_algorithms, " ",
                                  [](std::string* out, crypto::KeyAlgorithm a) {
                                    absl::StrAppend(out, crypto::KeyAlgorithmName(a));
                                  }));
  }
  return e;
}

AuditEvent AccountEvent(absl::string_view action, AccountId account,
                        std::optional<int> key_version, std::string detail) {
  AuditEvent e;
  e.action = std::string(action);
  e.account = account;
  e.key_version = key_version;
  e.detail = std::move(detail);
  return e;
}

AuditEvent ReplaceAccountEvent(const Account& old, const Account& replacement, int moved_version,
                               bool old_keys_compromised) {
  AuditEvent e = AccountEvent(
      "ReplaceAccount", replacement.id, 1,
      absl::StrCat("replaces account ", old.id, " (", old.account_url, "), now deactivated; its key ",
                   moved_version, " is key 1 here",
                   old_keys_compromised ? "; its other keys compromised" : ""));
  e.acme_url = replacement.account_url;
  return e;
}

AuditEvent AccountStatusEvent(const Account& account, AccountStatus status) {
  AuditEvent e = AccountEvent("SetAccountStatus", account.id, std::nullopt,
                              std::string(AccountStatusName(status)));
  e.acme_url = account.account_url;
  return e;
}

AuditEvent OrderEvent(absl::string_view action, const Order& order, std::string detail) {
  AuditEvent e;
  e.action = std::string(action);
  e.identifiers = order.identifiers;
  e.account = order.account;
  e.acme_url = order.acme_url;
  e.detail = absl::StrCat("order ", order.id, detail.empty() ? "" : ": ", detail);
  return e;
}

AuditEvent CertificateEvent(absl::string_view action, const Certificate& certificate,
                            std::string detail) {
  AuditEvent e;
  e.action = std::string(action);
  e.identifiers = certificate.identifiers;
  e.account = certificate.account;
  e.key_version = certificate.account_key_version;
  e.detail = absl::StrCat("certificate ", certificate.id, " serial ", certificate.serial,
                          detail.empty() ? "" : ": ", detail);
  return e;
}

AuditEvent SimpleEvent(absl::string_view action, std::string detail) {
  AuditEvent e;
  e.action = std::string(action);
  e.detail = std::move(detail);
  return e;
}

AuditEvent CompromiseStartEvent(const CompromiseRun& run) {
  return SimpleEvent(
      "CompromiseStart",
      absl::StrCat("run ", run.id, run.deactivate_account ? " deactivate_account" : ""));
}

AuditEvent CompromiseStepEvent(CompromiseRunId run, absl::string_view step) {
  return SimpleEvent("CompromiseStep", absl::StrCat("run ", run, ": ", step));
}

AuditEvent CompromiseDoneEvent(CompromiseRunId run) {
  return SimpleEvent("CompromiseDone", absl::StrCat("run ", run));
}

AuditEvent TokenAddedEvent(const Identity& identity) {
  std::string detail = absl::StrCat("identity ", identity.id, " as ", RoleName(identity.role));
  if (identity.expires_at.has_value()) {
    absl::StrAppend(&detail, ", expires ",
                    absl::FormatTime(absl::RFC3339_sec, *identity.expires_at, absl::UTCTimeZone()));
  }
  return SimpleEvent("AddTokenIdentity", std::move(detail));
}

// ---------------------------------------------------------------------------------------------
// Jobs

namespace {

// 1 to `max` printable ASCII characters other than space ('!' to '~').
bool PrintableWord(absl::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (c < '!' || c > '~') return false;
  }
  return true;
}

absl::Status ValidateJobSubject(absl::string_view subject) {
  if (!PrintableWord(subject, kMaxJobSubject)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job subject must be 1-", kMaxJobSubject, " printable ASCII characters without spaces"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateNewJob(const NewJob& job) {
  RETURN_IF_ERROR(ValidateJobKind(job.kind));
  RETURN_IF_ERROR(ValidateJobSubject(job.subject));
  if (!job.ca.empty() && !PrintableWord(job.ca, kMaxJobCa)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job CA must be empty or at most ", kMaxJobCa, " printable ASCII characters"));
  }
  return absl::OkStatus();
}

absl::Status ValidateJobNotice(const JobNotice& notice) {
  if (notice.tenant <= 0) return absl::InvalidArgumentError("job notice names no tenant");
  RETURN_IF_ERROR(ValidateJobKind(notice.kind));
  return ValidateJobSubject(notice.subject);
}

absl::Status ValidateJobClaim(const JobClaim& claim) {
  RETURN_IF_ERROR(ValidateLeaseRequest(claim.owner, claim.lease_duration));
  if (claim.max_jobs < 1) return absl::InvalidArgumentError("max_jobs must be positive");
  if (claim.per_tenant_limit < 0 || claim.per_ca_limit < 0) {
    return absl::InvalidArgumentError("job limits must not be negative");
  }
  if (claim.kinds.empty()) return absl::InvalidArgumentError("a claim names no job kind");
  for (const std::string& kind : claim.kinds) RETURN_IF_ERROR(ValidateJobKind(kind));
  return absl::OkStatus();
}

std::string ClipJobError(absl::string_view error) {
  // Room for the "..." that marks a cut.
  return ClipUtf8(error, kMaxJobError - 3);
}

std::vector<std::string> ClipAccountContact(const std::vector<std::string>& contact) {
  std::vector<std::string> out;
  for (const std::string& c : contact) {
    if (out.size() == kMaxAccountContacts) break;
    std::string clipped = ClipUtf8(c, kMaxAccountContactSize - 3);
    if (!clipped.empty()) out.push_back(std::move(clipped));
  }
  return out;
}

absl::Status ValidateJobLease(const JobLease& lease) {
  if (lease.tenant <= 0 || lease.job <= 0 || lease.owner.empty()) {
    return absl::InvalidArgumentError("the job lease names no tenant, job or owner");
  }
  return absl::OkStatus();
}

absl::Status CheckJobLease(const Job& job, const JobLease& lease) {
  if (lease.fencing_token != job.fencing_token) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id, " lost: fencing token ", lease.fencing_token,
                     " is stale (current ", job.fencing_token, ")"));
  }
  if (job.failed_at.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job.id, " lost: it has failed"));
  }
  return absl::OkStatus();
}

absl::Status JobGone(const JobLease& lease) {
  return absl::FailedPreconditionError(
      absl::StrCat("job ", lease.job, " lost: it is gone (completed, or never there)"));
}

std::string EncodeJobNotice(const JobNotice& notice) {
  return absl::StrCat(notice.tenant, " ", notice.kind, " ", notice.subject, " ",
                      notice.failed ? "failed" : "done");
}

absl::StatusOr<JobNotice> DecodeJobNotice(absl::string_view payload) {
  std::vector<absl::string_view> parts = absl::StrSplit(payload, ' ');
  JobNotice out;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &out.tenant) ||
      (parts[3] != "done" && parts[3] != "failed")) {
    return absl::InvalidArgumentError("not a job notice");
  }
  out.kind = std::string(parts[1]);
  out.subject = std::string(parts[2]);
  out.failed = parts[3] == "failed";
  RETURN_IF_ERROR(ValidateJobNotice(out));
  return out;
}

}  // namespace acmevault::storage::rules
