#include "tests/testing/fault_proxy.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "acme/http.h"
#include "crypto/digest.h"
#include "crypto/jws.h"
#include "crypto/keys.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = absl::StrCat(getenv("TEST_TMPDIR"), "/", name);
  std::ofstream(path) << text;
  return path;
}

// The upstream is a FaultProxy too, whose catch-all rule answers every request itself (so it
// never needs an upstream of its own): its hit count says what reached it. The proxy under test
// stands in front of it, and a CurlTransport that trusts only the proxy's CA is the client.
class FaultProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto origin = FaultProxy::Create(
        {.upstream_origin = "https://127.0.0.1:1", .upstream_ca_file = "/nonexistent"});
    ASSERT_TRUE(origin.ok()) << origin.status();
    origin_ = *std::move(origin);
    FaultRule directory{.method = "GET", .path = "/dir", .action = FaultAction::kRespond};
    directory.status = 200;
    directory.headers = {{"Content-Type", "application/json"},
                         {"Location", origin_->Url("/acct/1")},
                         {"Link", absl::StrCat("<", origin_->Url("/dir"), ">;rel=\"index\"")},
                         {"Replay-Nonce", "abc"}};
    directory.body = absl::StrCat(R"({"newOrder":")", origin_->Url("/new-order"), R"("})");
    origin_->AddRule(directory);
    FaultRule all{.action = FaultAction::kRespond};
    all.status = 200;
    all.headers = {{"Content-Type", "text/plain"}};
    all.body = "from the origin";
    upstream_hits_rule_ = origin_->AddRule(all);

    auto proxy =
        FaultProxy::Create({.upstream_origin = origin_->origin(),
                            .upstream_ca_file = WriteFile("origin-ca.pem", origin_->ca_pem()),
                            .control_port = 0});
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
    auto client = acme::CurlTransport::Create(
        {.ca_file = WriteFile("proxy-ca.pem", proxy_->ca_pem()), .timeout = absl::Seconds(20)});
    ASSERT_TRUE(client.ok());
    client_ = *std::move(client);
  }

  absl::StatusOr<acme::HttpResponse> Get(const std::string& path) {
    return client_->Send({"GET", proxy_->Url(path), {}, ""});
  }
  // A POST of an ACME JWS whose protected header "url" is `url`.
  absl::StatusOr<acme::HttpResponse> PostJws(const std::string& path, const std::string& url,
                                             const std::string& payload,
                                             acme::HttpTransport* client = nullptr) {
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    EXPECT_TRUE(key.ok());
    auto jws = crypto::SignJws(*key, {url, "nonce", proxy_->Url("/acct/1")}, payload);
    EXPECT_TRUE(jws.ok());
    return (client ? client : client_.get())
        ->Send({"POST", proxy_->Url(path), {{"Content-Type", "application/jose+json"}}, *jws});
  }
  int UpstreamHits() { return origin_->Hits(upstream_hits_rule_); }

  std::unique_ptr<FaultProxy> origin_, proxy_;
  std::unique_ptr<acme::CurlTransport> client_;
  int upstream_hits_rule_ = 0;
};

TEST_F(FaultProxyTest, ForwardsAndPointsEveryUpstreamUrlAtItself) {
  auto r = Get("/dir");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, absl::StrCat(R"({"newOrder":")", proxy_->Url("/new-order"), R"("})"));
  EXPECT_EQ(r->Header("Location"), proxy_->Url("/acct/1"));
  EXPECT_EQ(r->Header("Link"), absl::StrCat("<", proxy_->Url("/dir"), ">;rel=\"index\""));
  EXPECT_EQ(r->Header("Replay-Nonce"), "abc");
  EXPECT_EQ(r->Header("Content-Type"), "application/json");
  // Another request on the same kept-alive connection.
  auto again = Get("/anything");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->body, "from the origin");
  EXPECT_EQ(UpstreamHits(), 1);
}

TEST_F(FaultProxyTest, MatchesPostsByTheirJwsUrlAndPayload) {
  FaultRule key_change{.method = "POST", .jws_url = proxy_->Url("/key-change")};
  key_change.action = FaultAction::kRespond;
  key_change.status = 409;
  key_change.body = "refused";
  const int by_url = proxy_->AddRule(key_change);
  FaultRule deactivate{.jws_url = proxy_->Url("/acct/*"), .payload_contains = "deactivated"};
  deactivate.action = FaultAction::kRespond;
  deactivate.status = 403;
  const int by_payload = proxy_->AddRule(deactivate);

  auto changed = PostJws("/key-change", proxy_->Url("/key-change"), "{}");
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->status, 409);
  EXPECT_EQ(changed->body, "refused");
  auto fetched = PostJws("/acct/7", proxy_->Url("/acct/7"), "");  // POST-as-GET: not matched.
  ASSERT_TRUE(fetched.ok());
  EXPECT_EQ(fetched->status, 200);
  auto deactivated = PostJws("/acct/7", proxy_->Url("/acct/7"), R"({"status":"deactivated"})");
  ASSERT_TRUE(deactivated.ok());
  EXPECT_EQ(deactivated->status, 403);
  // A JWS whose url names another resource than the path it is posted to is matched by its url.
  auto elsewhere = PostJws("/new-order", proxy_->Url("/key-change"), "{}");
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_EQ(elsewhere->status, 409);
  EXPECT_EQ(proxy_->Hits(by_url), 2);
  EXPECT_EQ(proxy_->Hits(by_payload), 1);
  EXPECT_EQ(UpstreamHits(), 1);
  EXPECT_THAT(proxy_->Log(),
              ::testing::Contains(absl::StrCat(
                  "POST /key-change jws_url=", proxy_->Url("/key-change"), " rule=1 respond")));
}

TEST_F(FaultProxyTest, AnswersWithTheRulesBytesForAsManyRequestsAsItSays) {
  // An HTML error page in Latin-1, as a misconfigured load balancer in front of a CA sends it.
  const std::string page =
      "<html><body>Dienst vor\xFC"
      "bergehend nicht verf\xFC"
      "gbar</body></html>";
  FaultRule rule{.method = "POST", .path = "/new-order", .action = FaultAction::kRespond};
  rule.headers = {{"Content-Type", "text/html; charset=iso-8859-1"}};
  rule.body = page;
  rule.times = 1;
  const int id = proxy_->AddRule(rule);
  auto first = PostJws("/new-order", proxy_->Url("/new-order"), "{}");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->status, 503);
  EXPECT_EQ(first->body, page);
  EXPECT_EQ(first->Header("Content-Type"), "text/html; charset=iso-8859-1");
  auto second = PostJws("/new-order", proxy_->Url("/new-order"), "{}");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(proxy_->Hits(id), 1);
  EXPECT_EQ(UpstreamHits(), 1);
}

TEST_F(FaultProxyTest, DroppedAndCutResponsesReachedTheUpstream) {
  proxy_->AddRule({.path = "/drop", .action = FaultAction::kDropResponse});
  proxy_->AddRule({.path = "/cut", .action = FaultAction::kCutResponse});
  auto dropped = Get("/drop");
  EXPECT_EQ(dropped.status().code(), absl::StatusCode::kUnavailable) << dropped.status();
  auto cut = Get("/cut");
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kUnavailable) << cut.status();
  EXPECT_EQ(UpstreamHits(), 2);
  // The proxy still serves new connections.
  auto after = Get("/after");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->body, "from the origin");
}

TEST_F(FaultProxyTest, DelayedResponsesArriveWhole) {
  const int id = proxy_->AddRule(
      {.path = "/slow", .action = FaultAction::kDelayResponse, .delay = absl::Milliseconds(200)});
  auto slow = Get("/slow");
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(slow->body, "from the origin");
  EXPECT_EQ(proxy_->Hits(id), 1);
}

TEST_F(FaultProxyTest, AClientThatGivesUpBeforeTheDelayEndsGetsNothingAndTheUpstreamActed) {
  proxy_->AddRule({.path = "/slow",
                   .action = FaultAction::kDelayResponse,
                   .delay = absl::Minutes(10)});  // The destructor ends the wait.
  auto impatient = acme::CurlTransport::Create(
      {.ca_file = WriteFile("proxy-ca.pem", proxy_->ca_pem()), .timeout = absl::Milliseconds(300)});
  ASSERT_TRUE(impatient.ok());
  auto r = (*impatient)->Send({"GET", proxy_->Url("/slow"), {}, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(UpstreamHits(), 1);
}

TEST_F(FaultProxyTest, HeldRequestsReachTheUpstreamOnlyWhenReleased) {
  const int id = proxy_->AddRule(
      {.method = "POST", .jws_url = proxy_->Url("/key-change"), .action = FaultAction::kHold});
  auto r = PostJws("/key-change", proxy_->Url("/key-change"), "{}");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(proxy_->Hits(id), 1);
  EXPECT_EQ(UpstreamHits(), 0);
  auto released = proxy_->ReleaseHeld();
  ASSERT_EQ(released.size(), 1u);
  ASSERT_TRUE(released[0].ok()) << released[0].status();
  EXPECT_EQ(*released[0], 200);
  EXPECT_EQ(UpstreamHits(), 1);
  EXPECT_TRUE(proxy_->ReleaseHeld().empty());
}

TEST_F(FaultProxyTest, ClearedRulesNoLongerApplyButKeepTheirCounts) {
  const int id = proxy_->AddRule({.path = "/x", .action = FaultAction::kRespond});
  const int other = proxy_->AddRule({.path = "/y", .action = FaultAction::kRespond});
  ASSERT_EQ(Get("/x")->status, 503);
  proxy_->DisableRule(id);
  ASSERT_EQ(Get("/x")->status, 200);
  ASSERT_EQ(Get("/y")->status, 503);
  proxy_->ClearRules();
  ASSERT_EQ(Get("/y")->status, 200);
  EXPECT_EQ(proxy_->Hits(id), 1);
  EXPECT_EQ(proxy_->Hits(other), 1);
  EXPECT_EQ(proxy_->Hits(99), 0);
}

TEST_F(FaultProxyTest, TheControlEndpointSetsCountsClearsAndReleases) {
  auto http = acme::CurlTransport::Create({.allow_http = true});
  ASSERT_TRUE(http.ok());
  const std::string control = absl::StrCat("http://127.0.0.1:", proxy_->control_port());
  auto control_send = [&](const std::string& method, const std::string& path,
                          const std::string& body = "") {
    auto r = (*http)->Send({method, control + path, {{"Content-Type", "application/json"}}, body});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : acme::HttpResponse{};
  };
  // Latin-1 bytes travel as base64url: JSON strings are UTF-8.
  std::string latin1_b64;
  const std::string latin1 = "caf\xE9";
  latin1_b64 = crypto::Base64Url(latin1);
  auto added = control_send(
      "POST", "/rules",
      absl::StrCat(R"({"method":"GET","path":"/page*","action":"respond","status":502,)",
                   R"("headers":{"Content-Type":"text/html"},"body_base64url":")", latin1_b64,
                   R"(","times":2})"));
  EXPECT_EQ(added.status, 200);
  EXPECT_EQ(added.body, R"({"id":1})");
  auto page = Get("/page/1");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->status, 502);
  EXPECT_EQ(page->body, latin1);
  EXPECT_EQ(control_send("GET", "/rules").body, R"([{"active":true,"hits":1,"id":1}])");

  EXPECT_EQ(control_send("POST", "/rules", R"({"path":"/held","action":"hold"})").body,
            R"({"id":2})");
  // On a fresh connection, which libcurl does not retry a request on.
  auto fresh =
      acme::CurlTransport::Create({.ca_file = WriteFile("proxy-ca.pem", proxy_->ca_pem())});
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE((*fresh)->Send({"GET", proxy_->Url("/held"), {}, ""}).ok());
  EXPECT_EQ(control_send("POST", "/release").body, R"({"statuses":[200]})");
  EXPECT_EQ(control_send("POST", "/clear").status, 200);
  EXPECT_EQ(Get("/page/2")->status, 200);
  EXPECT_EQ(control_send("POST", "/rules", R"({"action":"explode"})").status, 400);
  EXPECT_EQ(control_send("GET", "/nothing").status, 404);
}

TEST(FaultRuleJsonTest, ReadsEveryFieldAndNamesTheWrongOne) {
  auto rule = FaultProxy::RuleFromJson(nlohmann::json::parse(
      R"({"method":"POST","path":"/p*","jws_url":"https://x/y","payload_contains":"z",
          "action":"delay_response","delay_ms":1500,"times":3,"status":500,"body":"b",
          "headers":{"A":"1"}})"));
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ(rule->method, "POST");
  EXPECT_EQ(rule->path, "/p*");
  EXPECT_EQ(rule->jws_url, "https://x/y");
  EXPECT_EQ(rule->payload_contains, "z");
  EXPECT_EQ(rule->action, FaultAction::kDelayResponse);
  EXPECT_EQ(rule->delay, absl::Milliseconds(1500));
  EXPECT_EQ(rule->times, 3);
  EXPECT_EQ(rule->status, 500);
  EXPECT_EQ(rule->body, "b");
  EXPECT_THAT(rule->headers, ElementsAre(std::pair<std::string, std::string>{"A", "1"}));
  for (const char* bad : {R"({"colour":"red"})", R"({"times":-1})", R"({"status":"500"})",
                          R"({"headers":{"A":1}})", R"({"body_base64url":"!!"})", "[]"}) {
    auto r = FaultProxy::RuleFromJson(nlohmann::json::parse(bad));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(
      FaultProxy::RuleFromJson(nlohmann::json::parse(R"({"colour":"red"})")).status().message(),
      HasSubstr("colour"));
  EXPECT_THAT(
      std::string(
          FaultProxy::RuleFromJson(nlohmann::json::parse(R"({"times":-1})")).status().message()),
      Not(HasSubstr("colour")));
}

TEST(FaultProxyCreateTest, RefusesAnUpstreamThatIsNotAnHttpsOrigin) {
  for (const char* bad : {"http://127.0.0.1:1", "https://127.0.0.1:1/dir", "https://"}) {
    auto p = FaultProxy::Create({.upstream_origin = bad, .upstream_ca_file = "/x"});
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(FaultProxy::Create({.upstream_origin = "https://127.0.0.1:1"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acmevault::testing
