// End to end with account keys in a PKCS#11 token: the e2e service's acmevaultd with the local
// stack's SoftHSM2 token (deploy/local/stack: SOFTHSM2_CONF, ACMEVAULT_PKCS11_*), against
// Pebble. A tenant whose policy says PKCS11 issues, rolls its key over, revokes and runs the
// compromise response; then the database (pg_dump and the key rows), the daemon's log, the
// responses and the token's objects are searched for any copy of a key.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "acme/testing/pebble.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "common/testing/stack_env.h"
#include "crypto/pkcs11.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace acmevault {
namespace {

using e2e::ReadFile;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Env(const char* name) { return ::acmevault::testing::StackEnv(name); }

// The output of `command` (stdout), or "" when it fails.
std::string Output(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[65536];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  return pclose(pipe) == 0 ? out : "";
}

class Pkcs11E2eTest : public e2e::E2eFixture {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(module, "ACMEVAULT_PKCS11_MODULE");
    (void)module;
    E2eFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pebble_ = std::make_unique<acme::testing::PebbleManagement>(
        Env("ACMEVAULT_PEBBLE_E2E_MANAGEMENT"), Env("ACMEVAULT_PEBBLE_TLS_CA"));
  }

  // The stack's token for daemon "a"; retired keys leave it a second after they retire.
  std::string ExtraConfig() const override {
    return absl::StrCat("pkcs11 {\n  module_path: \"", Env("ACMEVAULT_PKCS11_MODULE"),
                        "\"\n  token_label: \"", Env("ACMEVAULT_PKCS11_TOKEN"),
                        "\"\n  pin_file: \"", Env("ACMEVAULT_PKCS11_PIN_FILE"),
                        "\"\n  session_pool_size: 4\n  retired_key_grace_seconds: 1\n"
                        "  retired_key_sweep_seconds: 1\n}\n");
  }

  // A tenant whose account keys live in the token, with its account.
  TenantTokens TokenTenant() {
    TenantTokens t = NewTenant(/*with_account=*/false);
    v1::UpdateTenantRequest u;
    u.set_name(t.name);
    u.add_allowed_identifiers(absl::StrCat("*.", t.name, ".example"));
    u.mutable_policy()->set_key_storage(v1::KEY_STORAGE_PKCS11);
    v1::Tenant tenant;
    auto c = Ctx(root_token_);
    grpc::Status s = admin_->UpdateTenant(c.get(), u, &tenant);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(tenant.policy().key_storage(), v1::KEY_STORAGE_PKCS11);
    v1::CreateAccountRequest ar;
    ar.set_terms_of_service_agreed(true);
    auto ac = Ctx(t.admin);
    s = accounts_->CreateAccount(ac.get(), ar, &account_);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return t;
  }

  // The schema owner's URL of the service's database (row-level security does not hide rows
  // from it).
  std::string OwnerUrl() const {
    std::string url = Env("ACMEVAULT_PG_URL");
    std::string service = dir_.substr(dir_.rfind("/service-") + 9);
    return absl::StrCat(url.substr(0, url.rfind('/')), "/acmevault_", service);
  }

  std::string Sql(const std::string& query) {
    return Output(absl::StrCat("psql '", OwnerUrl(), "' -qtA -c \"", query, "\""));
  }

  std::unique_ptr<crypto::Pkcs11Token> OpenToken() {
    crypto::Pkcs11Options options;
    options.module_path = Env("ACMEVAULT_PKCS11_MODULE");
    options.token_label = Env("ACMEVAULT_PKCS11_TOKEN");
    options.pin = crypto::SecretBytes(
        std::string(absl::StripAsciiWhitespace(ReadFile(Env("ACMEVAULT_PKCS11_PIN_FILE")))));
    options.session_pool_size = 1;
    auto token = crypto::Pkcs11Token::Open(std::move(options));
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *std::move(token) : nullptr;
  }

  // Revokes `serial` (signed with the tenant's account key) and checks Pebble's answer.
  void RevokeAndExpectRevokedAtPebble(const TenantTokens& t, const std::string& serial) {
    v1::RevokeCertificateRequest r;
    r.set_serial(serial);
    r.set_reason(v1::REVOCATION_REASON_SUPERSEDED);
    v1::RevokeCertificateResponse revoked;
    auto c = Ctx(t.admin);
    grpc::Status s = certs_->RevokeCertificate(c.get(), r, &revoked);
    ASSERT_TRUE(s.ok()) << s.error_message();
    auto at_pebble = pebble_->StatusBySerial(serial);
    ASSERT_TRUE(at_pebble.ok()) << at_pebble.status();
    EXPECT_EQ(at_pebble->status, "Revoked");
  }

  std::unique_ptr<acme::testing::PebbleManagement> pebble_;
  v1::Account account_;
};

TEST_F(Pkcs11E2eTest, IssueRolloverRevokeAndCompromiseWithAKeyThatNeverLeavesTheToken) {
  TenantTokens t = TokenTenant();
  ASSERT_EQ(account_.key_storage(), v1::KEY_STORAGE_PKCS11);
  const std::string first_object = account_.key_token_object();
  ASSERT_THAT(first_object, ::testing::StartsWith("acmevault-"));
  std::vector<std::string> responses = {account_.DebugString()};

  // Issue: every ACME request of the order is signed in the token.
  v1::IssueCertificateResponse issued;
  grpc::Status s = IssueWithKey(t, {absl::StrCat("one.", t.name, ".example")}, &issued, "", 60);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(issued.certificate().issuing_key_version(), 1);

  // Rollover: the new key is made in the token, stored pending, and accepted by Pebble.
  v1::RolloverAccountKeyRequest r;
  r.set_reason("e2e pkcs11");
  v1::RolloverAccountKeyResponse rolled;
  auto c = Ctx(t.admin);
  s = accounts_->RolloverAccountKey(c.get(), r, &rolled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  responses.push_back(rolled.DebugString());
  EXPECT_EQ(rolled.account().key_version(), 2);
  EXPECT_EQ(rolled.account().key_storage(), v1::KEY_STORAGE_PKCS11);
  const std::string second_object = rolled.account().key_token_object();
  EXPECT_NE(second_object, first_object);

  // Revoke with the (new) account key.
  RevokeAndExpectRevokedAtPebble(t, issued.certificate().serial());
  if (HasFatalFailure()) return;

  // The compromise response: rollover, authorizations, reissue, revoke.
  v1::IssueCertificateResponse live;
  s = IssueWithKey(t, {absl::StrCat("two.", t.name, ".example")}, &live, "", 60);
  ASSERT_TRUE(s.ok()) << s.error_message();
  v1::RespondToCompromiseRequest cr;
  v1::RespondToCompromiseResponse report;
  auto cc = Ctx(t.admin, 120);
  s = accounts_->RespondToCompromise(cc.get(), cr, &report);
  ASSERT_TRUE(s.ok()) << s.error_message();
  responses.push_back(report.DebugString());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(report.steps(i).done()) << report.steps(i).name();
  EXPECT_EQ(report.steps(3).detail(), "1 revoked (reason superseded)");
  EXPECT_EQ(report.account().key_version(), 3);
  const std::string third_object = report.account().key_token_object();
  auto live_at_pebble = pebble_->StatusBySerial(live.certificate().serial());
  ASSERT_TRUE(live_at_pebble.ok());
  EXPECT_EQ(live_at_pebble->status, "Revoked");

  // The key rows hold object ids and public keys, and no key material at all.
  EXPECT_EQ(Sql(absl::StrCat(
                "SELECT version, state, token_object, kek_id IS NULL AND wrapped_data_key IS NULL "
                "AND sealed_private_key IS NULL FROM account_keys k JOIN tenants t ON "
                "t.id = k.tenant_id WHERE t.name = '", t.name, "' ORDER BY version")),
            absl::StrCat("1|compromised|", first_object, "|t\n2|compromised|", second_object,
                         "|t\n3|active|", third_object, "|t\n"));
  // Compromised keys leave the token after their grace (1 s here, swept every second).
  std::string destroyed;
  for (int i = 0; i < 100; ++i) {
    destroyed = Sql(absl::StrCat(
        "SELECT count(*) FROM account_keys k JOIN tenants t ON t.id = k.tenant_id WHERE t.name = '",
        t.name, "' AND destroyed_at IS NOT NULL"));
    if (destroyed == "2\n") break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(destroyed, "2\n");

  // No private key anywhere: not in the database dump, the daemon's log or any response.
  const char* pg_dump = access("/usr/lib/postgresql/15/bin/pg_dump", X_OK) == 0
                            ? "/usr/lib/postgresql/15/bin/pg_dump"
                            : "pg_dump";
  const std::string dump = Output(absl::StrCat(pg_dump, " --no-owner --dbname='", OwnerUrl(), "'"));
  ASSERT_FALSE(dump.empty()) << "pg_dump failed";
  EXPECT_THAT(dump, HasSubstr(third_object)) << "the dump holds the key rows";
  const std::string log = ReadFile(daemon_->log_path());
  for (const std::string& text : std::vector<std::string>{dump, log}) {
    EXPECT_THAT(text, Not(HasSubstr("PRIVATE KEY")));
    EXPECT_THAT(text, Not(HasSubstr("\"d\":")));
  }
  for (const std::string& response : responses) {
    EXPECT_THAT(response, Not(HasSubstr("PRIVATE KEY")));
  }

  // In the token: the active key is there, the compromised ones are gone, and no key object
  // (the service's or any other) gives its value or may be wrapped out.
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  auto objects = token->ListKeyObjects();
  ASSERT_TRUE(objects.ok()) << objects.status();
  std::set<std::string> ids;
  for (const crypto::TokenKeyObject& o : *objects) {
    ids.insert(o.object_id);
    EXPECT_TRUE(o.sensitive) << o.object_id;
    EXPECT_FALSE(o.extractable) << o.object_id;
    EXPECT_TRUE(o.never_extractable) << o.object_id;
    EXPECT_FALSE(o.value_readable) << o.object_id;
  }
  EXPECT_EQ(ids.count(third_object), 1u);
  EXPECT_EQ(ids.count(first_object), 0u);
  EXPECT_EQ(ids.count(second_object), 0u);
}

// A copy of daemon "a"'s config whose key_encryption reads `keks` (written beside it).
std::string WithKeks(const std::string& config, const std::string& keks, const std::string& name) {
  const std::string dir = ::acmevault::testing::StackEnv("TEST_TMPDIR");
  const std::string kek_file = absl::StrCat(dir, "/", name, ".kek");
  std::ofstream(kek_file) << keks;
  std::string text = ReadFile(config);
  const std::string field = "kek_file: \"";
  const size_t start = text.find(field);
  EXPECT_NE(start, std::string::npos) << "the config names no kek_file";
  if (start == std::string::npos) return config;
  const size_t from = start + field.size();
  text.replace(from, text.find('"', from) - from, kek_file);
  const std::string path = absl::StrCat(dir, "/", name, ".textproto");
  std::ofstream(path) << text;
  return path;
}

// The KEK set of `config` (its kek_file's text).
std::string KeksOf(const std::string& config) {
  const std::string text = ReadFile(config);
  const std::string field = "kek_file: \"";
  const size_t from = text.find(field) + field.size();
  return ReadFile(text.substr(from, text.find('"', from) - from));
}

// Issue 14 item 3: the vault's data keys wrapped by an AES key inside the token. The KEK is made
// in the token (`acmevaultd token-kek`), becomes the current KEK after the file KEK, seals a
// tenant's account key and a service-made certificate key, and is rotated away again (file KEK
// last, `acmevaultd rewrap`): a daemon holding only the file KEK then reads both.
TEST_F(Pkcs11E2eTest, ATokenKekSealsTheVaultsKeysAndIsRotatedLikeAFileKek) {
  const std::string original = daemon_config_;
  const std::string file_keks = std::string(absl::StripTrailingAsciiWhitespace(KeksOf(original)));
  ASSERT_FALSE(file_keks.empty());
  const std::string label = absl::StrCat("e2e-kek-", getpid());
  const std::string made = Output(absl::StrCat("service/acmevaultd token-kek --config=", original,
                                               " --label=", label, " 2>&1"));
  ASSERT_THAT(made, HasSubstr(absl::StrCat("token:", label))) << made;

  // The token's AES key is current: new writes are wrapped in the token (its id is its label).
  daemon_config_ = WithKeks(original, absl::StrCat(file_keks, "\ntoken:", label, "\n"), "token");
  RestartDaemon();
  TenantTokens t = NewTenant(/*with_account=*/true);
  v1::IssueCertificateResponse issued;
  const std::string idempotency = absl::StrCat("kek-", label);
  grpc::Status s =
      IssueWithKey(t, {absl::StrCat("kek.", t.name, ".example")}, &issued, idempotency, 60);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_FALSE(issued.private_key_pem().empty());
  const std::string tenant_is = absl::StrCat("tenant_id = (SELECT id FROM tenants WHERE name = '",
                                             t.name, "')");
  const std::string kek_rows = absl::StrCat(
      "SELECT 'account ' || kek_id FROM account_keys WHERE ", tenant_is,
      " UNION ALL SELECT 'certificate ' || kek_id FROM certificates WHERE ", tenant_is,
      " ORDER BY 1");
  EXPECT_EQ(Sql(kek_rows),
            absl::StrCat("account ", label, "\ncertificate ", label, "\n"));

  // In the token: the KEK is a secret key that gives neither its value nor a wrapped copy.
  {
    auto token = OpenToken();
    ASSERT_NE(token, nullptr);
    auto objects = token->ListKeyObjects();
    ASSERT_TRUE(objects.ok()) << objects.status();
    int found = 0;
    for (const crypto::TokenKeyObject& o : *objects) {
      if (o.label != label) continue;
      ++found;
      EXPECT_TRUE(o.secret_key);
      EXPECT_TRUE(o.sensitive);
      EXPECT_FALSE(o.extractable);
      EXPECT_FALSE(o.value_readable);
    }
    EXPECT_EQ(found, 1);
  }

  // Rotated away: the file KEK current again, every record re-wrapped under it.
  const std::string back =
      WithKeks(original, absl::StrCat("token:", label, "\n", file_keks, "\n"), "back");
  const std::string rewrapped =
      Output(absl::StrCat("service/acmevaultd rewrap --config=", back, " 2>&1"));
  ASSERT_THAT(rewrapped, HasSubstr("rewrapped")) << rewrapped;
  // The current file KEK's id: its last entry's, before the colon.
  const std::string last = file_keks.substr(file_keks.rfind('\n') + 1);
  const std::string file_id = last.substr(0, last.find(':'));
  EXPECT_EQ(Sql(kek_rows), absl::StrCat("account ", file_id, "\ncertificate ", file_id, "\n"));
  EXPECT_EQ(Sql(absl::StrCat("SELECT count(*) FROM account_keys WHERE kek_id = '", label, "'")),
            "0\n");

  // A daemon with the file KEK alone unseals both: the certificate key is handed back to the
  // identity repeating the order's idempotency key, and the account key signs a revocation.
  daemon_config_ = original;
  RestartDaemon();
  v1::IssueCertificateResponse again;
  s = IssueWithKey(t, {absl::StrCat("kek.", t.name, ".example")}, &again, idempotency, 60);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.private_key_pem(), issued.private_key_pem());
  RevokeAndExpectRevokedAtPebble(t, issued.certificate().serial());
}

// A token key object that disappears (deleted in the HSM by hand) is a clear error naming it,
// never a crash; the daemon keeps serving.
TEST_F(Pkcs11E2eTest, AKeyObjectGoneIsAFailedPreconditionNamingIt) {
  TenantTokens t = TokenTenant();
  const std::string object = account_.key_token_object();
  auto token = OpenToken();
  ASSERT_NE(token, nullptr);
  ASSERT_TRUE(token->DestroyKeyPair(object).ok());
  v1::RolloverAccountKeyResponse rolled;
  auto c = Ctx(t.admin);
  grpc::Status s = accounts_->RolloverAccountKey(c.get(), {}, &rolled);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(object));
  EXPECT_TRUE(daemon_->Alive());
}

}  // namespace
}  // namespace acmevault
