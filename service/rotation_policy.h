// The account-key rotation policy (issue 11, item 2): whether a tenant's active account key must
// be rolled over now, and when it will be. Pure functions of the tenant's policy, the key and the
// time, so every replica and every caller (the scan, the rotation job under the key lease,
// GetAccount) decides alike.
#ifndef ACMEVAULT_SERVICE_ROTATION_POLICY_H_
#define ACMEVAULT_SERVICE_ROTATION_POLICY_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "absl/status/statusor.h"
#include "storage/store.h"
#include "storage/types.h"

namespace acmevault::service {

// The job that rolls an account key over by policy (PolicyScheduler schedules it,
// AccountManager::RotateByPolicy runs it); its subject is the account id.
inline constexpr char kRotateJob[] = "rotate_account_key";
// The job that verifies an account at its CA (hijack detection; PolicyScheduler schedules it
// every `account_verify_interval`, AccountManager::VerifyByPolicy runs it); its subject is the
// account id.
inline constexpr char kVerifyAccountJob[] = "verify_account";

struct RotationDecision {
  // The key must be rolled over now.
  bool due = false;
  // When it is (or was) due; unset when the policy never rotates it (max key age 0 and the
  // algorithm the policy's).
  std::optional<absl::Time> due_at;
  // Why it is due, for the audit row: "policy: key age 90d exceeds 60d" or
  // "policy: algorithm rsa-2048 -> ecdsa-p256". Empty when not due.
  std::string reason;
};

// A key whose algorithm differs from `policy.key_algorithm` is due at once (moving from RSA to
// ECDSA is a rotation). Otherwise it is due once it has been active for `policy.max_key_age`
// (from activated_at, or created_at for a key without one); a max_key_age of zero or less turns
// rotation by age off.
RotationDecision DecideRotation(const storage::TenantPolicy& policy,
                                const storage::AccountKey& active, absl::Time now);

// How long `active` has been the account's key at `now`.
absl::Duration KeyAge(const storage::AccountKey& active, absl::Time now);

// The account the service acts for in a tenant (its newest valid one, as AccountManager picks
// it, unless that one is marked hijacked) and that account's active key.
struct ActiveAccountKey {
  storage::Account account;
  storage::AccountKey key;
};
// Unset when the tenant has no valid account or it has no active key; the store's error
// otherwise. Two reads.
absl::StatusOr<std::optional<ActiveAccountKey>> FindActiveAccountKey(
    storage::AccountStore& accounts, const storage::Scope& scope);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ROTATION_POLICY_H_
