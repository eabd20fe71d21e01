// Test fixture for service logic: a FakeStore with a fake clock and a test KEK, and helpers
// that create tenants and credentials the way AdminService does.
#ifndef ACMEVAULT_SERVICE_TESTING_FIXTURE_H_
#define ACMEVAULT_SERVICE_TESTING_FIXTURE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/testing/fake_clock.h"
#include "crypto/pkcs11.h"
#include "service/account_keys.h"
#include "storage/store.h"
#include "storage/testing/fake_store.h"

namespace acmevault::service::testing {

class Fixture {
 public:
  Fixture();
  // Over the store `open` makes with the clock it is given (e.g. a PostgreSQL test database).
  // `shared_clock` (borrowed; outlives the fixture), when given, is that clock and clock(), so
  // that fixtures standing for several replicas of one database share one time.
  explicit Fixture(
      const std::function<std::unique_ptr<storage::Store>(const Clock* clock)>& open,
      acmevault::testing::FakeClock* shared_clock = nullptr);

  storage::Store& store() { return *store_; }
  // The fake it is (its transaction count); only for a fixture made by Fixture().
  storage::FakeStore& fake_store() { return *fake_; }
  acmevault::testing::FakeClock& clock() { return *clock_ptr_; }

  // The account keys over this store: vault keys, and token keys once UseToken was called.
  AccountKeys& keys() { return *keys_; }
  // keys() makes and opens PKCS11 tenants' keys in `token` (borrowed) from now on. Call it
  // before any component takes keys(): it replaces the object.
  void UseToken(crypto::Pkcs11Token* token);

  // `options` (a component's Options) with every store role it names (tenants, identities,
  // accounts, orders, authorizations, certificates, challenges, audit, compromise_runs, jobs,
  // limits) set to this store, and `keys` to keys().
  template <typename Options>
  Options WithStore(Options options) {
    storage::Store* s = store_.get();
    if constexpr (requires { options.tenants = s; }) options.tenants = s;
    if constexpr (requires { options.identities = s; }) options.identities = s;
    if constexpr (requires { options.accounts = s; }) options.accounts = s;
    if constexpr (requires { options.orders = s; }) options.orders = s;
    if constexpr (requires { options.authorizations = s; }) options.authorizations = s;
    if constexpr (requires { options.certificates = s; }) options.certificates = s;
    if constexpr (requires { options.challenges = s; }) options.challenges = s;
    if constexpr (requires { options.audit = s; }) options.audit = s;
    if constexpr (requires { options.compromise_runs = s; }) options.compromise_runs = s;
    if constexpr (requires { options.jobs = s; }) options.jobs = s;
    if constexpr (requires { options.limits = s; }) options.limits = s;
    if constexpr (requires { options.keys = keys_.get(); }) options.keys = keys_.get();
    return options;
  }

  // A tenant allowed `patterns`; its id.
  storage::TenantId AddTenant(const std::string& name, const std::vector<std::string>& patterns,
                              const std::string& directory_url = "https://ca.test/dir");
  // A fresh bearer token for `tenant` with `role`; returns the token text.
  std::string AddToken(storage::TenantId tenant, storage::Role role);
  // Scope of an administrator of `tenant`, for seeding data.
  storage::Scope AdminScope(storage::TenantId tenant) const {
    return {tenant, {"test", "test"}};
  }

 private:
  acmevault::testing::FakeClock clock_;
  acmevault::testing::FakeClock* clock_ptr_ = &clock_;
  std::unique_ptr<storage::Store> store_;
  storage::FakeStore* fake_ = nullptr;  // store_, when it is the fake.
  std::unique_ptr<AccountKeys> keys_;
};

}  // namespace acmevault::service::testing

#endif  // ACMEVAULT_SERVICE_TESTING_FIXTURE_H_
