#include "service/resumer.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/failure.h"
#include "service/log.h"
#include "service/required.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<OrderResumer>> OrderResumer::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("OrderResumer",
                                       {{"orders", options.orders}, {"issuer", options.issuer}}));
  return std::unique_ptr<OrderResumer>(new OrderResumer(std::move(options)));
}

OrderResumer::~OrderResumer() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void OrderResumer::Start() {
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
      auto resumed = RunOnceGuarded();
      if (!resumed.ok()) {
        Log(LogLevel::kWarning, "resuming stale orders failed",
            {{"status", SummarizeFailure(resumed.status())}});
      }
    }
  });
}

absl::StatusOr<int> OrderResumer::RunOnceGuarded() {
  try {
    return RunOnce();
  } catch (...) {
    return absl::InternalError(DescribeException(std::current_exception()));
  }
}

absl::StatusOr<int> OrderResumer::RunOnce() {
  ASSIGN_OR_RETURN(std::vector<storage::Lease> leases,
                   options_.orders->ClaimStaleOrders(options_.replica_id, options_.lease_duration,
                                                     options_.batch));
  int resumed = 0;
  for (const storage::Lease& lease : leases) {
    absl::Status s = options_.issuer->Resume(lease);
    if (s.ok()) {
      ++resumed;
    } else {
      Log(LogLevel::kWarning, "could not resume order",
          {{"tenant", absl::StrCat(lease.tenant)},
           {"order", absl::StrCat(lease.order)},
           {"status", SummarizeFailure(s)}});
    }
  }
  return resumed;
}

}  // namespace acmevault::service
