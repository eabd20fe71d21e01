// ACME core benchmark: prints figures, asserts nothing.
//
//  1. ES256 JWS signatures per second on one thread, beside `openssl speed ecdsap256` run in the
//     same invocation (the goal is at least 0.8 of OpenSSL's raw ECDSA signing rate); with a
//     PKCS#11 token (--pkcs11_*), the same with a token key on 1 and 4 threads, as ratios.
//  2. Full issuances per second against Pebble (PEBBLE_VA_NOSLEEP=1) with 1, 8 and 32 concurrent
//     workers (one account each), and the ACME requests each certificate took; with a token,
//     again with the accounts' keys in it (--pkcs11_directories, fresh Pebbles), as ratios.
//
// Every loop is bounded by a count and a time limit; all traffic goes to the loopback addresses
// given. tests/bench/run_acme_bench starts a private stack with a fresh Pebble per level.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "acme/client.h"
#include "acme/testing/pebble.h"
#include "absl/strings/strip.h"
#include "crypto/jws.h"
#include "crypto/keys.h"
#include "crypto/pkcs11.h"

ABSL_FLAG(std::string, ca_file, "", "PEM CA that signed Pebble's listener certificate");
ABSL_FLAG(std::string, challtestsrv, "", "pebble-challtestsrv management URL");
ABSL_FLAG(std::vector<std::string>, directories, {},
          "one Pebble directory URL per worker level (a fresh Pebble each)");
ABSL_FLAG(std::vector<std::string>, workers, std::vector<std::string>({"1", "8", "32"}),
          "concurrent workers per level");
ABSL_FLAG(int, issuances, 400, "issuances per level, at most");
ABSL_FLAG(int, seconds, 30, "time limit per level");
ABSL_FLAG(bool, deactivate_authorizations, false,
          "deactivate each certificate's authorizations once it is issued, as acmevaultd does by "
          "default (one more request per name)");
ABSL_FLAG(int, sign_seconds, 3, "time spent measuring JWS signing (0: not measured)");
ABSL_FLAG(std::string, pkcs11_module, "", "PKCS#11 module; empty: in-memory keys only");
ABSL_FLAG(std::string, pkcs11_token, "", "the token's label");
ABSL_FLAG(std::string, pkcs11_pin_file, "", "file holding the token's user PIN");
ABSL_FLAG(std::vector<std::string>, pkcs11_directories, {},
          "one Pebble directory URL per worker level for the token-key runs (a fresh Pebble each)");

namespace acmevault {
namespace {

double OpensslSpeedSignsPerSecond(int seconds) {
  std::string cmd = "openssl speed -seconds " + std::to_string(seconds) + " ecdsap256 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return 0;
  char line[512];
  double rate = 0;
  while (fgets(line, sizeof(line), p) != nullptr) {
    // " 256 bits ecdsa (nistp256)   0.0000s   0.0000s  51512.3  20281.5"
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() >= 8 && f[0] == "256" && f[2] == "ecdsa") absl::SimpleAtod(f[6], &rate);
  }
  pclose(p);
  return rate;
}

// A fresh P-256 account key: in memory, or made in `token` when it is set.
std::unique_ptr<crypto::Signer> NewKey(crypto::Pkcs11Token* token) {
  if (token == nullptr) {
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    return key.ok() ? std::make_unique<crypto::PrivateKey>(*std::move(key)) : nullptr;
  }
  auto pair = token->GenerateKeyPair(crypto::KeyAlgorithm::kEcdsaP256);
  if (!pair.ok()) return nullptr;
  auto signer = token->LoadSigner(pair->object_id);
  return signer.ok() ? *std::move(signer) : nullptr;
}

// ES256 JWS per second with `key` on `threads` threads.
double JwsPerSecond(const crypto::Signer& key, int threads) {
  const std::string payload = R"({"identifiers":[{"type":"dns","value":"a.example.com"}]})";
  const absl::Duration limit = absl::Seconds(absl::GetFlag(FLAGS_sign_seconds));
  std::atomic<int64_t> n{0};
  absl::Time start = absl::Now(), end = start + limit;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      while (absl::Now() < end) {
        for (int i = 0; i < 20; ++i) {
          auto jws = crypto::SignJws(
              key, {"https://ca.test/new-order", "nonce", "https://ca.test/a/1"}, payload);
          if (!jws.ok()) return;
          ++n;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  return n.load() / absl::ToDoubleSeconds(absl::Now() - start);
}

void BenchSigning(crypto::Pkcs11Token* token) {
  auto key = NewKey(nullptr);
  if (key == nullptr) return;
  double ours = JwsPerSecond(*key, 1);
  double openssl = OpensslSpeedSignsPerSecond(absl::GetFlag(FLAGS_sign_seconds));
  std::printf("jws_es256_signs_per_s=%.0f openssl_speed_ecdsap256_signs_per_s=%.0f ratio=%.2f\n",
              ours, openssl, openssl > 0 ? ours / openssl : 0);
  if (token == nullptr) return;
  auto token_key = NewKey(token);
  if (token_key == nullptr) {
    std::printf("pkcs11: could not make a key in the token\n");
    return;
  }
  double one = JwsPerSecond(*token_key, 1);
  double four = JwsPerSecond(*token_key, 4);
  double memory_four = JwsPerSecond(*key, 4);
  std::printf(
      "pkcs11_jws_es256_signs_per_s threads=1: %.0f (%.3f of in-memory) threads=4: %.0f (%.3f of "
      "in-memory's %.0f)\n",
      one, ours > 0 ? one / ours : 0, four, memory_four > 0 ? four / memory_four : 0, memory_four);
}

// Certificates per second at `workers`, or 0.
double BenchIssuance(const std::string& directory, int workers, crypto::Pkcs11Token* token) {
  auto transport = acme::CurlTransport::Create({.ca_file = absl::GetFlag(FLAGS_ca_file)});
  if (!transport.ok()) return 0;
  auto client = acme::AcmeClient::Create({.directory_url = directory,
                                          .transport = transport->get(),
                                          .poll_interval = absl::Milliseconds(10),
                                          .exclusive_authorization_requests = true});
  if (!client.ok()) {
    std::printf("level workers=%d: %s\n", workers, client.status().ToString().c_str());
    return 0;
  }
  acme::testing::ChallTestSrv challenges(absl::GetFlag(FLAGS_challtestsrv));
  const int total = absl::GetFlag(FLAGS_issuances);
  const absl::Time deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds));

  // Accounts first, so the timed part is issuance only.
  std::vector<std::unique_ptr<crypto::Signer>> keys;
  std::vector<std::string> accounts;
  for (int w = 0; w < workers; ++w) {
    auto key = NewKey(token);
    if (key == nullptr) return 0;
    auto acct = (*client)->NewAccount(*key, {});
    if (!acct.ok()) {
      std::printf("level workers=%d: newAccount: %s\n", workers, acct.status().ToString().c_str());
      return 0;
    }
    keys.push_back(std::move(key));
    accounts.push_back(acct->url);
  }
  const int64_t requests_before = (*client)->requests_sent();
  absl::Mutex mu;
  int started = 0, ok = 0, failed = 0;
  std::string first_error;
  std::vector<double> latencies_ms;
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      while (true) {
        {
          absl::MutexLock lock(&mu);
          if (started >= total || absl::Now() >= deadline) return;
          ++started;
        }
        absl::Time t0 = absl::Now();
        auto issued = acme::testing::IssueCertificate(
            **client, {keys[w].get(), accounts[w]}, challenges,
            {acme::testing::UniqueName("bench")}, acme::testing::ChallengeKind::kHttp01,
            absl::Seconds(20));
        if (issued.ok() && absl::GetFlag(FLAGS_deactivate_authorizations)) {
          for (const std::string& url : issued->authorizations) {
            auto deactivated =
                (*client)->DeactivateAuthorization({keys[w].get(), accounts[w]}, url);
            if (!deactivated.ok()) {
              issued = deactivated.status();
              break;
            }
          }
        }
        double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
        absl::MutexLock lock(&mu);
        if (issued.ok()) {
          ++ok;
          latencies_ms.push_back(ms);
        } else {
          ++failed;
          if (first_error.empty()) first_error = issued.status().ToString();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0.0 : latencies_ms[static_cast<size_t>(p * (latencies_ms.size() - 1))];
  };
  int64_t requests = (*client)->requests_sent() - requests_before;
  std::printf(
      "issuance%s%s workers=%d issued=%d failed=%d seconds=%.1f certs_per_s=%.1f "
      "requests_per_cert=%.1f badnonce_retries=%lld p50_ms=%.0f p99_ms=%.0f%s%s\n",
      token != nullptr ? " pkcs11" : "",
      absl::GetFlag(FLAGS_deactivate_authorizations) ? " deactivating" : "", workers, ok, failed,
      secs, ok / secs, ok > 0 ? static_cast<double>(requests) / ok : 0.0,
      static_cast<long long>((*client)->bad_nonce_retries()), pct(0.5), pct(0.99),
      first_error.empty() ? "" : " first_error=", first_error.c_str());
  return ok / secs;
}

// The token named by the --pkcs11_* flags, or null.
std::unique_ptr<crypto::Pkcs11Token> OpenToken() {
  if (absl::GetFlag(FLAGS_pkcs11_module).empty()) return nullptr;
  crypto::Pkcs11Options options;
  options.module_path = absl::GetFlag(FLAGS_pkcs11_module);
  options.token_label = absl::GetFlag(FLAGS_pkcs11_token);
  std::ifstream in(absl::GetFlag(FLAGS_pkcs11_pin_file));
  std::string pin;
  std::getline(in, pin);
  options.pin = crypto::SecretBytes(std::string(absl::StripAsciiWhitespace(pin)));
  options.session_pool_size = 8;
  auto token = crypto::Pkcs11Token::Open(std::move(options));
  if (!token.ok()) {
    std::printf("pkcs11: %s\n", token.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(token);
}

}  // namespace
}  // namespace acmevault

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto token = acmevault::OpenToken();
  if (absl::GetFlag(FLAGS_sign_seconds) > 0) acmevault::BenchSigning(token.get());
  auto dirs = absl::GetFlag(FLAGS_directories);
  auto token_dirs = absl::GetFlag(FLAGS_pkcs11_directories);
  auto workers = absl::GetFlag(FLAGS_workers);
  for (size_t i = 0; i < dirs.size() && i < workers.size(); ++i) {
    int w = 0;
    if (!absl::SimpleAtoi(workers[i], &w) || w <= 0) continue;
    double memory = acmevault::BenchIssuance(dirs[i], w, nullptr);
    if (token == nullptr || i >= token_dirs.size()) continue;
    double in_token = acmevault::BenchIssuance(token_dirs[i], w, token.get());
    std::printf("issuance workers=%d pkcs11/in-memory certs_per_s ratio=%.2f\n", w,
                memory > 0 ? in_token / memory : 0);
  }
  return 0;
}
