#include "clients/agent/status_server.h"

#include <civetweb.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace acmevault::agent {
namespace {

int Reply(mg_connection* conn, int status, const std::string& type, const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, mg_get_response_code_text(conn, status), type.c_str(), body.size());
  mg_write(conn, body.data(), body.size());
  return status;
}

// Whole seconds since the epoch (absl::StrCat would print a double in 6 digits); 0 for never.
int64_t Seconds(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(t); }

}  // namespace

std::string MetricsText(const AgentState& s) {
  return absl::StrCat(
      "# HELP acmevault_agent_ready 1 while a certificate is in place and not expired.\n",
      "# TYPE acmevault_agent_ready gauge\n", "acmevault_agent_ready ", s.ready ? 1 : 0, "\n",
      "# HELP acmevault_agent_certificate_expiry_timestamp_seconds notAfter of the certificate "
      "in place.\n",
      "# TYPE acmevault_agent_certificate_expiry_timestamp_seconds gauge\n",
      "acmevault_agent_certificate_expiry_timestamp_seconds ", Seconds(s.not_after), "\n",
      "# HELP acmevault_agent_renewal_timestamp_seconds When the next renewal is due.\n",
      "# TYPE acmevault_agent_renewal_timestamp_seconds gauge\n",
      "acmevault_agent_renewal_timestamp_seconds ", Seconds(s.renew_at), "\n",
      "# HELP acmevault_agent_renewals_total Renewal attempts by result.\n",
      "# TYPE acmevault_agent_renewals_total counter\n",
      "acmevault_agent_renewals_total{result=\"success\"} ", s.renewals, "\n",
      "acmevault_agent_renewals_total{result=\"failure\"} ", s.failures, "\n",
      "# HELP acmevault_agent_last_success_timestamp_seconds When a certificate was last "
      "written.\n",
      "# TYPE acmevault_agent_last_success_timestamp_seconds gauge\n",
      "acmevault_agent_last_success_timestamp_seconds ", Seconds(s.last_success), "\n");
}

absl::StatusOr<std::unique_ptr<StatusServer>> StatusServer::Start(
    const std::string& address, std::function<AgentState()> state) {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
  auto server = std::unique_ptr<StatusServer>(new StatusServer);
  server->state_ = std::move(state);
  const char* options[] = {"listening_ports", address.c_str(), "num_threads", "2", nullptr};
  mg_callbacks callbacks{};
  server->ctx_ = mg_start(&callbacks, nullptr, options);
  if (server->ctx_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  mg_server_port ports[2];
  if (mg_get_server_ports(server->ctx_, 2, ports) < 1) {
    return absl::InternalError("the status server has no port");
  }
  server->port_ = ports[0].port;
  mg_set_request_handler(server->ctx_, "/", &StatusServer::Handle, server.get());
  return server;
}

StatusServer::~StatusServer() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

int StatusServer::Handle(mg_connection* conn, void* self_ptr) {
  auto* self = static_cast<StatusServer*>(self_ptr);
  const std::string uri = mg_get_request_info(conn)->local_uri;
  if (uri == "/healthz") return Reply(conn, 200, "text/plain", "ok\n");
  if (uri == "/readyz") {
    AgentState s = self->state_();
    return s.ready ? Reply(conn, 200, "text/plain", absl::StrCat("ready ", s.serial, "\n"))
                   : Reply(conn, 503, "text/plain", "no certificate yet\n");
  }
  if (uri == "/metrics") {
    return Reply(conn, 200, "text/plain; version=0.0.4", MetricsText(self->state_()));
  }
  return Reply(conn, 404, "text/plain", "not found\n");
}

}  // namespace acmevault::agent
