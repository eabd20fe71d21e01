#include "tests/testing/fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "crypto/digest.h"
#include "crypto/jws.h"

namespace acmevault::testing {
namespace {

constexpr size_t kMaxHeaderBytes = 64 << 10;
constexpr size_t kMaxBodyBytes = 8 << 20;

// Hop-by-hop headers (RFC 9110 §7.6.1) and the framing the proxy redoes itself.
bool HopByHop(absl::string_view name) {
  for (const char* h : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length", "expect"}) {
    if (absl::EqualsIgnoreCase(name, h)) return true;
  }
  return false;
}

bool PatternMatches(const std::string& pattern, absl::string_view value) {
  if (pattern.empty()) return true;
  if (absl::EndsWith(pattern, "*")) {
    return absl::StartsWith(value, absl::string_view(pattern).substr(0, pattern.size() - 1));
  }
  return value == pattern;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

// The status line and headers of `response`, Content-Length set to `content_length`.
std::string Head(const acme::HttpResponse& response, size_t content_length) {
  std::string out =
      absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status), "\r\n");
  for (const auto& [name, value] : response.headers) {
    if (!HopByHop(name)) absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  absl::StrAppend(&out, "Content-Length: ", content_length, "\r\nConnection: keep-alive\r\n\r\n");
  return out;
}

const char* ActionName(FaultAction action) {
  switch (action) {
    case FaultAction::kForward:
      return "forward";
    case FaultAction::kRespond:
      return "respond";
    case FaultAction::kDropResponse:
      return "drop_response";
    case FaultAction::kDelayResponse:
      return "delay_response";
    case FaultAction::kCutResponse:
      return "cut_response";
    case FaultAction::kHold:
      return "hold";
  }
  return "?";
}

}  // namespace

struct FaultProxy::Request {
  std::string method, target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = true;
  // From a POST body that is a JWS; empty otherwise.
  std::string jws_url, jws_payload;
};

// One accepted connection: TLS for the proxy, plain for the control endpoint.
struct FaultProxy::Stream {
  std::unique_ptr<crypto::testing::TlsConnection> tls;
  int fd = -1;
  std::string buffer;  // Read but not yet consumed.

  ~Stream() { Close(/*graceful=*/false); }
  absl::StatusOr<size_t> ReadMore() {
    char chunk[16 << 10];
    size_t n = 0;
    if (tls) {
      auto r = tls->Read(chunk, sizeof(chunk));
      if (!r.ok()) return r.status();
      n = *r;
    } else {
      ssize_t r = read(fd, chunk, sizeof(chunk));
      if (r < 0) return absl::UnavailableError(absl::StrCat("read: errno ", errno));
      n = static_cast<size_t>(r);
    }
    buffer.append(chunk, n);
    return n;
  }
  absl::Status Write(absl::string_view data) {
    if (tls) return tls->Write(data);
    while (!data.empty()) {
      ssize_t w = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (w <= 0) return absl::UnavailableError(absl::StrCat("write: errno ", errno));
      data.remove_prefix(static_cast<size_t>(w));
    }
    return absl::OkStatus();
  }
  void Close(bool graceful) {
    if (tls) tls->Close(graceful);
    if (fd >= 0) close(fd);
    fd = -1;
  }

  // The next request; nullopt when the peer closed the connection between requests.
  absl::StatusOr<std::optional<Request>> ReadRequest() {
    size_t end;
    while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (buffer.size() > kMaxHeaderBytes) return absl::InvalidArgumentError("headers too large");
      auto n = ReadMore();
      if (!n.ok()) return n.status();
      if (*n == 0) {
        if (buffer.empty()) return std::nullopt;
        return absl::InvalidArgumentError("connection closed inside a request");
      }
    }
    Request r;
    std::vector<absl::string_view> lines =
        absl::StrSplit(absl::string_view(buffer).substr(0, end), "\r\n");
    std::vector<absl::string_view> first = absl::StrSplit(lines[0], ' ');
    if (first.size() != 3 || !absl::StartsWith(first[2], "HTTP/1.")) {
      return absl::InvalidArgumentError("not an HTTP/1.x request line");
    }
    r.method = std::string(first[0]);
    r.target = std::string(first[1]);
    r.keep_alive = first[2] == "HTTP/1.1";
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t colon = lines[i].find(':');
      if (colon == absl::string_view::npos) return absl::InvalidArgumentError("bad header line");
      std::string name(absl::StripAsciiWhitespace(lines[i].substr(0, colon)));
      std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      if (absl::EqualsIgnoreCase(name, "content-length") &&
          (!absl::SimpleAtoi(value, &length) || length > kMaxBodyBytes)) {
        return absl::InvalidArgumentError("bad Content-Length");
      }
      if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
        // ACME clients send Content-Length; chunked request bodies are not needed here.
        return absl::UnimplementedError("chunked request bodies are not supported");
      }
      if (absl::EqualsIgnoreCase(name, "connection")) {
        r.keep_alive = !absl::EqualsIgnoreCase(value, "close");
      }
      r.headers.emplace_back(std::move(name), std::move(value));
    }
    buffer.erase(0, end + 4);
    while (buffer.size() < length) {
      auto n = ReadMore();
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::InvalidArgumentError("connection closed inside a body");
    }
    r.body = buffer.substr(0, length);
    buffer.erase(0, length);
    if (r.method == "POST") {
      auto jws = crypto::ParseJws(r.body);
      if (jws.ok()) {
        auto url = jws->header.find("url");
        if (url != jws->header.end() && url->is_string()) r.jws_url = url->get<std::string>();
        r.jws_payload = jws->payload;
      }
    }
    return r;
  }
};

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Create(Options options) {
  absl::string_view rest = options.upstream_origin;
  if (!absl::ConsumePrefix(&rest, "https://") || rest.empty() ||
      rest.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "upstream_origin: must be https://HOST:PORT with nothing after it");
  }
  if (options.upstream_ca_file.empty()) {
    return absl::InvalidArgumentError("upstream_ca_file: is required");
  }
  std::unique_ptr<FaultProxy> proxy(new FaultProxy(std::move(options)));
  const Options& o = proxy->options_;
  std::string cert = o.cert_pem, key = o.key_pem;
  if (cert.empty()) {
    auto pki = crypto::testing::MakeLoopbackPki();
    if (!pki.ok()) return pki.status();
    proxy->ca_pem_ = pki->ca_pem;
    cert = pki->cert_pem;
    key = pki->key_pem;
  }
  auto tls = crypto::testing::TlsServerContext::Create(cert, key);
  if (!tls.ok()) return tls.status();
  proxy->tls_ = *std::move(tls);
  auto upstream = acme::CurlTransport::Create({.ca_file = o.upstream_ca_file,
                                               .timeout = o.upstream_timeout,
                                               .max_response_bytes = size_t{64} << 20});
  if (!upstream.ok()) return upstream.status();
  proxy->upstream_ = *std::move(upstream);
  if (absl::Status s = proxy->Listen(&proxy->listen_fd_, &proxy->port_, 0); !s.ok()) return s;
  proxy->origin_ = absl::StrCat("https://127.0.0.1:", proxy->port_);
  if (o.control_port >= 0) {
    absl::Status s = proxy->Listen(&proxy->control_fd_, &proxy->control_port_, o.control_port);
    if (!s.ok()) return s;
  }
  FaultProxy* self = proxy.get();
  self->acceptors_.emplace_back([self] { self->AcceptLoop(self->listen_fd_, false); });
  if (self->control_fd_ >= 0) {
    self->acceptors_.emplace_back([self] { self->AcceptLoop(self->control_fd_, true); });
  }
  return proxy;
}

absl::Status FaultProxy::Listen(int* fd, int* port, int wanted_port) {
  *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (*fd < 0) return absl::UnavailableError(absl::StrCat("socket: errno ", errno));
  int one = 1;
  setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(wanted_port));
  socklen_t size = sizeof(address);
  if (bind(*fd, reinterpret_cast<sockaddr*>(&address), size) != 0 || listen(*fd, 64) != 0 ||
      getsockname(*fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    return absl::UnavailableError(
        absl::StrCat("listen on 127.0.0.1:", wanted_port, ": errno ", errno));
  }
  *port = ntohs(address.sin_port);
  return absl::OkStatus();
}

FaultProxy::~FaultProxy() {
  stopping_.Notify();
  // shutdown() wakes a thread blocked in accept() on Linux.
  for (int fd : {listen_fd_, control_fd_}) {
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : acceptors_) t.join();
  for (int fd : {listen_fd_, control_fd_}) {
    if (fd >= 0) close(fd);
  }
  std::map<int, std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, fd] : open_) shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& [id, t] : threads) t.join();
}

void FaultProxy::AcceptLoop(int listen_fd, bool control) {
  while (!stopping_.HasBeenNotified()) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stopping_.HasBeenNotified()) return;
      absl::SleepFor(absl::Milliseconds(10));  // Out of descriptors, say: try again.
      continue;
    }
    std::vector<std::thread> done;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_.HasBeenNotified()) {
        close(fd);
        return;
      }
      for (int id : finished_) {
        done.push_back(std::move(threads_[id]));
        threads_.erase(id);
      }
      finished_.clear();
      const int id = next_connection_++;
      open_[id] = fd;
      threads_[id] = std::thread([this, id, fd, control] { Serve(id, fd, control); });
    }
    for (auto& t : done) t.join();
  }
}

void FaultProxy::Serve(int id, int fd, bool control) {
  Stream stream;
  if (control) {
    stream.fd = fd;
  } else {
    auto tls = tls_->Accept(fd);
    if (tls.ok()) stream.tls = *std::move(tls);
  }
  if (stream.tls != nullptr || stream.fd >= 0) {
    while (!stopping_.HasBeenNotified()) {
      auto request = stream.ReadRequest();
      if (!request.ok()) {
        // A request it cannot read gets a plain answer, then the connection ends.
        acme::HttpResponse bad{absl::IsUnimplemented(request.status()) ? 501 : 400, {}, ""};
        bad.body = std::string(request.status().message());
        stream.Write(Head(bad, bad.body.size()) + bad.body).IgnoreError();
        break;
      }
      if (!request->has_value()) break;
      const Request& r = **request;
      const bool keep = control ? HandleControl(stream, r) : HandleProxied(stream, r);
      if (!keep || !r.keep_alive) break;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    open_.erase(id);  // Before the socket closes: the destructor must not shut down a reused fd.
  }
  stream.Close(/*graceful=*/true);
  absl::MutexLock lock(&mu_);
  finished_.push_back(id);
}

absl::StatusOr<acme::HttpResponse> FaultProxy::Forward(const Request& request) {
  acme::HttpRequest out{
      request.method, options_.upstream_origin + request.target, {}, request.body};
  for (const auto& [name, value] : request.headers) {
    // Host goes through as sent: Pebble checks each JWS "url" against it (see the header).
    if (!HopByHop(name)) out.headers.emplace_back(name, value);
  }
  auto response = upstream_->Send(out);
  if (!response.ok()) return response.status();
  auto rewrite = [&](std::string& text) {
    text = absl::StrReplaceAll(text, {{options_.upstream_origin, origin_}});
  };
  rewrite(response->body);
  for (auto& [name, value] : response->headers) {
    if (name == "location" || name == "link") rewrite(value);
  }
  return response;
}

int FaultProxy::Match(const Request& request, FaultRule* rule) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < rules_.size(); ++i) {
    RuleState& state = rules_[i];
    const FaultRule& r = state.rule;
    if (!state.active || (r.times > 0 && state.hits >= r.times)) continue;
    if (!PatternMatches(r.method, request.method) || !PatternMatches(r.path, request.target)) {
      continue;
    }
    if (!r.jws_url.empty() &&
        (request.jws_url.empty() || !PatternMatches(r.jws_url, request.jws_url))) {
      continue;
    }
    if (!r.payload_contains.empty() &&
        !absl::StrContains(request.jws_payload, r.payload_contains)) {
      continue;
    }
    ++state.hits;
    *rule = r;
    return static_cast<int>(i) + 1;
  }
  return -1;
}

bool FaultProxy::HandleProxied(Stream& stream, const Request& request) {
  FaultRule rule;
  const int id = Match(request, &rule);
  {
    absl::MutexLock lock(&mu_);
    log_.push_back(absl::StrCat(
        request.method, " ", request.target, request.jws_url.empty() ? "" : " jws_url=",
        request.jws_url, id < 0 ? "" : absl::StrCat(" rule=", id, " ", ActionName(rule.action))));
  }
  if (id < 0) rule.action = FaultAction::kForward;
  const bool head = request.method == "HEAD";

  if (rule.action == FaultAction::kRespond) {
    acme::HttpResponse answer{rule.status, rule.headers, rule.body};
    return stream.Write(Head(answer, answer.body.size()) + (head ? "" : answer.body)).ok();
  }
  if (rule.action == FaultAction::kHold) {
    acme::HttpRequest kept{
        request.method, options_.upstream_origin + request.target, {}, request.body};
    for (const auto& [name, value] : request.headers) {
      if (!HopByHop(name)) kept.headers.emplace_back(name, value);
    }
    {
      absl::MutexLock lock(&mu_);
      held_.push_back(std::move(kept));
    }
    stream.Close(/*graceful=*/false);
    return false;
  }

  auto response = Forward(request);
  if (!response.ok()) {
    acme::HttpResponse bad{502,
                           {{"content-type", "text/plain"}},
                           absl::StrCat("fault proxy: upstream: ", response.status().message())};
    return stream.Write(Head(bad, bad.body.size()) + bad.body).ok();
  }
  // A HEAD answer has no body; its Content-Length is the upstream's.
  size_t length = response->body.size();
  if (head) {
    if (!absl::SimpleAtoi(response->Header("content-length"), &length)) length = 0;
  }
  const std::string head_bytes = Head(*response, length);
  const std::string body = head ? "" : response->body;
  switch (rule.action) {
    case FaultAction::kDropResponse:
      stream.Close(/*graceful=*/false);
      return false;
    case FaultAction::kCutResponse:
      stream.Write(head_bytes + body.substr(0, body.size() / 2)).IgnoreError();
      stream.Close(/*graceful=*/false);
      return false;
    case FaultAction::kDelayResponse:
      stopping_.WaitForNotificationWithTimeout(rule.delay);
      break;
    default:
      break;
  }
  return stream.Write(head_bytes + body).ok();
}

std::vector<absl::StatusOr<int>> FaultProxy::ReleaseHeld() {
  std::vector<acme::HttpRequest> held;
  {
    absl::MutexLock lock(&mu_);
    held.swap(held_);
  }
  std::vector<absl::StatusOr<int>> statuses;
  for (const auto& request : held) {
    auto response = upstream_->Send(request);
    if (response.ok()) {
      statuses.push_back(response->status);
    } else {
      statuses.push_back(response.status());
    }
  }
  return statuses;
}

int FaultProxy::AddRule(FaultRule rule) {
  absl::MutexLock lock(&mu_);
  rules_.push_back({std::move(rule)});
  return static_cast<int>(rules_.size());
}

int FaultProxy::Hits(int id) {
  absl::MutexLock lock(&mu_);
  if (id < 1 || id > static_cast<int>(rules_.size())) return 0;
  return rules_[id - 1].hits;
}

void FaultProxy::DisableRule(int id) {
  absl::MutexLock lock(&mu_);
  if (id >= 1 && id <= static_cast<int>(rules_.size())) rules_[id - 1].active = false;
}

void FaultProxy::ClearRules() {
  absl::MutexLock lock(&mu_);
  for (auto& r : rules_) r.active = false;
}

std::vector<std::string> FaultProxy::Log() {
  absl::MutexLock lock(&mu_);
  return log_;
}

absl::StatusOr<FaultRule> FaultProxy::RuleFromJson(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("a rule is a JSON object");
  FaultRule rule;
  const std::pair<const char*, std::string*> strings[] = {
      {"method", &rule.method},
      {"path", &rule.path},
      {"jws_url", &rule.jws_url},
      {"payload_contains", &rule.payload_contains},
      {"body", &rule.body}};
  const std::pair<const char*, FaultAction> actions[] = {
      {"forward", FaultAction::kForward},
      {"respond", FaultAction::kRespond},
      {"drop_response", FaultAction::kDropResponse},
      {"delay_response", FaultAction::kDelayResponse},
      {"cut_response", FaultAction::kCutResponse},
      {"hold", FaultAction::kHold}};
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& value = it.value();
    auto wrong = [&](const char* want) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": must be ", want));
    };
    bool known = false;
    for (const auto& [name, field] : strings) {
      if (key != name) continue;
      if (!value.is_string()) return wrong("a string");
      *field = value.get<std::string>();
      known = true;
    }
    if (known) continue;
    if (key == "action") {
      if (!value.is_string()) return wrong("a string");
      known = false;
      for (const auto& [name, action] : actions) {
        if (value == name) {
          rule.action = action;
          known = true;
        }
      }
      if (!known)
        return wrong("one of forward, respond, drop_response, delay_response, cut_response, hold");
    } else if (key == "status" || key == "times" || key == "delay_ms") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0) {
        return wrong("a non-negative integer");
      }
      const int64_t n = value.get<int64_t>();
      if (key == "status") rule.status = static_cast<int>(n);
      if (key == "times") rule.times = static_cast<int>(n);
      if (key == "delay_ms") rule.delay = absl::Milliseconds(n);
    } else if (key == "headers") {
      if (!value.is_object()) return wrong("an object of strings");
      for (auto h = value.begin(); h != value.end(); ++h) {
        if (!h.value().is_string()) return wrong("an object of strings");
        rule.headers.emplace_back(h.key(), h.value().get<std::string>());
      }
    } else if (key == "body_base64url") {
      if (!value.is_string() || !crypto::Base64UrlDecode(value.get<std::string>(), &rule.body)) {
        return wrong("base64url");
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(key, ": unknown field"));
    }
  }
  return rule;
}

bool FaultProxy::HandleControl(Stream& stream, const Request& request) {
  acme::HttpResponse answer{200, {{"content-type", "application/json"}}, ""};
  nlohmann::json out = nlohmann::json::object();
  if (request.target == "/rules" && request.method == "GET") {
    out = nlohmann::json::array();
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < rules_.size(); ++i) {
      out.push_back({{"id", i + 1}, {"hits", rules_[i].hits}, {"active", rules_[i].active}});
    }
  } else if (request.target == "/rules" && request.method == "POST") {
    auto rule = RuleFromJson(nlohmann::json::parse(request.body, nullptr, false));
    if (rule.ok()) {
      out["id"] = AddRule(*std::move(rule));
    } else {
      answer.status = 400;
      out["error"] = std::string(rule.status().message());
    }
  } else if (request.target == "/clear" && request.method == "POST") {
    ClearRules();
  } else if (request.target == "/release" && request.method == "POST") {
    out["statuses"] = nlohmann::json::array();
    for (const auto& s : ReleaseHeld()) out["statuses"].push_back(s.ok() ? *s : -1);
  } else {
    answer.status = 404;
    out["error"] = "no such control request";
  }
  answer.body = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return stream.Write(Head(answer, answer.body.size()) + answer.body).ok();
}

}  // namespace acmevault::testing
