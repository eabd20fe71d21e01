#include "service/health.h"

#include <utility>

#include "service/log.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<HealthReporter>> HealthReporter::Create(Options options) {
  if (options.store == nullptr || !options.set_status) {
    return absl::InvalidArgumentError("HealthReporter: store and set_status are required");
  }
  if (options.interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("HealthReporter: interval must be positive");
  }
  return std::unique_ptr<HealthReporter>(new HealthReporter(std::move(options)));
}

HealthReporter::~HealthReporter() { Stop(); }

HealthReporter::State HealthReporter::CheckOnce() {
  State state;
  state.database = options_.store->CheckHealth();
  const bool serving = state.database.ok();
  state.scheduler = serving && options_.scheduler_running && options_.scheduler_running();
  options_.set_status("", serving);
  for (const auto& service : options_.api_services) options_.set_status(service, serving);
  if (options_.scheduler_running) options_.set_status(kSchedulerService, state.scheduler);
  absl::MutexLock lock(&mu_);
  const bool changed = !last_ || last_->database.code() != state.database.code() ||
                       last_->scheduler != state.scheduler;
  if (changed) {
    Log(serving ? LogLevel::kInfo : LogLevel::kError, "health changed",
        {{"serving", serving ? "true" : "false"},
         {"scheduler", state.scheduler ? "true" : "false"},
         {"database", state.database.ToString()}});
  }
  last_ = state;
  return state;
}

absl::Status HealthReporter::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("HealthReporter: started before");
  started_ = true;
  thread_ = std::thread([this] {
    do {
      CheckOnce();
    } while (!stop_.WaitForNotificationWithTimeout(options_.interval));
  });
  return absl::OkStatus();
}

void HealthReporter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_) return;
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

}  // namespace acmevault::service
