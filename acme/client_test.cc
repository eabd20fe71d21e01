// The ACME client against a scripted server: what Pebble 2.4.0 cannot show (ARI, profiles,
// Retry-After in both forms, rateLimited, an order stuck in processing), the exact shape of what
// the client sends, and malformed responses, each of which must end in a specific status and
// message without crashing or hanging.
#include "acme/client.h"

#include <atomic>
#include <fstream>
#include <thread>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "acme/problem.h"
#include "acme/testing/scripted_server.h"
#include "common/testing/fake_clock.h"
#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::acme {
namespace {

using crypto::KeyAlgorithm;
using crypto::PrivateKey;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ScriptedServer;
using Call = ScriptedServer::Call;
using Json = nlohmann::json;

std::string Url(const std::string& path) { return ScriptedServer::Url(path); }

std::string Utc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string LeafDer() {
  std::ifstream in("crypto/testdata/leaf.pem");
  std::stringstream s;
  s << in.rdbuf();
  auto ders = crypto::SplitPemChain(s.str());
  return ders.ok() ? (*ders)[0] : "";
}

std::string Chain() {
  std::ifstream in("crypto/testdata/chain.pem");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
    ASSERT_TRUE(key.ok());
    key_ = std::make_unique<PrivateKey>(*std::move(key));
    Recreate({});
  }
  void Recreate(AcmeClientOptions options) {
    options.directory_url = Url("/dir");
    options.transport = &server_;
    options.clock = &clock_;
    auto client = AcmeClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  AccountRef Acct() { return {key_.get(), Url("/acct/1")}; }
  // The parsed JWS of the last POST to `path`.
  crypto::ParsedJws LastJws(const std::string& path) {
    auto calls = server_.calls();
    for (auto it = calls.rbegin(); it != calls.rend(); ++it) {
      if (it->path == path && it->jws) return *it->jws;
    }
    ADD_FAILURE() << "no JWS POST to " << path;
    return {};
  }

  ScriptedServer server_;
  acmevault::testing::FakeClock clock_;
  std::unique_ptr<PrivateKey> key_;
  std::unique_ptr<AcmeClient> client_;
};

// ---- What the client sends ---------------------------------------------------------------------

TEST_F(ClientTest, NewAccountSendsJwkTermsContactAndEab) {
  std::string mac(32, 'k');
  auto acct = client_->NewAccount(*key_, {.contact = {"mailto:a@example.com"},
                                          .eab_kid = "kid-7",
                                          .eab_mac_key = mac});
  ASSERT_TRUE(acct.ok()) << acct.status();
  EXPECT_EQ(acct->url, Url("/acct/1"));
  auto jws = LastJws("/new-acct");
  EXPECT_EQ(jws.header["jwk"], crypto::PublicJwk(key_->public_key()));
  EXPECT_FALSE(jws.header.contains("kid"));
  EXPECT_EQ(jws.header["url"], Url("/new-acct"));
  EXPECT_TRUE(crypto::VerifyJws(jws, key_->public_key()).ok());
  Json payload = Json::parse(jws.payload);
  EXPECT_EQ(payload["termsOfServiceAgreed"], true);
  EXPECT_EQ(payload["contact"], Json::array({"mailto:a@example.com"}));
  auto eab = crypto::ParseJwsObject(payload["externalAccountBinding"]);
  ASSERT_TRUE(eab.ok());
  EXPECT_EQ(eab->header["kid"], "kid-7");
  EXPECT_EQ(eab->signature, crypto::HmacSha256(mac, eab->signing_input));
  EXPECT_TRUE(acct->created);  // 201
}

// RFC 8555 §7.3: a CA that already has an account for the key answers 200 with it; the client
// tells that apart from an account made now (201), which the new-account budget counts.
TEST_F(ClientTest, NewAccountTellsAnAccountMadeFromOneFound) {
  server_.On("POST", "/new-acct", [](const ScriptedServer::Call&) {
    return ScriptedServer::Json(200, {{"status", "valid"}}, {{"Location", Url("/acct/1")}});
  });
  auto found = client_->NewAccount(*key_, {});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->url, Url("/acct/1"));
  EXPECT_FALSE(found->created);
}

TEST_F(ClientTest, NoncesComeFromResponsesAndHeadOnlyWhenThePoolIsEmpty) {
  ASSERT_TRUE(client_->GetAccount(Acct()).ok());
  ASSERT_TRUE(client_->GetAccount(Acct()).ok());
  ASSERT_TRUE(client_->GetAccount(Acct()).ok());
  EXPECT_EQ(server_.CountCalls("HEAD", "/nonce"), 1);
  EXPECT_EQ(server_.CountCalls("GET", "/dir"), 1);  // Cached.
  // Each POST used the nonce of the response before it.
  auto calls = server_.calls();
  std::vector<std::string> used;
  for (const auto& c : calls) {
    if (c.jws) used.push_back(c.jws->header["nonce"]);
  }
  EXPECT_THAT(used, ElementsAre("nonce2", "nonce3", "nonce4"));
}

TEST_F(ClientTest, BadNonceIsRetriedWithTheNonceTheErrorCarried) {
  int rejections = 0;
  server_.On("POST", "/acct/1", [&](const Call& c) {
    if (rejections < 3) {
      ++rejections;
      return ScriptedServer::Problem(400, "badNonce", "stale",
                                     {{"Replay-Nonce", absl::StrCat("fresh", rejections)}});
    }
    EXPECT_EQ(c.jws->header["nonce"], "fresh3");
    return ScriptedServer::Json(200, {{"status", "valid"}});
  });
  auto acct = client_->GetAccount(Acct());
  ASSERT_TRUE(acct.ok()) << acct.status();
  EXPECT_EQ(client_->bad_nonce_retries(), 3);
}

TEST_F(ClientTest, BadNonceRetriesAreCapped) {
  Recreate({.max_bad_nonce_retries = 4});
  server_.On("POST", "/acct/1",
             [](const Call&) { return ScriptedServer::Problem(400, "badNonce", "always"); });
  auto acct = client_->GetAccount(Acct());
  EXPECT_EQ(acct.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(acct.status().message(), HasSubstr("badNonce"));
  EXPECT_EQ(server_.CountCalls("POST", "/acct/1"), 5);
}

TEST_F(ClientTest, KeyChangeNestsAJwsSignedByTheNewKey) {
  auto new_key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP384);
  ASSERT_TRUE(new_key.ok());
  ASSERT_TRUE(client_->KeyChange(Acct(), *new_key).ok());
  auto outer = LastJws("/key-change");
  EXPECT_EQ(outer.header["kid"], Url("/acct/1"));
  EXPECT_TRUE(outer.header.contains("nonce"));
  EXPECT_TRUE(crypto::VerifyJws(outer, key_->public_key()).ok());
  auto inner = crypto::ParseJws(outer.payload);
  ASSERT_TRUE(inner.ok()) << inner.status();
  // RFC 8555 §7.3.5: jwk of the new key, the same url, and no nonce.
  EXPECT_EQ(inner->header["jwk"], crypto::PublicJwk(new_key->public_key()));
  EXPECT_EQ(inner->header["url"], Url("/key-change"));
  EXPECT_EQ(inner->header["alg"], "ES384");
  EXPECT_FALSE(inner->header.contains("nonce"));
  EXPECT_FALSE(inner->header.contains("kid"));
  EXPECT_TRUE(crypto::VerifyJws(*inner, new_key->public_key()).ok());
  Json payload = Json::parse(inner->payload);
  EXPECT_EQ(payload["account"], Url("/acct/1"));
  EXPECT_EQ(payload["oldKey"], crypto::PublicJwk(key_->public_key()));
}

TEST_F(ClientTest, ADirectoryWithoutKeyChangeParsesAndKeyChangeSendsNothing) {
  server_.directory().erase("keyChange");
  auto d = client_->GetDirectory();
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->key_change, "");
  EXPECT_EQ(d->new_account, Url("/new-acct"));
  auto new_key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(new_key.ok());
  const size_t before = server_.calls().size();
  EXPECT_EQ(client_->KeyChange(Acct(), *new_key).code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(client_->KeyChange(Acct(), *new_key).message()),
              HasSubstr("offers no keyChange"));
  EXPECT_EQ(server_.calls().size(), before);  // Not even a nonce was fetched.
}

TEST_F(ClientTest, AKeyChangeThatIsNotAStringIsRefused) {
  server_.directory()["keyChange"] = 7;
  auto d = client_->GetDirectory();
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("keyChange"));
}

TEST_F(ClientTest, RevocationSendsCertificateAndReasonWithKidOrJwk) {
  std::string der = LeafDer();
  ASSERT_TRUE(client_->RevokeCertificate(Acct(), der, RevocationReason::kSuperseded).ok());
  auto by_account = LastJws("/revoke");
  EXPECT_EQ(by_account.header["kid"], Url("/acct/1"));
  Json payload = Json::parse(by_account.payload);
  EXPECT_EQ(payload["certificate"], crypto::Base64Url(der));
  EXPECT_EQ(payload["reason"], 4);

  auto cert_key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(cert_key.ok());
  ASSERT_TRUE(
      client_->RevokeWithCertificateKey(*cert_key, der, RevocationReason::kKeyCompromise).ok());
  auto by_cert = LastJws("/revoke");
  EXPECT_EQ(by_cert.header["jwk"], crypto::PublicJwk(cert_key->public_key()));
  EXPECT_FALSE(by_cert.header.contains("kid"));
  EXPECT_EQ(Json::parse(by_cert.payload)["reason"], 1);
}

TEST_F(ClientTest, ExclusiveAuthorizationRequestsNeverOverlapOtherRequests) {
  Recreate({.exclusive_authorization_requests = true});
  std::atomic<int> in_flight{0}, overlaps{0}, authz_calls{0};
  auto track = [&](HttpResponse r, bool is_authz) {
    int now = in_flight.fetch_add(1) + 1;
    if (is_authz && now != 1) overlaps.fetch_add(1);
    absl::SleepFor(absl::Milliseconds(1));  // Widen the window; nothing is timed.
    in_flight.fetch_sub(1);
    return r;
  };
  server_.On("POST", "/authz/1", [&](const Call&) {
    authz_calls.fetch_add(1);
    return track(ScriptedServer::Json(200, ScriptedServer::Authz("pending")), true);
  });
  server_.On("POST", "/order/1", [&](const Call&) {
    return track(ScriptedServer::Json(200, ScriptedServer::Order("pending")), false);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        if ((i + t) % 2 == 0) {
          EXPECT_TRUE(client_->GetAuthorization(Acct(), Url("/authz/1")).ok());
        } else {
          EXPECT_TRUE(client_->GetOrder(Acct(), Url("/order/1")).ok());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(authz_calls.load(), 40);
  EXPECT_EQ(overlaps.load(), 0);
}

// ---- Profiles and ARI ---------------------------------------------------------------------------

TEST_F(ClientTest, ProfileIsSentOnlyWhenOffered) {
  server_.directory()["meta"]["profiles"] = {{"classic", "the usual"}, {"shortlived", "6 days"}};
  auto dir = client_->GetDirectory();
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(dir->profiles.size(), 2u);
  auto order = client_->NewOrder(
      Acct(), {.identifiers = {{"dns", "a.example.com"}}, .profile = "shortlived",
               .replaces = "aki.serial"});
  ASSERT_TRUE(order.ok()) << order.status();
  Json payload = Json::parse(LastJws("/new-order").payload);
  EXPECT_EQ(payload["profile"], "shortlived");
  EXPECT_EQ(payload["replaces"], "aki.serial");
  EXPECT_EQ(payload["identifiers"], Json::parse(R"([{"type":"dns","value":"a.example.com"}])"));

  auto unknown = client_->NewOrder(
      Acct(), {.identifiers = {{"dns", "a.example.com"}}, .profile = "tlsserver"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(unknown.status().message(), HasSubstr("no profile \"tlsserver\""));
}

TEST_F(ClientTest, RenewalInfoUsesTheAriCertIdAndReportsTheWindow) {
  server_.directory()["renewalInfo"] = Url("/ari");
  std::string der = LeafDer();
  auto cert_id = AriCertId(der);
  ASSERT_TRUE(cert_id.ok()) << cert_id.status();
  // RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial content octets).
  EXPECT_EQ(*cert_id, "JXb814b8AqZQM00l7MIc0Z2vpYY.AI8A0eLDtKWWhw");
  server_.On("GET", "/ari/" + *cert_id, [](const Call&) {
    return ScriptedServer::Json(200,
                                {{"suggestedWindow",
                                  {{"start", "2027-01-01T00:00:00Z"}, {"end", "2027-01-02T12:00:00Z"}}},
                                 {"explanationURL", "https://ca.test/why"}},
                                {{"Retry-After", "21600"}});
  });
  auto info = client_->GetRenewalInfo(der);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(Utc(info->window_start), "2027-01-01T00:00:00Z");
  EXPECT_EQ(info->window_end - info->window_start, absl::Hours(36));
  EXPECT_EQ(info->explanation_url, "https://ca.test/why");
  ASSERT_TRUE(info->retry_after.has_value());
  EXPECT_EQ(*info->retry_after - clock_.Now(), absl::Hours(6));
}

// ---- Retry-After, rate limits and polling -----------------------------------------------------

TEST_F(ClientTest, OrderPollingHonoursRetryAfterInSecondsAndAsAnHttpDate) {
  int polls = 0;
  server_.On("POST", "/order/1", [&](const Call&) {
    ++polls;
    if (polls == 1) return ScriptedServer::Json(200, ScriptedServer::Order("processing"),
                                                {{"Retry-After", "3"}});
    if (polls == 2) {
      // 2027-01-15T08:00:07Z is 7 s after the fake clock's "now" at that point: see below.
      return ScriptedServer::Json(200, ScriptedServer::Order("processing"),
                                  {{"Retry-After", "Fri, 15 Jan 2027 08:00:07 GMT"}});
    }
    return ScriptedServer::Json(200, ScriptedServer::Order("valid"));
  });
  // Place "now" so that after the 3 s wait it is 2027-01-15T08:00:00Z.
  absl::Time target = absl::FromCivil(absl::CivilSecond(2027, 1, 15, 8, 0, 0), absl::UTCTimeZone());
  clock_.Advance(target - absl::Seconds(3) - clock_.Now());
  auto order = client_->WaitForOrder(Acct(), Url("/order/1"), clock_.Now() + absl::Minutes(5));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->status, "valid");
  EXPECT_EQ(order->certificate, Url("/cert/1"));
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Seconds(3), absl::Seconds(7)));
}

TEST_F(ClientTest, RetryAfterIsClampedAndDefaultsToThePollInterval) {
  Recreate({.poll_interval = absl::Seconds(2), .min_poll_interval = absl::Seconds(1),
            .max_poll_interval = absl::Seconds(30)});
  int polls = 0;
  server_.On("POST", "/authz/1", [&](const Call&) {
    ++polls;
    if (polls == 1) return ScriptedServer::Json(200, ScriptedServer::Authz("pending"),
                                                {{"Retry-After", "86400"}});
    if (polls == 2) return ScriptedServer::Json(200, ScriptedServer::Authz("pending"),
                                                {{"Retry-After", "0"}});
    if (polls == 3) return ScriptedServer::Json(200, ScriptedServer::Authz("pending"));
    return ScriptedServer::Json(200, ScriptedServer::Authz("valid"));
  });
  auto authz =
      client_->WaitForAuthorization(Acct(), Url("/authz/1"), clock_.Now() + absl::Hours(1));
  ASSERT_TRUE(authz.ok()) << authz.status();
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Seconds(30), absl::Seconds(1), absl::Seconds(2)));
}

TEST_F(ClientTest, OrderStuckInProcessingEndsAtTheDeadline) {
  server_.On("POST", "/order/1", [](const Call&) {
    return ScriptedServer::Json(200, ScriptedServer::Order("processing"), {{"Retry-After", "5"}});
  });
  auto order = client_->WaitForOrder(Acct(), Url("/order/1"), clock_.Now() + absl::Seconds(60));
  EXPECT_EQ(order.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(order.status().message(), HasSubstr("still processing"));
  // 60 s at one poll per 5 s, plus the one at the deadline: bounded, no busy loop.
  EXPECT_EQ(server_.CountCalls("POST", "/order/1"), 13);
}

TEST_F(ClientTest, RateLimitedCarriesRetryAfterToTheCaller) {
  server_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Problem(429, "rateLimited", "too many new orders",
                                   {{"Retry-After", "3600"}});
  });
  auto order = client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}});
  ASSERT_EQ(order.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(order.status().message(), HasSubstr("rateLimited"));
  EXPECT_THAT(order.status().message(), HasSubstr("too many new orders"));
  auto problem = GetProblem(order.status());
  ASSERT_TRUE(problem.has_value());
  ASSERT_TRUE(problem->retry_after.has_value());
  EXPECT_EQ(*problem->retry_after, clock_.Now() + absl::Hours(1));
  EXPECT_EQ(problem->http_status, 429);

  server_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Problem(429, "rateLimited", "later",
                                   {{"Retry-After", "Wed, 21 Oct 2037 07:28:00 GMT"}});
  });
  auto dated = client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}});
  auto p2 = GetProblem(dated.status());
  ASSERT_TRUE(p2 && p2->retry_after);
  EXPECT_EQ(Utc(*p2->retry_after), "2037-10-21T07:28:00Z");
}

// A "no request before" time is carried in whole seconds, so it is rounded up: never early.
TEST(ProblemJson, RetryAfterIsRoundedUpToTheSecond) {
  Problem p;
  p.retry_after = absl::FromUnixMillis(1'000'050);
  EXPECT_EQ(ToJson(p)["retry_after_unix"], 1001);
  p.retry_after = absl::FromUnixSeconds(1000);
  EXPECT_EQ(ToJson(p)["retry_after_unix"], 1000);
  p.retry_after = absl::FromUnixMillis(-1'500);
  EXPECT_EQ(ToJson(p)["retry_after_unix"], -1);
}

TEST_F(ClientTest, DeactivatedAccountIsUnusableWhether401Or403) {
  for (int code : {401, 403}) {
    server_.On("POST", "/acct/1", [code](const Call&) {
      return ScriptedServer::Problem(code, "unauthorized", "account is deactivated");
    });
    auto acct = client_->GetAccount(Acct());
    EXPECT_EQ(acct.status().code(), absl::StatusCode::kPermissionDenied) << code;
    EXPECT_TRUE(IsAccountUnusable(acct.status())) << code;
  }
}

TEST_F(ClientTest, SubproblemsAndLongDetailsAreReportedBounded) {
  server_.On("POST", "/new-order", [](const Call&) {
    Json body = {{"type", "urn:ietf:params:acme:error:rejectedIdentifier"},
                 {"detail", std::string(5000, 'x')},
                 {"subproblems",
                  {{{"type", "urn:ietf:params:acme:error:rejectedIdentifier"},
                    {"detail", "forbidden name"},
                    {"identifier", {{"type", "dns"}, {"value", "bad.example.com"}}}}}}};
    return ScriptedServer::Raw(400, "application/problem+json", body.dump());
  });
  auto order = client_->NewOrder(Acct(), {.identifiers = {{"dns", "bad.example.com"}}});
  EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(order.status().message(),
              HasSubstr("dns:bad.example.com: rejectedIdentifier: forbidden name"));
  EXPECT_LT(order.status().message().size(), 800u);
  auto problem = GetProblem(order.status());
  ASSERT_TRUE(problem.has_value());
  ASSERT_EQ(problem->subproblems.size(), 1u);
  EXPECT_EQ(problem->subproblems[0].identifier, "dns:bad.example.com");
}

// ---- A hostile or broken CA -------------------------------------------------------------------
// What it sends must end in a bounded Status whose text every strict JSON writer downstream
// (logs, audit rows, gRPC details) accepts.

// True when `s` is valid UTF-8: nlohmann's strict serialiser (the default) throws otherwise.
bool StrictlySerialisable(const std::string& s) {
  try {
    (void)Json(s).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST_F(ClientTest, LongMultiByteDetailIsClippedOnACharacterBoundary) {
  // 600 bytes of three-byte characters: byte 512 falls inside the 171st.
  const std::string euro = "\xE2\x82\xAC";
  server_.On("POST", "/acct/1", [&](const Call&) {
    return ScriptedServer::Problem(400, "malformed", Repeat(euro, 200));
  });
  absl::Status status = client_->GetAccount(Acct()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StrictlySerialisable(std::string(status.message())));
  EXPECT_THAT(status.message(), HasSubstr(Repeat(euro, 170) + "..."));
  auto problem = GetProblem(status);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->detail, Repeat(euro, 170) + "...");
  EXPECT_TRUE(StrictlySerialisable(ToJson(*problem).dump()));
}

TEST_F(ClientTest, InvalidUtf8InAProblemDocumentBecomesReplacementCharacters) {
  server_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Raw(
        400, "application/problem+json",
        "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"bad \xFF\xC3 bytes\"}");
  });
  absl::Status status = client_->GetAccount(Acct()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("acme malformed (HTTP 400): bad \xEF\xBF\xBD\xEF\xBF\xBD bytes"));
  EXPECT_TRUE(StrictlySerialisable(std::string(status.message())));
  auto problem = GetProblem(status);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->detail, "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
  EXPECT_TRUE(StrictlySerialisable(ToJson(*problem).dump()));
}

TEST_F(ClientTest, Latin1ErrorPageBecomesAValidUtf8Status) {
  // A proxy's error page in ISO-8859-1, as the body of a 500.
  const std::string page =
      "<html><body><h1>Erreur interne</h1><p>R\xE9"
      "essayez \xE0 10h.</p>\r\n" +
      std::string(400, ' ') + "</body></html>";
  server_.On("POST", "/new-order",
             [&](const Call&) { return ScriptedServer::Raw(500, "text/html", page); });
  absl::Status status =
      client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("R\xEF\xBF\xBD"
                                          "essayez \xEF\xBF\xBD 10h."));
  EXPECT_TRUE(StrictlySerialisable(std::string(status.message())));
  EXPECT_LT(status.message().size(), 300u);
  auto problem = GetProblem(status);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->type, "http:500");
  EXPECT_TRUE(StrictlySerialisable(ToJson(*problem).dump()));
}

// Arrays nested `depth` deep: 2 * depth bytes.
std::string NestedArrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// `resource` (a JSON object) with `member` set to the raw JSON text `value`.
std::string WithMember(const Json& resource, const std::string& member, const std::string& value) {
  std::string text = resource.dump();
  text.pop_back();  // The closing brace.
  return absl::StrCat(text, ",\"", member, "\":", value, "}");
}

TEST_F(ClientTest, JsonNestedDeeperThanTheLimitIsRefusedWhereverTheCaSendsIt) {
  // 100,000 levels: 200 KB, well under the transport's 1 MiB response cap.
  const std::string deep = NestedArrays(100000);
  const std::string kTooDeep = "CA sent JSON nested deeper than 32";

  // The directory (fetched first: it is cached) and ARI.
  server_.directory()["renewalInfo"] = Url("/ari");
  Json directory = server_.directory();
  server_.On("GET", "/dir", [&](const Call&) {
    return ScriptedServer::Raw(200, "application/json", WithMember(directory, "meta", deep));
  });
  EXPECT_THAT(client_->GetDirectory().status().message(), HasSubstr(kTooDeep));
  server_.On("GET", "/dir", [&](const Call&) { return ScriptedServer::Json(200, directory); });
  server_.On("GET", "/ari/JXb814b8AqZQM00l7MIc0Z2vpYY.AI8A0eLDtKWWhw", [&](const Call&) {
    return ScriptedServer::Raw(200, "application/json", WithMember(Json::object(), "x", deep));
  });
  auto info = client_->GetRenewalInfo(LeafDer());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(info.status().message(), HasSubstr(kTooDeep));

  // An order's (or a challenge's) "error", which the client keeps.
  server_.On("POST", "/order/1", [&](const Call&) {
    return ScriptedServer::Raw(200, "application/json",
                               WithMember(ScriptedServer::Order("invalid"), "error", deep));
  });
  auto order = client_->GetOrder(Acct(), Url("/order/1"));
  EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(order.status().message(), HasSubstr(kTooDeep));

  Json authz = ScriptedServer::Authz("invalid");
  std::string challenge = WithMember(authz["challenges"][0], "error", deep);
  authz["challenges"] = Json::array();
  server_.On("POST", "/authz/1", [&](const Call&) {
    return ScriptedServer::Raw(200, "application/json",
                               WithMember(authz, "challenges", "[" + challenge + "]"));
  });
  auto authorization = client_->GetAuthorization(Acct(), Url("/authz/1"));
  EXPECT_EQ(authorization.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(authorization.status().message(), HasSubstr(kTooDeep));

  // A problem document whose subproblems nest: the error keeps its HTTP status's code.
  std::string subproblems;
  for (int i = 0; i < 50000; ++i) subproblems += "[{\"subproblems\":";
  subproblems += "[]";
  for (int i = 0; i < 50000; ++i) subproblems += "}]";
  server_.On("POST", "/new-order", [&](const Call&) {
    return ScriptedServer::Raw(
        400, "application/problem+json",
        WithMember({{"type", "urn:ietf:params:acme:error:malformed"}}, "subproblems", subproblems));
  });
  auto created = client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}});
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("(HTTP 400): " + kTooDeep));
}

TEST_F(ClientTest, JsonNestedExactlyToTheLimitIsAccepted) {
  // The order object is one level; its error adds 31 more.
  server_.On("POST", "/order/1", [](const Call&) {
    return ScriptedServer::Raw(
        200, "application/json",
        WithMember(ScriptedServer::Order("invalid"), "error", NestedArrays(31)));
  });
  auto order = client_->GetOrder(Acct(), Url("/order/1"));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->status, "invalid");
  server_.On("POST", "/order/1", [](const Call&) {
    return ScriptedServer::Raw(
        200, "application/json",
        WithMember(ScriptedServer::Order("invalid"), "error", NestedArrays(32)));
  });
  EXPECT_THAT(client_->GetOrder(Acct(), Url("/order/1")).status().message(),
              HasSubstr("CA sent JSON nested deeper than 32"));
}

TEST_F(ClientTest, ProblemDetailAtTheBoundIsKeptWholeAndLongerIsClipped) {
  std::string detail(kMaxProblemDetailBytes, 'd');
  server_.On("POST", "/acct/1",
             [&](const Call&) { return ScriptedServer::Problem(400, "malformed", detail); });
  auto at_bound = GetProblem(client_->GetAccount(Acct()).status());
  ASSERT_TRUE(at_bound.has_value());
  EXPECT_EQ(at_bound->detail, detail);
  detail += "e";
  auto over = GetProblem(client_->GetAccount(Acct()).status());
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ(over->detail, std::string(kMaxProblemDetailBytes, 'd') + "...");
}

// A problem document with `count` subproblems, each with one subproblem of its own.
Json ProblemWithSubproblems(int count, const std::string& detail = "no") {
  Json subs = Json::array();
  for (int i = 0; i < count; ++i) {
    subs.push_back({{"type", "urn:ietf:params:acme:error:caa"},
                    {"detail", detail},
                    {"identifier", {{"type", "dns"}, {"value", absl::StrCat("n", i, ".example")}}},
                    {"subproblems", {{{"type", "urn:ietf:params:acme:error:dns"}}}}});
  }
  return {{"type", "urn:ietf:params:acme:error:compound"},
          {"detail", "several"},
          {"subproblems", subs}};
}

TEST_F(ClientTest, SubproblemsAreKeptUpToTheBoundAndOneLevelDeep) {
  for (int count : {static_cast<int>(kMaxSubproblems), static_cast<int>(kMaxSubproblems) + 8}) {
    server_.On("POST", "/acct/1", [&](const Call&) {
      return ScriptedServer::Raw(403, "application/problem+json",
                                 ProblemWithSubproblems(count).dump());
    });
    auto problem = GetProblem(client_->GetAccount(Acct()).status());
    ASSERT_TRUE(problem.has_value());
    ASSERT_EQ(problem->subproblems.size(), kMaxSubproblems) << count;
    EXPECT_EQ(problem->subproblems.back().identifier,
              absl::StrCat("dns:n", kMaxSubproblems - 1, ".example"));
    for (const auto& sub : problem->subproblems) EXPECT_TRUE(sub.subproblems.empty());
  }
}

TEST_F(ClientTest, AHugeProblemBecomesAShortMessage) {
  // About 900 KB: a long detail and 1,500 subproblems with long details of their own.
  Json document = ProblemWithSubproblems(1500, std::string(500, 's'));
  document["detail"] = std::string(150000, 'D');
  ASSERT_GT(document.dump().size(), 900000u);
  server_.On("POST", "/new-order", [&](const Call&) {
    return ScriptedServer::Raw(400, "application/problem+json", document.dump());
  });
  absl::Status status =
      client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LE(status.message().size(), kMaxProblemMessageBytes + 100);
  EXPECT_THAT(status.message(), HasSubstr("POST newOrder: acme compound (HTTP 400): DDD"));
  EXPECT_THAT(status.message(), HasSubstr("dns:n0.example: caa: sss"));
  EXPECT_THAT(status.message(), HasSubstr(" more subproblems"));
  auto payload = status.GetPayload(kProblemPayloadUrl);
  ASSERT_TRUE(payload.has_value());
  EXPECT_LT(payload->size(), 64u * 1024);

  // The same document as an invalid order's error: kept bounded, summarised short.
  server_.On("POST", "/order/1", [&](const Call&) {
    Json order = ScriptedServer::Order("invalid");
    order["error"] = document;
    return ScriptedServer::Json(200, order);
  });
  auto order = client_->GetOrder(Acct(), Url("/order/1"));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_LT(order->error.dump().size(), 64u * 1024);
  EXPECT_EQ(order->error["subproblems"].size(), kMaxSubproblems);
  EXPECT_EQ(order->error["subproblems"][0]["identifier"]["value"], "n0.example");
  EXPECT_FALSE(order->error["subproblems"][0].contains("subproblems"));
  std::string summary = Summarize(ProblemFromDocument(order->error));
  EXPECT_LE(summary.size(), kMaxProblemMessageBytes);
  EXPECT_THAT(summary, ::testing::StartsWith("compound: DDD"));
}

TEST_F(ClientTest, UrlsAreAcceptedUpToTheLengthBoundAndRefusedBeyond) {
  const std::string prefix = Url("/authz/");
  const std::string at_bound = prefix + std::string(kMaxUrlBytes - prefix.size(), 'a');
  std::string authorization = at_bound;
  server_.On("POST", "/order/1", [&](const Call&) {
    Json order = ScriptedServer::Order("pending");
    order["authorizations"] = {authorization};
    return ScriptedServer::Json(200, order);
  });
  auto order = client_->GetOrder(Acct(), Url("/order/1"));
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->authorizations, std::vector<std::string>{at_bound});

  authorization = at_bound + "a";
  order = client_->GetOrder(Acct(), Url("/order/1"));
  EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(order.status().message(),
              HasSubstr("CA sent a URL of 2049 bytes; at most 2048 are accepted"));
  EXPECT_LT(order.status().message().size(), 400u);
}

TEST_F(ClientTest, UrlsWithControlCharactersSpacesOrNonAsciiAreRefused) {
  std::string bad;
  server_.On("POST", "/order/1", [&](const Call&) {
    Json order = ScriptedServer::Order("pending");
    order["finalize"] = Url("/finalize/1") + bad + "x";
    return ScriptedServer::Json(200, order);
  });
  for (std::string c : {std::string(1, '\0'), std::string("\r\nX-Injected: 1"), std::string("\t"),
                        std::string(" "), std::string("\x7F"), std::string("\xC3\xA9")}) {
    bad = c;
    auto order = client_->GetOrder(Acct(), Url("/order/1"));
    EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(order.status().message(),
                HasSubstr("CA sent a URL with a control character, space or non-ASCII byte"));
    EXPECT_TRUE(StrictlySerialisable(std::string(order.status().message())));
    EXPECT_EQ(order.status().message().find('\0'), absl::string_view::npos);
    EXPECT_EQ(order.status().message().find('\n'), absl::string_view::npos);
  }
  // The same rule for a Location header and for URLs that need not share the origin.
  server_.On("POST", "/new-order", [](const Call&) {
    return ScriptedServer::Json(201, ScriptedServer::Order("pending"),
                                {{"Location", Url("/order/1 x")}});
  });
  EXPECT_THAT(
      client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}}).status().message(),
      HasSubstr("POST newOrder: CA sent a URL with a control character"));
  server_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "valid"}, {"orders", Url("/orders\n1")}});
  });
  EXPECT_THAT(client_->GetAccount(Acct()).status().message(),
              HasSubstr("CA sent a URL with a control character"));
}

// An order (as the scripted CA serves it) for `identifiers` names with `authorizations` URLs.
Json OrderOfSize(size_t identifiers, size_t authorizations) {
  Json order = ScriptedServer::Order("pending");
  order["identifiers"] = Json::array();
  order["authorizations"] = Json::array();
  for (size_t i = 0; i < identifiers; ++i) {
    order["identifiers"].push_back({{"type", "dns"}, {"value", absl::StrCat("n", i, ".example")}});
  }
  for (size_t i = 0; i < authorizations; ++i) {
    order["authorizations"].push_back(Url(absl::StrCat("/authz/", i)));
  }
  return order;
}

TEST_F(ClientTest, AnOrderHasAtMostOneAuthorizationPerIdentifierAndAtMostTheBound) {
  Json order;
  server_.On("POST", "/order/1", [&](const Call&) { return ScriptedServer::Json(200, order); });
  order = OrderOfSize(kMaxOrderIdentifiers, kMaxOrderIdentifiers);
  auto at_bound = client_->GetOrder(Acct(), Url("/order/1"));
  ASSERT_TRUE(at_bound.ok()) << at_bound.status();
  EXPECT_EQ(at_bound->identifiers.size(), kMaxOrderIdentifiers);
  EXPECT_EQ(at_bound->authorizations.size(), kMaxOrderIdentifiers);

  order = OrderOfSize(kMaxOrderIdentifiers + 1, kMaxOrderIdentifiers);
  auto too_many = client_->GetOrder(Acct(), Url("/order/1"));
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(),
              HasSubstr("the order lists 101 identifiers; at most 100 are accepted"));

  order = OrderOfSize(3, 4);
  auto more_authorizations = client_->GetOrder(Acct(), Url("/order/1"));
  EXPECT_EQ(more_authorizations.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(more_authorizations.status().message(),
              HasSubstr("the order lists 4 authorizations for 3 identifiers"));

  order = OrderOfSize(2, 1);  // The CA may reuse a valid authorization it does not list.
  EXPECT_TRUE(client_->GetOrder(Acct(), Url("/order/1")).ok());
}

TEST_F(ClientTest, AnOrderIdentifierMustBeATypeAndAValue) {
  Json identifier;
  server_.On("POST", "/order/1", [&](const Call&) {
    Json order = ScriptedServer::Order("pending");
    order["identifiers"].push_back(identifier);
    return ScriptedServer::Json(200, order);
  });
  for (const Json& bad : {Json("dns:a.example.com"), Json{{"type", "dns"}},
                          Json{{"type", "dns"}, {"value", 7}}, Json::object()}) {
    identifier = bad;
    auto order = client_->GetOrder(Acct(), Url("/order/1"));
    EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(order.status().message(), HasSubstr("identifier is not a type and a value"));
  }
}

// The test chain's certificates (leaf, intermediate) as DER.
std::vector<std::string> ChainDers() {
  auto ders = crypto::SplitPemChain(Chain());
  return ders.ok() ? *ders : std::vector<std::string>{};
}

TEST_F(ClientTest, ACertificateChainIsBoundedInCertificatesAndBytes) {
  std::string body;
  server_.On("POST", "/cert/1", [&](const Call&) {
    return ScriptedServer::Raw(200, "application/pem-certificate-chain", body);
  });
  // The leaf and then intermediates, up to the bound.
  std::vector<std::string> ders = ChainDers();
  ASSERT_EQ(ders.size(), 2u);
  while (ders.size() < kMaxChainCertificates) ders.push_back(ders[1]);
  body = crypto::ToPemChain(ders);
  auto at_bound = client_->DownloadCertificate(Acct(), Url("/cert/1"));
  ASSERT_TRUE(at_bound.ok()) << at_bound.status();
  EXPECT_EQ(at_bound->pem, body);
  ders.push_back(ders[1]);
  body = crypto::ToPemChain(ders);
  auto too_long = client_->DownloadCertificate(Acct(), Url("/cert/1"));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.status().message(),
              HasSubstr("the chain has 11 certificates; at most 10 are accepted"));

  // Bytes: the two-certificate chain padded with blank lines (allowed between PEM blocks).
  const std::string chain = Chain();
  body = chain + std::string(kMaxChainBytes - chain.size(), '\n');
  auto bytes_at_bound = client_->DownloadCertificate(Acct(), Url("/cert/1"));
  ASSERT_TRUE(bytes_at_bound.ok()) << bytes_at_bound.status();
  body += "\n";
  auto too_big = client_->DownloadCertificate(Acct(), Url("/cert/1"));
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(),
              HasSubstr("the chain is 65537 bytes; at most 65536 are accepted"));
}

TEST_F(ClientTest, AlternateChainsAreBounded) {
  size_t links = kMaxAlternateChains;
  server_.On("POST", "/cert/1", [&](const Call&) {
    std::vector<std::pair<std::string, std::string>> headers;
    for (size_t i = 0; i < links; ++i) {
      headers.emplace_back("Link", "<" + Url(absl::StrCat("/cert/1/", i)) + ">;rel=\"alternate\"");
    }
    return ScriptedServer::Raw(200, "application/pem-certificate-chain", Chain(), headers);
  });
  auto at_bound = client_->DownloadCertificate(Acct(), Url("/cert/1"));
  ASSERT_TRUE(at_bound.ok()) << at_bound.status();
  EXPECT_EQ(at_bound->alternates.size(), kMaxAlternateChains);
  links = kMaxAlternateChains + 1;
  auto too_many = client_->DownloadCertificate(Acct(), Url("/cert/1"));
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(),
              HasSubstr("the CA offers 9 alternate chains; at most 8 are accepted"));
}

// ---- Authorizations and certificates belong to their order -------------------------------------

// An order for leaf.example.com and *.leaf.example.com (the names of the test chain's leaf),
// as the client parsed it.
Order LeafOrder(AcmeClient& client, ScriptedServer& server, AccountRef account) {
  server.On("POST", "/order/1", [](const Call&) {
    Json order = ScriptedServer::Order("pending");
    order["identifiers"] = {{{"type", "dns"}, {"value", "leaf.example.com"}},
                            {{"type", "dns"}, {"value", "*.leaf.example.com"}}};
    order["authorizations"] = {Url("/authz/1"), Url("/authz/2")};
    return ScriptedServer::Json(200, order);
  });
  auto order = client.GetOrder(account, Url("/order/1"));
  EXPECT_TRUE(order.ok()) << order.status();
  return order.ok() ? *order : Order{};
}

TEST_F(ClientTest, AuthorizationsForTheOrdersNamesAreAccepted) {
  Order order = LeafOrder(*client_, server_, Acct());
  server_.On("POST", "/authz/1", [](const Call&) {
    Json a = ScriptedServer::Authz("pending");
    a["identifier"] = {{"type", "dns"}, {"value", "leaf.example.com"}};
    return ScriptedServer::Json(200, a);
  });
  // RFC 8555 §7.1.4: the authorization for "*.leaf.example.com" names the base domain.
  server_.On("POST", "/authz/2", [](const Call&) {
    Json a = ScriptedServer::Authz("pending");
    a["identifier"] = {{"type", "dns"}, {"value", "LEAF.Example.com"}};
    a["wildcard"] = true;
    return ScriptedServer::Json(200, a);
  });
  auto plain = client_->GetAuthorization(Acct(), order, Url("/authz/1"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->identifier.value, "leaf.example.com");
  auto wildcard = client_->GetAuthorization(Acct(), order, Url("/authz/2"));
  ASSERT_TRUE(wildcard.ok()) << wildcard.status();
  EXPECT_TRUE(wildcard->wildcard);
}

TEST_F(ClientTest, AnAuthorizationForANameTheOrderDidNotAskForIsRefused) {
  Order order = LeafOrder(*client_, server_, Acct());
  Json identifier;
  bool wildcard = false;
  server_.On("POST", "/authz/1", [&](const Call&) {
    Json a = ScriptedServer::Authz("pending");
    a["identifier"] = identifier;
    a["wildcard"] = wildcard;
    return ScriptedServer::Json(200, a);
  });
  identifier = {{"type", "dns"}, {"value", "evil.example.net"}};
  auto other = client_->GetAuthorization(Acct(), order, Url("/authz/1"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(),
              HasSubstr("authorization https://ca.test/authz/1 is for dns:evil.example.net, "
                        "which the order does not name"));

  // A wildcard authorization for a name the order lists only without the wildcard.
  identifier = {{"type", "dns"}, {"value", "sub.leaf.example.com"}};
  wildcard = true;
  auto not_wildcard = client_->GetAuthorization(Acct(), order, Url("/authz/1"));
  EXPECT_THAT(not_wildcard.status().message(), HasSubstr("is for dns:*.sub.leaf.example.com,"));

  // A long name is named clipped.
  identifier = {{"type", "dns"}, {"value", std::string(5000, 'x') + ".example"}};
  wildcard = false;
  auto long_name = client_->GetAuthorization(Acct(), order, Url("/authz/1"));
  EXPECT_EQ(long_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(long_name.status().message(), HasSubstr("xxx..."));
  EXPECT_LT(long_name.status().message().size(), 400u);
}

TEST_F(ClientTest, ANewOrderForOtherNamesThanRequestedIsRefused) {
  server_.On("POST", "/new-order", [](const Call&) {
    Json order = ScriptedServer::Order("pending");
    order["identifiers"] = {{{"type", "dns"}, {"value", "a.example.com"}},
                            {{"type", "dns"}, {"value", "evil.example.net"}}};
    return ScriptedServer::Json(201, order, {{"Location", Url("/order/1")}});
  });
  auto order = client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}});
  EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(order.status().message(),
              HasSubstr("POST newOrder: the CA's order is for [dns:a.example.com, "
                        "dns:evil.example.net], not the requested [dns:a.example.com]"));
  // The same names in another order and case are the requested ones.
  server_.On("POST", "/new-order", [](const Call&) {
    Json order = ScriptedServer::Order("pending");
    order["identifiers"] = {{{"type", "dns"}, {"value", "B.example.com"}},
                            {{"type", "dns"}, {"value", "a.example.com"}}};
    return ScriptedServer::Json(201, order, {{"Location", Url("/order/1")}});
  });
  auto same = client_->NewOrder(
      Acct(), {.identifiers = {{"dns", "a.example.com"}, {"dns", "b.example.com"}}});
  EXPECT_TRUE(same.ok()) << same.status();
}

// The test chain's leaf: leaf.example.com and *.leaf.example.com (and an IP address, which
// crypto::CertificateInfo does not list), valid from notBefore to notAfter below.
const absl::Time kLeafNotBefore =
    absl::FromCivil(absl::CivilSecond(2026, 11, 22, 8, 12, 29), absl::UTCTimeZone());
const absl::Time kLeafNotAfter =
    absl::FromCivil(absl::CivilSecond(2027, 2, 20, 8, 12, 29), absl::UTCTimeZone());

// A valid order for `names` (DNS), whose certificate is the test chain.
Order ValidOrder(const std::vector<std::string>& names) {
  Order order;
  order.url = Url("/order/1");
  order.status = "valid";
  order.certificate = Url("/cert/1");
  for (const auto& n : names) order.identifiers.push_back({"dns", n});
  return order;
}

TEST_F(ClientTest, TheLeafOfAnOrdersCertificateIsValidNowAndForTheOrdersNames) {
  clock_.Set(kLeafNotBefore + absl::Hours(24));
  auto chain =
      client_->DownloadCertificate(Acct(), ValidOrder({"LEAF.example.com", "*.leaf.example.com"}));
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->pem, Chain());
  // The validity period's ends are part of it.
  for (absl::Time t : {kLeafNotBefore, kLeafNotAfter}) {
    clock_.Set(t);
    EXPECT_TRUE(
        client_->DownloadCertificate(Acct(), ValidOrder({"leaf.example.com", "*.leaf.example.com"}))
            .ok());
  }
}

TEST_F(ClientTest, AnExpiredOrNotYetValidLeafIsRefused) {
  const Order order = ValidOrder({"leaf.example.com", "*.leaf.example.com"});
  clock_.Set(kLeafNotAfter + absl::Seconds(1));
  auto expired = client_->DownloadCertificate(Acct(), order);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(expired.status().message(),
              HasSubstr("POST certificate https://ca.test/cert/1: the leaf is valid from "
                        "2026-11-22T08:12:29Z to 2027-02-20T08:12:29Z, not at "
                        "2027-02-20T08:12:30Z"));
  clock_.Set(kLeafNotBefore - absl::Seconds(1));
  auto early = client_->DownloadCertificate(Acct(), order);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(early.status().message(), HasSubstr("not at 2026-11-22T08:12:28Z"));
}

TEST_F(ClientTest, ALeafForOtherNamesThanTheOrdersIsRefused) {
  clock_.Set(kLeafNotBefore + absl::Hours(24));
  auto other = client_->DownloadCertificate(Acct(), ValidOrder({"a.example.com"}));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(),
              HasSubstr("the leaf names [*.leaf.example.com, leaf.example.com], not the "
                        "order's [a.example.com]"));
  // One name more than the order's is as wrong as one fewer.
  auto subset = client_->DownloadCertificate(Acct(), ValidOrder({"leaf.example.com"}));
  EXPECT_EQ(subset.status().code(), absl::StatusCode::kInvalidArgument);
  auto superset = client_->DownloadCertificate(
      Acct(), ValidOrder({"leaf.example.com", "*.leaf.example.com", "x.leaf.example.com"}));
  EXPECT_EQ(superset.status().code(), absl::StatusCode::kInvalidArgument);
  // Only DNS names can be compared: crypto::CertificateInfo does not list IP addresses.
  Order with_ip = ValidOrder({"leaf.example.com", "*.leaf.example.com"});
  with_ip.identifiers.push_back({"ip", "127.0.0.1"});
  auto ip = client_->DownloadCertificate(Acct(), with_ip);
  EXPECT_EQ(ip.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(ip.status().message(), HasSubstr("the order has an identifier of type ip"));
}

TEST_F(ClientTest, AnOrderWithoutACertificateHasNothingToDownload) {
  Order order = ValidOrder({"leaf.example.com", "*.leaf.example.com"});
  order.status = "processing";
  order.certificate.clear();
  auto chain = client_->DownloadCertificate(Acct(), order);
  EXPECT_EQ(chain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(chain.status().message(),
              HasSubstr("order https://ca.test/order/1 is processing: no certificate yet"));
  EXPECT_EQ(server_.CountCalls("POST", "/cert/1"), 0);
}

// ---- Redirects and failed downloads -------------------------------------------------------------

TEST_F(ClientTest, ARedirectIsAClearErrorNamingWhereItPointed) {
  server_.On("GET", "/dir", [](const Call&) {
    return ScriptedServer::Raw(301, "text/html", "<a href=\"https://new.test/dir\">moved</a>",
                               {{"Location", "https://new.test/dir"}});
  });
  absl::Status moved = client_->GetDirectory().status();
  EXPECT_EQ(moved.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(moved.message(),
              HasSubstr("GET directory: CA answered HTTP 301 redirect to https://new.test/dir "
                        "(redirects are not followed)"));

  server_.On("GET", "/dir",
             [&](const Call&) { return ScriptedServer::Json(200, server_.directory()); });
  std::string location = "https://elsewhere.test/acct/1";
  int code = 302;
  server_.On("POST", "/acct/1", [&](const Call&) {
    return ScriptedServer::Raw(code, "", "",
                               location.empty() ? std::vector<std::pair<std::string, std::string>>{}
                                                : std::vector<std::pair<std::string, std::string>>{
                                                      {"Location", location}});
  });
  absl::Status post = client_->GetAccount(Acct()).status();
  EXPECT_EQ(post.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(post.message(), HasSubstr("POST account: CA answered HTTP 302 redirect to "
                                        "https://elsewhere.test/acct/1"));
  auto problem = GetProblem(post);
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->type, "http:302");
  EXPECT_EQ(problem->http_status, 302);

  code = 307;
  location = "https://elsewhere.test/" + std::string(5000, 'p') + "\r\n";
  absl::Status long_location = client_->GetAccount(Acct()).status();
  EXPECT_EQ(long_location.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(long_location.message(),
              HasSubstr("HTTP 307 redirect to https://elsewhere.test/ppp"));
  EXPECT_LT(long_location.message().size(), 400u);
  EXPECT_TRUE(StrictlySerialisable(std::string(long_location.message())));

  location.clear();
  EXPECT_THAT(client_->GetAccount(Acct()).status().message(),
              HasSubstr("CA answered HTTP 307 redirect without a Location"));
}

TEST_F(ClientTest, AFailedCertificateDownloadSaysPreciselyWhy) {
  struct Case {
    int status;
    std::string content_type, body;
    std::vector<std::pair<std::string, std::string>> headers;
    absl::StatusCode code;
    std::string message;
  };
  const std::string prefix = "POST certificate https://ca.test/cert/1: ";
  const std::vector<Case> cases = {
      {200,
       "application/pem-certificate-chain",
       "<html>Service Unavailable</html>",
       {},
       absl::StatusCode::kInvalidArgument,
       prefix + "the CA sent no usable certificate chain: PEM chain has text outside PEM blocks"},
      {200,
       "application/pem-certificate-chain",
       Chain() +
           "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
       {},
       absl::StatusCode::kInvalidArgument,
       prefix + "the CA sent no usable certificate chain: PEM chain holds a \"PRIVATE KEY\" "
                "block; only CERTIFICATE is allowed"},
      {200,
       "application/pem-certificate-chain",
       "",
       {},
       absl::StatusCode::kInvalidArgument,
       prefix + "the CA sent no usable certificate chain: PEM chain is empty"},
      {200,
       "application/pem-certificate-chain",
       "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
       {},
       absl::StatusCode::kInvalidArgument,
       prefix + "the CA sent no usable certificate chain: certificate 1 of 1: not a DER "
                "certificate"},
      {302,
       "",
       "",
       {{"Location", "https://cdn.test/cert/1"}},
       absl::StatusCode::kFailedPrecondition,
       prefix + "CA answered HTTP 302 redirect to https://cdn.test/cert/1"},
  };
  for (const Case& c : cases) {
    server_.On("POST", "/cert/1", [&](const Call&) {
      return ScriptedServer::Raw(c.status, c.content_type, c.body, c.headers);
    });
    absl::Status status = client_->DownloadCertificate(Acct(), Url("/cert/1")).status();
    EXPECT_EQ(status.code(), c.code) << c.body;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
    EXPECT_EQ(status.message().find("MC4CAQAw"), absl::string_view::npos);
  }
}

// ---- Challenges, statuses and nonces ------------------------------------------------------------

TEST_F(ClientTest, ChallengeTokensAreBase64urlUpToTheBound) {
  std::string token;
  server_.On("POST", "/authz/1", [&](const Call&) {
    Json a = ScriptedServer::Authz("pending");
    a["challenges"][0]["token"] = token;
    return ScriptedServer::Json(200, a);
  });
  server_.On("POST", "/chall/1", [&](const Call&) {
    return ScriptedServer::Json(
        200,
        {{"type", "http-01"}, {"url", Url("/chall/1")}, {"status", "pending"}, {"token", token}});
  });
  token = std::string(kMaxChallengeTokenBytes - 2, 'A') + "-_";
  auto at_bound = client_->GetAuthorization(Acct(), Url("/authz/1"));
  ASSERT_TRUE(at_bound.ok()) << at_bound.status();
  EXPECT_EQ(at_bound->Find("http-01")->token, token);
  EXPECT_TRUE(client_->RespondToChallenge(Acct(), Url("/chall/1")).ok());

  token = std::string(kMaxChallengeTokenBytes + 1, 'A');
  auto too_long = client_->GetAuthorization(Acct(), Url("/authz/1"));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.status().message(),
              HasSubstr("challenge token is not 1 to 256 base64url characters"));
  // A token ends up in a URL path (HTTP-01) and a DNS record (DNS-01): nothing else may pass.
  for (const std::string bad : {"../../etc/passwd", "tok=", "tok en", "tok\nX: 1"}) {
    token = bad;
    EXPECT_THAT(client_->GetAuthorization(Acct(), Url("/authz/1")).status().message(),
                HasSubstr("challenge token is not 1 to 256 base64url characters"))
        << bad;
    EXPECT_THAT(client_->RespondToChallenge(Acct(), Url("/chall/1")).status().message(),
                HasSubstr("challenge token is not 1 to 256 base64url characters"))
        << bad;
  }
}

TEST_F(ClientTest, UnknownAuthorizationAndChallengeStatusesAreRefused) {
  Json authz = ScriptedServer::Authz("pending");
  server_.On("POST", "/authz/1", [&](const Call&) { return ScriptedServer::Json(200, authz); });
  for (const char* status : {"pending", "valid", "invalid", "deactivated", "expired", "revoked"}) {
    authz["status"] = status;
    EXPECT_TRUE(client_->GetAuthorization(Acct(), Url("/authz/1")).ok()) << status;
  }
  authz["status"] = std::string(3000, 'z');
  auto unknown = client_->GetAuthorization(Acct(), Url("/authz/1"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown authorization status \"zzz"));
  EXPECT_LT(unknown.status().message().size(), 400u);

  authz = ScriptedServer::Authz("pending");
  authz["challenges"][1]["status"] = "sleeping";
  auto challenge = client_->GetAuthorization(Acct(), Url("/authz/1"));
  EXPECT_EQ(challenge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(challenge.status().message(), HasSubstr("unknown challenge status \"sleeping\""));
}

TEST_F(ClientTest, ANonceFromNewNonceIsBounded) {
  std::string nonce(256, 'n');
  server_.On("HEAD", "/nonce", [&](const Call&) {
    return ScriptedServer::Raw(200, "", "", {{"Replay-Nonce", nonce}});
  });
  // Answers carry no usable nonce, so every request asks newNonce for one.
  server_.On("POST", "/acct/1", [](const Call&) {
    return ScriptedServer::Json(200, {{"status", "valid"}}, {{"Replay-Nonce", "!"}});
  });
  ASSERT_TRUE(client_->GetAccount(Acct()).ok());
  EXPECT_EQ(LastJws("/acct/1").header["nonce"], nonce);
  nonce = std::string(260, 'n');  // Base64url of 195 bytes.
  auto refused = client_->GetAccount(Acct());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("no usable Replay-Nonce"));
}

// ---- Malformed responses ------------------------------------------------------------------------

enum class Op { kDirectory, kGetAccount, kNewAccount, kNewOrder, kGetOrder, kGetAuthz,
                kRespond, kDownload, kRenewalInfo, kRevoke };

struct Malformed {
  std::string name;
  std::string method, path;  // The route to replace.
  std::function<HttpResponse()> response;
  Op op;
  absl::StatusCode code;
  std::string message;  // Must appear in the status message.
  std::function<void(Json&)> directory_edit = nullptr;
};

HttpResponse J(const Json& j, std::vector<std::pair<std::string, std::string>> h = {}) {
  return ScriptedServer::Json(200, j, std::move(h));
}
HttpResponse Created(const Json& j, const std::string& location) {
  return ScriptedServer::Json(201, j, {{"Location", location}});
}
Json OrderWith(const std::function<void(Json&)>& edit) {
  Json o = ScriptedServer::Order("pending");
  edit(o);
  return o;
}
Json AuthzWith(const std::function<void(Json&)>& edit) {
  Json a = ScriptedServer::Authz("pending");
  edit(a);
  return a;
}

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

std::vector<Malformed> MalformedCases() {
  const std::string evil = "https://evil.test";
  return {
      {"DirectoryNotJson", "GET", "/dir",
       [] { return ScriptedServer::Raw(200, "application/json", "{not json"); }, Op::kDirectory,
       kInvalid, "not a JSON object"},
      {"DirectoryWrongContentType", "GET", "/dir",
       [] { return ScriptedServer::Raw(200, "text/html", "<html>"); }, Op::kDirectory, kInvalid,
       "\"text/html\" is not JSON"},
      {"DirectoryMissingNewNonce", "GET", "/dir",
       [] {
         return J({{"newAccount", Url("/a")}});
       },
       Op::kDirectory, kInvalid, "lacks \"newNonce\""},
      {"DirectoryNewOrderNotString", "GET", "/dir",
       [] {
         return J({{"newNonce", Url("/n")}, {"newAccount", Url("/a")}, {"newOrder", 7},
                   {"revokeCert", Url("/r")}, {"keyChange", Url("/k")}});
       },
       Op::kDirectory, kInvalid, "lacks \"newOrder\""},
      {"DirectoryForeignHost", "GET", "/dir",
       [evil] {
         return J({{"newNonce", Url("/n")}, {"newAccount", Url("/a")},
                   {"newOrder", evil + "/order"}, {"revokeCert", Url("/r")},
                   {"keyChange", Url("/k")}});
       },
       Op::kDirectory, kInvalid, "outside the directory's origin"},
      {"DirectoryOtherPort", "GET", "/dir",
       [] {
         return J({{"newNonce", "https://ca.test:8443/n"}, {"newAccount", Url("/a")},
                   {"newOrder", Url("/o")}, {"revokeCert", Url("/r")}, {"keyChange", Url("/k")}});
       },
       Op::kDirectory, kInvalid, "https://ca.test:8443/n"},
      {"DirectoryServerError", "GET", "/dir",
       [] { return ScriptedServer::Raw(503, "text/plain", "down for maintenance"); },
       Op::kDirectory, absl::StatusCode::kUnavailable, "down for maintenance"},
      {"NonceMissing", "HEAD", "/nonce",
       [] {
         return ScriptedServer::Raw(200, "", "", {{"Replay-Nonce", "bad nonce!"}});
       },
       Op::kGetAccount, kInvalid, "no usable Replay-Nonce"},
      {"NonceEndpointFails", "HEAD", "/nonce", [] { return ScriptedServer::Raw(500, "", ""); },
       Op::kGetAccount, absl::StatusCode::kUnavailable, "HEAD newNonce"},
      {"AccountNoLocation", "POST", "/new-acct",
       [] {
         return J({{"status", "valid"}});
       },
       Op::kNewAccount, kInvalid, "no Location header"},
      {"AccountForeignLocation", "POST", "/new-acct",
       [evil] {
         return Created({{"status", "valid"}}, evil + "/acct/1");
       },
       Op::kNewAccount, kInvalid, "outside the directory's origin"},
      {"AccountBodyIsArray", "POST", "/new-acct",
       [] {
         return Created(Json::array({1, 2}), Url("/acct/1"));
       },
       Op::kNewAccount, kInvalid, "not a JSON object"},
      {"AccountTextContentType", "POST", "/acct/1",
       [] { return ScriptedServer::Raw(200, "text/plain", "{}"); }, Op::kGetAccount, kInvalid,
       "\"text/plain\" is not JSON"},
      {"ErrorWithoutProblemDocument", "POST", "/acct/1",
       [] { return ScriptedServer::Raw(400, "text/plain", "nope"); }, Op::kGetAccount, kInvalid,
       "acme http:400 (HTTP 400): nope"},
      {"ServerInternal", "POST", "/acct/1",
       [] { return ScriptedServer::Problem(500, "serverInternal", "db down"); }, Op::kGetAccount,
       absl::StatusCode::kUnavailable, "serverInternal"},
      {"UnexpectedRedirect", "POST", "/acct/1",
       [] {
         return ScriptedServer::Raw(302, "", "", {{"Location", "https://ca.test/x"}});
       },
       Op::kGetAccount, absl::StatusCode::kFailedPrecondition, "HTTP 302"},
      {"OrderNoStatus", "POST", "/new-order",
       [] { return Created(OrderWith([](Json& o) { o.erase("status"); }), Url("/order/1")); },
       Op::kNewOrder, kInvalid, "lacks \"status\""},
      {"OrderUnknownStatus", "POST", "/order/1",
       [] { return J(OrderWith([](Json& o) { o["status"] = "sleeping"; })); }, Op::kGetOrder,
       kInvalid, "unknown order status \"sleeping\""},
      {"OrderAuthorizationsNotList", "POST", "/order/1",
       [] { return J(OrderWith([](Json& o) { o["authorizations"] = "x"; })); }, Op::kGetOrder,
       kInvalid, "\"authorizations\" is missing or not a list"},
      {"OrderAuthorizationNotString", "POST", "/order/1",
       [] { return J(OrderWith([](Json& o) { o["authorizations"] = {42}; })); }, Op::kGetOrder,
       kInvalid, "authorization is not a URL"},
      {"OrderForeignAuthorization", "POST", "/order/1",
       [evil] { return J(OrderWith([&](Json& o) { o["authorizations"] = {evil + "/authz/1"}; })); },
       Op::kGetOrder, kInvalid, "https://evil.test/authz/1"},
      {"OrderNoFinalize", "POST", "/order/1",
       [] { return J(OrderWith([](Json& o) { o.erase("finalize"); })); }, Op::kGetOrder, kInvalid,
       "lacks \"finalize\""},
      {"OrderForeignFinalize", "POST", "/order/1",
       [] { return J(OrderWith([](Json& o) { o["finalize"] = "http://ca.test/finalize/1"; })); },
       Op::kGetOrder, kInvalid, "outside the directory's origin"},
      {"ValidOrderWithoutCertificate", "POST", "/order/1",
       [] { return J(OrderWith([](Json& o) { o["status"] = "valid"; })); }, Op::kGetOrder, kInvalid,
       "valid order without a certificate URL"},
      {"OrderForeignCertificate", "POST", "/order/1",
       [evil] {
         return J(OrderWith([&](Json& o) {
           o["status"] = "valid";
           o["certificate"] = evil + "/cert";
         }));
       },
       Op::kGetOrder, kInvalid, "https://evil.test/cert"},
      {"OrderUserinfoUrl", "POST", "/order/1",
       [] {
         return J(OrderWith([](Json& o) { o["finalize"] = "https://user@ca.test/finalize/1"; }));
       },
       Op::kGetOrder, kInvalid, "outside the directory's origin"},
      {"AuthzNoIdentifier", "POST", "/authz/1",
       [] { return J(AuthzWith([](Json& a) { a.erase("identifier"); })); }, Op::kGetAuthz, kInvalid,
       "no identifier"},
      {"AuthzChallengesNotList", "POST", "/authz/1",
       [] { return J(AuthzWith([](Json& a) { a["challenges"] = Json::object(); })); },
       Op::kGetAuthz, kInvalid, "\"challenges\" is missing or not a list"},
      {"ChallengeWithoutUrl", "POST", "/authz/1",
       [] { return J(AuthzWith([](Json& a) { a["challenges"][0].erase("url"); })); }, Op::kGetAuthz,
       kInvalid, "challenge without url"},
      {"ChallengeForeignUrl", "POST", "/authz/1",
       [evil] { return J(AuthzWith([&](Json& a) { a["challenges"][1]["url"] = evil + "/c"; })); },
       Op::kGetAuthz, kInvalid, "https://evil.test/c"},
      {"ChallengeResponseWithoutStatus", "POST", "/chall/1",
       [] {
         return J({{"type", "http-01"}});
       },
       Op::kRespond, kInvalid, "no status"},
      {"CertificateWithPrivateKeyBlock", "POST", "/cert/1",
       [] {
         return ScriptedServer::Raw(
             200, "application/pem-certificate-chain",
             Chain() + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
       },
       Op::kDownload, kInvalid, "only CERTIFICATE is allowed"},
      {"CertificateAsJson", "POST", "/cert/1",
       [] { return ScriptedServer::Raw(200, "application/json", Chain()); }, Op::kDownload,
       kInvalid, "is not application/pem-certificate-chain"},
      {"CertificateGarbage", "POST", "/cert/1",
       [] {
         return ScriptedServer::Raw(200, "application/pem-certificate-chain",
                                    "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                                    "-----END CERTIFICATE-----\n");
       },
       Op::kDownload, kInvalid, "not base64"},
      {"CertificateEmpty", "POST", "/cert/1",
       [] { return ScriptedServer::Raw(200, "application/pem-certificate-chain", "\n"); },
       Op::kDownload, kInvalid, "PEM chain is empty"},
      {"CertificateForeignAlternate", "POST", "/cert/1",
       [evil] {
         return ScriptedServer::Raw(200, "application/pem-certificate-chain", Chain(),
                                    {{"Link", "<" + evil + "/cert/alt>;rel=\"alternate\""}});
       },
       Op::kDownload, kInvalid, "https://evil.test/cert/alt"},
      {"RenewalInfoWithoutWindow", "GET", "/ari/JXb814b8AqZQM00l7MIc0Z2vpYY.AI8A0eLDtKWWhw",
       [] {
         return J({{"explanationURL", "x"}});
       },
       Op::kRenewalInfo, kInvalid, "no suggestedWindow",
       [](Json& d) { d["renewalInfo"] = Url("/ari"); }},
      {"RenewalInfoBackwardsWindow", "GET", "/ari/JXb814b8AqZQM00l7MIc0Z2vpYY.AI8A0eLDtKWWhw",
       [] {
         return J({{"suggestedWindow",
                    {{"start", "2027-02-01T00:00:00Z"}, {"end", "2027-01-01T00:00:00Z"}}}});
       },
       Op::kRenewalInfo, kInvalid, "not a valid time range",
       [](Json& d) { d["renewalInfo"] = Url("/ari"); }},
      {"RenewalInfoNotOffered", "GET", "/unused", [] { return J({}); }, Op::kRenewalInfo,
       absl::StatusCode::kUnimplemented, "offers no renewalInfo"},
      {"RevokeAlreadyRevoked", "POST", "/revoke",
       [] { return ScriptedServer::Problem(400, "alreadyRevoked", "Certificate already revoked"); },
       Op::kRevoke, absl::StatusCode::kFailedPrecondition, "alreadyRevoked"},
      {"RevokeBadReason", "POST", "/revoke",
       [] { return ScriptedServer::Problem(400, "badRevocationReason", "reason 7 not allowed"); },
       Op::kRevoke, kInvalid, "badRevocationReason"},
  };
}

class MalformedTest : public ClientTest, public ::testing::WithParamInterface<Malformed> {};

TEST_P(MalformedTest, EndsInASpecificStatusAndMessage) {
  const Malformed& m = GetParam();
  if (m.directory_edit) m.directory_edit(server_.directory());
  auto response = m.response;
  server_.On(m.method, m.path, [response](const Call&) { return response(); });
  absl::Status status;
  switch (m.op) {
    case Op::kDirectory:
      status = client_->GetDirectory().status();
      break;
    case Op::kGetAccount:
      status = client_->GetAccount(Acct()).status();
      break;
    case Op::kNewAccount:
      status = client_->NewAccount(*key_, {}).status();
      break;
    case Op::kNewOrder:
      status = client_->NewOrder(Acct(), {.identifiers = {{"dns", "a.example.com"}}}).status();
      break;
    case Op::kGetOrder:
      status = client_->GetOrder(Acct(), Url("/order/1")).status();
      break;
    case Op::kGetAuthz:
      status = client_->GetAuthorization(Acct(), Url("/authz/1")).status();
      break;
    case Op::kRespond:
      status = client_->RespondToChallenge(Acct(), Url("/chall/1")).status();
      break;
    case Op::kDownload:
      status = client_->DownloadCertificate(Acct(), Url("/cert/1")).status();
      break;
    case Op::kRenewalInfo:
      status = client_->GetRenewalInfo(LeafDer()).status();
      break;
    case Op::kRevoke:
      status = client_->RevokeCertificate(Acct(), LeafDer(), RevocationReason::kUnspecified);
      break;
  }
  EXPECT_EQ(status.code(), m.code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(m.message));
}

INSTANTIATE_TEST_SUITE_P(Responses, MalformedTest, ::testing::ValuesIn(MalformedCases()),
                         [](const auto& info) { return info.param.name; });

TEST(MalformedCount, AtLeastThirtyCases) { EXPECT_GE(MalformedCases().size(), 30u); }

// ---- Small pieces --------------------------------------------------------------------------------

TEST(UrlOrigin, NormalisesAndRejects) {
  EXPECT_EQ(*UrlOrigin("https://CA.test/dir"), "https://ca.test:443");
  EXPECT_EQ(*UrlOrigin("https://ca.test:443/x?y"), "https://ca.test:443");
  EXPECT_EQ(*UrlOrigin("http://127.0.0.1:14000/dir"), "http://127.0.0.1:14000");
  EXPECT_EQ(*UrlOrigin("https://[::1]:8443/dir"), "https://[::1]:8443");
  EXPECT_FALSE(UrlOrigin("ftp://ca.test/").ok());
  EXPECT_FALSE(UrlOrigin("https://user@ca.test/").ok());
  EXPECT_FALSE(UrlOrigin("https://ca.test:99999/").ok());
  EXPECT_FALSE(UrlOrigin("https:///path").ok());
}

TEST(RetryAfter, ParsesBothFormsAndRejectsNonsense) {
  absl::Time now = absl::FromUnixSeconds(1000);
  EXPECT_EQ(*ParseRetryAfter("120", now), absl::FromUnixSeconds(1120));
  EXPECT_EQ(*ParseRetryAfter(" 0 ", now), now);
  EXPECT_EQ(absl::ToUnixSeconds(*ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now)),
            784111777);
  EXPECT_FALSE(ParseRetryAfter("", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("-5", now).has_value());
  EXPECT_FALSE(ParseRetryAfter("soon", now).has_value());
}

}  // namespace
}  // namespace acmevault::acme
