#include "service/ca_limits.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/failure.h"
#include "service/log.h"

namespace acmevault::service {

namespace {

std::optional<storage::CaBudget> Bucket(const char* name, const BudgetLimit& limit) {
  if (limit.capacity <= 0) return std::nullopt;
  return storage::CaBudget{name, static_cast<double>(limit.capacity), limit.period};
}

absl::Status CheckLimit(absl::string_view where, absl::string_view name, const BudgetLimit& limit) {
  if (limit.capacity < 0 || (limit.capacity > 0 && limit.period <= absl::ZeroDuration())) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA limits", where, ": ", name,
                     " needs a capacity of at least 0 and, when on, a positive period"));
  }
  return absl::OkStatus();
}

absl::Status CheckLimits(absl::string_view where, const CaLimits& limits) {
  RETURN_IF_ERROR(CheckLimit(where, "new_orders", limits.new_orders));
  RETURN_IF_ERROR(CheckLimit(where, "duplicate_certificates", limits.duplicate_certificates));
  return CheckLimit(where, "new_accounts", limits.new_accounts);
}

}  // namespace

const CaLimits& CaLimitsByDirectory::For(absl::string_view directory_url) const {
  auto it = by_directory.find(std::string(directory_url));
  return it == by_directory.end() ? defaults : it->second;
}

absl::Status CaLimitsByDirectory::Validate() const {
  RETURN_IF_ERROR(CheckLimits("", defaults));
  for (const auto& [url, limits] : by_directory) {
    RETURN_IF_ERROR(CheckLimits(absl::StrCat(" of ", url), limits));
  }
  return absl::OkStatus();
}

std::optional<storage::CaBudget> NewOrderBucket(const CaLimits& limits) {
  return Bucket("new_order", limits.new_orders);
}

std::optional<storage::CaBudget> DuplicateCertificateBucket(
    const CaLimits& limits, const std::vector<std::string>& identifiers) {
  std::optional<storage::CaBudget> bucket =
      Bucket("duplicate_certificate", limits.duplicate_certificates);
  if (bucket.has_value()) bucket->identifiers = identifiers;
  return bucket;
}

std::optional<storage::CaBudget> NewAccountBucket(const CaLimits& limits) {
  return Bucket("new_account", limits.new_accounts);
}

std::vector<storage::CaBudget> NewOrderBudgets(const CaLimits& limits,
                                               const std::vector<std::string>& identifiers) {
  std::vector<storage::CaBudget> buckets;
  if (auto bucket = NewOrderBucket(limits)) buckets.push_back(*std::move(bucket));
  if (auto bucket = DuplicateCertificateBucket(limits, identifiers)) {
    buckets.push_back(*std::move(bucket));
  }
  return buckets;
}

absl::StatusOr<bool> TakeNewAccountToken(storage::CaLimitStore& store,
                                         const CaLimitsByDirectory& limits,
                                         absl::string_view directory_url, absl::Time now) {
  const CaLimits& at = limits.For(directory_url);
  std::optional<storage::CaBudget> bucket = NewAccountBucket(at);
  if (!bucket.has_value()) return false;
  ASSIGN_OR_RETURN(storage::CaBudgetTake take,
                   store.TakeCaDirectoryBudgetToken(directory_url, *bucket, now));
  if (take.taken) return true;
  return HeldUntil(
      absl::StrCat("the fleet's budget of ", at.new_accounts.capacity, " new accounts per ",
                   absl::FormatDuration(at.new_accounts.period), " at this CA is spent"),
      take.next_token_at);
}

void SettleNewAccountToken(storage::CaLimitStore& store, const CaLimitsByDirectory& limits,
                           absl::string_view directory_url,
                           const absl::StatusOr<acme::Account>& answer) {
  const bool made_none = answer.ok() ? !answer->created : !ProblemTypeOf(answer.status()).empty();
  if (!made_none) return;
  std::optional<storage::CaBudget> bucket = NewAccountBucket(limits.For(directory_url));
  if (!bucket.has_value()) return;
  absl::Status returned = store.ReturnCaDirectoryBudgetToken(directory_url, *bucket);
  if (!returned.ok()) {
    Log(LogLevel::kWarning, "could not give a new-account budget token back",
        {{"directory", std::string(directory_url)}, {"status", returned.ToString()}});
  }
}

}  // namespace acmevault::service
