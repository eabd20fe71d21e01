// Test helper: a loopback TCP relay in front of PostgreSQL that counts the client's round trips,
// so tests can hold the store to how often it waits for the server. A round trip is a message
// after which the client waits for an answer: a simple Query ('Q') or a Sync ('S', the end of an
// extended-protocol exchange such as a parameterised or prepared statement). Connection set-up
// (SSL/GSS negotiation, start-up, authentication) is not counted.
//
// Thread-safe. Listens on 127.0.0.1, port 0; each accepted connection is relayed on a thread of
// its own until either side closes. The destructor stops accepting and joins every thread
// once the clients' connections are closed (destroy the pools using it first).
#ifndef ACMEVAULT_STORAGE_TESTING_ROUND_TRIP_COUNTER_H_
#define ACMEVAULT_STORAGE_TESTING_ROUND_TRIP_COUNTER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace acmevault::storage::testing {

class RoundTripCounter {
 public:
  // `url` is a libpq URL "postgresql://user:password@host:port/db"; INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::unique_ptr<RoundTripCounter>> Start(const std::string& url);
  ~RoundTripCounter();

  // `url` with the relay's address in place of the server's.
  const std::string& url() const { return url_; }
  // Round trips counted since the start or the last Reset.
  int round_trips() const { return round_trips_.load(); }
  void Reset() { round_trips_.store(0); }

 private:
  RoundTripCounter() = default;
  void Accept();
  // Relays one client connection (`client`, a socket) to the server.
  void Relay(int client);

  std::string url_, server_host_;
  int server_port_ = 0;
  int listener_ = -1;
  std::atomic<int> round_trips_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> relays_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_ROUND_TRIP_COUNTER_H_
