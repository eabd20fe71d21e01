// Helpers for exercising the ACME client against the local stack's Pebble and
// pebble-challtestsrv: publishing challenge answers, reading Pebble's management interface, and
// one whole issuance. Used by integration tests and tests/bench; not by the product.
#ifndef ACMEVAULT_ACME_TESTING_PEBBLE_H_
#define ACMEVAULT_ACME_TESTING_PEBBLE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "acme/client.h"
#include "acme/http.h"
#include "crypto/keys.h"

namespace acmevault::acme::testing {

// pebble-challtestsrv's management API (plain HTTP on loopback).
class ChallTestSrv {
 public:
  explicit ChallTestSrv(std::string management_url);
  absl::Status AddHttp01(absl::string_view token, absl::string_view key_authorization);
  absl::Status DelHttp01(absl::string_view token);
  // `host` without the trailing dot; the _acme-challenge label is added here.
  absl::Status SetDns01(absl::string_view host, absl::string_view txt_value);
  absl::Status ClearDns01(absl::string_view host);

 private:
  absl::Status Post(absl::string_view path, const std::string& body);
  std::string url_;
  std::unique_ptr<CurlTransport> http_;
};

// Pebble's management interface (HTTPS, same CA file as the ACME listener).
class PebbleManagement {
 public:
  PebbleManagement(std::string management_url, std::string ca_file);
  // PEM of root `index` (0 is the default root; 1.. are PEBBLE_ALTERNATE_ROOTS).
  absl::StatusOr<std::string> Root(int index);
  // "Valid" or "Revoked", and the revocation reason code when revoked.
  struct CertStatus {
    std::string status;
    int reason = -1;
  };
  absl::StatusOr<CertStatus> StatusBySerial(absl::string_view serial_hex);

 private:
  absl::StatusOr<HttpResponse> Get(absl::string_view path);
  std::string url_;
  std::unique_ptr<CurlTransport> http_;
};

enum class ChallengeKind { kHttp01, kDns01 };

struct Issued {
  std::string order_url;
  CertificateChain chain;
  std::unique_ptr<crypto::PrivateKey> certificate_key;
  std::vector<std::string> authorizations;
};

// One whole issuance for `names` with a fresh P-256 certificate key: newOrder, answer each
// authorization through challtestsrv, finalize, wait, download.
absl::StatusOr<Issued> IssueCertificate(AcmeClient& client, const AccountRef& account,
                                        ChallTestSrv& challenges,
                                        const std::vector<std::string>& names,
                                        ChallengeKind kind = ChallengeKind::kHttp01,
                                        absl::Duration timeout = absl::Seconds(60));

// A name under example.com that no earlier test used: "<prefix>-<random>.example.com".
std::string UniqueName(absl::string_view prefix);

}  // namespace acmevault::acme::testing

#endif  // ACMEVAULT_ACME_TESTING_PEBBLE_H_
