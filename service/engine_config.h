// The work engine's and the order steps' settings from acmevaultd's configuration
// (ServerConfig.engine, ca_limits, ca_limits_by_directory): each field that is set, else the default the config proto documents
// (which is Engine::Options' and OrderRunner::Options' own).
#ifndef ACMEVAULT_SERVICE_ENGINE_CONFIG_H_
#define ACMEVAULT_SERVICE_ENGINE_CONFIG_H_

#include <map>
#include <string>

#include "absl/time/time.h"
#include "acmevault/v1/config.pb.h"
#include "service/ca_limits.h"
#include "service/engine.h"
#include "service/order_runner.h"

namespace acmevault::service {

struct EngineSettings {
  // Sizes, bounds and durations; the caller fills in jobs, owner, clock, metrics and on_notice.
  Engine::Options engine;
  absl::Duration order_poll_first_delay;
  absl::Duration order_poll_max_delay;
  // ServerConfig.engine's order_processing_timeout_seconds and
  // order_stalled_look_interval_seconds.
  absl::Duration order_processing_timeout;
  absl::Duration order_stalled_look_interval;
  // ServerConfig.ca_limits and ca_limits_by_directory (by directory URL).
  CaLimitsByDirectory ca_limits;
};

EngineSettings EngineSettingsFrom(const v1::ServerConfig& config);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_ENGINE_CONFIG_H_
