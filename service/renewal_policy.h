// The certificate renewal policy (issue 11, item 3): when a certificate must be renewed. Pure
// functions of the tenant's policy, the certificate, what the CA said about it (ARI, RFC 9773)
// and the time, so the background scan, the renewal job and a host asking through
// IssueCertificate decide alike on every replica.
#ifndef ACMEVAULT_SERVICE_RENEWAL_POLICY_H_
#define ACMEVAULT_SERVICE_RENEWAL_POLICY_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "storage/types.h"

namespace acmevault::service {

// The job that renews a service-held certificate (PolicyScheduler schedules it, Renewer runs
// it); its subject is the certificate id, so one certificate has at most one open renewal.
inline constexpr char kRenewJob[] = "renew_certificate";

// The CA's suggested renewal window for one certificate (RFC 9773 §4.2), as last fetched.
struct AriWindow {
  absl::Time start;
  absl::Time end;
};

struct RenewalDecision {
  // The certificate must be renewed now.
  bool due = false;
  // When it is (or was) due.
  absl::Time renew_at;
  // Why, for logs and the audit row: "lifetime: ...", "ARI window ...", "revoked".
  std::string reason;
};

// A revoked certificate is due at once, also one a CRL of its issuer lists (revoked outside the
// service: Certificate::revoked_outside_at). With `ari` (the CA offers renewalInfo and answered for
// this certificate), RFC 9773 §4.2: a time in [start, end) chosen at random once per
// certificate (by its serial, so every replica and every call chooses the same), so a window
// the CA moves to the past (how a CA asks for early renewal before a mass revocation) is due
// at once. Without it (a CA without renewalInfo, item 8) the tenant's `renewal_window` before
// not_after; a window of zero or less means the last third of the certificate's lifetime.
RenewalDecision DecideRenewal(const storage::TenantPolicy& policy,
                              const storage::Certificate& certificate,
                              const std::optional<AriWindow>& ari, absl::Time now);

// The ARI window last stored for `certificate` (CertificateStore::RecordAriCheck), if any: what
// every caller of DecideRenewal passes, so the scan, the renewal job and a host asking decide
// alike.
std::optional<AriWindow> StoredAriWindow(const storage::Certificate& certificate);

// The point of an ARI window chosen for the certificate with `serial`: in [start, end), the
// same for every caller; `start` when the window is empty or inverted.
absl::Time PickInWindow(const AriWindow& window, const std::string& serial);

// When renewalInfo for a certificate may be fetched again after a fetch at `fetched_at`
// (RFC 9773 §4.3: never before the CA's Retry-After, which is clamped to between one minute
// and one day so a bad header neither floods the CA nor stops checking); `interval` after the
// fetch when the CA sent none.
absl::Time NextAriCheck(absl::Time fetched_at, std::optional<absl::Time> retry_after,
                        absl::Duration interval);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_RENEWAL_POLICY_H_
