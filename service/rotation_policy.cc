#include "service/rotation_policy.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "crypto/keys.h"

namespace acmevault::service {

absl::Duration KeyAge(const storage::AccountKey& active, absl::Time now) {
  return now - active.activated_at.value_or(active.created_at);
}

absl::StatusOr<std::optional<ActiveAccountKey>> FindActiveAccountKey(
    storage::AccountStore& accounts, const storage::Scope& scope) {
  ASSIGN_OR_RETURN(std::vector<storage::Account> all, accounts.ListAccounts(scope));
  const storage::Account* valid = nullptr;
  for (const auto& a : all) {
    if (a.status == storage::AccountStatus::kValid && !a.account_url.empty() && !a.ephemeral) {
      valid = &a;
    }
  }
  // A hijacked account is someone else's now: nothing to rotate or verify.
  if (valid == nullptr || valid->hijacked_at.has_value()) return std::nullopt;
  ASSIGN_OR_RETURN(std::vector<storage::AccountKey> keys, accounts.ListKeys(scope, valid->id));
  for (const auto& k : keys) {
    if (k.state == storage::KeyState::kActive) return ActiveAccountKey{*valid, k};
  }
  return std::nullopt;
}

RotationDecision DecideRotation(const storage::TenantPolicy& policy,
                                const storage::AccountKey& active, absl::Time now) {
  RotationDecision d;
  if (active.algorithm != policy.key_algorithm) {
    d.due = true;
    d.due_at = now;
    d.reason = absl::StrCat("policy: algorithm ", crypto::KeyAlgorithmName(active.algorithm),
                            " -> ", crypto::KeyAlgorithmName(policy.key_algorithm));
    return d;
  }
  if (policy.max_key_age <= absl::ZeroDuration()) return d;
  d.due_at = active.activated_at.value_or(active.created_at) + policy.max_key_age;
  if (now >= *d.due_at) {
    d.due = true;
    d.reason = absl::StrCat("policy: key age ", absl::FormatDuration(KeyAge(active, now)),
                            " reached the maximum ", absl::FormatDuration(policy.max_key_age));
  }
  return d;
}

}  // namespace acmevault::service
