#include "clients/lib/client.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/lib/enum_names.h"

namespace acmevault::clients {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const ClientOptions& o) {
  if (o.tls_ca.empty()) {
    if (!o.tls_cert.empty() || !o.tls_key.empty()) {
      return absl::InvalidArgumentError("tls-cert and tls-key need tls-ca (the server's roots)");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("tls-cert and tls-key go together");
  }
  for (const std::string* file : {&o.tls_ca, &o.tls_cert, &o.tls_key}) {
    if (!file->empty() && access(file->c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot read TLS file ", *file));
    }
  }
  unsigned interval = std::max<unsigned>(1, absl::ToInt64Seconds(o.tls_reload_interval));
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (o.tls_cert.empty()) {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(o.tls_ca, interval);
  } else {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        o.tls_key, o.tls_cert, o.tls_ca, interval);
  }
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(provider);
  tls.watch_root_certs();
  if (!o.tls_cert.empty()) tls.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(tls);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = Credentials(options);
  if (!creds.ok()) return creds.status();
  TokenSource token = options.token_file.empty() ? TokenSource::FromValue(options.token)
                                                 : TokenSource::FromFile(options.token_file);
  auto client = std::unique_ptr<Client>(new Client(std::move(options), std::move(token)));
  grpc::ChannelArguments args;
  if (!client->options_.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(client->options_.tls_server_name);
  }
  client->channel_ = grpc::CreateCustomChannel(client->options_.server, *creds, args);
  client->certificates_ = v1::CertificateService::NewStub(client->channel_);
  client->accounts_ = v1::AccountService::NewStub(client->channel_);
  client->admin_ = v1::AdminService::NewStub(client->channel_);
  client->health_ = grpc::health::v1::Health::NewStub(client->channel_);
  return client;
}

Client::Client(ClientOptions options, TokenSource token)
    : options_(std::move(options)),
      token_(std::move(token)),
      random_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

absl::Status Client::Attempt(const std::function<grpc::Status(grpc::ClientContext*)>& attempt,
                             const CallOptions& call) {
  absl::Duration timeout = call.timeout > absl::ZeroDuration() ? call.timeout : options_.timeout;
  int attempts = call.retry ? std::max(1, options_.max_attempts) : 1;
  Backoff backoff(options_.backoff, NewSeed());
  absl::Status status;
  for (int i = 0; i < attempts; ++i) {
    if (i > 0) options_.clock->SleepFor(backoff.Next());
    // Read per attempt: a token rotated on disk while we back off is used by the next one.
    absl::StatusOr<std::string> token = token_.Token();
    if (!token.ok()) return token.status();
    grpc::ClientContext context;
    if (!token->empty()) context.AddMetadata("authorization", "Bearer " + *token);
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    status = FromGrpcStatus(attempt(&context));
    if (!absl::IsUnavailable(status)) return status;
  }
  return status;
}

uint64_t Client::NewSeed() {
  absl::MutexLock lock(&mu_);
  return random_() | 1;  // Never 0, which would mean "random".
}

std::string Client::NewIdempotencyKey() {
  absl::MutexLock lock(&mu_);
  return absl::StrFormat("%016x%016x", random_(), random_());
}

absl::StatusOr<v1::IssueCertificateResponse> Client::Issue(v1::IssueCertificateRequest request,
                                                           const IssueOptions& options) {
  if (request.idempotency_key().empty()) request.set_idempotency_key(NewIdempotencyKey());
  const absl::Time give_up = options_.clock->Now() + options.max_wait;
  Backoff pause(options_.backoff, NewSeed());
  while (true) {
    const absl::Time asked = options_.clock->Now();
    absl::Duration wait = std::clamp(give_up - options_.clock->Now(), absl::Seconds(1),
                                     std::max(options.poll, absl::Seconds(1)));
    request.set_wait_seconds(static_cast<int32_t>(absl::ToInt64Seconds(wait)));
    // The service answers shortly before the deadline at the latest; leave it room to.
    absl::StatusOr<v1::IssueCertificateResponse> response =
        Call(*certificates_, &v1::CertificateService::Stub::IssueCertificate, request,
             {.retry = true, .timeout = wait + absl::Seconds(15)});
    if (!response.ok()) return response.status();
    if (response->has_certificate()) return response;
    const v1::Order& order = response->order();
    if (order.state() == v1::ORDER_STATE_INVALID) {
      return absl::AbortedError(absl::StrCat(
          "order ", order.id(), " failed: ", order.error(),
          order.problem_type().empty() ? "" : absl::StrCat(" (", order.problem_type(), ")")));
    }
    if (options.progress) options.progress(order);
    // A service that answered well before the wait it was given (it was restarting, or it
    // does not wait) is not asked again at once.
    if (options_.clock->Now() - asked < wait / 2) options_.clock->SleepFor(pause.Next());
    if (options_.clock->Now() >= give_up) {
      return absl::DeadlineExceededError(absl::StrCat(
          "order ", order.id(), " is still ", EnumName(*v1::OrderState_descriptor(), order.state()),
          " after ", absl::FormatDuration(options.max_wait),
          "; it goes on in the service: ask again with ", "the same idempotency key ",
          request.idempotency_key(), " or look with get-order --id=", order.id()));
    }
  }
}

}  // namespace acmevault::clients
