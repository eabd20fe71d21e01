// PublishedAnswers: the HTTP-01 answers this replica published (storage::ChallengeStore holds
// them for every replica), kept in memory so that the responder answers the CA's requests for
// them without a database round trip (at Pebble, three requests per challenge). The store stays
// the source of truth: a token not here is looked up there, so a CA request that reaches
// another replica, or this one after a restart, is answered the same. An answer stays here until
// the order's step removes it or `ttl` passes. Thread-safe.
#ifndef ACMEVAULT_SERVICE_PUBLISHED_ANSWERS_H_
#define ACMEVAULT_SERVICE_PUBLISHED_ANSWERS_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace acmevault::service {

class PublishedAnswers {
 public:
  struct Options {
    const Clock* clock = Clock::Real();
    // How long an answer is kept when no step removes it (the order's job moved to another
    // replica, which cleans up there).
    absl::Duration ttl = absl::Hours(1);
    // The most answers kept; the oldest go first beyond it.
    size_t capacity = 100000;
  };
  PublishedAnswers() : PublishedAnswers(Options{}) {}
  explicit PublishedAnswers(Options options) : options_(options) {}

  // After the answer was stored (ChallengeStore): it may be served from here.
  void Add(absl::string_view token, absl::string_view key_authorization);
  // Before (or when) the stored answer is removed.
  void Remove(absl::string_view token);
  // The key authorization published here for `token`, if any and not expired.
  std::optional<std::string> Find(absl::string_view token);
  size_t size();

 private:
  struct Entry {
    std::string key_authorization;
    absl::Time added;
  };
  const Options options_;
  absl::Mutex mu_;
  std::map<std::string, Entry, std::less<>> answers_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, std::string> by_age_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_PUBLISHED_ANSWERS_H_
