// HTTP for the ACME client: a small transport interface (so tests can script a server) and its
// libcurl implementation.
#ifndef ACMEVAULT_ACME_HTTP_H_
#define ACMEVAULT_ACME_HTTP_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace acmevault::acme {

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD or POST.
  std::string url;
  // Extra request headers, e.g. {"Content-Type", "application/jose+json"}.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  // Response headers in arrival order; names lower-cased.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The protocol the server answered in: 11 for HTTP/1.1, 20 for HTTP/2 (0 when unknown).
  int http_version = 0;

  // The first value of header `name` (case-insensitive), or "" when absent.
  std::string Header(absl::string_view name) const;
  // Every value of header `name`, in order (Link may repeat).
  std::vector<std::string> Headers(absl::string_view name) const;
};

// Sends one request and returns the whole response. Implementations are thread-safe.
// A response of any HTTP status is OK; transport failures are UNAVAILABLE (connection, TLS,
// timeout: worth retrying), or RESOURCE_EXHAUSTED when the body exceeds the configured cap.
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual absl::StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
};

struct CurlTransportOptions {
  // PEM file of the only roots to trust; empty means the system's roots. For Pebble, the CA of
  // its listener certificate (deploy/local/stack writes it).
  std::string ca_file;
  // Time allowed to connect (TCP and TLS handshake) and for the whole exchange.
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration timeout = absl::Seconds(30);
  // Responses larger than this fail with RESOURCE_EXHAUSTED. ACME bodies are small; a
  // certificate chain is a few KiB.
  size_t max_response_bytes = 1 << 20;
  // Sent as User-Agent (RFC 8555 §6.1 asks clients to send one).
  std::string user_agent = "acmevault/0.1";
  // Allow plain http:// URLs (test helpers such as pebble-challtestsrv). ACME itself is https.
  bool allow_http = false;
  // Offer HTTP/2 (by ALPN) to servers that speak it. Off: over a kept-alive connection ACME's
  // short request-response exchanges cost less CPU in HTTP/1.1, on both ends (against Pebble,
  // about a third less of the client's CPU per certificate; docs/benchmarks.md).
  bool http2 = false;
};

// libcurl-backed transport. Never follows redirects. Keeps a pool of handles so connections
// are reused across calls; thread-safe.
class CurlTransport : public HttpTransport {
 public:
  static absl::StatusOr<std::unique_ptr<CurlTransport>> Create(CurlTransportOptions options);
  ~CurlTransport() override;

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override;

 private:
  explicit CurlTransport(CurlTransportOptions options) : options_(std::move(options)) {}
  void* TakeHandle();
  void ReturnHandle(void* handle);

  const CurlTransportOptions options_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);  // CURL* handles, each with its connections.
};

}  // namespace acmevault::acme

#endif  // ACMEVAULT_ACME_HTTP_H_
