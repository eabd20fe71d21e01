#include "crypto/internal.h"

#include "absl/strings/str_cat.h"

namespace acmevault::crypto {

namespace internal {

BioPtr MemoryBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int): library signature.
  return std::string(data, len > 0 ? static_cast<size_t>(len) : 0);
}

absl::Status LibraryError(absl::StatusCode code, absl::string_view what) {
  unsigned long err = ERR_get_error();  // NOLINT(runtime/int): library signature.
  ERR_clear_error();
  if (err == 0) return absl::Status(code, what);
  const char* reason = ERR_reason_error_string(err);
  return absl::Status(code, absl::StrCat(what, ": ", reason != nullptr ? reason : "unknown"));
}

}  // namespace internal
}  // namespace acmevault::crypto
