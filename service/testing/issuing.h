// Test helpers for issuance on the work engine: one replica's machinery (job notices, an
// engine, an order runner, an issuer) over a Fixture's store, and a ticker that moves the
// fixture's fake clock forward in the background, so that the times steps ask to run again at
// (RetryAt, backoff) come due while a test waits in real time.
#ifndef ACMEVAULT_SERVICE_TESTING_ISSUING_H_
#define ACMEVAULT_SERVICE_TESTING_ISSUING_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/testing/fake_clock.h"
#include "service/certificate_cache.h"
#include "service/engine.h"
#include "service/issuer.h"
#include "service/job_notices.h"
#include "service/order_runner.h"
#include "service/testing/fixture.h"

namespace acmevault::service::testing {

// Moves `clock` forward by `step` every `every` of real time until destroyed.
class ClockTicker {
 public:
  ClockTicker(acmevault::testing::FakeClock& clock, absl::Duration step = absl::Milliseconds(50),
              absl::Duration every = absl::Milliseconds(2));
  ~ClockTicker();

 private:
  absl::Notification stop_;
  std::thread thread_;
};

// One replica. Create, register any further job handlers on engine(), then Start. Destroying it
// stops the engine before the issuer and runner go.
class IssuingReplica {
 public:
  struct Options {
    AcmeClients* clients = nullptr;  // Borrowed; required.
    Dns01Solver* dns01 = nullptr;
    std::string replica_id = "replica";
    int workers = 2;
    absl::Duration lease = absl::Seconds(60);
    // Applied to the issuer's options before it is created (waits, key generation, ...).
    std::function<void(Issuer::Options&)> adjust_issuer;
    // Applied to the engine's options before it is created.
    std::function<void(Engine::Options&)> adjust_engine;
    // Applied to the order runner's options before it is created (budgets, timeouts, ...).
    std::function<void(OrderRunner::Options&)> adjust_runner;
  };
  static std::unique_ptr<IssuingReplica> Create(Fixture& fx, Options options);
  ~IssuingReplica();

  void Start();
  Issuer& issuer() { return *issuer_; }
  Engine& engine() { return *engine_; }
  OrderRunner& runner() { return *runner_; }
  JobNotices& notices() { return *notices_; }

 private:
  IssuingReplica() = default;
  // GetCertificate's cache, following the fixture's store as acmevaultd's does.
  std::unique_ptr<CertificateCache> certificates_;
  std::unique_ptr<storage::JobWaker> certificate_changes_;
  std::unique_ptr<JobNotices> notices_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<OrderRunner> runner_;
  std::unique_ptr<Issuer> issuer_;
};

}  // namespace acmevault::service::testing

#endif  // ACMEVAULT_SERVICE_TESTING_ISSUING_H_
