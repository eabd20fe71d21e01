#include "crypto/secret.h"

#include <openssl/crypto.h>

namespace acmevault::crypto {

void SecureWipe(void* data, size_t size) { OPENSSL_cleanse(data, size); }

void WipeString(std::string* s) {
  s->resize(s->capacity());
  if (!s->empty()) SecureWipe(s->data(), s->size());
  s->clear();
}

}  // namespace acmevault::crypto
