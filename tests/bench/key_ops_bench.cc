// key_ops_bench: the CPU time of the key operations one issuance with a service-generated key
// makes in acmevaultd, each alone, in microseconds per call (CLOCK_PROCESS_CPUTIME_ID, one
// thread). Prints figures; asserts nothing.
//
//   bazel run -c opt //tests/bench:key_ops_bench [-- --iterations=2000]
#include <time.h>

#include <cstdio>
#include <functional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
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
  return 0;
}
