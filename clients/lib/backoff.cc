#include "clients/lib/backoff.h"

#include <algorithm>

namespace acmevault::clients {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed)
    : policy_(policy),
      ceiling_(policy.initial_delay),
      random_(seed != 0 ? seed : std::random_device{}()) {}

absl::Duration Backoff::Next() {
  absl::Duration ceiling = std::min(ceiling_, policy_.max_delay);
  double fraction = std::uniform_real_distribution<double>(0.5, 1.0)(random_);
  ceiling_ = std::min(ceiling_ * policy_.multiplier, policy_.max_delay);
  return ceiling * fraction;
}

}  // namespace acmevault::clients
