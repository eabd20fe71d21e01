#include "service/policy_scheduler.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/log.h"
#include "service/renewal_policy.h"
#include "service/required.h"
#include "service/rotation_policy.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<PolicyScheduler>> PolicyScheduler::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("PolicyScheduler", {{"tenants", options.tenants},
                                                           {"accounts", options.accounts},
                                                           {"certificates", options.certificates},
                                                           {"engine", options.engine},
                                                           {"clock", options.clock}}));
  if (options.scan_interval <= absl::ZeroDuration() ||
      options.scan_jitter < absl::ZeroDuration() ||
      options.rotation_spread < absl::ZeroDuration() ||
      options.renewal_spread < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "PolicyScheduler: scan_interval must be positive, scan_jitter, rotation_spread and "
        "renewal_spread not negative");
  }
  options.scan_jitter = std::min(options.scan_jitter, options.scan_interval);
  return std::unique_ptr<PolicyScheduler>(new PolicyScheduler(std::move(options)));
}

PolicyScheduler::PolicyScheduler(Options options)
    : options_(std::move(options)),
      jitter_(options_.jitter_seed.value_or(std::random_device{}())) {}

PolicyScheduler::~PolicyScheduler() { Stop(); }

absl::Duration PolicyScheduler::Spread(storage::TenantId tenant, int64_t subject,
                                       absl::Duration spread) {
  const int64_t us = absl::ToInt64Microseconds(spread);
  if (us <= 0) return absl::ZeroDuration();
  // A fixed mix (not absl::Hash, which is seeded per process): every replica must agree.
  uint64_t h = static_cast<uint64_t>(tenant) * 0x9E3779B97F4A7C15ull ^
               static_cast<uint64_t>(subject) * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return absl::Microseconds(static_cast<int64_t>(h % static_cast<uint64_t>(us)));
}

absl::Status PolicyScheduler::ScanTenant(const storage::Tenant& tenant, ScanResult& result) {
  const storage::Scope scope{tenant.id, {"policy scheduler", "scan"}};
  ASSIGN_OR_RETURN(std::optional<ActiveAccountKey> active,
                   FindActiveAccountKey(*options_.accounts, scope));
  if (!active) return absl::OkStatus();
  ++result.keys;
  const absl::Time now = options_.clock->Now();
  if (options_.metrics != nullptr) {
    options_.metrics->SetAccountKeyAge(tenant.spec.name, KeyAge(active->key, now));
  }
  if (!DecideRotation(tenant.spec.policy, active->key, now).due) return absl::OkStatus();
  const storage::AccountId id = active->account.id;
  RETURN_IF_ERROR(
      options_.engine
          ->Schedule(scope, storage::NewJob{kRotateJob, absl::StrCat(id),
                                            active->account.directory_url,
                                            now + Spread(tenant.id, id, options_.rotation_spread)})
          .status());
  ++result.rotations_scheduled;
  return absl::OkStatus();
}

absl::Status PolicyScheduler::ScanRenewals(
    const std::map<storage::TenantId, storage::Tenant>& tenants, ScanResult& result) {
  const absl::Time now = options_.clock->Now();
  storage::PageRequest page{"", 1000};
  do {
    ASSIGN_OR_RETURN(storage::Page<storage::DueCertificate> due,
                     options_.certificates->ListCertificatesDueForRenewal(page));
    for (const auto& d : due.items) {
      auto tenant = tenants.find(d.tenant);
      if (tenant == tenants.end()) continue;  // disabled since the tenants were listed
      const storage::Scope scope{d.tenant, {"policy scheduler", "scan"}};
      absl::StatusOr<storage::Certificate> cert =
          options_.certificates->GetCertificate(scope, d.id);
      absl::Status s = cert.status();
      if (s.ok() && cert->has_private_key &&
          DecideRenewal(tenant->second.spec.policy, *cert, std::nullopt, now).due) {
        ++result.certificates_due;
        s = options_.engine
                ->Schedule(scope, storage::NewJob{kRenewJob, absl::StrCat(d.id),
                                                  tenant->second.spec.acme_directory_url,
                                                  now + Spread(d.tenant, d.id,
                                                               options_.renewal_spread)})
                .status();
        if (s.ok()) ++result.renewals_scheduled;
      }
      if (!s.ok()) {
        ++result.errors;
        Log(LogLevel::kWarning, "renewal scan of a certificate failed",
            {{"tenant", tenant->second.spec.name},
             {"certificate", absl::StrCat(d.id)},
             {"status", s.ToString()}});
      }
    }
    page.page_token = due.next_page_token;
  } while (!page.page_token.empty());
  return absl::OkStatus();
}

absl::StatusOr<PolicyScheduler::ScanResult> PolicyScheduler::ScanOnce() {
  ScanResult result;
  std::map<storage::TenantId, storage::Tenant> enabled;
  storage::PageRequest page{"", 1000};
  absl::Status listed = absl::OkStatus();
  do {
    absl::StatusOr<storage::Page<storage::Tenant>> tenants = options_.tenants->ListTenants(page);
    if (!tenants.ok()) {
      listed = tenants.status();
      break;
    }
    for (const auto& tenant : tenants->items) {
      if (tenant.disabled_at.has_value()) continue;
      ++result.tenants;
      enabled.emplace(tenant.id, tenant);
      if (absl::Status s = ScanTenant(tenant, result); !s.ok()) {
        ++result.errors;
        Log(LogLevel::kWarning, "policy scan of a tenant failed",
            {{"tenant", tenant.spec.name}, {"status", s.ToString()}});
      }
    }
    page.page_token = tenants->next_page_token;
  } while (!page.page_token.empty());
  if (listed.ok()) {
    if (absl::Status s = ScanRenewals(enabled, result); !s.ok()) {
      ++result.errors;
      Log(LogLevel::kWarning, "renewal scan failed", {{"status", s.ToString()}});
    } else if (options_.metrics != nullptr) {
      options_.metrics->SetCertificatesDue(result.certificates_due);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    health_.last_scan = options_.clock->Now();
    health_.last_status = listed;
  }
  if (!listed.ok()) return listed;
  return result;
}

absl::Status PolicyScheduler::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("PolicyScheduler: started before");
  started_ = true;
  health_.running = true;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void PolicyScheduler::Loop() {
  auto jittered = [this](absl::Duration base) {
    absl::MutexLock lock(&mu_);
    const int64_t us = absl::ToInt64Microseconds(options_.scan_jitter);
    if (us <= 0) return base;
    return base - absl::Microseconds(static_cast<int64_t>(jitter_() % static_cast<uint64_t>(us)));
  };
  absl::Duration wait = jittered(options_.scan_jitter);
  while (!stop_.WaitForNotificationWithTimeout(wait)) {
    absl::StatusOr<ScanResult> r = ScanOnce();
    if (!r.ok()) {
      Log(LogLevel::kWarning, "policy scan failed", {{"status", r.status().ToString()}});
    } else if (r->rotations_scheduled > 0 || r->renewals_scheduled > 0) {
      Log(LogLevel::kInfo, "policy scan scheduled jobs",
          {{"tenants", absl::StrCat(r->tenants)},
           {"rotations", absl::StrCat(r->rotations_scheduled)},
           {"renewals", absl::StrCat(r->renewals_scheduled)}});
    }
    wait = jittered(options_.scan_interval);
  }
}

void PolicyScheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_) return;
    health_.running = false;
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

PolicyScheduler::Health PolicyScheduler::health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

}  // namespace acmevault::service
