// What every end-to-end test file shares: a real acmevaultd process (Daemon) and a fixture that
// starts one against a service that tests/run prepared (deploy/local/service prepare NAME),
// with tenants, tokens and ACME accounts made through the public API.
#ifndef ACMEVAULT_TESTS_E2E_E2E_FIXTURE_H_
#define ACMEVAULT_TESTS_E2E_E2E_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"

namespace acmevault::e2e {

// The whole file at `path`, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

// One acmevaultd process. Stops it (SIGTERM, then SIGKILL) when destroyed.
class Daemon {
 public:
  // Starts `serve` with `config`; waits for its ready file. Null (with a test failure) when it
  // exits or never becomes ready. Its log is TEST_TMPDIR/<name>.log.
  static std::unique_ptr<Daemon> Start(const std::string& config, const std::string& name);
  ~Daemon() { Stop(SIGTERM); }

  void Stop(int signal);
  // False once the process has exited (crashed or stopped).
  bool Alive();
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  int grpc_port() const { return grpc_port_; }
  const std::string& log_path() const { return log_; }
  // The value of a metric line of /metrics, or 0.
  double Metric(const std::string& prefix) const;

 private:
  Daemon() = default;
  pid_t pid_ = 0;
  int grpc_port_ = 0, metrics_port_ = 0;
  std::string ready_, log_;
  std::shared_ptr<grpc::Channel> channel_;
};

// mTLS material in `dir`: CAs "ca" and "other" (ca.pem, other.pem), a server certificate for
// localhost and 127.0.0.1 issued by "ca" (server.pem, server.key), and for each client
// {file name, SPIFFE ID, issuing CA} a client certificate (NAME.pem, NAME.key). Made with the
// openssl command; false (with a test failure) when it fails.
struct TlsClient {
  std::string name, spiffe_id, ca;
};
bool WriteTlsFiles(const std::string& dir, const std::vector<TlsClient>& clients);
// A channel to `daemon` over TLS trusting dir/ca.pem, presenting client certificate `client`
// from `dir` (none when empty).
std::shared_ptr<grpc::Channel> TlsChannel(const Daemon& daemon, const std::string& dir,
                                          const std::string& client);

// Starts daemon "a" for the service whose config is in environment variable config_env() (the
// test is skipped, or failed under tests/run, without it), with ExtraConfig() appended.
// A prepared service has one HTTP-01 port, which its daemon "a" binds: from SetUp to TearDown
// the fixture holds an exclusive lock on the service's directory, so test binaries that share
// a service take turns.
class E2eFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The environment variable naming the prepared service's config.
  virtual const char* config_env() const { return "ACMEVAULT_E2E_CONFIG"; }
  // Text-proto lines appended to that config for daemon "a".
  virtual std::string ExtraConfig() const { return ""; }
  // Stops daemon "a" and starts it again with the same config (its ACME clients start afresh).
  void RestartDaemon();
  // A second daemon, named `name`, for the same service serving TLS with the files
  // WriteTlsFiles put in `dir` and asking for client certificates of dir/ca.pem; its own
  // HTTP-01 port.
  std::unique_ptr<Daemon> StartTlsDaemon(const std::string& dir, const std::string& name);

  void Bind(const Daemon& d);
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token, int seconds = 30);

  struct TenantTokens {
    std::string name, admin, host;
  };
  // A new tenant allowed *.<name>.example with an admin and a host token, and (optionally) its
  // ACME account.
  // `pattern` defaults to "*.<name>.example"; `directory` to the service's default CA.
  TenantTokens NewTenant(bool with_account = true, bool keep_authorizations = false,
                         const std::string& pattern = "", const std::string& directory = "");
  grpc::Status IssueWithKey(const TenantTokens& t, const std::vector<std::string>& names,
                            v1::IssueCertificateResponse* out,
                            const std::string& idempotency_key = "", int seconds = 30);

  // The service's database as the service sees it (its login role, row-level security), with
  // its key-encryption key: what a test reads the vault and the ledger through.
  absl::StatusOr<std::unique_ptr<storage::PostgresStore>> OpenStore() const;

  std::string config_, dir_, root_token_;
  std::string daemon_config_;  // config_ with ExtraConfig(), as daemon "a" runs it.
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::CertificateService::Stub> certs_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::AdminService::Stub> admin_;

 private:
  int lock_fd_ = -1;
};

}  // namespace acmevault::e2e

#endif  // ACMEVAULT_TESTS_E2E_E2E_FIXTURE_H_
