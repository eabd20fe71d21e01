#include "service/certificate_cache.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "service/required.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<CertificateCache>> CertificateCache::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("CertificateCache", {{"clock", options.clock}}));
  if (options.ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("CertificateCache: ttl must be positive");
  }
  if (options.max_bytes == 0) {
    return absl::InvalidArgumentError("CertificateCache: max_bytes must be positive");
  }
  return std::unique_ptr<CertificateCache>(new CertificateCache(options));
}

std::string CertificateCache::SerialKey(absl::string_view serial) {
  return absl::StrCat("serial:", serial);
}

std::string CertificateCache::IdentifiersKey(std::vector<std::string> identifiers) {
  std::sort(identifiers.begin(), identifiers.end());
  identifiers.erase(std::unique(identifiers.begin(), identifiers.end()), identifiers.end());
  return absl::StrCat("names:", absl::StrJoin(identifiers, ","));
}

namespace {

// What an entry holding `c` is counted for: its strings and the entry itself.
size_t EntryBytes(const storage::Certificate& c) {
  size_t n = sizeof(c) + 64 + c.chain_pem.size() + c.serial.size() + c.replaces_serial.size();
  for (const std::string& id : c.identifiers) n += id.size() + sizeof(id);
  return n;
}

}  // namespace

void CertificateCache::Count(absl::string_view result) const {
  if (options_.metrics != nullptr) options_.metrics->RecordCertificateCacheLookup(result);
}

void CertificateCache::Erase(Entries::iterator it) {
  auto tenant = index_.find(it->tenant);
  tenant->second.erase(it->key);
  if (tenant->second.empty()) index_.erase(tenant);
  bytes_ -= it->bytes;
  lru_.erase(it);
}

absl::StatusOr<storage::Certificate> CertificateCache::Get(
    storage::TenantId tenant, absl::string_view key,
    absl::FunctionRef<absl::StatusOr<storage::Certificate>()> read) {
  uint64_t changes;
  {
    absl::MutexLock lock(&mu_);
    if (auto of_tenant = index_.find(tenant); of_tenant != index_.end()) {
      if (auto found = of_tenant->second.find(key); found != of_tenant->second.end()) {
        Entries::iterator it = found->second;
        if (it->expires > options_.clock->Now()) {
          lru_.splice(lru_.begin(), lru_, it);
          Count("hit");
          return it->certificate;
        }
        Erase(it);
      }
    }
    changes = changes_;
  }
  Count("miss");
  absl::StatusOr<storage::Certificate> found = read();
  if (!found.ok()) return found;
  const size_t bytes = key.size() + EntryBytes(*found);
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  const absl::Time expires = std::min(now + options_.ttl, found->not_after);
  if (changes != changes_ || expires <= now || bytes > options_.max_bytes) return found;
  if (auto of_tenant = index_.find(tenant); of_tenant != index_.end()) {
    if (auto old = of_tenant->second.find(key); old != of_tenant->second.end()) {
      Erase(old->second);
    }
  }
  lru_.push_front(Entry{tenant, std::string(key), expires, bytes, *found});
  index_[tenant][lru_.front().key] = lru_.begin();
  bytes_ += bytes;
  while (bytes_ > options_.max_bytes) Erase(std::prev(lru_.end()));
  return found;
}

void CertificateCache::Invalidate(storage::TenantId tenant) {
  absl::MutexLock lock(&mu_);
  ++changes_;
  if (tenant == 0) {
    lru_.clear();
    index_.clear();
    bytes_ = 0;
    return;
  }
  auto of_tenant = index_.find(tenant);
  if (of_tenant == index_.end()) return;
  for (auto& [key, it] : of_tenant->second) {
    bytes_ -= it->bytes;
    lru_.erase(it);
  }
  index_.erase(of_tenant);
}

absl::StatusOr<std::unique_ptr<storage::JobWaker>> CertificateCache::Follow(
    storage::JobStore& store, std::function<void(storage::TenantId)> heard) {
  storage::JobWakeups wakeups;
  wakeups.certificates_changed = [this, heard = std::move(heard)](storage::TenantId tenant) {
    Invalidate(tenant);
    if (heard) heard(tenant);
  };
  return store.WatchJobs(std::move(wakeups));
}

size_t CertificateCache::size() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

size_t CertificateCache::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace acmevault::service
