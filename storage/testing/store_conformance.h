// The conformance suite every Store implementation passes: one set of parameterised tests
// (store_conformance_tenants.cc, _accounts.cc, _key_leases.cc, _compromise_runs.cc, _orders.cc,
// _certificates.cc, _challenges.cc, _api.cc and _audit.cc; the fixture is in
// store_conformance.cc), instantiated per implementation by a test target:
//
//   INSTANTIATE_TEST_SUITE_P(Fake, StoreConformanceTest,
//                            ::testing::Values(FakeStoreFactory()), FactoryName);
//
// Each test gets a fresh, empty store from the factory (with KEK "kek-a"), a FakeClock, and reports
// every private key it generated to the harness afterwards (the PostgreSQL harness searches a
// pg_dump of the test's database for them).
#ifndef ACMEVAULT_STORAGE_TESTING_STORE_CONFORMANCE_H_
#define ACMEVAULT_STORAGE_TESTING_STORE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/testing/fake_clock.h"
#include "gtest/gtest.h"
#include "storage/kek_set.h"
#include "storage/store.h"
#include "storage/testing/key_material.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage::testing {

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
  std::function<absl::StatusOr<std::unique_ptr<StoreHarness>>(const Clock* clock, KekSet keks,
                                                              const std::string& postgres_url)>
      make;
};

void PrintTo(const StoreFactory& factory, std::ostream* os);

// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string FactoryName(const ::testing::TestParamInfo<StoreFactory>& info);

inline constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
inline constexpr absl::StatusCode kAlreadyExists = absl::StatusCode::kAlreadyExists;
inline constexpr absl::StatusCode kFailedPrecondition = absl::StatusCode::kFailedPrecondition;
inline constexpr absl::StatusCode kInvalidArgument = absl::StatusCode::kInvalidArgument;

// The fixture.
class StoreConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  Store& store() { return harness_->store(); }
  StoreHarness& harness() { return *harness_; }
  acmevault::testing::FakeClock& clock() { return clock_; }

  // A tenant named `name` whose certificates are due `renewal_window` before expiry.
  Tenant MakeTenant(const std::string& name, absl::Duration renewal_window = absl::Hours(24 * 30));
  static Scope ScopeOf(const Tenant& tenant);
  // A fresh key, remembered for the leak checks of AfterTest.
  crypto::PrivateKey NewKey(crypto::KeyAlgorithm algorithm = crypto::KeyAlgorithm::kEcdsaP256);
  static PublicKeyInfo InfoFor(const crypto::PrivateKey& key);
  // An account with a fresh active key (version 1). A tenant has one live account per
  // directory, so a second account of a tenant needs another `directory`.
  Account MakeAccount(const Scope& scope, const std::string& directory = "https://ca.test/dir");
  // The account's key lease, for ten minutes.
  KeyLease LeaseKeys(const Scope& scope, AccountId account);
  // A new order for `ids`, with its lease.
  Lease MakeOrder(const Scope& scope, AccountId account, std::vector<std::string> ids,
                  absl::Duration lease = absl::Minutes(1));
  // A certificate for `ids` valid from now for `lifetime`.
  NewCertificate CertificateFor(std::vector<std::string> ids, const std::string& serial,
                                absl::Duration lifetime = absl::Hours(24 * 90));
  // The actions of scope.tenant's audit log, in order.
  std::vector<std::string> AuditActions(const Scope& scope);
  // Stand-in CSR bytes (storage does not parse them): `size` bytes, every byte value among them.
  static std::string CsrBytes(size_t size, char salt = 0);
  // An order request carrying finalization material.
  static NewOrder WithMaterial(NewOrder order, std::string csr_der, const crypto::PrivateKey* key);

  const std::vector<KeyMaterial>& generated_keys() const { return generated_; }

 private:
  acmevault::testing::FakeClock clock_;
  std::unique_ptr<StoreHarness> harness_;
  std::vector<KeyMaterial> generated_;
};

}  // namespace acmevault::storage::testing

#endif  // ACMEVAULT_STORAGE_TESTING_STORE_CONFORMANCE_H_
