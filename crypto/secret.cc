#include "crypto/secret.h"

#include <openssl/crypto.h>

namespace acmevault::crypto {

void SecureWipe(void* data, size_t size) { OPENSSL_cleanse(data, size); }

}  // namespace acmevault::crypto
