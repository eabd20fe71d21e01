// The conformance suite every Store implementation passes: one set of parameterised tests
// (store_conformance.cc), instantiated per implementation by a test target:
//
//   INSTANTIATE_TEST_SUITE_P(Fake, StoreConformanceTest,
//                            ::testing::Values(FakeStoreFactory()), FactoryName);
//
// Each test gets a fresh, empty store from the factory, a FakeClock, and reports every private
// key it generated to the harness afterwards (the PostgreSQL harness searches a pg_dump of the
// test's database for them).
#ifndef ACMEVAULT_STORAGE_TESTING_STORE_CONFORMANCE_H_
#define ACMEVAULT_STORAGE_TESTING_STORE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"
#include "storage/kek_set.h"
#include "storage/store.h"
#include "storage/testing/key_material.h"

namespace acmevault::storage::testing {

// KEK texts the suite uses: the store starts with kKekA; rotation adds kKekB.
std::string KekText(absl::string_view id, char fill);
KekSet TestKeks(const std::string& text);

class StoreHarness {
 public:
  virtual ~StoreHarness() = default;
  virtual Store& store() = 0;
  // Another store over the same data with other KEKs (a replica restarted after rotation).
  virtual absl::StatusOr<std::unique_ptr<Store>> Reopen(KekSet keks) = 0;
  // Called after each test with every private key it generated; may add test failures.
  virtual void AfterTest(const std::vector<KeyMaterial>& generated) {}
};

struct StoreFactory {
  std::string name;
  // Skips (or, under tests/run, fails) when ACMEVAULT_PG_URL is absent.
  bool needs_postgres = false;
  // Makes a harness whose store starts empty, uses `clock` and the KEK set `keks`.
  std::function<absl::StatusOr<std::unique_ptr<StoreHarness>>(
      const Clock* clock, KekSet keks, const std::string& postgres_url)>
      make;
};

void PrintTo(const StoreFactory& factory, std::ostream* os);

// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string FactoryName(const ::testing::TestParamInfo<StoreFactory>& info);

// The fixture; its tests are in store_conformance.cc.
class StoreConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  Store& store() { return harness_->store(); }
  StoreHarness& harness() { return *harness_; }
  acmevault::testing::FakeClock& clock() { return clock_; }

  // A tenant named `name` whose certificates are due `renewal_window` before expiry.
  Tenant MakeTenant(const std::string& name,
                    absl::Duration renewal_window = absl::Hours(24 * 30));
  static Scope ScopeOf(const Tenant& tenant);
  // A fresh key, remembered for the leak checks of AfterTest.
  crypto::PrivateKey NewKey(crypto::KeyAlgorithm algorithm = crypto::KeyAlgorithm::kEcdsaP256);
  static PublicKeyInfo InfoFor(const crypto::PrivateKey& key);
  // An account with a fresh active key (version 1).
  Account MakeAccount(const Scope& scope);
  // A new order for `ids`, with its lease.
  Lease MakeOrder(const Scope& scope, AccountId account, std::vector<std::string> ids,
                  absl::Duration lease = absl::Minutes(1));
  // A certificate for `ids` valid from now for `lifetime`.
  NewCertificate CertificateFor(std::vector<std::string> ids, const std::string& serial,
                                absl::Duration lifetime = absl::Hours(24 * 90));
  // The actions of scope.tenant's audit log, in order.
  std::vector<std::string> AuditActions(const Scope& scope);

  const std::vector<KeyMaterial>& generated_keys() const { return generated_; }

 private:
  acmevault::testing::FakeClock clock_;
  std::unique_ptr<StoreHarness> harness_;
  std::vector<KeyMaterial> generated_;
};

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_STORE_CONFORMANCE_H_
