// Writes seed files from a real Pebble's answers: every response of one account's life (new,
// fetched, contact updated, deactivated), one issuance (order, authorizations, challenge,
// finalize, chain and alternate chains), a few errors Pebble produces, and the JWS requests,
// JWK and CSR the client sent. Pebble's origin is rewritten to the fuzz targets' fake CA
// (https://ca.test), so the seeds replay against it. Run by tests/fuzz/make_seeds, which starts
// a private stack; asserts nothing.
//
//   record_pebble_seeds --directory=URL --ca_file=PEM --challtestsrv=URL --out=DIR
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "acme/client.h"
#include "acme/problem.h"
#include "acme/testing/pebble.h"
#include "crypto/digest.h"
#include "crypto/jws.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, directory, "", "Pebble's directory URL");
ABSL_FLAG(std::string, ca_file, "", "PEM CA that signed Pebble's listener certificate");
ABSL_FLAG(std::string, challtestsrv, "", "pebble-challtestsrv management URL");
ABSL_FLAG(std::string, out, "tests/fuzz/corpus", "corpus folder to write into");

namespace acmevault::fuzz {
namespace {

struct Exchange {
  acme::HttpRequest request;
  acme::HttpResponse response;
};

// Passes requests to the real transport and keeps every exchange.
class RecordingTransport final : public acme::HttpTransport {
 public:
  explicit RecordingTransport(acme::HttpTransport* next) : next_(next) {}
  absl::StatusOr<acme::HttpResponse> Send(const acme::HttpRequest& request) override {
    auto response = next_->Send(request);
    if (response.ok()) {
      absl::MutexLock lock(&mu_);
      exchanges_.push_back({request, *response});
    }
    return response;
  }
  std::vector<Exchange> exchanges() {
    absl::MutexLock lock(&mu_);
    return exchanges_;
  }

 private:
  acme::HttpTransport* next_;
  absl::Mutex mu_;
  std::vector<Exchange> exchanges_ ABSL_GUARDED_BY(mu_);
};

class SeedWriter {
 public:
  SeedWriter(std::string out, std::string origin)
      : out_(std::move(out)), origin_(std::move(origin)) {}

  // Writes `contents` (origin rewritten) as <out>/<target>/<name>, unless the same bytes were
  // already written for `target`; a name used before gets -2 or -3 before its extension, and
  // further ones are dropped (order polls repeat themselves).
  void Write(const std::string& target, const std::string& name, const std::string& contents) {
    std::string text = Rewrite(contents);
    if (!written_[target].insert(text).second) return;
    int& count = used_[target + "/" + name];
    if (count == 3) return;
    std::string file = name;
    if (count++ > 0) {
      size_t dot = name.find('.');
      file = absl::StrCat(name.substr(0, dot), "-", count,
                          dot == std::string::npos ? "" : name.substr(dot));
    }
    std::string path = absl::StrCat(out_, "/", target, "/", file);
    std::ofstream(path, std::ios::binary) << text;
    std::printf("%s\n", path.c_str());
  }

  std::string Rewrite(const std::string& text) const {
    return absl::StrReplaceAll(text, {{origin_, "https://ca.test"}});
  }

  // The response as seed text (fake_ca.h's format). Date is dropped: it only adds bytes.
  static std::string HttpText(const acme::HttpResponse& r) {
    std::string text = absl::StrCat("HTTP/1.1 ", r.status, "\n");
    for (const auto& [name, value] : r.headers) {
      if (name == "date") continue;
      absl::StrAppend(&text, name, ": ", value, "\n");
    }
    return absl::StrCat(text, "\n", r.body);
  }

 private:
  std::string out_;
  std::string origin_;
  std::map<std::string, int> used_;
  std::map<std::string, std::set<std::string>> written_;
};

std::string PathOf(const std::string& url, const std::string& origin) {
  return absl::StartsWith(url, origin) ? url.substr(origin.size()) : url;
}

int Main() {
  const std::string directory = absl::GetFlag(FLAGS_directory);
  auto origin = acme::UrlOrigin(directory);
  auto curl = acme::CurlTransport::Create({.ca_file = absl::GetFlag(FLAGS_ca_file)});
  if (!origin.ok() || !curl.ok()) {
    std::fprintf(stderr, "bad --directory or --ca_file\n");
    return 1;
  }
  // UrlOrigin makes the port explicit; Pebble writes it too (https://127.0.0.1:14000/...).
  const std::string pebble_origin = directory.substr(0, directory.find('/', 8));
  RecordingTransport recorder(curl->get());
  auto client = acme::AcmeClient::Create({.directory_url = directory, .transport = &recorder});
  if (!client.ok()) return 1;
  acme::AcmeClient& c = **client;
  acme::testing::ChallTestSrv challenges(absl::GetFlag(FLAGS_challtestsrv));

  // A throwaway account key, made for this run and never written (only its public JWK is).
  auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  auto stranger = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
  if (!key.ok() || !stranger.ok()) return 1;
  auto account = c.NewAccount(*key, {.contact = {"mailto:fuzz@example.com"}});
  if (!account.ok()) {
    std::fprintf(stderr, "newAccount: %s\n", account.status().ToString().c_str());
    return 1;
  }
  acme::AccountRef ref{&*key, account->url};
  c.NewAccount(*key, {}).IgnoreError();  // The existing account: 200 instead of 201.
  c.GetAccount(ref).IgnoreError();
  c.UpdateContact(ref, {"mailto:fuzz2@example.com"}).IgnoreError();
  c.NewAccount(*stranger, {.only_return_existing = true}).IgnoreError();  // accountDoesNotExist
  c.NewOrder(ref, {.identifiers = {{"dns", "bad_name.example.com"}}}).IgnoreError();
  c.GetOrder(ref, absl::StrCat(pebble_origin, "/my-order/no-such-order")).IgnoreError();

  auto issued = acme::testing::IssueCertificate(
      c, ref, challenges, {acme::testing::UniqueName("fuzz"), acme::testing::UniqueName("fuzz")});
  if (!issued.ok()) {
    std::fprintf(stderr, "issuance: %s\n", issued.status().ToString().c_str());
    return 1;
  }
  c.GetOrder(ref, issued->order_url).IgnoreError();
  c.DownloadCertificate(ref, issued->chain.url, "No Such Issuer").IgnoreError();  // Alternates.
  for (const std::string& url : issued->authorizations) {
    c.GetAuthorization(ref, url).IgnoreError();
  }
  c.DeactivateAuthorization(ref, issued->authorizations[0]).IgnoreError();
  c.DeactivateAccount(ref).IgnoreError();
  c.GetAccount(ref).IgnoreError();  // unauthorized: the account is gone.

  SeedWriter seeds(absl::GetFlag(FLAGS_out), pebble_origin);
  auto dir = c.GetDirectory();
  for (const Exchange& e : recorder.exchanges()) {
    const std::string path = PathOf(e.request.url, pebble_origin);
    const std::string text = SeedWriter::HttpText(e.response);
    if (e.response.status >= 400) {
      // Named as the problem target judges it: a problem document with a type, or not.
      auto problem = acme::GetProblem(acme::ProblemStatus(e.response, "seed", absl::Now()));
      if (problem && !absl::StartsWith(problem->type, "http:")) {
        seeds.Write("problem", absl::StrCat("ok-pebble-", problem->ShortType()), text);
      } else {
        seeds.Write("problem", absl::StrCat("bad-pebble-untyped-", e.response.status), text);
      }
      continue;
    }
    if (e.request.method == "GET" && e.request.url == directory) {
      seeds.Write("acme_directory", "ok-pebble-directory", text);
      continue;
    }
    if (e.request.method != "POST") continue;
    // The request: a JWS, and in newAccount's header the account's public JWK.
    auto jws = crypto::ParseJws(e.request.body);
    if (jws.ok()) {
      std::string kind = jws->header.contains("jwk") ? "jwk" : "kid";
      seeds.Write("jws", absl::StrCat("ok-pebble-", kind), e.request.body);
      if (jws->header.contains("jwk")) {
        seeds.Write("jwk", "ok-pebble-account-key", jws->header["jwk"].dump());
      }
      auto payload = nlohmann::json::parse(jws->payload, nullptr, false);
      std::string csr;
      if (payload.is_object() && payload.contains("csr") &&
          crypto::Base64UrlDecode(payload["csr"].get<std::string>(), &csr)) {
        seeds.Write("csr", "ok-pebble-finalize.der", csr);
      }
    }
    if (dir.ok() && e.request.url == dir->new_account) {
      seeds.Write("acme_account", "ok-pebble-new-account", text);
    } else if (dir.ok() && e.request.url == dir->new_order) {
      seeds.Write("acme_order", "ok-pebble-new-order", text);
    } else if (absl::StrContains(path, "/my-account/")) {
      seeds.Write("acme_account", "ok-pebble-account", text);
    } else if (absl::StrContains(path, "/my-order/")) {
      auto order = nlohmann::json::parse(e.response.body, nullptr, false);
      seeds.Write("acme_order", absl::StrCat("ok-pebble-order-", order.value("status", "x")), text);
    } else if (absl::StrContains(path, "/finalize-order/")) {
      seeds.Write("acme_order", "ok-pebble-finalize", text);
    } else if (absl::StrContains(path, "/authZ/")) {
      auto authz = nlohmann::json::parse(e.response.body, nullptr, false);
      seeds.Write("acme_authorization",
                  absl::StrCat("ok-pebble-authz-", authz.value("status", "x")), text);
    } else if (absl::StrContains(path, "/chalZ/")) {
      seeds.Write("acme_challenge", "ok-pebble-challenge", text);
    } else if (absl::StrContains(path, "/certZ/")) {
      seeds.Write("acme_certificate", "ok-pebble-chain", text);
      seeds.Write("pem_chain", "ok-pebble-chain.pem", e.response.body);
      auto ders = crypto::SplitPemChain(e.response.body);
      if (ders.ok()) seeds.Write("pem_chain", "ok-pebble-leaf.der", (*ders)[0]);
    }
  }
  return 0;
}

}  // namespace
}  // namespace acmevault::fuzz

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return acmevault::fuzz::Main();
}
