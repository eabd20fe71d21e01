#include "acme/http.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::unique_ptr<CurlTransport> Transport(CurlTransportOptions options) {
  auto t = CurlTransport::Create(std::move(options));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

// A loopback port with nothing listening: bound, then closed.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(CurlTransport, RefusesPlainHttpUnlessAllowed) {
  auto t = Transport({});
  auto r = t->Send({"GET", "http://127.0.0.1:1/dir", {}, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("scheme other than https"));
  EXPECT_EQ(t->Send({"PUT", "https://127.0.0.1:1/", {}, ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CurlTransport, ConnectionRefusedIsUnavailable) {
  auto t = Transport({.allow_http = true});
  auto r = t->Send({"GET", "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/", {}, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
}

TEST(CurlTransport, RejectsNonsenseOptions) {
  EXPECT_FALSE(CurlTransport::Create({.max_response_bytes = 0}).ok());
  EXPECT_FALSE(CurlTransport::Create({.timeout = absl::ZeroDuration()}).ok());
}

// --- Against the real Pebble of the local stack ----------------------------------------------

TEST(CurlTransportPebble, FetchesTheDirectoryTrustingOnlyPebblesCa) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(ca, "ACMEVAULT_PEBBLE_TLS_CA");
  auto t = Transport({.ca_file = ca});
  auto r = t->Send({"GET", directory, {}, ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->Header("Content-Type"), StartsWith("application/json"));
  auto dir = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(dir.is_object()) << r->body;
  std::string origin = directory.substr(0, directory.find("/dir"));
  for (const char* field : {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"}) {
    ASSERT_TRUE(dir.contains(field)) << field;
    EXPECT_THAT(dir[field].get<std::string>(), StartsWith(origin + "/")) << field;
  }

  // Fresh nonces arrive in Replay-Nonce on HEAD newNonce, and differ each time.
  auto n1 = t->Send({"HEAD", dir["newNonce"].get<std::string>(), {}, ""});
  auto n2 = t->Send({"HEAD", dir["newNonce"].get<std::string>(), {}, ""});
  ASSERT_TRUE(n1.ok() && n2.ok());
  EXPECT_FALSE(n1->Header("replay-nonce").empty());
  EXPECT_NE(n1->Header("Replay-Nonce"), n2->Header("Replay-Nonce"));
}

// Pebble offers HTTP/2 by ALPN; the transport answers in HTTP/1.1 unless told otherwise.
TEST(CurlTransportPebble, SpeaksHttp11UnlessHttp2IsAsked) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(ca, "ACMEVAULT_PEBBLE_TLS_CA");
  auto plain = Transport({.ca_file = ca});
  auto r = plain->Send({"GET", directory, {}, ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->http_version, 11);

  auto h2 = Transport({.ca_file = ca, .http2 = true});
  auto r2 = h2->Send({"GET", directory, {}, ""});
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(r2->http_version, 20);
  EXPECT_EQ(r2->body, r->body);
}

TEST(CurlTransportPebble, SystemRootsDoNotTrustPebble) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_DIRECTORY");
  auto t = Transport({});
  auto r = t->Send({"GET", directory, {}, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("certificate"));
}

TEST(CurlTransportPebble, OversizedResponseIsResourceExhausted) {
  ACMEVAULT_STACK_ENV_OR_SKIP(directory, "ACMEVAULT_PEBBLE_DIRECTORY");
  ACMEVAULT_STACK_ENV_OR_SKIP(ca, "ACMEVAULT_PEBBLE_TLS_CA");
  auto t = Transport({.ca_file = ca, .max_response_bytes = 64});
  auto r = t->Send({"GET", directory, {}, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("larger than 64 bytes"));
}

}  // namespace
}  // namespace acmevault::acme
