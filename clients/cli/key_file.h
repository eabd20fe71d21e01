// Writing a private key the service generated to a file only its owner can read.
#ifndef ACMEVAULT_CLIENTS_CLI_KEY_FILE_H_
#define ACMEVAULT_CLIENTS_CLI_KEY_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace acmevault::cli {

// Creates `path` with mode 0600 and writes `pem` to it. The file is created with that mode at
// open (O_CREAT|O_EXCL, then fchmod so a restrictive umask cannot lock the owner out), so no
// reader can open it in between; an existing file or symlink at `path` is never followed or
// overwritten (ALREADY_EXISTS). Other failures: the errno as the matching status, naming the
// path; a partial file is removed.
absl::Status WriteKeyFile(const std::string& path, absl::string_view pem);

// Overwrites every byte `*pem` holds (its whole capacity) in a way the compiler may not elide,
// then empties it: for the key text a response carried, once written. (explicit_bzero: this
// program does not link the service's crypto library and its OPENSSL_cleanse.)
void WipeKey(std::string* pem);

}  // namespace acmevault::cli

#endif  // ACMEVAULT_CLIENTS_CLI_KEY_FILE_H_
