// PostgresListener: one dedicated libpqxx connection that LISTENs on a few channels and hands
// every notification to a callback, on a thread of its own. The job table's wake-ups
// (JobStore::WatchJobs) run on it; any other channel may too.
//
// PostgreSQL delivers a notification only to sessions LISTENing when it is committed, so
// whatever is sent while the connection is down is lost: after every (re)connection, once LISTEN
// is in force, `on_connect` runs, and its owner looks for what it may have missed (the engine
// claims). A lost connection (a restart, a terminated backend, a network failure) is noticed
// within `poll` and re-established with backoff (doubling from `initial_backoff` to
// `max_backoff`, waiting in real time), for as long as the listener lives.
//
// Thread-safe. The callbacks run on the listener's thread, one at a time; they must not destroy
// the listener. The destructor stops the thread and joins it: no callback runs after it returns.
#ifndef ACMEVAULT_STORAGE_POSTGRES_LISTENER_H_
#define ACMEVAULT_STORAGE_POSTGRES_LISTENER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace acmevault::storage {

struct PostgresListenerOptions {
  std::string url;                    // libpq URL; any role may LISTEN
  std::vector<std::string> channels;  // [a-z_][a-z0-9_]*, at least one
  // Every notification on one of the channels: its channel and payload.
  std::function<void(const std::string& channel, const std::string& payload)> on_notify;
  // After each successful connection, LISTEN in force. May be empty.
  std::function<void()> on_connect;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // How long one wait for a notification lasts: the longest a lost connection or a stop goes
  // unnoticed.
  absl::Duration poll = absl::Milliseconds(200);
};

class PostgresListener {
 public:
  // Starts the thread, which connects in the background (Start does not wait for it).
  // INVALID_ARGUMENT for an empty URL, no channels, a malformed channel name, no on_notify, or
  // non-positive durations.
  static absl::StatusOr<std::unique_ptr<PostgresListener>> Start(PostgresListenerOptions options);
  ~PostgresListener();

  PostgresListener(const PostgresListener&) = delete;
  PostgresListener& operator=(const PostgresListener&) = delete;

  // Waits (in real time, at most `timeout`) until the listener has connected at least
  // `connections` times in all, each announced (`on_connect` has returned), and is connected
  // now. For tests and start-up checks.
  bool WaitForConnections(int connections, absl::Duration timeout) const;
  // Connections made so far, and attempts that failed or connections that were lost.
  int connections() const;
  int failures() const;
  // The server process of the current connection, 0 while disconnected (tests terminate it).
  int backend_pid() const;

 private:
  explicit PostgresListener(PostgresListenerOptions options) : options_(std::move(options)) {}
  void Run();
  // One connection's life: connect, LISTEN, deliver until it breaks or the listener stops.
  // Returns normally on stop; throws on a connection failure.
  void Serve();

  const PostgresListenerOptions options_;
  absl::Notification stop_;
  mutable absl::Mutex mu_;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  int backend_pid_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace acmevault::storage

#endif  // ACMEVAULT_STORAGE_POSTGRES_LISTENER_H_
