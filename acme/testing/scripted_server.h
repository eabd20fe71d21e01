// A scripted, in-process ACME server for unit tests: an HttpTransport whose routes answer with
// well-formed RFC 8555 resources by default, any of which a test replaces to script what Pebble
// cannot show (ARI, profiles, Retry-After, rate limits, stuck orders) or a malformed response.
// Every response carries a fresh Replay-Nonce unless the handler set one. Thread-safe.
#ifndef ACMEVAULT_ACME_TESTING_SCRIPTED_SERVER_H_
#define ACMEVAULT_ACME_TESTING_SCRIPTED_SERVER_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "acme/http.h"
#include "crypto/jws.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme::testing {

class ScriptedServer : public HttpTransport {
 public:
  // What a handler sees: the request and, for POSTs, its parsed JWS (null if unparseable).
  struct Call {
    HttpRequest request;
    std::string path;
    std::optional<crypto::ParsedJws> jws;
  };
  using Handler = std::function<HttpResponse(const Call&)>;

  static constexpr char kOrigin[] = "https://ca.test";

  ScriptedServer();

  // Replaces the handler for `method` and `path` (e.g. "POST", "/order/1").
  void On(const std::string& method, const std::string& path, Handler handler);
  // The directory served at GET /dir; edit before the client first fetches it.
  nlohmann::json& directory() { return directory_; }
  // Every call so far.
  std::vector<Call> calls();
  int CountCalls(const std::string& method, const std::string& path);

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override;

  // Response builders.
  static HttpResponse Json(int status, const nlohmann::json& body,
                           std::vector<std::pair<std::string, std::string>> headers = {});
  static HttpResponse Raw(int status, std::string content_type, std::string body,
                          std::vector<std::pair<std::string, std::string>> headers = {});
  static HttpResponse Problem(int status, const std::string& type, const std::string& detail,
                              std::vector<std::pair<std::string, std::string>> headers = {});
  // Default resources, for handlers that tweak them: an order for leaf.example.com and
  // *.leaf.example.com (the names crypto/testdata/chain.pem certifies) with one authorization,
  // for leaf.example.com. POST /new-order answers with an order for the identifiers asked for.
  static nlohmann::json Order(const std::string& status);
  static nlohmann::json Authz(const std::string& status);
  static std::string Url(const std::string& path) { return std::string(kOrigin) + path; }

 private:
  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, Handler> routes_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  int nonce_counter_ ABSL_GUARDED_BY(mu_) = 0;
  nlohmann::json directory_;
};

}  // namespace acmevault::acme::testing

#endif  // ACMEVAULT_ACME_TESTING_SCRIPTED_SERVER_H_
