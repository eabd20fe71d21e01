// Key secrecy, end to end: a workload through a real acmevaultd (accounts made and rolled over,
// certificates issued with service-generated keys of every algorithm, host reads, the
// compromise playbook), then a search for every account and certificate private key the run
// made, in every encoding (tests/security/canary_scan.h), through every RPC response, the
// service's log, every audit row and a pg_dump of the database taken afterwards. Zero found;
// and a positive control per source (a key of the run planted into a copy) that must be found,
// so a scan that finds nothing is known to be able to find something.
//
// The one response that deliberately carries a key (IssueCertificate's private_key_pem, to the
// host that asked) is scanned without that field. Account keys are read from the vault with the
// service's key-encryption key, each while it can still be unsealed (a compromised key never
// is again). The e2e service's database holds what the other e2e tests ran too: the dump and
// the audit rows are of all of it.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/testing/stack_env.h"
#include "crypto/keys.h"
#include "crypto/testing/key_material.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/security/canary_scan.h"

namespace acmevault {
namespace {

using ::acmevault::testing::StackEnv;
using e2e::ReadFile;
using security::CanaryScanner;

// The output of `command` (run by the shell), or "" with a test failure naming `what` (never
// the command: it holds a database password).
std::string Output(const std::string& what, const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "could not run " << what;
    return out;
  }
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << what << " failed";
  return out;
}

std::string Describe(const std::vector<CanaryScanner::Finding>& found) {
  std::string out;
  for (const auto& f : found) {
    absl::StrAppend(&out, "\n  ", f.source, " @", f.offset, ": key ", f.key, " as ", f.encoding);
  }
  return out;
}

class SecrecyScanTest : public e2e::E2eFixture {
 protected:
  void SetUp() override {
    E2eFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto store = OpenStore();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // Keeps a response for the scan (its wire bytes and its text form).
  void Keep(const std::string& rpc, const google::protobuf::Message& m) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(m, &text);
    responses_.push_back({rpc, m.SerializeAsString() + "\n" + text});
  }

  // Keeps an IssueCertificate response without the field that deliberately carries the key to
  // the host that asked.
  void KeepIssued(const std::string& rpc, v1::IssueCertificateResponse response) {
    response.clear_private_key_pem();
    Keep(rpc, response);
  }

  // Registers every account key version the vault can still unseal that is not registered yet.
  void CollectAccountKeys(const storage::Scope& scope, storage::AccountId account) {
    auto keys = store_->ListKeys(scope, account);
    ASSERT_TRUE(keys.ok()) << keys.status();
    for (const auto& k : *keys) {
      const std::string label = absl::StrCat("tenant ", scope.tenant, " account key v", k.version);
      if (labels_.count(label)) continue;
      auto key = store_->GetKey(scope, account, k.version, "secrecy scan");
      if (!key.ok() || !key->private_key) continue;  // Compromised: registered earlier.
      labels_.insert(label);
      scanner_.AddKey(label, *key->private_key);
      if (!first_account_key_) first_account_key_.emplace(*std::move(key->private_key));
    }
  }

  std::unique_ptr<storage::PostgresStore> store_;
  CanaryScanner scanner_;
  std::set<std::string> labels_;
  std::vector<std::pair<std::string, std::string>> responses_;  // (rpc, bytes)
  std::optional<crypto::PrivateKey> first_account_key_;
  std::string first_certificate_pem_;
};

TEST_F(SecrecyScanTest, NoKeyOfTheRunInAnyResponseLogLineAuditRowOrDump) {
  // Two tenants, an ECDSA P-256 account and an RSA-2048 one; names kept for the authorizations.
  std::vector<TenantTokens> tenants = {NewTenant(false, true), NewTenant(false, true)};
  std::vector<storage::Scope> scopes;
  std::vector<storage::AccountId> account_ids;
  const v1::KeyAlgorithm account_algorithms[] = {v1::KEY_ALGORITHM_ECDSA_P256,
                                                 v1::KEY_ALGORITHM_RSA_2048};
  for (size_t i = 0; i < tenants.size(); ++i) {
    const TenantTokens& t = tenants[i];
    v1::CreateAccountRequest ar;
    ar.set_terms_of_service_agreed(true);
    ar.set_key_algorithm(account_algorithms[i]);
    v1::Account account;
    auto c = Ctx(t.admin);
    ASSERT_TRUE(accounts_->CreateAccount(c.get(), ar, &account).ok());
    Keep("CreateAccount", account);
    auto tenant = store_->FindTenantByName(t.name);
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    scopes.push_back({tenant->id, {"e2e-test", "secrecy_scan_test"}});
    auto accounts = store_->ListAccounts(scopes.back());
    ASSERT_TRUE(accounts.ok() && accounts->size() == 1u);
    account_ids.push_back(accounts->front().id);
    CollectAccountKeys(scopes[i], account_ids[i]);
    // Two rollovers, the second to another algorithm.
    for (v1::KeyAlgorithm a : {v1::KEY_ALGORITHM_UNSPECIFIED, v1::KEY_ALGORITHM_ECDSA_P384}) {
      v1::RolloverAccountKeyRequest rr;
      rr.set_key_algorithm(a);
      rr.set_reason("secrecy scan");
      v1::RolloverAccountKeyResponse rolled;
      auto rc = Ctx(t.admin);
      grpc::Status s = accounts_->RolloverAccountKey(rc.get(), rr, &rolled);
      ASSERT_TRUE(s.ok()) << s.error_message();
      Keep("RolloverAccountKey", rolled);
      CollectAccountKeys(scopes[i], account_ids[i]);
    }
  }

  // Certificates with service-generated keys of every algorithm, on the first tenant.
  const TenantTokens& t = tenants[0];
  const std::vector<v1::KeyAlgorithm> algorithms = {
      v1::KEY_ALGORITHM_ECDSA_P256, v1::KEY_ALGORITHM_ECDSA_P384, v1::KEY_ALGORITHM_RSA_2048,
      v1::KEY_ALGORITHM_RSA_3072, v1::KEY_ALGORITHM_RSA_4096};
  std::vector<std::string> serials;
  for (v1::KeyAlgorithm a : algorithms) {
    v1::IssueCertificateRequest r;
    r.add_identifiers(absl::StrCat("k", a, ".", t.name, ".example"));
    r.set_key_algorithm(a);
    r.set_idempotency_key(absl::StrCat("secrecy-scan-", a));
    v1::IssueCertificateResponse issued;
    auto c = Ctx(t.host, 120);
    grpc::Status s = certs_->IssueCertificate(c.get(), r, &issued);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_FALSE(issued.private_key_pem().empty()) << v1::KeyAlgorithm_Name(a);
    auto key = crypto::PrivateKey::FromPem(issued.private_key_pem());
    ASSERT_TRUE(key.ok()) << key.status();
    scanner_.AddKey(absl::StrCat("certificate key ", issued.certificate().serial()), *key,
                    issued.private_key_pem());
    labels_.insert(absl::StrCat("certificate key ", issued.certificate().serial()));
    if (first_certificate_pem_.empty()) first_certificate_pem_ = issued.private_key_pem();
    serials.push_back(issued.certificate().serial());
    KeepIssued("IssueCertificate", issued);
    // The same caller repeating the idempotency key gets the certificate and its key again
    // (deliberately, as above); nothing else of that response may carry it.
    v1::IssueCertificateResponse reused;
    auto c2 = Ctx(t.host, 120);
    ASSERT_TRUE(certs_->IssueCertificate(c2.get(), r, &reused).ok());
    EXPECT_TRUE(reused.reused());
    EXPECT_EQ(reused.private_key_pem(), issued.private_key_pem());
    KeepIssued("IssueCertificate (repeated)", reused);
    v1::GetOrderRequest gr;
    gr.set_id(issued.order().id());
    v1::Order order;
    auto c3 = Ctx(t.host);
    if (certs_->GetOrder(c3.get(), gr, &order).ok()) Keep("GetOrder", order);
  }
  for (const auto& serial : serials) {
    v1::GetCertificateRequest gr;
    gr.set_serial(serial);
    v1::Certificate cert;
    auto c = Ctx(t.host);
    ASSERT_TRUE(certs_->GetCertificate(c.get(), gr, &cert).ok());
    Keep("GetCertificate", cert);
  }

  // The compromise playbook on the first tenant (its reissued keys are registered below),
  // deactivation of authorizations on the second, and the reads after them.
  {
    CollectAccountKeys(scopes[0], account_ids[0]);
    v1::RespondToCompromiseResponse report;
    auto c = Ctx(t.admin, 600);
    grpc::Status s = accounts_->RespondToCompromise(c.get(), {}, &report);
    ASSERT_TRUE(s.ok()) << s.error_message();
    Keep("RespondToCompromise", report);
    v1::DeactivateAuthorizationsResponse counts;
    auto c2 = Ctx(tenants[1].admin);
    ASSERT_TRUE(accounts_->DeactivateAuthorizations(c2.get(), {}, &counts).ok());
    Keep("DeactivateAuthorizations", counts);
  }
  for (size_t i = 0; i < tenants.size(); ++i) {
    CollectAccountKeys(scopes[i], account_ids[i]);
    v1::Account account;
    auto c = Ctx(tenants[i].admin);
    ASSERT_TRUE(accounts_->GetAccount(c.get(), {}, &account).ok());
    Keep("GetAccount", account);
    v1::ListCertificatesResponse listed;
    auto lc = Ctx(tenants[i].host);
    ASSERT_TRUE(certs_->ListCertificates(lc.get(), {}, &listed).ok());
    Keep("ListCertificates", listed);
    auto certs = store_->ListCertificates(scopes[i], {}, {"", 1000});
    ASSERT_TRUE(certs.ok()) << certs.status();
    for (const auto& cert : certs->items) {
      const std::string label = absl::StrCat("certificate key ", cert.serial);
      // The playbook's reissues (the others are registered already): read from the vault.
      if (!cert.has_private_key || labels_.count(label)) continue;
      auto key = store_->GetCertificateKey(scopes[i], cert.id, "secrecy scan");
      ASSERT_TRUE(key.ok()) << key.status();
      labels_.insert(label);
      scanner_.AddKey(label, *key);
    }
  }
  ASSERT_TRUE(first_account_key_.has_value());
  // 2 tenants x 3 account keys (the first tenant's 4th from the playbook), every certificate
  // key and its reissue.
  EXPECT_GE(scanner_.keys(), 7 + 2 * algorithms.size());

  // The sources.
  std::map<std::string, std::string> sources;
  for (const auto& [rpc, bytes] : responses_) {
    absl::StrAppend(&sources["RPC responses"], rpc, ":", bytes, "\n");
    const auto found = scanner_.Scan("RPC " + rpc, bytes);
    EXPECT_TRUE(found.empty()) << "a key in a response to " << rpc << Describe(found);
  }
  sources["service log"] = ReadFile(daemon_->log_path());
  const std::string db_url = std::string(absl::StripAsciiWhitespace(ReadFile(dir_ + "/db-url")));
  const std::string owner_url = StackEnv("ACMEVAULT_PG_URL");
  ASSERT_FALSE(owner_url.empty());
  // The owner's connection to the service's database (its role bypasses row-level security).
  // The service's URL may name a socket directory after its path (?host=/dir&port=N).
  const std::string db_path = db_url.substr(0, db_url.find('?'));
  const std::string db_owner_url =
      owner_url.substr(0, owner_url.rfind('/') + 1) + db_path.substr(db_path.rfind('/') + 1);
  sources["audit rows"] =
      Output("psql", absl::StrCat("psql '", db_owner_url,
                                  "' -qtA -c 'SELECT row_to_json(a) FROM audit_log a "
                                  "ORDER BY tenant_id, seq'"));
  sources["pg_dump"] = Output("pg_dump", absl::StrCat("pg_dump '", db_owner_url, "'"));
  const size_t audit_rows =
      std::count(sources["audit rows"].begin(), sources["audit rows"].end(), '\n');
  ASSERT_GT(audit_rows, 0u);
  ASSERT_NE(sources["pg_dump"].find("COPY public.account_keys"), std::string::npos);

  for (const auto& [name, text] : sources) {
    const auto found = scanner_.Scan(name, text);
    EXPECT_TRUE(found.empty()) << found.size() << " key encodings found in " << name
                               << Describe(found);
    std::cout << "scanned " << name << ": " << text.size() << " bytes, " << found.size()
              << " found\n";
  }
  std::cout << "keys: " << scanner_.keys() << ", needles: " << scanner_.needles()
            << ", audit rows: " << audit_rows << ", RPC responses: " << responses_.size() << "\n";

  // Positive controls: a key of the run planted into a copy of each source, in a different
  // encoding each time, must be found.
  const auto d = crypto::testing::SecretComponents(*first_account_key_).front().second;
  const std::string der(first_account_key_->ToPkcs8Der().view());
  const std::map<std::string, std::string> planted = {
      {"RPC responses",
       absl::StrCat(sources["RPC responses"], "IssueCertificate:", first_certificate_pem_)},
      {"service log",
       absl::StrCat(sources["service log"], "{\"level\":\"info\",\"msg\":\"rpc\",\"key\":\"",
                    absl::StrReplaceAll(first_certificate_pem_, {{"\n", "\\n"}}), "\"}\n")},
      {"audit rows", absl::StrCat(sources["audit rows"], "{\"tenant\":1,\"detail\":\"",
                                  absl::WebSafeBase64Escape(d), "\"}\n")},
      {"pg_dump", absl::StrCat(sources["pg_dump"], "COPY public.canary (k) FROM stdin;\n\\\\x",
                               absl::BytesToHexString(der), "\n\\.\n")},
  };
  for (const auto& [name, text] : planted) {
    EXPECT_FALSE(scanner_.Scan(name + " (planted)", text).empty())
        << "the planted key was not found in a copy of " << name;
  }
}

}  // namespace
}  // namespace acmevault
