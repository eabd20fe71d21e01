#include "service/testing/issuing.h"

#include <cstdlib>
#include <iostream>

namespace acmevault::service::testing {

ClockTicker::ClockTicker(acmevault::testing::FakeClock& clock, absl::Duration step,
                         absl::Duration every)
    : thread_([this, &clock, step, every] {
        while (!stop_.WaitForNotificationWithTimeout(every)) clock.Advance(step);
      }) {}

ClockTicker::~ClockTicker() {
  stop_.Notify();
  thread_.join();
}

namespace {

template <typename T>
std::unique_ptr<T> OrDie(absl::StatusOr<std::unique_ptr<T>> made, const char* what) {
  if (!made.ok()) {
    std::cerr << what << ": " << made.status() << "\n";
    std::abort();
  }
  return *std::move(made);
}

}  // namespace

std::unique_ptr<IssuingReplica> IssuingReplica::Create(Fixture& fx, Options options) {
  std::unique_ptr<IssuingReplica> r(new IssuingReplica());
  r->notices_ = std::make_unique<JobNotices>();
  Engine::Options engine = fx.WithStore(Engine::Options{});
  engine.owner = options.replica_id;
  engine.clock = &fx.clock();
  engine.workers = options.workers;
  engine.lease_duration = options.lease;
  engine.idle_poll = absl::Milliseconds(20);
  engine.jitter_seed = 1;
  engine.on_notice = [notices = r->notices_.get()](const storage::JobNotice& n) {
    notices->Notify(n);
  };
  if (options.adjust_engine) options.adjust_engine(engine);
  r->engine_ = OrDie(Engine::Create(engine), "Engine::Create");
  OrderRunner::Options runner = fx.WithStore(OrderRunner::Options{.clients = options.clients,
                                                                  .dns01 = options.dns01,
                                                                  .clock = &fx.clock(),
                                                                  .lease_duration = options.lease});
  if (options.adjust_runner) options.adjust_runner(runner);
  r->runner_ = OrDie(OrderRunner::Create(runner), "OrderRunner::Create");
  r->certificates_ =
      OrDie(CertificateCache::Create({.clock = &fx.clock()}), "CertificateCache::Create");
  r->certificate_changes_ = OrDie(r->certificates_->Follow(fx.store()), "CertificateCache::Follow");
  Issuer::Options issuer =
      fx.WithStore(Issuer::Options{.runner = r->runner_.get(),
                                   .engine = r->engine_.get(),
                                   .notices = r->notices_.get(),
                                   .clock = &fx.clock(),
                                   .replica_id = options.replica_id,
                                   .lease_duration = options.lease,
                                   .certificate_cache = r->certificates_.get()});
  if (options.adjust_issuer) options.adjust_issuer(issuer);
  r->issuer_ = OrDie(Issuer::Create(issuer), "Issuer::Create");
  return r;
}

void IssuingReplica::Start() {
  absl::Status started = engine_->Start();
  if (!started.ok()) {
    std::cerr << "Engine::Start: " << started << "\n";
    std::abort();
  }
}

IssuingReplica::~IssuingReplica() {
  engine_->Stop();
  issuer_.reset();
}

}  // namespace acmevault::service::testing
