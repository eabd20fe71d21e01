#include "service/http01_responder.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "acme/client.h"
#include "acme/http.h"
#include "common/testing/stack_env.h"
#include "crypto/jwk.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/store.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;

// Tokens the responder knows, as the challenges table would hold them; the token "explode" is a
// database that is down.
class Answers final : public storage::ChallengeStore {
 public:
  void Put(const std::string& token, const std::string& key_auth) {
    absl::MutexLock lock(&mu_);
    answers_[token] = key_auth;
  }
  absl::Status PutChallenge(const storage::Scope&, absl::string_view token,
                            absl::string_view key_authorization) override {
    Put(std::string(token), std::string(key_authorization));
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> LookupChallenge(absl::string_view token) override {
    absl::MutexLock lock(&mu_);
    ++lookups_;
    if (token == "explode") return absl::UnavailableError("database down");
    auto it = answers_.find(std::string(token));
    if (it == answers_.end()) return absl::NotFoundError("unknown token");
    return it->second;
  }
  absl::Status DeleteChallenge(const storage::Scope&, absl::string_view token) override {
    absl::MutexLock lock(&mu_);
    answers_.erase(std::string(token));
    return absl::OkStatus();
  }
  absl::Status DeleteChallengeFenced(const storage::Scope& scope, const storage::Lease&,
                                     absl::string_view token) override {
    return DeleteChallenge(scope, token);
  }
  int lookups() {
    absl::MutexLock lock(&mu_);
    return lookups_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> answers_;
  int lookups_ = 0;
};

std::unique_ptr<acme::CurlTransport> Http() {
  auto t = acme::CurlTransport::Create({.allow_http = true});
  EXPECT_TRUE(t.ok());
  return *std::move(t);
}

TEST(Http01Responder, AnswersKnownTokensOnly) {
  Answers answers;
  answers.Put("tok_en-1", "tok_en-1.thumbprint");
  auto responder = Http01Responder::Start({.challenges = &answers});
  ASSERT_TRUE(responder.ok()) << responder.status();
  ASSERT_GT((*responder)->port(), 0);
  std::string base = "http://127.0.0.1:" + std::to_string((*responder)->port());
  auto http = Http();

  auto ok = http->Send({"GET", base + "/.well-known/acme-challenge/tok_en-1", {}, ""});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "tok_en-1.thumbprint");
  EXPECT_THAT(ok->Header("Content-Type"), ::testing::StartsWith("text/plain"));

  auto unknown = http->Send({"GET", base + "/.well-known/acme-challenge/other", {}, ""});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->status, 404);
  auto error = http->Send({"GET", base + "/.well-known/acme-challenge/explode", {}, ""});
  ASSERT_TRUE(error.ok());
  EXPECT_EQ(error->status, 503);
  int lookups = answers.lookups();
  EXPECT_EQ(lookups, 3);

  // Not tokens, other paths and other methods never reach the lookup.
  for (const char* path : {"/.well-known/acme-challenge/a.b", "/.well-known/acme-challenge/",
                           "/.well-known/acme-challenge/%2e%2e", "/", "/index.html"}) {
    auto r = http->Send({"GET", base + path, {}, ""});
    ASSERT_TRUE(r.ok()) << path;
    EXPECT_EQ(r->status, 404) << path;
  }
  auto post = http->Send({"POST", base + "/.well-known/acme-challenge/tok_en-1", {}, "x"});
  ASSERT_TRUE(post.ok());
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(answers.lookups(), lookups);
  EXPECT_EQ((*responder)->answered(), 1);
}

// Connections to the responder that send nothing, or a request header a byte at a time, as a
// slow-loris client does; closed when destroyed.
class SlowClients {
 public:
  // `idle` connections that never send, and `trickling` ones that send a byte every 100 ms.
  SlowClients(int port, int idle, int trickling) {
    for (int i = 0; i < idle + trickling; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
      (i < idle ? idle_ : trickling_).push_back(fd);
    }
    trickler_ = std::thread([this] {
      const std::string header = "GET /.well-known/acme-challenge/slow HTTP/1.1\r\nX-Pad: ";
      for (size_t sent = 0; !stop_.WaitForNotificationWithTimeout(absl::Milliseconds(100));
           ++sent) {
        const char c = sent < header.size() ? header[sent] : 'a';
        for (int fd : trickling_) (void)send(fd, &c, 1, MSG_NOSIGNAL);
      }
    });
  }
  ~SlowClients() {
    stop_.Notify();
    trickler_.join();
    for (int fd : idle_) close(fd);
    for (int fd : trickling_) close(fd);
  }

 private:
  std::vector<int> idle_, trickling_;
  absl::Notification stop_;
  std::thread trickler_;
};

// The GET a CA's validation makes, waiting at most `patience` for the answer.
absl::StatusOr<acme::HttpResponse> Validate(int port, const std::string& token,
                                             absl::Duration patience) {
  auto http = acme::CurlTransport::Create(
      {.connect_timeout = patience, .timeout = patience, .allow_http = true});
  if (!http.ok()) return http.status();
  return (*http)->Send(
      {"GET", absl::StrCat("http://127.0.0.1:", port, "/.well-known/acme-challenge/", token), {},
       ""});
}

// Issue 9, defect 7: the responder's 4 threads fell to 4 slow connections (each held a thread
// for the 10 s request timeout), so a CA's validation behind them timed out.
// Issue 10: an answer this replica published is served from memory, without a lookup in the
// store; any other token is still looked up there.
TEST(Http01Responder, AnswersThisReplicaPublishedNeedNoLookup) {
  Answers answers;
  answers.Put("stored", "stored.thumbprint");
  PublishedAnswers published;
  published.Add("mine", "mine.thumbprint");
  auto responder = Http01Responder::Start({.challenges = &answers, .published = &published});
  ASSERT_TRUE(responder.ok()) << responder.status();
  std::string base = "http://127.0.0.1:" + std::to_string((*responder)->port());
  auto http = Http();
  for (int i = 0; i < 3; ++i) {
    auto mine = http->Send({"GET", base + "/.well-known/acme-challenge/mine", {}, ""});
    ASSERT_TRUE(mine.ok()) << mine.status();
    EXPECT_EQ(mine->status, 200);
    EXPECT_EQ(mine->body, "mine.thumbprint");
  }
  EXPECT_EQ(answers.lookups(), 0);
  auto stored = http->Send({"GET", base + "/.well-known/acme-challenge/stored", {}, ""});
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->body, "stored.thumbprint");
  EXPECT_EQ(answers.lookups(), 1);
  published.Remove("mine");
  auto gone = http->Send({"GET", base + "/.well-known/acme-challenge/mine", {}, ""});
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->status, 404);
}

TEST(Http01Responder, ByDefaultEightSlowConnectionsDoNotStopAValidation) {
  Answers answers;
  answers.Put("tok-1", "tok-1.thumbprint");
  auto responder = Http01Responder::Start({.challenges = &answers});
  ASSERT_TRUE(responder.ok()) << responder.status();
  SlowClients slow((*responder)->port(), /*idle=*/4, /*trickling=*/4);
  // A CA waits about 10 s; this waits less, and is no claim about speed.
  auto answer = Validate((*responder)->port(), "tok-1", absl::Seconds(4));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->body, "tok-1.thumbprint");
}

// More slow connections than threads: each loses its worker after the request timeout, however
// it trickles, so the validation behind them is answered; answers are counted.
TEST(Http01Responder, SlowConnectionsLoseTheirWorkerAfterTheRequestTimeout) {
  Answers answers;
  answers.Put("tok-1", "tok-1.thumbprint");
  Metrics metrics;
  auto responder = Http01Responder::Start({.threads = 2,
                                           .request_timeout = absl::Milliseconds(300),
                                           .challenges = &answers,
                                           .metrics = &metrics});
  ASSERT_TRUE(responder.ok()) << responder.status();
  SlowClients slow((*responder)->port(), /*idle=*/3, /*trickling=*/3);
  // Six slow connections on two workers, 300 ms each: about a second; this waits ten.
  auto answer = Validate((*responder)->port(), "tok-1", absl::Seconds(10));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200);
  auto unknown = Validate((*responder)->port(), "other", absl::Seconds(10));
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->status, 404);
  EXPECT_THAT(metrics.Render(),
              ::testing::HasSubstr("acmevault_http01_requests_total{code=\"200\"} 1"));
  EXPECT_THAT(metrics.Render(),
              ::testing::HasSubstr("acmevault_http01_requests_total{code=\"404\"} 1"));
}

TEST(Http01Responder, BusyAddressIsUnavailable) {
  Answers answers;
  auto first = Http01Responder::Start({.challenges = &answers});
  ASSERT_TRUE(first.ok());
  auto second = Http01Responder::Start(
      {.listen_address = "127.0.0.1:" + std::to_string((*first)->port()), .challenges = &answers});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(Http01Responder::Start({}).ok());
}

TEST(Http01Responder, NeedsAChallengeStore) {
  EXPECT_THAT(Http01Responder::Start({}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "Http01Responder: Options.challenges is required"));
}

// Pebble's "svc" instance validates HTTP-01 on ACMEVAULT_SVC_HTTP01_PORT: the responder there
// must satisfy a real CA.
TEST(Http01ResponderPebble, PebbleValidatesThroughTheResponder) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_SVC_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(port, "ACMEVAULT_SVC_HTTP01_PORT");
  Answers answers;
  auto responder =
      Http01Responder::Start({.listen_address = "127.0.0.1:" + port, .challenges = &answers});
  ASSERT_TRUE(responder.ok()) << responder.status();

  auto transport =
      acme::CurlTransport::Create({.ca_file = testing::StackEnv("ACMEVAULT_PEBBLE_TLS_CA")});
  ASSERT_TRUE(transport.ok());
  auto client = acme::AcmeClient::Create({.directory_url = directory,
                                          .transport = transport->get(),
                                          .poll_interval = absl::Milliseconds(20),
                                          .exclusive_authorization_requests = true});
  ASSERT_TRUE(client.ok());
  auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  auto acct = (*client)->NewAccount(*key, {});
  ASSERT_TRUE(acct.ok()) << acct.status();
  acme::AccountRef ref{&*key, acct->url};
  auto order = (*client)->NewOrder(ref, {.identifiers = {{"dns", "responder.example.com"}}});
  ASSERT_TRUE(order.ok()) << order.status();
  auto authz = (*client)->GetAuthorization(ref, order->authorizations[0]);
  ASSERT_TRUE(authz.ok());
  const acme::Challenge* ch = authz->Find("http-01");
  ASSERT_NE(ch, nullptr);
  answers.Put(ch->token, crypto::KeyAuthorization(ch->token, key->public_key()));
  ASSERT_TRUE((*client)->RespondToChallenge(ref, ch->url).ok());
  auto ready = (*client)->WaitForOrder(ref, order->url, absl::Now() + absl::Seconds(30), true);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, "ready");
  EXPECT_GE((*responder)->answered(), 1);
}

}  // namespace
}  // namespace acmevault::service
