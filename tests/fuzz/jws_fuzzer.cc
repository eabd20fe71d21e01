// Flattened JWS (RFC 7515 §7.2.2) as crypto::ParseJws reads it, then, when the protected header
// embeds a "jwk" (crypto/jwk.h), verification under that key, as a CA does for newAccount.
// Accepted: it parsed and, if it embeds a key, verifies under it.
#include "absl/strings/str_cat.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  auto jws = crypto::ParseJws(input);
  if (!jws.ok()) return Verdict::kRejected;
  // The signing input is exactly the two encoded members as sent (RFC 7515 §5.2 step 8).
  auto json = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(jws->signing_input == absl::StrCat(json["protected"].get<std::string>(), ".",
                                                json["payload"].get<std::string>()));
  FUZZ_CHECK(jws->header.is_object());
  auto jwk = jws->header.find("jwk");
  if (jwk == jws->header.end()) return Verdict::kAccepted;
  auto key = crypto::PublicKeyFromJwk(*jwk);
  if (!key.ok()) return Verdict::kRejected;
  absl::Status verified = crypto::VerifyJws(*jws, *key);
  if (verified.ok()) {
    // A signature that verifies was made for this key's algorithm.
    FUZZ_CHECK(jws->header.value("alg", "") == key->JwsAlgorithm());
  }
  return verified.ok() ? Verdict::kAccepted : Verdict::kRejected;
}

}  // namespace acmevault::fuzz
