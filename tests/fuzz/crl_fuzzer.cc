// Certificate revocation lists as a CA serves them (RFC 5280 §5; crypto::RevocationList), checked
// against an embedded issuer (crypto/testdata/crl_ca.pem) at a time its test CRLs are current,
// and the CRL distribution points of a certificate (crypto::CrlDistributionPoints). An input is
// tried as both. Accepted: either read it (a CRL only when that issuer signed it).
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "crypto/x509.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

constexpr char kIssuerPem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmzCCAUCgAwIBAgIBBzAKBggqhkjOPQQDAjAkMSIwIAYDVQQDDBlhY21ldmF1\n"
    "bHQgdGVzdCBDUkwgaXNzdWVyMB4XDTI2MTIwNDAwMDc1MVoXDTM2MTIwMTAwMDc1\n"
    "MVowJDEiMCAGA1UEAwwZYWNtZXZhdWx0IHRlc3QgQ1JMIGlzc3VlcjBZMBMGByqG\n"
    "SM49AgEGCCqGSM49AwEHA0IABJthIM4AAP+QdQzb7hnBMxZww2xfeZ6VLpE1lozZ\n"
    "DSR8YwxsLDwvqkZHXu7XnqN2UTKlQLLtr+aS+8zvmjwvxoGjYzBhMB0GA1UdDgQW\n"
    "BBRpfcvyeGKxME4ClUllZZMWjigD3DAfBgNVHSMEGDAWgBRpfcvyeGKxME4ClUll\n"
    "ZZMWjigD3DAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjO\n"
    "PQQDAgNJADBGAiEAzIlaR0tnzyKQ5NKUmoSPONhW++RdTlJ0DxoSiUy584MCIQDN\n"
    "gBHkNlaUtBRsU/FsIAyBOYbzJp5X+dWIiFZJsF8dNw==\n"
    "-----END CERTIFICATE-----\n";

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  static const std::string* issuer = [] {
    auto ders = crypto::SplitPemChain(kIssuerPem);
    return new std::string(ders.ok() && !ders->empty() ? ders->front() : "");
  }();
  FUZZ_CHECK(!issuer->empty());
  bool accepted = false;
  auto points = crypto::CrlDistributionPoints(input);
  if (points.ok()) {
    accepted = true;
    for (const std::string& url : *points) {
      FUZZ_CHECK(absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://"));
    }
  }
  // 2026-12-05T00:00:00Z, inside the test CRLs' thisUpdate and nextUpdate.
  const absl::Time now = absl::FromUnixSeconds(1796428800);
  auto list = crypto::RevocationList::Parse(input, *issuer, now);
  if (list.ok()) {
    accepted = true;
    FUZZ_CHECK(list->this_update() <= now);
    FUZZ_CHECK(!list->next_update().has_value() || *list->next_update() >= now);
    FUZZ_CHECK(!list->Find("not a serial").has_value());
  }
  return accepted ? Verdict::kAccepted : Verdict::kRejected;
}

}  // namespace acmevault::fuzz
