// Public JWKs (RFC 7517, RFC 7518 §6) as crypto::PublicKeyFromJwk reads them, and the RFC 7638
// thumbprint of what it accepts. The input is the JWK's JSON text. Accepted: it gave a key.
#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  auto json = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Verdict::kRejected;
  auto key = crypto::PublicKeyFromJwk(json);
  if (!key.ok()) return Verdict::kRejected;
  // Private members never get through (the function's contract).
  for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "k"}) {
    FUZZ_CHECK(!json.contains(secret));
  }
  // The key's own JWK reads back as the same key, and its canonical form (RFC 7638 §3) is that
  // JWK, compact and sorted.
  nlohmann::json own = crypto::PublicJwk(*key);
  auto again = crypto::PublicKeyFromJwk(own);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->Equals(*key));
  FUZZ_CHECK(crypto::CanonicalJwk(*key) == own.dump());
  std::string thumbprint = crypto::Thumbprint(*key);
  std::string digest;
  FUZZ_CHECK(crypto::Base64UrlDecode(thumbprint, &digest) && digest.size() == 32);
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
