// DNS-01 answers by RFC 2136 dynamic update, signed with TSIG (RFC 8945), sent to the zone's
// authoritative server (BIND 9 and others). libldns builds, signs and sends the messages and
// verifies the signed reply. Thread-safe: each call uses its own resolver.
#ifndef ACMEVAULT_SERVICE_DNS01_RFC2136_H_
#define ACMEVAULT_SERVICE_DNS01_RFC2136_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/order_runner.h"

namespace acmevault::service {

struct Rfc2136Options {
  // The authoritative server, "127.0.0.1:53" (IPv4 literal and port).
  std::string server;
  // The zone to update, e.g. "example.com". Every name published must be within it.
  std::string zone;
  std::string tsig_name;
  // "hmac-sha256" (default), "hmac-sha512", ...
  std::string tsig_algorithm = "hmac-sha256";
  // Standard base64, as BIND's tsig-keygen prints it. Never logged.
  std::string tsig_secret;
  int ttl_seconds = 60;
  absl::Duration timeout = absl::Seconds(5);
};

class Rfc2136Solver final : public Dns01Solver {
 public:
  // INVALID_ARGUMENT for a malformed server, zone, key name or secret.
  static absl::StatusOr<std::unique_ptr<Rfc2136Solver>> Create(Rfc2136Options options);

  // Adds TXT `txt_value` at _acme-challenge.<name>. INVALID_ARGUMENT if the name is outside
  // the zone; PERMISSION_DENIED when the server refuses the signature or the update (NOTAUTH,
  // REFUSED); UNAVAILABLE when it does not answer.
  absl::Status Publish(absl::string_view name, absl::string_view txt_value) override;
  // Deletes exactly that TXT record (other values at the name stay).
  absl::Status Remove(absl::string_view name, absl::string_view txt_value) override;

 private:
  explicit Rfc2136Solver(Rfc2136Options options) : options_(std::move(options)) {}
  absl::Status Update(absl::string_view name, absl::string_view txt_value, bool add);

  const Rfc2136Options options_;
  std::string host_;
  int port_ = 53;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_DNS01_RFC2136_H_
