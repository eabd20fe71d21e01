// A short-lived, bounded cache of bearer-token lookups, so that RPCs repeating a token (a real
// one or a well-formed bogus one) do not each cost a database round trip. Entries are keyed by
// the token's digest (TokenDigest), never by the token. Thread-safe.
//
// A positive entry (the token's identity) is trusted for `positive_ttl`, and never past the
// token's own expiry; a negative entry (the store knows no live token with that digest) for
// `negative_ttl`. Forget drops an identity's entries at once: RevokeToken on this replica. Every
// other replica drops them when the store's notification of the revocation arrives (Follow;
// PostgreSQL: NOTIFY, typically within milliseconds), as it drops a disabled tenant's. While
// the notifications' connection is down they are lost, so a revocation then takes effect within
// positive_ttl, and every known token is dropped once the connection is back.
#ifndef ACMEVAULT_SERVICE_TOKEN_CACHE_H_
#define ACMEVAULT_SERVICE_TOKEN_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "service/metrics.h"
#include "storage/store.h"
#include "storage/types.h"

namespace acmevault::service {

class TokenCache {
 public:
  struct Options {
    // "Now" for entry lifetimes and token expiry. Borrowed; required.
    const Clock* clock = Clock::Real();
    // How long a token the store knew is trusted without asking again.
    absl::Duration positive_ttl = absl::Seconds(5);
    // How long a digest the store did not know is refused without asking again.
    absl::Duration negative_ttl = absl::Seconds(2);
    // The most entries of each kind; the least recently used goes first. Bounded apart, so a
    // flood of bogus tokens cannot push out the tokens in use.
    size_t max_entries = 10000;
    // Store lookups that found no token, budgeted per peer address (a token bucket): a peer
    // sending ever new bogus tokens, which the negative entries never catch, costs at most
    // `unknown_per_peer_burst` lookups at once and `unknown_per_peer_per_second` after. Past
    // that its unknown tokens are refused without a lookup. 0 per second: no budget; else the
    // burst must be at least 1.
    double unknown_per_peer_per_second = 20;
    int unknown_per_peer_burst = 100;
    // acmevault_token_cache_lookups_total{result}. Borrowed; optional.
    Metrics* metrics = nullptr;
  };
  // INVALID_ARGUMENT for a missing clock, a negative TTL or budget, or max_entries 0.
  static absl::StatusOr<std::unique_ptr<TokenCache>> Create(Options options);

  // The identity behind `digest`: the cached answer while it is fresh, else `lookup`'s (the
  // store's), which is kept when it is an identity or NOT_FOUND (not on other errors, which
  // the caller should retry). A positive answer is not kept when Forget ran during `lookup`.
  // `peer` (gRPC's "ipv4:ADDRESS:PORT"; empty: no budget) pays for a lookup that finds
  // nothing; while its address's budget is spent, RESOURCE_EXHAUSTED without a lookup.
  absl::StatusOr<storage::Identity> Get(
      absl::string_view digest, absl::string_view peer,
      absl::FunctionRef<absl::StatusOr<storage::Identity>()> lookup);
  absl::StatusOr<storage::Identity> Get(
      absl::string_view digest, absl::FunctionRef<absl::StatusOr<storage::Identity>()> lookup) {
    return Get(digest, "", lookup);
  }

  // Drops every entry for `identity` (it was revoked here).
  void Forget(storage::IdentityId identity);
  // Drops what `revocation` made stale: the identity's entries, every entry of its tenant
  // (disabled), or, for tenant 0 (revocations may have been missed), every known token.
  void Invalidate(const storage::Revocation& revocation);
  // Calls Invalidate for every revocation `store` reports (any replica's), then `heard` if
  // given (tests wait on it), until the returned waker is destroyed; destroy it before the
  // cache.
  absl::StatusOr<std::unique_ptr<storage::JobWaker>> Follow(
      storage::JobStore& store, std::function<void(const storage::Revocation&)> heard = nullptr);

  // Entries currently held, positive and negative (for tests and metrics).
  size_t size() const;

 private:
  // One kind of entry, least recently used at the back.
  struct Entry {
    std::string digest;
    absl::Time expires;
    std::optional<storage::Identity> identity;  // None: negative.
  };
  class Lru {
   public:
    explicit Lru(size_t max) : max_(max) {}
    // The live entry for `digest`, moved to the front; null (and dropped) once expired.
    const Entry* Find(absl::string_view digest, absl::Time now);
    void Put(Entry entry);
    void Erase(absl::string_view digest);
    template <typename Pred>
    void EraseIf(Pred pred) {
      for (auto it = order_.begin(); it != order_.end();) {
        if (pred(*it)) {
          index_.erase(it->digest);
          it = order_.erase(it);
        } else {
          ++it;
        }
      }
    }
    size_t size() const { return order_.size(); }

   private:
    const size_t max_;
    std::list<Entry> order_;
    absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_;
  };

  // A peer address's budget of unknown-token lookups.
  struct Budget {
    double tokens;
    absl::Time updated;
  };
  // The address's budget refilled to `now`; held in `budgets_`, bounded by max_entries.
  Budget& BudgetOf(absl::string_view address, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  explicit TokenCache(Options options)
      : options_(options), positive_(options.max_entries), negative_(options.max_entries) {}
  void Count(absl::string_view result) const;

  const Options options_;
  mutable absl::Mutex mu_;
  Lru positive_ ABSL_GUARDED_BY(mu_);
  Lru negative_ ABSL_GUARDED_BY(mu_);
  // Incremented by every Forget, so a lookup that raced one does not cache what it found.
  uint64_t forgets_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, Budget> budgets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_TOKEN_CACHE_H_
