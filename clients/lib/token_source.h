// Where a client's bearer token comes from: a file, re-read whenever it changes (a token that
// is rotated on disk, e.g. a mounted Kubernetes Secret, takes effect at the next call), or a
// fixed value (the environment).
#ifndef ACMEVAULT_CLIENTS_LIB_TOKEN_SOURCE_H_
#define ACMEVAULT_CLIENTS_LIB_TOKEN_SOURCE_H_

#include <sys/types.h>

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace acmevault::clients {

// Thread-safe.
class TokenSource {
 public:
  // A token read from `path` (surrounding whitespace stripped), re-read when the file's inode,
  // size or modification time changes.
  static TokenSource FromFile(std::string path);
  // A fixed token ("" means none: calls carry no authorization).
  static TokenSource FromValue(std::string token);

  TokenSource(TokenSource&& other);

  // The current token, "" for none. NOT_FOUND naming the file when it cannot be read,
  // FAILED_PRECONDITION naming it when it holds no token. The token never appears in an error.
  absl::StatusOr<std::string> Token() const;

 private:
  TokenSource() = default;

  std::string path_;  // "" for a fixed value.
  mutable absl::Mutex mu_;
  mutable std::string token_ ABSL_GUARDED_BY(mu_);
  // What the file looked like when token_ was read from it.
  mutable ino_t inode_ ABSL_GUARDED_BY(mu_) = 0;
  mutable off_t size_ ABSL_GUARDED_BY(mu_) = -1;
  mutable long mtime_ns_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace acmevault::clients

#endif  // ACMEVAULT_CLIENTS_LIB_TOKEN_SOURCE_H_
