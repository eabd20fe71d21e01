// fault_proxy_main: runs a FaultProxy (tests/testing/fault_proxy.h) on its own, for a client in
// another process (a checker driving a running acmevaultd through a misbehaving CA) that sets
// its rules through the control endpoint.
//
//   bazel run //tests/testing:fault_proxy_main -- --upstream=https://127.0.0.1:14000/dir
//       --upstream_ca_file=$ACMEVAULT_PEBBLE_TLS_CA
//       --cert_file=$ACMEVAULT_STACK_TLS_CERT --key_file=$ACMEVAULT_STACK_TLS_KEY
//
// (one command line).
//
// Prints one JSON line, {"origin": "https://127.0.0.1:PORT", "control_port": N}, then serves
// until SIGINT or SIGTERM. Without --cert_file it makes its own CA and writes it to --ca_out.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fault_proxy.h"

ABSL_FLAG(std::string, upstream, "", "The upstream's origin, or any URL on it (its directory)");
ABSL_FLAG(std::string, upstream_ca_file, "", "PEM roots trusted for the upstream");
ABSL_FLAG(std::string, cert_file, "", "The proxy's certificate (PEM); empty: make one");
ABSL_FLAG(std::string, key_file, "", "The proxy's key (PEM), with --cert_file");
ABSL_FLAG(std::string, ca_out, "", "Where to write the CA of a certificate the proxy made");
ABSL_FLAG(int, control_port, 0, "The control endpoint's port on 127.0.0.1 (0: any free one)");

namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string upstream = absl::GetFlag(FLAGS_upstream);
  const size_t path = upstream.find('/', std::string("https://").size());
  if (path != std::string::npos) upstream.resize(path);
  acmevault::testing::FaultProxy::Options options{
      .upstream_origin = upstream,
      .upstream_ca_file = absl::GetFlag(FLAGS_upstream_ca_file),
      .control_port = absl::GetFlag(FLAGS_control_port)};
  if (!absl::GetFlag(FLAGS_cert_file).empty()) {
    options.cert_pem = Read(absl::GetFlag(FLAGS_cert_file));
    options.key_pem = Read(absl::GetFlag(FLAGS_key_file));
  }
  // Blocked before any thread starts, so every thread inherits the mask and sigwait sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto proxy = acmevault::testing::FaultProxy::Create(options);
  if (!proxy.ok()) {
    fprintf(stderr, "fault_proxy_main: %s\n", proxy.status().ToString().c_str());
    return 1;
  }
  if (!(*proxy)->ca_pem().empty() && !absl::GetFlag(FLAGS_ca_out).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_ca_out)) << (*proxy)->ca_pem();
  }
  printf("%s\n",
         nlohmann::json{{"origin", (*proxy)->origin()}, {"control_port", (*proxy)->control_port()}}
             .dump()
             .c_str());
  fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  return 0;
}
