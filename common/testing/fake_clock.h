// FakeClock: a Clock that moves only when a test says so.
#ifndef ACMEVAULT_COMMON_TESTING_FAKE_CLOCK_H_
#define ACMEVAULT_COMMON_TESTING_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace acmevault::testing {

// Thread-safe. Starts at `start` (by default 2030-01-01T00:00:00Z, a whole second, so times
// survive storage at microsecond precision unchanged).
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1893456000)) : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::testing

#endif  // ACMEVAULT_COMMON_TESTING_FAKE_CLOCK_H_
