#include "service/engine_config.h"

#include "service/order_runner.h"

namespace acmevault::service {

EngineSettings EngineSettingsFrom(const v1::ServerConfig& config) {
  const v1::ServerConfig::Engine& c = config.engine();
  EngineSettings out;
  Engine::Options& e = out.engine;
  if (c.workers() > 0) e.workers = c.workers();
  if (c.claim_batch() > 0) e.claim_batch = c.claim_batch();
  if (c.prefetch() > 0) e.prefetch = c.prefetch();
  if (c.per_tenant_limit() > 0) e.per_tenant_limit = c.per_tenant_limit();
  if (c.per_ca_limit() > 0) e.per_ca_limit = c.per_ca_limit();
  if (c.idle_poll_ms() > 0) e.idle_poll = absl::Milliseconds(c.idle_poll_ms());
  if (c.lease_seconds() > 0) {
    e.lease_duration = absl::Seconds(c.lease_seconds());
  } else if (config.order_lease_seconds() > 0) {
    e.lease_duration = absl::Seconds(config.order_lease_seconds());
  }
  if (c.initial_backoff_ms() > 0) e.initial_backoff = absl::Milliseconds(c.initial_backoff_ms());
  if (c.max_backoff_ms() > 0) e.max_backoff = absl::Milliseconds(c.max_backoff_ms());
  if (c.max_attempts() > 0) e.max_attempts = c.max_attempts();
  const OrderRunner::Options runner;
  out.order_poll_first_delay = c.order_poll_first_delay_ms() > 0
                                   ? absl::Milliseconds(c.order_poll_first_delay_ms())
                                   : runner.poll_first_delay;
  out.order_poll_max_delay = c.order_poll_max_delay_ms() > 0
                                 ? absl::Milliseconds(c.order_poll_max_delay_ms())
                                 : runner.poll_max_delay;
  return out;
}

}  // namespace acmevault::service
