#include "tests/e2e/e2e_fixture.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "acme/http.h"
#include "common/testing/stack_env.h"
#include "storage/kek_set.h"

namespace acmevault::e2e {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Daemon> Daemon::Start(const std::string& config, const std::string& name) {
  auto d = std::unique_ptr<Daemon>(new Daemon);
  std::string dir = ::acmevault::testing::StackEnv("TEST_TMPDIR");
  d->ready_ = absl::StrCat(dir, "/", name, ".ready");
  d->log_ = absl::StrCat(dir, "/", name, ".log");
  unlink(d->ready_.c_str());
  d->pid_ = fork();
  if (d->pid_ == 0) {
    FILE* log = freopen(d->log_.c_str(), "w", stderr);
    (void)log;
    std::string ready_flag = "--ready_file=" + d->ready_;
    std::string config_flag = "--config=" + config;
    execl("service/acmevaultd", "acmevaultd", "serve", config_flag.c_str(), ready_flag.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    if (access(d->ready_.c_str(), R_OK) == 0) break;
    int status;
    if (waitpid(d->pid_, &status, WNOHANG) == d->pid_) {
      ADD_FAILURE() << "acmevaultd exited: " << ReadFile(d->log_);
      d->pid_ = 0;
      return nullptr;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  std::smatch m;
  std::string ready = ReadFile(d->ready_);
  if (!std::regex_search(ready, m, std::regex("\"grpc_port\":([0-9]+)"))) {
    ADD_FAILURE() << "no ready file; log: " << ReadFile(d->log_);
    return nullptr;
  }
  d->grpc_port_ = std::stoi(m[1]);
  std::regex_search(ready, m, std::regex("\"metrics_port\":([0-9]+)"));
  d->metrics_port_ = std::stoi(m[1]);
  d->channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", d->grpc_port_),
                                    grpc::InsecureChannelCredentials());
  return d;
}

void Daemon::Stop(int signal) {
  if (pid_ <= 0) return;
  kill(pid_, signal);
  int status;
  for (int i = 0; i < 200 && waitpid(pid_, &status, WNOHANG) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = 0;
}

bool Daemon::Alive() {
  if (pid_ <= 0) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
  pid_ = 0;  // Reaped: never signal a pid that may be reused.
  return false;
}

double Daemon::Metric(const std::string& prefix) const {
  auto http = acme::CurlTransport::Create({.allow_http = true});
  auto r =
      (*http)->Send({"GET", absl::StrCat("http://127.0.0.1:", metrics_port_, "/metrics"), {}, ""});
  if (!r.ok()) return -1;
  double total = 0;
  std::istringstream lines(r->body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) == 0) total += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

void E2eFixture::SetUp() {
  ACMEVAULT_STACK_ENV_OR_SKIP(config, config_env());
  config_ = config;
  dir_ = config.substr(0, config.rfind('/'));
  root_token_ = std::string(absl::StripAsciiWhitespace(ReadFile(dir_ + "/bootstrap-token")));
  // Close-on-exec: a daemon that inherited it would hold the lock past TearDown.
  lock_fd_ = open((dir_ + "/daemon.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(lock_fd_, 0) << "cannot open " << dir_ << "/daemon.lock";
  ASSERT_EQ(flock(lock_fd_, LOCK_EX), 0);
  daemon_config_ = config_;
  if (!ExtraConfig().empty()) {
    daemon_config_ = ::acmevault::testing::StackEnv("TEST_TMPDIR") + "/a.textproto";
    std::ofstream(daemon_config_) << ReadFile(config_) << ExtraConfig();
  }
  daemon_ = Daemon::Start(daemon_config_, "a");
  ASSERT_NE(daemon_, nullptr);
  Bind(*daemon_);
}

void E2eFixture::TearDown() {
  daemon_.reset();
  if (lock_fd_ >= 0) close(lock_fd_);  // Releases the lock.
  lock_fd_ = -1;
}

void E2eFixture::RestartDaemon() {
  daemon_.reset();  // Frees the HTTP-01 responder port the CA validates on.
  daemon_ = Daemon::Start(daemon_config_, "a");
  ASSERT_NE(daemon_, nullptr);
  Bind(*daemon_);
}

void E2eFixture::Bind(const Daemon& d) {
  certs_ = v1::CertificateService::NewStub(d.channel());
  accounts_ = v1::AccountService::NewStub(d.channel());
  admin_ = v1::AdminService::NewStub(d.channel());
}

std::unique_ptr<grpc::ClientContext> E2eFixture::Ctx(const std::string& token, int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

E2eFixture::TenantTokens E2eFixture::NewTenant(bool with_account, bool keep_authorizations,
                                               const std::string& pattern,
                                               const std::string& directory) {
  static int counter = 0;
  TenantTokens t;
  t.name = absl::StrCat("t", getpid(), "-", ++counter);
  v1::CreateTenantRequest req;
  req.set_name(t.name);
  req.add_allowed_identifiers(pattern.empty() ? absl::StrCat("*.", t.name, ".example") : pattern);
  req.set_directory_url(directory);
  if (keep_authorizations) {
    // Without a policy the default deactivates authorizations after issuance.
    req.mutable_policy()->set_deactivate_authorizations_after_issuance(false);
  }
  v1::Tenant tenant;
  auto c = Ctx(root_token_);
  EXPECT_TRUE(admin_->CreateTenant(c.get(), req, &tenant).ok());
  for (auto [role, out] :
       {std::pair{v1::ROLE_ADMIN, &t.admin}, std::pair{v1::ROLE_HOST, &t.host}}) {
    v1::CreateTokenRequest tr;
    tr.set_tenant(t.name);
    tr.set_role(role);
    v1::CreateTokenResponse resp;
    auto tc = Ctx(root_token_);
    EXPECT_TRUE(admin_->CreateToken(tc.get(), tr, &resp).ok());
    *out = resp.token();
  }
  if (with_account) {
    v1::CreateAccountRequest ar;
    ar.set_terms_of_service_agreed(true);
    v1::Account account;
    auto ac = Ctx(t.admin);
    grpc::Status s = accounts_->CreateAccount(ac.get(), ar, &account);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  return t;
}

bool WriteTlsFiles(const std::string& dir, const std::vector<TlsClient>& clients) {
  std::string script = absl::StrCat(R"(set -e
mkdir -p ")", dir, R"("; cd ")", dir, R"("
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$1" \
  -keyout "$1.key" -out "$1.pem" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign 2>/dev/null; }
leaf() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
  -keyout "$2.key" -out "$2.csr" 2>/dev/null
  printf '%s\n' "$3" > "$2.ext"
  openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial -days 1 \
  -extfile "$2.ext" -out "$2.pem" 2>/dev/null; }
ca ca; ca other
leaf ca server "subjectAltName=DNS:localhost,IP:127.0.0.1"
)");
  for (const TlsClient& c : clients) {
    absl::StrAppend(&script, "leaf ", c.ca, " ", c.name, " \"subjectAltName=URI:", c.spiffe_id,
                    "\nextendedKeyUsage=clientAuth\"\n");
  }
  const std::string command =
      "bash -c '" + absl::StrReplaceAll(script, {{"'", "'\\''"}}) + "'";
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << "making TLS files in " << dir;
  return rc == 0;
}

std::shared_ptr<grpc::Channel> TlsChannel(const Daemon& daemon, const std::string& dir,
                                          const std::string& client) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ReadFile(dir + "/ca.pem");
  if (!client.empty()) {
    o.pem_private_key = ReadFile(dir + "/" + client + ".key");
    o.pem_cert_chain = ReadFile(dir + "/" + client + ".pem");
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", daemon.grpc_port()),
                                   grpc::SslCredentials(o), args);
}

std::unique_ptr<Daemon> E2eFixture::StartTlsDaemon(const std::string& dir,
                                                   const std::string& name) {
  std::string config = std::regex_replace(
      ReadFile(config_), std::regex("http01_listen_address: \"127.0.0.1:[0-9]+\""),
      "http01_listen_address: \"127.0.0.1:0\"");
  config += absl::StrCat("tls { cert_file: \"", dir, "/server.pem\" key_file: \"", dir,
                         "/server.key\" client_ca_file: \"", dir, "/ca.pem\" }\n");
  const std::string path = absl::StrCat(dir, "/", name, ".textproto");
  std::ofstream(path) << config;
  return Daemon::Start(path, name);
}

absl::StatusOr<std::unique_ptr<storage::PostgresStore>> E2eFixture::OpenStore() const {
  auto keks = storage::KekSet::FromFile(dir_ + "/kek");
  if (!keks.ok()) return keks.status();
  storage::PostgresStoreOptions options;
  options.pool.url = std::string(absl::StripAsciiWhitespace(ReadFile(dir_ + "/db-url")));
  options.pool.size = 2;
  return storage::PostgresStore::Create(options, *std::move(keks));
}

grpc::Status E2eFixture::IssueWithKey(const TenantTokens& t, const std::vector<std::string>& names,
                                      v1::IssueCertificateResponse* out,
                                      const std::string& idempotency_key, int seconds) {
  v1::IssueCertificateRequest r;
  for (const auto& n : names) r.add_identifiers(n);
  r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  r.set_idempotency_key(idempotency_key);
  auto c = Ctx(t.host, seconds);
  return certs_->IssueCertificate(c.get(), r, out);
}

}  // namespace acmevault::e2e
