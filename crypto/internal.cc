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

absl::StatusOr<EcdsaSigPtr> EcdsaSigOfRaw(absl::string_view raw, size_t half) {
  if (raw.size() != 2 * half) {
    return absl::InvalidArgumentError(
        absl::StrCat("ECDSA signature is ", raw.size(), " bytes, want ", 2 * half));
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data());
  BignumPtr r(BN_bin2bn(bytes, static_cast<int>(half), nullptr));
  BignumPtr s(BN_bin2bn(bytes + half, static_cast<int>(half), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (r == nullptr || s == nullptr || sig == nullptr ||
      ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "building ECDSA signature");
  }
  r.release();  // Owned by sig now.
  s.release();
  return sig;
}

}  // namespace internal
}  // namespace acmevault::crypto
