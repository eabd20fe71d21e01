#include "clients/agent/renewal.h"

#include <algorithm>

namespace acmevault::agent {

absl::Time RenewalTime(absl::Time not_before, absl::Time not_after, double fraction, double jitter,
                       double unit) {
  absl::Duration lifetime = std::max(not_after - not_before, absl::ZeroDuration());
  double share = std::clamp(fraction, 0.0, 1.0) * (1 - std::clamp(jitter * unit, 0.0, 1.0));
  return std::min(not_before + lifetime * share, not_after);
}

}  // namespace acmevault::agent
