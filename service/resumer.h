// OrderResumer: the replica's background loop that finds orders whose lease expired (their
// replica died or stopped) and resumes them here, from the material stored with each order.
// Claims use FOR UPDATE SKIP LOCKED in the store, so each stale order goes to exactly one
// replica; fencing tokens keep a replica that wakes up late from committing over it.
#ifndef ACMEVAULT_SERVICE_RESUMER_H_
#define ACMEVAULT_SERVICE_RESUMER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "service/issuer.h"
#include "storage/store.h"

namespace acmevault::service {

class OrderResumer {
 public:
  struct Options {
    // Borrowed; required.
    storage::OrderStore* orders = nullptr;
    Issuer* issuer = nullptr;  // Runs what is claimed.
    std::string replica_id;
    absl::Duration interval = absl::Seconds(10);
    absl::Duration lease_duration = absl::Minutes(2);
    int batch = 10;
  };
  // INVALID_ARGUMENT naming a missing collaborator.
  static absl::StatusOr<std::unique_ptr<OrderResumer>> Create(Options options);
  // Stops the loop (if started) and joins it.
  ~OrderResumer();

  // Starts the background loop: RunOnce every `interval`.
  void Start();
  // One pass: claims up to `batch` stale orders and hands them to the issuer. How many.
  absl::StatusOr<int> RunOnce();
  // RunOnce, with an exception out of it (a store or a library throwing) returned as INTERNAL
  // with its clipped message: the loop logs it and goes on; the process never ends of it.
  absl::StatusOr<int> RunOnceGuarded();

 private:
  explicit OrderResumer(Options options) : options_(std::move(options)) {}

  const Options options_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_RESUMER_H_
