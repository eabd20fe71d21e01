#include "clients/cli/key_file.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace acmevault::cli {
namespace {

absl::Status Failed(int err, const std::string& what, const std::string& path) {
  std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case EEXIST:
    case ELOOP:  // O_NOFOLLOW on a symlink
      return absl::AlreadyExistsError(absl::StrCat(path, " exists; a key file is never "
                                                         "overwritten"));
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

absl::Status WriteKeyFile(const std::string& path, absl::string_view pem) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Failed(errno, "cannot create", path);
  // The umask can only narrow 0600; fchmod makes it exactly 0600 so the owner can read it.
  bool ok = fchmod(fd, 0600) == 0;
  int err = ok ? 0 : errno;
  for (size_t done = 0; ok && done < pem.size();) {
    ssize_t n = write(fd, pem.data() + done, pem.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ok = false;
      err = errno;
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    unlink(path.c_str());
    return Failed(err, "cannot write", path);
  }
  return absl::OkStatus();
}

void WipeKey(std::string* pem) {
  pem->resize(pem->capacity());
  if (!pem->empty()) explicit_bzero(pem->data(), pem->size());
  pem->clear();
}

}  // namespace acmevault::cli
