// Test helper: the forms in which a private key could leak (into a database dump, an audit row,
// an error message), so tests can search for every one of them.
#ifndef ACMEVAULT_STORAGE_TESTING_KEY_MATERIAL_H_
#define ACMEVAULT_STORAGE_TESTING_KEY_MATERIAL_H_

#include <string>
#include <vector>

#include "crypto/keys.h"

namespace acmevault::storage::testing {

struct KeyMaterial {
  std::string der;       // PKCS#8 DER
  std::string pem;       // PKCS#8 PEM
  std::string d;         // the private scalar (EC) or private exponent (RSA), big-endian
  std::string jwk_d;     // RFC 7518 §6.2.2.1 / §6.3.2.1 "d": base64url of `d`, no padding
  std::vector<std::string> markers;  // every string a leak would contain, see Describe
};

// Extracts the material of `key`. The markers are: the DER itself; its hex (as pg_dump prints
// bytea, \x<hex>) and that of `d`; each base64 body line of the PEM; and jwk_d.
KeyMaterial Describe(const crypto::PrivateKey& key);

// The markers of `keys` found in `text` (empty when nothing leaked), named for messages.
std::vector<std::string> FindLeaks(const std::string& text, const std::vector<KeyMaterial>& keys);

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_KEY_MATERIAL_H_
