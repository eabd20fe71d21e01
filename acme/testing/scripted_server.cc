#include "acme/testing/scripted_server.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace acmevault::acme::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

HttpResponse ScriptedServer::Raw(int status, std::string content_type, std::string body,
                                 std::vector<std::pair<std::string, std::string>> headers) {
  HttpResponse r;
  r.status = status;
  if (!content_type.empty()) r.headers.emplace_back("content-type", std::move(content_type));
  for (auto& [k, v] : headers) r.headers.emplace_back(absl::AsciiStrToLower(k), v);
  r.body = std::move(body);
  return r;
}

HttpResponse ScriptedServer::Json(int status, const nlohmann::json& body,
                                  std::vector<std::pair<std::string, std::string>> headers) {
  return Raw(status, "application/json", body.dump(), std::move(headers));
}

HttpResponse ScriptedServer::Problem(int status, const std::string& type,
                                     const std::string& detail,
                                     std::vector<std::pair<std::string, std::string>> headers) {
  return Raw(status, "application/problem+json",
             nlohmann::json{{"type", "urn:ietf:params:acme:error:" + type}, {"detail", detail}}
                 .dump(),
             std::move(headers));
}

nlohmann::json ScriptedServer::Order(const std::string& status) {
  nlohmann::json o = {{"status", status},
                      {"expires", "2030-01-01T00:00:00Z"},
                      {"identifiers",
                       {{{"type", "dns"}, {"value", "leaf.example.com"}},
                        {{"type", "dns"}, {"value", "*.leaf.example.com"}}}},
                      {"authorizations", {Url("/authz/1")}},
                      {"finalize", Url("/finalize/1")}};
  if (status == "valid") o["certificate"] = Url("/cert/1");
  return o;
}

nlohmann::json ScriptedServer::Authz(const std::string& status) {
  return {
      {"status", status},
      {"identifier", {{"type", "dns"}, {"value", "leaf.example.com"}}},
      {"challenges",
       {{{"type", "http-01"}, {"url", Url("/chall/1")}, {"status", "pending"}, {"token", "tok-1"}},
        {{"type", "dns-01"},
         {"url", Url("/chall/2")},
         {"status", "pending"},
         {"token", "tok-2"}}}}};
}

ScriptedServer::ScriptedServer() {
  directory_ = {{"newNonce", Url("/nonce")},
                {"newAccount", Url("/new-acct")},
                {"newOrder", Url("/new-order")},
                {"revokeCert", Url("/revoke")},
                {"keyChange", Url("/key-change")},
                {"meta", {{"termsOfService", Url("/tos")}}}};
  On("GET", "/dir", [this](const Call&) { return Json(200, directory_); });
  On("HEAD", "/nonce", [](const Call&) { return Raw(200, "", ""); });
  On("POST", "/new-acct", [](const Call&) {
    return Json(201, {{"status", "valid"}, {"contact", nlohmann::json::array()}},
                {{"Location", Url("/acct/1")}});
  });
  On("POST", "/acct/1", [](const Call&) { return Json(200, {{"status", "valid"}}); });
  On("POST", "/new-order", [](const Call& c) {
    // The order is for the identifiers asked for, as a CA's is.
    nlohmann::json order = Order("pending");
    auto payload = nlohmann::json::parse(c.jws ? c.jws->payload : "", nullptr, false);
    if (payload.is_object() && payload.contains("identifiers")) {
      order["identifiers"] = payload["identifiers"];
    }
    return Json(201, order, {{"Location", Url("/order/1")}});
  });
  On("POST", "/order/1", [](const Call&) { return Json(200, Order("valid")); });
  On("POST", "/authz/1", [](const Call&) { return Json(200, Authz("pending")); });
  On("POST", "/chall/1", [](const Call&) {
    return Json(200, {{"type", "http-01"}, {"url", Url("/chall/1")}, {"status", "processing"},
                      {"token", "tok-1"}});
  });
  On("POST", "/finalize/1", [](const Call&) { return Json(200, Order("processing")); });
  On("POST", "/cert/1", [](const Call&) {
    return Raw(200, "application/pem-certificate-chain",
               ReadFile("crypto/testdata/chain.pem"));
  });
  On("POST", "/revoke", [](const Call&) { return Raw(200, "", ""); });
  On("POST", "/key-change", [](const Call&) { return Json(200, {{"status", "valid"}}); });
}

void ScriptedServer::On(const std::string& method, const std::string& path, Handler handler) {
  absl::MutexLock lock(&mu_);
  routes_[{method, path}] = std::move(handler);
}

std::vector<ScriptedServer::Call> ScriptedServer::calls() {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int ScriptedServer::CountCalls(const std::string& method, const std::string& path) {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& c : calls_) n += c.request.method == method && c.path == path;
  return n;
}

absl::StatusOr<HttpResponse> ScriptedServer::Send(const HttpRequest& request) {
  Call call{request, "", std::nullopt};
  if (!absl::StartsWith(request.url, kOrigin)) {
    return absl::UnavailableError(absl::StrCat("scripted server: no route to ", request.url));
  }
  call.path = request.url.substr(std::string(kOrigin).size());
  if (request.method == "POST") {
    auto jws = crypto::ParseJws(request.body);
    if (jws.ok()) call.jws = *std::move(jws);
  }
  Handler handler;
  int nonce;
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    nonce = ++nonce_counter_;
    auto it = routes_.find({request.method, call.path});
    if (it != routes_.end()) handler = it->second;
  }
  HttpResponse r = handler ? handler(call) : Problem(404, "malformed", "no such resource");
  if (r.Header("Replay-Nonce").empty()) {
    r.headers.emplace_back("replay-nonce", absl::StrCat("nonce", nonce));
  }
  return r;
}

}  // namespace acmevault::acme::testing
