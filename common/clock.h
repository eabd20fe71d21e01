// Clock: where code that compares or records times gets "now", and where code that waits
// (polling, backoff) sleeps, so that leases, expiry, retries and rotation policy are tested with
// a fake clock instead of sleeping (common/testing/fake_clock.h).
#ifndef ACMEVAULT_COMMON_CLOCK_H_
#define ACMEVAULT_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace acmevault {

// Thread-safe: implementations may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Blocks for `d` (returns at once for d <= 0).
  virtual void SleepFor(absl::Duration d) const = 0;

  // The system clock. Never null; lives for the whole process.
  static const Clock* Real();
};

}  // namespace acmevault

#endif  // ACMEVAULT_COMMON_CLOCK_H_
