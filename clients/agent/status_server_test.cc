#include "clients/agent/status_server.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// One HTTP/1.0 GET on loopback: the whole answer.
std::string Get(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  close(fd);
  return out;
}

TEST(StatusServerTest, HealthReadinessAndMetrics) {
  AgentState state;
  absl::Mutex mu;
  auto server = StatusServer::Start("127.0.0.1:0", [&] {
    absl::MutexLock lock(&mu);
    return state;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  int port = (*server)->port();
  EXPECT_THAT(Get(port, "/healthz"), StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(Get(port, "/readyz"), StartsWith("HTTP/1.1 503"));
  {
    absl::MutexLock lock(&mu);
    state.ready = true;
    state.serial = "fa";
    state.renewals = 2;
    state.failures = 1;
    state.not_after = absl::FromUnixSeconds(1893456000);
  }
  EXPECT_THAT(Get(port, "/readyz"), StartsWith("HTTP/1.1 200"));
  std::string metrics = Get(port, "/metrics");
  EXPECT_THAT(metrics, HasSubstr("\nacmevault_agent_ready 1\n"));
  EXPECT_THAT(metrics, HasSubstr("acmevault_agent_renewals_total{result=\"success\"} 2\n"));
  EXPECT_THAT(metrics, HasSubstr("acmevault_agent_renewals_total{result=\"failure\"} 1\n"));
  EXPECT_THAT(metrics,
              HasSubstr("acmevault_agent_certificate_expiry_timestamp_seconds 1893456000\n"));
  EXPECT_THAT(Get(port, "/other"), StartsWith("HTTP/1.1 404"));
}

}  // namespace
}  // namespace acmevault::agent
