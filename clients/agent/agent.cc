#include "clients/agent/agent.h"

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "clients/agent/atomic_file.h"
#include "clients/agent/renewal.h"
#include "clients/lib/enum_names.h"
#include "common/status_macros.h"
#include "crypto/keys.h"
#include "crypto/secret.h"
#include "crypto/x509.h"

extern char** environ;

namespace acmevault::agent {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Log(const std::string& line) {
  std::fprintf(stderr, "%s acmevault-agent: %s\n",
               absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()).c_str(),
               line.c_str());
}

std::set<std::string> Lower(const std::vector<std::string>& names) {
  std::set<std::string> out;
  for (const auto& n : names) out.insert(absl::AsciiStrToLower(n));
  return out;
}

// The leaf of `chain_pem` when it certifies `key_pem`'s public key for exactly `names` and has
// not expired at `now`.
absl::StatusOr<crypto::CertificateInfo> CheckPair(absl::string_view key_pem,
                                                  absl::string_view chain_pem,
                                                  const std::vector<std::string>& names,
                                                  absl::Time now) {
  ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::FromPem(key_pem));
  ASSIGN_OR_RETURN(std::vector<crypto::CertificateInfo> chain, crypto::ParsePemChain(chain_pem));
  crypto::CertificateInfo& leaf = chain.front();
  if (!leaf.public_key.Equals(key.public_key())) {
    return absl::FailedPreconditionError("the certificate is not for this key");
  }
  if (Lower(leaf.dns_names) != Lower(names)) {
    return absl::FailedPreconditionError("the certificate names other DNS names");
  }
  if (leaf.not_after <= now) return absl::FailedPreconditionError("the certificate has expired");
  return std::move(leaf);
}

}  // namespace

Agent::Agent(AgentOptions options, clients::Client* client)
    : options_(std::move(options)),
      client_(client),
      random_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

bool Agent::LoadExisting() {
  crypto::SecretBytes key(ReadFile(Path("tls.key")));
  std::string chain = ReadFile(Path("tls.crt"));
  if (key.empty() || chain.empty()) return false;
  absl::StatusOr<crypto::CertificateInfo> leaf =
      CheckPair(key.view(), chain, options_.names, options_.clock->Now());
  if (!leaf.ok()) {
    Log(absl::StrCat("not using the certificate in ", options_.out_dir, ": ",
                     leaf.status().message()));
    return false;
  }
  if (access(Path("ready").c_str(), F_OK) != 0) {
    absl::Status s = WriteFileAtomically(Path("ready"), leaf->serial_hex + "\n", 0644);
    if (!s.ok()) Log(std::string(s.message()));
  }
  absl::MutexLock lock(&mu_);
  state_.serial = leaf->serial_hex;
  state_.not_after = leaf->not_after;
  state_.renew_at = RenewalTime(leaf->not_before, leaf->not_after, options_.renew_fraction,
                                options_.jitter, std::uniform_real_distribution<>(0, 1)(random_));
  Log(absl::StrCat("using certificate ", leaf->serial_hex, " already in ", options_.out_dir,
                   "; renewal at ", absl::FormatTime(state_.renew_at)));
  return true;
}

absl::Status Agent::Renew() {
  ASSIGN_OR_RETURN(crypto::KeyAlgorithm algorithm,
                   crypto::ParseKeyAlgorithm(
                       clients::EnumName(*v1::KeyAlgorithm_descriptor(), options_.key_algorithm)));
  ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::Generate(algorithm));
  ASSIGN_OR_RETURN(std::string csr, crypto::BuildCsr(options_.names, key));
  v1::IssueCertificateRequest request;
  for (const auto& n : options_.names) request.add_identifiers(n);
  request.set_csr(csr);
  absl::StatusOr<v1::IssueCertificateResponse> issued =
      client_->Issue(request, {.max_wait = options_.issue_wait});
  std::optional<absl::Time> service_renew_at;
  if (issued.ok() && issued->certificate().has_renew_at()) {
    service_renew_at = absl::FromUnixSeconds(issued->certificate().renew_at().seconds()) +
                       absl::Nanoseconds(issued->certificate().renew_at().nanos());
  }
  absl::Status installed =
      issued.ok()
          ? Install(key.ToPkcs8Pem().view(), issued->certificate().chain_pem(), service_renew_at)
          : issued.status();
  absl::MutexLock lock(&mu_);
  if (!installed.ok()) {
    ++state_.failures;
    state_.last_error = clients::DescribeStatus(installed);
  }
  return installed;
}

absl::Status Agent::Install(absl::string_view key_pem, const std::string& chain_pem,
                            std::optional<absl::Time> service_renew_at) {
  ASSIGN_OR_RETURN(crypto::CertificateInfo leaf,
                   CheckPair(key_pem, chain_pem, options_.names, options_.clock->Now()));
  // The key first: a reader that sees the new chain finds its key in place.
  RETURN_IF_ERROR(WriteFileAtomically(Path("tls.key"), key_pem, 0600));
  RETURN_IF_ERROR(WriteFileAtomically(Path("tls.crt"), chain_pem, 0644));
  RETURN_IF_ERROR(WriteFileAtomically(Path("ready"), leaf.serial_hex + "\n", 0644));
  {
    absl::MutexLock lock(&mu_);
    state_.serial = leaf.serial_hex;
    state_.not_after = leaf.not_after;
    state_.renew_at = RenewalTime(leaf.not_before, leaf.not_after, options_.renew_fraction,
                                  options_.jitter, std::uniform_real_distribution<>(0, 1)(random_));
    // The service's policy (the tenant's renewal window, or the CA's ARI window) may want it
    // sooner.
    if (service_renew_at && *service_renew_at < state_.renew_at) {
      state_.renew_at = std::max(*service_renew_at, leaf.not_before);
    }
    ++state_.renewals;
    state_.last_success = options_.clock->Now();
    state_.last_error.clear();
    Log(absl::StrCat("certificate ", leaf.serial_hex, " for ", absl::StrJoin(options_.names, ","),
                     " written to ", options_.out_dir, "; expires ",
                     absl::FormatTime(leaf.not_after), ", renewal at ",
                     absl::FormatTime(state_.renew_at)));
  }
  RunHooks(leaf.serial_hex);
  return absl::OkStatus();
}

void Agent::RunHooks(const std::string& serial) {
  if (!options_.on_renew.empty()) {
    // The environment is built before spawning: nothing but exec runs in the child.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    env_strings.push_back("ACMEVAULT_CERT_FILE=" + Path("tls.crt"));
    env_strings.push_back("ACMEVAULT_KEY_FILE=" + Path("tls.key"));
    env_strings.push_back("ACMEVAULT_SERIAL=" + serial);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string sh = "sh", c = "-c", command = options_.on_renew;
    char* argv[] = {sh.data(), c.data(), command.data(), nullptr};
    pid_t pid;
    int status = 0;
    if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, envp.data()) != 0) {
      Log("cannot start --on-renew command");
    } else if (waitpid(pid, &status, 0) == pid &&
               !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      Log(absl::StrCat("--on-renew command failed (status ", status, ")"));
    }
  }
  if (!options_.signal_pid_file.empty()) {
    int pid = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(options_.signal_pid_file)), &pid) ||
        pid <= 1) {
      Log(absl::StrCat("no pid in ", options_.signal_pid_file));
    } else if (kill(pid, options_.signal) != 0) {
      Log(absl::StrCat("cannot signal pid ", pid));
    }
  }
}

void Agent::Run(absl::Notification& stop) {
  LoadExisting();
  uint64_t seed;
  {
    absl::MutexLock lock(&mu_);
    seed = random_() | 1;
  }
  clients::Backoff backoff(options_.backoff, seed);
  while (!stop.HasBeenNotified()) {
    absl::Time due = state().renew_at;
    absl::Time now = options_.clock->Now();
    if (now >= due) {
      absl::Status s = Renew();
      if (s.ok()) {
        backoff.Reset();
        continue;
      }
      absl::Duration wait = backoff.Next();
      Log(absl::StrCat("renewal failed: ", clients::DescribeStatus(s), "; ",
                       state().ready ? "keeping the certificate in place; " : "", "retrying in ",
                       absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(100)))));
      stop.WaitForNotificationWithTimeout(wait);
      continue;
    }
    // Woken at least each minute, so a clock that jumps is noticed.
    stop.WaitForNotificationWithTimeout(std::min(due - now, absl::Minutes(1)));
  }
}

AgentState Agent::state() const {
  absl::MutexLock lock(&mu_);
  AgentState s = state_;
  s.ready = !s.serial.empty() && options_.clock->Now() < s.not_after;
  return s;
}

}  // namespace acmevault::agent
