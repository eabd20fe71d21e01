#include "tests/testing/api_client.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace acmevault::testing {

std::unique_ptr<grpc::ClientContext> ApiContext(const std::string& token,
                                                absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  return ctx;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ApiClient::ApiClient(const std::string& address, const std::string& root_token_file) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  admin_ = v1::AdminService::NewStub(channel_);
  accounts_ = v1::AccountService::NewStub(channel_);
  certs_ = v1::CertificateService::NewStub(channel_);
  root_token_ = std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(root_token_file)));
}

ApiTenant ApiClient::NewTenant(absl::string_view prefix, absl::string_view domain,
                               const v1::TenantPolicy* policy) {
  ApiTenant t;
  t.name = absl::StrCat(prefix, getpid(), "-", absl::ToUnixMillis(absl::Now()) % 100000000);
  v1::CreateTenantRequest tr;
  tr.set_name(t.name);
  tr.add_allowed_identifiers(absl::StrCat("*.", t.name, ".", domain));
  if (policy != nullptr) *tr.mutable_policy() = *policy;
  v1::Tenant tenant;
  t.status = admin_->CreateTenant(ApiContext(root_token_).get(), tr, &tenant);
  std::string admin;
  for (auto [role, out] :
       {std::pair{v1::ROLE_ADMIN, &admin}, std::pair{v1::ROLE_HOST, &t.host_token}}) {
    if (!t.status.ok()) break;
    v1::CreateTokenRequest req;
    req.set_tenant(t.name);
    req.set_role(role);
    v1::CreateTokenResponse resp;
    t.status = admin_->CreateToken(ApiContext(root_token_).get(), req, &resp);
    *out = resp.token();
  }
  if (t.status.ok()) {
    v1::CreateAccountRequest ar;
    ar.set_terms_of_service_agreed(true);
    v1::Account account;
    t.status = accounts_->CreateAccount(ApiContext(admin).get(), ar, &account);
  }
  return t;
}

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(p * (values.size() - 1))];
}

}  // namespace acmevault::testing
