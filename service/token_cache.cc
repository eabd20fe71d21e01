#include "service/token_cache.h"

#include <algorithm>

#include "common/status_macros.h"
#include "service/required.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<TokenCache>> TokenCache::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("TokenCache", {{"clock", options.clock}}));
  if (options.positive_ttl < absl::ZeroDuration() || options.negative_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("TokenCache: TTLs must not be negative");
  }
  if (options.unknown_per_peer_per_second < 0 ||
      (options.unknown_per_peer_per_second > 0 && options.unknown_per_peer_burst < 1)) {
    // A burst below one would refuse every token not yet cached, real ones too.
    return absl::InvalidArgumentError(
        "TokenCache: the unknown-token budget needs a rate of 0 or more and a burst of 1 or more");
  }
  if (options.max_entries == 0) {
    return absl::InvalidArgumentError("TokenCache: max_entries must be positive");
  }
  return std::unique_ptr<TokenCache>(new TokenCache(options));
}

const TokenCache::Entry* TokenCache::Lru::Find(absl::string_view digest, absl::Time now) {
  auto it = index_.find(digest);
  if (it == index_.end()) return nullptr;
  if (it->second->expires <= now) {
    order_.erase(it->second);
    index_.erase(it);
    return nullptr;
  }
  order_.splice(order_.begin(), order_, it->second);
  return &*it->second;
}

void TokenCache::Lru::Put(Entry entry) {
  Erase(entry.digest);
  order_.push_front(std::move(entry));
  index_[order_.front().digest] = order_.begin();
  while (order_.size() > max_) {
    index_.erase(order_.back().digest);
    order_.pop_back();
  }
}

void TokenCache::Lru::Erase(absl::string_view digest) {
  auto it = index_.find(digest);
  if (it == index_.end()) return;
  order_.erase(it->second);
  index_.erase(it);
}

void TokenCache::Count(absl::string_view result) const {
  if (options_.metrics != nullptr) options_.metrics->RecordTokenCacheLookup(result);
}

namespace {

// The address of gRPC's peer string: "ipv4:192.0.2.7:40001" -> "ipv4:192.0.2.7",
// "ipv6:[2001:db8::1]:443" -> "ipv6:[2001:db8::1]"; anything else as it is.
absl::string_view PeerAddress(absl::string_view peer) {
  const size_t colon = peer.rfind(':');
  // No port: no second colon ("unix:/path"), or an IPv6 address without one.
  if (colon == absl::string_view::npos || colon == peer.find(':') || peer.back() == ']') {
    return peer;
  }
  return peer.substr(0, colon);
}

}  // namespace

TokenCache::Budget& TokenCache::BudgetOf(absl::string_view address, absl::Time now) {
  const double burst = options_.unknown_per_peer_burst;
  auto it = budgets_.find(address);
  if (it == budgets_.end()) {
    if (budgets_.size() >= options_.max_entries) {
      // Full budgets carry nothing worth keeping; drop them (all of them if none is full).
      absl::erase_if(budgets_, [&](const auto& entry) {
        const Budget& b = entry.second;
        return b.tokens + absl::ToDoubleSeconds(now - b.updated) *
                              options_.unknown_per_peer_per_second >=
               burst;
      });
      if (budgets_.size() >= options_.max_entries) budgets_.clear();
    }
    it = budgets_.emplace(std::string(address), Budget{burst, now}).first;
  }
  Budget& b = it->second;
  if (now > b.updated) {
    b.tokens = std::min(
        burst, b.tokens + absl::ToDoubleSeconds(now - b.updated) *
                              options_.unknown_per_peer_per_second);
    b.updated = now;
  }
  return b;
}

absl::StatusOr<storage::Identity> TokenCache::Get(
    absl::string_view digest, absl::string_view peer,
    absl::FunctionRef<absl::StatusOr<storage::Identity>()> lookup) {
  const absl::string_view address = PeerAddress(peer);
  const bool budgeted = !address.empty() && options_.unknown_per_peer_per_second > 0;
  uint64_t forgets;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock->Now();
    if (const Entry* hit = positive_.Find(digest, now)) {
      Count("hit");
      return *hit->identity;
    }
    if (negative_.Find(digest, now) != nullptr) {
      Count("negative_hit");
      return absl::NotFoundError("unknown, revoked or expired token");
    }
    if (budgeted && BudgetOf(address, now).tokens < 1) {
      Count("throttled");
      return absl::ResourceExhaustedError(
          "too many unknown bearer tokens from this address; try again in a few seconds");
    }
    forgets = forgets_;
  }
  Count("miss");
  absl::StatusOr<storage::Identity> found = lookup();
  if (!found.ok() && !absl::IsNotFound(found.status())) return found;
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  if (!found.ok()) {
    if (budgeted) BudgetOf(address, now).tokens -= 1;
    if (options_.negative_ttl > absl::ZeroDuration()) {
      negative_.Put({std::string(digest), now + options_.negative_ttl, std::nullopt});
    }
    return found;
  }
  absl::Time expires = now + options_.positive_ttl;
  if (found->expires_at.has_value()) expires = std::min(expires, *found->expires_at);
  if (forgets == forgets_ && expires > now) {
    negative_.Erase(digest);
    positive_.Put({std::string(digest), expires, *found});
  }
  return found;
}

void TokenCache::Forget(storage::IdentityId identity) {
  absl::MutexLock lock(&mu_);
  ++forgets_;
  positive_.EraseIf([identity](const Entry& e) { return e.identity->id == identity; });
}

void TokenCache::Invalidate(const storage::Revocation& revocation) {
  if (revocation.identity.has_value()) return Forget(*revocation.identity);
  absl::MutexLock lock(&mu_);
  ++forgets_;
  positive_.EraseIf([&revocation](const Entry& e) {
    return revocation.tenant == 0 || e.identity->tenant == revocation.tenant;
  });
}

absl::StatusOr<std::unique_ptr<storage::JobWaker>> TokenCache::Follow(
    storage::JobStore& store, std::function<void(const storage::Revocation&)> heard) {
  storage::JobWakeups wakeups;
  wakeups.identities_revoked = [this, heard = std::move(heard)](const storage::Revocation& r) {
    Invalidate(r);
    if (heard) heard(r);
  };
  return store.WatchJobs(std::move(wakeups));
}

size_t TokenCache::size() const {
  absl::MutexLock lock(&mu_);
  return positive_.size() + negative_.size();
}

}  // namespace acmevault::service
