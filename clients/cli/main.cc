// acmevault: a command-line client for acmevaultd. Prints responses as JSON.
//
//   acmevault [--server=HOST:PORT] [--token_file=FILE] [--tls_ca=FILE] COMMAND [flags]
//
// The bearer token comes from --token_file or $ACMEVAULT_TOKEN, never from a flag. Commands:
//   create-tenant --name=N --allow=PATTERN[,PATTERN...]      (platform admin)
//   create-token --tenant=N --role=host|admin|platform_admin  (platform admin)
//   create-account [--contact=mailto:...]                     (tenant admin)
//   get-account | rollover | deactivate-authorizations
//   deactivate-account --confirm_url=URL
//   respond-to-compromise [--deactivate_account] [--run_id=N]
//   issue --names=a,b [--csr_file=FILE | --key_algorithm=ecdsa-p256] [--key_out=FILE]
//   get-order --id=N | get-certificate --serial=S | list-certificates
//   revoke --serial=S [--reason=0..5]
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <google/protobuf/util/json_util.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "clients/cli/key_file.h"

ABSL_FLAG(std::string, server, "127.0.0.1:8443", "acmevaultd gRPC address");
ABSL_FLAG(std::string, token_file, "", "file holding the bearer token (else $ACMEVAULT_TOKEN)");
ABSL_FLAG(std::string, tls_ca, "", "PEM roots to verify the server with (plaintext when empty)");
ABSL_FLAG(int, timeout_seconds, 60, "per-call deadline");
ABSL_FLAG(std::string, name, "", "tenant name");
ABSL_FLAG(std::string, allow, "", "allowed identifier patterns, comma-separated");
ABSL_FLAG(std::string, tenant, "", "tenant for create-token and list-identities");
ABSL_FLAG(int, ttl_seconds, 0, "create-token: the token expires this long from now (0: never)");
ABSL_FLAG(std::string, role, "host", "host, admin or platform_admin");
ABSL_FLAG(std::string, contact, "", "account contact, e.g. mailto:pki@example.com");
ABSL_FLAG(std::string, confirm_url, "", "account URL, to confirm deactivation");
ABSL_FLAG(bool, deactivate_account, false, "respond-to-compromise: deactivate at the end");
ABSL_FLAG(int64_t, run_id, 0, "respond-to-compromise: the run to resume (its response's run_id)");
ABSL_FLAG(std::string, names, "", "identifiers, comma-separated");
ABSL_FLAG(std::string, csr_file, "", "PEM or DER CSR (else the service generates the key)");
ABSL_FLAG(std::string, key_algorithm, "ecdsa-p256", "ecdsa-p256, ecdsa-p384, rsa-2048, ...");
ABSL_FLAG(std::string, key_out, "", "where to write a service-generated private key (mode 600)");
ABSL_FLAG(std::string, id, "", "order id; for unbind-identity the binding id");
ABSL_FLAG(std::string, serial, "", "certificate serial (hex)");
ABSL_FLAG(int, reason, 0, "RFC 5280 revocation reason");

namespace {

namespace v1 = acmevault::v1;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Token() {
  std::string file = absl::GetFlag(FLAGS_token_file);
  if (!file.empty()) return std::string(absl::StripAsciiWhitespace(ReadFile(file)));
  const char* env = std::getenv("ACMEVAULT_TOKEN");
  return env ? env : "";
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  std::string token = Token();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));
  return ctx;
}

int Print(const grpc::Status& status, const google::protobuf::Message& message) {
  if (!status.ok()) {
    std::fprintf(stderr, "error: %d %s\n", static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    return 1;
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::printf("%s", json.c_str());
  return 0;
}

v1::KeyAlgorithm Algorithm(const std::string& name) {
  static const std::map<std::string, v1::KeyAlgorithm> names = {
      {"ecdsa-p256", v1::KEY_ALGORITHM_ECDSA_P256}, {"ecdsa-p384", v1::KEY_ALGORITHM_ECDSA_P384},
      {"rsa-2048", v1::KEY_ALGORITHM_RSA_2048},     {"rsa-3072", v1::KEY_ALGORITHM_RSA_3072},
      {"rsa-4096", v1::KEY_ALGORITHM_RSA_4096}};
  auto it = names.find(name);
  return it == names.end() ? v1::KEY_ALGORITHM_UNSPECIFIED : it->second;
}

v1::Role Role(const std::string& name) {
  if (name == "admin") return v1::ROLE_ADMIN;
  if (name == "platform_admin") return v1::ROLE_PLATFORM_ADMIN;
  if (name == "host") return v1::ROLE_HOST;
  return v1::ROLE_UNSPECIFIED;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: acmevault [--server=H:P] [--token_file=F] COMMAND [flags]\n");
    return 2;
  }
  const std::string command = args[1];
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!absl::GetFlag(FLAGS_tls_ca).empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadFile(absl::GetFlag(FLAGS_tls_ca));
    creds = grpc::SslCredentials(tls);
  }
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server), creds);
  auto certs = v1::CertificateService::NewStub(channel);
  auto accounts = v1::AccountService::NewStub(channel);
  auto admin = v1::AdminService::NewStub(channel);
  auto list = [](const std::string& csv) -> std::vector<std::string> {
    return absl::StrSplit(csv, ',', absl::SkipEmpty());
  };

  std::map<std::string, std::function<int()>> commands = {
      {"create-tenant",
       [&] {
         v1::CreateTenantRequest r;
         r.set_name(absl::GetFlag(FLAGS_name));
         for (const auto& p : list(absl::GetFlag(FLAGS_allow))) r.add_allowed_identifiers(p);
         v1::Tenant out;
         return Print(admin->CreateTenant(Context().get(), r, &out), out);
       }},
      {"create-token",
       [&] {
         v1::CreateTokenRequest r;
         r.set_tenant(absl::GetFlag(FLAGS_tenant));
         r.set_role(Role(absl::GetFlag(FLAGS_role)));
         if (absl::GetFlag(FLAGS_ttl_seconds) != 0) {
           r.mutable_ttl()->set_seconds(absl::GetFlag(FLAGS_ttl_seconds));
         }
         v1::CreateTokenResponse out;
         return Print(admin->CreateToken(Context().get(), r, &out), out);
       }},
      {"list-identities",
       [&] {
         v1::ListIdentitiesRequest r;
         r.set_tenant(absl::GetFlag(FLAGS_tenant));
         v1::ListIdentitiesResponse out;
         return Print(admin->ListIdentities(Context().get(), r, &out), out);
       }},
      {"unbind-identity",
       [&] {
         v1::UnbindIdentityRequest r;
         r.set_binding_id(absl::GetFlag(FLAGS_id));
         v1::UnbindIdentityResponse out;
         return Print(admin->UnbindIdentity(Context().get(), r, &out), out);
       }},
      {"create-account",
       [&] {
         v1::CreateAccountRequest r;
         r.set_terms_of_service_agreed(true);
         if (!absl::GetFlag(FLAGS_contact).empty()) r.add_contact(absl::GetFlag(FLAGS_contact));
         v1::Account out;
         return Print(accounts->CreateAccount(Context().get(), r, &out), out);
       }},
      {"get-account",
       [&] {
         v1::Account out;
         return Print(accounts->GetAccount(Context().get(), {}, &out), out);
       }},
      {"rollover",
       [&] {
         v1::RolloverAccountKeyRequest r;
         r.set_reason("cli");
         v1::RolloverAccountKeyResponse out;
         return Print(accounts->RolloverAccountKey(Context().get(), r, &out), out);
       }},
      {"deactivate-authorizations",
       [&] {
         v1::DeactivateAuthorizationsResponse out;
         return Print(accounts->DeactivateAuthorizations(Context().get(), {}, &out), out);
       }},
      {"deactivate-account",
       [&] {
         v1::DeactivateAccountRequest r;
         r.set_confirm_account_url(absl::GetFlag(FLAGS_confirm_url));
         v1::Account out;
         return Print(accounts->DeactivateAccount(Context().get(), r, &out), out);
       }},
      {"respond-to-compromise",
       [&] {
         v1::RespondToCompromiseRequest r;
         r.set_deactivate_account(absl::GetFlag(FLAGS_deactivate_account));
         r.set_run_id(absl::GetFlag(FLAGS_run_id));
         v1::RespondToCompromiseResponse out;
         return Print(accounts->RespondToCompromise(Context().get(), r, &out), out);
       }},
      {"issue",
       [&] {
         v1::IssueCertificateRequest r;
         struct stat existing;
         if (!absl::GetFlag(FLAGS_key_out).empty() &&
             lstat(absl::GetFlag(FLAGS_key_out).c_str(), &existing) == 0) {
           // Checked before the call too, so a key is not generated only to be dropped.
           std::fprintf(stderr, "%s exists; a key file is never overwritten\n",
                        absl::GetFlag(FLAGS_key_out).c_str());
           return 2;
         }
         for (const auto& n : list(absl::GetFlag(FLAGS_names))) r.add_identifiers(n);
         if (!absl::GetFlag(FLAGS_csr_file).empty()) {
           r.set_csr(ReadFile(absl::GetFlag(FLAGS_csr_file)));
         } else {
           r.set_key_algorithm(Algorithm(absl::GetFlag(FLAGS_key_algorithm)));
         }
         v1::IssueCertificateResponse out;
         grpc::Status s = certs->IssueCertificate(Context().get(), r, &out);
         if (s.ok() && !out.private_key_pem().empty()) {
           std::string path = absl::GetFlag(FLAGS_key_out);
           if (path.empty()) {
             std::fprintf(stderr, "note: a key was generated; pass --key_out to keep it\n");
           } else {
             absl::Status written = acmevault::cli::WriteKeyFile(path, out.private_key_pem());
             if (!written.ok()) {
               std::fprintf(stderr, "%s\n", std::string(written.message()).c_str());
               acmevault::cli::WipeKey(out.mutable_private_key_pem());
               Print(s, out);
               return 1;
             }
           }
           acmevault::cli::WipeKey(out.mutable_private_key_pem());  // Never printed.
         }
         return Print(s, out);
       }},
      {"get-order",
       [&] {
         v1::GetOrderRequest r;
         r.set_id(absl::GetFlag(FLAGS_id));
         v1::Order out;
         return Print(certs->GetOrder(Context().get(), r, &out), out);
       }},
      {"get-certificate",
       [&] {
         v1::GetCertificateRequest r;
         if (!absl::GetFlag(FLAGS_serial).empty()) {
           r.set_serial(absl::GetFlag(FLAGS_serial));
         } else {
           for (const auto& n : list(absl::GetFlag(FLAGS_names))) {
             r.mutable_identifiers()->add_values(n);
           }
         }
         v1::Certificate out;
         return Print(certs->GetCertificate(Context().get(), r, &out), out);
       }},
      {"list-certificates",
       [&] {
         v1::ListCertificatesResponse out;
         return Print(certs->ListCertificates(Context().get(), {}, &out), out);
       }},
      {"revoke",
       [&] {
         v1::RevokeCertificateRequest r;
         r.set_serial(absl::GetFlag(FLAGS_serial));
         r.set_reason(static_cast<v1::RevocationReason>(absl::GetFlag(FLAGS_reason)));
         v1::RevokeCertificateResponse out;
         return Print(certs->RevokeCertificate(Context().get(), r, &out), out);
       }},
  };
  auto it = commands.find(command);
  if (it == commands.end()) {
    std::fprintf(stderr, "unknown command %s\n", command.c_str());
    return 2;
  }
  return it->second();
}
