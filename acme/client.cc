#include "acme/client.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "acme/ca_input.h"
#include "acme/problem.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "crypto/jws.h"
#include "crypto/x509.h"

namespace acmevault::acme {
namespace {

constexpr size_t kMaxPooledNonces = 64;

using Json = nlohmann::json;

// OK when `url` is within kMaxUrlBytes and printable ASCII without spaces (see client.h).
absl::Status CheckUrlText(absl::string_view url, absl::string_view what) {
  if (url.size() > kMaxUrlBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": CA sent a URL of ", url.size(),
                                                   " bytes; at most ", kMaxUrlBytes,
                                                   " are accepted: ", CaText(url)));
  }
  if (std::any_of(url.begin(), url.end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) > '~';
      })) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": CA sent a URL with a control character, space or non-ASCII byte: ", CaText(url)));
  }
  return absl::OkStatus();
}

// RFC 8555 §6.5.1: a nonce is base64url; one that is not, or is longer than any CA's, is not
// worth sending back.
bool UsableNonce(absl::string_view nonce) {
  std::string ignored;
  return !nonce.empty() && nonce.size() <= kMaxNonceBytes &&
         crypto::Base64UrlDecode(nonce, &ignored);
}

// RFC 8555 §8.1: a token is base64url characters (it need not decode); it ends up in a URL path
// (HTTP-01) and a DNS record (DNS-01).
bool UsableToken(absl::string_view token) {
  return !token.empty() && token.size() <= kMaxChallengeTokenBytes &&
         std::all_of(token.begin(), token.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
         });
}

// OK when `value` is one of `allowed`; else INVALID_ARGUMENT naming it, clipped.
absl::Status CheckStatus(absl::string_view value, std::initializer_list<absl::string_view> allowed,
                         absl::string_view kind, absl::string_view what) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": unknown ", kind, " status \"", CaText(value), "\""));
}

// JSON accessors that never throw: wrong types read as absent.
std::string Str(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

absl::StatusOr<std::string> RequireStr(const Json& j, const char* key, absl::string_view what) {
  std::string v = Str(j, key);
  if (v.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": CA response lacks \"", key, "\" (or it is not a string)"));
  }
  return v;
}

// The "error" of an order, authorization or challenge, bounded (problem.h), or null.
Json ErrorOf(const Json& resource) {
  auto e = resource.find("error");
  return e == resource.end() || e->is_null() ? Json() : BoundedProblemDocument(*e);
}

std::optional<absl::Time> ParseRfc3339(const std::string& s) {
  if (s.empty()) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return std::nullopt;
  return t;
}

// An identifier object (RFC 8555 §9.7.7), or nullopt unless it has a type and a value.
std::optional<Identifier> ParseIdentifier(const Json& j) {
  Identifier id{Str(j, "type"), Str(j, "value")};
  if (id.type.empty() || id.value.empty()) return std::nullopt;
  return id;
}

// "type:value" as an order lists the identifier, lower-cased (DNS names and the types are
// case-insensitive); a wildcard authorization names the base domain (RFC 8555 §7.1.4).
std::string OrderForm(const Identifier& id, bool wildcard = false) {
  return absl::AsciiStrToLower(absl::StrCat(id.type, ":", wildcard ? "*." : "", id.value));
}

std::set<std::string> OrderForms(const std::vector<Identifier>& ids) {
  std::set<std::string> out;
  for (const Identifier& id : ids) out.insert(OrderForm(id));
  return out;
}

bool IsJsonContentType(absl::string_view ct) {
  ct = absl::StripAsciiWhitespace(ct.substr(0, ct.find(';')));
  return absl::EqualsIgnoreCase(ct, "application/json") ||
         absl::EqualsIgnoreCase(ct, "application/problem+json");
}

// Link: <url>;rel="alternate", <url2>;rel="up" -> urls whose rel is `rel`.
std::vector<std::string> LinksWithRel(const HttpResponse& r, absl::string_view rel) {
  std::vector<std::string> out;
  for (const std::string& header : r.Headers("Link")) {
    for (absl::string_view part : absl::StrSplit(header, ',')) {
      size_t open = part.find('<');
      size_t close = part.find('>');
      if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) {
        continue;
      }
      absl::string_view params = part.substr(close + 1);
      for (absl::string_view param : absl::StrSplit(params, ';')) {
        param = absl::StripAsciiWhitespace(param);
        if (!absl::ConsumePrefix(&param, "rel=")) continue;
        param = absl::StripPrefix(absl::StripSuffix(param, "\""), "\"");
        if (param == rel) out.emplace_back(part.substr(open + 1, close - open - 1));
      }
    }
  }
  return out;
}

}  // namespace

const Challenge* Authorization::Find(absl::string_view type) const {
  for (const auto& c : challenges) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

absl::StatusOr<std::string> UrlOrigin(absl::string_view url) {
  std::string lower = absl::AsciiStrToLower(url);
  absl::string_view rest = lower;
  std::string scheme;
  if (absl::ConsumePrefix(&rest, "https://")) {
    scheme = "https";
  } else if (absl::ConsumePrefix(&rest, "http://")) {
    scheme = "http";
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not an http(s) URL: ", url));
  }
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty() || absl::StrContains(authority, '@')) {
    return absl::InvalidArgumentError(absl::StrCat("URL has no usable host: ", url));
  }
  // Split host and port, minding IPv6 literals ("[::1]:443").
  size_t colon = authority.rfind(':');
  size_t bracket = authority.rfind(']');
  absl::string_view host = authority;
  std::string port = scheme == "https" ? "443" : "80";
  if (colon != absl::string_view::npos && (bracket == absl::string_view::npos || colon > bracket)) {
    host = authority.substr(0, colon);
    absl::string_view p = authority.substr(colon + 1);
    int n;
    if (!absl::SimpleAtoi(p, &n) || n <= 0 || n > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("URL has a bad port: ", url));
    }
    port = absl::StrCat(n);
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("URL has no host: ", url));
  return absl::StrCat(scheme, "://", host, ":", port);
}

absl::StatusOr<std::string> AriCertId(absl::string_view certificate_der) {
  ASSIGN_OR_RETURN(crypto::CertificateInfo info, crypto::ParseCertificate(certificate_der));
  if (info.authority_key_id.empty()) {
    return absl::InvalidArgumentError("certificate has no authority key identifier");
  }
  return absl::StrCat(crypto::Base64Url(info.authority_key_id), ".",
                      crypto::Base64Url(info.serial_bytes));
}

AcmeClient::AcmeClient(AcmeClientOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()) {}

absl::StatusOr<std::unique_ptr<AcmeClient>> AcmeClient::Create(AcmeClientOptions options) {
  if (options.transport == nullptr) return absl::InvalidArgumentError("transport is required");
  if (options.max_bad_nonce_retries < 0) {
    return absl::InvalidArgumentError("max_bad_nonce_retries must be >= 0");
  }
  ASSIGN_OR_RETURN(std::string origin, UrlOrigin(options.directory_url));
  auto client = std::unique_ptr<AcmeClient>(new AcmeClient(std::move(options)));
  client->origin_ = std::move(origin);
  return client;
}

absl::Status AcmeClient::CheckSameOrigin(absl::string_view url, absl::string_view what) const {
  RETURN_IF_ERROR(CheckUrlText(url, what));
  auto origin = UrlOrigin(url);
  if (!origin.ok() || *origin != origin_) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": CA returned a URL outside the directory's origin ", origin_, ": ", CaText(url)));
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpResponse> AcmeClient::Send(HttpRequest request) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  return options_.transport->Send(request);
}

absl::StatusOr<Directory> AcmeClient::GetDirectory() {
  {
    absl::MutexLock lock(&mu_);
    if (directory_ && clock_->Now() - directory_fetched_ < options_.directory_ttl) {
      return *directory_;
    }
  }
  const std::string what = "GET directory";
  ASSIGN_OR_RETURN(HttpResponse r, Send({"GET", options_.directory_url, {}, ""}));
  if (r.status != 200) return ProblemStatus(r, what, clock_->Now());
  if (!IsJsonContentType(r.Header("Content-Type"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": content type \"", CaText(r.Header("Content-Type")), "\" is not JSON"));
  }
  ASSIGN_OR_RETURN(Json j, ParseCaJsonObject(r.body, what));
  Directory d;
  ASSIGN_OR_RETURN(d.new_nonce, RequireStr(j, "newNonce", what));
  ASSIGN_OR_RETURN(d.new_account, RequireStr(j, "newAccount", what));
  ASSIGN_OR_RETURN(d.new_order, RequireStr(j, "newOrder", what));
  ASSIGN_OR_RETURN(d.revoke_cert, RequireStr(j, "revokeCert", what));
  // RFC 8555 §7.1.1 lists keyChange, but some CAs do not implement it: empty when absent, and
  // KeyChange refuses without a request (the service then rolls over by a new account).
  if (j.contains("keyChange")) {
    ASSIGN_OR_RETURN(d.key_change, RequireStr(j, "keyChange", what));
  }
  d.renewal_info = Str(j, "renewalInfo");
  for (const std::string* url : {&d.new_nonce, &d.new_account, &d.new_order, &d.revoke_cert,
                                 &d.key_change, &d.renewal_info}) {
    if (!url->empty()) RETURN_IF_ERROR(CheckSameOrigin(*url, what));
  }
  if (auto meta = j.find("meta"); meta != j.end() && meta->is_object()) {
    d.terms_of_service = Str(*meta, "termsOfService");
    RETURN_IF_ERROR(CheckUrlText(d.terms_of_service, what));
    auto ear = meta->find("externalAccountRequired");
    d.external_account_required = ear != meta->end() && ear->is_boolean() && ear->get<bool>();
    if (auto profiles = meta->find("profiles"); profiles != meta->end() && profiles->is_object()) {
      for (auto it = profiles->begin(); it != profiles->end(); ++it) {
        d.profiles.emplace_back(it.key(), it->is_string() ? it->get<std::string>() : "");
      }
    }
  }
  absl::MutexLock lock(&mu_);
  directory_ = d;
  directory_fetched_ = clock_->Now();
  return d;
}

void AcmeClient::KeepNonce(const HttpResponse& response) {
  std::string nonce = response.Header("Replay-Nonce");
  if (!UsableNonce(nonce)) return;
  absl::MutexLock lock(&mu_);
  if (nonces_.size() >= kMaxPooledNonces) nonces_.erase(nonces_.begin());
  nonces_.push_back(std::move(nonce));
}

absl::StatusOr<std::string> AcmeClient::TakeNonce() {
  {
    absl::MutexLock lock(&mu_);
    if (!nonces_.empty()) {
      std::string n = std::move(nonces_.back());  // The freshest first.
      nonces_.pop_back();
      return n;
    }
  }
  ASSIGN_OR_RETURN(Directory d, GetDirectory());
  ASSIGN_OR_RETURN(HttpResponse r, Send({"HEAD", d.new_nonce, {}, ""}));
  if (r.status != 200 && r.status != 204) {
    return ProblemStatus(r, "HEAD newNonce", clock_->Now());
  }
  std::string nonce = r.Header("Replay-Nonce");
  if (!UsableNonce(nonce)) {
    return absl::InvalidArgumentError("HEAD newNonce: no usable Replay-Nonce header");
  }
  return nonce;
}

absl::StatusOr<AcmeClient::Response> AcmeClient::PostSigned(
    absl::string_view url, Expect expect, absl::string_view what,
    const std::function<absl::StatusOr<std::string>(const std::string& nonce)>& sign,
    bool exclusive) {
  RETURN_IF_ERROR(CheckSameOrigin(url, what));
  std::optional<absl::ReaderMutexLock> shared;
  std::optional<absl::WriterMutexLock> sole;
  if (options_.exclusive_authorization_requests) {
    if (exclusive) {
      sole.emplace(&request_order_mu_);
    } else {
      shared.emplace(&request_order_mu_);
    }
  }
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(std::string nonce, TakeNonce());
    ASSIGN_OR_RETURN(std::string body, sign(nonce));
    ASSIGN_OR_RETURN(HttpResponse r,
                     Send({"POST", std::string(url),
                           {{"Content-Type", "application/jose+json"}}, std::move(body)}));
    KeepNonce(r);
    // Only 2xx is success: redirects are never followed on POST, so a 3xx is an error too.
    if (r.status < 200 || r.status >= 300) {
      absl::Status st = ProblemStatus(r, what, clock_->Now());
      auto problem = GetProblem(st);
      // §6.5: a badNonce error carries a fresh nonce (kept above); retry with it.
      if (problem && problem->ShortType() == "badNonce" &&
          attempt < options_.max_bad_nonce_retries) {
        bad_nonce_retries_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      return st;
    }
    Response out{std::move(r), nullptr};
    std::string ct = out.http.Header("Content-Type");
    if (expect == Expect::kJson) {
      if (!IsJsonContentType(ct)) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": content type \"", CaText(ct), "\" is not JSON"));
      }
      ASSIGN_OR_RETURN(out.json, ParseCaJsonObject(out.http.body, what));
    } else if (expect == Expect::kPemChain) {
      absl::string_view media = absl::StripAsciiWhitespace(absl::string_view(ct).substr(
          0, ct.find(';')));
      if (!absl::EqualsIgnoreCase(media, "application/pem-certificate-chain")) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": content type \"", CaText(ct), "\" is not application/pem-certificate-chain"));
      }
    }
    return out;
  }
}

absl::StatusOr<AcmeClient::Response> AcmeClient::Post(const AccountRef& account,
                                                      absl::string_view url,
                                                      absl::string_view payload, Expect expect,
                                                      absl::string_view what, bool exclusive) {
  if (account.key == nullptr) return absl::InvalidArgumentError("no account key");
  const std::string target(url);
  return PostSigned(
      url, expect, what,
      [&](const std::string& nonce) {
        return crypto::SignJws(*account.key, {target, nonce, account.url}, payload);
      },
      exclusive);
}

absl::Duration AcmeClient::PollDelay(std::optional<absl::Time> retry_after) {
  absl::Duration d = options_.poll_interval;
  if (retry_after) d = *retry_after - clock_->Now();
  return std::clamp(d, options_.min_poll_interval, options_.max_poll_interval);
}

// ---- Accounts ---------------------------------------------------------------------------------

namespace {

absl::StatusOr<Account> ParseAccount(const Json& j, std::string url, absl::string_view what) {
  Account a;
  a.url = std::move(url);
  a.status = Str(j, "status");
  a.orders = Str(j, "orders");
  RETURN_IF_ERROR(CheckUrlText(a.orders, what));
  if (auto c = j.find("contact"); c != j.end() && c->is_array()) {
    for (const auto& v : *c) {
      if (v.is_string()) a.contact.push_back(v.get<std::string>());
    }
  }
  return a;
}

}  // namespace

absl::StatusOr<Account> AcmeClient::NewAccount(const crypto::Signer& key,
                                               const NewAccountOptions& options) {
  ASSIGN_OR_RETURN(Directory d, GetDirectory());
  Json payload = Json::object();
  if (options.only_return_existing) {
    payload["onlyReturnExisting"] = true;
  } else {
    payload["termsOfServiceAgreed"] = options.terms_of_service_agreed;
    if (!options.contact.empty()) payload["contact"] = options.contact;
    if (!options.eab_kid.empty()) {
      payload["externalAccountBinding"] =
          crypto::SignEabJws(options.eab_kid, options.eab_mac_key, d.new_account, key.public_key());
    } else if (d.external_account_required) {
      return absl::FailedPreconditionError(
          "newAccount: the CA requires External Account Binding (meta.externalAccountRequired) "
          "and no EAB key id was given");
    }
  }
  const std::string what = "POST newAccount";
  ASSIGN_OR_RETURN(Response r,
                   Post({&key, ""}, d.new_account, DumpJson(payload), Expect::kJson, what));
  std::string location = r.http.Header("Location");
  if (location.empty()) return absl::InvalidArgumentError(what + ": no Location header");
  RETURN_IF_ERROR(CheckSameOrigin(location, what));
  ASSIGN_OR_RETURN(Account account, ParseAccount(r.json, location, what));
  account.created = r.http.status == 201;
  return account;
}

absl::StatusOr<Account> AcmeClient::GetAccount(const AccountRef& account) {
  const std::string what = "POST account";
  ASSIGN_OR_RETURN(Response r, Post(account, account.url, "", Expect::kJson, what));
  return ParseAccount(r.json, account.url, what);
}

absl::StatusOr<Account> AcmeClient::UpdateContact(const AccountRef& account,
                                                  const std::vector<std::string>& contact) {
  Json payload = {{"contact", contact}};
  const std::string what = "POST account (update contact)";
  ASSIGN_OR_RETURN(Response r, Post(account, account.url, DumpJson(payload), Expect::kJson, what));
  return ParseAccount(r.json, account.url, what);
}

absl::Status AcmeClient::KeyChange(const AccountRef& account, const crypto::Signer& new_key) {
  if (account.key == nullptr || account.url.empty()) {
    return absl::InvalidArgumentError("keyChange needs the account URL and its current key");
  }
  ASSIGN_OR_RETURN(Directory d, GetDirectory());
  if (d.key_change.empty()) {
    return absl::UnimplementedError("the CA's directory offers no keyChange; nothing was sent");
  }
  Json inner_payload = {{"account", account.url},
                        {"oldKey", crypto::PublicJwk(account.key->public_key())}};
  // §7.3.5: the inner JWS has "jwk" (the new key) and "url", and no "nonce".
  ASSIGN_OR_RETURN(Json inner,
                   crypto::SignJwsObject(new_key, {d.key_change, "", ""}, DumpJson(inner_payload)));
  ASSIGN_OR_RETURN(Response r,
                   Post(account, d.key_change, DumpJson(inner), Expect::kEmpty, "POST keyChange"));
  return absl::OkStatus();
}

absl::StatusOr<Account> AcmeClient::DeactivateAccount(const AccountRef& account) {
  const std::string what = "POST account (deactivate)";
  ASSIGN_OR_RETURN(Response r,
                   Post(account, account.url, R"({"status":"deactivated"})", Expect::kJson, what));
  return ParseAccount(r.json, account.url, what);
}

// ---- Orders -----------------------------------------------------------------------------------

absl::StatusOr<Order> AcmeClient::ParseOrder(const Response& r, absl::string_view url) const {
  const std::string what = absl::StrCat("order ", url);
  const Json& j = r.json;
  Order o;
  o.url = std::string(url);
  ASSIGN_OR_RETURN(o.status, RequireStr(j, "status", what));
  // "deactivated" is not an RFC 8555 order status, but Boulder and Pebble report it for an order
  // one of whose authorizations was deactivated, also after issuance (its certificate URL stays).
  RETURN_IF_ERROR(CheckStatus(o.status,
                              {"pending", "ready", "processing", "valid", "invalid", "deactivated"},
                              "order", what));
  o.expires = ParseRfc3339(Str(j, "expires"));
  auto ids = j.find("identifiers");
  if (ids == j.end() || !ids->is_array()) {
    return absl::InvalidArgumentError(what + ": \"identifiers\" is missing or not a list");
  }
  if (ids->size() > kMaxOrderIdentifiers) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the order lists ", ids->size(),
                                                   " identifiers; at most ", kMaxOrderIdentifiers,
                                                   " are accepted"));
  }
  for (const auto& id : *ids) {
    std::optional<Identifier> parsed = ParseIdentifier(id);
    if (!parsed) {
      return absl::InvalidArgumentError(what + ": an identifier is not a type and a value");
    }
    o.identifiers.push_back(*std::move(parsed));
  }
  auto authzs = j.find("authorizations");
  if (authzs == j.end() || !authzs->is_array()) {
    return absl::InvalidArgumentError(what + ": \"authorizations\" is missing or not a list");
  }
  // One authorization per identifier at most (RFC 8555 §7.1.3): fewer when the CA reuses one.
  if (authzs->size() > o.identifiers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the order lists ", authzs->size(),
                                                   " authorizations for ", o.identifiers.size(),
                                                   " identifiers"));
  }
  for (const auto& a : *authzs) {
    if (!a.is_string()) return absl::InvalidArgumentError(what + ": authorization is not a URL");
    RETURN_IF_ERROR(CheckSameOrigin(a.get<std::string>(), what));
    o.authorizations.push_back(a.get<std::string>());
  }
  ASSIGN_OR_RETURN(o.finalize, RequireStr(j, "finalize", what));
  RETURN_IF_ERROR(CheckSameOrigin(o.finalize, what));
  o.certificate = Str(j, "certificate");
  if (!o.certificate.empty()) RETURN_IF_ERROR(CheckSameOrigin(o.certificate, what));
  if (o.status == "valid" && o.certificate.empty()) {
    return absl::InvalidArgumentError(what + ": valid order without a certificate URL");
  }
  o.profile = Str(j, "profile");
  o.replaces = Str(j, "replaces");
  o.error = ErrorOf(j);
  o.retry_after = ParseRetryAfter(r.http.Header("Retry-After"), clock_->Now());
  return o;
}

absl::StatusOr<Order> AcmeClient::NewOrder(const AccountRef& account,
                                           const NewOrderOptions& options) {
  if (options.identifiers.empty()) return absl::InvalidArgumentError("newOrder: no identifiers");
  ASSIGN_OR_RETURN(Directory d, GetDirectory());
  Json ids = Json::array();
  for (const auto& id : options.identifiers) ids.push_back({{"type", id.type}, {"value", id.value}});
  Json payload = {{"identifiers", ids}};
  if (!options.profile.empty()) {
    bool offered = std::any_of(d.profiles.begin(), d.profiles.end(),
                               [&](const auto& p) { return p.first == options.profile; });
    if (!offered) {
      return absl::FailedPreconditionError(
          absl::StrCat("newOrder: the CA offers no profile \"", options.profile, "\""));
    }
    payload["profile"] = options.profile;
  }
  if (!options.replaces.empty()) payload["replaces"] = options.replaces;
  const std::string what = "POST newOrder";
  ASSIGN_OR_RETURN(Response r, Post(account, d.new_order, DumpJson(payload), Expect::kJson, what));
  std::string location = r.http.Header("Location");
  if (location.empty()) return absl::InvalidArgumentError(what + ": no Location header");
  RETURN_IF_ERROR(CheckSameOrigin(location, what));
  ASSIGN_OR_RETURN(Order order, ParseOrder(r, location));
  // The order's identifiers are what its authorizations and its certificate are checked
  // against, so they must be the ones asked for.
  std::set<std::string> got = OrderForms(order.identifiers);
  std::set<std::string> want = OrderForms(options.identifiers);
  if (got != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the CA's order is for ", CaText(absl::StrCat("[", absl::StrJoin(got, ", "), "]")),
        ", not the requested ", CaText(absl::StrCat("[", absl::StrJoin(want, ", "), "]"))));
  }
  return order;
}

absl::StatusOr<Order> AcmeClient::GetOrder(const AccountRef& account, absl::string_view url) {
  ASSIGN_OR_RETURN(Response r, Post(account, url, "", Expect::kJson, "POST order"));
  return ParseOrder(r, url);
}

absl::StatusOr<Challenge> AcmeClient::ParseChallenge(const Json& c, absl::string_view what) const {
  Challenge ch{Str(c, "type"), Str(c, "url"), Str(c, "status"), Str(c, "token"), ErrorOf(c)};
  if (ch.status.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no status"));
  RETURN_IF_ERROR(
      CheckStatus(ch.status, {"pending", "processing", "valid", "invalid"}, "challenge", what));
  if (ch.url.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": challenge without url"));
  }
  RETURN_IF_ERROR(CheckSameOrigin(ch.url, what));
  // Challenge types without a token (none in RFC 8555, perhaps in later ones) may omit it.
  if (c.contains("token") && !UsableToken(ch.token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": challenge token is not 1 to ", kMaxChallengeTokenBytes, " base64url characters"));
  }
  return ch;
}

absl::StatusOr<Authorization> AcmeClient::ParseAuthorization(const Response& r,
                                                             absl::string_view url) const {
  const std::string what = absl::StrCat("authorization ", url);
  const Json& j = r.json;
  Authorization a;
  a.url = std::string(url);
  ASSIGN_OR_RETURN(a.status, RequireStr(j, "status", what));
  RETURN_IF_ERROR(CheckStatus(a.status,
                              {"pending", "valid", "invalid", "deactivated", "expired", "revoked"},
                              "authorization", what));
  std::optional<Identifier> id = ParseIdentifier(j.value("identifier", Json()));
  if (!id) return absl::InvalidArgumentError(what + ": no identifier");
  a.identifier = *std::move(id);
  auto wildcard = j.find("wildcard");
  a.wildcard = wildcard != j.end() && wildcard->is_boolean() && wildcard->get<bool>();
  a.expires = ParseRfc3339(Str(j, "expires"));
  if (auto cs = j.find("challenges"); cs != j.end() && cs->is_array()) {
    for (const auto& c : *cs) {
      ASSIGN_OR_RETURN(Challenge ch, ParseChallenge(c, what));
      a.challenges.push_back(std::move(ch));
    }
  } else {
    return absl::InvalidArgumentError(what + ": \"challenges\" is missing or not a list");
  }
  a.retry_after = ParseRetryAfter(r.http.Header("Retry-After"), clock_->Now());
  return a;
}

absl::StatusOr<Authorization> AcmeClient::GetAuthorization(const AccountRef& account,
                                                           absl::string_view url) {
  ASSIGN_OR_RETURN(Response r, Post(account, url, "", Expect::kJson, "POST authorization",
                                    /*exclusive=*/true));
  return ParseAuthorization(r, url);
}

absl::StatusOr<Authorization> AcmeClient::GetAuthorization(const AccountRef& account,
                                                           const Order& order,
                                                           absl::string_view url) {
  ASSIGN_OR_RETURN(Authorization a, GetAuthorization(account, url));
  const std::set<std::string> names = OrderForms(order.identifiers);
  const std::string name = OrderForm(a.identifier, a.wildcard);
  if (names.count(name) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("authorization ", url, " is for ", CaText(name),
                                                   ", which the order does not name"));
  }
  return a;
}

absl::StatusOr<Challenge> AcmeClient::RespondToChallenge(const AccountRef& account,
                                                         absl::string_view url) {
  ASSIGN_OR_RETURN(Response r,
                   Post(account, url, "{}", Expect::kJson, "POST challenge", /*exclusive=*/true));
  return ParseChallenge(r.json, "POST challenge");
}

absl::StatusOr<Authorization> AcmeClient::DeactivateAuthorization(const AccountRef& account,
                                                                  absl::string_view url) {
  ASSIGN_OR_RETURN(Response r, Post(account, url, R"({"status":"deactivated"})", Expect::kJson,
                                    "POST authorization (deactivate)", /*exclusive=*/true));
  return ParseAuthorization(r, url);
}

absl::StatusOr<Order> AcmeClient::WaitForOrder(const AccountRef& account, absl::string_view url,
                                               absl::Time deadline, bool until_ready) {
  while (true) {
    ASSIGN_OR_RETURN(Order o, GetOrder(account, url));
    bool waiting = o.status == "pending" || (!until_ready && o.status == "processing");
    if (!waiting) return o;
    absl::Time now = clock_->Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("order ", url, " still ", o.status, " at the deadline"));
    }
    clock_->SleepFor(std::min(PollDelay(o.retry_after), deadline - now));
  }
}

absl::StatusOr<Authorization> AcmeClient::WaitForAuthorization(const AccountRef& account,
                                                               absl::string_view url,
                                                               absl::Time deadline) {
  while (true) {
    ASSIGN_OR_RETURN(Authorization a, GetAuthorization(account, url));
    if (a.status != "pending") return a;
    absl::Time now = clock_->Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("authorization ", url, " still pending at the deadline"));
    }
    clock_->SleepFor(std::min(PollDelay(a.retry_after), deadline - now));
  }
}

absl::StatusOr<Order> AcmeClient::Finalize(const AccountRef& account, const Order& order,
                                           absl::string_view csr_der) {
  Json payload = {{"csr", crypto::Base64Url(csr_der)}};
  ASSIGN_OR_RETURN(
      Response r, Post(account, order.finalize, DumpJson(payload), Expect::kJson, "POST finalize"));
  return ParseOrder(r, order.url);
}

// ---- Certificates -----------------------------------------------------------------------------

absl::StatusOr<AcmeClient::FetchedChain> AcmeClient::FetchChain(const AccountRef& account,
                                                                absl::string_view url) {
  const std::string what = absl::StrCat("POST certificate ", url);
  ASSIGN_OR_RETURN(Response r, Post(account, url, "", Expect::kPemChain, what));
  const std::string& pem = r.http.body;
  if (pem.size() > kMaxChainBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the chain is ", pem.size(), " bytes; at most ", kMaxChainBytes, " are accepted"));
  }
  // crypto's reasons can quote the CA's text (a PEM label), so they are cleaned too.
  auto unusable = [&](const absl::Status& why, absl::string_view where = "") {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the CA sent no usable certificate chain: ", where, CaText(why.message())));
  };
  // RFC 8555 §11.4: only CERTIFICATE blocks; the split refuses anything else (an empty body, a
  // PRIVATE KEY block, an HTML page).
  absl::StatusOr<std::vector<std::string>> ders = crypto::SplitPemChain(pem);
  if (!ders.ok()) return unusable(ders.status());
  if (ders->size() > kMaxChainCertificates) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the chain has ", ders->size(),
                                                   " certificates; at most ", kMaxChainCertificates,
                                                   " are accepted"));
  }
  FetchedChain out;
  for (size_t i = 0; i < ders->size(); ++i) {
    absl::StatusOr<crypto::CertificateInfo> info = crypto::ParseCertificate((*ders)[i]);
    if (!info.ok()) {
      return unusable(info.status(),
                      absl::StrCat("certificate ", i + 1, " of ", ders->size(), ": "));
    }
    out.certificates.push_back(*std::move(info));
  }
  std::vector<std::string> alternates = LinksWithRel(r.http, "alternate");
  if (alternates.size() > kMaxAlternateChains) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the CA offers ", alternates.size(),
                                                   " alternate chains; at most ",
                                                   kMaxAlternateChains, " are accepted"));
  }
  for (const std::string& alt : alternates) {
    RETURN_IF_ERROR(CheckSameOrigin(alt, "certificate alternate link"));
  }
  out.chain = {pem, std::string(url), std::move(alternates)};
  return out;
}

absl::StatusOr<AcmeClient::FetchedChain> AcmeClient::FetchPreferredChain(
    const AccountRef& account, absl::string_view url, absl::string_view preferred_issuer) {
  auto issued_by = [&](const FetchedChain& c) {
    return std::any_of(c.certificates.begin(), c.certificates.end(),
                       [&](const auto& info) { return info.issuer_cn == preferred_issuer; });
  };
  ASSIGN_OR_RETURN(FetchedChain def, FetchChain(account, url));
  if (preferred_issuer.empty() || issued_by(def)) return def;
  for (const std::string& alt : def.chain.alternates) {
    ASSIGN_OR_RETURN(FetchedChain other, FetchChain(account, alt));
    if (issued_by(other)) {
      other.chain.alternates = def.chain.alternates;
      return other;
    }
  }
  return def;  // No chain matched: the default, as RFC 8555 clients do.
}

absl::Status AcmeClient::CheckLeaf(const FetchedChain& fetched, const Order& order) const {
  const std::string what = absl::StrCat("POST certificate ", fetched.chain.url);
  const crypto::CertificateInfo& leaf = fetched.certificates.front();
  const absl::Time now = clock_->Now();
  if (now < leaf.not_before || now > leaf.not_after) {
    constexpr char kUtc[] = "%Y-%m-%dT%H:%M:%SZ";
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the leaf is valid from ",
                     absl::FormatTime(kUtc, leaf.not_before, absl::UTCTimeZone()), " to ",
                     absl::FormatTime(kUtc, leaf.not_after, absl::UTCTimeZone()), ", not at ",
                     absl::FormatTime(kUtc, now, absl::UTCTimeZone())));
  }
  std::set<std::string> want;
  for (const Identifier& id : order.identifiers) {
    if (!absl::EqualsIgnoreCase(id.type, "dns")) {
      // crypto::CertificateInfo lists a leaf's DNS names only.
      return absl::UnimplementedError(
          absl::StrCat(what, ": the order has an identifier of type ", CaText(id.type),
                       ", and only DNS names of a leaf can be checked"));
    }
    want.insert(absl::AsciiStrToLower(id.value));
  }
  std::set<std::string> got;
  for (const std::string& name : leaf.dns_names) got.insert(absl::AsciiStrToLower(name));
  if (got != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the leaf names ", CaText(absl::StrCat("[", absl::StrJoin(got, ", "), "]")),
        ", not the order's ", CaText(absl::StrCat("[", absl::StrJoin(want, ", "), "]"))));
  }
  return absl::OkStatus();
}

absl::StatusOr<CertificateChain> AcmeClient::DownloadCertificate(
    const AccountRef& account, absl::string_view url, absl::string_view preferred_issuer) {
  ASSIGN_OR_RETURN(FetchedChain fetched, FetchPreferredChain(account, url, preferred_issuer));
  return std::move(fetched.chain);
}

absl::StatusOr<CertificateChain> AcmeClient::DownloadCertificate(
    const AccountRef& account, const Order& order, absl::string_view preferred_issuer) {
  if (!HasCertificate(order)) {
    return absl::FailedPreconditionError(
        absl::StrCat("order ", order.url, " is ", order.status, ": no certificate yet"));
  }
  ASSIGN_OR_RETURN(FetchedChain fetched,
                   FetchPreferredChain(account, order.certificate, preferred_issuer));
  RETURN_IF_ERROR(CheckLeaf(fetched, order));
  return std::move(fetched.chain);
}

absl::Status AcmeClient::RevokeCertificate(const AccountRef& account,
                                           absl::string_view certificate_der,
                                           RevocationReason reason) {
  ASSIGN_OR_RETURN(Directory d, GetDirectory());
  Json payload = {{"certificate", crypto::Base64Url(certificate_der)},
                  {"reason", static_cast<int>(reason)}};
  return Post(account, d.revoke_cert, DumpJson(payload), Expect::kEmpty, "POST revokeCert")
      .status();
}

absl::Status AcmeClient::RevokeWithCertificateKey(const crypto::PrivateKey& certificate_key,
                                                  absl::string_view certificate_der,
                                                  RevocationReason reason) {
  // Signed with the certificate's key and its jwk (§7.6): an empty kid embeds the jwk.
  return RevokeCertificate({&certificate_key, ""}, certificate_der, reason);
}

absl::StatusOr<RenewalInfo> AcmeClient::GetRenewalInfo(absl::string_view certificate_der) {
  ASSIGN_OR_RETURN(Directory d, GetDirectory());
  if (d.renewal_info.empty()) {
    return absl::UnimplementedError("the CA's directory offers no renewalInfo (ARI)");
  }
  ASSIGN_OR_RETURN(std::string cert_id, AriCertId(certificate_der));
  std::string url = absl::StrCat(absl::StripSuffix(d.renewal_info, "/"), "/", cert_id);
  const std::string what = "GET renewalInfo";
  ASSIGN_OR_RETURN(HttpResponse r, Send({"GET", url, {}, ""}));
  if (r.status != 200) return ProblemStatus(r, what, clock_->Now());
  if (!IsJsonContentType(r.Header("Content-Type"))) {
    return absl::InvalidArgumentError(what + ": content type is not JSON");
  }
  ASSIGN_OR_RETURN(Json j, ParseCaJsonObject(r.body, what));
  auto window = j.find("suggestedWindow");
  if (window == j.end() || !window->is_object()) {
    return absl::InvalidArgumentError(what + ": no suggestedWindow");
  }
  auto start = ParseRfc3339(Str(*window, "start"));
  auto end = ParseRfc3339(Str(*window, "end"));
  if (!start || !end || *end < *start) {
    return absl::InvalidArgumentError(what + ": suggestedWindow is not a valid time range");
  }
  std::string explanation = Str(j, "explanationURL");
  RETURN_IF_ERROR(CheckUrlText(explanation, what));
  return RenewalInfo{*start, *end, std::move(explanation),
                     ParseRetryAfter(r.Header("Retry-After"), clock_->Now())};
}

}  // namespace acmevault::acme
