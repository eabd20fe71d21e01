#include <string>

#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "crypto/keys.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

using ::testing::HasSubstr;

// RFC 7638 §3.1.
const char kRfc7638N[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebW"
    "KRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQM"
    "icAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcR"
    "wr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

TEST(Jwk, Rfc7638ThumbprintExample) {
  nlohmann::json jwk = {{"kty", "RSA"}, {"n", kRfc7638N}, {"e", "AQAB"},
                        {"alg", "RS256"}, {"kid", "2011-04-29"}};
  auto key = PublicKeyFromJwk(jwk);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(CanonicalJwk(*key), std::string("{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"") + kRfc7638N +
                                    "\"}");
  EXPECT_EQ(Thumbprint(*key), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

// RFC 7515 Appendix A.3: the ES256 example verifies under the example key.
TEST(Jws, Rfc7515AppendixA3Verifies) {
  nlohmann::json jwk = {{"kty", "EC"},
                        {"crv", "P-256"},
                        {"x", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"},
                        {"y", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}};
  auto key = PublicKeyFromJwk(jwk);
  ASSERT_TRUE(key.ok()) << key.status();
  nlohmann::json jws = {
      {"protected", "eyJhbGciOiJFUzI1NiJ9"},
      {"payload",
       "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnV"
       "lfQ"},
      {"signature",
       "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"}};
  auto parsed = ParseJwsObject(jws);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->header["alg"], "ES256");
  EXPECT_THAT(parsed->payload, HasSubstr("\"iss\":\"joe\""));
  EXPECT_TRUE(VerifyJws(*parsed, *key).ok());
  parsed->signing_input.back() ^= 1;
  EXPECT_FALSE(VerifyJws(*parsed, *key).ok());
}

TEST(Jwk, PrivateMembersAndBadInputAreRejected) {
  nlohmann::json with_d = {{"kty", "EC"},
                           {"crv", "P-256"},
                           {"x", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"},
                           {"y", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
                           {"d", "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}};
  EXPECT_THAT(PublicKeyFromJwk(with_d).status().message(), HasSubstr("private"));
  nlohmann::json off_curve = with_d;
  off_curve.erase("d");
  off_curve["y"] = "y_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";  // First byte changed.
  EXPECT_EQ(PublicKeyFromJwk(off_curve).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(PublicKeyFromJwk({{"kty", "OKP"}}).status().message(), HasSubstr("OKP"));
  EXPECT_THAT(PublicKeyFromJwk({{"kty", "EC"}, {"crv", "P-521"}}).status().message(),
              HasSubstr("P-521"));
  EXPECT_THAT(PublicKeyFromJwk({{"kty", "RSA"}, {"e", "AQAB"}}).status().message(),
              HasSubstr("\"n\""));
}

// RFC 8017 §3.1: an RSA public exponent is odd, at least 3 and below the modulus. A JWK whose
// "e" was zero ("AB" decodes to one zero byte) was accepted, and its own JWK then had an empty
// "e" that did not read back (found by the jwk fuzz target; tests/fuzz/README.md).
TEST(Jwk, AnRsaKeyWithAnImpossibleExponentIsRejected) {
  for (const char* e : {"AB", "AA", "AQ", "Ag", "AAAB"}) {  // 0, 0, 1, 2, 1 with a zero octet
    nlohmann::json jwk = {{"kty", "RSA"}, {"n", kRfc7638N}, {"e", e}};
    EXPECT_THAT(PublicKeyFromJwk(jwk).status().message(), HasSubstr("public exponent")) << e;
  }
  nlohmann::json jwk = {{"kty", "RSA"}, {"n", kRfc7638N}, {"e", kRfc7638N}};  // e = n
  EXPECT_THAT(PublicKeyFromJwk(jwk).status().message(), HasSubstr("public exponent"));
  for (const char* e : {"Aw", "AQAB", "AAEAAQ"}) {  // 3, 65537, 65537 with a zero octet
    jwk["e"] = e;
    auto key = PublicKeyFromJwk(jwk);
    ASSERT_TRUE(key.ok()) << e << ": " << key.status();
    auto again = PublicKeyFromJwk(PublicJwk(*key));
    ASSERT_TRUE(again.ok()) << e << ": " << again.status();
    EXPECT_TRUE(again->Equals(*key)) << e;
  }
}

class JwkRoundTrip : public ::testing::TestWithParam<KeyAlgorithm> {};

TEST_P(JwkRoundTrip, JwkOfAKeyParsesBackToTheSameKey) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  nlohmann::json jwk = PublicJwk(key->public_key());
  EXPECT_FALSE(jwk.contains("d"));
  auto back = PublicKeyFromJwk(jwk);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->Equals(key->public_key()));
  EXPECT_EQ(Thumbprint(*back), Thumbprint(key->public_key()));
  EXPECT_EQ(Thumbprint(key->public_key()).size(), 43u);
}

TEST_P(JwkRoundTrip, SignedJwsCarriesTheAcmeHeaderAndVerifies) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  auto with_jwk = SignJws(*key, {"https://ca.test/new-acct", "n0nce", ""}, "{\"a\":1}");
  ASSERT_TRUE(with_jwk.ok());
  auto parsed = ParseJws(*with_jwk);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->header["url"], "https://ca.test/new-acct");
  EXPECT_EQ(parsed->header["nonce"], "n0nce");
  EXPECT_EQ(parsed->header["alg"], std::string(key->public_key().JwsAlgorithm()));
  EXPECT_EQ(parsed->header["jwk"], PublicJwk(key->public_key()));
  EXPECT_FALSE(parsed->header.contains("kid"));
  EXPECT_EQ(parsed->payload, "{\"a\":1}");
  EXPECT_TRUE(VerifyJws(*parsed, key->public_key()).ok());

  // kid instead of jwk; no nonce; POST-as-GET has an empty payload.
  auto with_kid = SignJws(*key, {"https://ca.test/order/1", "", "https://ca.test/acct/7"}, "");
  ASSERT_TRUE(with_kid.ok());
  auto parsed2 = ParseJws(*with_kid);
  ASSERT_TRUE(parsed2.ok());
  EXPECT_EQ(parsed2->header["kid"], "https://ca.test/acct/7");
  EXPECT_FALSE(parsed2->header.contains("jwk"));
  EXPECT_FALSE(parsed2->header.contains("nonce"));
  EXPECT_EQ(nlohmann::json::parse(*with_kid)["payload"], "");
  EXPECT_TRUE(VerifyJws(*parsed2, key->public_key()).ok());
}

INSTANTIATE_TEST_SUITE_P(Algorithms, JwkRoundTrip,
                         ::testing::Values(KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384,
                                           KeyAlgorithm::kRsa2048));

TEST(Jws, EabIsHs256OverTheAccountJwk) {
  auto key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  std::string mac_key = "0123456789abcdef0123456789abcdef";
  nlohmann::json eab = SignEabJws("kid-1", mac_key, "https://ca.test/new-acct", key->public_key());
  auto parsed = ParseJwsObject(eab);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->header,
            (nlohmann::json{{"alg", "HS256"}, {"kid", "kid-1"}, {"url", "https://ca.test/new-acct"}}));
  EXPECT_EQ(nlohmann::json::parse(parsed->payload), PublicJwk(key->public_key()));
  EXPECT_EQ(parsed->signature, HmacSha256(mac_key, parsed->signing_input));
}

TEST(Jws, MalformedInputIsInvalidArgument) {
  EXPECT_THAT(ParseJws("not json").status().message(), HasSubstr("not JSON"));
  EXPECT_THAT(ParseJws("{\"protected\":\"e30\",\"payload\":\"\"}").status().message(),
              HasSubstr("signature"));
  EXPECT_THAT(ParseJws("{\"protected\":\"e30=\",\"payload\":\"\",\"signature\":\"\"}")
                  .status()
                  .message(),
              HasSubstr("base64url"));
  EXPECT_THAT(ParseJws("{\"protected\":\"WzFd\",\"payload\":\"\",\"signature\":\"\"}")
                  .status()
                  .message(),
              HasSubstr("not a JSON object"));
}

TEST(ChallengeValues, KeyAuthorizationDnsAndAlpnDeriveFromTheThumbprint) {
  nlohmann::json jwk = {{"kty", "RSA"}, {"n", kRfc7638N}, {"e", "AQAB"}};
  auto key = PublicKeyFromJwk(jwk);
  ASSERT_TRUE(key.ok());
  std::string ka = KeyAuthorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", *key);
  EXPECT_EQ(ka, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
                "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  EXPECT_EQ(Dns01TxtValue(ka), Base64Url(Sha256(ka)));
  EXPECT_EQ(Dns01TxtValue(ka).size(), 43u);
  EXPECT_EQ(TlsAlpn01Digest(ka), Sha256(ka));
}

TEST(Digest, KnownAnswers) {
  // FIPS 180-2 "abc" and RFC 4231 test case 2.
  EXPECT_EQ(Base64Url(Sha256("abc")), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
  EXPECT_EQ(Base64Url(HmacSha256("Jefe", "what do ya want for nothing?")),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM");
  EXPECT_EQ(Sha384("abc").size(), 48u);
  EXPECT_EQ(RandomBytes(32).size(), 32u);
  EXPECT_NE(RandomBytes(16), RandomBytes(16));
  std::string out;
  EXPECT_TRUE(Base64UrlDecode("_-8", &out));
  EXPECT_EQ(out, "\xff\xef");
  EXPECT_FALSE(Base64UrlDecode("ab+c", &out));
  EXPECT_FALSE(Base64UrlDecode("abc=", &out));
  EXPECT_FALSE(Base64UrlDecode("abcde", &out));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

}  // namespace
}  // namespace acmevault::crypto
