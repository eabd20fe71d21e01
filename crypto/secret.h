// SecretBytes: an owned byte string for private key material that is wiped when released.
#ifndef ACMEVAULT_CRYPTO_SECRET_H_
#define ACMEVAULT_CRYPTO_SECRET_H_

#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace acmevault::crypto {

// Overwrites `size` bytes at `data` in a way the compiler may not elide.
void SecureWipe(void* data, size_t size);

// Overwrites every byte `*s` holds, its whole capacity, with SecureWipe, then empties it (the
// allocation stays, holding zeros): for secret text in a string someone else owns, such as a
// protobuf field.
void WipeString(std::string* s);

// Move-only holder of secret bytes (a PEM private key, a data key). The buffer is wiped on
// destruction and on move-from, so copies never linger. Not thread-safe.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::string bytes) : bytes_(std::move(bytes)) {}
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.Wipe(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      Wipe();
      bytes_ = std::move(other.bytes_);
      other.Wipe();
    }
    return *this;
  }
  ~SecretBytes() { Wipe(); }

  absl::string_view view() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

  // Clears the contents (overwriting the whole capacity first).
  void Wipe() { WipeString(&bytes_); }

 private:
  std::string bytes_;
};

}  // namespace acmevault::crypto

#endif  // ACMEVAULT_CRYPTO_SECRET_H_
