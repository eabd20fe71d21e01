// acmevaultd: the only place that sees every concrete type, and the only place with flags.
//
//   acmevaultd serve --config=FILE [--ready_file=FILE]
//   acmevaultd migrate        (schema owner URL in $ACMEVAULT_DB_OWNER_URL)
//   acmevaultd rewrap --config=FILE
//   acmevaultd audit-verify --config=FILE --tenant=NAME
//
// Secrets never come from flags or the config file: the database URL from the environment
// variable or file the config names, key-encryption keys from $ACMEVAULT_KEK_FILE or
// $ACMEVAULT_KEK (or the config's kek_file / kek_env), the bootstrap token from a file.
#include <google/protobuf/text_format.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "acme/http.h"
#include "acmevault/v1/config.pb.h"
#include "common/status_macros.h"
#include "crypto/pkcs11.h"
#include "crypto/secret.h"
#include "crypto/x509.h"
#include "service/account_keys.h"
#include "service/accounts.h"
#include "service/admin.h"
#include "service/auth.h"
#include "service/certificate_cache.h"
#include "service/core_dumps.h"
#include "service/dns01_rfc2136.h"
#include "service/engine.h"
#include "service/engine_config.h"
#include "service/grpc_server.h"
#include "service/grpc_services.h"
#include "service/health.h"
#include "service/http01_responder.h"
#include "service/issuer.h"
#include "service/job_notices.h"
#include "service/key_wiping_interceptor.h"
#include "service/log.h"
#include "service/metrics.h"
#include "service/order_runner.h"
#include "service/policy_scheduler.h"
#include "service/published_answers.h"
#include "service/renewer.h"
#include "service/token_cache.h"
#include "storage/kek_set.h"
#include "storage/migrate.h"
#include "storage/postgres_store.h"

ABSL_FLAG(std::string, config, "", "ServerConfig text proto");
ABSL_FLAG(std::string, ready_file, "",
          "Written once serving: JSON with the bound ports (for scripts and tests)");
ABSL_FLAG(std::string, tenant, "", "audit-verify: the tenant whose chain to verify");
ABSL_FLAG(std::string, label, "", "token-kek: the label of the AES key to make in the token");

namespace acmevault {
namespace {

using service::Log;
using service::LogLevel;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::StatusOr<v1::ServerConfig> LoadConfig() {
  std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) return absl::InvalidArgumentError("--config is required");
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  v1::ServerConfig config;
  if (!google::protobuf::TextFormat::ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid ServerConfig text proto"));
  }
  return config;
}

absl::StatusOr<std::string> Secret(const std::string& env, const std::string& file,
                                   absl::string_view what) {
  if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr || *v == '\0') {
      return absl::FailedPreconditionError(absl::StrCat(what, ": $", env, " is not set"));
    }
    return std::string(v);
  }
  if (!file.empty()) {
    ASSIGN_OR_RETURN(std::string v, ReadFile(file));
    return std::string(absl::StripAsciiWhitespace(v));
  }
  return absl::FailedPreconditionError(absl::StrCat(what, ": no environment variable or file"));
}

// The configured PKCS#11 token, or null when there is none. Its PIN comes from a file or an
// environment variable, which is wiped and unset once read.
absl::StatusOr<std::unique_ptr<crypto::Pkcs11Token>> OpenToken(const v1::ServerConfig& config) {
  const auto& p = config.pkcs11();
  if (p.module_path().empty()) return nullptr;
  crypto::Pkcs11Options options;
  options.module_path = p.module_path();
  options.token_label = p.token_label();
  if (p.has_slot_id()) options.slot_id = p.slot_id();
  options.session_pool_size = p.session_pool_size() > 0 ? p.session_pool_size() : 8;
  if (!p.pin_env().empty()) {
    char* pin = std::getenv(p.pin_env().c_str());
    if (pin == nullptr || *pin == '\0') {
      return absl::FailedPreconditionError(absl::StrCat("PKCS#11 PIN: $", p.pin_env(), " is not set"));
    }
    options.pin = crypto::SecretBytes(std::string(pin));
    crypto::SecureWipe(pin, std::strlen(pin));
    unsetenv(p.pin_env().c_str());
  } else {
    ASSIGN_OR_RETURN(std::string pin, Secret("", p.pin_file(), "PKCS#11 PIN"));
    options.pin = crypto::SecretBytes(std::move(pin));
  }
  ASSIGN_OR_RETURN(auto token, crypto::Pkcs11Token::Open(std::move(options)));
  Log(LogLevel::kInfo, "PKCS#11 token open", {{"token", token->name()}});
  return token;
}

// `token` (may be null) resolves "token:LABEL" entries; it must outlive the set.
absl::StatusOr<storage::KekSet> LoadKeks(const v1::ServerConfig& config,
                                         crypto::Pkcs11Token* token) {
  storage::TokenKekLoader loader;
  if (token != nullptr) {
    loader = [token](absl::string_view label) { return token->LoadAesKey(label); };
  }
  const auto& k = config.key_encryption();
  if (!k.kek_file().empty()) return storage::KekSet::FromFile(k.kek_file(), loader);
  if (!k.kek_env().empty()) return storage::KekSet::FromVariable(k.kek_env(), loader);
  return storage::KekSet::FromEnvironment(loader);
}

absl::StatusOr<std::unique_ptr<storage::PostgresStore>> OpenStore(const v1::ServerConfig& config,
                                                                  storage::KekSet keks) {
  ASSIGN_OR_RETURN(std::string url, Secret(config.database().url_env(),
                                           config.database().url_file(), "database URL"));
  storage::PostgresStoreOptions options;
  options.pool.url = url;
  if (config.database().pool_size() > 0) options.pool.size = config.database().pool_size();
  if (const int32_t idle = config.database().idle_in_transaction_timeout_seconds(); idle != 0) {
    options.pool.idle_in_transaction_timeout = absl::Seconds(std::max(0, idle));
  }
  return storage::PostgresStore::Create(options, std::move(keks));
}

// The gRPC server's limits: each field of the config that is set, else ServerLimits' default
// (which the config documents).
service::ServerLimits GrpcLimitsFrom(const v1::ServerConfig::GrpcLimits& config) {
  service::ServerLimits limits;
  if (config.max_concurrent_streams() > 0) {
    limits.max_concurrent_streams = config.max_concurrent_streams();
  }
  if (config.max_threads() > 0) limits.max_threads = config.max_threads();
  if (config.max_idle_threads() > 0) limits.max_idle_threads = config.max_idle_threads();
  if (config.max_memory_bytes() > 0) limits.max_memory_bytes = config.max_memory_bytes();
  if (config.max_receive_message_bytes() > 0) {
    limits.max_receive_message_bytes = config.max_receive_message_bytes();
  }
  if (config.keepalive_time_seconds() > 0) {
    limits.keepalive_time = absl::Seconds(config.keepalive_time_seconds());
  }
  if (config.keepalive_timeout_seconds() > 0) {
    limits.keepalive_timeout = absl::Seconds(config.keepalive_timeout_seconds());
  }
  if (config.max_connection_idle_seconds() > 0) {
    limits.max_connection_idle = absl::Seconds(config.max_connection_idle_seconds());
  }
  return limits;
}

// The HTTP-01 responder's options: each field of the config that is set, else the default.
service::Http01Responder::Options Http01OptionsFrom(const v1::ServerConfig& config,
                                                    storage::ChallengeStore* challenges,
                                                    service::PublishedAnswers* published,
                                                    service::Metrics* metrics) {
  service::Http01Responder::Options options;
  options.listen_address = config.http01_listen_address();
  const auto& c = config.http01();
  if (c.threads() > 0) options.threads = c.threads();
  if (c.request_timeout_ms() > 0) {
    options.request_timeout = absl::Milliseconds(c.request_timeout_ms());
  }
  if (c.keep_alive_timeout_ms() > 0) {
    options.keep_alive_timeout = absl::Milliseconds(c.keep_alive_timeout_ms());
  }
  if (c.connection_queue() > 0) options.connection_queue = c.connection_queue();
  options.challenges = challenges;
  options.published = published;
  options.metrics = metrics;
  return options;
}

volatile sig_atomic_t shutdown_requested = 0;

// Only async-signal-safe work: set a flag that the main thread polls.
void OnSignal(int) { shutdown_requested = 1; }

// The token cache's options from the config's `token_cache` (0 uses each default); null when
// it is disabled.
absl::StatusOr<std::unique_ptr<service::TokenCache>> MakeTokenCache(
    const v1::ServerConfig::TokenCache& config, service::Metrics* metrics) {
  if (config.disabled()) return nullptr;
  service::TokenCache::Options options{.metrics = metrics};
  if (config.positive_ttl_ms() > 0) {
    options.positive_ttl = absl::Milliseconds(config.positive_ttl_ms());
  }
  if (config.negative_ttl_ms() > 0) {
    options.negative_ttl = absl::Milliseconds(config.negative_ttl_ms());
  }
  if (config.max_entries() > 0) options.max_entries = static_cast<size_t>(config.max_entries());
  if (config.unknown_per_peer_per_second() != 0) {
    options.unknown_per_peer_per_second = std::max(0.0, config.unknown_per_peer_per_second());
  }
  if (config.unknown_per_peer_burst() > 0) {
    options.unknown_per_peer_burst = config.unknown_per_peer_burst();
  }
  return service::TokenCache::Create(options);
}

// The certificate cache's options from the config's `certificate_cache` (0 uses each
// default); null when it is disabled.
absl::StatusOr<std::unique_ptr<service::CertificateCache>> MakeCertificateCache(
    const v1::ServerConfig::CertificateCache& config, service::Metrics* metrics) {
  if (config.disabled()) return nullptr;
  service::CertificateCache::Options options{.metrics = metrics};
  if (config.ttl_ms() > 0) options.ttl = absl::Milliseconds(config.ttl_ms());
  if (config.max_kib() > 0) options.max_bytes = static_cast<size_t>(config.max_kib()) << 10;
  return service::CertificateCache::Create(options);
}

bool IsLoopback(absl::string_view address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost:") ||
         absl::StartsWith(address, "[::1]:");
}

std::string ReplicaId(const v1::ServerConfig& config) {
  if (!config.replica_id().empty()) return config.replica_id();
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, ":", getpid());
}

absl::Status Serve() {
  ASSIGN_OR_RETURN(v1::ServerConfig config, LoadConfig());
  if (config.grpc_listen_address().empty()) {
    return absl::InvalidArgumentError("grpc_listen_address: required");
  }
  // Opened first and destroyed last: KEKs and account keys in it borrow it.
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Pkcs11Token> token, OpenToken(config));
  // No key-encryption key, no service: acmevault is never a plaintext store.
  ASSIGN_OR_RETURN(storage::KekSet keks, LoadKeks(config, token.get()));
  ASSIGN_OR_RETURN(std::unique_ptr<storage::PostgresStore> store,
                   OpenStore(config, std::move(keks)));
  service::Metrics metrics;
  std::unique_ptr<service::MetricsServer> metrics_server;
  if (!config.metrics_listen_address().empty()) {
    ASSIGN_OR_RETURN(metrics_server,
                     service::MetricsServer::Start(config.metrics_listen_address(), metrics));
  }

  service::AcmeClients::Options client_options;
  client_options.transport.ca_file = config.acme().ca_file();
  client_options.client.exclusive_authorization_requests =
      config.acme().exclusive_authorization_requests();
  if (config.acme().max_bad_nonce_retries() > 0) {
    client_options.client.max_bad_nonce_retries = config.acme().max_bad_nonce_retries();
  }
  ASSIGN_OR_RETURN(auto clients, service::AcmeClients::Create(client_options));

  // Every component takes the store roles it uses; this one object plays them all.
  storage::Store* const s = store.get();

  // Declared before the issuer so it is destroyed after it: orders still running at shutdown
  // keep their HTTP-01 answers until they stop. The answers this replica's steps published are
  // served from memory; the store has every replica's.
  service::PublishedAnswers published;
  std::unique_ptr<service::Http01Responder> responder;
  if (!config.http01_listen_address().empty()) {
    ASSIGN_OR_RETURN(responder, service::Http01Responder::Start(
                                    Http01OptionsFrom(config, s, &published, &metrics)));
  }

  std::unique_ptr<service::Rfc2136Solver> dns01;
  if (const auto& d = config.dns01(); !d.server().empty()) {
    ASSIGN_OR_RETURN(std::string secret, Secret("", d.tsig_secret_file(), "dns01 TSIG secret"));
    service::Rfc2136Options options;
    options.server = d.server();
    options.zone = d.zone();
    options.tsig_name = d.tsig_key_name();
    if (!d.tsig_algorithm().empty()) options.tsig_algorithm = d.tsig_algorithm();
    options.tsig_secret = secret;
    ASSIGN_OR_RETURN(dns01, service::Rfc2136Solver::Create(options));
  } else {
    Log(LogLevel::kInfo, "no dns01 configuration: wildcard and DNS-01 orders will fail");
  }

  const auto& p11 = config.pkcs11();
  ASSIGN_OR_RETURN(auto keys, service::AccountKeys::Create(
                                  {.accounts = s,
                                   .token = token.get(),
                                   .destroy_grace = p11.retired_key_grace_seconds() > 0
                                                        ? absl::Seconds(p11.retired_key_grace_seconds())
                                                        : absl::Hours(24)}));

  const std::string replica = ReplicaId(config);
  // The work engine runs every order step (and the playbook's revocations) on a fixed pool of
  // threads; callers here are woken by job notices from any replica.
  service::EngineSettings settings = service::EngineSettingsFrom(config);
  service::JobNotices notices;
  settings.engine.jobs = s;
  settings.engine.owner = replica;
  settings.engine.metrics = &metrics;
  settings.engine.on_notice = [&notices](const storage::JobNotice& n) { notices.Notify(n); };
  ASSIGN_OR_RETURN(auto engine, service::Engine::Create(settings.engine));
  const absl::Duration lease = settings.engine.lease_duration;
  ASSIGN_OR_RETURN(auto runner,
                   service::OrderRunner::Create(
                       {.tenants = s,
                        .orders = s,
                        .accounts = s,
                        .keys = keys.get(),
                        .authorizations = s,
                        .challenges = s,
                        .published = &published,
                        .jobs = s,
                        .clients = clients.get(),
                        .dns01 = dns01.get(),
                        .metrics = &metrics,
                        .lease_duration = lease,
                        .poll_first_delay = settings.order_poll_first_delay,
                        .poll_max_delay = settings.order_poll_max_delay,
                        .limits = s,
                        .ca_limits = settings.ca_limits,
                        .processing_timeout = settings.order_processing_timeout,
                        .stalled_look_interval = settings.order_stalled_look_interval}));
  const absl::Duration issue_max_wait =
      config.issue_max_wait_seconds() > 0 ? absl::Seconds(config.issue_max_wait_seconds())
                                          : absl::Seconds(60);
  ASSIGN_OR_RETURN(auto certificate_cache,
                   MakeCertificateCache(config.certificate_cache(), &metrics));
  // Certificate writes by any replica reach this cache (destroyed first: declared after it).
  std::unique_ptr<storage::JobWaker> certificate_changes;
  if (certificate_cache != nullptr) {
    ASSIGN_OR_RETURN(certificate_changes, certificate_cache->Follow(*s));
  }
  ASSIGN_OR_RETURN(auto issuer,
                   service::Issuer::Create({.tenants = s,
                                            .accounts = s,
                                            .orders = s,
                                            .certificates = s,
                                            .audit = s,
                                            .runner = runner.get(),
                                            .keys = keys.get(),
                                            .metrics = &metrics,
                                            .engine = engine.get(),
                                            .notices = &notices,
                                            .jobs = s,
                                            .max_wait = issue_max_wait,
                                            .replica_id = replica,
                                            .lease_duration = lease,
                                            .certificate_cache = certificate_cache.get()}));
  // Authorization deactivations at once, within the engine's per-CA bound (0: none).
  const int per_ca = settings.engine.per_ca_limit;
  const int deactivation_concurrency =
      per_ca > 0 ? std::min(per_ca, service::AccountManager::Options{}.deactivation_concurrency)
                 : service::AccountManager::Options{}.deactivation_concurrency;
  ASSIGN_OR_RETURN(auto accounts, service::AccountManager::Create(
                                      {.tenants = s,
                                       .accounts = s,
                                       .keys = keys.get(),
                                       .authorizations = s,
                                       .certificates = s,
                                       .audit = s,
                                       .compromise_runs = s,
                                       .clients = clients.get(),
                                       .issuer = issuer.get(),
                                       .engine = engine.get(),
                                       .notices = &notices,
                                       .metrics = &metrics,
                                       .limits = s,
                                       .ca_limits = settings.ca_limits,
                                       .deactivation_concurrency = deactivation_concurrency}));
  // A keyChange whose outcome was unknown (or a rollover cut short by a crash) left a pending
  // key: ask the CA about it before serving. Not fatal: each use of the key resolves it first.
  accounts->ResolvePendingKeys({"acmevaultd", "start-up"}).IgnoreError();
  const auto& pc = config.policy();
  ASSIGN_OR_RETURN(auto renewer, service::Renewer::Create(
                                     {.tenants = s,
                                      .orders = s,
                                      .certificates = s,
                                      .issuer = issuer.get(),
                                      .engine = engine.get(),
                                      .metrics = &metrics,
                                      .check_interval = pc.renewal_check_interval_seconds() > 0
                                                            ? absl::Seconds(pc.renewal_check_interval_seconds())
                                                            : absl::Minutes(1)}));
  // The tenants' policies: rotations and renewals (later sweeps) scheduled as jobs.
  // CRLs are fetched over plain HTTP as often as HTTPS (RFC 5280 §4.2.1.13), and a CA's can be
  // megabytes; the system's roots for https ones.
  std::unique_ptr<acme::CurlTransport> crl_transport;
  if (pc.crl_check_interval_seconds() >= 0) {
    ASSIGN_OR_RETURN(crl_transport,
                     acme::CurlTransport::Create(
                         {.max_response_bytes = crypto::kMaxCrlBytes, .allow_http = true}));
  }
  ASSIGN_OR_RETURN(
      auto scheduler,
      service::PolicyScheduler::Create(
          {.tenants = s,
           .accounts = s,
           .authorizations = s,
           .certificates = s,
           .engine = engine.get(),
           .metrics = &metrics,
           .scan_interval = pc.scan_interval_seconds() > 0
                                ? absl::Seconds(pc.scan_interval_seconds())
                                : absl::Minutes(10),
           .scan_jitter = pc.scan_jitter_seconds() > 0 ? absl::Seconds(pc.scan_jitter_seconds())
                                                       : absl::Minutes(2),
           .rotation_spread = pc.rotation_spread_seconds() > 0
                                  ? absl::Seconds(pc.rotation_spread_seconds())
                              : pc.rotation_spread_seconds() < 0 ? absl::ZeroDuration()
                                                                 : absl::Minutes(5),
           .authorization_sweep_interval =
               pc.authorization_sweep_interval_seconds() > 0
                   ? absl::Seconds(pc.authorization_sweep_interval_seconds())
               : pc.authorization_sweep_interval_seconds() < 0 ? absl::ZeroDuration()
                                                               : absl::Hours(1),
           .authorization_max_pending = pc.authorization_max_pending_seconds() > 0
                                            ? absl::Seconds(pc.authorization_max_pending_seconds())
                                            : absl::Hours(1),
           .authorization_max_valid = pc.authorization_max_valid_seconds() > 0
                                          ? absl::Seconds(pc.authorization_max_valid_seconds())
                                          : absl::Hours(1),
           .authorization_sweep_limit =
               pc.authorization_sweep_limit() > 0 ? pc.authorization_sweep_limit() : 100,
           .renewal_spread = pc.renewal_spread_seconds() > 0
                                 ? absl::Seconds(pc.renewal_spread_seconds())
                             : pc.renewal_spread_seconds() < 0 ? absl::ZeroDuration()
                                                               : absl::Minutes(5),
           .clients = clients.get(),
           .crl_transport = crl_transport.get(),
           .crl_check_interval = pc.crl_check_interval_seconds() > 0
                                     ? absl::Seconds(pc.crl_check_interval_seconds())
                                     : absl::Hours(6),
           .account_verify_interval = pc.account_verify_interval_seconds() > 0
                                          ? absl::Seconds(pc.account_verify_interval_seconds())
                                      : pc.account_verify_interval_seconds() < 0
                                          ? absl::ZeroDuration()
                                          : absl::Hours(6),
           .ephemeral_account_grace = pc.ephemeral_account_grace_seconds() > 0
                                          ? absl::Seconds(pc.ephemeral_account_grace_seconds())
                                      : pc.ephemeral_account_grace_seconds() < 0
                                          ? absl::ZeroDuration()
                                          : absl::Hours(1)}));
  ASSIGN_OR_RETURN(auto token_cache, MakeTokenCache(config.token_cache(), &metrics));
  // Revocations by any replica reach this cache (destroyed first: declared after it).
  std::unique_ptr<storage::JobWaker> revocations;
  if (token_cache != nullptr) {
    ASSIGN_OR_RETURN(revocations, token_cache->Follow(*s));
  }
  ASSIGN_OR_RETURN(
      auto admin, service::Admin::Create({.tenants = s,
                                          .identities = s,
                                          .audit = s,
                                          .accounts = s,
                                          .token_cache = token_cache.get(),
                                          .default_directory_url = config.acme().directory_url()}));
  ASSIGN_OR_RETURN(auto auth, service::Authenticator::Create(
                                  {.identities = s, .token_cache = token_cache.get()}));

  if (!config.bootstrap_token_file().empty()) {
    ASSIGN_OR_RETURN(std::string token, ReadFile(config.bootstrap_token_file()));
    RETURN_IF_ERROR(admin->Bootstrap(std::string(absl::StripAsciiWhitespace(token))));
  }

  const service::ServiceDeps deps{.auth = auth.get(),
                                  .issuer = issuer.get(),
                                  .accounts = accounts.get(),
                                  .admin = admin.get(),
                                  .metrics = &metrics};
  ASSIGN_OR_RETURN(auto certificate_service, service::CertificateServiceImpl::Create(deps));
  ASSIGN_OR_RETURN(auto account_service, service::AccountServiceImpl::Create(deps));
  ASSIGN_OR_RETURN(auto admin_service, service::AdminServiceImpl::Create(deps));

  grpc::EnableDefaultHealthCheckService(true);
  // Built before the reflection plugin is registered, so this listener serves health alone.
  std::unique_ptr<grpc::Server> health_server;
  int health_port = 0;
  if (!config.health_listen_address().empty()) {
    grpc::ServerBuilder health_builder;
    health_builder.AddListeningPort(config.health_listen_address(),
                                    grpc::InsecureServerCredentials(), &health_port);
    health_server = health_builder.BuildAndStart();
    if (health_server == nullptr || health_port == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", config.health_listen_address()));
    }
  }
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!config.tls().cert_file().empty()) {
    grpc::SslServerCredentialsOptions tls(
        config.tls().client_ca_file().empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    ASSIGN_OR_RETURN(std::string cert, ReadFile(config.tls().cert_file()));
    ASSIGN_OR_RETURN(std::string key, ReadFile(config.tls().key_file()));
    tls.pem_key_cert_pairs.push_back({key, cert});
    if (!config.tls().client_ca_file().empty()) {
      ASSIGN_OR_RETURN(tls.pem_root_certs, ReadFile(config.tls().client_ca_file()));
    }
    credentials = grpc::SslServerCredentials(tls);
  } else {
    // Bearer tokens must not cross a network in the clear.
    if (!IsLoopback(config.grpc_listen_address())) {
      return absl::FailedPreconditionError(
          "grpc_listen_address is not loopback: configure tls { cert_file key_file }");
    }
    Log(LogLevel::kWarning, "serving gRPC without TLS: for loopback development only");
    credentials = grpc::InsecureServerCredentials();
  }
  int grpc_port = 0;
  builder.AddListeningPort(config.grpc_listen_address(), credentials, &grpc_port);
  service::ApplyServerLimits(GrpcLimitsFrom(config.grpc_limits()), &metrics, builder);
  builder.RegisterService(certificate_service.get());
  builder.RegisterService(account_service.get());
  builder.RegisterService(admin_service.get());
  // The response that hands out a service-generated private key is wiped once serialized.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<service::KeyWipingInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.grpc_listen_address()));
  }

  const int http01_port = responder ? responder->port() : 0;
  const int metrics_port = metrics_server ? metrics_server->port() : 0;
  Log(LogLevel::kInfo, "acmevaultd serving",
      {{"replica", replica},
       {"grpc_port", absl::StrCat(grpc_port)},
       {"http01_port", absl::StrCat(http01_port)},
       {"metrics_port", absl::StrCat(metrics_port)},
       {"health_port", absl::StrCat(health_port)}});
  if (std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    std::ofstream out(ready + ".tmp");
    out << "{\"grpc_port\":" << grpc_port << ",\"http01_port\":" << http01_port
        << ",\"metrics_port\":" << metrics_port << ",\"health_port\":" << health_port
        << ",\"pid\":" << getpid() << "}\n";
    out.close();
    std::rename((ready + ".tmp").c_str(), ready.c_str());
  }

  // Orders (and other jobs) whose replica died are claimed here once their leases expire.
  RETURN_IF_ERROR(engine->Start());
  RETURN_IF_ERROR(scheduler->Start());
  absl::Cleanup stop_scheduler = [&] { scheduler->Stop(); };
  // NOT_SERVING while the database is unreachable or its schema wrong; the scheduler's own
  // status under service::kSchedulerService.
  std::vector<grpc::HealthCheckServiceInterface*> health_services = {
      server->GetHealthCheckService()};
  if (health_server != nullptr) health_services.push_back(health_server->GetHealthCheckService());
  ASSIGN_OR_RETURN(
      auto health,
      service::HealthReporter::Create(
          {.store = s,
           .set_status =
               [health_services](const std::string& service, bool serving) {
                 for (auto* h : health_services) h->SetServingStatus(service, serving);
               },
           .api_services = {v1::CertificateService::service_full_name(),
                            v1::AccountService::service_full_name(),
                            v1::AdminService::service_full_name()},
           .scheduler_running = [&scheduler] {
             service::PolicyScheduler::Health h = scheduler->health();
             return h.running && h.last_status.ok();
           },
           .interval = pc.health_check_interval_seconds() > 0
                           ? absl::Seconds(pc.health_check_interval_seconds())
                           : absl::Seconds(5)}));
  RETURN_IF_ERROR(health->Start());
  absl::Cleanup stop_health = [&] { health->Stop(); };

  // Retired and compromised token keys leave the token once their grace has passed.
  absl::Notification stop_sweeps;
  std::thread sweeper;
  if (token != nullptr) {
    const absl::Duration every = p11.retired_key_sweep_seconds() > 0
                                     ? absl::Seconds(p11.retired_key_sweep_seconds())
                                     : absl::Hours(1);
    sweeper = std::thread([&accounts, &stop_sweeps, every] {
      do {
        auto destroyed = accounts->DestroyRetiredTokenKeys({"acmevaultd", "token key sweep"});
        if (destroyed.ok() && *destroyed > 0) {
          Log(LogLevel::kInfo, "retired token keys destroyed",
              {{"count", absl::StrCat(*destroyed)}});
        }
      } while (!stop_sweeps.WaitForNotificationWithTimeout(every));
    });
  }
  absl::Cleanup stop_sweeper = [&] {
    stop_sweeps.Notify();
    if (sweeper.joinable()) sweeper.join();
  };

  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  while (!shutdown_requested) absl::SleepFor(absl::Milliseconds(100));
  Log(LogLevel::kInfo, "acmevaultd stopping: no new calls; in-flight calls get 10 s");
  if (health_server != nullptr) health_server->GetHealthCheckService()->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  // The issuer's destructor stops the engine: unstarted jobs are released for another replica,
  // running steps finish; anything left is taken over once its lease expires.
  return absl::OkStatus();
}

absl::Status MigrateCommand() {
  const char* url = std::getenv("ACMEVAULT_DB_OWNER_URL");
  if (url == nullptr || *url == '\0') {
    return absl::FailedPreconditionError("$ACMEVAULT_DB_OWNER_URL (the schema owner's URL) is not set");
  }
  ASSIGN_OR_RETURN(storage::MigrationReport report, storage::Migrate({url}));
  std::printf("schema version %d -> %d (%zu applied)\n", report.from_version, report.to_version,
              report.applied.size());
  return absl::OkStatus();
}

absl::Status RewrapCommand() {
  ASSIGN_OR_RETURN(v1::ServerConfig config, LoadConfig());
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Pkcs11Token> token, OpenToken(config));
  ASSIGN_OR_RETURN(storage::KekSet keks, LoadKeks(config, token.get()));
  ASSIGN_OR_RETURN(auto store, OpenStore(config, std::move(keks)));
  int64_t total = 0;
  for (int batch = 0; batch < 1000000; ++batch) {
    ASSIGN_OR_RETURN(auto progress, store->RewrapBatch({"acmevaultd rewrap", "rewrap"}, 500));
    total += progress.rewrapped;
    std::printf("rewrapped %lld records so far\n", static_cast<long long>(total));
    if (progress.done) return absl::OkStatus();
  }
  return absl::DeadlineExceededError("rewrap did not finish");
}

// Makes the AES key-encryption key --label in the configured token (for a "token:LABEL" entry).
absl::Status TokenKekCommand() {
  ASSIGN_OR_RETURN(v1::ServerConfig config, LoadConfig());
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Pkcs11Token> token, OpenToken(config));
  if (token == nullptr) return absl::FailedPreconditionError("the config has no pkcs11 token");
  std::string label = absl::GetFlag(FLAGS_label);
  if (label.empty()) return absl::InvalidArgumentError("--label is required");
  RETURN_IF_ERROR(token->GenerateAesKey(label));
  std::printf("AES key \"%s\" made in %s; add \"token:%s\" to the KEK file\n", label.c_str(),
              token->name().c_str(), label.c_str());
  return absl::OkStatus();
}

absl::Status AuditVerifyCommand() {
  ASSIGN_OR_RETURN(v1::ServerConfig config, LoadConfig());
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Pkcs11Token> token, OpenToken(config));
  ASSIGN_OR_RETURN(storage::KekSet keks, LoadKeks(config, token.get()));
  ASSIGN_OR_RETURN(auto store, OpenStore(config, std::move(keks)));
  std::string name = absl::GetFlag(FLAGS_tenant);
  if (name.empty()) return absl::InvalidArgumentError("--tenant is required");
  ASSIGN_OR_RETURN(storage::Tenant tenant, store->FindTenantByName(name));
  RETURN_IF_ERROR(store->VerifyAuditChain({tenant.id, {"acmevaultd audit-verify", "audit"}}));
  std::printf("audit chain of tenant %s: intact\n", name.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace acmevault

int main(int argc, char** argv) {
  // Before anything reads a key: a core dump of this process would hold the KEKs.
  if (absl::Status s = acmevault::service::DisableCoreDumps(); !s.ok()) {
    std::fprintf(stderr, "acmevaultd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  // Debian's Abseil is built without NDEBUG, so every Mutex::Lock records the lock in a global
  // graph to find lock-order cycles: a few percent of the CPU of each RPC (perf, docs/
  // benchmarks.md). The tests keep it on; the daemon does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  std::string command = args.size() > 1 ? args[1] : "";
  absl::Status status;
  if (command == "serve") {
    status = acmevault::Serve();
  } else if (command == "migrate") {
    status = acmevault::MigrateCommand();
  } else if (command == "rewrap") {
    status = acmevault::RewrapCommand();
  } else if (command == "audit-verify") {
    status = acmevault::AuditVerifyCommand();
  } else if (command == "token-kek") {
    status = acmevault::TokenKekCommand();
  } else {
    std::fprintf(stderr,
                 "usage: acmevaultd serve --config=FILE [--ready_file=FILE]\n"
                 "       acmevaultd migrate            ($ACMEVAULT_DB_OWNER_URL)\n"
                 "       acmevaultd rewrap --config=FILE\n"
                 "       acmevaultd audit-verify --config=FILE --tenant=NAME\n"
                 "       acmevaultd token-kek --config=FILE --label=LABEL\n");
    return 2;
  }
  if (!status.ok()) {
    acmevault::service::Log(acmevault::service::LogLevel::kError, "acmevaultd failed",
                            {{"command", command}, {"status", status.ToString()}});
    return 1;
  }
  return 0;
}
