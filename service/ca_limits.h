// The CA limits the fleet keeps under (issue 11, item 5; ServerConfig.ca_limits and
// ca_limits_by_directory), as token buckets in the store shared by every replica
// (storage::CaLimitStore). Defaults are Let's Encrypt's published limits:
// - new orders: 300 per ACME account per 3 hours (the account's bucket, before newOrder);
// - duplicate certificates: 5 per exact set of identifiers per week (the tenant's bucket for
//   the set, whichever account orders, taken with the new-order token before newOrder and given
//   back when the order ends without a certificate);
// - new accounts: 10 per client address per 3 hours (the fleet's bucket at the CA, shared by
//   every tenant since replicas usually leave through the same addresses; before each newAccount
//   that may make an account, given back when the CA made none).
// A request that finds a bucket empty is held until its next token (RESOURCE_EXHAUSTED with the
// time, or an order step that waits), never sent.
//
// Plain values and free functions; the store is borrowed per call.
#ifndef ACMEVAULT_SERVICE_CA_LIMITS_H_
#define ACMEVAULT_SERVICE_CA_LIMITS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "acme/client.h"
#include "storage/store.h"
#include "storage/types.h"

namespace acmevault::service {

// At most `capacity` requests per `period`, refilled evenly; a capacity of 0 turns it off.
struct BudgetLimit {
  int capacity = 0;
  absl::Duration period;
};

// One CA's limits.
struct CaLimits {
  BudgetLimit new_orders{300, absl::Hours(3)};
  BudgetLimit duplicate_certificates{5, absl::Hours(24 * 7)};
  BudgetLimit new_accounts{10, absl::Hours(3)};
};

// Every CA's: `defaults` for a CA whose directory URL is not in `by_directory`.
struct CaLimitsByDirectory {
  CaLimits defaults;
  std::map<std::string, CaLimits> by_directory;

  const CaLimits& For(absl::string_view directory_url) const;
  // INVALID_ARGUMENT naming a limit with a negative capacity, or one that is on with a period
  // that is not positive.
  absl::Status Validate() const;
};

// The store's buckets for `limits` (unset when that limit is off).
std::optional<storage::CaBudget> NewOrderBucket(const CaLimits& limits);
std::optional<storage::CaBudget> DuplicateCertificateBucket(
    const CaLimits& limits, const std::vector<std::string>& identifiers);
std::optional<storage::CaBudget> NewAccountBucket(const CaLimits& limits);
// A newOrder's buckets for `identifiers`, those of its limits that are on: the account's new
// orders, then the identifier set's duplicate certificates.
std::vector<storage::CaBudget> NewOrderBudgets(const CaLimits& limits,
                                               const std::vector<std::string>& identifiers);

// Before a newAccount at `directory_url` that may make an account: takes a token from the
// fleet's new-account bucket there. true when one was taken (settle it with
// SettleNewAccountToken), false when the limit is off; RESOURCE_EXHAUSTED (HeldUntil, with the
// next token's time) when the bucket is empty; the store's error otherwise.
absl::StatusOr<bool> TakeNewAccountToken(storage::CaLimitStore& store,
                                         const CaLimitsByDirectory& limits,
                                         absl::string_view directory_url, absl::Time now);
// After that newAccount: gives the token back when the CA made no account: it answered with a
// problem document, or with an account it already had (RFC 8555 §7.3.1: 200, not 201). A
// request with no answer keeps its token spent (the CA may have made the account). Logs a
// store failure; never fails.
void SettleNewAccountToken(storage::CaLimitStore& store, const CaLimitsByDirectory& limits,
                           absl::string_view directory_url,
                           const absl::StatusOr<acme::Account>& answer);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_CA_LIMITS_H_
