#include "storage/testing/round_trip_counter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace acmevault::storage::testing {
namespace {

// SSLRequest and GSSENCRequest: untyped messages before the start-up message.
constexpr uint32_t kSslRequest = 80877103;
constexpr uint32_t kGssEncRequest = 80877104;

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Splits the client's byte stream into protocol messages and counts the round trips.
class ClientParser {
 public:
  explicit ClientParser(std::atomic<int>* round_trips) : round_trips_(round_trips) {}

  void Feed(const char* data, size_t size) {
    buffer_.append(data, size);
    for (;;) {
      const size_t header = started_ ? 5 : 4;
      if (buffer_.size() < header) return;
      const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data());
      const uint32_t length = BigEndian32(p + header - 4);  // Includes itself, not the type.
      const size_t total = header - 4 + length;
      if (buffer_.size() < total) return;
      if (!started_) {
        // An SSL or GSS request is followed by another untyped message; the start-up message
        // by typed ones.
        const uint32_t code = length >= 8 ? BigEndian32(p + 4) : 0;
        if (code != kSslRequest && code != kGssEncRequest) started_ = true;
      } else if (p[0] == 'Q' || p[0] == 'S') {
        ++*round_trips_;
      }
      buffer_.erase(0, total);
    }
  }

 private:
  std::atomic<int>* const round_trips_;
  bool started_ = false;
  std::string buffer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RoundTripCounter>> RoundTripCounter::Start(const std::string& url) {
  std::smatch m;
  static const std::regex kUrl("^(postgres(?:ql)?://[^@/]*@)([^:/]+):([0-9]+)(/.*)$");
  if (!std::regex_match(url, m, kUrl)) {
    return absl::InvalidArgumentError("RoundTripCounter: want postgresql://user@host:port/db");
  }
  auto counter = std::unique_ptr<RoundTripCounter>(new RoundTripCounter);
  counter->server_host_ = m[2];
  if (counter->server_host_ == "localhost") counter->server_host_ = "127.0.0.1";
  if (!absl::SimpleAtoi(std::string(m[3]), &counter->server_port_)) {
    return absl::InvalidArgumentError("RoundTripCounter: bad port");
  }
  counter->listener_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (counter->listener_ < 0 ||
      bind(counter->listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(counter->listener_, 16) != 0 ||
      getsockname(counter->listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("RoundTripCounter: listen: ", strerror(errno)));
  }
  counter->url_ =
      absl::StrCat(std::string(m[1]), "127.0.0.1:", ntohs(addr.sin_port), std::string(m[4]));
  counter->acceptor_ = std::thread([c = counter.get()] { c->Accept(); });
  return counter;
}

RoundTripCounter::~RoundTripCounter() {
  stopping_.store(true);
  if (listener_ >= 0) shutdown(listener_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listener_ >= 0) close(listener_);
  absl::MutexLock lock(&mu_);
  for (std::thread& t : relays_) t.join();
}

void RoundTripCounter::Accept() {
  for (;;) {
    pollfd p{listener_, POLLIN, 0};
    if (poll(&p, 1, 100) < 0 || stopping_.load()) return;
    if ((p.revents & POLLIN) == 0) continue;
    int client = accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    absl::MutexLock lock(&mu_);
    relays_.emplace_back([this, client] { Relay(client); });
  }
}

void RoundTripCounter::Relay(int client) {
  int server = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_port_));
  inet_pton(AF_INET, server_host_.c_str(), &addr.sin_addr);
  if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(client);
    if (server >= 0) close(server);
    return;
  }
  ClientParser parser(&round_trips_);
  pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
  char buf[16384];
  for (bool open = true; open;) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2 && open; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t n = recv(fds[i].fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        open = false;
        break;
      }
      if (i == 0) parser.Feed(buf, static_cast<size_t>(n));
      open = WriteAll(fds[1 - i].fd, buf, static_cast<size_t>(n));
    }
  }
  close(client);
  close(server);
}

}  // namespace acmevault::storage::testing
