#include "storage/postgres_listener.h"

#include <pqxx/pqxx>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace acmevault::storage {
namespace {

bool ValidChannel(const std::string& channel) {
  if (channel.empty() || channel.size() > 63 || absl::ascii_isdigit(channel[0])) return false;
  return std::all_of(channel.begin(), channel.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
  });
}

// Forwards one channel's notifications. libpqxx 6 delivers them only to receivers; creating one
// sends LISTEN.
class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& connection, const std::string& channel,
           const PostgresListenerOptions& options)
      : pqxx::notification_receiver(connection, channel), options_(options) {}

  void operator()(const std::string& payload, int) override {
    options_.on_notify(channel(), payload);
  }

 private:
  const PostgresListenerOptions& options_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresListener>> PostgresListener::Start(
    PostgresListenerOptions options) {
  if (options.url.empty()) return absl::InvalidArgumentError("listener URL is empty");
  if (options.channels.empty()) return absl::InvalidArgumentError("listener has no channel");
  for (const std::string& channel : options.channels) {
    if (!ValidChannel(channel)) {
      return absl::InvalidArgumentError(absl::StrCat("bad channel name \"", channel, "\""));
    }
  }
  if (!options.on_notify) return absl::InvalidArgumentError("listener has no on_notify");
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff || options.poll <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("listener durations must be positive");
  }
  auto listener = std::unique_ptr<PostgresListener>(new PostgresListener(std::move(options)));
  listener->thread_ = std::thread([l = listener.get()] { l->Run(); });
  return listener;
}

PostgresListener::~PostgresListener() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

bool PostgresListener::WaitForConnections(int connections, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return connections_ >= connections && backend_pid_ != 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

int PostgresListener::connections() const {
  absl::MutexLock lock(&mu_);
  return connections_;
}

int PostgresListener::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

int PostgresListener::backend_pid() const {
  absl::MutexLock lock(&mu_);
  return backend_pid_;
}

void PostgresListener::Run() {
  absl::Duration backoff = options_.initial_backoff;
  while (!stop_.HasBeenNotified()) {
    int connected_before = 0;
    {
      absl::MutexLock lock(&mu_);
      connected_before = connections_;
    }
    try {
      Serve();
    } catch (...) {
      // A refused or lost connection, or an exception out of on_connect: try again.
    }
    {
      absl::MutexLock lock(&mu_);
      backend_pid_ = 0;
      if (stop_.HasBeenNotified()) break;
      ++failures_;
      // A connection that was up starts the backoff afresh.
      if (connections_ != connected_before) backoff = options_.initial_backoff;
    }
    if (stop_.WaitForNotificationWithTimeout(backoff)) break;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

void PostgresListener::Serve() {
  pqxx::connection connection(options_.url);
  std::vector<std::unique_ptr<Receiver>> receivers;
  // Dropped before the receivers: a receiver going away on a live connection sends UNLISTEN,
  // and on a broken one libpqxx would first reconnect to send it.
  struct Disconnect {
    pqxx::connection& c;
    std::vector<std::unique_ptr<Receiver>>& r;
    ~Disconnect() {
      c.disconnect();
      r.clear();
    }
  } disconnect{connection, receivers};
  for (const std::string& channel : options_.channels) {
    receivers.push_back(std::make_unique<Receiver>(connection, channel, options_));
  }
  // libpqxx swallows a connection lost during LISTEN; it shows as a connection not open.
  if (!connection.is_open()) throw pqxx::broken_connection("connection lost while LISTENing");
  const int pid = connection.backendpid();
  // Announced before it is counted, so that WaitForConnections returns only once on_connect
  // has run (a caller waiting for the connection may rely on what on_connect did).
  if (options_.on_connect) options_.on_connect();
  {
    absl::MutexLock lock(&mu_);
    ++connections_;
    backend_pid_ = pid;
  }
  const int64_t poll_us = absl::ToInt64Microseconds(options_.poll);
  while (!stop_.HasBeenNotified()) {
    connection.await_notification(poll_us / 1000000, poll_us % 1000000);
    // libpqxx 6 reconnects silently when it finds the connection closed (and re-LISTENs), but
    // what was sent in between is lost: a new backend counts as a lost connection.
    if (!connection.is_open() || connection.backendpid() != pid) {
      throw pqxx::broken_connection("listener connection lost");
    }
  }
}

}  // namespace acmevault::storage
