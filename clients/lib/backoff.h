// Retry delays: exponential backoff with jitter, from a seeded generator so tests see exact
// delays.
#ifndef ACMEVAULT_CLIENTS_LIB_BACKOFF_H_
#define ACMEVAULT_CLIENTS_LIB_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace acmevault::clients {

struct BackoffPolicy {
  // The first delay's ceiling; each later ceiling is `multiplier` times the previous one, up to
  // `max_delay`.
  absl::Duration initial_delay = absl::Milliseconds(250);
  absl::Duration max_delay = absl::Seconds(10);
  double multiplier = 2;
};

// Not thread-safe.
class Backoff {
 public:
  // `seed` 0: a random seed.
  explicit Backoff(BackoffPolicy policy, uint64_t seed = 0);

  // The next delay: uniform between half the current ceiling and the ceiling ("equal jitter":
  // clients that failed together spread out, and none retries at once), then raises the
  // ceiling.
  absl::Duration Next();
  // Back to the initial ceiling (after a success).
  void Reset() { ceiling_ = policy_.initial_delay; }

 private:
  BackoffPolicy policy_;
  absl::Duration ceiling_;
  std::mt19937_64 random_;
};

}  // namespace acmevault::clients

#endif  // ACMEVAULT_CLIENTS_LIB_BACKOFF_H_
