// An RFC 8555 ACME client: every operation acmevault needs, against one CA directory.
//
// Thread-safe: one AcmeClient serves many accounts and threads (it shares the directory and a
// nonce pool). It holds no account key: each call borrows the key it signs with.
//
// Safety rules enforced on every response: URLs the CA hands back must have the directory's
// scheme, host and port; bodies are size-capped by the transport; JSON resources must come with
// a JSON content type and the certificate with application/pem-certificate-chain; problem
// documents become Status through problem.h. badNonce is retried with the nonce the error
// carried, up to Options::max_bad_nonce_retries times.
#ifndef ACMEVAULT_ACME_CLIENT_H_
#define ACMEVAULT_ACME_CLIENT_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "acme/http.h"
#include "common/clock.h"
#include "crypto/keys.h"
#include "crypto/revocation_reason.h"
#include "crypto/signer.h"
#include "crypto/x509.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme {

// ---- Bounds on what a CA may send (acme/README.md lists them with those of problem.h) --------
// Past a bound the response is refused with INVALID_ARGUMENT naming it; a value at the bound is
// accepted.

// Longest URL accepted from a CA (directory, Location, orders, authorizations, challenges,
// certificates and their alternates, an account's orders list, terms of service, ARI's
// explanation). Every such URL must also be printable ASCII without spaces: a NUL would cut the
// URL libcurl sees, CR or LF would split a header or a log line.
inline constexpr size_t kMaxUrlBytes = 2048;
// Most identifiers in an order (Let's Encrypt allows 100 names per certificate); an order lists
// at most one authorization per identifier, so this bounds authorizations too.
inline constexpr size_t kMaxOrderIdentifiers = 100;
// Longest challenge token (RFC 8555 §8.1: base64url, at least 128 bits; Pebble and Let's Encrypt
// send 43 characters) and Replay-Nonce accepted.
inline constexpr size_t kMaxChallengeTokenBytes = 256;
inline constexpr size_t kMaxNonceBytes = 256;
// A downloaded certificate chain: at most this many certificates (leaf and intermediates; real
// chains have two or three) and bytes of PEM.
inline constexpr size_t kMaxChainCertificates = 10;
inline constexpr size_t kMaxChainBytes = 64 * 1024;
// Most alternate chains (RFC 8555 §7.4.2 Link rel="alternate") a certificate may offer; each is
// a request when a preferred issuer is asked for.
inline constexpr size_t kMaxAlternateChains = 8;

struct Directory {
  std::string new_nonce, new_account, new_order, revoke_cert;
  std::string key_change;    // Empty when the CA does not offer it (some CAs do not).
  std::string renewal_info;  // ARI (RFC 9773); empty when the CA does not offer it.
  std::string terms_of_service;
  bool external_account_required = false;
  // Profile name -> description (draft-ietf-acme-profiles); empty when none are offered.
  std::vector<std::pair<std::string, std::string>> profiles;
};

struct Identifier {
  std::string type = "dns";
  std::string value;
  bool operator==(const Identifier& o) const { return type == o.type && value == o.value; }
};

struct Account {
  std::string url;
  std::string status;  // "valid", "deactivated" or "revoked".
  std::vector<std::string> contact;
  std::string orders;  // The orders list URL, if the CA gives one.
  // newAccount only: the CA made the account with this request (RFC 8555 §7.3: 201 Created),
  // not found one it had for the key (200).
  bool created = false;
};

struct Order {
  std::string url;
  // pending, ready, processing, valid, invalid; or deactivated (Boulder and Pebble: one of its
  // authorizations was deactivated; issued already when `certificate` is set).
  std::string status;
  std::optional<absl::Time> expires;
  std::vector<Identifier> identifiers;
  std::vector<std::string> authorizations;
  std::string finalize;
  std::string certificate;  // Once valid (kept when the order is deactivated afterwards).
  std::string profile;
  std::string replaces;
  // Problem document of an invalid order, or null; bounded (problem.h BoundedProblemDocument),
  // so its dump is short and valid UTF-8. Summarize(ProblemFromDocument(error)) is one line.
  nlohmann::json error;
  // From Retry-After on this response, if any.
  std::optional<absl::Time> retry_after;
};

// The CA issued the order's certificate and offers it for download: the order is valid, or was
// deactivated after issuance.
inline bool HasCertificate(const Order& order) {
  return (order.status == "valid" || order.status == "deactivated") && !order.certificate.empty();
}

struct Challenge {
  std::string type;  // http-01, dns-01, tls-alpn-01, ...
  std::string url;
  std::string status;
  std::string token;
  nlohmann::json error;  // As Order::error.
};

struct Authorization {
  std::string url;
  std::string status;  // pending, valid, invalid, deactivated, expired, revoked.
  Identifier identifier;
  bool wildcard = false;
  std::optional<absl::Time> expires;
  std::vector<Challenge> challenges;
  std::optional<absl::Time> retry_after;

  // The challenge of `type`, or nullptr.
  const Challenge* Find(absl::string_view type) const;
};

struct CertificateChain {
  std::string pem;  // Leaf first.
  std::string url;  // Where it was downloaded from.
  // Links to alternate chains (RFC 8555 §7.4.2), as offered with the default chain.
  std::vector<std::string> alternates;
};

struct RenewalInfo {
  absl::Time window_start;
  absl::Time window_end;
  std::string explanation_url;
  std::optional<absl::Time> retry_after;
};

// Who signs: an account's key (in memory or in a PKCS#11 token) and, once it exists, its URL
// (the JWS "kid").
struct AccountRef {
  const crypto::Signer* key = nullptr;  // Borrowed; must outlive the call.
  std::string url;
};

struct NewAccountOptions {
  std::vector<std::string> contact;  // e.g. "mailto:ops@example.com".
  bool terms_of_service_agreed = true;
  // RFC 8555 §7.3.1: find the account of this key without creating one.
  bool only_return_existing = false;
  // External Account Binding (§7.3.4): key id and the raw (decoded) MAC key.
  std::string eab_kid;
  std::string eab_mac_key;
};

struct NewOrderOptions {
  std::vector<Identifier> identifiers;
  std::string profile;   // Sent only when set and the directory offers it.
  std::string replaces;  // ARI CertID of the certificate this order renews (RFC 9773 §5).
};

// RFC 5280 §5.3.1 CRLReason codes, sent by revokeCert (RFC 8555 §7.6).
using crypto::RevocationReason;

struct AcmeClientOptions {
  std::string directory_url;
  // Borrowed; must outlive the client. Thread-safe.
  HttpTransport* transport = nullptr;
  // Borrowed; Clock::Real() when null.
  const Clock* clock = nullptr;
  // badNonce retries per request. Pebble at 50% rejection was seen to reject one request 11
  // times in a row, so fewer than 20 would make spurious failures.
  int max_bad_nonce_retries = 25;
  // Polling: the wait between polls when the CA sends no Retry-After, and the bounds any
  // Retry-After is clamped to.
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration min_poll_interval = absl::Milliseconds(10);
  absl::Duration max_poll_interval = absl::Minutes(1);
  // How long a fetched directory is reused.
  absl::Duration directory_ttl = absl::Hours(1);
  // Pebble 2.4.0 workaround: its authorization handler holds the authorization's lock while it
  // takes the store lock, and newOrder / order polls take them the other way round, so under
  // concurrency Pebble deadlocks (docs/DESIGN.md). When set, authorization and challenge requests
  // from this client never overlap any other request of this client. Off for real CAs.
  bool exclusive_authorization_requests = false;
};

class AcmeClient {
 public:
  static absl::StatusOr<std::unique_ptr<AcmeClient>> Create(AcmeClientOptions options);

  // The directory, fetched on first use and cached for directory_ttl.
  absl::StatusOr<Directory> GetDirectory();

  // ---- Accounts (RFC 8555 §7.3) --------------------------------------------------------------

  // Creates (or, with only_return_existing, finds) the account of `key`. Returns it with its
  // URL. An unknown key with only_return_existing is NOT_FOUND (accountDoesNotExist).
  absl::StatusOr<Account> NewAccount(const crypto::Signer& key,
                                     const NewAccountOptions& options);
  // POST-as-GET of the account.
  absl::StatusOr<Account> GetAccount(const AccountRef& account);
  absl::StatusOr<Account> UpdateContact(const AccountRef& account,
                                        const std::vector<std::string>& contact);
  // §7.3.5: replaces the account's key with `new_key`. Inner JWS by the new key (jwk, url, no
  // nonce) over {account, oldKey}; outer JWS by the old key (kid). UNIMPLEMENTED, without any
  // request, when the directory offers no keyChange.
  absl::Status KeyChange(const AccountRef& account, const crypto::Signer& new_key);
  // §7.3.6: irreversible.
  absl::StatusOr<Account> DeactivateAccount(const AccountRef& account);

  // ---- Orders and authorizations (§7.4, §7.5) -------------------------------------------------

  // The new order; INVALID_ARGUMENT unless the CA's order is for exactly the identifiers asked
  // for (as sets, case-insensitively).
  absl::StatusOr<Order> NewOrder(const AccountRef& account, const NewOrderOptions& options);
  absl::StatusOr<Order> GetOrder(const AccountRef& account, absl::string_view url);
  absl::StatusOr<Authorization> GetAuthorization(const AccountRef& account,
                                                 absl::string_view url);
  // GetAuthorization, and a check that it belongs to `order`: its identifier (as "*." and the
  // name when it is a wildcard authorization, RFC 8555 §7.1.4) is one of the order's,
  // case-insensitively. INVALID_ARGUMENT naming the identifier (clipped) otherwise: the CA's
  // order is bad.
  absl::StatusOr<Authorization> GetAuthorization(const AccountRef& account, const Order& order,
                                                 absl::string_view url);
  // Tells the CA the challenge is ready to be validated (POST {}).
  absl::StatusOr<Challenge> RespondToChallenge(const AccountRef& account, absl::string_view url);
  // §7.5.2.
  absl::StatusOr<Authorization> DeactivateAuthorization(const AccountRef& account,
                                                        absl::string_view url);
  // Polls the order until its status is not `pending`/`processing` (or, when `until_ready`,
  // until it leaves `pending`), honouring Retry-After (clamped), until `deadline`.
  // DEADLINE_EXCEEDED with the last status when time runs out.
  absl::StatusOr<Order> WaitForOrder(const AccountRef& account, absl::string_view url,
                                     absl::Time deadline, bool until_ready = false);
  // Polls an authorization until it is no longer `pending`.
  absl::StatusOr<Authorization> WaitForAuthorization(const AccountRef& account,
                                                     absl::string_view url, absl::Time deadline);
  // Sends the CSR (DER) to the order's finalize URL.
  absl::StatusOr<Order> Finalize(const AccountRef& account, const Order& order,
                                 absl::string_view csr_der);

  // ---- Certificates (§7.4.2, §7.6, RFC 9773) --------------------------------------------------

  // Downloads the chain at `url`. When `preferred_issuer` is set and the default chain is not
  // issued under that name, the alternates are fetched and the first whose any certificate's
  // issuer common name equals it is returned; otherwise the default chain. INVALID_ARGUMENT
  // unless every chain fetched is PEM of CERTIFICATE blocks only, within kMaxChainBytes and
  // kMaxChainCertificates, with at most kMaxAlternateChains alternates on the directory's origin.
  absl::StatusOr<CertificateChain> DownloadCertificate(const AccountRef& account,
                                                       absl::string_view url,
                                                       absl::string_view preferred_issuer = "");
  // The certificate of a valid `order` (FAILED_PRECONDITION for any other), downloaded as above,
  // and its leaf checked: valid now (the injected clock; both ends of its validity period
  // count), and its DNS names exactly the order's identifiers (as sets, case-insensitively).
  // INVALID_ARGUMENT saying which check failed; UNIMPLEMENTED for an order with other than DNS
  // identifiers (crypto::CertificateInfo lists only a leaf's DNS names).
  absl::StatusOr<CertificateChain> DownloadCertificate(const AccountRef& account,
                                                       const Order& order,
                                                       absl::string_view preferred_issuer = "");
  // Revokes with the account key (kid).
  absl::Status RevokeCertificate(const AccountRef& account, absl::string_view certificate_der,
                                 RevocationReason reason);
  // Revokes with the certificate's own key (jwk), e.g. after a host key compromise.
  absl::Status RevokeWithCertificateKey(const crypto::PrivateKey& certificate_key,
                                        absl::string_view certificate_der,
                                        RevocationReason reason);
  // ARI: the CA's suggested renewal window. UNIMPLEMENTED when the directory has no
  // renewalInfo.
  absl::StatusOr<RenewalInfo> GetRenewalInfo(absl::string_view certificate_der);

  // Requests sent so far (every POST, GET and HEAD), for benchmarks and tests.
  int64_t requests_sent() const { return requests_.load(std::memory_order_relaxed); }
  // badNonce errors answered by retrying.
  int64_t bad_nonce_retries() const { return bad_nonce_retries_.load(std::memory_order_relaxed); }

 private:
  explicit AcmeClient(AcmeClientOptions options);

  struct Response {
    HttpResponse http;
    nlohmann::json json;  // Parsed body for JSON responses, else null.
  };
  enum class Expect { kJson, kPemChain, kEmpty };

  absl::StatusOr<HttpResponse> Send(HttpRequest request);
  absl::StatusOr<std::string> TakeNonce();
  void KeepNonce(const HttpResponse& response);
  absl::Status CheckSameOrigin(absl::string_view url, absl::string_view what) const;
  // Signs and POSTs `payload` (kid when account.url is set, else jwk), retrying badNonce.
  absl::StatusOr<Response> Post(const AccountRef& account, absl::string_view url,
                                absl::string_view payload, Expect expect,
                                absl::string_view what, bool exclusive = false);
  // For keyChange/revocation by certificate key, where the JWS is built differently.
  absl::StatusOr<Response> PostSigned(
      absl::string_view url, Expect expect, absl::string_view what,
      const std::function<absl::StatusOr<std::string>(const std::string& nonce)>& sign,
      bool exclusive = false);
  // A certificate chain as downloaded, with its certificates parsed (leaf first).
  struct FetchedChain {
    CertificateChain chain;
    std::vector<crypto::CertificateInfo> certificates;
  };
  // Downloads the chain at `url` and checks it: PEM of CERTIFICATE blocks only, within
  // kMaxChainBytes and kMaxChainCertificates, at most kMaxAlternateChains alternates, each on
  // the directory's origin.
  absl::StatusOr<FetchedChain> FetchChain(const AccountRef& account, absl::string_view url);
  // FetchChain of `url`, or of its first alternate issued under `preferred_issuer` (see
  // DownloadCertificate).
  absl::StatusOr<FetchedChain> FetchPreferredChain(const AccountRef& account, absl::string_view url,
                                                   absl::string_view preferred_issuer);
  // The leaf of `fetched` is valid now and names exactly `order`'s identifiers.
  absl::Status CheckLeaf(const FetchedChain& fetched, const Order& order) const;
  absl::StatusOr<Order> ParseOrder(const Response& r, absl::string_view url) const;
  // A challenge object (RFC 8555 §8) with a known status, a URL on the directory's origin and,
  // if it has one, a usable token.
  absl::StatusOr<Challenge> ParseChallenge(const nlohmann::json& c, absl::string_view what) const;
  absl::StatusOr<Authorization> ParseAuthorization(const Response& r,
                                                   absl::string_view url) const;
  absl::Duration PollDelay(std::optional<absl::Time> retry_after);

  const AcmeClientOptions options_;
  const Clock* const clock_;
  std::string origin_;  // scheme://host:port of the directory.
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> bad_nonce_retries_{0};

  // Held shared by every request, exclusively by authorization requests, when
  // options_.exclusive_authorization_requests is set.
  absl::Mutex request_order_mu_;

  absl::Mutex mu_;
  std::optional<Directory> directory_ ABSL_GUARDED_BY(mu_);
  absl::Time directory_fetched_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> nonces_ ABSL_GUARDED_BY(mu_);
};

// The RFC 9773 CertID of a certificate: base64url(AKI keyIdentifier) "." base64url(serial).
absl::StatusOr<std::string> AriCertId(absl::string_view certificate_der);

// "scheme://host:port" of an absolute http(s) URL, lower-cased, with the default port made
// explicit; INVALID_ARGUMENT for anything else (including userinfo).
absl::StatusOr<std::string> UrlOrigin(absl::string_view url);

}  // namespace acmevault::acme

#endif  // ACMEVAULT_ACME_CLIENT_H_
