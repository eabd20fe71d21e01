#include "crypto/x509.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadTestdata(const std::string& name) {
  std::ifstream in("crypto/testdata/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// testdata/ was made once with the openssl CLI (see testdata/README.md); these are its facts.
constexpr int64_t kLeafNotBefore = 1795335149;  // Nov 22 08:12:29 2026 GMT
constexpr int64_t kLeafNotAfter = 1803111149;   // Feb 20 08:12:29 2027 GMT

TEST(Csr, BuiltCsrParsesWithExactlyItsNames) {
  auto key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  auto der = BuildCsr({"a.example.com", "*.b.example.com"}, *key);
  ASSERT_TRUE(der.ok()) << der.status();
  auto csr = ParseCsr(*der);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_THAT(csr->dns_names, ElementsAre("a.example.com", "*.b.example.com"));
  EXPECT_TRUE(csr->public_key.Equals(key->public_key()));
  EXPECT_EQ(csr->der, *der);

  EXPECT_TRUE(CheckCsr(*csr, {"*.B.example.com", "a.example.com"}, {},
                       {KeyAlgorithm::kEcdsaP256})
                  .ok());
  EXPECT_THAT(CheckCsr(*csr, {"a.example.com"}, {}, {KeyAlgorithm::kEcdsaP256}).message(),
              HasSubstr("not exactly the requested identifiers"));
  EXPECT_THAT(CheckCsr(*csr, {"a.example.com", "*.b.example.com"}, {key->public_key()},
                       {KeyAlgorithm::kEcdsaP256})
                  .message(),
              HasSubstr("account key"));
  EXPECT_THAT(CheckCsr(*csr, {"a.example.com", "*.b.example.com"}, {}, {KeyAlgorithm::kRsa2048})
                  .message(),
              HasSubstr("ecdsa-p256 is not allowed"));
}

TEST(Csr, PemFromOpensslAndTamperedCsrs) {
  auto key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP384);
  ASSERT_TRUE(key.ok());
  auto der = BuildCsr({"x.example.com"}, *key);
  ASSERT_TRUE(der.ok());
  std::string pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + absl::Base64Escape(*der) +
                    "\n-----END CERTIFICATE REQUEST-----\n";
  auto parsed = ParseCsr(pem);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->public_key.algorithm(), KeyAlgorithm::kEcdsaP384);

  // Flip a byte inside the signed names: the self-signature no longer verifies.
  std::string tampered = *der;
  size_t at = tampered.find("x.example.com");
  ASSERT_NE(at, std::string::npos);
  tampered[at] = 'y';
  EXPECT_THAT(ParseCsr(tampered).status().message(), HasSubstr("signature does not verify"));
  EXPECT_EQ(ParseCsr("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildCsr({}, *key).status().code(), absl::StatusCode::kInvalidArgument);
}

// A CSR's key is read whatever its algorithm, from DER or from PEM under either label OpenSSL
// writes, and its signature is checked with that key: the same CSR carrying another key of the
// algorithm is refused.
TEST(Csr, ACsrsKeyIsReadWhateverItsAlgorithmAndChecksItsSignature) {
  for (KeyAlgorithm algorithm :
       {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048}) {
    SCOPED_TRACE(KeyAlgorithmName(algorithm));
    auto key = PrivateKey::Generate(algorithm);
    ASSERT_TRUE(key.ok()) << key.status();
    auto der = BuildCsr({"r.example.com"}, *key);
    ASSERT_TRUE(der.ok()) << der.status();
    for (const std::string& form :
         {*der, "-----BEGIN NEW CERTIFICATE REQUEST-----\n" + absl::Base64Escape(*der) +
                    "\n-----END NEW CERTIFICATE REQUEST-----\n"}) {
      auto csr = ParseCsr(form);
      ASSERT_TRUE(csr.ok()) << csr.status();
      EXPECT_EQ(csr->public_key.algorithm(), algorithm);
      EXPECT_TRUE(csr->public_key.Equals(key->public_key()));
      EXPECT_THAT(csr->dns_names, ElementsAre("r.example.com"));
    }
    auto other = PrivateKey::Generate(algorithm);
    ASSERT_TRUE(other.ok()) << other.status();
    const std::string spki = key->public_key().ToDer();
    const std::string other_spki = other->public_key().ToDer();
    ASSERT_EQ(spki.size(), other_spki.size());
    std::string swapped = *der;
    const size_t at = swapped.find(spki);
    ASSERT_NE(at, std::string::npos);
    swapped.replace(at, spki.size(), other_spki);
    EXPECT_THAT(ParseCsr(swapped).status().message(), HasSubstr("signature does not verify"));
  }
}

TEST(Csr, TheKeyOfACsrIsItsSignersPublicKeyAndNothingElse) {
  auto key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(key.ok());
  auto der = BuildCsr({"k.example.com"}, *key);
  ASSERT_TRUE(der.ok()) << der.status();
  auto built = CsrKeyDer(*der);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(*built, key->public_key().ToDer());
  // Another key's CSR for the same names has that key.
  auto other = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(other.ok());
  auto other_der = BuildCsr({"k.example.com"}, *other);
  ASSERT_TRUE(other_der.ok());
  auto other_key = CsrKeyDer(*other_der);
  ASSERT_TRUE(other_key.ok());
  EXPECT_EQ(*other_key, other->public_key().ToDer());
  EXPECT_NE(*other_key, *built);
  // Bytes that were never built or parsed here are read, with ParseCsr's errors.
  std::string tampered = *der;
  tampered[tampered.find("k.example.com")] = 'j';
  EXPECT_THAT(CsrKeyDer(tampered).status().message(), HasSubstr("signature does not verify"));
  EXPECT_EQ(CsrKeyDer("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  // Once 256 newer CSRs have pushed it out of memory, the first is read again: the same key.
  for (int i = 0; i < 256; ++i) ASSERT_TRUE(BuildCsr({"n.example.com"}, *other).ok());
  auto again = CsrKeyDer(*der);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, key->public_key().ToDer());
}

TEST(Certificates, ParsesTheTestChainExactly) {
  auto chain = ParsePemChain(ReadTestdata("chain.pem"));
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 2u);
  const CertificateInfo& leaf = (*chain)[0];
  EXPECT_EQ(leaf.serial_hex, "8f00d1e2c3b4a59687");
  // DER INTEGER content keeps the 0x00 that marks the high-bit serial positive.
  EXPECT_EQ(absl::BytesToHexString(leaf.serial_bytes), "008f00d1e2c3b4a59687");
  EXPECT_EQ(absl::ToUnixSeconds(leaf.not_before), kLeafNotBefore);
  EXPECT_EQ(absl::ToUnixSeconds(leaf.not_after), kLeafNotAfter);
  EXPECT_THAT(leaf.dns_names, ElementsAre("leaf.example.com", "*.leaf.example.com"));
  EXPECT_EQ(leaf.subject_cn, "leaf.example.com");
  EXPECT_EQ(leaf.issuer_cn, "acmevault test intermediate");
  EXPECT_EQ(absl::BytesToHexString(leaf.authority_key_id),
            "2576fcd786fc02a650334d25ecc21cd19dafa586");
  EXPECT_EQ((*chain)[1].serial_hex, "1001");
  EXPECT_EQ((*chain)[1].issuer_cn, "acmevault test root");

  auto key = PrivateKey::FromPem(ReadTestdata("leaf_key.pem"));
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(leaf.public_key.Equals(key->public_key()));

  // Re-encoding gives the same certificates back.
  auto again = SplitPemChain(ToPemChain({(*chain)[0].der, (*chain)[1].der}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0], leaf.der);
}

// A certificate's key is read whatever its algorithm: P-256 and P-384 from RFC 5480's form, RSA
// through the library's decoders (testdata/README.md: rsa_leaf, p384_leaf). With the key, the
// authority key id, which is read from its extension.
TEST(Certificates, ACertificatesKeyIsReadWhateverItsAlgorithm) {
  struct Case {
    const char* certificate;
    const char* public_key;
    KeyAlgorithm algorithm;
    const char* name;
    const char* authority_key_id;
  };
  for (const Case& c : {
           Case{"rsa_leaf.pem", "rsa_leaf.pub.pem", KeyAlgorithm::kRsa2048, "rsa.example.com",
                "01ef3af09d25bb40b7687fd570de7a2cbc07519c"},
           Case{"p384_leaf.pem", "p384_leaf.pub.pem", KeyAlgorithm::kEcdsaP384, "p384.example.com",
                "a2c818e8dc34598e11b8d77ea81d3cda54800971"},
       }) {
    SCOPED_TRACE(c.certificate);
    auto ders = SplitPemChain(ReadTestdata(c.certificate));
    ASSERT_TRUE(ders.ok()) << ders.status();
    auto info = ParseCertificate(ders->front());
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->public_key.algorithm(), c.algorithm);
    auto want = PublicKey::FromPem(ReadTestdata(c.public_key));
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_TRUE(info->public_key.Equals(*want));
    EXPECT_EQ(absl::BytesToHexString(info->authority_key_id), c.authority_key_id);
    EXPECT_THAT(info->dns_names, ElementsAre(c.name));
    EXPECT_EQ(info->subject_cn, c.name);
  }
}

// A certificate whose EC point is not on its curve does not parse: its key is refused, not left
// unread.
TEST(Certificates, ACertificateWhosePointIsOffItsCurveIsRefused) {
  auto chain = SplitPemChain(ReadTestdata("chain.pem"));
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto key = PrivateKey::FromPem(ReadTestdata("leaf_key.pem"));
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string spki = key->public_key().ToDer();
  std::string leaf = chain->front();
  const size_t at = leaf.find(spki);
  ASSERT_NE(at, std::string::npos);
  leaf[at + spki.size() - 1] ^= 0x01;  // The point's y, one bit off.
  auto parsed = ParseCertificate(leaf);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
}

// ParseCertificate answers a certificate it parsed lately from memory, by its exact bytes: a
// certificate that differs in one byte (here the serial's last), or has a byte more, is parsed
// on its own, also after more certificates than are kept have come between.
TEST(Certificates, AParsedCertificateIsAnsweredAgainForItsExactBytesOnly) {
  auto chain = SplitPemChain(ReadTestdata("chain.pem"));
  ASSERT_TRUE(chain.ok()) << chain.status();
  const std::string leaf = (*chain)[0];
  const std::string serial = absl::HexStringToBytes("8f00d1e2c3b4a59687");
  const size_t at = leaf.find(serial);
  ASSERT_NE(at, std::string::npos);
  auto with_last_serial_byte = [&](int byte) {
    std::string der = leaf;
    der[at + serial.size() - 1] = static_cast<char>(byte);
    return der;
  };
  for (int round = 0; round < 2; ++round) {
    auto first = ParseCertificate(leaf);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->serial_hex, "8f00d1e2c3b4a59687");
    EXPECT_EQ(first->der, leaf);
    EXPECT_THAT(first->dns_names, ElementsAre("leaf.example.com", "*.leaf.example.com"));
    auto other = ParseCertificate(with_last_serial_byte(0x88));
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ(other->serial_hex, "8f00d1e2c3b4a59688");
    EXPECT_EQ(ParseCertificate(leaf + std::string(1, '\0')).status().code(),
              absl::StatusCode::kInvalidArgument);
    // 300 more certificates: more than are kept, so the next round parses the leaf again.
    for (int byte = 0; byte < 300; ++byte) {
      auto parsed = ParseCertificate(with_last_serial_byte(byte % 256) + (byte < 256 ? "" : "x"));
      if (byte < 256) {
        ASSERT_TRUE(parsed.ok()) << byte;
        EXPECT_EQ(parsed->serial_bytes.back(), static_cast<char>(byte));
      } else {
        EXPECT_FALSE(parsed.ok()) << byte;
      }
    }
  }
}

// ---- CRLs (testdata/README.md: crl_*) ----

std::string PemToDer(const std::string& pem) {
  auto ders = SplitPemChain(pem);
  return ders.ok() && !ders->empty() ? ders->front() : "";
}

TEST(Crls, TheDistributionPointsAreTheCertificatesHttpUris) {
  auto points = CrlDistributionPoints(PemToDer(ReadTestdata("crl_leaf.pem")));
  ASSERT_TRUE(points.ok()) << points.status();
  EXPECT_THAT(*points, ElementsAre("https://ca.test/crl/1.crl"));
  // A certificate without the extension has none.
  auto none = CrlDistributionPoints(PemToDer(ReadTestdata("leaf.pem")));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, ::testing::IsEmpty());
  EXPECT_EQ(CrlDistributionPoints("not a certificate").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Crls, AParsedCertificateCarriesItsDistributionPoints) {
  // An issuance reads them from the parse it already has, not by parsing the leaf again.
  auto with = ParseCertificate(PemToDer(ReadTestdata("crl_leaf.pem")));
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_THAT(with->crl_distribution_points, ElementsAre("https://ca.test/crl/1.crl"));
  auto without = ParseCertificate(PemToDer(ReadTestdata("leaf.pem")));
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_THAT(without->crl_distribution_points, ::testing::IsEmpty());
}

TEST(Crls, AListedSerialIsFoundWithItsTimeAndReason) {
  const std::string issuer = PemToDer(ReadTestdata("crl_ca.pem"));
  const absl::Time now = absl::FromUnixSeconds(1796342400);  // 2026-12-04T00:00:00Z
  auto crl = RevocationList::Parse(ReadTestdata("crl_listed.der"), issuer, now);
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_EQ(crl->size(), 1u);
  EXPECT_EQ(crl->this_update(), absl::FromUnixSeconds(1796169600));  // 2026-12-02T00:00:00Z
  EXPECT_EQ(crl->next_update(), absl::FromUnixSeconds(1796774400));  // 2026-12-09T00:00:00Z
  auto leaf = ParseCertificate(PemToDer(ReadTestdata("crl_leaf.pem")));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  std::optional<RevokedEntry> entry = crl->Find(leaf->serial_hex);
  ASSERT_TRUE(entry.has_value()) << leaf->serial_hex;
  EXPECT_EQ(entry->reason, RevocationReason::kKeyCompromise);
  EXPECT_EQ(entry->revoked_at, absl::FromUnixSeconds(1796342871));  // 2026-12-04T00:07:51Z
  EXPECT_FALSE(crl->Find("1002").has_value());
  // The CA's CRL from before the revocation lists nothing.
  auto empty = RevocationList::Parse(ReadTestdata("crl_empty.der"), issuer, now);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_FALSE(empty->Find(leaf->serial_hex).has_value());
}

// A CRL is believed only when it is the issuer's, signed by it, and current.
TEST(Crls, AForgedStaleOrUnreadableCrlIsRefused) {
  const std::string issuer = PemToDer(ReadTestdata("crl_ca.pem"));
  const absl::Time now = absl::FromUnixSeconds(1796342400);
  // Same issuer name, another key's signature.
  EXPECT_EQ(RevocationList::Parse(ReadTestdata("crl_forged.der"), issuer, now).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Another issuer certificate altogether.
  EXPECT_EQ(
      RevocationList::Parse(ReadTestdata("crl_listed.der"), PemToDer(ReadTestdata("root.pem")), now)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  // After nextUpdate, and before thisUpdate.
  EXPECT_THAT(RevocationList::Parse(ReadTestdata("crl_listed.der"), issuer,
                                    absl::FromUnixSeconds(1796774401))
                  .status()
                  .message(),
              HasSubstr("stale"));
  EXPECT_THAT(RevocationList::Parse(ReadTestdata("crl_listed.der"), issuer,
                                    absl::FromUnixSeconds(1796169599))
                  .status()
                  .message(),
              HasSubstr("not valid yet"));
  // Bytes that are no CRL, a CRL with a byte more, a signature byte flipped.
  std::string crl = ReadTestdata("crl_listed.der");
  EXPECT_EQ(RevocationList::Parse("junk", issuer, now).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RevocationList::Parse(crl + "x", issuer, now).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string flipped = crl;
  flipped[flipped.size() - 5] ^= 0x01;
  EXPECT_FALSE(RevocationList::Parse(flipped, issuer, now).ok());
}

TEST(Certificates, ChainVerifiesOnlyAgainstItsRootAndWithinValidity) {
  auto ders = SplitPemChain(ReadTestdata("chain.pem"));
  ASSERT_TRUE(ders.ok());
  absl::Time valid = absl::FromUnixSeconds(kLeafNotBefore + 86400);
  EXPECT_TRUE(VerifyChain(*ders, ReadTestdata("root.pem"), valid).ok());
  EXPECT_THAT(VerifyChain(*ders, ReadTestdata("root.pem"),
                          absl::FromUnixSeconds(kLeafNotAfter + 86400))
                  .message(),
              HasSubstr("expired"));
  // Missing intermediate.
  EXPECT_EQ(VerifyChain({(*ders)[0]}, ReadTestdata("root.pem"), valid).code(),
            absl::StatusCode::kFailedPrecondition);
  // The intermediate is not a root.
  EXPECT_EQ(VerifyChain(*ders, ReadTestdata("int.pem"), valid).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(Certificates, PemChainRejectsWhatRfc8555Forbids) {
  std::string leaf = ReadTestdata("leaf.pem");
  EXPECT_THAT(SplitPemChain(leaf + ReadTestdata("leaf_key.pem")).status().message(),
              HasSubstr("\"PRIVATE KEY\" block"));
  EXPECT_THAT(SplitPemChain("hello\n" + leaf).status().message(), HasSubstr("outside PEM"));
  EXPECT_THAT(SplitPemChain(leaf.substr(0, leaf.size() / 2)).status().message(),
              HasSubstr("not terminated"));
  EXPECT_THAT(SplitPemChain("  \n").status().message(), HasSubstr("empty"));
  EXPECT_THAT(SplitPemChain("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
                  .status()
                  .message(),
              HasSubstr("not base64"));
  EXPECT_EQ(ParseCertificate("\x30\x03\x02\x01\x01").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acmevault::crypto
