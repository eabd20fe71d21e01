// FakeStore: account key leases (AccountStore::AcquireKeyLease), as postgres_key_leases.cc.
#include "common/status_macros.h"
#include "storage/rules.h"
#include "storage/testing/fake_store_state.h"

namespace acmevault::storage {

using fake::FindAccount;
using fake::State;

namespace fake {

absl::StatusOr<Account*> LeasedAccount(State& s, const Scope& scope, const KeyLease& lease) {
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, lease.account));
  RETURN_IF_ERROR(rules::CheckKeyLease(scope, s.key_leases[a->id].fencing_token, lease));
  return a;
}

}  // namespace fake

absl::StatusOr<KeyLease> FakeStore::AcquireKeyLease(const Scope& scope, AccountId account,
                                                    absl::Duration duration) {
  const absl::Time now = Now();
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, account));
  RETURN_IF_ERROR(rules::CheckAccountOpen(*a));
  State::KeyLeaseRow& row = s.key_leases[account];
  RETURN_IF_ERROR(rules::CheckKeyLeaseFree(account, row.expires_at, now));
  ++row.fencing_token;
  row.expires_at = TruncateToMicros(now + duration);
  return KeyLease{.tenant = scope.tenant,
                  .account = account,
                  .fencing_token = row.fencing_token,
                  .expires_at = *row.expires_at};
}

absl::Status FakeStore::ReleaseKeyLease(const Scope& scope, const KeyLease& lease) {
  State& s = *state_;
  fake::StoreLock lock(s);
  ASSIGN_OR_RETURN(Account * a, FindAccount(s, scope, lease.account));
  State::KeyLeaseRow& row = s.key_leases[a->id];
  absl::Status current = rules::CheckKeyLease(scope, row.fencing_token, lease);
  if (absl::IsFailedPrecondition(current)) return absl::OkStatus();  // Taken over meanwhile.
  RETURN_IF_ERROR(current);
  // As in PostgreSQL, a closed account's lease is left as it is.
  if (rules::CheckAccountOpen(*a).ok()) row.expires_at.reset();
  return absl::OkStatus();
}

}  // namespace acmevault::storage
