// The HTTP-01 responder built into acmevaultd (RFC 8555 §8.3): a plain-HTTP listener answering
// GET /.well-known/acme-challenge/<token> with the key authorization recorded for that token.
// It keeps no state: answers come from the shared challenges table, so whichever replica the CA
// reaches can answer. Thread-safe; serves on its own threads (civetweb).
//
// civetweb gives each connection a worker thread from its first byte to the answer, so slow or
// idle connections hold workers: the pool is large, and a connection that has not sent its whole
// request within request_timeout loses its worker, however it trickles bytes.
#ifndef ACMEVAULT_SERVICE_HTTP01_RESPONDER_H_
#define ACMEVAULT_SERVICE_HTTP01_RESPONDER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/metrics.h"
#include "service/published_answers.h"
#include "storage/store.h"

struct mg_context;
struct mg_connection;

namespace acmevault::service {

class Http01Responder {
 public:
  // The defaults are ServerConfig.http01's (proto/acmevault/v1/config.proto).
  struct Options {
    // "127.0.0.1:0" picks a free port (see port()).
    std::string listen_address = "127.0.0.1:0";
    // Worker threads: connections served at once.
    int threads = 32;
    // The longest a connection may take to send its whole request (and each part of the
    // answer). A CA sends at once; a client that sends nothing, or trickles, is cut.
    absl::Duration request_timeout = absl::Seconds(5);
    // How long a kept-alive connection may wait for its next request. Every answer closes its
    // connection today, so this bounds only a client that keeps one open regardless.
    absl::Duration keep_alive_timeout = absl::Seconds(1);
    // Accepted connections waiting for a free worker; while it is full no more are accepted
    // (they wait in the kernel's listen backlog).
    int connection_queue = 64;
    // Borrowed; required. A token it does not know is answered 404; any other error 503, so
    // the CA retries.
    storage::ChallengeStore* challenges = nullptr;
    // Borrowed; may be null. Answers this replica published, served without asking the store.
    PublishedAnswers* published = nullptr;
    // Borrowed; may be null. Every answer is counted, by status code.
    Metrics* metrics = nullptr;
  };

  // INVALID_ARGUMENT naming a missing collaborator; UNAVAILABLE when the address cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<Http01Responder>> Start(Options options);
  // Stops serving; in-flight requests finish first.
  ~Http01Responder();

  int port() const { return port_; }
  // Requests answered 200 so far.
  int64_t answered() const;

 private:
  explicit Http01Responder(Options options) : options_(std::move(options)) {}
  static int Handle(::mg_connection* conn, void* self);

  const Options options_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::atomic<int64_t> answered_{0};
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_HTTP01_RESPONDER_H_
