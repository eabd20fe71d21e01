#include "service/renewal_policy.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace acmevault::service {

namespace {

// A fixed mix of the serial's bytes (FNV-1a, then a finalizer; not absl::Hash, which is seeded
// per process): every replica must pick the same point.
uint64_t SerialHash(const std::string& serial) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : serial) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  return h;
}

}  // namespace

std::optional<AriWindow> StoredAriWindow(const storage::Certificate& certificate) {
  if (!certificate.ari_window_start.has_value() || !certificate.ari_window_end.has_value()) {
    return std::nullopt;
  }
  return AriWindow{*certificate.ari_window_start, *certificate.ari_window_end};
}

absl::Time PickInWindow(const AriWindow& window, const std::string& serial) {
  const int64_t us = absl::ToInt64Microseconds(window.end - window.start);
  if (us <= 0) return window.start;
  return window.start +
         absl::Microseconds(static_cast<int64_t>(SerialHash(serial) % static_cast<uint64_t>(us)));
}

RenewalDecision DecideRenewal(const storage::TenantPolicy& policy,
                              const storage::Certificate& certificate,
                              const std::optional<AriWindow>& ari, absl::Time now) {
  RenewalDecision d;
  if (certificate.revoked_at.has_value()) {
    d.due = true;
    d.renew_at = *certificate.revoked_at;
    d.reason = "revoked";
    return d;
  }
  if (certificate.revoked_outside_at.has_value()) {
    // A CRL of its issuer lists it: revoked at the CA by someone else (PolicyScheduler's CRL
    // reading).
    d.due = true;
    d.renew_at = std::min(*certificate.revoked_outside_at, now);
    d.reason = "revoked outside the service (listed in its CRL)";
    return d;
  }
  if (ari.has_value()) {
    d.renew_at = PickInWindow(*ari, certificate.serial);
    d.due = now >= d.renew_at;
    if (d.due) {
      d.reason = absl::StrCat("ARI window ", absl::FormatTime(ari->start), " to ",
                              absl::FormatTime(ari->end));
    }
    return d;
  }
  absl::Duration window = policy.renewal_window;
  if (window <= absl::ZeroDuration()) {
    window = (certificate.not_after - certificate.not_before) / 3;
  }
  d.renew_at = certificate.not_after - window;
  d.due = now >= d.renew_at;
  if (d.due) {
    d.reason = absl::StrCat("lifetime: expires ", absl::FormatTime(certificate.not_after),
                            ", renewal window ", absl::FormatDuration(window));
  }
  return d;
}

absl::Time NextAriCheck(absl::Time fetched_at, std::optional<absl::Time> retry_after,
                        absl::Duration interval) {
  if (!retry_after.has_value()) return fetched_at + interval;
  return std::clamp(*retry_after, fetched_at + absl::Minutes(1), fetched_at + absl::Hours(24));
}

}  // namespace acmevault::service
