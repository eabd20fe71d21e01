#include "service/job_notices.h"

#include <algorithm>
#include <utility>

namespace acmevault::service {

std::unique_ptr<JobNotices::Watch> JobNotices::Open(storage::TenantId tenant,
                                                    const std::string& kind,
                                                    const std::string& subject, From from,
                                                    Missed missed) {
  Key key{tenant, kind, subject};
  absl::MutexLock lock(&mu_);
  Entry& e = entries_[key];
  if (auto it = recent_.find(key); it != recent_.end()) {
    // Sent while nobody watched; counted for a watch that asks for them from now on.
    e.notices += it->second;
    recent_.erase(it);
  }
  ++e.watchers;
  // A job made just now has no notice from before its creation: every one counted is news.
  const uint64_t seen = from == From::kSinceCreated ? 0 : e.notices;
  return std::unique_ptr<Watch>(
      new Watch(this, std::move(key), seen, missed == Missed::kWake, missed_));
}

JobNotices::Watch::~Watch() {
  absl::MutexLock lock(&notices_->mu_);
  auto it = notices_->entries_.find(key_);
  if (it != notices_->entries_.end() && --it->second.watchers == 0) notices_->entries_.erase(it);
}

bool JobNotices::Watch::Wait(absl::Time until, const std::function<bool()>& cancelled) {
  JobNotices& n = *notices_;
  while (true) {
    {
      absl::MutexLock lock(&n.mu_);
      auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(n.mu_) {
        return n.entries_.at(key_).notices != seen_ ||
               (wake_on_missed_ && n.missed_ != missed_seen_);
      };
      const absl::Duration left = until - n.clock_->Now();
      if (!arrived() && left > absl::ZeroDuration()) {
        n.mu_.AwaitWithTimeout(absl::Condition(&arrived), std::min(left, n.cancel_check_));
      }
      if (arrived()) {
        seen_ = n.entries_.at(key_).notices;
        missed_seen_ = n.missed_;
        return true;
      }
      if (until <= n.clock_->Now()) return false;
    }
    // Asked without the lock: `cancelled` may take locks of its own.
    if (cancelled && cancelled()) return false;
  }
}

void JobNotices::Notify(const storage::JobNotice& notice) {
  absl::MutexLock lock(&mu_);
  if (notice.tenant == 0) {
    ++missed_;
    return;
  }
  Key key{notice.tenant, notice.kind, notice.subject};
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    auto [kept, fresh] = recent_.try_emplace(key, 0);
    ++kept->second;
    if (fresh) recent_order_.push_back(std::move(key));
    while (recent_order_.size() > kRecentUnwatched) {
      recent_.erase(recent_order_.front());  // possibly already taken by a watch
      recent_order_.pop_front();
    }
    return;
  }
  ++it->second.notices;
  ++delivered_;
}

int64_t JobNotices::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

}  // namespace acmevault::service
