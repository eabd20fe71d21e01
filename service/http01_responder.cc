#include "service/http01_responder.h"

#include <civetweb.h>

#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/required.h"

namespace acmevault::service {
namespace {

constexpr absl::string_view kPrefix = "/.well-known/acme-challenge/";
constexpr size_t kMaxToken = 256;

bool IsToken(absl::string_view t) {
  if (t.empty() || t.size() > kMaxToken) return false;
  for (char c : t) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

int Reply(mg_connection* conn, Metrics* metrics, int status, absl::string_view body) {
  if (metrics != nullptr) metrics->RecordHttp01(status);
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, mg_get_response_code_text(conn, status), body.size());
  mg_write(conn, body.data(), body.size());
  return status;
}

void InitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Http01Responder>> Http01Responder::Start(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("Http01Responder", {{"challenges", options.challenges}}));
  InitOnce();
  auto responder = std::unique_ptr<Http01Responder>(new Http01Responder(std::move(options)));
  const Options& o = responder->options_;
  const std::string threads = absl::StrCat(o.threads);
  const std::string request_timeout = absl::StrCat(absl::ToInt64Milliseconds(o.request_timeout));
  const std::string keep_alive_timeout =
      absl::StrCat(absl::ToInt64Milliseconds(o.keep_alive_timeout));
  const std::string connection_queue = absl::StrCat(o.connection_queue);
  const char* mg_options[] = {"listening_ports", o.listen_address.c_str(),
                              "num_threads", threads.c_str(),
                              "request_timeout_ms", request_timeout.c_str(),
                              "keep_alive_timeout_ms", keep_alive_timeout.c_str(),
                              "connection_queue", connection_queue.c_str(),
                              "enable_directory_listing", "no",
                              nullptr};
  mg_callbacks callbacks{};
  responder->ctx_ = mg_start(&callbacks, nullptr, mg_options);
  if (responder->ctx_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("HTTP-01 responder cannot listen on ",
                                               responder->options_.listen_address));
  }
  mg_server_port ports[4];
  int n = mg_get_server_ports(responder->ctx_, 4, ports);
  if (n < 1) return absl::InternalError("HTTP-01 responder has no port");
  responder->port_ = ports[0].port;
  mg_set_request_handler(responder->ctx_, "/", &Http01Responder::Handle, responder.get());
  return responder;
}

Http01Responder::~Http01Responder() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

int64_t Http01Responder::answered() const { return answered_.load(); }

int Http01Responder::Handle(mg_connection* conn, void* self_ptr) {
  auto* self = static_cast<Http01Responder*>(self_ptr);
  auto reply = [&](int status, absl::string_view body) {
    return Reply(conn, self->options_.metrics, status, body);
  };
  const mg_request_info* info = mg_get_request_info(conn);
  absl::string_view method = info->request_method ? info->request_method : "";
  absl::string_view uri = info->local_uri ? info->local_uri : "";
  if (method != "GET" && method != "HEAD") return reply(405, "method not allowed\n");
  if (!absl::StartsWith(uri, kPrefix)) return reply(404, "not found\n");
  absl::string_view token = uri.substr(kPrefix.size());
  if (!IsToken(token)) return reply(404, "not found\n");
  absl::StatusOr<std::string> answer = absl::NotFoundError("");
  std::optional<std::string> published;
  if (self->options_.published != nullptr) published = self->options_.published->Find(token);
  if (published.has_value()) {
    answer = *std::move(published);
  } else {
    answer = self->options_.challenges->LookupChallenge(token);
  }
  if (absl::IsNotFound(answer.status())) return reply(404, "not found\n");
  if (!answer.ok()) return reply(503, "try again\n");
  self->answered_.fetch_add(1);
  return reply(200, method == "HEAD" ? "" : *answer);
}

}  // namespace acmevault::service
