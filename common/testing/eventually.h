// Waiting in tests for what other threads do (an engine's workers, a replica's scan): polls a
// predicate in real time, bounded, so a test never hangs.
#ifndef ACMEVAULT_COMMON_TESTING_EVENTUALLY_H_
#define ACMEVAULT_COMMON_TESTING_EVENTUALLY_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace acmevault::testing {

// How long Eventually waits by default.
inline constexpr absl::Duration kPatience = absl::Seconds(60);

// Waits in real time until `done` holds (at most `patience`); whether it does.
template <typename Predicate>
bool Eventually(Predicate done, absl::Duration patience = kPatience) {
  const absl::Time deadline = absl::Now() + patience;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace acmevault::testing

#endif  // ACMEVAULT_COMMON_TESTING_EVENTUALLY_H_
