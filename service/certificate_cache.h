// The certificates GetCertificate read, kept in memory per replica, so that a repeated read
// (a sidecar asking for its certificate again) costs no database round trip. Thread-safe.
//
// An entry is one read's answer: the certificate found for a tenant by serial, or the current
// one for an identifier set. Every write to a tenant's certificates, on any replica, drops all
// of that tenant's entries (Follow: the store's certificates_changed, PostgreSQL's NOTIFY; the
// replica that wrote drops them before its write returns, so its own next read sees the write).
// An entry also ends at its certificate's not_after (a current certificate is live only until
// then) and after `ttl`, which bounds how long a read can miss a change while the
// notifications' connection is down (everything is dropped once it is back). Misses (NOT_FOUND)
// are not kept: the first read after an issuance must find the certificate.
#ifndef ACMEVAULT_SERVICE_CERTIFICATE_CACHE_H_
#define ACMEVAULT_SERVICE_CERTIFICATE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

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

class CertificateCache {
 public:
  struct Options {
    // "Now" for entry lifetimes. Borrowed; required.
    const Clock* clock = Clock::Real();
    // The longest an entry is kept without a change being heard.
    absl::Duration ttl = absl::Seconds(30);
    // The most memory the entries' certificates (chain PEM and identifiers, roughly) take; the
    // least recently used goes first. A certificate larger than this is never kept.
    size_t max_bytes = size_t{16} << 20;
    // acmevault_certificate_cache_lookups_total{result}. Borrowed; optional.
    Metrics* metrics = nullptr;
  };
  // INVALID_ARGUMENT for a missing clock, a non-positive ttl or max_bytes 0.
  static absl::StatusOr<std::unique_ptr<CertificateCache>> Create(Options options);

  // The answer kept for `key` of `tenant` while it is fresh, else `read`'s (the store's), which
  // is kept when it is a certificate and no change of the tenant was heard while it ran.
  // `key` names the read: "serial:<serial>" or "names:<sorted identifiers>" (SerialKey,
  // IdentifiersKey).
  absl::StatusOr<storage::Certificate> Get(
      storage::TenantId tenant, absl::string_view key,
      absl::FunctionRef<absl::StatusOr<storage::Certificate>()> read);
  static std::string SerialKey(absl::string_view serial);
  // Order and repeats do not matter: the store's current certificate is for the set.
  static std::string IdentifiersKey(std::vector<std::string> identifiers);

  // Drops every entry of `tenant`; 0: every entry.
  void Invalidate(storage::TenantId tenant);
  // Calls Invalidate for every change `store` reports (any replica's), then `heard` if given
  // (tests wait on it), until the returned waker is destroyed; destroy it before the cache.
  absl::StatusOr<std::unique_ptr<storage::JobWaker>> Follow(
      storage::JobStore& store, std::function<void(storage::TenantId)> heard = nullptr);

  // Entries held, and the bytes they are counted for (for tests and metrics).
  size_t size() const;
  size_t bytes() const;

 private:
  struct Entry {
    storage::TenantId tenant;
    std::string key;
    absl::Time expires;
    size_t bytes;
    storage::Certificate certificate;
  };
  using Entries = std::list<Entry>;

  explicit CertificateCache(Options options) : options_(options) {}
  void Count(absl::string_view result) const;
  void Erase(Entries::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  // Most recently used at the front.
  Entries lru_ ABSL_GUARDED_BY(mu_);
  // By tenant, then key.
  absl::flat_hash_map<storage::TenantId, absl::flat_hash_map<std::string, Entries::iterator>> index_
      ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Incremented by every Invalidate, so a read that raced one does not keep what it found.
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_CERTIFICATE_CACHE_H_
