// Tenant isolation enforced by PostgreSQL itself, not by the store's queries: connected as the
// app role (as the service is) with tenant A's transaction setting, raw SQL that forgets (or
// subverts) the tenant filter still sees, changes and deletes none of tenant B's rows, and
// cannot write a row for B. Also: what the app role may not do at all.
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage {
namespace {

using ::acmevault::storage::testing::CreateStoreOnDatabase;
using ::acmevault::storage::testing::KekText;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::storage::testing::TestKeks;

// Every tenant-owned table and the column naming its tenant.
const std::pair<const char*, const char*> kTenantTables[] = {
    {"tenants", "id"},
    {"identities", "tenant_id"},
    {"accounts", "tenant_id"},
    {"account_keys", "tenant_id"},
    {"orders", "tenant_id"},
    {"authorizations", "tenant_id"},
    {"certificates", "tenant_id"},
    {"challenges", "tenant_id"},
    {"audit_log", "tenant_id"},
    {"audit_heads", "tenant_id"},
    {"compromise_runs", "tenant_id"},
    {"compromise_run_steps", "tenant_id"},
    {"jobs", "tenant_id"},
};

class RowLevelSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto opened = CreateStoreOnDatabase(url, &clock_, TestKeks(KekText("k", 'k')));
    ASSERT_TRUE(opened.ok()) << opened.status();
    db_ = std::move(opened->db);
    store_ = std::move(opened->store);
    a_ = Populate("alpha");
    b_ = Populate("beta");
    ASSERT_FALSE(HasFailure());
  }

  // One row of every kind for a new tenant; returns its id.
  TenantId Populate(const std::string& name) {
    TenantSpec spec;
    spec.name = name;
    spec.acme_directory_url = "https://ca.test/dir";
    auto tenant = store_->CreateTenant({"setup", "setup"}, spec);
    EXPECT_TRUE(tenant.ok()) << tenant.status();
    if (!tenant.ok()) return 0;
    Scope scope{tenant->id, {"setup", "setup"}};
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    EXPECT_TRUE(key.ok());
    EXPECT_OK(store_->AddSpiffeIdentity(scope, "spiffe://t/" + name, Role::kHost, "").status());
    auto account = store_->CreateAccount(scope, "https://ca.test/dir", *key,
                                         PublicKeyInfo{"{}", "tp"}, KeyState::kActive);
    EXPECT_TRUE(account.ok()) << account.status();
    auto order = store_->CreateOrJoinOrder(
        scope, NewOrder{account->id, {name + ".test"}, "", "r", absl::Minutes(1)});
    EXPECT_TRUE(order.ok()) << order.status();
    EXPECT_OK(store_
                  ->RecordAuthorization(scope, {account->id, order->order.id,
                                                "https://ca.test/authz/" + name, name + ".test",
                                                AuthorizationStatus::kPending, std::nullopt})
                  .status());
    NewCertificate c;
    c.identifiers = {name + ".test"};
    c.serial = "01";
    c.not_before = clock_.Now();
    c.not_after = clock_.Now() + absl::Hours(1);
    c.chain_pem = "chain";
    c.private_key = &*key;
    EXPECT_OK(store_->InsertCertificate(scope, c).status());
    EXPECT_OK(store_->PutChallenge(scope, "token-" + name, "token-" + name + ".tp"));
    auto run = store_->StartCompromiseRun(scope, false, clock_.Now() + absl::Hours(1));
    EXPECT_TRUE(run.ok()) << run.status();
    if (run.ok()) EXPECT_OK(store_->RecordCompromiseStep(scope, run->id, "rollover"));
    EXPECT_OK(store_
                  ->ScheduleJob(scope, NewJob{"order_step", name, "https://ca.test/dir",
                                              clock_.Now()},
                                clock_.Now())
                  .status());
    return tenant->id;
  }

  // Runs `sql` as the app role in a transaction confined to `tenant` (0: none set) and
  // returns the rows affected (or counted, for a single-count query), or the SQLSTATE thrown.
  struct Outcome {
    int64_t rows = -1;
    std::string sqlstate;
    std::string message;
  };
  Outcome AsApp(TenantId tenant, const std::string& sql, bool count = false) {
    Outcome out;
    try {
      pqxx::connection conn(db_->app_url());
      pqxx::work tx(conn);
      if (tenant != 0) {
        tx.exec_params("SELECT set_config('acmevault.tenant_id', $1, true)",
                       std::to_string(tenant));
      }
      pqxx::result r = tx.exec(sql);
      out.rows = count ? r[0][0].as<int64_t>() : static_cast<int64_t>(r.affected_rows());
      tx.commit();
    } catch (const pqxx::insufficient_privilege& e) {
      // libpqxx 6.4 does not record the SQLSTATE of this class.
      out.sqlstate = "42501";
      out.message = e.what();
    } catch (const pqxx::sql_error& e) {
      out.sqlstate = e.sqlstate().empty() ? "error" : e.sqlstate();
      out.message = e.what();
    } catch (const std::exception& e) {
      out.sqlstate = "error";
      out.message = e.what();
    }
    return out;
  }

  int64_t CountAsOwner(const std::string& table, const std::string& column, TenantId tenant) {
    pqxx::connection conn(db_->superuser_url());
    pqxx::work tx(conn);
    return tx.exec1(absl::StrCat("SELECT count(*) FROM ", table, " WHERE ", column, " = ",
                                 tenant))[0]
        .as<int64_t>();
  }

  acmevault::testing::FakeClock clock_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PostgresStore> store_;
  TenantId a_ = 0;
  TenantId b_ = 0;
};

TEST_F(RowLevelSecurityTest, SelectSeesOnlyTheTransactionsTenant) {
  for (const auto& [table, column] : kTenantTables) {
    SCOPED_TRACE(table);
    int64_t a_rows = CountAsOwner(table, column, a_);
    ASSERT_GT(a_rows, 0);
    ASSERT_GT(CountAsOwner(table, column, b_), 0);
    // No filter at all: only A's rows.
    EXPECT_EQ(AsApp(a_, absl::StrCat("SELECT count(*) FROM ", table), true).rows, a_rows);
    // Asking for B's rows explicitly: none.
    EXPECT_EQ(AsApp(a_, absl::StrCat("SELECT count(*) FROM ", table, " WHERE ", column, " = ",
                                     b_),
                    true)
                  .rows,
              0);
    // No tenant set: nothing.
    EXPECT_EQ(AsApp(0, absl::StrCat("SELECT count(*) FROM ", table), true).rows, 0);
  }
}

TEST_F(RowLevelSecurityTest, UpdateAndDeleteOfAnotherTenantTouchNoRow) {
  const std::pair<const char*, const char*> updates[] = {
      {"tenants", "UPDATE tenants SET acme_directory_url = 'https://evil.test/dir'"},
      {"identities", "UPDATE identities SET role = 'platform_admin'"},
      {"accounts", "UPDATE accounts SET status = 'deactivated', deactivated_at = now()"},
      {"account_keys", "UPDATE account_keys SET state = 'compromised'"},
      {"orders", "UPDATE orders SET state = 'invalid'"},
      {"authorizations", "UPDATE authorizations SET status = 'deactivated'"},
      {"certificates", "UPDATE certificates SET superseded_at = now()"},
      {"challenges", "UPDATE challenges SET key_authorization = 'forged'"},
      {"compromise_runs", "UPDATE compromise_runs SET finished_at = now()"},
      {"jobs", "UPDATE jobs SET attempts = 99"},
  };
  for (const auto& [table, sql] : updates) {
    SCOPED_TRACE(table);
    const char* column = std::string(table) == "tenants" ? "id" : "tenant_id";
    EXPECT_EQ(AsApp(a_, absl::StrCat(sql, " WHERE ", column, " = ", b_)).rows, 0);
  }
  EXPECT_EQ(AsApp(a_, absl::StrCat("DELETE FROM challenges WHERE tenant_id = ", b_)).rows, 0);
  EXPECT_EQ(CountAsOwner("challenges", "tenant_id", b_), 1);
  EXPECT_EQ(AsApp(a_, absl::StrCat("DELETE FROM jobs WHERE tenant_id = ", b_)).rows, 0);
  EXPECT_EQ(CountAsOwner("jobs", "tenant_id", b_), 1);
  // B's data is untouched: it still works through the store.
  auto b_challenge = store_->LookupChallenge("token-beta");
  ASSERT_TRUE(b_challenge.ok());
  EXPECT_EQ(*b_challenge, "token-beta.tp");
  EXPECT_OK(store_->VerifyAuditChain(Scope{b_, {}}));
  // The same statements do reach A's own rows (the policy is not simply "deny").
  EXPECT_EQ(AsApp(a_, "UPDATE challenges SET key_authorization = key_authorization").rows, 1);
}

TEST_F(RowLevelSecurityTest, InsertForAnotherTenantFails) {
  auto rejected = [&](const std::string& sql) {
    Outcome o = AsApp(a_, sql);
    EXPECT_EQ(o.sqlstate, "42501") << sql;
    EXPECT_THAT(o.message, ::testing::HasSubstr("violates row-level security policy")) << sql;
  };
  rejected(absl::StrCat("INSERT INTO accounts (tenant_id, directory_url, status, created_at) "
                        "VALUES (", b_, ", 'https://ca.test/dir', 'pending', now())"));
  rejected(absl::StrCat("INSERT INTO identities (tenant_id, role, spiffe_id, description, "
                        "created_at) VALUES (", b_, ", 'admin', 'spiffe://evil', '', now())"));
  rejected(absl::StrCat("INSERT INTO challenges VALUES ('evil', ", b_, ", 'x', now())"));
  rejected(
      absl::StrCat("INSERT INTO compromise_runs (tenant_id, deactivate_account, started_at, "
                   "expires_at) VALUES (",
                   b_, ", true, now(), now() + interval '1 day')"));
  rejected(absl::StrCat("INSERT INTO jobs (tenant_id, kind, subject, ca, not_before, "
                        "fencing_token, attempts, last_error, created_at, updated_at) VALUES (",
                        b_, ", 'order_step', 'evil', '', now(), 0, 0, '', now(), now())"));
  rejected(absl::StrCat("INSERT INTO audit_log (tenant_id, at, actor, rpc, action, identifiers, "
                        "acme_url, outcome, detail) VALUES (", b_,
                        ", now(), 'x', 'x', 'Forged', '{}', '', 'ok', '')"));
  // Moving one's own row into another tenant fails the same check.
  rejected(absl::StrCat("UPDATE challenges SET tenant_id = ", b_));
  EXPECT_EQ(CountAsOwner("accounts", "tenant_id", b_), 1);
}

TEST_F(RowLevelSecurityTest, TheAppRoleCannotEscapeTheSchemaRules) {
  // No DELETE except on challenges and jobs; the audit log is append-only; no DDL on tables it
  // does not own; no way into the definer role; no direct use of the chain trigger; the claim
  // function's turn table is the definer's alone.
  for (const std::string& sql :
       {std::string("DELETE FROM accounts"), std::string("DELETE FROM account_keys"),
        std::string("DELETE FROM certificates"), std::string("DELETE FROM orders"),
        std::string("UPDATE audit_log SET outcome = 'x'"), std::string("DELETE FROM audit_log"),
        std::string("DELETE FROM compromise_runs"),
        std::string("UPDATE compromise_run_steps SET step = 'x'"),
        std::string("DELETE FROM compromise_run_steps"), std::string("TRUNCATE audit_log"),
        std::string("UPDATE audit_heads SET seq = 0"),
        std::string("INSERT INTO tenants (name, allowed_identifiers, key_algorithm, "
                    "max_key_age_seconds, deactivate_authorizations_after_issuance, "
                    "ephemeral_accounts, renewal_window_seconds, acme_directory_url, "
                    "created_at, updated_at) VALUES ('x', '{}', 'ecdsa-p256', 1, true, false, 1, "
                    "'https://x', now(), now())"),
        std::string("ALTER TABLE accounts DISABLE ROW LEVEL SECURITY"),
        std::string("ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY"),
        std::string("DROP POLICY tenant_isolation ON accounts"),
        std::string("SET ROLE acmevault_definer"),
        std::string("SELECT av_audit_chain()"), std::string("SELECT * FROM job_turns"),
        std::string("DELETE FROM job_turns")}) {
    Outcome o = AsApp(a_, sql);
    EXPECT_EQ(o.rows, -1) << sql;
    EXPECT_EQ(o.sqlstate, "42501") << sql << ": " << o.message;  // insufficient privilege
  }
  EXPECT_EQ(CountAsOwner("audit_log", "tenant_id", a_) > 0, true);
}

TEST_F(RowLevelSecurityTest, CrossTenantFunctionsAnswerOnlyTheirNarrowQuestion) {
  // The HTTP-01 responder finds any tenant's token; it gets the key authorization, nothing else.
  Outcome o = AsApp(0, "SELECT count(*) FROM (SELECT av_lookup_challenge('token-beta')) x", true);
  EXPECT_EQ(o.rows, 1);
  // Identity lookups return live identities without the token hash column.
  o = AsApp(0, "SELECT count(*) FROM av_authenticate('spiffe://t/beta', NULL, av_ts(0))", true);
  EXPECT_EQ(o.rows, 1);
  o = AsApp(0, "SELECT count(*) FROM av_authenticate('spiffe://t/beta', NULL)", true);  // 0004's
  EXPECT_EQ(o.rows, 1);
  // The definer role can read no sealed key: its column grants stop it even through a function
  // it owns (asserted on the catalog, since nobody can run as it).
  pqxx::connection conn(db_->superuser_url());
  pqxx::work tx(conn);
  EXPECT_FALSE(tx.exec1("SELECT has_column_privilege('acmevault_definer', 'account_keys', "
                        "'sealed_private_key', 'SELECT')")[0]
                   .as<bool>());
  EXPECT_FALSE(tx.exec1("SELECT has_column_privilege('acmevault_definer', 'certificates', "
                        "'wrapped_data_key', 'SELECT')")[0]
                   .as<bool>());
  // Nor an order's (migration 0006 narrowed its table-wide grant on orders to columns), though
  // it still sees which KEK wraps it, for re-wrapping.
  for (const char* column : {"wrapped_data_key", "sealed_private_key", "csr_der"}) {
    EXPECT_FALSE(tx.exec_params1("SELECT has_column_privilege('acmevault_definer', 'orders', $1, "
                                 "'SELECT')",
                                 column)[0]
                     .as<bool>())
        << column;
  }
  EXPECT_FALSE(tx.exec1("SELECT has_table_privilege('acmevault_definer', 'orders', 'SELECT')")[0]
                   .as<bool>());
  EXPECT_TRUE(tx.exec1("SELECT has_column_privilege('acmevault_definer', 'orders', 'kek_id', "
                       "'SELECT')")[0]
                  .as<bool>());
  EXPECT_FALSE(tx.exec1("SELECT has_table_privilege('acmevault_definer', 'orders', 'DELETE')")[0]
                   .as<bool>());
  EXPECT_FALSE(
      tx.exec1("SELECT pg_has_role('acmevault_app', 'acmevault_definer', 'MEMBER')")[0].as<bool>());
  // Every tenant table has row-level security enabled and forced.
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM pg_class WHERE relname IN ('tenants', 'identities', "
                     "'accounts', 'account_keys', 'orders', 'authorizations', 'certificates', "
                     "'challenges', 'audit_log', 'audit_heads', 'compromise_runs', "
                     "'compromise_run_steps', 'jobs', 'job_turns', 'ca_holds', 'ca_budgets', "
                     "'ca_directory_budgets', 'eab_keys') "
                     "AND relrowsecurity AND relforcerowsecurity")[0]
                .as<int>(),
            18);
  // The claim writes only the lease columns of jobs, across tenants.
  EXPECT_FALSE(tx.exec1("SELECT has_column_privilege('acmevault_definer', 'jobs', 'not_before', "
                        "'UPDATE')")[0]
                   .as<bool>());
  EXPECT_TRUE(tx.exec1("SELECT has_column_privilege('acmevault_definer', 'jobs', "
                       "'fencing_token', 'UPDATE')")[0]
                  .as<bool>());
  EXPECT_FALSE(tx.exec1("SELECT has_table_privilege('acmevault_definer', 'jobs', 'DELETE')")[0]
                   .as<bool>());
}

}  // namespace
}  // namespace acmevault::storage
