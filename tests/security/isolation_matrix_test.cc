// The tenant-isolation matrix: every method of the public API, found through the descriptors of
// the generated code (so a new method is covered without editing this file), called with every
// kind of credential that must not reach a victim tenant's data: none, malformed, expired,
// revoked, another tenant's (both roles, bearer token and mTLS SPIFFE identity), an mTLS
// certificate whose SPIFFE ID is bound to no one, a role the method's `allowed_roles` option
// does not admit, and requests naming the victim's ids and names. Each attempt must end PERMISSION_DENIED, UNAUTHENTICATED or NOT_FOUND; none may make
// an ACME request, and the victim's account, certificates, credentials and bindings must be as
// before. Positive controls show the requests are meaningful: the victim's own credential gets
// past every check with the same read requests.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "acmevault/v1/common.pb.h"
#include "common/testing/stack_env.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace acmevault {
namespace {

using e2e::E2eFixture;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::MethodDescriptor;

// Every method of the public API, from the generated descriptors.
std::vector<const MethodDescriptor*> AllMethods() {
  std::vector<const MethodDescriptor*> out;
  for (const char* service :
       {v1::AdminService::service_full_name(), v1::AccountService::service_full_name(),
        v1::CertificateService::service_full_name()}) {
    const google::protobuf::ServiceDescriptor* s =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    EXPECT_NE(s, nullptr) << service;
    if (s == nullptr) continue;
    for (int i = 0; i < s->method_count(); ++i) out.push_back(s->method(i));
  }
  return out;
}

std::set<v1::Role> AllowedRoles(const MethodDescriptor* m) {
  std::set<v1::Role> roles;
  const auto& options = m->options();
  for (int i = 0; i < options.ExtensionSize(v1::allowed_roles); ++i) {
    roles.insert(options.GetExtension(v1::allowed_roles, i));
  }
  return roles;
}

// What the victim has, for filling requests that name it.
struct Victim {
  std::string tenant, order_id, serial, token_id, binding_id, account_url;
  std::vector<std::string> names;
  std::string csr_der;
};

// A request for `method` that names the victim wherever a field can name a tenant's object,
// and otherwise holds values that pass validation. Fields this does not know fail the test,
// so a new request field is classified once here rather than silently left empty. `targets`
// says whether any field named the victim.
std::unique_ptr<Message> VictimRequest(const MethodDescriptor* method, const Victim& v,
                                       bool* targets) {
  const Message* prototype =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(method->input_type());
  std::unique_ptr<Message> msg(prototype->New());
  *targets = false;
  const std::function<void(Message*, const std::string&)> fill = [&](Message* m,
                                                                       const std::string& path) {
    const Descriptor* d = m->GetDescriptor();
    const google::protobuf::Reflection* r = m->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      const std::string name = path + f->name();
      auto set = [&](const std::string& value) {
        r->SetString(m, f, value);
        *targets = true;
      };
      if (name == "tenant" || (name == "name" && d->name() != "IdentifierSet")) {
        set(v.tenant);
      } else if (name == "id") {
        set(v.order_id);
      } else if (name == "serial") {
        set(v.serial);
      } else if (name == "token_id") {
        set(v.token_id);
      } else if (name == "binding_id") {
        set(v.binding_id);
      } else if (name == "confirm_account_url") {
        // A confirmation of the caller's own account, not a selector: it cannot make a call
        // act on another tenant's account, so it does not count as naming the victim.
        r->SetString(m, f, v.account_url);
      } else if (name == "identifiers" && f->is_repeated()) {
        for (const auto& n : v.names) r->AddString(m, f, n);
        *targets = true;
      } else if (name == "identifiers") {  // GetCertificateRequest's IdentifierSet
        Message* set_msg = r->MutableMessage(m, f);
        const FieldDescriptor* values = set_msg->GetDescriptor()->FindFieldByName("values");
        ASSERT_NE(values, nullptr) << name;
        for (const auto& n : v.names) set_msg->GetReflection()->AddString(set_msg, values, n);
        *targets = true;
      } else if (name == "allowed_identifiers") {
        r->AddString(m, f, absl::StrCat("*.", v.tenant, ".example"));
      } else if (name == "csr") {
        // IssueCertificate's key oneof: the CSR for the victim's names (key_algorithm stays
        // unset, the other branch).
        set(v.csr_der);
      } else if (name == "spiffe_id") {
        r->SetString(m, f, "spiffe://isolation.test/intruder");
      } else if (name == "role") {
        r->SetEnumValue(m, f, v1::ROLE_ADMIN);
      } else if (name == "wait_seconds") {
        r->SetInt32(m, f, 5);
      } else if (name == "terms_of_service_agreed") {
        r->SetBool(m, f, true);
      } else if (name == "reason" && f->type() == FieldDescriptor::TYPE_STRING) {
        r->SetString(m, f, "isolation test");
      } else if (std::set<std::string>{"contact", "eab_key_id", "eab_hmac_key", "key_algorithm",
                                       "new_key_algorithm", "deactivate_account", "run_id",
                                       "policy", "directory_url", "page_size", "page_token",
                                       "description", "ttl", "expires_at", "idempotency_key",
                                       "challenge_type", "state", "expires_before", "reason",
                                       "use_certificate_key", "keep_eab_key"}
                     .count(name)) {
        // Left at the default: names nothing of another tenant.
      } else {
        ADD_FAILURE() << method->full_name() << ": request field \"" << name
                      << "\" is not classified by the isolation matrix (VictimRequest)";
      }
    }
  };
  fill(msg.get(), "");
  return msg;
}

// Calls `method` with the serialized `request` over `channel`, sending `authorization` as the
// authorization header as it is (none when empty).
grpc::Status Call(const std::shared_ptr<grpc::Channel>& channel, const MethodDescriptor* method,
                  const Message& request, const std::string& authorization,
                  std::string* response_bytes = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  const std::string bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer req(&slice, 1), resp;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, absl::StrCat("/", method->service()->full_name(), "/", method->name()),
                 grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (response_bytes != nullptr && status.ok()) {
    std::vector<grpc::Slice> slices;
    if (resp.Dump(&slices).ok()) {
      for (const auto& s : slices) {
        response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
  }
  return status;
}

// `token` with its last character changed.
std::string Flipped(std::string token) {
  token.back() = token.back() == 'A' ? 'B' : 'A';
  return token;
}

bool Denied(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
         s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         s.error_code() == grpc::StatusCode::NOT_FOUND;
}

class IsolationMatrixTest : public E2eFixture {
 protected:
  // The victim: a tenant with an account, an issued certificate (service-held key), a second
  // admin token and a SPIFFE binding.
  void MakeVictim() {
    victim_tokens_ = NewTenant();
    v1::IssueCertificateResponse issued;
    victim_.names = {absl::StrCat("www.", victim_tokens_.name, ".example")};
    grpc::Status s = IssueWithKey(victim_tokens_, victim_.names, &issued);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(issued.order().state(), v1::ORDER_STATE_VALID);
    victim_.tenant = victim_tokens_.name;
    victim_.order_id = issued.order().id();
    victim_.serial = issued.certificate().serial();
    victim_.token_id = CreateToken(victim_.tenant, v1::ROLE_ADMIN, nullptr).token_id();
    v1::BindIdentityRequest bind;
    bind.set_spiffe_id(absl::StrCat("spiffe://isolation.test/", victim_.tenant));
    bind.set_tenant(victim_.tenant);
    bind.set_role(v1::ROLE_ADMIN);
    v1::BindIdentityResponse bound;
    auto c = Ctx(root_token_);
    ASSERT_TRUE(admin_->BindIdentity(c.get(), bind, &bound).ok());
    victim_.binding_id = bound.binding_id();
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    ASSERT_TRUE(key.ok());
    auto csr = crypto::BuildCsr(victim_.names, *key);
    ASSERT_TRUE(csr.ok());
    victim_.csr_der = *csr;
    victim_account_ = GetAccount(victim_tokens_.admin);
    victim_.account_url = victim_account_.account_url();
    ASSERT_FALSE(victim_.account_url.empty());
  }

  v1::CreateTokenResponse CreateToken(const std::string& tenant, v1::Role role,
                                      const google::protobuf::Duration* ttl) {
    v1::CreateTokenRequest r;
    r.set_tenant(tenant);
    r.set_role(role);
    if (ttl != nullptr) *r.mutable_ttl() = *ttl;
    v1::CreateTokenResponse resp;
    auto c = Ctx(root_token_);
    grpc::Status s = admin_->CreateToken(c.get(), r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  v1::Account GetAccount(const std::string& token) {
    v1::Account a;
    auto c = Ctx(token);
    grpc::Status s = accounts_->GetAccount(c.get(), {}, &a);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return a;
  }

  // One attempt: `who` calls `method` with the victim request; it must be denied.
  void Attempt(const std::shared_ptr<grpc::Channel>& channel, const MethodDescriptor* method,
               const std::string& authorization, const std::string& who) {
    bool targets = false;
    std::unique_ptr<Message> request = VictimRequest(method, victim_, &targets);
    grpc::Status s = Call(channel, method, *request, authorization);
    ++attempts_;
    if (!Denied(s)) {
      ADD_FAILURE() << who << " calling " << method->full_name() << " got "
                    << static_cast<int>(s.error_code()) << " " << s.error_message();
    } else {
      ++denied_;
    }
  }

  Victim victim_;
  TenantTokens victim_tokens_;
  v1::Account victim_account_;
  int attempts_ = 0, denied_ = 0;
};

TEST_F(IsolationMatrixTest, EveryMethodDeniesEveryForeignCredential) {
  ASSERT_NO_FATAL_FAILURE(MakeVictim());
  TenantTokens intruder = NewTenant();
  const std::vector<const MethodDescriptor*> methods = AllMethods();
  ASSERT_GE(methods.size(), 20u);
  for (const MethodDescriptor* m : methods) {
    EXPECT_FALSE(AllowedRoles(m).empty()) << m->full_name() << " says nothing of allowed_roles";
  }

  // Credentials that identify nobody.
  google::protobuf::Duration one_second;
  one_second.set_seconds(1);
  const std::string expired = CreateToken(victim_.tenant, v1::ROLE_ADMIN, &one_second).token();
  v1::CreateTokenResponse revoked = CreateToken(victim_.tenant, v1::ROLE_ADMIN, nullptr);
  {
    v1::RevokeTokenRequest r;
    r.set_token_id(revoked.token_id());
    v1::RevokeTokenResponse resp;
    auto c = Ctx(root_token_);
    ASSERT_TRUE(admin_->RevokeToken(c.get(), r, &resp).ok());
  }
  // Let the short token expire (its expiry is a stored time: nothing here depends on how long
  // the wait takes beyond it).
  absl::SleepFor(absl::Milliseconds(1500));
  const std::string flipped = Flipped(victim_tokens_.admin);
  const std::vector<std::pair<std::string, std::string>> nobody = {
      {"no credential", ""},
      {"empty bearer", "Bearer "},
      {"bearer without scheme", victim_tokens_.admin},
      {"basic scheme", "Basic " + victim_tokens_.admin},
      {"lower-case scheme with garbage", "bearer x"},
      {"one character", "Bearer x"},
      {"victim token with one character changed", "Bearer " + flipped},
      {"victim token truncated", "Bearer " + victim_tokens_.admin.substr(0, 20)},
      {"victim token doubled", "Bearer " + victim_tokens_.admin + victim_tokens_.admin},
      {"victim token with a dot appended", "Bearer " + victim_tokens_.admin + "."},
      {"token id instead of token", "Bearer " + victim_.token_id},
      {"SQL in the token", "Bearer ' OR '1'='1"},
      {"4 KiB token", "Bearer " + std::string(4096, 'a')},
      {"two tokens", "Bearer " + victim_tokens_.admin + ", Bearer " + intruder.admin},
      {"expired victim token", "Bearer " + expired},
      {"revoked victim token", "Bearer " + revoked.token()},
      {"victim token reversed",
       "Bearer " + std::string(victim_tokens_.admin.rbegin(), victim_tokens_.admin.rend())},
      {"upper-case scheme", "BEARER " + victim_tokens_.admin},
      {"victim token in upper case", "Bearer " + absl::AsciiStrToUpper(victim_tokens_.admin)},
      {"platform token with one character changed", "Bearer " + Flipped(root_token_)},
      {"platform token truncated", "Bearer " + root_token_.substr(0, root_token_.size() / 2)},
      {"path in the token", "Bearer ../../etc/passwd"},
      {"percent-encoded NUL", "Bearer %00" + victim_tokens_.admin},
      {"64 zeros", "Bearer " + std::string(64, '0')},
      {"another tenant's token, changed", "Bearer " + Flipped(intruder.admin)},
      {"the scheme alone", "Bearer"},
  };
  const double acme_before = daemon_->Metric("acmevault_acme_requests_total");
  ASSERT_GT(acme_before, 0);

  for (const MethodDescriptor* m : methods) {
    for (const auto& [who, header] : nobody) Attempt(daemon_->channel(), m, header, who);
    // Another tenant's credentials, against requests that name the victim's objects.
    bool targets = false;
    VictimRequest(m, victim_, &targets);
    if (targets) {
      Attempt(daemon_->channel(), m, "Bearer " + intruder.admin, "another tenant's admin");
      Attempt(daemon_->channel(), m, "Bearer " + intruder.host, "another tenant's host");
    }
    // The victim's own credentials with a role the method does not admit.
    const std::set<v1::Role> allowed = AllowedRoles(m);
    for (auto [role, token] : {std::pair{v1::ROLE_HOST, victim_tokens_.host},
                               std::pair{v1::ROLE_ADMIN, victim_tokens_.admin}}) {
      bool admitted = allowed.count(role) > 0 ||
                      (role == v1::ROLE_ADMIN && allowed.count(v1::ROLE_HOST) > 0);
      if (!admitted) {
        Attempt(daemon_->channel(), m, "Bearer " + token,
                absl::StrCat("the victim's ", v1::Role_Name(role)));
      }
    }
  }

  // mTLS: a second daemon asking for client certificates. A SPIFFE identity bound to the
  // intruder's tenant (as ADMIN) against requests naming the victim, and a certificate of the
  // trusted CA whose SPIFFE ID is bound to no one, against every method.
  const std::string dir = ::acmevault::testing::StackEnv("TEST_TMPDIR") + "/isolation-tls";
  const std::string intruder_spiffe = absl::StrCat("spiffe://isolation.test/", intruder.name);
  ASSERT_TRUE(e2e::WriteTlsFiles(
      dir, {{"intruder", intruder_spiffe, "ca"}, {"unbound", "spiffe://isolation.test/nobody", "ca"}}));
  {
    v1::BindIdentityRequest bind;
    bind.set_spiffe_id(intruder_spiffe);
    bind.set_tenant(intruder.name);
    bind.set_role(v1::ROLE_ADMIN);
    v1::BindIdentityResponse bound;
    auto c = Ctx(root_token_);
    ASSERT_TRUE(admin_->BindIdentity(c.get(), bind, &bound).ok());
  }
  std::unique_ptr<e2e::Daemon> tls = StartTlsDaemon(dir, "isolation-tls");
  ASSERT_NE(tls, nullptr);
  const auto intruder_channel = e2e::TlsChannel(*tls, dir, "intruder");
  const auto unbound_channel = e2e::TlsChannel(*tls, dir, "unbound");
  {
    // Control: the intruder's certificate does identify it (its own account is readable).
    auto stub = v1::AccountService::NewStub(intruder_channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::Account own;
    grpc::Status s = stub->GetAccount(&ctx, {}, &own);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_NE(own.account_url(), victim_.account_url);
  }
  for (const MethodDescriptor* m : methods) {
    Attempt(unbound_channel, m, "", "an unbound SPIFFE identity");
    bool targets = false;
    VictimRequest(m, victim_, &targets);
    if (targets) Attempt(intruder_channel, m, "", "another tenant's SPIFFE identity");
  }
  const double tls_acme = tls->Metric("acmevault_acme_requests_total");
  tls.reset();

  // Positive controls: the same read requests with the victim's own admin token pass every
  // check (so the denials above are about the credential, not a malformed request).
  for (const char* name : {"GetOrder", "GetCertificate", "ListIdentities"}) {
    const MethodDescriptor* m = nullptr;
    for (const MethodDescriptor* candidate : methods) {
      if (candidate->name() == name) m = candidate;
    }
    ASSERT_NE(m, nullptr) << name;
    bool targets = false;
    std::unique_ptr<Message> request = VictimRequest(m, victim_, &targets);
    grpc::Status s = Call(daemon_->channel(), m, *request,
                          std::string(name) == "ListIdentities" ? "Bearer " + root_token_
                                                                : "Bearer " + victim_tokens_.admin);
    EXPECT_TRUE(s.ok()) << name << ": " << s.error_message();
  }

  // Nothing reached the CA, and the victim is as it was.
  EXPECT_EQ(daemon_->Metric("acmevault_acme_requests_total"), acme_before);
  EXPECT_EQ(tls_acme, 0);
  v1::Account after = GetAccount(victim_tokens_.admin);
  EXPECT_EQ(after.key_version(), victim_account_.key_version());
  EXPECT_EQ(after.key_thumbprint(), victim_account_.key_thumbprint());
  EXPECT_EQ(after.status(), victim_account_.status());
  v1::GetCertificateRequest gc;
  gc.set_serial(victim_.serial);
  v1::Certificate cert;
  auto c = Ctx(victim_tokens_.host);
  ASSERT_TRUE(certs_->GetCertificate(c.get(), gc, &cert).ok());
  EXPECT_EQ(cert.state(), v1::CERTIFICATE_STATE_VALID);
  v1::ListIdentitiesRequest li;
  li.set_tenant(victim_.tenant);
  v1::ListIdentitiesResponse ids;
  auto c2 = Ctx(victim_tokens_.admin);
  ASSERT_TRUE(admin_->ListIdentities(c2.get(), li, &ids).ok());
  std::set<std::string> id_list;
  for (const auto& i : ids.identities()) id_list.insert(i.id());
  EXPECT_TRUE(id_list.count(victim_.binding_id)) << "the victim's SPIFFE binding is gone";
  EXPECT_TRUE(id_list.count(victim_.token_id)) << "the victim's second token is gone";

  EXPECT_GE(attempts_, 500);
  EXPECT_EQ(denied_, attempts_);
  std::printf("isolation matrix: %zu methods, %d attempts, %d denied\n", methods.size(),
              attempts_, denied_);
}

}  // namespace
}  // namespace acmevault
