// The HTTP-01 responder built into acmevaultd (RFC 8555 §8.3): a plain-HTTP listener answering
// GET /.well-known/acme-challenge/<token> with the key authorization recorded for that token.
// It keeps no state: answers come from the shared challenges table, so whichever replica the CA
// reaches can answer. Thread-safe; serves on its own threads (civetweb).
#ifndef ACMEVAULT_SERVICE_HTTP01_RESPONDER_H_
#define ACMEVAULT_SERVICE_HTTP01_RESPONDER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/store.h"

struct mg_context;
struct mg_connection;

namespace acmevault::service {

class Http01Responder {
 public:
  struct Options {
    // "127.0.0.1:0" picks a free port (see port()).
    std::string listen_address = "127.0.0.1:0";
    int threads = 4;
    // Borrowed; required. A token it does not know is answered 404; any other error 503, so
    // the CA retries.
    storage::ChallengeStore* challenges = nullptr;
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
