#include "service/engine_config.h"

#include "service/order_runner.h"

namespace acmevault::service {

namespace {

// A limit as configured: unset (0) keeps the default, negative turns it off.
void LimitFrom(int32_t capacity, int32_t period_seconds, BudgetLimit& limit) {
  if (capacity > 0) limit.capacity = capacity;
  if (capacity < 0) limit.capacity = 0;  // off
  if (period_seconds > 0) limit.period = absl::Seconds(period_seconds);
}

CaLimits LimitsFrom(const v1::ServerConfig::CaLimits& c) {
  CaLimits limits;
  LimitFrom(c.new_orders(), c.new_orders_period_seconds(), limits.new_orders);
  LimitFrom(c.duplicate_certificates(), c.duplicate_certificates_period_seconds(),
            limits.duplicate_certificates);
  LimitFrom(c.new_accounts(), c.new_accounts_period_seconds(), limits.new_accounts);
  return limits;
}

}  // namespace

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
  if (c.keep_within_ms() > 0) e.keep_within = absl::Milliseconds(c.keep_within_ms());
  if (c.keep_within_ms() < 0) e.keep_within = absl::ZeroDuration();
  if (c.keep_for_ms() > 0) e.keep_for = absl::Milliseconds(c.keep_for_ms());
  if (c.has_claim_on_create()) e.claim_on_create = c.claim_on_create();
  if (c.claim_on_create_queue() > 0) e.claim_on_create_queue = c.claim_on_create_queue();
  const OrderRunner::Options runner;
  out.order_poll_first_delay = c.order_poll_first_delay_ms() > 0
                                   ? absl::Milliseconds(c.order_poll_first_delay_ms())
                                   : runner.poll_first_delay;
  out.order_poll_max_delay = c.order_poll_max_delay_ms() > 0
                                 ? absl::Milliseconds(c.order_poll_max_delay_ms())
                                 : runner.poll_max_delay;
  out.order_processing_timeout = c.order_processing_timeout_seconds() > 0
                                     ? absl::Seconds(c.order_processing_timeout_seconds())
                                     : runner.processing_timeout;
  out.order_stalled_look_interval = c.order_stalled_look_interval_seconds() > 0
                                        ? absl::Seconds(c.order_stalled_look_interval_seconds())
                                        : runner.stalled_look_interval;
  out.ca_limits.defaults = LimitsFrom(config.ca_limits());
  for (const v1::ServerConfig::CaLimits& limits : config.ca_limits_by_directory()) {
    out.ca_limits.by_directory[limits.directory_url()] = LimitsFrom(limits);
  }
  return out;
}

}  // namespace acmevault::service
