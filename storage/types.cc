#include "storage/types.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace acmevault::storage {
namespace {

template <typename E, size_t N>
absl::string_view NameOf(E value, const std::pair<E, absl::string_view> (&names)[N]) {
  for (const auto& [v, name] : names) {
    if (v == value) return name;
  }
  return "unknown";
}

template <typename E, size_t N>
absl::StatusOr<E> Parse(absl::string_view what, absl::string_view name,
                        const std::pair<E, absl::string_view> (&names)[N]) {
  for (const auto& [v, n] : names) {
    if (n == name) return v;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown ", what, " \"", name, "\""));
}

constexpr std::pair<Role, absl::string_view> kRoles[] = {
    {Role::kHost, "host"}, {Role::kAdmin, "admin"}, {Role::kPlatformAdmin, "platform_admin"}};

constexpr std::pair<AccountStatus, absl::string_view> kAccountStatuses[] = {
    {AccountStatus::kPending, "pending"},
    {AccountStatus::kValid, "valid"},
    {AccountStatus::kDeactivated, "deactivated"},
    {AccountStatus::kRevoked, "revoked"}};

constexpr std::pair<KeyStorage, absl::string_view> kKeyStorages[] = {
    {KeyStorage::kVault, "vault"}, {KeyStorage::kPkcs11, "pkcs11"}};

constexpr std::pair<KeyState, absl::string_view> kKeyStates[] = {
    {KeyState::kPending, "pending"},
    {KeyState::kActive, "active"},
    {KeyState::kRetired, "retired"},
    {KeyState::kCompromised, "compromised"}};

constexpr std::pair<OrderState, absl::string_view> kOrderStates[] = {
    {OrderState::kCreated, "created"},       {OrderState::kPending, "pending"},
    {OrderState::kReady, "ready"},           {OrderState::kProcessing, "processing"},
    {OrderState::kValid, "valid"},           {OrderState::kInvalid, "invalid"}};

constexpr std::pair<AuthorizationStatus, absl::string_view> kAuthorizationStatuses[] = {
    {AuthorizationStatus::kPending, "pending"},
    {AuthorizationStatus::kValid, "valid"},
    {AuthorizationStatus::kInvalid, "invalid"},
    {AuthorizationStatus::kDeactivated, "deactivated"},
    {AuthorizationStatus::kExpired, "expired"},
    {AuthorizationStatus::kRevoked, "revoked"}};

constexpr size_t kMaxIdentifiers = 100;
constexpr size_t kMaxIdentifierLength = 255;

}  // namespace

absl::string_view RoleName(Role role) { return NameOf(role, kRoles); }
absl::StatusOr<Role> ParseRole(absl::string_view name) { return Parse("role", name, kRoles); }

absl::string_view AccountStatusName(AccountStatus status) {
  return NameOf(status, kAccountStatuses);
}
absl::StatusOr<AccountStatus> ParseAccountStatus(absl::string_view name) {
  return Parse("account status", name, kAccountStatuses);
}

absl::string_view KeyStorageName(KeyStorage storage) { return NameOf(storage, kKeyStorages); }
absl::StatusOr<KeyStorage> ParseKeyStorage(absl::string_view name) {
  return Parse("key storage", name, kKeyStorages);
}

absl::string_view KeyStateName(KeyState state) { return NameOf(state, kKeyStates); }
absl::StatusOr<KeyState> ParseKeyState(absl::string_view name) {
  return Parse("key state", name, kKeyStates);
}

absl::string_view OrderStateName(OrderState state) { return NameOf(state, kOrderStates); }
absl::StatusOr<OrderState> ParseOrderState(absl::string_view name) {
  return Parse("order state", name, kOrderStates);
}
absl::string_view CaRequestName(CaRequest request) {
  switch (request) {
    case CaRequest::kNewOrder:
      return "newOrder";
    case CaRequest::kNewAccount:
      return "newAccount";
    case CaRequest::kFinalize:
      return "finalize";
  }
  return "unknown";
}

bool IsTerminal(OrderState state) {
  return state == OrderState::kValid || state == OrderState::kInvalid;
}

std::string OrderStepPurpose(OrderId order) { return absl::StrCat("order ", order); }

absl::string_view AuthorizationStatusName(AuthorizationStatus status) {
  return NameOf(status, kAuthorizationStatuses);
}
absl::StatusOr<AuthorizationStatus> ParseAuthorizationStatus(absl::string_view name) {
  return Parse("authorization status", name, kAuthorizationStatuses);
}

absl::StatusOr<std::vector<std::string>> CanonicalIdentifiers(std::vector<std::string> ids) {
  if (ids.empty()) return absl::InvalidArgumentError("no identifiers");
  if (ids.size() > kMaxIdentifiers) {
    return absl::InvalidArgumentError(
        absl::StrCat(ids.size(), " identifiers (at most ", kMaxIdentifiers, ")"));
  }
  for (std::string& id : ids) {
    if (id.empty() || id.size() > kMaxIdentifierLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("identifier of ", id.size(), " bytes (want 1 to ", kMaxIdentifierLength,
                       ")"));
    }
    for (char c : id) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f || c == ',') {
        return absl::InvalidArgumentError(
            "identifier contains whitespace, a control character or a comma");
      }
    }
    absl::AsciiStrToLower(&id);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

int PageSize(const PageRequest& page) { return std::clamp(page.max_results, 1, 1000); }

absl::Time TruncateToMicros(absl::Time t) {
  return absl::FromUnixMicros(absl::ToUnixMicros(t));
}

absl::Status ValidateJobKind(absl::string_view kind) {
  bool ok = !kind.empty() && kind.size() <= 32 && absl::ascii_islower(kind[0]);
  for (char c : kind) {
    ok = ok && (absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_');
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("job kind \"", kind.substr(0, 40), "\" is not [a-z][a-z0-9_]{0,31}"));
  }
  return absl::OkStatus();
}

namespace {
constexpr absl::string_view kCommitOutcomeUnknown =
    "connection lost during COMMIT; the commit outcome is unknown";
}  // namespace

absl::Status CommitOutcomeUnknownError(absl::string_view op) {
  return absl::UnavailableError(absl::StrCat(op, ": ", kCommitOutcomeUnknown));
}

bool IsCommitOutcomeUnknown(const absl::Status& status) {
  return absl::IsUnavailable(status) && absl::StrContains(status.message(), kCommitOutcomeUnknown);
}

}  // namespace acmevault::storage
