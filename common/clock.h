// Time as a dependency: code that waits, retries, polls or checks expiry takes a Clock so tests
// run without sleeping.
#ifndef ACMEVAULT_COMMON_CLOCK_H_
#define ACMEVAULT_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace acmevault {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Blocks for `d` (returns at once for d <= 0).
  virtual void SleepFor(absl::Duration d) = 0;

  // The process-wide real clock. Never null; not owned by the caller.
  static Clock* Real();
};

}  // namespace acmevault

#endif  // ACMEVAULT_COMMON_CLOCK_H_
