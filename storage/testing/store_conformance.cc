// The conformance suite's fixture. Its tests, by concern, are in store_conformance_*.cc.
#include "storage/testing/store_conformance.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/testing/stack_env.h"

namespace acmevault::storage::testing {

void PrintTo(const StoreFactory& factory, std::ostream* os) { *os << factory.name; }

std::string FactoryName(const ::testing::TestParamInfo<StoreFactory>& info) {
  return info.param.name;
}

void StoreConformanceTest::SetUp() {
  std::string url;
  if (GetParam().needs_postgres) {
    ACMEVAULT_STACK_ENV_OR_SKIP(pg_url, "ACMEVAULT_PG_URL");
    url = pg_url;
  }
  auto harness = GetParam().make(&clock_, TestKeks(KekText("kek-a", 'a')), url);
  ASSERT_TRUE(harness.ok()) << harness.status();
  harness_ = *std::move(harness);
}

void StoreConformanceTest::TearDown() {
  if (harness_ != nullptr) harness_->AfterTest(generated_);
}

Tenant StoreConformanceTest::MakeTenant(const std::string& name, absl::Duration renewal_window) {
  TenantSpec spec;
  spec.name = name;
  spec.allowed_identifiers = {"*." + name + ".example"};
  spec.acme_directory_url = "https://ca.test/dir";
  spec.policy.renewal_window = renewal_window;
  auto tenant = store().CreateTenant(Actor{"spiffe://test/platform", "test/Setup"}, spec);
  EXPECT_TRUE(tenant.ok()) << tenant.status();
  return tenant.ok() ? *tenant : Tenant{};
}

Scope StoreConformanceTest::ScopeOf(const Tenant& tenant) {
  return Scope{tenant.id, Actor{"spiffe://test/admin", "test/Rpc"}};
}

crypto::PrivateKey StoreConformanceTest::NewKey(crypto::KeyAlgorithm algorithm) {
  auto key = crypto::PrivateKey::Generate(algorithm);
  if (!key.ok()) std::abort();  // The library cannot generate keys: nothing here can work.
  generated_.push_back(Describe(*key));
  return *std::move(key);
}

PublicKeyInfo StoreConformanceTest::InfoFor(const crypto::PrivateKey& key) {
  std::string spki = absl::WebSafeBase64Escape(key.public_key().ToDer());
  return PublicKeyInfo{absl::StrCat("{\"spki\":\"", spki, "\"}"), spki.substr(0, 43)};
}

Account StoreConformanceTest::MakeAccount(const Scope& scope, const std::string& directory) {
  crypto::PrivateKey key = NewKey();
  auto account = store().CreateAccount(scope, directory, key, InfoFor(key), KeyState::kActive);
  EXPECT_TRUE(account.ok()) << account.status();
  return account.ok() ? *account : Account{};
}

KeyLease StoreConformanceTest::LeaseKeys(const Scope& scope, AccountId account) {
  auto lease = store().AcquireKeyLease(scope, account, absl::Minutes(10));
  EXPECT_TRUE(lease.ok()) << lease.status();
  return lease.ok() ? *lease : KeyLease{};
}

Lease StoreConformanceTest::MakeOrder(const Scope& scope, AccountId account,
                                      std::vector<std::string> ids, absl::Duration lease) {
  auto created = store().CreateOrJoinOrder(scope, NewOrder{account, ids, "", "replica-1", lease});
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok() || !created->lease.has_value()) return Lease{};
  return *created->lease;
}

NewCertificate StoreConformanceTest::CertificateFor(std::vector<std::string> ids,
                                                    const std::string& serial,
                                                    absl::Duration lifetime) {
  NewCertificate c;
  c.identifiers = std::move(ids);
  c.serial = serial;
  c.not_before = clock_.Now();
  c.not_after = clock_.Now() + lifetime;
  c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  return c;
}

std::vector<std::string> StoreConformanceTest::AuditActions(const Scope& scope) {
  std::vector<std::string> out;
  PageRequest page;
  do {
    auto records = store().ListAudit(scope, page);
    EXPECT_TRUE(records.ok()) << records.status();
    if (!records.ok()) break;
    for (const AuditRecord& r : records->items) out.push_back(r.event.action);
    page.page_token = records->next_page_token;
  } while (!page.page_token.empty());
  return out;
}

std::string StoreConformanceTest::CsrBytes(size_t size, char salt) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i * 7 + salt);
  return out;
}

NewOrder StoreConformanceTest::WithMaterial(NewOrder order, std::string csr_der,
                                            const crypto::PrivateKey* key) {
  order.csr_der = std::move(csr_der);
  order.certificate_key = key;
  return order;
}

}  // namespace acmevault::storage::testing
