// acmevaultd holds the key-encryption keys (and, while it works, unsealed account and certificate
// keys) in memory: a core dump or a ptrace attach by another process of the same user would copy
// them out. DisableCoreDumps is called first thing at start-up.
#ifndef ACMEVAULT_SERVICE_CORE_DUMPS_H_
#define ACMEVAULT_SERVICE_CORE_DUMPS_H_

#include "absl/status/status.h"

namespace acmevault::service {

// Sets RLIMIT_CORE to 0 (soft and hard) and marks the process not dumpable
// (prctl(PR_SET_DUMPABLE, 0): no core, no ptrace attach by other processes, /proc/self files
// owned by root). INTERNAL naming the call that failed.
absl::Status DisableCoreDumps();

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_CORE_DUMPS_H_
