// HealthReporter: keeps the gRPC health service (grpc.health.v1) true to what the replica can
// do. Every `interval` it asks the database (StoreHealth::CheckHealth: reachable, schema one
// this binary can use) and reports, through `set_status`:
//   ""  and every name in `api_services`: SERVING while the database check passes, NOT_SERVING
//       otherwise (a load balancer or Kubernetes probe then sends no calls here);
//   kSchedulerService: SERVING while the database check passes and `scheduler_running` says
//       the background machinery (the work engine and the policy scheduler) runs.
// A failed check is logged once when the state changes, not at every interval.
//
// Thread-safe. Borrowed collaborators must outlive the reporter.
#ifndef ACMEVAULT_SERVICE_HEALTH_H_
#define ACMEVAULT_SERVICE_HEALTH_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "storage/store.h"

namespace acmevault::service {

// The health service name that reports the background work (engine and policy scheduler).
inline constexpr char kSchedulerService[] = "acmevault.scheduler";

class HealthReporter {
 public:
  struct Options {
    // Borrowed; required.
    storage::StoreHealth* store = nullptr;
    // Sets one service's status in every health service this replica serves; required.
    std::function<void(const std::string& service, bool serving)> set_status;
    // The API services to report with the overall status ("" is always reported).
    std::vector<std::string> api_services;
    // Whether the background machinery runs; unset: kSchedulerService is not reported.
    std::function<bool()> scheduler_running;
    // Time between checks. Each check is one short database round trip.
    absl::Duration interval = absl::Seconds(5);
  };

  // What the last check found.
  struct State {
    absl::Status database;  // OK, or why the database cannot serve
    bool scheduler = false;
  };

  // INVALID_ARGUMENT for a missing store or set_status, or a non-positive interval.
  static absl::StatusOr<std::unique_ptr<HealthReporter>> Create(Options options);
  // Stop().
  ~HealthReporter();

  HealthReporter(const HealthReporter&) = delete;
  HealthReporter& operator=(const HealthReporter&) = delete;

  // One check now, on the caller's thread; reports and returns what it found.
  State CheckOnce();
  // Checks at once, then every interval on a thread of its own. FAILED_PRECONDITION when
  // started before.
  absl::Status Start();
  // Ends the thread; the last reported statuses stay. Idempotent.
  void Stop();

 private:
  explicit HealthReporter(Options options) : options_(std::move(options)) {}

  const Options options_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<State> last_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_HEALTH_H_
