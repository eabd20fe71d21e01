// PostgresStore behaviour beyond the conformance suite: what only a real database shows
// (ciphertext moved between rows, bit flips in stored records, what pg_dump sees, tampering with
// the audit log by a superuser, replicas with separate connection pools) and the checks
// PostgresStore::Create makes.
#include "storage/postgres_store.h"

#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/migrate.h"
#include "storage/testing/key_material.h"
#include "storage/testing/round_trip_counter.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::Describe;
using ::acmevault::storage::testing::FindLeaks;
using ::acmevault::storage::testing::KekText;
using ::acmevault::storage::testing::KeyMaterial;
using ::acmevault::storage::testing::RoundTripCounter;
using ::acmevault::storage::testing::StatusIs;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::storage::testing::TestKeks;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const Actor kActor{"spiffe://test/admin", "test/Rpc"};

PublicKeyInfo InfoFor(const crypto::PrivateKey& key) {
  std::string spki = absl::WebSafeBase64Escape(key.public_key().ToDer());
  return PublicKeyInfo{absl::StrCat("{\"spki\":\"", spki, "\"}"), spki.substr(0, 43)};
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto db = TestDatabase::Create(url);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto store = Open(KekText("kek-a", 'a'));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  absl::StatusOr<std::unique_ptr<PostgresStore>> Open(const std::string& keks) {
    return db_->OpenStore(&clock_, TestKeks(keks));
  }

  // A certificate for `ids`, valid for a day from now, with `key` stored if given.
  NewCertificate CertificateFor(std::vector<std::string> ids, const std::string& serial,
                                const crypto::PrivateKey* key) {
    NewCertificate c;
    c.identifiers = std::move(ids);
    c.serial = serial;
    c.not_before = clock_.Now();
    c.not_after = clock_.Now() + absl::Hours(24);
    c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    c.private_key = key;
    return c;
  }

  Scope MakeTenant(const std::string& name) {
    TenantSpec spec;
    spec.name = name;
    spec.acme_directory_url = "https://ca.test/dir";
    auto t = store_->CreateTenant(kActor, spec);
    EXPECT_TRUE(t.ok()) << t.status();
    return Scope{t.ok() ? t->id : 0, kActor};
  }

  crypto::PrivateKey NewKey(crypto::KeyAlgorithm algorithm = crypto::KeyAlgorithm::kEcdsaP256) {
    auto key = crypto::PrivateKey::Generate(algorithm);
    if (!key.ok()) std::abort();
    generated_.push_back(Describe(*key));
    return *std::move(key);
  }

  AccountId MakeAccount(const Scope& scope, crypto::KeyAlgorithm algorithm =
                                                crypto::KeyAlgorithm::kEcdsaP256) {
    crypto::PrivateKey key = NewKey(algorithm);
    // One live account per tenant and directory: each gets a directory of its own.
    auto a = store_->CreateAccount(scope, absl::StrCat("https://ca.test/dir/", ++accounts_made_),
                                   key, InfoFor(key), KeyState::kActive);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? a->id : 0;
  }

  // A new order for `name` with `csr_der`, made as IssueCertificate makes one: its job released
  // and claimed by its creator ("r1") when a claim would take it, with the first step's load
  // (NewOrder::claim, first_step; no admission).
  NewOrder ClaimedOrderSpec(AccountId account, const std::string& name,
                            const std::string& csr_der) {
    NewOrder spec{account, {name}, "", "r1", absl::Minutes(1)};
    spec.csr_der = csr_der;
    spec.job_kind = "order_step";
    spec.job_ca = "https://ca.test/dir";
    spec.job_released = true;
    JobClaim claim;
    claim.owner = "r1";
    claim.now = clock_.Now();
    claim.lease_duration = absl::Minutes(2);
    claim.kinds = {"order_step"};
    spec.claim = claim;
    spec.first_step = StepAdmission{};
    return spec;
  }

  // A new order for `name` whose certificate key `key` (if given) is stored with it.
  OrderId MakeOrder(const Scope& scope, AccountId account, const std::string& name,
                    const crypto::PrivateKey* key) {
    NewOrder order{account, {name}, "", "replica-1", absl::Minutes(1)};
    order.csr_der = "csr of " + name;
    order.certificate_key = key;
    auto o = store_->CreateOrJoinOrder(scope, order);
    EXPECT_TRUE(o.ok()) << o.status();
    return o.ok() ? o->order.id : 0;
  }

  // Runs SQL as the superuser with triggers off, as an attacker with database access could.
  void Tamper(const std::string& sql) {
    ASSERT_OK(db_->Execute("SET session_replication_role = replica; " + sql));
  }

  acmevault::testing::FakeClock clock_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PostgresStore> store_;
  std::vector<KeyMaterial> generated_;
  int accounts_made_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Create

TEST(PostgresStoreCreate, WithoutAKeyEncryptionKeyNothingIsEvenConnected) {
  PostgresStoreOptions options;
  options.pool.url = "postgresql://nobody@127.0.0.1:1/nothing";
  options.pool.retry_budget = absl::ZeroDuration();
  EXPECT_THAT(PostgresStore::Create(options, KekSet()),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no key-encryption key"));
  // With a key, the same options get as far as connecting (and fail there).
  EXPECT_THAT(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kUnavailable, "checking the database"));
}

// Collaborators are checked by Create, before any connection, never left null for later.
TEST(PostgresStoreCreate, RefusesANullClockOrPoolClock) {
  PostgresStoreOptions options;
  options.pool.url = "postgresql://nobody@127.0.0.1:1/nothing";
  options.pool.retry_budget = absl::ZeroDuration();
  options.clock = nullptr;
  EXPECT_THAT(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kInvalidArgument, "clock is null"));
  options.clock = Clock::Real();
  options.pool.clock = nullptr;
  EXPECT_THAT(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kInvalidArgument, "pool clock is null"));
}

TEST_F(PostgresStoreTest, RefusesARoleThatBypassesRowLevelSecurity) {
  PostgresStoreOptions options;
  options.pool.url = db_->superuser_url();
  EXPECT_THAT(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kFailedPrecondition, "bypasses row-level security"));
  options.require_row_security = false;
  EXPECT_OK(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))).status());
}

TEST_F(PostgresStoreTest, HealthFailsWhileTheSchemaIsWrongOrTheDatabaseRefusesConnections) {
  PostgresStore* store = store_.get();
  EXPECT_OK(store->CheckHealth());
  // A schema one migration behind the binary (as after a restore of an older dump).
  const std::string latest = absl::StrCat(LatestSchemaVersion());
  ASSERT_OK(db_->Execute("UPDATE schema_version SET version = -version WHERE version = " + latest));
  EXPECT_THAT(store->CheckHealth(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "run acmevaultd migrate"));
  ASSERT_OK(db_->Execute("UPDATE schema_version SET version = -version WHERE version < 0"));
  EXPECT_OK(store->CheckHealth());
  // The database refuses the app role's connections, and its open ones are cut.
  ASSERT_OK(db_->Execute(absl::StrCat("REVOKE CONNECT ON DATABASE ", db_->name(),
                                      " FROM PUBLIC; SELECT pg_terminate_backend(pid) FROM "
                                      "pg_stat_activity WHERE datname = current_database() AND "
                                      "pid <> pg_backend_pid()")));
  EXPECT_THAT(store->CheckHealth(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(db_->Execute(absl::StrCat("GRANT CONNECT ON DATABASE ", db_->name(), " TO PUBLIC")));
  EXPECT_OK(store->CheckHealth());
}

TEST(PostgresStoreCreate, RefusesASchemaOlderThanTheBinary) {
  ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
  auto db = TestDatabase::Create(url, /*migrate=*/false);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_OK(Migrate(MigrateOptions{(*db)->superuser_url(), 3}).status());
  ASSERT_OK((*db)->CreateAppRole());
  PostgresStoreOptions options;
  options.pool.url = (*db)->app_url();
  EXPECT_THAT(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("schema is at version 3, this binary needs ",
                                    LatestSchemaVersion(), ": run acmevaultd migrate")));
}

// Rolling upgrades: the first replica of a new release migrates; the old ones keep (re)starting
// against the newer schema as long as every newer migration says they may.
TEST(PostgresStoreCreate, StartsOnANewerSchemaOnlyWhenItIsMarkedCompatible) {
  ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
  auto db = TestDatabase::Create(url, /*migrate=*/false);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_OK(Migrate(MigrateOptions{(*db)->superuser_url()}).status());
  ASSERT_OK((*db)->CreateAppRole());
  const int known = LatestSchemaVersion();
  ASSERT_OK((*db)->Execute(absl::StrCat(
      "INSERT INTO schema_version (version, name, sha256, compatible_from) VALUES (", known + 1,
      ", 'future', sha256('x'), ", known, ")")));
  PostgresStoreOptions options;
  options.pool.url = (*db)->app_url();
  EXPECT_OK(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))).status());

  ASSERT_OK((*db)->Execute(absl::StrCat("UPDATE schema_version SET compatible_from = ", known + 1,
                                        " WHERE version = ", known + 1)));
  EXPECT_THAT(PostgresStore::Create(options, TestKeks(KekText("k", 'k'))),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("database schema is at version ", known + 1,
                                    ", which needs a binary that knows migration ", known + 1,
                                    " or later; this one knows ", known,
                                    ": upgrade acmevaultd")));
}

// ---------------------------------------------------------------------------------------------
// Sealed keys at rest

// InsertCertificate (and an order's completion, which shares its insert) sends the INSERT with
// COMMIT and makes the certificate it returns itself: every field must be the row's as stored
// and read back, times below a microsecond dropped as PostgreSQL drops them.
TEST_F(PostgresStoreTest, AnInsertedCertificateIsTheRowStored) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  auto time = [](std::optional<absl::Time> t) {
    return t ? absl::StrCat(absl::ToUnixNanos(*t)) : std::string("unset");
  };
  auto fields = [&](const Certificate& c) {
    return absl::StrCat(
        c.id, "|", c.tenant, "|", c.account.value_or(-1), "|", c.order.value_or(-1), "|",
        absl::StrJoin(c.identifiers, ","), "|", c.serial, "|", time(c.not_before), "|",
        time(c.not_after), "|", c.chain_pem, "|", c.account_key_version.value_or(-1), "|",
        c.has_private_key, "|", time(c.revoked_at), "|", c.revocation_reason.has_value(), "|",
        time(c.superseded_at), "|", c.replaces_serial, "|", time(c.ari_window_start), "|",
        time(c.ari_window_end), "|", time(c.ari_next_check), "|", time(c.crl_next_check), "|",
        time(c.revoked_outside_at), "|", c.revoked_outside_reason.has_value(), "|",
        time(c.created_at));
  };
  crypto::PrivateKey key = NewKey();
  NewCertificate with_key = CertificateFor({"a.test", "www.a.test"}, "0abc", &key);
  with_key.not_before = clock_.Now() - absl::Nanoseconds(1500);
  with_key.not_after = clock_.Now() + absl::Hours(24) + absl::Nanoseconds(999);
  with_key.account = account;
  with_key.account_key_version = 1;
  with_key.crl_next_check = clock_.Now() + absl::Hours(1) + absl::Nanoseconds(7);
  clock_.Advance(absl::Nanoseconds(2500));
  for (const NewCertificate& c : {with_key, CertificateFor({"b.test"}, "0def", nullptr)}) {
    ASSERT_OK_AND_ASSIGN(Certificate made, store_->InsertCertificate(alpha, c));
    ASSERT_OK_AND_ASSIGN(Certificate stored, store_->GetCertificate(alpha, made.id));
    EXPECT_EQ(fields(made), fields(stored));
    EXPECT_EQ(made.has_private_key, c.private_key != nullptr);
  }
  // A refused insert (the serial again) fails the whole transaction: no audit row, no row.
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> before, store_->ListAudit(alpha, PageRequest{}));
  EXPECT_FALSE(store_->InsertCertificate(alpha, CertificateFor({"c.test"}, "0abc", nullptr)).ok());
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> after, store_->ListAudit(alpha, PageRequest{}));
  EXPECT_EQ(after.items.size(), before.items.size());
  EXPECT_THAT(store_->GetCurrentCertificate(alpha, {"c.test"}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

TEST_F(PostgresStoreTest, CiphertextCopiedToAnotherRowFailsToOpen) {
  Scope alpha = MakeTenant("alpha");
  Scope beta = MakeTenant("beta");
  AccountId a1 = MakeAccount(alpha);
  AccountId a2 = MakeAccount(alpha);
  AccountId b1 = MakeAccount(beta);
  crypto::PrivateKey next = NewKey();
  ASSERT_OK_AND_ASSIGN(KeyLease lease, store_->AcquireKeyLease(alpha, a2, absl::Minutes(1)));
  ASSERT_OK(store_->AddPendingKey(alpha, lease, next, InfoFor(next)).status());

  auto copy_key = [&](AccountId to, int to_version, AccountId from, int from_version,
                      const std::string& columns) {
    std::string set;
    for (const std::string& c : {std::string("kek_id"), std::string("wrapped_data_key"),
                                 std::string("sealed_private_key")}) {
      if (columns.find(c) == std::string::npos) continue;
      absl::StrAppend(&set, set.empty() ? "" : ", ", c, " = src.", c);
    }
    Tamper(absl::StrCat("UPDATE account_keys SET ", set,
                        " FROM account_keys src WHERE account_keys.account_id = ", to,
                        " AND account_keys.version = ", to_version, " AND src.account_id = ",
                        from, " AND src.version = ", from_version));
  };
  auto expect_not_authentic = [&](const Scope& scope, AccountId account, int version) {
    EXPECT_THAT(store_->GetKey(scope, account, version, "x"),
                StatusIs(absl::StatusCode::kDataLoss,
                         absl::StrCat("sealed key of ",
                                      AccountKeyContext(scope.tenant, account, version),
                                      " does not authenticate")));
  };

  copy_key(a1, 1, a2, 1, "kek_id wrapped_data_key sealed_private_key");  // same tenant
  expect_not_authentic(alpha, a1, 1);
  copy_key(a2, 2, a2, 1, "kek_id wrapped_data_key sealed_private_key");  // other version
  expect_not_authentic(alpha, a2, 2);
  copy_key(b1, 1, a2, 1, "kek_id wrapped_data_key sealed_private_key");  // other tenant
  expect_not_authentic(beta, b1, 1);
  // The source row itself still opens, and half a record moved is as useless as all of it.
  EXPECT_OK(store_->GetKey(alpha, a2, 1, "x").status());
  AccountId a3 = MakeAccount(alpha);
  copy_key(a3, 1, a2, 1, "sealed_private_key");
  expect_not_authentic(alpha, a3, 1);

  // Certificate keys are bound to their certificate id.
  crypto::PrivateKey k1 = NewKey();
  crypto::PrivateKey k2 = NewKey();
  ASSERT_OK_AND_ASSIGN(Certificate c1,
                       store_->InsertCertificate(alpha, CertificateFor({"a.test"}, "01", &k1)));
  ASSERT_OK_AND_ASSIGN(Certificate c2,
                       store_->InsertCertificate(alpha, CertificateFor({"b.test"}, "02", &k2)));
  Tamper(absl::StrCat("UPDATE certificates SET wrapped_data_key = src.wrapped_data_key, "
                      "sealed_private_key = src.sealed_private_key FROM certificates src "
                      "WHERE certificates.id = ", c1.id, " AND src.id = ", c2.id));
  EXPECT_THAT(store_->GetCertificateKey(alpha, c1.id, "x"),
              StatusIs(absl::StatusCode::kDataLoss, "does not authenticate"));
  EXPECT_OK(store_->GetCertificateKey(alpha, c2.id, "x").status());
}

TEST_F(PostgresStoreTest, OrderKeyCopiedToAnotherRowFailsToOpen) {
  Scope alpha = MakeTenant("alpha");
  Scope beta = MakeTenant("beta");
  AccountId a = MakeAccount(alpha);
  AccountId b = MakeAccount(beta);
  crypto::PrivateKey k1 = NewKey();
  crypto::PrivateKey k2 = NewKey();
  crypto::PrivateKey k3 = NewKey();
  OrderId o1 = MakeOrder(alpha, a, "one.test", &k1);
  OrderId o2 = MakeOrder(alpha, a, "two.test", &k2);
  OrderId o3 = MakeOrder(beta, b, "three.test", &k3);
  auto copy_into = [&](OrderId to, const std::string& from_table, int64_t from) {
    Tamper(
        absl::StrCat("UPDATE orders SET kek_id = src.kek_id, wrapped_data_key = "
                     "src.wrapped_data_key, sealed_private_key = src.sealed_private_key FROM ",
                     from_table, " src WHERE orders.id = ", to, " AND src.id = ", from));
  };
  auto expect_not_authentic = [&](const Scope& scope, OrderId order) {
    EXPECT_THAT(store_->GetOrderCertificateKey(scope, order, "x"),
                StatusIs(absl::StatusCode::kDataLoss,
                         absl::StrCat("sealed key of ", OrderKeyContext(scope.tenant, order),
                                      " does not authenticate")));
  };

  copy_into(o1, "orders", o2);  // same tenant
  expect_not_authentic(alpha, o1);
  copy_into(o3, "orders", o2);  // other tenant
  expect_not_authentic(beta, o3);
  EXPECT_OK(store_->GetOrderCertificateKey(alpha, o2, "x").status());
  // A certificate's key is another kind of record, even under the same id.
  ASSERT_OK(
      db_->Execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), 1000, false), "
                   "setval(pg_get_serial_sequence('certificates', 'id'), 1000, false)"));
  crypto::PrivateKey k4 = NewKey();
  ASSERT_OK_AND_ASSIGN(Certificate c,
                       store_->InsertCertificate(alpha, CertificateFor({"c.test"}, "0c", &k4)));
  OrderId same_id = MakeOrder(alpha, a, "same.test", nullptr);
  ASSERT_EQ(same_id, c.id);
  Tamper(
      absl::StrCat("UPDATE orders SET kek_id = c.kek_id, wrapped_data_key = c.wrapped_data_key, "
                   "sealed_private_key = c.sealed_private_key FROM certificates c "
                   "WHERE orders.id = ",
                   same_id, " AND c.id = ", c.id));
  expect_not_authentic(alpha, same_id);
  EXPECT_OK(store_->GetCertificateKey(alpha, c.id, "x").status());
}

TEST_F(PostgresStoreTest, MaterialAttachedToABareOrderIsThenAsImmutableAsAnyOther) {
  Scope alpha = MakeTenant("alpha");
  AccountId account = MakeAccount(alpha);
  auto bare = [&](const std::string& name) {
    auto o = store_->CreateOrJoinOrder(alpha, NewOrder{account, {name}, "", "r", absl::Minutes(1)});
    EXPECT_TRUE(o.ok() && o->lease.has_value()) << o.status();
    return *o->lease;
  };
  Lease attached = bare("attached.test");
  crypto::PrivateKey key = NewKey();
  ASSERT_OK(store_->AttachOrderMaterial(alpha, attached, "csr of attached.test", &key));
  Lease at_ca = bare("at-ca.test");
  ASSERT_OK(store_->RecordOrderUrl(alpha, at_ca, "https://ca.test/order/9"));
  // Even the schema owner, with triggers on, can neither change attached material nor attach
  // any to an order that went to the CA.
  for (const std::string& sql :
       {absl::StrCat("UPDATE orders SET csr_der = '\\x01' WHERE id = ", attached.order),
        absl::StrCat("UPDATE orders SET csr_der = NULL, kek_id = NULL, wrapped_data_key = NULL, "
                     "sealed_private_key = NULL WHERE id = ",
                     attached.order),
        absl::StrCat("UPDATE orders SET csr_der = '\\x01' WHERE id = ", at_ca.order)}) {
    EXPECT_THAT(db_->Execute(sql),
                StatusIs(absl::StatusCode::kInternal, "order finalization material is immutable"))
        << sql;
  }
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       store_->GetOrderCertificateKey(alpha, attached.order, "finalize"));
  EXPECT_EQ(unsealed.public_key().ToDer(), key.public_key().ToDer());
}

TEST_F(PostgresStoreTest, OrderMaterialIsWrittenOnceAndATerminalOrderIsOnlyRewrapped) {
  Scope alpha = MakeTenant("alpha");
  AccountId account = MakeAccount(alpha);
  crypto::PrivateKey key = NewKey();
  OrderId with_key = MakeOrder(alpha, account, "key.test", &key);
  OrderId bare = MakeOrder(alpha, account, "bare.test", nullptr);
  // Even the schema owner, with triggers on, cannot replace, add or remove material.
  for (const std::string& sql :
       {absl::StrCat("UPDATE orders SET csr_der = '\\x01' WHERE id = ", with_key),
        absl::StrCat("UPDATE orders SET csr_der = NULL WHERE id = ", with_key),
        absl::StrCat("UPDATE orders SET sealed_private_key = sealed_private_key || '\\x00' "
                     "WHERE id = ",
                     with_key),
        absl::StrCat("UPDATE orders SET kek_id = NULL, wrapped_data_key = NULL, "
                     "sealed_private_key = NULL WHERE id = ",
                     with_key),
        absl::StrCat("UPDATE orders SET kek_id = src.kek_id, wrapped_data_key = "
                     "src.wrapped_data_key, sealed_private_key = src.sealed_private_key "
                     "FROM orders src WHERE orders.id = ",
                     bare, " AND src.id = ", with_key)}) {
    EXPECT_THAT(db_->Execute(sql),
                StatusIs(absl::StatusCode::kInternal, "order finalization material is immutable"))
        << sql;
  }
  // A CSR beyond 16 KiB does not fit the column either (triggers off: the check itself).
  EXPECT_THAT(db_->Execute(absl::StrCat("SET session_replication_role = replica; UPDATE orders "
                                        "SET csr_der = decode(repeat('00', 16385), 'hex') "
                                        "WHERE id = ",
                                        bare)),
              StatusIs(absl::StatusCode::kInternal, "orders_csr_der_size"));

  // Once the order is terminal nothing changes, but KEK rotation still re-wraps its key.
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> leases,
                       store_->ClaimStaleOrders("r", absl::Minutes(1), 10));
  ASSERT_EQ(leases.size(), 2u);
  for (const Lease& lease : leases) {
    ASSERT_OK(store_->TransitionOrder(alpha, lease, OrderState::kInvalid, {"gave up"}));
  }
  EXPECT_THAT(
      db_->Execute(absl::StrCat("UPDATE orders SET error = 'rewritten' WHERE id = ", with_key)),
      StatusIs(absl::StatusCode::kInternal, "order is invalid"));
  ASSERT_OK_AND_ASSIGN(auto rotated, Open(KekText("kek-a", 'a') + "," + KekText("kek-b", 'b')));
  ASSERT_OK_AND_ASSIGN(VaultMaintenance::RewrapProgress p, rotated->RewrapBatch(kActor, 10));
  EXPECT_EQ(p.rewrapped, 2);  // the account key and the order's key
  EXPECT_TRUE(p.done);
  ASSERT_OK_AND_ASSIGN(auto new_only, Open(KekText("kek-b", 'b')));
  ASSERT_OK_AND_ASSIGN(crypto::PrivateKey unsealed,
                       new_only->GetOrderCertificateKey(alpha, with_key, "x"));
  EXPECT_EQ(unsealed.public_key().ToDer(), key.public_key().ToDer());
  ASSERT_OK_AND_ASSIGN(Order o, new_only->GetOrder(alpha, with_key));
  EXPECT_EQ(o.state, OrderState::kInvalid);
  EXPECT_EQ(o.error, "gave up");
}

TEST_F(PostgresStoreTest, EverySingleBitFlipInAStoredRecordFailsToOpen) {
  Scope alpha = MakeTenant("alpha");
  AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->GetActiveKey(alpha, account, "x").status());

  pqxx::connection admin(db_->superuser_url());
  std::string wrapped, sealed;
  {
    pqxx::work tx(admin);
    pqxx::row r = tx.exec_params1(
        "SELECT wrapped_data_key, sealed_private_key FROM account_keys WHERE account_id = $1",
        account);
    wrapped = pqxx::binarystring(r[0]).str();
    sealed = pqxx::binarystring(r[1]).str();
  }
  const std::string record = wrapped + sealed;
  auto store_record = [&](const std::string& bytes) {
    pqxx::work tx(admin);
    tx.exec0("SET LOCAL session_replication_role = replica");
    std::string w = bytes.substr(0, wrapped.size());
    std::string s = bytes.substr(wrapped.size());
    tx.exec_params0(
        "UPDATE account_keys SET wrapped_data_key = $2, sealed_private_key = $3 "
        "WHERE account_id = $1",
        account, pqxx::binarystring(w.data(), w.size()), pqxx::binarystring(s.data(), s.size()));
    tx.commit();
  };

  const std::string expected = absl::StrCat(
      "sealed key of ", AccountKeyContext(alpha.tenant, account, 1),
      " does not authenticate");
  std::mt19937 rng(8555);  // fixed seed: the same 1,000 flips every run
  std::uniform_int_distribution<size_t> bit(0, record.size() * 8 - 1);
  std::set<size_t> in_wrapped_key, in_sealed_key;
  for (int i = 0; i < 1000; ++i) {
    size_t b = bit(rng);
    (b / 8 < wrapped.size() ? in_wrapped_key : in_sealed_key).insert(b);
    std::string flipped = record;
    flipped[b / 8] = static_cast<char>(flipped[b / 8] ^ (1 << (b % 8)));
    store_record(flipped);
    auto opened = store_->GetActiveKey(alpha, account, "x");
    ASSERT_FALSE(opened.ok()) << "bit " << b << " flipped and the record still opened";
    // DATA_LOSS, naming the record only: never bytes of the key or the ciphertext.
    ASSERT_EQ(opened.status().code(), absl::StatusCode::kDataLoss) << opened.status();
    ASSERT_EQ(opened.status().message(), expected);
  }
  EXPECT_GT(in_wrapped_key.size(), 50u);
  EXPECT_GT(in_sealed_key.size(), 300u);
  store_record(record);
  EXPECT_OK(store_->GetActiveKey(alpha, account, "x").status());
}

TEST_F(PostgresStoreTest, PgDumpContainsNoPrivateKeyAfterAFullWorkload) {
  Scope alpha = MakeTenant("alpha");
  Scope beta = MakeTenant("beta");
  AccountId rsa = MakeAccount(alpha, crypto::KeyAlgorithm::kRsa2048);
  AccountId p384 = MakeAccount(beta, crypto::KeyAlgorithm::kEcdsaP384);
  crypto::PrivateKey next = NewKey();
  ASSERT_OK_AND_ASSIGN(KeyLease lease, store_->AcquireKeyLease(alpha, rsa, absl::Minutes(1)));
  ASSERT_OK(store_->AddPendingKey(alpha, lease, next, InfoFor(next)).status());
  ASSERT_OK(store_->PromoteKey(alpha, lease, 2));
  ASSERT_OK(store_->MarkKeyCompromised(alpha, lease, 1));
  ASSERT_OK(store_->GetActiveKey(beta, p384, "sign").status());
  crypto::PrivateKey cert_key = NewKey(crypto::KeyAlgorithm::kRsa2048);
  ASSERT_OK_AND_ASSIGN(Certificate stored, store_->InsertCertificate(
                                               alpha, CertificateFor({"www.alpha.test"}, "abc1",
                                                                     &cert_key)));
  ASSERT_OK(store_->GetCertificateKey(alpha, stored.id, "serve").status());
  crypto::PrivateKey order_key = NewKey(crypto::KeyAlgorithm::kEcdsaP384);
  OrderId order = MakeOrder(beta, p384, "www.beta.test", &order_key);
  ASSERT_OK(store_->GetOrderCertificateKey(beta, order, "finalize").status());
  // A kept EAB HMAC key: neither its bytes nor their base64url (how the API takes it) appear.
  const std::string eab_mac = "eab-hmac-5c1e0f9b27d4a3";
  ASSERT_OK(store_->KeepEabKey(beta, "https://ca.test/dir", "kid-beta", eab_mac).status());
  ASSERT_OK(store_->GetEabKey(beta, "newAccount").status());
  // Rotate the KEK: re-wrapped rows must not leak either.
  ASSERT_OK_AND_ASSIGN(auto rotated, Open(KekText("kek-a", 'a') + "," + KekText("kek-b", 'b')));
  ASSERT_OK_AND_ASSIGN(VaultMaintenance::RewrapProgress p, rotated->RewrapBatch(kActor, 100));
  // alpha's two account keys, beta's one, the certificate key, the order's key, the EAB key
  EXPECT_EQ(p.rewrapped, 6);
  EXPECT_TRUE(p.done);
  {
    pqxx::connection admin(db_->superuser_url());
    pqxx::work tx(admin);
    EXPECT_EQ(
        tx.exec_params1("SELECT kek_id FROM orders WHERE id = $1", order)[0].as<std::string>(),
        "kek-b");
  }

  ASSERT_OK_AND_ASSIGN(std::string dump, db_->Dump());
  EXPECT_THAT(dump, HasSubstr("COPY public.account_keys"));
  EXPECT_THAT(dump, HasSubstr("kek-b"));  // the wrapped rows are there
  EXPECT_THAT(FindLeaks(dump, generated_), IsEmpty());
  EXPECT_THAT(dump, HasSubstr("kid-beta"));  // the key id is no secret
  EXPECT_THAT(dump, Not(HasSubstr(eab_mac)));
  EXPECT_THAT(dump, Not(HasSubstr(absl::WebSafeBase64Escape(eab_mac))));

  // The search itself works: a key stored in the clear (DER as bytea, PEM and JWK "d" as text)
  // is found in every one of those forms.
  const KeyMaterial& planted = generated_[0];
  ASSERT_OK(db_->Execute(absl::StrCat(
      "CREATE TABLE plaintext_mistake (der bytea, pem text, d text); "
      "INSERT INTO plaintext_mistake VALUES (decode('", absl::BytesToHexString(planted.der),
      "', 'hex'), '", planted.pem, "', '", planted.jwk_d, "')")));
  ASSERT_OK_AND_ASSIGN(dump, db_->Dump());
  EXPECT_THAT(FindLeaks(dump, {planted}),
              ::testing::IsSupersetOf({"key 0 marker 1", "key 0 marker 2", "key 0 marker 3",
                                       "key 0 marker 4"}));
}

// ---------------------------------------------------------------------------------------------
// The audit chain against a superuser

TEST_F(PostgresStoreTest, EditedAuditRowIsDetected) {
  Scope alpha = MakeTenant("alpha");
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK(store_->AppendAudit(alpha, AuditEvent{"Issue", {"a.test"}, 1, 1, "", "ok",
                                                    absl::StrCat("event ", i)}));
  }
  ASSERT_OK(store_->VerifyAuditChain(alpha));
  Tamper(absl::StrCat("UPDATE audit_log SET outcome = 'denied' WHERE tenant_id = ", alpha.tenant,
                      " AND seq = 3"));
  EXPECT_THAT(store_->VerifyAuditChain(alpha),
              StatusIs(absl::StatusCode::kDataLoss,
                       absl::StrCat("audit chain of tenant ", alpha.tenant,
                                    " broken at seq 3: row does not match its hash")));
  // Recomputing the edited row's hash moves the break to the next row.
  Tamper(absl::StrCat("UPDATE audit_log a SET hash = av_audit_digest(a) WHERE tenant_id = ",
                      alpha.tenant, " AND seq = 3"));
  EXPECT_THAT(store_->VerifyAuditChain(alpha),
              StatusIs(absl::StatusCode::kDataLoss,
                       "broken at seq 4: prev_hash is not the hash of seq 3"));
}

// Migrations 0023 and 0028 rewrote av_audit_encoding in PL/pgSQL (planned once per connection;
// the identifiers gathered in a loop): its bytes are still those of 0005's SQL body, evaluated here
// as a query, for rows with and without identifiers, account, key version and detail, and the
// stored hashes (written through the trigger) still verify.
TEST_F(PostgresStoreTest, TheAuditEncodingIsTheBytesOfItsFirstDefinition) {
  Scope alpha = MakeTenant("alpha");
  ASSERT_OK(store_->AppendAudit(alpha, AuditEvent{"Issue", {"b.test", "a.test"}, 7, 2,
                                                  "https://ca/order/1", "ok", "detail"}));
  ASSERT_OK(store_->AppendAudit(alpha, AuditEvent{"Event", {}, std::nullopt, std::nullopt, "",
                                                  "ok", ""}));
  ASSERT_OK(store_->VerifyAuditChain(alpha));
  pqxx::connection admin(db_->superuser_url());
  pqxx::nontransaction tx(admin);
  const pqxx::result r = tx.exec_params(
      "SELECT seq, av_audit_encoding(a) = (convert_to('acmevault-audit-v1', 'UTF8') "
      "|| a.prev_hash || int8send(a.tenant_id) || int8send(a.seq) "
      "|| int8send((extract(epoch FROM a.at) * 1000000)::bigint) "
      "|| av_audit_text(a.actor) || av_audit_text(a.rpc) || av_audit_text(a.action) "
      "|| int4send(cardinality(a.identifiers)) "
      "|| coalesce((SELECT string_agg(av_audit_text(x), ''::bytea ORDER BY n) "
      "FROM unnest(a.identifiers) WITH ORDINALITY AS u(x, n)), ''::bytea) "
      "|| av_audit_int(a.account_id) || av_audit_int(a.key_version) "
      "|| av_audit_text(a.acme_url) || av_audit_text(a.outcome) || av_audit_text(a.detail)), "
      "a.hash = sha256(av_audit_encoding(a)) "
      "FROM audit_log a WHERE tenant_id = $1 ORDER BY seq",
      alpha.tenant);
  ASSERT_GE(r.size(), 2u);
  for (const pqxx::row& row : r) {
    SCOPED_TRACE(row[0].as<std::string>());
    EXPECT_TRUE(row[1].as<bool>());
    EXPECT_TRUE(row[2].as<bool>());
  }
}

// Migration 0032: each audit row moves its tenant's head in one statement (an UPDATE that
// returns the row's seq, previous hash and hash), where the trigger read the head FOR UPDATE
// first; appends from many transactions at once still make one unbroken chain.
TEST_F(PostgresStoreTest, EachAuditRowMovesTheHeadInOneStatementAndConcurrentAppendsChain) {
  const Scope alpha = MakeTenant("alpha");
  ASSERT_OK(store_->AppendAudit(
      alpha, AuditEvent{"Event", {}, std::nullopt, std::nullopt, "", "ok", "first"}));
  {
    pqxx::connection admin(db_->superuser_url());
    pqxx::work tx(admin);
    tx.exec_params0(
        "INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, "
        "key_version, acme_url, outcome, detail) "
        "SELECT $1, now(), 'test', 'test/Rpc', 'Event', '{}', NULL, NULL, '', 'ok', 'row ' || i "
        "FROM generate_series(1, 5) i",
        alpha.tenant);
    // This transaction's own reads and writes of audit_heads, so far.
    const pqxx::row heads = tx.exec1(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_upd "
        "FROM pg_stat_xact_user_tables WHERE relname = 'audit_heads'");
    EXPECT_EQ(heads[0].as<int>(), 5) << "scans of audit_heads for 5 audit rows";
    EXPECT_EQ(heads[1].as<int>(), 5) << "updates of audit_heads for 5 audit rows";
    tx.commit();
  }
  ASSERT_OK(store_->VerifyAuditChain(alpha));

  constexpr int kThreads = 6;
  constexpr int kEach = 15;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!store_
                 ->AppendAudit(alpha, AuditEvent{"Event",
                                                 {},
                                                 std::nullopt,
                                                 std::nullopt,
                                                 "",
                                                 "ok",
                                                 absl::StrCat(t, "/", i)})
                 .ok()) {
          ++failed;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  ASSERT_OK(store_->VerifyAuditChain(alpha));
  pqxx::connection admin(db_->superuser_url());
  pqxx::nontransaction tx(admin);
  const pqxx::row head = tx.exec_params1(
      "SELECT h.seq, (SELECT count(*) FROM audit_log a WHERE a.tenant_id = h.tenant_id), "
      "h.prev_hash = (SELECT a.prev_hash FROM audit_log a WHERE a.tenant_id = h.tenant_id "
      "AND a.seq = h.seq) FROM audit_heads h WHERE h.tenant_id = $1",
      alpha.tenant);
  EXPECT_EQ(head[0].as<int>(), head[1].as<int>());
  EXPECT_GE(head[0].as<int>(), 1 + 5 + kThreads * kEach);
  EXPECT_TRUE(head[2].as<bool>());
}

// Migration 0033: an audit row's tenant is vouched for by its chain head, so the row makes no
// foreign-key check of its own (a scan of tenants and a lock of the tenant's row, per row,
// before); a row for an unknown tenant is still refused, and a tenant with audit rows still
// cannot be deleted.
TEST_F(PostgresStoreTest, AuditRowsCheckTheirTenantThroughTheHeadAlone) {
  const Scope alpha = MakeTenant("alpha");
  ASSERT_OK(store_->AppendAudit(
      alpha, AuditEvent{"Event", {}, std::nullopt, std::nullopt, "", "ok", "first"}));
  pqxx::connection admin(db_->superuser_url());
  const std::string insert =
      "INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, account_id, "
      "key_version, acme_url, outcome, detail) "
      "SELECT $1, now(), 'test', 'test/Rpc', 'Event', '{}', NULL, NULL, '', 'ok', 'row ' || i "
      "FROM generate_series(1, 5) i";
  {
    pqxx::work tx(admin);
    tx.exec_params0(insert, alpha.tenant);
    // This transaction's reads of tenants: the head's own key is checked again each time the
    // head moves after this transaction moved it (PostgreSQL re-checks a key on a row its own
    // transaction wrote), 4 for 5 rows; before 0033 the audit rows' own key added 5 more.
    const pqxx::row tenants = tx.exec1(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
        "FROM pg_stat_xact_user_tables WHERE relname = 'tenants'");
    EXPECT_EQ(tenants[0].as<int>(), 4) << "scans of tenants for 5 audit rows";
    tx.commit();
  }
  ASSERT_OK(store_->VerifyAuditChain(alpha));
  {
    pqxx::work tx(admin);
    EXPECT_THROW(tx.exec_params0(insert, alpha.tenant + 1000), pqxx::foreign_key_violation)
        << "an audit row for a tenant that does not exist";
  }
  // Nothing but its audit rows and their head refers to this tenant.
  pqxx::work tx(admin);
  try {
    tx.exec_params0("DELETE FROM tenants WHERE id = $1", alpha.tenant);
    ADD_FAILURE() << "a tenant with audit rows was deleted";
  } catch (const pqxx::foreign_key_violation& e) {
    EXPECT_THAT(e.what(), HasSubstr("audit_heads_tenant_id_fkey"));
  }
}

TEST_F(PostgresStoreTest, DeletedAuditRowsAreDetected) {
  Scope alpha = MakeTenant("alpha");
  Scope beta = MakeTenant("beta");
  for (const Scope& s : {alpha, beta}) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_OK(store_->AppendAudit(s, AuditEvent{"Event", {}, std::nullopt, std::nullopt, "",
                                                  "ok", ""}));
    }
  }
  Tamper(absl::StrCat("DELETE FROM audit_log WHERE tenant_id = ", alpha.tenant, " AND seq = 2"));
  EXPECT_THAT(store_->VerifyAuditChain(alpha),
              StatusIs(absl::StatusCode::kDataLoss, "broken at seq 2: row missing (next is 3)"));
  Tamper(absl::StrCat("DELETE FROM audit_log WHERE tenant_id = ", beta.tenant, " AND seq = 4"));
  EXPECT_THAT(store_->VerifyAuditChain(beta),
              StatusIs(absl::StatusCode::kDataLoss,
                       "the chain ends at seq 3 but its head is at seq 4"));
}

TEST_F(PostgresStoreTest, TheAppendOnlyTriggerStopsEvenTheOwner) {
  Scope alpha = MakeTenant("alpha");
  // Without disabling triggers, the schema owner cannot edit or delete audit rows either.
  EXPECT_THAT(db_->Execute("UPDATE audit_log SET outcome = 'x'"),
              StatusIs(absl::StatusCode::kInternal, "append-only"));
  EXPECT_THAT(db_->Execute("DELETE FROM audit_log"),
              StatusIs(absl::StatusCode::kInternal, "append-only"));
  EXPECT_THAT(db_->Execute("TRUNCATE audit_log"),
              StatusIs(absl::StatusCode::kInternal, "append-only"));
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

// InsertCertificate supersedes the live certificates of its identifiers in its own statement.
// Planned as the store plans it (a generic plan, on a table without statistics, as in a new
// database), that UPDATE reads those certificates only, not every live certificate of every
// tenant: an issuance must not cost more with each certificate stored.
TEST_F(PostgresStoreTest, ACertificatesSupersessionReadsOnlyItsIdentifiersLiveCertificates) {
  const Scope alpha = MakeTenant("alpha");
  const Scope beta = MakeTenant("beta");
  for (int i = 0; i < 40; ++i) {
    for (const Scope& s : {alpha, beta}) {
      ASSERT_OK(store_
                    ->InsertCertificate(s, CertificateFor({absl::StrCat("n", i, ".test")},
                                                          absl::StrCat("1", i), nullptr))
                    .status());
    }
  }
  ASSERT_OK(store_->InsertCertificate(alpha, CertificateFor({"a.test"}, "aa", nullptr)).status());

  pqxx::connection app(db_->app_url());
  pqxx::work tx(app);
  tx.exec("SET LOCAL plan_cache_mode = force_generic_plan");
  tx.exec_params("SELECT set_config('acmevault.tenant_id', $1, true)", absl::StrCat(alpha.tenant));
  app.prepare("insert_certificate", InsertCertificateSql());
  app.prepare_now("insert_certificate");  // as the store's EXECUTE finds it
  const int64_t now = absl::ToUnixMicros(clock_.Now());
  std::string plan;
  for (const pqxx::row& r : tx.exec(absl::StrCat(
           "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE insert_certificate(999999, ", alpha.tenant,
           ", NULL, NULL, '{a.test}', 'bb', ", now, ", ", now + 3600000000,
           ", 'chain', NULL, NULL, ", "NULL, NULL, ", now, ", NULL)"))) {
    absl::StrAppend(&plan, r[0].c_str(), "\n");
  }
  EXPECT_THAT(plan, HasSubstr("Update on certificates"));
  EXPECT_THAT(plan, Not(HasSubstr("Rows Removed by Filter"))) << plan;
  // It did supersede the one it should have.
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM certificates WHERE serial = 'aa' "
                     "AND superseded_at IS NOT NULL")[0]
                .as<int>(),
            1);
}

// An order's certificate is checked by its foreign key (orders (tenant_id, certificate_id)) with
// one probe, however many certificates the tenant has: the key's check, planned as the pool plans
// (a generic plan) while the table has no statistics, read every certificate of the tenant
// through certificates_by_identifiers when that index led with the tenant (before 0034).
TEST_F(PostgresStoreTest, RecordingAnOrdersCertificateReadsOnlyThatCertificate) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  const OrderId order = MakeOrder(alpha, account, "a.test", nullptr);
  CertificateId last = 0;
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK_AND_ASSIGN(Certificate c, store_->InsertCertificate(
                                            alpha, CertificateFor({absl::StrCat("n", i, ".test")},
                                                                  absl::StrCat("1", i), nullptr)));
    last = c.id;
  }

  pqxx::connection app(db_->app_url());
  pqxx::work tx(app);
  tx.exec("SET LOCAL plan_cache_mode = force_generic_plan");
  tx.exec_params("SELECT set_config('acmevault.tenant_id', $1, true)", absl::StrCat(alpha.tenant));
  auto reads = [&] {
    const pqxx::row r = tx.exec1(
        "SELECT seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables "
        "WHERE relname = 'certificates'");
    return std::make_pair(r[0].as<int64_t>(), r[1].as<int64_t>());
  };
  const auto before = reads();
  tx.exec_params("UPDATE orders SET certificate_id = $2 WHERE id = $1", order, last);
  const auto after = reads();
  EXPECT_EQ(after.first - before.first, 0) << "rows read by sequential scans";
  EXPECT_EQ(after.second - before.second, 1) << "rows fetched through indexes";
}

// ---------------------------------------------------------------------------------------------
// Replicas

// A replica's subscriptions (the engine's, the token cache's, the certificate cache's) share one
// LISTEN session: PostgreSQL wakes every listening session of the database for each
// notification, whatever its channel. Each subscription still hears its own channels only.
TEST_F(PostgresStoreTest, AStoresSubscriptionsShareOneListeningSession) {
  absl::Mutex mu;
  int scheduled = 0;
  std::vector<TenantId> revoked;
  std::vector<TenantId> changed;
  JobWakeups engine;
  engine.jobs_scheduled = [&] {
    absl::MutexLock lock(&mu);
    ++scheduled;
  };
  JobWakeups tokens;
  tokens.identities_revoked = [&](const Revocation& r) {
    absl::MutexLock lock(&mu);
    revoked.push_back(r.tenant);
  };
  JobWakeups certificates;
  certificates.certificates_changed = [&](TenantId tenant) {
    absl::MutexLock lock(&mu);
    changed.push_back(tenant);
  };
  auto heard = [&](auto done) {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
  };
  auto has = [](const std::vector<TenantId>& v, TenantId t) {
    return std::find(v.begin(), v.end(), t) != v.end();
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> a, store_->WatchJobs(engine));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> b, store_->WatchJobs(tokens));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> c, store_->WatchJobs(certificates));
  // Each hears that deliveries started (tenant 0: anything may be stale).
  ASSERT_TRUE(heard([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return scheduled > 0 && has(revoked, 0) && has(changed, 0);
  })) << "deliveries never started for every subscription";

  pqxx::connection admin(db_->superuser_url());
  auto listening = [&] {
    pqxx::work tx(admin);
    return tx
        .exec1(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN %'")[0]
        .as<int>();
  };
  EXPECT_EQ(listening(), 1);

  {
    pqxx::nontransaction tx(admin);
    tx.exec(absl::StrCat("NOTIFY ", kIdentitiesChannel, ", '7'; NOTIFY ", kCertificatesChannel,
                         ", '8'"));
  }
  ASSERT_TRUE(heard([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return has(revoked, 7) && has(changed, 8);
  })) << "a subscription missed its channel";
  {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(has(revoked, 8));
    EXPECT_FALSE(has(changed, 7));
  }

  // The session ends with the last subscription.
  a.reset();
  b.reset();
  EXPECT_EQ(listening(), 1);
  c.reset();
  for (int i = 0; i < 100 && listening() > 0; ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(listening(), 0);
}

// Notifications sent while the listener's connection is down are lost (a server restart ends
// it). When it is back, job_finished says so (JobNotice{}, tenant 0), as when deliveries first
// started: a caller waiting for an order whose end went unheard looks again, rather than
// waiting out its time (15 s in the pgrestart chaos storm).
TEST_F(PostgresStoreTest, AReconnectedListenerSaysThatJobNoticesMayHaveBeenMissed) {
  absl::Mutex mu;
  int missed = 0;
  JobWakeups waiter;
  waiter.job_finished = [&](const JobNotice& n) {
    absl::MutexLock lock(&mu);
    if (n.tenant == 0) ++missed;
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<JobWaker> waker, store_->WatchJobs(waiter));
  auto heard = [&](int n) {
    absl::MutexLock lock(&mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return missed >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
  };
  ASSERT_TRUE(heard(1)) << "deliveries never started";
  pqxx::connection admin(db_->superuser_url());
  {
    pqxx::nontransaction tx(admin);
    ASSERT_EQ(tx.exec1("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                       "datname = current_database() AND query LIKE 'LISTEN %'")[0]
                  .as<int>(),
              1);
  }
  EXPECT_TRUE(heard(2)) << "the listener came back without saying what may have been missed";
}

TEST_F(PostgresStoreTest, TwoReplicasClaimEachStaleOrderExactlyOnce) {
  Scope alpha = MakeTenant("alpha");
  AccountId account = MakeAccount(alpha);
  constexpr int kOrders = 40;
  std::set<OrderId> all;
  for (int i = 0; i < kOrders; ++i) {
    auto o = store_->CreateOrJoinOrder(
        alpha, NewOrder{account, {absl::StrCat("n", i, ".test")}, "", "creator", absl::Seconds(1)});
    ASSERT_TRUE(o.ok()) << o.status();
    all.insert(o->order.id);
  }
  clock_.Advance(absl::Seconds(1));
  // Two replicas: separate stores, separate connection pools.
  ASSERT_OK_AND_ASSIGN(auto replica_a, Open(KekText("kek-a", 'a')));
  ASSERT_OK_AND_ASSIGN(auto replica_b, Open(KekText("kek-a", 'a')));
  absl::Mutex mu;
  std::vector<Lease> claimed;
  auto claim = [&](PostgresStore* replica, const std::string& name) {
    for (int round = 0; round < kOrders; ++round) {
      auto got = replica->ClaimStaleOrders(name, absl::Minutes(5), 3);
      ASSERT_TRUE(got.ok()) << got.status();
      if (got->empty()) return;
      absl::MutexLock lock(&mu);
      claimed.insert(claimed.end(), got->begin(), got->end());
    }
  };
  std::thread a(claim, replica_a.get(), "replica-a");
  std::thread b(claim, replica_b.get(), "replica-b");
  a.join();
  b.join();
  std::set<OrderId> distinct;
  std::map<std::string, int> per_owner;
  for (const Lease& l : claimed) {
    distinct.insert(l.order);
    ++per_owner[l.owner];
  }
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kOrders));
  EXPECT_EQ(distinct, all);
  EXPECT_EQ(per_owner["replica-a"] + per_owner["replica-b"], kOrders);

  // A lease expires; the other replica takes the order over; the first one's write is refused.
  const Lease& first = claimed.front();
  PostgresStore* owner = first.owner == "replica-a" ? replica_a.get() : replica_b.get();
  PostgresStore* other = owner == replica_a.get() ? replica_b.get() : replica_a.get();
  clock_.Advance(absl::Minutes(5));
  ASSERT_OK_AND_ASSIGN(std::vector<Lease> taken, other->ClaimStaleOrders("taker", absl::Minutes(5), kOrders));
  EXPECT_EQ(taken.size(), static_cast<size_t>(kOrders));
  EXPECT_THAT(owner->RecordOrderUrl(alpha, first, "https://ca.test/order/stale"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "lease on order"));
  auto mine = std::find_if(taken.begin(), taken.end(),
                           [&](const Lease& l) { return l.order == first.order; });
  ASSERT_NE(mine, taken.end());
  EXPECT_EQ(mine->fencing_token, first.fencing_token + 1);
  EXPECT_OK(other->RecordOrderUrl(alpha, *mine, "https://ca.test/order/fresh"));
  ASSERT_OK_AND_ASSIGN(Order o, store_->GetOrder(alpha, first.order));
  EXPECT_EQ(o.acme_url, "https://ca.test/order/fresh");
}


// ---------------------------------------------------------------------------------------------
// Round trips: what each call costs in waits for the server (testing/round_trip_counter.h).

class PostgresStoreRoundTripTest : public PostgresStoreTest {
 protected:
  void SetUp() override {
    PostgresStoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto counter = RoundTripCounter::Start(db_->app_url());
    ASSERT_TRUE(counter.ok()) << counter.status();
    counter_ = std::move(*counter);
    PostgresStoreOptions options;
    options.pool.url = counter_->url();
    options.pool.size = 1;
    options.clock = &clock_;
    auto counted = PostgresStore::Create(options, TestKeks(KekText("kek-a", 'a')));
    ASSERT_TRUE(counted.ok()) << counted.status();
    counted_ = std::move(*counted);
  }
  void TearDown() override {
    counted_.reset();  // Its connections close first: the relay then stops.
    counter_.reset();
  }

  // The round trips of `call`, run once before to warm the connection (and its prepared
  // statements) up.
  template <typename Call>
  int RoundTrips(Call call) {
    call();
    counter_->Reset();
    call();
    return counter_->round_trips();
  }

  std::unique_ptr<RoundTripCounter> counter_;
  std::unique_ptr<PostgresStore> counted_;
};

TEST_F(PostgresStoreRoundTripTest, ACertificateReadIsOneRoundTrip) {
  const Scope alpha = MakeTenant("alpha");
  const Scope beta = MakeTenant("beta");
  ASSERT_OK(store_->InsertCertificate(alpha, CertificateFor({"a.test"}, "0a1b", nullptr)).status());
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->GetCertificateBySerial(alpha, "0A1B");
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(got->identifiers, std::vector<std::string>{"a.test"});
            }),
            1);
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->GetCurrentCertificate(alpha, {"a.test"});
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(got->serial, "0a1b");
            }),
            1);
  // The statement sets its own tenant: another tenant's read finds nothing. A miss costs a
  // second round trip, which tells a missing tenant apart.
  EXPECT_EQ(RoundTrips([&] {
              EXPECT_THAT(counted_->GetCertificateBySerial(beta, "0a1b"),
                          StatusIs(absl::StatusCode::kNotFound, "no certificate with serial"));
            }),
            2);
  const Scope missing{beta.tenant + 1000, kActor};
  EXPECT_THAT(counted_->GetCurrentCertificate(missing, {"a.test"}),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("tenant ", missing.tenant, " not found")));
}

TEST_F(PostgresStoreRoundTripTest, TokenAuthenticationIsOneRoundTrip) {
  const Scope alpha = MakeTenant("alpha");
  const std::string digest(32, 't');
  ASSERT_OK_AND_ASSIGN(Identity added,
                       store_->AddTokenIdentity(alpha, digest, Role::kHost, "", std::nullopt));
  EXPECT_EQ(RoundTrips([&] {
              auto found = counted_->AuthenticateToken(digest);
              ASSERT_TRUE(found.ok()) << found.status();
              EXPECT_EQ(found->id, added.id);
            }),
            1);
}

TEST_F(PostgresStoreRoundTripTest, ATransactionSetsItsTenantWithTheTenantCheck) {
  const Scope alpha = MakeTenant("alpha");
  // BEGIN with the tenant and the check of its row (the prepared check run by SQL EXECUTE),
  // sent with the read; COMMIT.
  EXPECT_EQ(RoundTrips([&] { ASSERT_OK(counted_->ListIdentities(alpha).status()); }), 2);
  // The same with REPEATABLE READ, READ ONLY, said in the BEGIN: BEGIN with the tenant; the
  // rows; the head; COMMIT.
  EXPECT_EQ(RoundTrips([&] { ASSERT_OK(counted_->VerifyAuditChain(alpha)); }), 4);
  EXPECT_THAT(counted_->ListIdentities(Scope{alpha.tenant + 1000, kActor}),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
}

// A write's audit rows are its transaction's last statement, sent with COMMIT: BEGIN with the
// tenant; the rows and COMMIT. They are sent as quoted values, which must arrive as they were.
TEST_F(PostgresStoreRoundTripTest, AWritesAuditRowsTravelWithItsCommit) {
  const Scope alpha = MakeTenant("alpha");
  AuditEvent event;
  event.action = "Note";
  event.identifiers = {"a.test", "it's \\ \"{b}\", c"};
  event.key_version = 3;
  event.acme_url = "https://ca.test/o/1?x='y'";
  event.outcome = "ok";
  event.detail = "a 'quoted' \\ detail $1); COMMIT; --";
  EXPECT_EQ(RoundTrips([&] { ASSERT_OK(counted_->AppendAudit(alpha, event)); }), 2);
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> page, store_->ListAudit(alpha, {}));
  ASSERT_GE(page.items.size(), 2u);
  for (size_t i = page.items.size() - 2; i < page.items.size(); ++i) {
    const AuditEvent& got = page.items[i].event;
    EXPECT_EQ(got.action, event.action);
    EXPECT_EQ(got.identifiers, event.identifiers);
    EXPECT_EQ(got.account, std::nullopt);
    EXPECT_EQ(got.key_version, event.key_version);
    EXPECT_EQ(got.acme_url, event.acme_url);
    EXPECT_EQ(got.detail, event.detail);
  }
  ASSERT_OK(store_->VerifyAuditChain(alpha));
}

// A claim is one statement outside a transaction block: the claimed rows, and with them when
// the next job is due and whether due jobs were left, asked after the claim.
TEST_F(PostgresStoreRoundTripTest, AClaimIsOneRoundTrip) {
  const Scope alpha = MakeTenant("alpha");
  const absl::Time t0 = absl::FromUnixSeconds(1800000000);
  for (const char* subject : {"a", "b", "c"}) {
    ASSERT_OK(store_->ScheduleJob(alpha, NewJob{"order_step", subject, "", t0}, t0).status());
  }
  ASSERT_OK(store_->ScheduleJob(alpha, NewJob{"order_step", "later", "", t0 + absl::Minutes(5)}, t0)
                .status());
  JobClaim claim;
  claim.owner = "replica-1";
  claim.now = t0;
  claim.kinds = {"order_step"};
  std::vector<std::string> claimed;
  std::vector<bool> left_due;
  std::vector<std::optional<absl::Time>> next;
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->ClaimJobs(claim);
              ASSERT_TRUE(got.ok()) << got.status();
              for (const ClaimedJob& j : got->jobs) claimed.push_back(j.job.subject);
              left_due.push_back(got->left_due);
              next.push_back(got->next_not_before);
            }),
            1);
  // One job each time, in due order; the claim leaves the others due until the last.
  EXPECT_THAT(claimed, ElementsAre("a", "b"));
  EXPECT_THAT(left_due, ElementsAre(true, true));
  EXPECT_THAT(next, ElementsAre(t0 + absl::Minutes(5), t0 + absl::Minutes(5)));
  claim.max_jobs = 5;
  ASSERT_OK_AND_ASSIGN(JobClaimResult last, counted_->ClaimJobs(claim));
  ASSERT_EQ(last.jobs.size(), 1u);
  EXPECT_EQ(last.jobs[0].job.subject, "c");
  EXPECT_FALSE(last.left_due);
  EXPECT_EQ(last.next_not_before, t0 + absl::Minutes(5));
  // A lease's write (here a renewal, then a reschedule) is its own fence: BEGIN with the tenant
  // and the write; COMMIT.
  const JobLease lease = last.jobs[0].lease;
  EXPECT_EQ(
      RoundTrips([&] { ASSERT_OK(counted_->RenewJob(lease, absl::Minutes(1), t0).status()); }), 2);
  EXPECT_EQ(
      RoundTrips([&] { ASSERT_OK(counted_->RescheduleJob(lease, t0 + absl::Minutes(2), "", t0)); }),
      2);
  ASSERT_OK_AND_ASSIGN(Job job, store_->GetJob(alpha, lease.job));
  EXPECT_EQ(job.not_before, t0 + absl::Minutes(2));
  EXPECT_EQ(job.lease_owner, "");
}

// What IssueCertificate reads before it orders is three prepared reads sent together, with an
// id drawn for the order it may make: one round trip, where a transaction took five (BEGIN with
// the tenant, three reads, COMMIT).
TEST_F(PostgresStoreRoundTripTest, AnIssuancesContextIsOneRoundTrip) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->InsertCertificate(alpha, CertificateFor({"a.test"}, "0d", nullptr)).status());
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->LoadIssueContext(alpha, {"A.test"});
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(got->tenant.id, alpha.tenant);
              ASSERT_EQ(got->accounts.size(), 1u);
              EXPECT_EQ(got->accounts[0].id, account);
              ASSERT_TRUE(got->current.has_value());
              EXPECT_EQ(got->current->serial, "0d");
              EXPECT_GT(got->order_id, 0);
            }),
            1);
  // A tenant that does not exist is told apart in the same round trip.
  const Scope missing{alpha.tenant + 1000, kActor};
  EXPECT_EQ(RoundTrips([&] {
              EXPECT_THAT(counted_->LoadIssueContext(missing, {"a.test"}),
                          StatusIs(absl::StatusCode::kNotFound,
                                   absl::StrCat("tenant ", missing.tenant, " not found")));
            }),
            1);
}

// Scheduling a job: BEGIN with the tenant and the upsert; its NOTIFY sent with COMMIT. The
// notice still reaches a listener once committed, and only then.
TEST_F(PostgresStoreRoundTripTest, AJobsNoticeTravelsWithItsCommit) {
  const Scope alpha = MakeTenant("alpha");
  struct Receiver final : pqxx::notification_receiver {
    explicit Receiver(pqxx::connection_base& c) : pqxx::notification_receiver(c, kJobsChannel) {}
    void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
    std::vector<std::string> payloads;
  };
  pqxx::connection listener(db_->app_url());
  Receiver receiver(listener);
  const absl::Time t0 = absl::FromUnixSeconds(1800000000);
  int subject = 0;
  EXPECT_EQ(
      RoundTrips([&] {
        ASSERT_OK(
            counted_
                ->ScheduleJob(alpha, NewJob{"order_step", absl::StrCat("s", ++subject), "", t0}, t0)
                .status());
      }),
      2);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (receiver.payloads.size() < 2 && absl::Now() < deadline) listener.await_notification(1, 0);
  EXPECT_THAT(receiver.payloads, ElementsAre("order_step", "order_step"));
}

// An order's transitions as the engine runs them, each a transaction of its fewest round trips:
// what a step reads under its lock (the job, the order, its sealed key, an id for its
// certificate) in one; the writes whose answers it needs in one; the writes whose answers
// nobody reads, the audit rows and the notices with COMMIT.
TEST_F(PostgresStoreRoundTripTest, AnOrdersTransitionsTakeOneRoundTripPerDependentStep) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->RecordAccountUrl(alpha, account, "https://ca.test/acct/1"));  // valid
  crypto::PrivateKey cert_key = NewKey();
  // Each step is counted on its second order, when the connection has its statements prepared.
  std::vector<std::vector<int>> counted;
  for (const std::string name : {"first.test", "second.test"}) {
    std::vector<int> trips;
    auto count = [&](auto call) {
      counter_->Reset();
      call();
      trips.push_back(counter_->round_trips());
    };
    NewOrder spec{account, {name}, "", "replica-1", absl::Minutes(1)};
    spec.csr_der = "csr of " + name;
    spec.certificate_key = &cert_key;
    spec.job_kind = "order_step";
    std::optional<Lease> lease;
    // BEGIN with the tenant, the order in flight and a fresh id; the order; its job, leased to
    // the creator; COMMIT.
    count([&] {
      auto created = counted_->CreateOrJoinOrder(alpha, spec);
      ASSERT_TRUE(created.ok()) << created.status();
      ASSERT_TRUE(created->created && created->lease.has_value());
      lease = created->lease;
    });
    ASSERT_TRUE(lease.has_value());
    // BEGIN with the order, its account, the tenant, the ledger and the account's active key;
    // the key's use audited with COMMIT.
    count([&] {
      auto loaded = counted_->LoadOrderStep(alpha, lease->order, "order", nullptr);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      EXPECT_EQ(loaded->order.id, lease->order);
      EXPECT_EQ(loaded->account.id, account);
      EXPECT_EQ(loaded->tenant.id, alpha.tenant);
      ASSERT_TRUE(loaded->key.has_value());
      EXPECT_TRUE(loaded->key->private_key.has_value());
    });
    const std::string url = absl::StrCat("https://ca.test/order/", lease->order);
    const std::string authz = absl::StrCat("https://ca.test/authz/", lease->order);
    const std::string token = absl::StrCat("tok-", lease->order);
    // BEGIN with the job and the order locked, the ledger row and the answer; the URL with
    // COMMIT.
    count([&] {
      auto started = counted_->RecordOrderStart(
          alpha, *lease, url,
          {{account, lease->order, authz, name, AuthorizationStatus::kPending,
            clock_.Now() + absl::Hours(1)}},
          {{token, token + ".thumb"}});
      ASSERT_TRUE(started.ok()) << started.status();
      ASSERT_EQ(started->size(), 1u);
      EXPECT_EQ((*started)[0].record.url, authz);
    });
    // BEGIN with the locks; the new state with COMMIT.
    count([&] { ASSERT_OK(counted_->TransitionOrder(alpha, *lease, OrderState::kReady, {})); });
    // BEGIN with the locks, the sealed key, the certificate's id, the deactivation and the
    // answer's removal; the certificate (superseding the current one), the order, the ledger,
    // the job's end and its notice with COMMIT (the certificate had a round trip of its own
    // before: 3).
    OrderCompletion done;
    done.certificate = CertificateFor({name}, absl::StrCat("0", lease->order), nullptr);
    done.deactivated_authorizations = {authz};
    done.challenge_tokens = {token};
    count([&] {
      auto finished = counted_->FinishOrder(alpha, *lease, done);
      ASSERT_TRUE(finished.ok()) << finished.status();
      EXPECT_TRUE(finished->has_private_key);
    });
    if (HasFatalFailure()) return;
    // Written as the transactions said.
    ASSERT_OK_AND_ASSIGN(Order o, store_->GetOrder(alpha, lease->order));
    EXPECT_EQ(o.state, OrderState::kValid);
    EXPECT_EQ(o.acme_url, url);
    EXPECT_THAT(store_->LookupChallenge(token), StatusIs(absl::StatusCode::kNotFound));
    EXPECT_THAT(store_->GetJob(alpha, lease->job), StatusIs(absl::StatusCode::kNotFound));
    counted.push_back(trips);
  }
  ASSERT_EQ(counted.size(), 2u);
  EXPECT_THAT(counted[1], ElementsAre(4, 2, 2, 2, 2));
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

// TransitionOrder with the order as its lease holder saw it (`seen`, as the engine's step passes
// it): the move is one statement sent with BEGIN, the tenant's set-up, the audit row and COMMIT,
// one round trip (2 without `seen`), made only when the row is as seen and the job's lease
// holds. A stale job lease is refused as without it; a stale `seen` costs the failed try and
// its ROLLBACK before the move is made as without it (4 round trips), from the row's state.
TEST_F(PostgresStoreRoundTripTest, AMoveOfTheOrderAsSeenTakesOneRoundTrip) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->RecordAccountUrl(alpha, account, "https://ca.test/acct/1"));  // valid
  NewOrder spec{account, {"seen.test"}, "", "replica-1", absl::Minutes(1)};
  spec.csr_der = "csr";
  spec.job_kind = "order_step";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store_->CreateOrJoinOrder(alpha, spec));
  ASSERT_TRUE(created.lease.has_value() && created.lease->job != 0);
  const Lease lease = *created.lease;
  ASSERT_OK(store_->RecordOrderUrl(alpha, lease, "https://ca.test/order/seen"));
  ASSERT_OK_AND_ASSIGN(const Order seen, store_->GetOrder(alpha, lease.order));
  ASSERT_EQ(seen.state, OrderState::kPending);
  auto count = [&](auto call) {
    counter_->Reset();
    call();
    return counter_->round_trips();
  };
  // The job's token is not the lease's: refused (its job's fencing token is stale).
  Lease stale = lease;
  stale.fencing_token += 1;
  EXPECT_THAT(counted_->TransitionOrder(alpha, stale, OrderState::kReady, {}, &seen),
              StatusIs(absl::StatusCode::kFailedPrecondition, "stale"));
  // Nor a job that is not the order's (the job id of another lease).
  Lease other_job = lease;
  other_job.job += 1000;
  EXPECT_THAT(counted_->TransitionOrder(alpha, other_job, OrderState::kReady, {}, &seen),
              StatusIs(absl::StatusCode::kFailedPrecondition, "lost"));
  ASSERT_OK_AND_ASSIGN(Order unmoved, store_->GetOrder(alpha, lease.order));
  EXPECT_EQ(unmoved.state, OrderState::kPending);
  // A move without `seen` first, so that the counts below find their statements prepared on
  // the connection (as they are after a replica's first orders).
  spec.identifiers = {"warm.test"};
  ASSERT_OK_AND_ASSIGN(CreateOrderResult warm, store_->CreateOrJoinOrder(alpha, spec));
  ASSERT_OK(store_->RecordOrderUrl(alpha, *warm.lease, "https://ca.test/order/warm"));
  ASSERT_OK(counted_->TransitionOrder(alpha, *warm.lease, OrderState::kReady, {}));

  EXPECT_EQ(count([&] {
              ASSERT_OK(counted_->TransitionOrder(alpha, lease, OrderState::kReady, {}, &seen));
            }),
            1);
  // `seen` is now behind the row (ready): the try refuses, and the move is made from the row.
  EXPECT_EQ(
      count([&] {
        ASSERT_OK(counted_->TransitionOrder(alpha, lease, OrderState::kProcessing, {}, &seen));
      }),
      4);
  ASSERT_OK_AND_ASSIGN(Order moved, store_->GetOrder(alpha, lease.order));
  EXPECT_EQ(moved.state, OrderState::kProcessing);
  const std::string id = absl::StrCat("order ", lease.order, ": ");
  std::vector<std::string> moves;
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store_->ListAudit(alpha, PageRequest{}));
  for (const AuditRecord& r : audit.items) {
    if (r.event.action == "TransitionOrder" && absl::StartsWith(r.event.detail, id)) {
      moves.push_back(r.event.detail);
    }
  }
  EXPECT_THAT(moves, ElementsAre(id + "pending -> ready", id + "ready -> processing"));
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

// A new order whose creator claims its job and loads its first step (NewOrder::claim and
// first_step, as IssueCertificate makes it, here without an admission): BEGIN with the tenant,
// the order in flight and a fresh id; the order, the job with its claim and the step's rows, in
// one pipeline; the audit rows with COMMIT (6 round trips before: the order, the job and the
// load each had their own; 4 while BEGIN had its own). The claim holds the claims' advisory lock to
// the transaction's end: under it now run the step's reads, the client's turn after them (the key
// opened) and COMMIT's round trip.
TEST_F(PostgresStoreRoundTripTest, AClaimedNewOrderIsMadeWithItsJobAndFirstLoadInOneRoundTrip) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->RecordAccountUrl(alpha, account, "https://ca.test/acct/1"));  // valid
  int made = 0;
  std::vector<std::shared_ptr<OrderStepState>> loads;
  EXPECT_EQ(RoundTrips([&] {
              const NewOrder spec = ClaimedOrderSpec(account, absl::StrCat("n", ++made, ".test"),
                                                     std::string("csr\0with a zero byte", 20));
              auto created = counted_->CreateOrJoinOrder(alpha, spec);
              ASSERT_TRUE(created.ok()) << created.status();
              ASSERT_TRUE(created->created && created->claimed.has_value());
              EXPECT_EQ(created->claimed->job.subject, absl::StrCat(created->order.id));
              EXPECT_EQ(created->order.csr_der, spec.csr_der);
              loads.push_back(created->first_step);
            }),
            3);
  ASSERT_EQ(loads.size(), 2u);
  ASSERT_NE(loads[1], nullptr);
  EXPECT_EQ(loads[1]->order.csr_der, std::string("csr\0with a zero byte", 20));
  EXPECT_EQ(loads[1]->account.id, account);
  EXPECT_EQ(loads[1]->tenant.id, alpha.tenant);
  ASSERT_TRUE(loads[1]->key.has_value());
  EXPECT_TRUE(loads[1]->key->private_key.has_value());
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

// The same with the id IssueCertificate's first read draws (IssueContext::order_id, given as
// NewOrder::id): no look for an order in flight and no draw first, so BEGIN with the tenant goes
// with the order's pipeline, then the audit rows with COMMIT (3 round trips without it, above).
// The first read still takes one round trip with the draw (AnIssuancesContextIsOneRoundTrip).
TEST_F(PostgresStoreRoundTripTest, AClaimedNewOrderWithItsIdDrawnAheadTakesTwoRoundTrips) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->RecordAccountUrl(alpha, account, "https://ca.test/acct/1"));  // valid
  std::vector<OrderId> drawn;
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(IssueContext read, store_->LoadIssueContext(alpha, {"n.test"}));
    drawn.push_back(read.order_id);
  }
  size_t made = 0;
  std::shared_ptr<OrderStepState> load;
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_LT(made, drawn.size());
              NewOrder spec = ClaimedOrderSpec(account, absl::StrCat("n", made, ".test"), "csr");
              spec.id = drawn[made++];
              auto created = counted_->CreateOrJoinOrder(alpha, spec);
              ASSERT_TRUE(created.ok()) << created.status();
              ASSERT_TRUE(created->created && created->claimed.has_value());
              EXPECT_EQ(created->order.id, spec.id);
              EXPECT_EQ(created->claimed->job.subject, absl::StrCat(spec.id));
              load = created->first_step;
            }),
            2);
  ASSERT_NE(load, nullptr);
  EXPECT_EQ(load->order.id, drawn[1]);
  ASSERT_TRUE(load->key.has_value());
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

// The same with the admission IssueCertificate's orders make (StepAdmission::budgets, here no
// budget): the CA hold it asks for first is read in the order's pipeline, not in a round trip
// of its own under the claims' lock (4 round trips before). A hold stored for the order's
// account and names is what the first step's admission finds; another account's is not.
TEST_F(PostgresStoreRoundTripTest, AClaimedNewOrdersAdmissionReadsItsCaHoldInTheOrdersPipeline) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  const AccountId other = MakeAccount(alpha);
  ASSERT_OK(store_->RecordAccountUrl(alpha, account, "https://ca.test/acct/1"));  // valid
  const absl::Time until = clock_.Now() + absl::Hours(1);
  ASSERT_OK(store_->RecordCaHold(alpha, {account, {"held.test"}, CaRequest::kNewOrder}, until,
                                 "rateLimited: too many"));
  ASSERT_OK(store_->RecordCaHold(alpha, {other, {"free2.test"}, CaRequest::kNewOrder}, until,
                                 "rateLimited: another account"));
  auto spec = [&](const std::string& name) {
    NewOrder out = ClaimedOrderSpec(account, name, "csr");
    out.first_step->budgets = [](const OrderStepState&) {
      return std::optional<std::vector<CaBudget>>(std::vector<CaBudget>{});
    };
    out.first_step->now = clock_.Now();
    return out;
  };
  int made = 0;
  std::shared_ptr<OrderStepState> free_step;
  EXPECT_EQ(RoundTrips([&] {
              auto created =
                  counted_->CreateOrJoinOrder(alpha, spec(absl::StrCat("free", ++made, ".test")));
              ASSERT_TRUE(created.ok()) << created.status();
              ASSERT_TRUE(created->created && created->claimed.has_value());
              free_step = created->first_step;
            }),
            3);
  ASSERT_NE(free_step, nullptr);
  ASSERT_TRUE(free_step->admission.has_value());
  EXPECT_EQ(free_step->admission->hold, std::nullopt);
  ASSERT_OK_AND_ASSIGN(CreateOrderResult held,
                       counted_->CreateOrJoinOrder(alpha, spec("held.test")));
  ASSERT_NE(held.first_step, nullptr);
  ASSERT_TRUE(held.first_step->admission.has_value());
  ASSERT_TRUE(held.first_step->admission->hold.has_value());
  EXPECT_EQ(held.first_step->admission->hold->until, until);
  EXPECT_EQ(held.first_step->admission->hold->problem, "rateLimited: too many");
}

// The first step's rows made with a claimed new order are read after the claim: what committed
// while the claim waited for the claims' advisory lock (here the account marked hijacked) is
// what the step gets, as LoadOrderStep would give it just after (NewOrder::first_step).
// (On the code that read them before the claim, the step got the account as it was.)
TEST_F(PostgresStoreTest, AClaimedNewOrdersFirstStepSeesWhatCommittedWhileItsClaimWaited) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK(store_->RecordAccountUrl(alpha, account, "https://ca.test/acct/1"));  // valid
  const NewOrder spec = ClaimedOrderSpec(account, "a.test", "csr");

  // The claims' lock ("acmvjobs", av_claim_jobs and av_take_new_job), held by another session.
  pqxx::connection holder(db_->superuser_url());
  pqxx::work held(holder);
  held.exec("SELECT pg_advisory_xact_lock(7017572999732617843)");
  absl::StatusOr<CreateOrderResult> created;
  std::thread creator([&] { created = store_->CreateOrJoinOrder(alpha, spec); });
  // The creator waits for the lock; then the account changes and the change commits.
  pqxx::connection admin(db_->superuser_url());
  bool waiting = false;
  for (int i = 0; i < 1000 && !waiting; ++i) {
    pqxx::nontransaction tx(admin);
    waiting = tx.exec1(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")[0]
                  .as<int>() > 0;
    if (!waiting) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(waiting) << "the creator never waited for the claims' lock";
  // (As MarkAccountHijacked writes it, but without its lock of the account row, which waits for
  // the creator's share lock of it: the new order references the account.)
  std::optional<absl::Time> hijacked_at;
  try {
    pqxx::work tx(admin);
    tx.exec("SET LOCAL lock_timeout = '10s'");
    hijacked_at = absl::FromUnixMicros(
        tx.exec1(absl::StrCat("UPDATE accounts SET hijacked_at = now() WHERE id = ", account,
                              " RETURNING (extract(epoch FROM hijacked_at) * 1000000)::bigint"))[0]
            .as<int64_t>());
    tx.commit();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "the account could not be marked: " << e.what();
  }
  held.commit();
  creator.join();
  ASSERT_TRUE(hijacked_at.has_value());

  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(created->claimed.has_value());
  ASSERT_NE(created->first_step, nullptr);
  EXPECT_EQ(created->first_step->account.hijacked_at, hijacked_at);
}

TEST_F(PostgresStoreRoundTripTest, TheReadsOfEveryIssuanceAreOneRoundTripEach) {
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  ASSERT_OK_AND_ASSIGN(Certificate cert,
                       store_->InsertCertificate(alpha, CertificateFor({"a.test"}, "0c", nullptr)));
  ASSERT_OK(store_->PutChallenge(alpha, "tok", "tok.thumb"));
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->GetTenant(alpha);
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(got->id, alpha.tenant);
            }),
            1);
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->ListAccounts(alpha);
              ASSERT_TRUE(got.ok()) << got.status();
              ASSERT_EQ(got->size(), 1u);
              EXPECT_EQ((*got)[0].id, account);
            }),
            1);
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->GetCertificate(alpha, cert.id);
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(got->serial, "0c");
            }),
            1);
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->LookupChallenge("tok");
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(*got, "tok.thumb");
            }),
            1);
  // The order a caller waits on, read again when it completes.
  const OrderId order = MakeOrder(alpha, account, "a.test", nullptr);
  EXPECT_EQ(RoundTrips([&] {
              auto got = counted_->GetOrder(alpha, order);
              ASSERT_TRUE(got.ok()) << got.status();
              EXPECT_EQ(got->id, order);
              EXPECT_EQ(got->identifiers, std::vector<std::string>{"a.test"});
            }),
            1);
  // Another tenant's order is not found, as a missing one; a missing tenant is told apart.
  const Scope beta = MakeTenant("beta");
  EXPECT_THAT(counted_->GetOrder(beta, order),
              StatusIs(absl::StatusCode::kNotFound, absl::StrCat("order ", order, " not found")));
  EXPECT_THAT(counted_->GetOrder(Scope{beta.tenant + 1000, kActor}, order),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("tenant ", beta.tenant + 1000, " not found")));
}

TEST_F(PostgresStoreTest, AuditRowsOfOneTransactionAreOneInsertAndChainInOrder) {
  // Counts INSERT statements on audit_log (not rows), as a superuser's trigger would see them.
  ASSERT_OK(db_->Execute(
      "CREATE TABLE audit_inserts (n int NOT NULL); "
      "CREATE FUNCTION count_audit_inserts() RETURNS trigger LANGUAGE plpgsql "
      "SECURITY DEFINER AS $$ BEGIN INSERT INTO audit_inserts VALUES (1); RETURN NULL; END $$; "
      "CREATE TRIGGER count_audit_inserts AFTER INSERT ON audit_log "
      "FOR EACH STATEMENT EXECUTE FUNCTION count_audit_inserts()"));
  auto inserts = [&] {
    pqxx::connection c(db_->superuser_url());
    pqxx::nontransaction tx(c);
    return tx.exec1("SELECT count(*) FROM audit_inserts")[0].as<int>();
  };
  const Scope alpha = MakeTenant("alpha");
  const AccountId account = MakeAccount(alpha);
  NewOrder order{account, {"a.test"}, "", "replica-1", absl::Minutes(1)};
  order.csr_der = "csr";
  ASSERT_OK_AND_ASSIGN(CreateOrderResult created, store_->CreateOrJoinOrder(alpha, order));
  ASSERT_TRUE(created.lease.has_value());
  ASSERT_OK(store_->RecordOrderUrl(alpha, *created.lease, "https://ca.test/order/1"));
  const int before = inserts();
  // Two audit rows (the certificate, the order's completion), one statement.
  ASSERT_OK(store_->CompleteOrder(alpha, *created.lease, CertificateFor({"a.test"}, "01", nullptr))
                .status());
  EXPECT_EQ(inserts() - before, 1);
  ASSERT_OK_AND_ASSIGN(Page<AuditRecord> audit, store_->ListAudit(alpha, PageRequest{}));
  ASSERT_GE(audit.items.size(), 2u);
  const size_t n = audit.items.size();
  EXPECT_EQ(audit.items[n - 2].event.action, "InsertCertificate");
  EXPECT_EQ(audit.items[n - 1].event.action, "CompleteOrder");
  EXPECT_EQ(audit.items[n - 1].seq, audit.items[n - 2].seq + 1);
  EXPECT_OK(store_->VerifyAuditChain(alpha));
}

}  // namespace
}  // namespace acmevault::storage
