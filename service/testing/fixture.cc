#include "service/testing/fixture.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "crypto/digest.h"
#include "service/auth.h"
#include "storage/kek_set.h"

namespace acmevault::service::testing {

Fixture::Fixture() {
  auto keks = storage::KekSet::Parse(
      absl::StrCat("test-kek:", absl::Base64Escape(crypto::RandomBytes(32))));
  auto store = storage::FakeStore::Create({&clock_}, *std::move(keks));
  fake_ = store->get();
  store_ = *std::move(store);
  UseToken(nullptr);
}

Fixture::Fixture(const std::function<std::unique_ptr<storage::Store>(const Clock* clock)>& open,
                 acmevault::testing::FakeClock* shared_clock) {
  if (shared_clock != nullptr) clock_ptr_ = shared_clock;
  store_ = open(clock_ptr_);
  UseToken(nullptr);
}

void Fixture::UseToken(crypto::Pkcs11Token* token) {
  keys_ = *AccountKeys::Create({.accounts = store_.get(), .token = token, .clock = clock_ptr_});
}

storage::TenantId Fixture::AddTenant(const std::string& name,
                                     const std::vector<std::string>& patterns,
                                     const std::string& directory_url) {
  storage::TenantSpec spec;
  spec.name = name;
  spec.allowed_identifiers = patterns;
  spec.acme_directory_url = directory_url;
  auto tenant = store_->CreateTenant({"test", "test"}, spec);
  return tenant.ok() ? tenant->id : 0;
}

std::string Fixture::AddToken(storage::TenantId tenant, storage::Role role) {
  std::string token = NewBearerToken();
  auto identity =
      store_->AddTokenIdentity(AdminScope(tenant), TokenDigest(token), role, "test", std::nullopt);
  return identity.ok() ? token : "";
}

}  // namespace acmevault::service::testing
