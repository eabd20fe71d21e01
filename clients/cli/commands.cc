#include "clients/cli/commands.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "clients/cli/key_file.h"
#include "clients/lib/enum_names.h"
#include "clients/lib/grpc_status.h"
#include "clients/lib/token_source.h"
#include "common/status_macros.h"

namespace acmevault::cli {
namespace {

namespace v1 = ::acmevault::v1;
using clients::CallOptions;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr char kUsagePayload[] = "acmevault.cli/usage";
constexpr char kOutputPayload[] = "acmevault.cli/output";

constexpr char kExitCodesHelp[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  the service refused or failed the request (the message names the status)\n"
    "  2  usage: unknown command or flag, a bad value, a missing or unreadable input file;\n"
    "     nothing was sent\n"
    "  3  the service could not be reached or did not answer in time (after retries)\n"
    "  4  an output file could not be written (key and token files are never overwritten)\n"
    "  5  issue: the order is still in progress after --wait (it goes on in the service)\n";

// ---- helpers shared by the commands --------------------------------------------------------

absl::StatusOr<std::string> Required(const Invocation& inv, const std::string& flag) {
  std::string v = inv.flags.String(flag);
  if (v.empty()) return UsageError(absl::StrCat("--", flag, " is required"));
  return v;
}

absl::StatusOr<std::string> ReadInput(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  struct stat st;
  if (!in || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return UsageError(absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::stringstream s;
  s << in.rdbuf();
  if (s.str().empty()) return UsageError(absl::StrCat("--", flag, ": ", path, " is empty"));
  return s.str();
}

// The enum value a flag names, `fallback` when it is absent.
template <typename E>
absl::StatusOr<E> EnumFlag(const Invocation& inv, const std::string& flag,
                           const google::protobuf::EnumDescriptor& type, E fallback) {
  if (!inv.flags.Has(flag)) return fallback;
  absl::StatusOr<int> v = clients::ParseEnumName(type, inv.flags.String(flag), "--" + flag);
  if (!v.ok()) return UsageError(v.status().message());
  return static_cast<E>(*v);
}

absl::StatusOr<v1::KeyAlgorithm> KeyTypeFlag(const Invocation& inv) {
  if (!inv.flags.Has("key-type")) return v1::KEY_ALGORITHM_UNSPECIFIED;
  auto k = clients::ParseKeyAlgorithm(inv.flags.String("key-type"), "--key-type");
  if (!k.ok()) return UsageError(k.status().message());
  return *k;
}

void Print(Invocation& inv, const google::protobuf::Message& m,
           const std::vector<std::string>& skip = {}) {
  inv.out << (inv.json ? Json(m) : inv.formatter().Fields(m, skip));
}

// Writes `text` to a new file of mode 0600 at `path`, refusing an existing one.
absl::Status WriteSecretFile(const std::string& path, absl::string_view text) {
  absl::Status s = WriteKeyFile(path, text);
  return s.ok() ? s : OutputError(s.message());
}

// Refuses before any call an output path that exists (nothing would be written there).
absl::Status CheckNewFile(const Invocation& inv, const std::string& flag) {
  struct stat st;
  std::string path = inv.flags.String(flag);
  if (!path.empty() && lstat(path.c_str(), &st) == 0) {
    return OutputError(absl::StrCat("--", flag, ": ", path, " exists; it is never overwritten"));
  }
  return absl::OkStatus();
}

// Writes a certificate chain (not a secret: 0644), replacing the file in one rename.
absl::Status WriteChain(const std::string& path, const std::string& pem) {
  std::string tmp = absl::StrCat(path, ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << pem;
    if (!out.flush()) return OutputError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return OutputError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

// Shows "<label> (12 s)" on a terminal, updated each second, until destroyed.
class Ticker {
 public:
  Ticker(Invocation& inv, std::string label) : inv_(inv), label_(std::move(label)) {
    if (!inv_.progress) return;
    thread_ = std::thread([this] {
      absl::Time start = absl::Now();
      do {
        inv_.err << "\r\033[K" << label_ << " (" << absl::ToInt64Seconds(absl::Now() - start)
                 << " s)" << std::flush;
      } while (!done_.WaitForNotificationWithTimeout(absl::Seconds(1)));
      inv_.err << "\r\033[K" << std::flush;
    });
  }
  ~Ticker() {
    done_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  Invocation& inv_;
  std::string label_;
  absl::Notification done_;
  std::thread thread_;
};

// ---- flags ----------------------------------------------------------------------------------

FlagSpec Flag(std::string name, FlagKind kind, std::string value_name, std::string help,
              std::vector<std::string> aliases = {}) {
  return {std::move(name), kind, std::move(value_name), std::move(help), std::move(aliases)};
}

std::vector<FlagSpec> PolicyFlags() {
  return {
      Flag("directory-url", FlagKind::kString, "URL", "ACME directory (default: the server's CA)"),
      Flag("account-key-type", FlagKind::kString, "TYPE",
           "account key type: " + clients::KeyAlgorithmChoices() + " (default p256)"),
      Flag("max-key-age", FlagKind::kDuration, "DURATION",
           "roll the account key over when older (e.g. 90d; 0: never)"),
      Flag("renewal-window", FlagKind::kDuration, "DURATION",
           "renew certificates this long before expiry (default: a third of their lifetime)"),
      Flag("keep-authorizations", FlagKind::kBool, "",
           "do not deactivate an order's authorizations after issuance"),
      Flag("certificate-key-types", FlagKind::kList, "TYPES",
           "certificate key types hosts' CSRs may use and the service may generate, comma-"
           "separated: " + clients::KeyAlgorithmChoices() + " (default: all; \"all\" resets)"),
  };
}

std::vector<FlagSpec> Concat(std::vector<FlagSpec> a, const std::vector<FlagSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Applies the policy flags that were given onto `policy`.
absl::Status ApplyPolicy(const Invocation& inv, v1::TenantPolicy* policy) {
  if (inv.flags.Has("account-key-type")) {
    auto k = clients::ParseKeyAlgorithm(inv.flags.String("account-key-type"), "--account-key-type");
    if (!k.ok()) return UsageError(k.status().message());
    policy->set_account_key_algorithm(*k);
  }
  if (inv.flags.Has("max-key-age")) {
    policy->mutable_max_account_key_age()->set_seconds(
        absl::ToInt64Seconds(inv.flags.Duration("max-key-age", absl::ZeroDuration())));
  }
  if (inv.flags.Has("renewal-window")) {
    policy->mutable_renewal_window()->set_seconds(
        absl::ToInt64Seconds(inv.flags.Duration("renewal-window", absl::ZeroDuration())));
  }
  if (inv.flags.Has("keep-authorizations")) {
    policy->set_deactivate_authorizations_after_issuance(!inv.flags.Bool("keep-authorizations"));
  }
  if (inv.flags.Has("certificate-key-types")) {
    policy->clear_allowed_certificate_key_algorithms();
    const std::vector<std::string> types = inv.flags.List("certificate-key-types");
    if (!(types.size() == 1 && types[0] == "all")) {
      for (const std::string& type : types) {
        auto k = clients::ParseKeyAlgorithm(type, "--certificate-key-types");
        if (!k.ok()) return UsageError(k.status().message());
        policy->add_allowed_certificate_key_algorithms(*k);
      }
    }
  }
  return absl::OkStatus();
}

bool AnyPolicyFlag(const Invocation& inv) {
  for (const auto& f : PolicyFlags()) {
    if (f.name != "directory-url" && inv.flags.Has(f.name)) return true;
  }
  return false;
}

// ---- the commands ---------------------------------------------------------------------------

std::vector<Command> MakeCommands() {
  std::vector<Command> c;
  const std::string kPlatform = "Tenants, tokens and identities (platform admin)";
  const std::string kAccount = "The tenant's ACME account (tenant admin)";
  const std::string kCerts = "Certificates (host or admin)";

  c.push_back(
      {"create-tenant",
       {},
       "acmevault.v1.AdminService.CreateTenant",
       kPlatform,
       "Create a tenant and the DNS names it may obtain.",
       "Needs a platform-admin token. --allow takes exact names (demo.example) and suffix "
       "patterns (*.demo.example: any name below it, wildcards included). Prints the tenant.",
       Concat({Flag("name", FlagKind::kString, "NAME",
                    "tenant name: lower-case letters, digits, '-' (required)"),
               Flag("allow", FlagKind::kList, "PATTERNS",
                    "allowed DNS names, comma-separated (required)")},
              PolicyFlags()),
       [](Invocation& inv) -> absl::Status {
         v1::CreateTenantRequest r;
         ASSIGN_OR_RETURN(auto name, Required(inv, "name"));
         r.set_name(name);
         for (const auto& p : inv.flags.List("allow")) r.add_allowed_identifiers(p);
         if (r.allowed_identifiers().empty()) return UsageError("--allow is required");
         r.set_directory_url(inv.flags.String("directory-url"));
         if (AnyPolicyFlag(inv)) RETURN_IF_ERROR(ApplyPolicy(inv, r.mutable_policy()));
         ASSIGN_OR_RETURN(
             auto t, inv.client.Call(inv.client.admin(), &v1::AdminService::Stub::CreateTenant, r,
                                     {.retry = false}));
         Print(inv, t);
         return absl::OkStatus();
       }});
  c.push_back(
      {"update-tenant",
       {},
       "acmevault.v1.AdminService.UpdateTenant",
       kPlatform,
       "Change a tenant's allowed names, policy or CA.",
       "Needs a platform-admin token. Reads the tenant, changes what the flags name and writes "
       "it back (--allow replaces the whole list). Prints the tenant.",
       Concat({Flag("name", FlagKind::kString, "NAME", "the tenant (required)"),
               Flag("allow", FlagKind::kList, "PATTERNS", "new allowed DNS names (replaces all)")},
              PolicyFlags()),
       [](Invocation& inv) -> absl::Status {
         ASSIGN_OR_RETURN(auto name, Required(inv, "name"));
         v1::GetTenantRequest get;
         get.set_name(name);
         ASSIGN_OR_RETURN(
             auto t, inv.client.Call(inv.client.admin(), &v1::AdminService::Stub::GetTenant, get));
         v1::UpdateTenantRequest r;
         r.set_name(name);
         *r.mutable_allowed_identifiers() = t.allowed_identifiers();
         *r.mutable_policy() = t.policy();
         r.set_directory_url(t.directory_url());
         if (inv.flags.Has("allow")) {
           r.clear_allowed_identifiers();
           for (const auto& p : inv.flags.List("allow")) r.add_allowed_identifiers(p);
         }
         if (inv.flags.Has("directory-url")) r.set_directory_url(inv.flags.String("directory-url"));
         RETURN_IF_ERROR(ApplyPolicy(inv, r.mutable_policy()));
         ASSIGN_OR_RETURN(auto updated, inv.client.Call(inv.client.admin(),
                                                        &v1::AdminService::Stub::UpdateTenant, r));
         Print(inv, updated);
         return absl::OkStatus();
       }});
  c.push_back({"get-tenant",
               {},
               "acmevault.v1.AdminService.GetTenant",
               kPlatform,
               "Show a tenant.",
               "Needs a platform-admin token.",
               {Flag("name", FlagKind::kString, "NAME", "the tenant (required)")},
               [](Invocation& inv) -> absl::Status {
                 v1::GetTenantRequest r;
                 ASSIGN_OR_RETURN(auto name, Required(inv, "name"));
                 r.set_name(name);
                 ASSIGN_OR_RETURN(auto t, inv.client.Call(inv.client.admin(),
                                                          &v1::AdminService::Stub::GetTenant, r));
                 Print(inv, t);
                 return absl::OkStatus();
               }});
  c.push_back({"list-tenants",
               {},
               "acmevault.v1.AdminService.ListTenants",
               kPlatform,
               "List every tenant.",
               "Needs a platform-admin token. Reads every page.",
               {},
               [](Invocation& inv) -> absl::Status {
                 v1::ListTenantsRequest r;
                 v1::ListTenantsResponse all;
                 do {
                   ASSIGN_OR_RETURN(auto page,
                                    inv.client.Call(inv.client.admin(),
                                                    &v1::AdminService::Stub::ListTenants, r));
                   all.mutable_tenants()->MergeFrom(page.tenants());
                   r.set_page_token(page.next_page_token());
                 } while (!r.page_token().empty());
                 Print(inv, all, {"next_page_token"});
                 return absl::OkStatus();
               }});
  c.push_back(
      {"create-token",
       {},
       "acmevault.v1.AdminService.CreateToken",
       kPlatform,
       "Create a bearer token for a tenant's host or admin (or a platform admin).",
       "Needs a platform-admin token. The token is shown once: with --token-out it is written "
       "to a new file of mode 0600 (use it as --token-file); otherwise stdout carries the token "
       "alone, e.g. acmevault create-token ... > admin.token. Its id (for revoke-token) goes "
       "to stderr.",
       {Flag("tenant", FlagKind::kString, "NAME", "the tenant (empty only for platform-admin)"),
        Flag("role", FlagKind::kString, "ROLE", "host, admin or platform-admin (required)"),
        Flag("description", FlagKind::kString, "TEXT", "recorded with the token"),
        Flag("ttl", FlagKind::kDuration, "DURATION", "expire after this long (default: never)",
             {"ttl-seconds"}),
        Flag("token-out", FlagKind::kString, "FILE", "write the token to this new file (0600)")},
       [](Invocation& inv) -> absl::Status {
         v1::CreateTokenRequest r;
         r.set_tenant(inv.flags.String("tenant"));
         if (!inv.flags.Has("role")) return UsageError("--role is required");
         ASSIGN_OR_RETURN(auto role,
                          EnumFlag(inv, "role", *v1::Role_descriptor(), v1::ROLE_UNSPECIFIED));
         r.set_role(role);
         r.set_description(inv.flags.String("description"));
         absl::Duration ttl = inv.flags.Duration("ttl", absl::ZeroDuration());
         if (ttl > absl::ZeroDuration()) r.mutable_ttl()->set_seconds(absl::ToInt64Seconds(ttl));
         RETURN_IF_ERROR(CheckNewFile(inv, "token-out"));
         // Not retried: an attempt that reached the service made a token nobody would see.
         ASSIGN_OR_RETURN(
             auto t, inv.client.Call(inv.client.admin(), &v1::AdminService::Stub::CreateToken, r,
                                     {.retry = false}));
         std::string path = inv.flags.String("token-out");
         if (!path.empty()) {
           absl::Status written = WriteSecretFile(path, t.token() + "\n");
           WipeKey(t.mutable_token());
           RETURN_IF_ERROR(written);
         }
         if (inv.json) {
           inv.out << Json(t);
         } else {
           if (path.empty()) inv.out << t.token() << "\n";
           inv.err << "token id " << t.token_id()
                   << (path.empty() ? "" : absl::StrCat(", written to ", path))
                   << (t.has_expires_at()
                           ? absl::StrCat(", expires ",
                                          inv.formatter().Value(
                                              t, *t.GetDescriptor()->FindFieldByName("expires_at")))
                           : ", does not expire")
                   << "\n";
         }
         WipeKey(t.mutable_token());
         return absl::OkStatus();
       }});
  c.push_back({"revoke-token",
               {},
               "acmevault.v1.AdminService.RevokeToken",
               kPlatform,
               "Revoke a bearer token by its id.",
               "Needs a platform-admin token. Other replicas stop accepting it within their "
               "token cache's time (5 s by default).",
               {Flag("id", FlagKind::kString, "ID", "the token's id, e.g. demo:3 (required)")},
               [](Invocation& inv) -> absl::Status {
                 v1::RevokeTokenRequest r;
                 ASSIGN_OR_RETURN(auto id, Required(inv, "id"));
                 r.set_token_id(id);
                 ASSIGN_OR_RETURN(
                     auto out,
                     inv.client.Call(inv.client.admin(), &v1::AdminService::Stub::RevokeToken, r));
                 if (inv.json)
                   inv.out << Json(out);
                 else
                   inv.out << "token " << id << " revoked\n";
                 return absl::OkStatus();
               }});
  c.push_back({"bind-identity",
               {},
               "acmevault.v1.AdminService.BindIdentity",
               kPlatform,
               "Map a SPIFFE ID (mTLS client certificate) to a tenant and role.",
               "Needs a platform-admin token. Prints the binding id (for unbind-identity).",
               {Flag("spiffe-id", FlagKind::kString, "URI",
                     "e.g. spiffe://example.org/ns/prod/sa/web (required)"),
                Flag("tenant", FlagKind::kString, "NAME", "the tenant (required)"),
                Flag("role", FlagKind::kString, "ROLE", "host or admin (required)")},
               [](Invocation& inv) -> absl::Status {
                 v1::BindIdentityRequest r;
                 ASSIGN_OR_RETURN(auto id, Required(inv, "spiffe-id"));
                 ASSIGN_OR_RETURN(auto tenant, Required(inv, "tenant"));
                 if (!inv.flags.Has("role")) return UsageError("--role is required");
                 ASSIGN_OR_RETURN(auto role, EnumFlag(inv, "role", *v1::Role_descriptor(),
                                                      v1::ROLE_UNSPECIFIED));
                 r.set_spiffe_id(id);
                 r.set_tenant(tenant);
                 r.set_role(role);
                 ASSIGN_OR_RETURN(auto out, inv.client.Call(inv.client.admin(),
                                                            &v1::AdminService::Stub::BindIdentity,
                                                            r, {.retry = false}));
                 Print(inv, out);
                 return absl::OkStatus();
               }});
  c.push_back({"list-identities",
               {},
               "acmevault.v1.AdminService.ListIdentities",
               kPlatform,
               "List a tenant's SPIFFE bindings and tokens (never a token's secret).",
               "A platform admin names the tenant; a tenant admin may leave it out for its own.",
               {Flag("tenant", FlagKind::kString, "NAME", "the tenant")},
               [](Invocation& inv) -> absl::Status {
                 v1::ListIdentitiesRequest r;
                 r.set_tenant(inv.flags.String("tenant"));
                 ASSIGN_OR_RETURN(auto out,
                                  inv.client.Call(inv.client.admin(),
                                                  &v1::AdminService::Stub::ListIdentities, r));
                 Print(inv, out);
                 return absl::OkStatus();
               }});
  c.push_back({"unbind-identity",
               {},
               "acmevault.v1.AdminService.UnbindIdentity",
               kPlatform,
               "Remove a SPIFFE binding by its id.",
               "A platform admin, or an admin of the binding's tenant. Takes effect on every "
               "replica at once.",
               {Flag("id", FlagKind::kString, "ID", "the binding id, e.g. demo:12 (required)")},
               [](Invocation& inv) -> absl::Status {
                 v1::UnbindIdentityRequest r;
                 ASSIGN_OR_RETURN(auto id, Required(inv, "id"));
                 r.set_binding_id(id);
                 ASSIGN_OR_RETURN(auto out,
                                  inv.client.Call(inv.client.admin(),
                                                  &v1::AdminService::Stub::UnbindIdentity, r));
                 if (inv.json)
                   inv.out << Json(out);
                 else
                   inv.out << "binding " << id << " removed\n";
                 return absl::OkStatus();
               }});

  c.push_back(
      {"create-account",
       {},
       "acmevault.v1.AccountService.CreateAccount",
       kAccount,
       "Create the tenant's account at its CA (agreeing to the CA's terms of service).",
       "Needs the tenant's admin token. The External Account Binding MAC key, when the CA wants "
       "one, comes from a file, never from a flag.",
       {Flag("contact", FlagKind::kList, "URIS", "e.g. mailto:pki@demo.example"),
        Flag("key-type", FlagKind::kString, "TYPE",
             "account key type (default: the tenant's policy): " + clients::KeyAlgorithmChoices(),
             {"key-algorithm"}),
        Flag("eab-key-id", FlagKind::kString, "ID", "External Account Binding key id"),
        Flag("eab-hmac-key-file", FlagKind::kString, "FILE",
             "file holding the EAB MAC key (base64url)"),
        Flag("keep-eab-key", FlagKind::kBool, "",
             "keep the EAB key for the accounts the service opens by itself")},
       [](Invocation& inv) -> absl::Status {
         v1::CreateAccountRequest r;
         r.set_terms_of_service_agreed(true);
         for (const auto& contact : inv.flags.List("contact")) r.add_contact(contact);
         ASSIGN_OR_RETURN(auto key_type, KeyTypeFlag(inv));
         r.set_key_algorithm(key_type);
         r.set_eab_key_id(inv.flags.String("eab-key-id"));
         if (inv.flags.Has("eab-hmac-key-file")) {
           ASSIGN_OR_RETURN(auto mac,
                            ReadInput(inv.flags.String("eab-hmac-key-file"), "eab-hmac-key-file"));
           r.set_eab_hmac_key(std::string(absl::StripAsciiWhitespace(mac)));
         }
         if (r.eab_key_id().empty() != r.eab_hmac_key().empty()) {
           return UsageError("--eab-key-id and --eab-hmac-key-file go together");
         }
         r.set_keep_eab_key(inv.flags.Bool("keep-eab-key"));
         ASSIGN_OR_RETURN(auto out, inv.client.Call(inv.client.accounts(),
                                                    &v1::AccountService::Stub::CreateAccount, r,
                                                    {.retry = false}));
         Print(inv, out);
         return absl::OkStatus();
       }});
  c.push_back(
      {"set-eab-key",
       {},
       "acmevault.v1.AccountService.SetEabKey",
       kAccount,
       "Keep (or forget) the tenant's External Account Binding key.",
       "Needs the tenant's admin token. The service uses the kept key for the accounts it opens "
       "by itself at a CA that requires EAB (ephemeral accounts, a rollover at a CA without "
       "keyChange, a hijacked account's replacement). The MAC key comes from a file, never "
       "from a flag; --forget drops the kept key.",
       {Flag("eab-key-id", FlagKind::kString, "ID", "External Account Binding key id"),
        Flag("eab-hmac-key-file", FlagKind::kString, "FILE",
             "file holding the EAB MAC key (base64url)"),
        Flag("forget", FlagKind::kBool, "", "forget the kept key")},
       [](Invocation& inv) -> absl::Status {
         v1::SetEabKeyRequest r;
         if (!inv.flags.Bool("forget")) {
           ASSIGN_OR_RETURN(auto id, Required(inv, "eab-key-id"));
           ASSIGN_OR_RETURN(auto file, Required(inv, "eab-hmac-key-file"));
           ASSIGN_OR_RETURN(auto mac, ReadInput(file, "eab-hmac-key-file"));
           r.set_eab_key_id(id);
           r.set_eab_hmac_key(std::string(absl::StripAsciiWhitespace(mac)));
         } else if (inv.flags.Has("eab-key-id") || inv.flags.Has("eab-hmac-key-file")) {
           return UsageError("--forget takes no key");
         }
         ASSIGN_OR_RETURN(auto out, inv.client.Call(inv.client.accounts(),
                                                    &v1::AccountService::Stub::SetEabKey, r));
         Print(inv, out);
         return absl::OkStatus();
       }});
  c.push_back({"get-account",
               {},
               "acmevault.v1.AccountService.GetAccount",
               kAccount,
               "Show the tenant's account and its active key (thumbprint only).",
               "Needs the tenant's admin token.",
               {},
               [](Invocation& inv) -> absl::Status {
                 ASSIGN_OR_RETURN(auto out, inv.client.Call(inv.client.accounts(),
                                                            &v1::AccountService::Stub::GetAccount,
                                                            v1::GetAccountRequest()));
                 Print(inv, out);
                 return absl::OkStatus();
               }});
  c.push_back(
      {"rollover",
       {"rollover-account-key"},
       "acmevault.v1.AccountService.RolloverAccountKey",
       kAccount,
       "Roll the account key over (RFC 8555 key change).",
       "Needs the tenant's admin token. The old key stops working at the CA; a CA without "
       "keyChange gets a new account instead (the old one deactivated; the answer's "
       "replacement says what was lost). Not retried: on "
       "UNAVAILABLE the outcome is settled by the service before the key is next used; run "
       "get-account to see which key is active.",
       {Flag("key-type", FlagKind::kString, "TYPE",
             "new key type (default: the tenant's policy): " + clients::KeyAlgorithmChoices(),
             {"key-algorithm"}),
        Flag("reason", FlagKind::kString, "TEXT", "recorded in the audit log (default \"cli\")")},
       [](Invocation& inv) -> absl::Status {
         v1::RolloverAccountKeyRequest r;
         ASSIGN_OR_RETURN(auto key_type, KeyTypeFlag(inv));
         r.set_key_algorithm(key_type);
         r.set_reason(inv.flags.String("reason", "cli"));
         ASSIGN_OR_RETURN(auto out, inv.client.Call(inv.client.accounts(),
                                                    &v1::AccountService::Stub::RolloverAccountKey,
                                                    r, {.retry = false}));
         Print(inv, out);
         return absl::OkStatus();
       }});
  c.push_back({"deactivate-account",
               {},
               "acmevault.v1.AccountService.DeactivateAccount",
               kAccount,
               "Deactivate the tenant's account at the CA (irreversible).",
               "Needs the tenant's admin token and the account URL (get-account shows it) as a "
               "confirmation. Afterwards the account can neither issue nor revoke.",
               {Flag("confirm-url", FlagKind::kString, "URL", "the account URL (required)",
                     {"confirm-account-url"})},
               [](Invocation& inv) -> absl::Status {
                 v1::DeactivateAccountRequest r;
                 ASSIGN_OR_RETURN(auto url, Required(inv, "confirm-url"));
                 r.set_confirm_account_url(url);
                 ASSIGN_OR_RETURN(auto out,
                                  inv.client.Call(inv.client.accounts(),
                                                  &v1::AccountService::Stub::DeactivateAccount, r));
                 Print(inv, out);
                 return absl::OkStatus();
               }});
  c.push_back(
      {"deactivate-authorizations",
       {},
       "acmevault.v1.AccountService.DeactivateAuthorizations",
       kAccount,
       "Deactivate the tenant's valid and pending authorizations at the CA.",
       "Needs the tenant's admin token. Prints how many were deactivated, skipped and failed.",
       {Flag("names", FlagKind::kList, "NAMES", "only these DNS names (default: all)")},
       [](Invocation& inv) -> absl::Status {
         v1::DeactivateAuthorizationsRequest r;
         for (const auto& n : inv.flags.List("names")) r.add_identifiers(n);
         ASSIGN_OR_RETURN(auto out,
                          inv.client.Call(inv.client.accounts(),
                                          &v1::AccountService::Stub::DeactivateAuthorizations, r));
         Print(inv, out);
         return absl::OkStatus();
       }});
  c.push_back(
      {"respond-to-compromise",
       {"compromise"},
       "acmevault.v1.AccountService.RespondToCompromise",
       kAccount,
       "Run the playbook for a leaked account key.",
       "Needs the tenant's admin token. Rolls the key over, deactivates authorizations, "
       "reissues then revokes every certificate whose key the service holds, and with "
       "--deactivate-account deactivates the account last. Not retried automatically: run it "
       "again with --run-id (printed, also in errors) to resume where it stopped. The call may "
       "take minutes: its deadline is --timeout or 10 minutes.",
       {Flag("deactivate-account", FlagKind::kBool, "", "deactivate the account as the last step"),
        Flag("key-type", FlagKind::kString, "TYPE",
             "new account key type: " + clients::KeyAlgorithmChoices(), {"new-key-algorithm"}),
        Flag("run-id", FlagKind::kInt, "N", "resume this run")},
       [](Invocation& inv) -> absl::Status {
         v1::RespondToCompromiseRequest r;
         r.set_deactivate_account(inv.flags.Bool("deactivate-account"));
         ASSIGN_OR_RETURN(auto key_type, KeyTypeFlag(inv));
         r.set_new_key_algorithm(key_type);
         r.set_run_id(inv.flags.Int("run-id"));
         absl::StatusOr<v1::RespondToCompromiseResponse> out;
         {
           Ticker ticker(inv,
                         "responding to compromise: rollover, authorizations, reissue, "
                         "revoke");
           out = inv.client.Call(
               inv.client.accounts(), &v1::AccountService::Stub::RespondToCompromise, r,
               {.retry = false,
                .timeout = inv.flags.Has("timeout") ? absl::ZeroDuration() : absl::Minutes(10)});
         }
         if (!out.ok()) return out.status();
         Print(inv, *out);
         return absl::OkStatus();
       }});

  c.push_back(
      {"issue",
       {"issue-certificate"},
       "acmevault.v1.CertificateService.IssueCertificate",
       kCerts,
       "Get a certificate for DNS names (the current one, or a new one).",
       "A host or admin token of the tenant. With --csr-file the host keeps its key (preferred); "
       "otherwise the service generates one of --key-type and returns it once, written to "
       "--key-out (a new file, mode 0600). Waits for the certificate, showing the order's "
       "progress on a terminal; every attempt uses one idempotency key, so a retry joins the "
       "order instead of starting another. The chain goes to --cert-out, or to stdout.",
       {Flag("names", FlagKind::kList, "NAMES", "DNS names, comma-separated (required)"),
        Flag("csr-file", FlagKind::kString, "FILE", "the host's CSR, PEM or DER"),
        Flag("key-type", FlagKind::kString, "TYPE",
             "service-generated key type: " + clients::KeyAlgorithmChoices() + " (default p256)",
             {"key-algorithm"}),
        Flag("key-out", FlagKind::kString, "FILE",
             "where to write a service-generated key (new file, 0600)"),
        Flag("cert-out", FlagKind::kString, "FILE", "where to write the chain (leaf first)"),
        Flag("challenge", FlagKind::kString, "TYPE",
             "http-01 or dns-01 (default: http-01, dns-01 for wildcards)"),
        Flag("idempotency-key", FlagKind::kString, "KEY",
             "repeat an earlier issuance (default: a new random key)"),
        Flag("wait", FlagKind::kDuration, "DURATION",
             "give up waiting after this long (default 10m; the order goes on)")},
       [](Invocation& inv) -> absl::Status {
         v1::IssueCertificateRequest r;
         for (const auto& n : inv.flags.List("names")) r.add_identifiers(n);
         if (r.identifiers().empty()) return UsageError("--names is required");
         if (inv.flags.Has("csr-file")) {
           if (inv.flags.Has("key-type") || inv.flags.Has("key-out")) {
             return UsageError("--csr-file keeps the key on the host: no --key-type or --key-out");
           }
           ASSIGN_OR_RETURN(auto csr, ReadInput(inv.flags.String("csr-file"), "csr-file"));
           r.set_csr(csr);
         } else {
           ASSIGN_OR_RETURN(auto key_type, KeyTypeFlag(inv));
           r.set_key_algorithm(
               key_type == v1::KEY_ALGORITHM_UNSPECIFIED ? v1::KEY_ALGORITHM_ECDSA_P256 : key_type);
           if (!inv.flags.Has("key-out")) {
             return UsageError(
                 "the service would generate the key: name a new file for it with --key-out, or "
                 "send your own CSR with --csr-file");
           }
         }
         ASSIGN_OR_RETURN(auto challenge,
                          EnumFlag(inv, "challenge", *v1::ChallengeType_descriptor(),
                                   v1::CHALLENGE_TYPE_UNSPECIFIED));
         r.set_challenge_type(challenge);
         r.set_idempotency_key(inv.flags.String("idempotency-key"));
         // Checked before the call, so a key is not generated only to be dropped.
         RETURN_IF_ERROR(CheckNewFile(inv, "key-out"));
         const absl::Duration wait = inv.flags.Duration("wait", absl::Minutes(10));
         const absl::Time start = inv.clock.Now();
         std::string names = absl::StrJoin(r.identifiers(), ", ");
         auto progress = [&](const v1::Order& o) {
           if (!inv.progress) return;
           inv.err << "\r\033[Kissuing " << names << ": order " << o.id() << " "
                   << clients::EnumName(*v1::OrderState_descriptor(), o.state()) << " ("
                   << absl::ToInt64Seconds(inv.clock.Now() - start) << " s)" << std::flush;
         };
         if (inv.progress) inv.err << "issuing " << names << " ..." << std::flush;
         absl::StatusOr<v1::IssueCertificateResponse> out =
             inv.client.Issue(r, {.max_wait = wait, .progress = progress});
         if (inv.progress) inv.err << "\r\033[K" << std::flush;
         if (!out.ok()) {
           if (absl::IsDeadlineExceeded(out.status()) && inv.clock.Now() - start >= wait) {
             absl::Status pending = out.status();
             pending.SetPayload("acmevault.cli/pending", absl::Cord(""));
             return pending;
           }
           return out.status();
         }
         absl::Status written = absl::OkStatus();
         std::string key_path = inv.flags.String("key-out");
         if (!out->private_key_pem().empty()) {
           written = WriteSecretFile(key_path, out->private_key_pem());
           WipeKey(out->mutable_private_key_pem());  // Never printed.
         }
         std::string cert_path = inv.flags.String("cert-out");
         if (written.ok() && !cert_path.empty()) {
           written = WriteChain(cert_path, out->certificate().chain_pem());
         }
         if (inv.json) {
           inv.out << Json(*out);
         } else {
           inv.out << inv.formatter().Fields(out->certificate(), {"chain_pem"});
           if (out->reused()) inv.out << "(the current certificate: no new order was needed)\n";
           if (!key_path.empty() && written.ok() && !out->reused()) {
             inv.out << "key written to " << key_path << " (mode 0600)\n";
           }
           if (!cert_path.empty()) {
             if (written.ok()) inv.out << "chain written to " << cert_path << "\n";
           } else {
             inv.out << "\n" << out->certificate().chain_pem();
           }
         }
         return written;
       }});
  c.push_back({"get-order",
               {},
               "acmevault.v1.CertificateService.GetOrder",
               kCerts,
               "Show an order's state (and why it failed; while it is retried, its attempts, last "
               "problem and next attempt, or that the service gave up on it).",
               "A host or admin token of the tenant.",
               {Flag("id", FlagKind::kString, "ID", "the order id (required)")},
               [](Invocation& inv) -> absl::Status {
                 v1::GetOrderRequest r;
                 ASSIGN_OR_RETURN(auto id, Required(inv, "id"));
                 r.set_id(id);
                 ASSIGN_OR_RETURN(auto out,
                                  inv.client.Call(inv.client.certificates(),
                                                  &v1::CertificateService::Stub::GetOrder, r));
                 Print(inv, out);
                 return absl::OkStatus();
               }});
  c.push_back(
      {"get-certificate",
       {},
       "acmevault.v1.CertificateService.GetCertificate",
       kCerts,
       "Show a certificate by serial, or the latest valid one for DNS names.",
       "A host or admin token of the tenant. Prints its fields and the chain; --pem prints the "
       "chain alone; --cert-out writes it to a file.",
       {Flag("serial", FlagKind::kString, "HEX", "the certificate's serial"),
        Flag("names", FlagKind::kList, "NAMES", "or exactly these DNS names"),
        Flag("pem", FlagKind::kBool, "", "print only the chain (PEM)"),
        Flag("cert-out", FlagKind::kString, "FILE", "write the chain to this file")},
       [](Invocation& inv) -> absl::Status {
         v1::GetCertificateRequest r;
         if (inv.flags.Has("serial") == inv.flags.Has("names")) {
           return UsageError("give --serial or --names");
         }
         if (inv.flags.Has("serial")) {
           r.set_serial(inv.flags.String("serial"));
         } else {
           for (const auto& n : inv.flags.List("names")) r.mutable_identifiers()->add_values(n);
         }
         ASSIGN_OR_RETURN(auto out,
                          inv.client.Call(inv.client.certificates(),
                                          &v1::CertificateService::Stub::GetCertificate, r));
         if (inv.flags.Has("cert-out")) {
           RETURN_IF_ERROR(WriteChain(inv.flags.String("cert-out"), out.chain_pem()));
         }
         if (inv.json) {
           inv.out << Json(out);
         } else if (inv.flags.Bool("pem")) {
           inv.out << out.chain_pem();
         } else {
           inv.out << inv.formatter().Fields(out, {"chain_pem"});
           if (!inv.flags.Has("cert-out")) inv.out << "\n" << out.chain_pem();
         }
         return absl::OkStatus();
       }});
  c.push_back(
      {"list-certificates",
       {},
       "acmevault.v1.CertificateService.ListCertificates",
       kCerts,
       "List the tenant's certificates, oldest first.",
       "A host or admin token of the tenant. Reads every page.",
       {Flag("state", FlagKind::kString, "STATE", "only valid, expired or revoked ones"),
        Flag("expiring-within", FlagKind::kDuration, "DURATION",
             "only those that expire within this long (e.g. 30d)")},
       [](Invocation& inv) -> absl::Status {
         v1::ListCertificatesRequest r;
         ASSIGN_OR_RETURN(auto state, EnumFlag(inv, "state", *v1::CertificateState_descriptor(),
                                               v1::CERTIFICATE_STATE_UNSPECIFIED));
         r.set_state(state);
         if (inv.flags.Has("expiring-within")) {
           absl::Time before =
               inv.clock.Now() + inv.flags.Duration("expiring-within", absl::ZeroDuration());
           r.mutable_expires_before()->set_seconds(absl::ToUnixSeconds(before));
         }
         v1::ListCertificatesResponse all;
         do {
           ASSIGN_OR_RETURN(auto page,
                            inv.client.Call(inv.client.certificates(),
                                            &v1::CertificateService::Stub::ListCertificates, r));
           all.mutable_certificates()->MergeFrom(page.certificates());
           r.set_page_token(page.next_page_token());
         } while (!r.page_token().empty());
         Print(inv, all, {"next_page_token"});
         return absl::OkStatus();
       }});
  c.push_back(
      {"revoke",
       {"revoke-certificate"},
       "acmevault.v1.CertificateService.RevokeCertificate",
       kCerts,
       "Revoke a certificate at the CA.",
       "Needs the tenant's admin token. Reasons: " +
           absl::StrJoin(clients::EnumNames(*v1::RevocationReason_descriptor()), ", ") +
           " (or their RFC 5280 numbers).",
       {Flag("serial", FlagKind::kString, "HEX", "the certificate's serial (required)"),
        Flag("reason", FlagKind::kString, "REASON", "why (default unspecified)"),
        Flag("use-certificate-key", FlagKind::kBool, "",
             "sign with the certificate's own key (the service must hold it)")},
       [](Invocation& inv) -> absl::Status {
         v1::RevokeCertificateRequest r;
         ASSIGN_OR_RETURN(auto serial, Required(inv, "serial"));
         r.set_serial(serial);
         std::string reason = inv.flags.String("reason", "unspecified");
         int number;
         if (absl::SimpleAtoi(reason, &number)) {
           if (!v1::RevocationReason_IsValid(number)) {
             return UsageError(absl::StrCat("--reason: ", number, " is not a reason ACME takes"));
           }
           r.set_reason(static_cast<v1::RevocationReason>(number));
         } else {
           ASSIGN_OR_RETURN(auto why, EnumFlag(inv, "reason", *v1::RevocationReason_descriptor(),
                                               v1::REVOCATION_REASON_UNSPECIFIED));
           r.set_reason(why);
         }
         r.set_use_certificate_key(inv.flags.Bool("use-certificate-key"));
         ASSIGN_OR_RETURN(auto out,
                          inv.client.Call(inv.client.certificates(),
                                          &v1::CertificateService::Stub::RevokeCertificate, r));
         Print(inv, out, {"chain_pem"});
         return absl::OkStatus();
       }});

  c.push_back(
      {"health",
       {},
       "grpc.health.v1.Health.Check",
       "Service",
       "Ask acmevaultd whether it is serving.",
       "No token needed. Exit code 1 unless it answers SERVING.",
       {Flag("service", FlagKind::kString, "NAME", "one service (default: the server)")},
       [](Invocation& inv) -> absl::Status {
         HealthCheckRequest r;
         r.set_service(inv.flags.String("service"));
         ASSIGN_OR_RETURN(auto out, inv.client.Call(inv.client.health(),
                                                    &grpc::health::v1::Health::Stub::Check, r));
         if (inv.json) {
           inv.out << Json(out);
         } else {
           inv.out << HealthCheckResponse::ServingStatus_Name(out.status()) << "\n";
         }
         if (out.status() != HealthCheckResponse::SERVING) {
           return absl::UnavailableError(absl::StrCat(
               "acmevaultd answers ", HealthCheckResponse::ServingStatus_Name(out.status())));
         }
         return absl::OkStatus();
       }});
  return c;
}

// ---- help and dispatch ----------------------------------------------------------------------

const Command* FindCommand(const std::string& name) {
  for (const auto& c : Commands()) {
    if (c.name == name) return &c;
    for (const auto& alias : c.aliases) {
      if (alias == name) return &c;
    }
  }
  return nullptr;
}

std::string GeneralHelp() {
  std::string out =
      "acmevault: the command-line client of acmevaultd, the ACME account service.\n\n"
      "Usage: acmevault [connection flags] COMMAND [flags]\n"
      "       acmevault help [COMMAND]    (or: acmevault COMMAND --help)\n";
  std::string group;
  size_t width = 0;
  for (const auto& c : Commands()) width = std::max(width, c.name.size());
  for (const auto& c : Commands()) {
    if (c.group != group) {
      group = c.group;
      absl::StrAppend(&out, "\n", group, ":\n");
    }
    absl::StrAppend(&out, "  ", c.name, std::string(width + 3 - c.name.size(), ' '), c.summary,
                    "\n");
  }
  absl::StrAppend(&out, "\nConnection flags (any command; flags > environment > config file):\n",
                  FlagsHelp(ConnectionFlags()),
                  "\nThe config file holds key = value lines: server, token_file, tls_ca, "
                  "tls_cert, tls_key,\ntls_server_name, timeout. Enum values are written in "
                  "lower case (key-compromise, http-01);\n'_' and '-' are the same in flag "
                  "names.\n\n",
                  kExitCodesHelp);
  return out;
}

std::string CommandHelp(const Command& c) {
  std::string usage;
  for (const auto& f : c.flags) {
    if (absl::StrContains(f.help, "(required)")) {
      absl::StrAppend(&usage, " --", f.name, " ", f.value_name);
    }
  }
  std::string out = absl::StrCat("acmevault ", c.name, ": ", c.summary, "\n\n", c.details, "\n");
  if (!c.rpc.empty()) absl::StrAppend(&out, "Calls ", c.rpc, ".\n");
  absl::StrAppend(&out, "\nUsage: acmevault ", c.name, usage, " [flags]\n");
  if (!c.aliases.empty()) absl::StrAppend(&out, "Also: ", absl::StrJoin(c.aliases, ", "), "\n");
  if (!c.flags.empty()) absl::StrAppend(&out, "\nFlags:\n", FlagsHelp(c.flags));
  absl::StrAppend(&out, "\nConnection flags:\n", FlagsHelp(ConnectionFlags()), "\n",
                  kExitCodesHelp);
  return out;
}

// What to do about an error, by its code.
std::string Hint(const absl::Status& s, const clients::ClientOptions& o) {
  switch (s.code()) {
    case absl::StatusCode::kUnauthenticated:
      return "check the token: --token-file, $ACMEVAULT_TOKEN_FILE or $ACMEVAULT_TOKEN "
             "(acmevault create-token makes one)";
    case absl::StatusCode::kPermissionDenied:
      return "this needs another role or tenant: account, key and revocation commands need the "
             "tenant's admin token, tenant and token commands a platform-admin token, and names "
             "must be in the tenant's allowed list";
    case absl::StatusCode::kUnavailable:
      return absl::StrCat("is acmevaultd running at ", o.server,
                          "? Set it with --server, $ACMEVAULT_SERVER or `server =` in the config "
                          "file (the call was retried)");
    case absl::StatusCode::kDeadlineExceeded:
      return "the service did not answer in time: raise --timeout, or look at the service's log";
    case absl::StatusCode::kNotFound:
      return "check the name, serial or id (the list-* commands show them)";
    case absl::StatusCode::kAlreadyExists:
      return "it exists already (the get-* and list-* commands show it)";
    case absl::StatusCode::kFailedPrecondition:
      return absl::StrContains(s.message(), "no valid ACME account")
                 ? "the tenant needs an ACME account first: acmevault create-account"
                 : "it is not in a state that allows this (the message says why)";
    case absl::StatusCode::kResourceExhausted:
      return "a limit was reached: wait (the message may say until when) and try again";
    case absl::StatusCode::kAborted:
      return "another operation got in the way, or the order failed: try again";
    case absl::StatusCode::kInvalidArgument:
      return "the message names the field; see the command's --help";
    default:
      return "";
  }
}

// Splits the connection flags before the command's name from the rest.
size_t CommandIndex(const std::vector<std::string>& args) {
  const std::vector<FlagSpec> specs = ConnectionFlags();
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!absl::StartsWith(a, "-")) return i;
    if (a.find('=') != std::string::npos) continue;
    std::string name(absl::StripPrefix(absl::StripPrefix(a, "-"), "-"));
    std::replace(name.begin(), name.end(), '_', '-');
    for (const auto& spec : specs) {
      bool match = spec.name == name;
      for (const auto& alias : spec.aliases) match |= alias == name;
      if (match && spec.kind != FlagKind::kBool) ++i;  // Its value.
    }
  }
  return args.size();
}

}  // namespace

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>(MakeCommands());
  return *commands;
}

absl::Status UsageError(absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kUsagePayload, absl::Cord(""));
  return s;
}

absl::Status OutputError(absl::string_view message) {
  absl::Status s = absl::FailedPreconditionError(message);
  s.SetPayload(kOutputPayload, absl::Cord(""));
  return s;
}

int RunCli(const std::vector<std::string>& args, const Environment& env) {
  auto usage = [&](absl::string_view message) {
    env.err << "acmevault: " << message << "\n(acmevault help lists commands and flags)\n";
    return kExitUsage;
  };
  size_t at = CommandIndex(args);
  std::vector<std::string> before(args.begin(), args.begin() + at);
  bool help = false;
  for (const auto& a : before) help |= a == "--help" || a == "-h" || a == "-help";
  if (at == args.size()) {
    if (help) {
      env.out << GeneralHelp();
      return kExitOk;
    }
    env.err << GeneralHelp();
    return kExitUsage;
  }
  std::string name = args[at];
  std::vector<std::string> rest(args.begin() + at + 1, args.end());
  if (name == "help") {
    if (rest.empty()) {
      env.out << GeneralHelp();
      return kExitOk;
    }
    const Command* c = FindCommand(rest[0]);
    if (c == nullptr) return usage(absl::StrCat("unknown command \"", rest[0], "\""));
    env.out << CommandHelp(*c);
    return kExitOk;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) return usage(absl::StrCat("unknown command \"", name, "\""));
  for (const auto& a : rest) help |= a == "--help" || a == "-h" || a == "-help";
  if (help) {
    env.out << CommandHelp(*command);
    return kExitOk;
  }
  std::vector<std::string> all = before;
  all.insert(all.end(), rest.begin(), rest.end());
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(Concat(command->flags, ConnectionFlags()), all, /*positional=*/nullptr);
  if (!flags.ok()) return usage(absl::StrCat(name, ": ", flags.status().message()));
  absl::StatusOr<clients::ClientOptions> options = ResolveSettings(*flags, env.getenv);
  if (!options.ok()) return usage(options.status().message());
  if (!options->token_file.empty()) {
    // An input file: one that is missing, unreadable or empty is a usage error before anything
    // is sent, not an answer of the service's.
    absl::StatusOr<std::string> token = clients::TokenSource::FromFile(options->token_file).Token();
    if (!token.ok()) return usage(token.status().message());
  }
  options->clock = env.clock;
  absl::StatusOr<std::unique_ptr<clients::Client>> client = clients::Client::Create(*options);
  if (!client.ok()) return usage(client.status().message());
  bool json = flags->Bool("json");
  Invocation inv{**client,   *flags,  env.out,
                 env.err,    json,    env.terminal && !json && !flags->Bool("no-progress"),
                 *env.clock, env.zone};
  absl::Status status = command->run(inv);
  env.out.flush();
  if (status.ok()) return kExitOk;
  if (status.GetPayload(kUsagePayload)) return usage(absl::StrCat(name, ": ", status.message()));
  env.err << "acmevault " << name << ": " << clients::DescribeStatus(status) << "\n";
  if (status.GetPayload(kOutputPayload)) return kExitOutput;
  if (status.GetPayload("acmevault.cli/pending")) return kExitPending;
  std::string hint = Hint(status, *options);
  if (!hint.empty()) env.err << "  hint: " << hint << "\n";
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) return kExitUnreachable;
  return kExitFailed;
}

}  // namespace acmevault::cli
