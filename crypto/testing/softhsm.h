// Test-only: a SoftHSM2 token of the test process's own, so PKCS#11 code is tested against a
// real implementation without any shared state. The first call writes a SoftHSM2 config and a
// token directory under TEST_TMPDIR (or a fresh temporary directory), points SOFTHSM2_CONF at
// it and initialises one token with softhsm2-util; later calls return the same token. SoftHSM2
// reads SOFTHSM2_CONF when the module is initialised, so call this before any Pkcs11Token of
// the process opens the module.
#ifndef ACMEVAULT_CRYPTO_TESTING_SOFTHSM_H_
#define ACMEVAULT_CRYPTO_TESTING_SOFTHSM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "crypto/pkcs11.h"

namespace acmevault::crypto::testing {

struct SoftHsmToken {
  std::string module_path;  // ACMEVAULT_PKCS11_MODULE, else Debian's libsofthsm2.so
  std::string label;
  std::string pin;
  std::string conf_path;  // the SOFTHSM2_CONF in effect
};

// The process's test token (see above). FAILED_PRECONDITION naming the step when SoftHSM2 is
// not installed or the token cannot be initialised.
absl::StatusOr<SoftHsmToken> TestToken();

// Options that open TestToken(), with `session_pool_size` sessions.
absl::StatusOr<Pkcs11Options> TestTokenOptions(int session_pool_size = 4);

// TestToken() opened once for the process (never closed), or null when it cannot be.
Pkcs11Token* SharedTestToken();

}  // namespace acmevault::crypto::testing

#endif  // ACMEVAULT_CRYPTO_TESTING_SOFTHSM_H_
