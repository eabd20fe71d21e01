// Private keys as crypto::PrivateKey imports them (PKCS#8 PEM, the traditional EC and RSA PEM
// forms, PKCS#8 DER) and public keys (SubjectPublicKeyInfo PEM or DER). An input starting with
// "-" is read as PEM, any other as DER. Accepted: a private key came out.
#include "absl/strings/match.h"
#include "crypto/keys.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  bool pem = absl::StartsWith(input, "-");
  auto public_key = pem ? crypto::PublicKey::FromPem(input) : crypto::PublicKey::FromDer(input);
  if (public_key.ok()) {
    auto again = crypto::PublicKey::FromDer(public_key->ToDer());
    FUZZ_CHECK(again.ok() && again->Equals(*public_key));
  }
  auto key = pem ? crypto::PrivateKey::FromPem(input) : crypto::PrivateKey::FromDer(input);
  if (!key.ok()) return Verdict::kRejected;
  // Export and import give back the same key.
  auto from_der = crypto::PrivateKey::FromDer(key->ToPkcs8Der().view());
  FUZZ_CHECK_MSG(from_der.ok(), from_der.status().ToString());
  FUZZ_CHECK(from_der->public_key().Equals(key->public_key()));
  auto from_pem = crypto::PrivateKey::FromPem(key->ToPkcs8Pem().view());
  FUZZ_CHECK_MSG(from_pem.ok(), from_pem.status().ToString());
  FUZZ_CHECK(from_pem->public_key().Equals(key->public_key()));
  // The public half is the private key's: what it signs verifies under it. (Known finding
  // "private-key-inconsistent", README.md: an RSA key whose n is not p*q is accepted.)
  auto signature = key->Sign("acmevault fuzz");
  FUZZ_CHECK_MSG(signature.ok(), signature.status().ToString());
  if (!key->public_key().Verify("acmevault fuzz", *signature).ok()) {
    FUZZ_CHECK_MSG(SkipKnownFinding("private-key-inconsistent"),
                   "a signature does not verify under the key's own public key");
  }
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
