// key_ops_bench: the CPU time of the key operations one issuance with a service-generated key
// makes in acmevaultd, each alone, in microseconds per call (CLOCK_PROCESS_CPUTIME_ID, one
// thread). Prints figures; asserts nothing.
//
//   bazel run -c opt //tests/bench:key_ops_bench [-- --iterations=2000]
#include <time.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/escaping.h"
#include "crypto/keys.h"
#include "crypto/x509.h"

ABSL_FLAG(int, iterations, 2000, "calls per operation");

namespace {

double CpuMicros() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

void Measure(const char* name, const std::function<bool()>& op) {
  const int n = absl::GetFlag(FLAGS_iterations);
  int failed = 0;
  const double start = CpuMicros();
  for (int i = 0; i < n; ++i) failed += op() ? 0 : 1;
  const double per_call = (CpuMicros() - start) / n;
  std::printf("%-44s %8.1f us per call%s\n", name, per_call, failed > 0 ? " (some failed)" : "");
}

// crypto/testdata/leaf.pem's certificate (a P-256 leaf with two DNS names, an authority key id
// and a serial ending in 0x87) as `n` certificates that differ in their serial's last two bytes:
// ParseCertificate keeps the last 256 it parsed, so cycling through 1,024 parses each anew, as
// an issuance parses its new leaf. Their signatures no longer verify; a parse does not check.
std::vector<std::string> DistinctLeaves(int n) {
  std::ifstream in("crypto/testdata/leaf.pem");
  std::stringstream pem;
  pem << in.rdbuf();
  auto ders = acmevault::crypto::SplitPemChain(pem.str());
  if (!ders.ok() || ders->empty()) return {};
  const std::string serial = absl::HexStringToBytes("8f00d1e2c3b4a59687");
  const size_t at = ders->front().find(serial);
  if (at == std::string::npos) return {};
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string der = ders->front();
    der[at + serial.size() - 2] = static_cast<char>(i >> 8);
    der[at + serial.size() - 1] = static_cast<char>(i & 0xff);
    out.push_back(std::move(der));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using acmevault::crypto::KeyAlgorithm;
  using acmevault::crypto::PrivateKey;
  auto key = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
  if (!key.ok()) return 1;
  const std::string der(key->ToPkcs8Der().view());
  auto csr = acmevault::crypto::BuildCsr({"bench.example.com"}, *key);
  if (!csr.ok()) return 1;
  Measure("PrivateKey::Generate (P-256)",
          [] { return PrivateKey::Generate(KeyAlgorithm::kEcdsaP256).ok(); });
  Measure("PrivateKey::Sign (P-256)", [&] { return key->Sign("payload").ok(); });
  Measure("PrivateKey::ToPkcs8Der", [&] { return !key->ToPkcs8Der().empty(); });
  Measure("PrivateKey::ToPkcs8Pem", [&] { return !key->ToPkcs8Pem().empty(); });
  Measure("PrivateKey::FromDer (with the pairwise test)",
          [&] { return PrivateKey::FromDer(der).ok(); });
  Measure("PrivateKey::FromSealedDer", [&] { return PrivateKey::FromSealedDer(der).ok(); });
  Measure("BuildCsr",
          [&] { return acmevault::crypto::BuildCsr({"bench.example.com"}, *key).ok(); });
  // An issuance signs its CSR with a key made for it, which OpenSSL 3 has not yet seen.
  Measure("PrivateKey::Generate, then BuildCsr with it", [] {
    auto fresh = PrivateKey::Generate(KeyAlgorithm::kEcdsaP256);
    return fresh.ok() && acmevault::crypto::BuildCsr({"bench.example.com"}, *fresh).ok();
  });
  Measure("ParseCsr (P-256, DER)", [&] { return acmevault::crypto::ParseCsr(*csr).ok(); });
  const std::string spki = key->public_key().ToDer();
  Measure("PublicKey::FromDer (P-256)",
          [&] { return acmevault::crypto::PublicKey::FromDer(spki).ok(); });
  const std::vector<std::string> leaves = DistinctLeaves(1024);
  if (leaves.empty()) return 1;
  size_t next = 0;
  Measure("ParseCertificate (a leaf not parsed before)",
          [&] { return acmevault::crypto::ParseCertificate(leaves[next++ % leaves.size()]).ok(); });
  return 0;
}
