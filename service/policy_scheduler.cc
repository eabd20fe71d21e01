#include "service/policy_scheduler.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "acme/problem.h"
#include "common/status_macros.h"
#include "crypto/x509.h"
#include "service/log.h"
#include "service/order_runner.h"
#include "service/renewal_policy.h"
#include "service/required.h"
#include "service/rotation_policy.h"

namespace acmevault::service {

absl::StatusOr<std::unique_ptr<PolicyScheduler>> PolicyScheduler::Create(Options options) {
  RETURN_IF_ERROR(RequireCollaborators("PolicyScheduler", {{"tenants", options.tenants},
                                                           {"accounts", options.accounts},
                                                           {"authorizations",
                                                            options.authorizations},
                                                           {"certificates", options.certificates},
                                                           {"engine", options.engine},
                                                           {"clock", options.clock}}));
  if (options.scan_interval <= absl::ZeroDuration() || options.scan_jitter < absl::ZeroDuration() ||
      options.rotation_spread < absl::ZeroDuration() ||
      options.authorization_sweep_interval < absl::ZeroDuration() ||
      options.authorization_max_pending < absl::ZeroDuration() ||
      options.authorization_max_valid < absl::ZeroDuration() ||
      options.authorization_sweep_limit <= 0 || options.renewal_spread < absl::ZeroDuration() ||
      options.ari_check_interval <= absl::ZeroDuration() ||
      options.crl_check_interval <= absl::ZeroDuration() ||
      options.account_verify_interval < absl::ZeroDuration() ||
      options.ephemeral_account_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "PolicyScheduler: scan_interval, ari_check_interval, crl_check_interval and "
        "authorization_sweep_limit must "
        "be positive, "
        "scan_jitter, rotation_spread, renewal_spread, account_verify_interval, "
        "ephemeral_account_grace and the authorization sweep's durations not negative");
  }
  options.scan_jitter = std::min(options.scan_jitter, options.scan_interval);
  return std::unique_ptr<PolicyScheduler>(new PolicyScheduler(std::move(options)));
}

PolicyScheduler::PolicyScheduler(Options options)
    : options_(std::move(options)),
      jitter_(options_.jitter_seed.value_or(std::random_device{}())) {}

PolicyScheduler::~PolicyScheduler() { Stop(); }

absl::Time PolicyScheduler::NextVerification(storage::TenantId tenant,
                                             storage::AccountId account, absl::Duration interval,
                                             absl::Time now) {
  const absl::Duration offset = Spread(tenant, account, interval);
  const absl::Duration since = now - absl::UnixEpoch() - offset;
  // floor(since / interval) + 1 periods after the offset: strictly after now.
  absl::Duration remainder;
  int64_t n = absl::IDivDuration(since, interval, &remainder);
  if (remainder < absl::ZeroDuration()) --n;  // the quotient was truncated toward zero
  return absl::UnixEpoch() + offset + (n + 1) * interval;
}

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

bool PolicyScheduler::SweepDue(const storage::TenantPolicy& policy,
                               const storage::Authorization& authorization,
                               absl::Duration max_pending, absl::Duration max_valid,
                               absl::Time now) {
  const absl::Duration age = now - authorization.updated_at;
  switch (authorization.record.status) {
    case storage::AuthorizationStatus::kPending:
      return age >= max_pending;
    case storage::AuthorizationStatus::kValid:
      return policy.deactivate_authorizations_after_issuance && age >= max_valid;
    default:
      return false;
  }
}

absl::Status PolicyScheduler::SweepTenant(const storage::Tenant& tenant,
                                          const storage::Scope& scope,
                                          const std::optional<ActiveAccountKey>& active,
                                          ScanResult& result) {
  // One read of the tenant's outstanding authorizations: the gauge counts them all.
  ASSIGN_OR_RETURN(std::vector<storage::Authorization> outstanding,
                   options_.authorizations->ListOutstandingAuthorizations(scope, {}));
  if (options_.metrics != nullptr) {
    options_.metrics->SetAuthorizationsOutstanding(tenant.spec.name,
                                                   static_cast<int64_t>(outstanding.size()));
  }
  const absl::Time now = options_.clock->Now();
  // A hijacked account's authorizations cannot be deactivated (nothing is signed for it; the
  // compromise response reports them): no job for them.
  ASSIGN_OR_RETURN(std::vector<storage::Account> accounts, options_.accounts->ListAccounts(scope));
  std::set<storage::AccountId> hijacked;
  for (const storage::Account& account : accounts) {
    if (account.hijacked_at.has_value()) hijacked.insert(account.id);
  }
  int scheduled = 0;
  for (const storage::Authorization& a : outstanding) {
    if (scheduled >= options_.authorization_sweep_limit) break;
    if (hijacked.count(a.record.account) > 0) continue;
    if (!SweepDue(tenant.spec.policy, a, options_.authorization_max_pending,
                  options_.authorization_max_valid, now)) {
      continue;
    }
    // Per-CA bounds need the directory; only the account we know has it at hand. Another
    // account's job ends without a request anyway.
    const std::string ca = active.has_value() && active->account.id == a.record.account
                               ? active->account.directory_url
                               : "";
    RETURN_IF_ERROR(options_.engine
                        ->Schedule(scope, storage::NewJob{kDeactivateAuthorizationJob,
                                                          absl::StrCat(a.id), ca,
                                                          now + Spread(tenant.id, a.id,
                                                                       options_.rotation_spread)})
                        .status());
    ++scheduled;
  }
  result.deactivations_scheduled += scheduled;
  // Ephemeral accounts left open (a replica killed between a valid order's end and the
  // account's deactivation, or a deactivation job the engine gave up on): closed by the job
  // that closes them after an order, which the issuer runs.
  if (options_.ephemeral_account_grace > absl::ZeroDuration()) {
    ASSIGN_OR_RETURN(std::vector<storage::Account> left_open,
                     options_.accounts->ListEphemeralAccountsToClose(
                         scope, now - options_.ephemeral_account_grace,
                         kDeactivateEphemeralAccountJob));
    for (const storage::Account& account : left_open) {
      RETURN_IF_ERROR(
          options_.engine
              ->Schedule(scope, storage::NewJob{kDeactivateEphemeralAccountJob,
                                                absl::StrCat(account.id), account.directory_url,
                                                now + Spread(tenant.id, account.id,
                                                             options_.rotation_spread)})
              .status());
      ++result.ephemeral_closes_scheduled;
    }
  }
  return absl::OkStatus();
}

absl::Status PolicyScheduler::ScanTenant(const storage::Tenant& tenant, bool sweep,
                                         ScanResult& result) {
  const storage::Scope scope{tenant.id, {"policy scheduler", "scan"}};
  ASSIGN_OR_RETURN(std::optional<ActiveAccountKey> active,
                   FindActiveAccountKey(*options_.accounts, scope));
  if (sweep) RETURN_IF_ERROR(SweepTenant(tenant, scope, active, result));
  if (!active) return absl::OkStatus();
  ++result.keys;
  const absl::Time now = options_.clock->Now();
  if (options_.metrics != nullptr) {
    options_.metrics->SetAccountKeyAge(tenant.spec.name, KeyAge(active->key, now));
  }
  if (options_.account_verify_interval > absl::ZeroDuration()) {
    const storage::AccountId id = active->account.id;
    const absl::Time next =
        NextVerification(tenant.id, id, options_.account_verify_interval, now);
    // Only the scan before it comes due schedules it (the next scan comes within scan_interval):
    // one write per account and verification, not one per scan.
    if (next - now <= options_.scan_interval) {
      RETURN_IF_ERROR(
          options_.engine
              ->Schedule(scope, storage::NewJob{kVerifyAccountJob, absl::StrCat(id),
                                                active->account.directory_url, next})
              .status());
      ++result.verifications_scheduled;
    }
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

namespace {

// Logs and counts a failure of the renewal scan about one certificate; nothing for OK.
void CountFailure(const storage::Tenant& tenant, storage::CertificateId id,
                  const absl::Status& status, PolicyScheduler::ScanResult& result) {
  if (status.ok()) return;
  ++result.errors;
  Log(LogLevel::kWarning, "renewal scan of a certificate failed",
      {{"tenant", tenant.spec.name}, {"certificate", absl::StrCat(id)},
       {"status", status.ToString()}});
}

}  // namespace

absl::Status PolicyScheduler::ScheduleIfDue(const storage::Tenant& tenant,
                                            const storage::Certificate& certificate,
                                            absl::Time now, ScanResult& result) {
  if (!certificate.has_private_key ||
      !DecideRenewal(tenant.spec.policy, certificate, StoredAriWindow(certificate), now).due) {
    return absl::OkStatus();
  }
  ++result.certificates_due;
  const storage::Scope scope{tenant.id, {"policy scheduler", "scan"}};
  RETURN_IF_ERROR(
      options_.engine
          ->Schedule(scope, storage::NewJob{kRenewJob, absl::StrCat(certificate.id),
                                            tenant.spec.acme_directory_url,
                                            now + Spread(tenant.id, certificate.id,
                                                         options_.renewal_spread)})
          .status());
  ++result.renewals_scheduled;
  return absl::OkStatus();
}

acme::AcmeClient* PolicyScheduler::AriClient(const storage::Tenant& tenant) {
  if (options_.clients == nullptr) return nullptr;
  absl::StatusOr<acme::AcmeClient*> client = options_.clients->For(tenant.spec.acme_directory_url);
  if (!client.ok()) return nullptr;
  absl::StatusOr<acme::Directory> directory = (*client)->GetDirectory();
  if (!directory.ok()) {
    Log(LogLevel::kWarning, "renewal scan could not read the CA's directory",
        {{"tenant", tenant.spec.name}, {"status", directory.status().ToString()}});
    return nullptr;
  }
  return directory->renewal_info.empty() ? nullptr : *client;
}

absl::Status PolicyScheduler::RefreshAri(acme::AcmeClient& client, const storage::Scope& scope,
                                         storage::Certificate& certificate, absl::Time now) {
  if (certificate.ari_next_check.has_value() && *certificate.ari_next_check > now) {
    return absl::OkStatus();
  }
  absl::StatusOr<acme::RenewalInfo> info = absl::InvalidArgumentError("no certificate in chain");
  if (auto chain = crypto::ParsePemChain(certificate.chain_pem); !chain.ok()) {
    info = chain.status();
  } else if (!chain->empty()) {
    info = client.GetRenewalInfo(chain->front().der);
  }
  storage::AriCheck check;
  std::optional<absl::Time> retry_after;
  if (info.ok()) {
    check.window_start = info->window_start;
    check.window_end = info->window_end;
    retry_after = info->retry_after;
  } else if (std::optional<acme::Problem> problem = acme::GetProblem(info.status())) {
    retry_after = problem->retry_after;
  }
  check.next_check = NextAriCheck(now, retry_after, options_.ari_check_interval);
  RETURN_IF_ERROR(options_.certificates->RecordAriCheck(scope, certificate.id, check));
  if (check.window_start.has_value()) {
    certificate.ari_window_start = check.window_start;
    certificate.ari_window_end = check.window_end;
  }
  certificate.ari_next_check = check.next_check;
  return info.status();
}

absl::Status PolicyScheduler::ForEachLiveCertificate(
    const storage::Tenant& tenant,
    const std::function<void(const storage::Scope&, storage::Certificate&)>& visit) {
  const storage::Scope scope{tenant.id, {"policy scheduler", "scan"}};
  storage::CertificateFilter live;
  live.state = storage::CertificateState::kLive;
  storage::PageRequest page{"", 1000};
  do {
    ASSIGN_OR_RETURN(storage::Page<storage::Certificate> certificates,
                     options_.certificates->ListCertificates(scope, live, page));
    for (storage::Certificate& certificate : certificates.items) visit(scope, certificate);
    page.page_token = certificates.next_page_token;
  } while (!page.page_token.empty());
  return absl::OkStatus();
}

absl::Status PolicyScheduler::ScanAriTenant(const storage::Tenant& tenant, acme::AcmeClient& client,
                                            ScanResult& result) {
  const absl::Time now = options_.clock->Now();
  return ForEachLiveCertificate(
      tenant, [&](const storage::Scope& scope, storage::Certificate& certificate) {
        // A host-held one too: the window is what IssueCertificate and GetCertificate tell the
        // host (renew_at, renewal_due); only a service-held one is renewed here.
        absl::Status fetched = RefreshAri(client, scope, certificate, now);
        absl::Status s = ScheduleIfDue(tenant, certificate, now, result);
        CountFailure(tenant, certificate.id, fetched, result);
        CountFailure(tenant, certificate.id, s, result);
      });
}

const absl::StatusOr<crypto::RevocationList>& PolicyScheduler::FetchCrl(
    const std::string& url, const std::string& issuer_der, CrlCache& cache, absl::Time now) {
  auto key = std::make_pair(url, issuer_der);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  absl::StatusOr<crypto::RevocationList> list = [&]() -> absl::StatusOr<crypto::RevocationList> {
    acme::HttpRequest request;
    request.method = "GET";
    request.url = url;
    ASSIGN_OR_RETURN(acme::HttpResponse response, options_.crl_transport->Send(request));
    if (response.status != 200) {
      return absl::UnavailableError(absl::StrCat("GET ", url, ": HTTP ", response.status));
    }
    return crypto::RevocationList::Parse(response.body, issuer_der, now);
  }();
  return cache.emplace(std::move(key), std::move(list)).first->second;
}

absl::Status PolicyScheduler::CheckCrl(const storage::Tenant& tenant, const storage::Scope& scope,
                                       storage::Certificate& certificate, CrlCache& cache,
                                       absl::Time now, ScanResult& result) {
  if (certificate.crl_next_check.has_value() && *certificate.crl_next_check > now) {
    return absl::OkStatus();
  }
  ++result.crl_checks;
  storage::CrlCheck check;
  check.next_check = now + options_.crl_check_interval;
  bool no_crl = false;
  absl::Status verdict = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<std::string> ders, crypto::SplitPemChain(certificate.chain_pem));
    if (ders.size() < 2) {
      return absl::FailedPreconditionError("the chain has no issuer certificate to check a CRL");
    }
    ASSIGN_OR_RETURN(std::vector<std::string> points, crypto::CrlDistributionPoints(ders[0]));
    no_crl = points.empty();
    if (no_crl) {
      // Nothing to read, ever (a certificate's extensions never change): not checked again.
      check.next_check = std::max(check.next_check, certificate.not_after);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(crypto::CertificateInfo leaf, crypto::ParseCertificate(ders[0]));
    const absl::StatusOr<crypto::RevocationList>& list = FetchCrl(points[0], ders[1], cache, now);
    if (!list.ok()) return list.status();
    if (std::optional<crypto::RevokedEntry> entry = list->Find(leaf.serial_hex)) {
      check.revoked_at = entry->revoked_at;
      check.reason = entry->reason;
      check.crl_url = points[0];
    }
    return absl::OkStatus();
  }();
  const bool newly = check.revoked_at.has_value() && !certificate.revoked_outside_at.has_value();
  if (options_.metrics != nullptr) {
    options_.metrics->RecordCrlCheck(!verdict.ok()                  ? "failed"
                                     : no_crl                       ? "no_crl"
                                     : check.revoked_at.has_value() ? "listed"
                                                                    : "not_listed");
  }
  RETURN_IF_ERROR(options_.certificates->RecordCrlCheck(scope, certificate.id, check));
  certificate.crl_next_check = check.next_check;
  if (newly) {
    certificate.revoked_outside_at = check.revoked_at;
    certificate.revoked_outside_reason = check.reason;
    ++result.revoked_outside_found;
    Log(LogLevel::kWarning, "certificate revoked outside the service (listed in its CRL)",
        {{"tenant", tenant.spec.name},
         {"certificate", absl::StrCat(certificate.id)},
         {"serial", certificate.serial},
         {"crl", check.crl_url}});
  }
  return verdict;
}

absl::Status PolicyScheduler::ScanCrlTenant(const storage::Tenant& tenant, CrlCache& cache,
                                            ScanResult& result) {
  const absl::Time now = options_.clock->Now();
  return ForEachLiveCertificate(tenant, [&](const storage::Scope& scope,
                                            storage::Certificate& certificate) {
    CountFailure(tenant, certificate.id, CheckCrl(tenant, scope, certificate, cache, now, result),
                 result);
    if (certificate.revoked_outside_at.has_value()) {
      CountFailure(tenant, certificate.id, ScheduleIfDue(tenant, certificate, now, result), result);
    }
  });
}

absl::Status PolicyScheduler::ScanRenewals(
    const std::map<storage::TenantId, storage::Tenant>& tenants, ScanResult& result) {
  const absl::Time now = options_.clock->Now();
  std::set<storage::TenantId> by_ari;
  for (const auto& [id, tenant] : tenants) {
    acme::AcmeClient* client = AriClient(tenant);
    if (client == nullptr) continue;
    by_ari.insert(id);
    if (absl::Status s = ScanAriTenant(tenant, *client, result); !s.ok()) {
      ++result.errors;
      Log(LogLevel::kWarning, "renewal scan of a tenant failed",
          {{"tenant", tenant.spec.name}, {"status", s.ToString()}});
    }
  }
  if (options_.crl_transport != nullptr) {
    CrlCache cache;
    for (const auto& [id, tenant] : tenants) {
      if (by_ari.count(id) > 0) continue;
      if (absl::Status s = ScanCrlTenant(tenant, cache, result); !s.ok()) {
        ++result.errors;
        Log(LogLevel::kWarning, "CRL scan of a tenant failed",
            {{"tenant", tenant.spec.name}, {"status", s.ToString()}});
      }
    }
  }
  storage::PageRequest page{"", 1000};
  do {
    ASSIGN_OR_RETURN(storage::Page<storage::DueCertificate> due,
                     options_.certificates->ListCertificatesDueForRenewal(page));
    for (const auto& d : due.items) {
      auto tenant = tenants.find(d.tenant);
      // Disabled since the tenants were listed, or scanned by its ARI windows above.
      if (tenant == tenants.end() || by_ari.count(d.tenant) > 0) continue;
      const storage::Scope scope{d.tenant, {"policy scheduler", "scan"}};
      absl::StatusOr<storage::Certificate> cert =
          options_.certificates->GetCertificate(scope, d.id);
      absl::Status s = cert.status();
      if (s.ok()) s = ScheduleIfDue(tenant->second, *cert, now, result);
      CountFailure(tenant->second, d.id, s, result);
    }
    page.page_token = due.next_page_token;
  } while (!page.page_token.empty());
  return absl::OkStatus();
}

absl::StatusOr<PolicyScheduler::ScanResult> PolicyScheduler::ScanOnce() {
  ScanResult result;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock->Now();
    result.swept = options_.authorization_sweep_interval > absl::ZeroDuration() &&
                   (!last_sweep_.has_value() ||
                    now - *last_sweep_ >= options_.authorization_sweep_interval);
    if (result.swept) last_sweep_ = now;
  }
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
      if (absl::Status s = ScanTenant(tenant, result.swept, result); !s.ok()) {
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
    } else if (r->rotations_scheduled > 0 || r->deactivations_scheduled > 0 ||
               r->renewals_scheduled > 0 || r->ephemeral_closes_scheduled > 0) {
      Log(LogLevel::kInfo, "policy scan scheduled jobs",
          {{"tenants", absl::StrCat(r->tenants)},
           {"rotations", absl::StrCat(r->rotations_scheduled)},
           {"deactivations", absl::StrCat(r->deactivations_scheduled)},
           {"ephemeral_closes", absl::StrCat(r->ephemeral_closes_scheduled)},
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
