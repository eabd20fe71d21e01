// When the agent renews: a fraction of the certificate's lifetime after notBefore, made a
// little earlier by jitter so that agents started together (a Deployment's replicas) do not
// renew together.
#ifndef ACMEVAULT_CLIENTS_AGENT_RENEWAL_H_
#define ACMEVAULT_CLIENTS_AGENT_RENEWAL_H_

#include "absl/time/time.h"

namespace acmevault::agent {

// not_before + fraction * lifetime * (1 - jitter * unit), where `unit` is a random number in
// [0, 1) and `jitter` in [0, 1): with fraction 2/3 and jitter 0.1, a 90-day certificate is
// renewed between day 54 and day 60. Never after not_after.
absl::Time RenewalTime(absl::Time not_before, absl::Time not_after, double fraction, double jitter,
                       double unit);

}  // namespace acmevault::agent

#endif  // ACMEVAULT_CLIENTS_AGENT_RENEWAL_H_
