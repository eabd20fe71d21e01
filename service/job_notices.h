// JobNotices: where callers wait for the end of a job (an order's completion, a revocation), and
// where that end is announced: in-process by the handler that ended it on this replica, or by
// any replica's job notice (storage::JobStore's `acmevault_job_notices`, delivered through
// Engine::Options::on_notice). Waiters are woken by the notice, never by polling the store.
//
// A caller opens a Watch before it looks at the state it waits for, so that an end announced
// between the look and the wait is not missed. Thread-safe.
#ifndef ACMEVAULT_SERVICE_JOB_NOTICES_H_
#define ACMEVAULT_SERVICE_JOB_NOTICES_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "storage/types.h"

namespace acmevault::service {

class JobNotices {
 public:
  using Key = std::tuple<storage::TenantId, std::string, std::string>;  // tenant, kind, subject

  // Waiting for notices about one job (tenant, kind, subject) from its creation on. Must not
  // outlive the JobNotices that made it.
  class Watch {
   public:
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    // Blocks until a notice for the job arrives that this watch has not returned for yet, until
    // `until` passes on the JobNotices' clock, or until `cancelled` (optional; asked every
    // `cancel_check`) says so. True when a notice arrived.
    bool Wait(absl::Time until, const std::function<bool()>& cancelled = nullptr);

   private:
    friend class JobNotices;
    Watch(JobNotices* notices, Key key, uint64_t seen, bool wake_on_missed, uint64_t missed_seen)
        : notices_(notices),
          key_(std::move(key)),
          seen_(seen),
          wake_on_missed_(wake_on_missed),
          missed_seen_(missed_seen) {}
    JobNotices* const notices_;
    const Key key_;
    uint64_t seen_;
    const bool wake_on_missed_;
    uint64_t missed_seen_;
  };

  // `clock` (borrowed) measures `until`; the waits themselves are real time, sliced by
  // `cancel_check`.
  explicit JobNotices(const Clock* clock = Clock::Real(),
                      absl::Duration cancel_check = absl::Milliseconds(200))
      : clock_(clock), cancel_check_(cancel_check) {}

  // Which notices a new watch counts: those sent after it opened (kFromNow), or every notice
  // sent since the job was made (kSinceCreated) for a caller that opens it right after the
  // transaction that made the job committed: a notice another replica sent in between, when
  // nobody watched, is kept among the last `kRecentUnwatched` unwatched notices and counts.
  enum class From { kFromNow, kSinceCreated };
  static constexpr size_t kRecentUnwatched = 4096;
  // Whether the watch also wakes when notices may have been missed (Notify with tenant 0: the
  // store's listener reconnected, and a job's end may have passed unheard). For a caller that
  // looks again at what it waits for after each wake-up; one that counts a wake-up as the job's
  // end must not ask.
  enum class Missed { kIgnore, kWake };

  std::unique_ptr<Watch> Open(storage::TenantId tenant, const std::string& kind,
                              const std::string& subject, From from = From::kFromNow,
                              Missed missed = Missed::kIgnore);
  // Wakes every watch of the notice's job; a notice of tenant 0 (storage::JobWakeups:
  // missed wake-ups) wakes every watch opened with Missed::kWake. Cheap when nobody watches
  // the job; never blocks long (called on the store's listener thread).
  void Notify(const storage::JobNotice& notice);
  // Notices that found a watcher, for tests.
  int64_t delivered() const;

 private:
  struct Entry {
    int watchers = 0;
    uint64_t notices = 0;
  };

  const Clock* const clock_;
  const absl::Duration cancel_check_;
  mutable absl::Mutex mu_;
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Notices that found no watcher, the last kRecentUnwatched of them (oldest first in order).
  std::map<Key, uint64_t> recent_ ABSL_GUARDED_BY(mu_);
  std::deque<Key> recent_order_ ABSL_GUARDED_BY(mu_);
  int64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t missed_ ABSL_GUARDED_BY(mu_) = 0;  // notices of tenant 0 so far
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_JOB_NOTICES_H_
