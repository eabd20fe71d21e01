// Agent: keeps a certificate for a fixed set of DNS names in a directory, for a Kubernetes
// sidecar or a plain host. It generates the certificate key itself and sends acmevaultd only a
// CSR (the key never leaves the pod), writes tls.key (0600) and tls.crt (leaf, then chain) each
// atomically (atomic_file.h), writes the file `ready` once the first certificate is in place,
// renews at a fraction of the lifetime with jitter (renewal.h), keeps the last good
// certificate and retries with backoff while the service is unavailable, and after each new
// certificate runs a command and/or signals a process.
#ifndef ACMEVAULT_CLIENTS_AGENT_AGENT_H_
#define ACMEVAULT_CLIENTS_AGENT_AGENT_H_

#include <csignal>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "acmevault/v1/common.pb.h"
#include "clients/lib/backoff.h"
#include "clients/lib/client.h"
#include "common/clock.h"

namespace acmevault::agent {

struct AgentOptions {
  // The certificate's DNS names (its subjectAltNames, exactly).
  std::vector<std::string> names;
  // Where tls.key, tls.crt and ready go; must exist.
  std::string out_dir;
  v1::KeyAlgorithm key_algorithm = v1::KEY_ALGORITHM_ECDSA_P256;
  // Renew this far into the lifetime (0 < fraction <= 1), made earlier by up to `jitter` of it.
  double renew_fraction = 2.0 / 3;
  double jitter = 0.1;
  // Run with /bin/sh -c after each new certificate is in place, with ACMEVAULT_CERT_FILE,
  // ACMEVAULT_KEY_FILE and ACMEVAULT_SERIAL set; "" for none. Its failure is logged only.
  std::string on_renew;
  // A file holding the pid of a process to send `signal` after each new certificate; "" for
  // none.
  std::string signal_pid_file;
  int signal = SIGHUP;
  // Waits between failed renewals (the service or CA unavailable, an order that failed).
  clients::BackoffPolicy backoff = {.initial_delay = absl::Seconds(5),
                                    .max_delay = absl::Minutes(5)};
  // How long one issuance may wait for its order.
  absl::Duration issue_wait = absl::Minutes(10);
  // Borrowed; must outlive the Agent.
  const Clock* clock = Clock::Real();
  // Jitter and backoff; 0: random.
  uint64_t seed = 0;
};

// What /readyz and /metrics report.
struct AgentState {
  bool ready = false;  // A certificate is in place and not expired.
  std::string serial;
  absl::Time not_after = absl::InfinitePast();
  absl::Time renew_at = absl::InfinitePast();
  int64_t renewals = 0;  // New certificates written.
  int64_t failures = 0;  // Failed renewal attempts.
  absl::Time last_success = absl::InfinitePast();
  std::string last_error;
};

// Thread-safe: state() may be called while Run works.
class Agent {
 public:
  // `client` is borrowed and must outlive the Agent.
  Agent(AgentOptions options, clients::Client* client);

  // Adopts tls.key and tls.crt already in out_dir when they belong together, name exactly
  // `names` and have not expired (a restarted agent keeps its certificate); true when it did.
  bool LoadExisting();

  // Gets a new certificate for a new key and puts it in place (then the hooks). On failure
  // the files in place are untouched and the status says why.
  absl::Status Renew();

  // LoadExisting, then renews whenever due, retrying failures with backoff, until `stop`.
  void Run(absl::Notification& stop);

  AgentState state() const;

 private:
  // `service_renew_at`: the service's renewal hint for the certificate (Certificate.renew_at),
  // which wins when earlier than the agent's own lifetime fraction.
  absl::Status Install(absl::string_view key_pem, const std::string& chain_pem,
                       std::optional<absl::Time> service_renew_at = std::nullopt);
  void RunHooks(const std::string& serial);
  std::string Path(const char* name) const { return options_.out_dir + "/" + name; }

  const AgentOptions options_;
  clients::Client* const client_;
  mutable absl::Mutex mu_;
  AgentState state_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acmevault::agent

#endif  // ACMEVAULT_CLIENTS_AGENT_AGENT_H_
