#include "service/published_answers.h"

namespace acmevault::service {

void PublishedAnswers::Add(absl::string_view token, absl::string_view key_authorization) {
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  // Expired or beyond the capacity, oldest first (by_age_ has one entry per answer).
  while (!by_age_.empty() && (now - by_age_.begin()->first > options_.ttl ||
                              answers_.size() >= options_.capacity)) {
    auto oldest = by_age_.begin();
    answers_.erase(oldest->second);
    by_age_.erase(oldest);
  }
  auto [it, inserted] = answers_.try_emplace(std::string(token));
  if (!inserted) {
    // Published again (a resumed step): one entry, aged from now.
    auto [from, to] = by_age_.equal_range(it->second.added);
    for (auto a = from; a != to; ++a) {
      if (a->second == token) {
        by_age_.erase(a);
        break;
      }
    }
  }
  it->second = Entry{std::string(key_authorization), now};
  by_age_.emplace(now, std::string(token));
}

void PublishedAnswers::Remove(absl::string_view token) {
  absl::MutexLock lock(&mu_);
  auto it = answers_.find(token);
  if (it == answers_.end()) return;
  auto [from, to] = by_age_.equal_range(it->second.added);
  for (auto a = from; a != to; ++a) {
    if (a->second == token) {
      by_age_.erase(a);
      break;
    }
  }
  answers_.erase(it);
}

std::optional<std::string> PublishedAnswers::Find(absl::string_view token) {
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  auto it = answers_.find(token);
  if (it == answers_.end() || now - it->second.added > options_.ttl) return std::nullopt;
  return it->second.key_authorization;
}

size_t PublishedAnswers::size() {
  absl::MutexLock lock(&mu_);
  return answers_.size();
}

}  // namespace acmevault::service
