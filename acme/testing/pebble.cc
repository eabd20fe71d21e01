#include "acme/testing/pebble.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "acme/ca_input.h"
#include "acme/problem.h"
#include "common/status_macros.h"
#include "crypto/digest.h"
#include "crypto/jwk.h"
#include "crypto/x509.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme::testing {
namespace {

std::unique_ptr<CurlTransport> MakeTransport(CurlTransportOptions options) {
  auto t = CurlTransport::Create(std::move(options));
  return t.ok() ? *std::move(t) : nullptr;
}

}  // namespace

ChallTestSrv::ChallTestSrv(std::string management_url)
    : url_(std::move(management_url)),
      http_(MakeTransport({.timeout = absl::Seconds(10), .allow_http = true})) {}

absl::Status ChallTestSrv::Post(absl::string_view path, const std::string& body) {
  ASSIGN_OR_RETURN(HttpResponse r, http_->Send({"POST", absl::StrCat(url_, path), {}, body}));
  if (r.status != 200) {
    return absl::InternalError(absl::StrCat("challtestsrv ", path, ": HTTP ", r.status));
  }
  return absl::OkStatus();
}

absl::Status ChallTestSrv::AddHttp01(absl::string_view token, absl::string_view key_auth) {
  return Post("/add-http01",
              nlohmann::json{{"token", std::string(token)}, {"content", std::string(key_auth)}}
                  .dump());
}

absl::Status ChallTestSrv::DelHttp01(absl::string_view token) {
  return Post("/del-http01", nlohmann::json{{"token", std::string(token)}}.dump());
}

absl::Status ChallTestSrv::SetDns01(absl::string_view host, absl::string_view txt_value) {
  return Post("/set-txt", nlohmann::json{{"host", absl::StrCat("_acme-challenge.", host, ".")},
                                         {"value", std::string(txt_value)}}
                              .dump());
}

absl::Status ChallTestSrv::ClearDns01(absl::string_view host) {
  return Post("/clear-txt",
              nlohmann::json{{"host", absl::StrCat("_acme-challenge.", host, ".")}}.dump());
}

PebbleManagement::PebbleManagement(std::string management_url, std::string ca_file)
    : url_(std::move(management_url)),
      http_(MakeTransport({.ca_file = std::move(ca_file), .timeout = absl::Seconds(10)})) {}

absl::StatusOr<HttpResponse> PebbleManagement::Get(absl::string_view path) {
  ASSIGN_OR_RETURN(HttpResponse r, http_->Send({"GET", absl::StrCat(url_, path), {}, ""}));
  if (r.status != 200) {
    return absl::NotFoundError(absl::StrCat("pebble management ", path, ": HTTP ", r.status));
  }
  return r;
}

absl::StatusOr<std::string> PebbleManagement::Root(int index) {
  ASSIGN_OR_RETURN(HttpResponse r, Get(absl::StrCat("/roots/", index)));
  return r.body;
}

absl::StatusOr<PebbleManagement::CertStatus> PebbleManagement::StatusBySerial(
    absl::string_view serial_hex) {
  ASSIGN_OR_RETURN(HttpResponse r, Get(absl::StrCat("/cert-status-by-serial/", serial_hex)));
  ASSIGN_OR_RETURN(nlohmann::json j, ParseCaJsonObject(r.body, "pebble cert status"));
  if (!j.contains("Status") || !j["Status"].is_string()) {
    return absl::InternalError("pebble cert status: unexpected body " + CaText(r.body));
  }
  CertStatus s{j["Status"].get<std::string>(), -1};
  if (j.contains("Reason") && j["Reason"].is_number_integer()) s.reason = j["Reason"].get<int>();
  return s;
}

std::string UniqueName(absl::string_view prefix) {
  static absl::BitGen* gen = new absl::BitGen();
  static absl::Mutex mu;
  absl::MutexLock lock(&mu);
  return absl::StrCat(prefix, "-", absl::Hex(absl::Uniform<uint64_t>(*gen)), ".example.com");
}

absl::StatusOr<Issued> IssueCertificate(AcmeClient& client, const AccountRef& account,
                                        ChallTestSrv& challenges,
                                        const std::vector<std::string>& names, ChallengeKind kind,
                                        absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  NewOrderOptions req;
  for (const auto& n : names) req.identifiers.push_back({"dns", n});
  ASSIGN_OR_RETURN(Order order, client.NewOrder(account, req));
  Issued out;
  out.order_url = order.url;
  out.authorizations = order.authorizations;
  std::vector<std::string> tokens;
  for (const std::string& url : order.authorizations) {
    ASSIGN_OR_RETURN(Authorization authz, client.GetAuthorization(account, order, url));
    if (authz.status == "valid") continue;  // Reused by the CA.
    const char* type = kind == ChallengeKind::kHttp01 ? "http-01" : "dns-01";
    const Challenge* ch = authz.Find(type);
    if (ch == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("no ", type, " challenge for ", authz.identifier.value));
    }
    std::string key_auth = crypto::KeyAuthorization(ch->token, account.key->public_key());
    if (kind == ChallengeKind::kHttp01) {
      RETURN_IF_ERROR(challenges.AddHttp01(ch->token, key_auth));
    } else {
      RETURN_IF_ERROR(challenges.SetDns01(authz.identifier.value, crypto::Dns01TxtValue(key_auth)));
    }
    RETURN_IF_ERROR(client.RespondToChallenge(account, ch->url).status());
    if (kind == ChallengeKind::kHttp01) tokens.push_back(ch->token);
  }
  // Poll the order, not each authorization: Pebble 2.4.0 can deadlock when a newOrder races an
  // authorization poll (docs/DESIGN.md), and one order poll covers every authorization.
  auto ready = client.WaitForOrder(account, order.url, deadline, /*until_ready=*/true);
  for (const auto& token : tokens) challenges.DelHttp01(token).IgnoreError();
  if (!ready.ok()) return ready.status();
  order = *std::move(ready);
  if (order.status == "invalid") {
    return absl::FailedPreconditionError(
        absl::StrCat("order became invalid: ", Summarize(ProblemFromDocument(order.error))));
  }
  if (order.status != "ready") {
    return absl::FailedPreconditionError(absl::StrCat("order is ", order.status));
  }
  ASSIGN_OR_RETURN(crypto::PrivateKey cert_key,
                   crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256));
  ASSIGN_OR_RETURN(std::string csr, crypto::BuildCsr(names, cert_key));
  ASSIGN_OR_RETURN(order, client.Finalize(account, order, csr));
  if (order.status != "valid") {
    ASSIGN_OR_RETURN(order, client.WaitForOrder(account, order.url, deadline));
  }
  if (order.status != "valid") {
    return absl::FailedPreconditionError(absl::StrCat("order ended ", order.status));
  }
  ASSIGN_OR_RETURN(out.chain, client.DownloadCertificate(account, order));
  out.certificate_key = std::make_unique<crypto::PrivateKey>(std::move(cert_key));
  return out;
}

}  // namespace acmevault::acme::testing
