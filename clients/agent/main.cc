// acmevault-agent: keeps a certificate for a pod or host in a directory (agent.h), with its own
// health, readiness and metrics endpoints (status_server.h). Every flag has an environment
// variable; `acmevault-agent --help` lists them. Stops on SIGTERM or SIGINT.
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "clients/agent/agent.h"
#include "clients/agent/status_server.h"
#include "clients/cli/flags.h"
#include "clients/lib/client.h"
#include "clients/lib/enum_names.h"

namespace {

using acmevault::cli::FlagKind;
using acmevault::cli::FlagSpec;

struct AgentFlag {
  FlagSpec spec;
  const char* env;  // nullptr: none.
};

const std::vector<AgentFlag>& Flags() {
  static const auto* flags = new std::vector<AgentFlag>{
      {{"server", FlagKind::kString, "HOST:PORT", "acmevaultd's gRPC address"}, "ACMEVAULT_SERVER"},
      {{"token-file", FlagKind::kString, "FILE",
        "the bearer token (a host token), re-read when it changes; else $ACMEVAULT_TOKEN"},
       "ACMEVAULT_TOKEN_FILE"},
      {{"names", FlagKind::kList, "NAMES", "the certificate's DNS names, comma-separated"},
       "ACMEVAULT_NAMES"},
      {{"out-dir", FlagKind::kString, "DIR",
        "where tls.key (0600), tls.crt (leaf, then chain) and ready are written"},
       "ACMEVAULT_OUT_DIR"},
      {{"key-type", FlagKind::kString, "TYPE",
        "the certificate key, generated here: " + acmevault::clients::KeyAlgorithmChoices() +
            " (default p256)"},
       "ACMEVAULT_KEY_TYPE"},
      {{"renew-fraction", FlagKind::kString, "F",
        "renew this far into the lifetime, 0 < F <= 1 (default 0.6667), less up to 10% jitter"},
       "ACMEVAULT_RENEW_FRACTION"},
      {{"on-renew", FlagKind::kString, "COMMAND",
        "run with /bin/sh -c after each new certificate (ACMEVAULT_CERT_FILE, "
        "ACMEVAULT_KEY_FILE, ACMEVAULT_SERIAL set)"},
       "ACMEVAULT_ON_RENEW"},
      {{"signal-pid-file", FlagKind::kString, "FILE",
        "send SIGHUP to the pid in this file after each new certificate"},
       "ACMEVAULT_SIGNAL_PID_FILE"},
      {{"listen", FlagKind::kString, "HOST:PORT",
        "HTTP /healthz, /readyz, /metrics (default 127.0.0.1:9402)"},
       "ACMEVAULT_AGENT_LISTEN"},
      {{"tls-ca", FlagKind::kString, "FILE",
        "PEM roots that verify the server (plaintext without)"},
       "ACMEVAULT_TLS_CA"},
      {{"tls-cert", FlagKind::kString, "FILE", "client certificate for mTLS (reloaded on change)"},
       "ACMEVAULT_TLS_CERT"},
      {{"tls-key", FlagKind::kString, "FILE", "its key"}, "ACMEVAULT_TLS_KEY"},
      {{"tls-server-name", FlagKind::kString, "NAME", "the name in the server's certificate"},
       "ACMEVAULT_TLS_SERVER_NAME"},
      {{"retry-max-delay", FlagKind::kDuration, "DURATION",
        "longest wait between failed renewals (default 5m)"},
       "ACMEVAULT_RETRY_MAX_DELAY"},
      {{"once", FlagKind::kBool, "",
        "get a certificate (unless a valid one is in place) and exit: for an init container"},
       nullptr},
  };
  return *flags;
}

int Usage(const std::string& message) {
  std::cerr << "acmevault-agent: " << message << "\n(acmevault-agent --help lists the flags)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  namespace agent = acmevault::agent;
  namespace clients = acmevault::clients;
  // SIGTERM and SIGINT are taken by a thread of their own, blocked first so that every thread
  // started later (gRPC's among them) inherits the mask and none dies of the default action.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  absl::Notification stop;
  std::thread([&stop, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    stop.Notify();
  }).detach();

  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<FlagSpec> specs;
  for (const auto& f : Flags()) specs.push_back(f.spec);
  specs.push_back({"help", FlagKind::kBool, "", "this text"});
  auto flags = acmevault::cli::ParseFlags(specs, args, nullptr);
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (flags->Bool("help")) {
    std::string text =
        "acmevault-agent: keeps a certificate from acmevaultd in a directory (a Kubernetes "
        "sidecar\nor a host). The key is generated here; only a CSR is sent.\n\nFlags (each "
        "also from its environment variable):\n";
    std::cout << text << acmevault::cli::FlagsHelp(specs);
    for (const auto& f : Flags()) {
      if (f.env != nullptr) std::cout << "  --" << f.spec.name << ": $" << f.env << "\n";
    }
    std::cout << "\nExit codes: 0 stopped by SIGTERM/SIGINT (or --once succeeded); 1 --once "
                 "failed; 2 bad flags.\n";
    return 0;
  }
  for (const auto& f : Flags()) {
    const char* value = f.env == nullptr ? nullptr : std::getenv(f.env);
    if (!flags->Has(f.spec.name) && value != nullptr && *value != '\0') {
      flags->Set(f.spec.name, value);
    }
  }

  agent::AgentOptions options;
  options.names = flags->List("names");
  options.out_dir = flags->String("out-dir");
  if (options.names.empty()) return Usage("--names (ACMEVAULT_NAMES) is required");
  struct stat st;
  if (options.out_dir.empty() || stat(options.out_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Usage("--out-dir (ACMEVAULT_OUT_DIR) must name an existing directory");
  }
  auto key_type = clients::ParseKeyAlgorithm(flags->String("key-type", "p256"), "--key-type");
  if (!key_type.ok()) return Usage(std::string(key_type.status().message()));
  options.key_algorithm = *key_type;
  if (flags->Has("renew-fraction")) {
    double f;
    if (!absl::SimpleAtod(flags->String("renew-fraction"), &f) || !(f > 0 && f <= 1)) {
      return Usage("--renew-fraction takes a number above 0 and at most 1");
    }
    options.renew_fraction = f;
  }
  options.on_renew = flags->String("on-renew");
  options.signal_pid_file = flags->String("signal-pid-file");
  options.backoff.max_delay = flags->Duration("retry-max-delay", absl::Minutes(5));
  options.backoff.initial_delay =
      std::min(options.backoff.initial_delay, options.backoff.max_delay);

  clients::ClientOptions client_options;
  client_options.server = flags->String("server", client_options.server);
  client_options.token_file = flags->String("token-file");
  if (client_options.token_file.empty() && std::getenv("ACMEVAULT_TOKEN") != nullptr) {
    client_options.token = std::getenv("ACMEVAULT_TOKEN");
  }
  client_options.tls_ca = flags->String("tls-ca");
  client_options.tls_cert = flags->String("tls-cert");
  client_options.tls_key = flags->String("tls-key");
  client_options.tls_server_name = flags->String("tls-server-name");
  client_options.backoff.max_delay =
      std::min(client_options.backoff.max_delay, options.backoff.max_delay);
  auto client = clients::Client::Create(client_options);
  if (!client.ok()) return Usage(std::string(client.status().message()));

  agent::Agent worker(options, client->get());
  if (flags->Bool("once")) {
    // A stop signal ends it as the default action would (Renew is not interruptible).
    std::thread([&stop] {
      stop.WaitForNotification();
      std::_Exit(143);
    }).detach();
    if (worker.LoadExisting() && absl::Now() < worker.state().renew_at) return 0;
    absl::Status s = worker.Renew();
    if (!s.ok()) std::cerr << "acmevault-agent: " << clients::DescribeStatus(s) << "\n";
    return s.ok() ? 0 : 1;
  }

  auto status = agent::StatusServer::Start(flags->String("listen", "127.0.0.1:9402"),
                                           [&worker] { return worker.state(); });
  if (!status.ok()) return Usage(std::string(status.status().message()));
  std::cerr << "acmevault-agent: serving /healthz, /readyz and /metrics on port "
            << (*status)->port() << "\n";
  worker.Run(stop);
  return 0;
}
