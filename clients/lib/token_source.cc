#include "clients/lib/token_source.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace acmevault::clients {

TokenSource TokenSource::FromFile(std::string path) {
  TokenSource s;
  s.path_ = std::move(path);
  return s;
}

TokenSource TokenSource::FromValue(std::string token) {
  TokenSource s;
  s.token_ = std::string(absl::StripAsciiWhitespace(token));
  return s;
}

TokenSource::TokenSource(TokenSource&& other) : path_(std::move(other.path_)) {
  absl::MutexLock lock(&other.mu_);
  token_ = std::move(other.token_);
  inode_ = other.inode_;
  size_ = other.size_;
  mtime_ns_ = other.mtime_ns_;
}

absl::StatusOr<std::string> TokenSource::Token() const {
  absl::MutexLock lock(&mu_);
  if (path_.empty()) return token_;
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot read token file ", path_, ": ", std::strerror(errno)));
  }
  long mtime_ns = st.st_mtim.tv_sec * 1000000000L + st.st_mtim.tv_nsec;
  if (st.st_ino != inode_ || st.st_size != size_ || mtime_ns != mtime_ns_) {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read token file ", path_));
    std::stringstream text;
    text << in.rdbuf();
    token_ = std::string(absl::StripAsciiWhitespace(text.str()));
    inode_ = st.st_ino;
    size_ = st.st_size;
    mtime_ns_ = mtime_ns;
  }
  if (token_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("token file ", path_, " is empty"));
  }
  return token_;
}

}  // namespace acmevault::clients
