// Replacing a file so that a reader sees the old content or the new, never a mix: the agent's
// key and chain in a volume that a web server reads.
#ifndef ACMEVAULT_CLIENTS_AGENT_ATOMIC_FILE_H_
#define ACMEVAULT_CLIENTS_AGENT_ATOMIC_FILE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace acmevault::agent {

// Writes `content` to a new temporary file beside `path` created with exactly `mode` (so key
// text is never readable by others, whatever the umask), fsyncs it, renames it over `path` and
// fsyncs the directory, so after a crash `path` holds the old or the new content. On failure
// the temporary file is removed and `path` is untouched; the status names the path and errno.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content, mode_t mode);

}  // namespace acmevault::agent

#endif  // ACMEVAULT_CLIENTS_AGENT_ATOMIC_FILE_H_
