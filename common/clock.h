// Clock: where code that compares or records times gets "now", so that leases, expiry and
// rotation policy are tested with a fake clock instead of sleeping (common/testing/fake_clock.h).
#ifndef ACMEVAULT_COMMON_CLOCK_H_
#define ACMEVAULT_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace acmevault {

// Thread-safe: implementations may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The system clock. Never null; lives for the whole process.
  static const Clock* Real();
};

}  // namespace acmevault

#endif  // ACMEVAULT_COMMON_CLOCK_H_
