#include "crypto/kek.h"

#include "absl/strings/str_cat.h"
#include "crypto/aead.h"

namespace acmevault::crypto {
namespace {

class AeadKek final : public KeyEncryptionKey {
 public:
  explicit AeadKek(SecretBytes key) : key_(std::move(key)) {}

  absl::StatusOr<std::string> Wrap(absl::string_view data_key,
                                   absl::string_view aad) const override {
    return Seal(key_.view(), data_key, aad);
  }
  absl::StatusOr<SecretBytes> Unwrap(absl::string_view wrapped,
                                     absl::string_view aad) const override {
    return Open(key_.view(), wrapped, aad);
  }

 private:
  const SecretBytes key_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<KeyEncryptionKey>> MemoryKek(SecretBytes key) {
  if (key.size() != kAeadKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("key-encryption key is ", key.size(), " bytes, want ", kAeadKeySize));
  }
  return std::make_unique<AeadKek>(std::move(key));
}

}  // namespace acmevault::crypto
