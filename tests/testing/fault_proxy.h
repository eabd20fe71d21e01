// FaultProxy: a fault-injecting HTTPS proxy for end-to-end tests, put between acmevault and the
// local stack's Pebble. TLS on both sides, loopback only: it listens on 127.0.0.1 (a port of its
// own) with a certificate it is given or makes, and forwards every request to the upstream over
// TLS, trusting only the upstream's CA file.
//
// It understands just enough HTTP/1.1 (request line, headers, Content-Length bodies, keep-alive)
// to match each request against the test's rules by method, request target and, for ACME POSTs,
// the JWS protected header's "url" (RFC 8555 §6.4, which names the resource: newOrder,
// keyChange, finalize, an account, ...) and payload. The first active rule that matches decides
// what happens to the request (FaultAction); requests no rule matches are forwarded untouched.
//
// It rewrites nothing but the upstream's origin, which becomes the proxy's in response bodies
// and Location and Link headers, so every URL the client is handed points back at the proxy
// (acme/client.h refuses URLs off the directory's origin). The client's Host header is
// forwarded as sent: Pebble builds its URLs from it and checks each JWS "url" against it, so
// with the proxy's Host it already answers with proxy URLs and accepts what clients sign.
//
// Rules come from the C++ API, or, for a client in another process, from an optional control
// endpoint (plain HTTP on 127.0.0.1; see Options::control_port for its requests).
//
// Thread-safe. Every connection has its own thread; the destructor stops the listeners, cuts
// open connections and joins every thread.
#ifndef ACMEVAULT_TESTS_TESTING_FAULT_PROXY_H_
#define ACMEVAULT_TESTS_TESTING_FAULT_PROXY_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "acme/http.h"
#include "crypto/testing/tls_server.h"
#include "nlohmann/json.hpp"

namespace acmevault::testing {

enum class FaultAction {
  // Forward and answer as the upstream did (a rule that only counts).
  kForward,
  // Answer with the rule's status, headers and body; the upstream never sees the request.
  kRespond,
  // Forward, wait for the upstream's answer, then close the client's connection without a
  // byte of it: the operation happened, the client never hears so.
  kDropResponse,
  // Forward, then hold the upstream's answer for the rule's delay before sending it.
  kDelayResponse,
  // Forward, then send the status line, headers (with the full Content-Length) and half the
  // body, and close the connection.
  kCutResponse,
  // Close the client's connection at once without forwarding, and keep the request: it reaches
  // the upstream only when the test calls ReleaseHeld(), after the client has given up (an
  // operation that a slow CA commits after its client timed out).
  kHold,
};

struct FaultRule {
  // Which requests: every non-empty field must match. A pattern ending in '*' matches by prefix,
  // any other exactly.
  std::string method;            // "GET", "HEAD", "POST".
  std::string path;              // The request target, e.g. "/dir" or "/finalize-order/*".
  std::string jws_url;           // A POST's JWS protected header "url" (a full URL).
  std::string payload_contains;  // A substring of the POST's decoded JWS payload.

  FaultAction action = FaultAction::kForward;
  // kRespond: the answer. Content-Length is added; give Content-Type in `headers`.
  int status = 503;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // kDelayResponse: how long the upstream's answer is held.
  absl::Duration delay = absl::ZeroDuration();
  // The rule applies to the first `times` requests it matches, then lets requests pass to the
  // rules after it; 0 means every one.
  int times = 0;
};

class FaultProxy {
 public:
  struct Options {
    // Where requests go: "https://127.0.0.1:14000" (scheme, host and port; no path).
    std::string upstream_origin;
    // PEM roots trusted for the upstream (Pebble's listener CA). Required.
    std::string upstream_ca_file;
    // The proxy's certificate and key (PEM text). Empty: it makes a CA and a certificate for
    // 127.0.0.1 and localhost (crypto::testing::MakeLoopbackPki); ca_pem() returns that CA.
    std::string cert_pem;
    std::string key_pem;
    // The control endpoint, plain HTTP on 127.0.0.1: -1 for none, 0 for any free port.
    //   POST   /rules    a FaultRule as JSON -> {"id": N}. Fields as in FaultRule, plus
    //                    "action" ("forward", "respond", "drop_response", "delay_response",
    //                    "cut_response", "hold"), "delay_ms", "headers" as an object and
    //                    "body_base64url" for bytes that are not UTF-8.
    //   GET    /rules    [{"id": N, "hits": H, "active": true|false}, ...]
    //   POST   /clear    deactivates every rule (their hit counts stay readable)
    //   POST   /release  sends the held requests -> {"statuses": [200, ...]} (-1: no answer)
    int control_port = -1;
    // Time allowed for each request to the upstream.
    absl::Duration upstream_timeout = absl::Seconds(60);
  };

  // Listens on 127.0.0.1 (a free port). INVALID_ARGUMENT for a bad origin or certificate;
  // UNAVAILABLE when it cannot listen.
  static absl::StatusOr<std::unique_ptr<FaultProxy>> Create(Options options);
  ~FaultProxy();

  // "https://127.0.0.1:PORT", and that with `path` appended.
  const std::string& origin() const { return origin_; }
  std::string Url(absl::string_view path) const { return origin_ + std::string(path); }
  int port() const { return port_; }
  // The control endpoint's port, or -1.
  int control_port() const { return control_port_; }
  // The CA of the proxy's certificate when the proxy made it; "" when it was given one.
  const std::string& ca_pem() const { return ca_pem_; }

  // Adds a rule after the others and returns its id.
  int AddRule(FaultRule rule);
  // How many requests rule `id` has applied to (0 for an unknown id).
  int Hits(int id);
  // Deactivates rule `id`, or every rule; their hit counts stay readable.
  void DisableRule(int id);
  void ClearRules();
  // Sends the requests that kHold rules kept, in arrival order, and forgets them. Each entry is
  // the upstream's HTTP status for that request, or the transport error. A client whose kept-alive
  // connection is closed under a request may send it again on a fresh one (libcurl does once),
  // so a rule without `times` can hold both copies.
  std::vector<absl::StatusOr<int>> ReleaseHeld();
  // One line per request so far ("POST /rollover-account-key jws_url=... rule=3 hold"), for
  // failure messages.
  std::vector<std::string> Log();

  // Parses the control endpoint's JSON form of a rule. INVALID_ARGUMENT naming the field.
  static absl::StatusOr<FaultRule> RuleFromJson(const nlohmann::json& json);

 private:
  struct Request;
  struct Stream;
  struct RuleState {
    FaultRule rule;
    int hits = 0;
    bool active = true;
  };

  explicit FaultProxy(Options options) : options_(std::move(options)) {}
  absl::Status Listen(int* fd, int* port, int wanted_port);
  void AcceptLoop(int listen_fd, bool control);
  void Serve(int id, int fd, bool control);
  // Each handles one request; false when the connection must end.
  bool HandleProxied(Stream& stream, const Request& request);
  bool HandleControl(Stream& stream, const Request& request);
  // The upstream's answer, with the upstream's origin replaced by the proxy's.
  absl::StatusOr<acme::HttpResponse> Forward(const Request& request);
  // The first active rule that matches `request`, its hit counted: its id, or -1 for none.
  int Match(const Request& request, FaultRule* rule);

  const Options options_;
  std::string origin_, ca_pem_;
  int port_ = 0, control_port_ = -1;
  int listen_fd_ = -1, control_fd_ = -1;
  std::unique_ptr<crypto::testing::TlsServerContext> tls_;
  std::unique_ptr<acme::CurlTransport> upstream_;
  absl::Notification stopping_;
  std::vector<std::thread> acceptors_;

  absl::Mutex mu_;
  std::vector<RuleState> rules_ ABSL_GUARDED_BY(mu_);
  std::vector<acme::HttpRequest> held_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
  // Open connections' sockets (to cut them on shutdown) and every connection's thread, by
  // connection id; finished_ lists threads that are done and may be joined.
  int next_connection_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, int> open_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<int> finished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::testing

#endif  // ACMEVAULT_TESTS_TESTING_FAULT_PROXY_H_
