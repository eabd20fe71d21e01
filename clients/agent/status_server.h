// The agent's own HTTP endpoints, for kubelet probes and Prometheus: /healthz (200 while the
// agent runs), /readyz (200 while a certificate is in place and not expired, else 503) and
// /metrics (Prometheus text format).
#ifndef ACMEVAULT_CLIENTS_AGENT_STATUS_SERVER_H_
#define ACMEVAULT_CLIENTS_AGENT_STATUS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/agent/agent.h"

struct mg_context;
struct mg_connection;

namespace acmevault::agent {

// The metrics for `state` at `now`:
//   acmevault_agent_ready, acmevault_agent_certificate_expiry_timestamp_seconds,
//   acmevault_agent_renewal_timestamp_seconds, acmevault_agent_renewals_total{result=...},
//   acmevault_agent_last_success_timestamp_seconds.
std::string MetricsText(const AgentState& state);

// Thread-safe. Stops listening when destroyed.
class StatusServer {
 public:
  // Listens on `address` ("127.0.0.1:9402"; port 0 picks one) and answers from `state`, which
  // must be callable from any thread while the server lives. UNAVAILABLE when it cannot listen.
  static absl::StatusOr<std::unique_ptr<StatusServer>> Start(const std::string& address,
                                                             std::function<AgentState()> state);
  ~StatusServer();

  int port() const { return port_; }

 private:
  StatusServer() = default;
  static int Handle(mg_connection* conn, void* self);

  std::function<AgentState()> state_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace acmevault::agent

#endif  // ACMEVAULT_CLIENTS_AGENT_STATUS_SERVER_H_
