// The rows of the PostgreSQL store: every column list has the width its mapper reads, selects
// from its table and maps the rows found there; GetById and RequireRow see only the
// transaction's tenant, name what is missing, and lock when asked.
#include "storage/postgres_rows.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/testing/fake_clock.h"
#include "common/testing/stack_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/postgres_pool.h"
#include "storage/postgres_store.h"
#include "storage/testing/status_matchers.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage::pg {
namespace {

using ::acmevault::storage::testing::CreateStoreOnDatabase;
using ::acmevault::storage::testing::KekText;
using ::acmevault::storage::testing::StatusIs;
using ::acmevault::storage::testing::TestDatabase;
using ::acmevault::storage::testing::TestKeks;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

// The items of a select list: commas inside parentheses or quotes do not separate.
int CountColumns(absl::string_view list) {
  int count = 1;
  int depth = 0;
  bool quoted = false;
  for (char c : list) {
    if (c == '\'') quoted = !quoted;
    if (quoted) continue;
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) ++count;
  }
  return count;
}

// A column list, its declared width, and where its rows come from (a table, or the SECURITY
// DEFINER function that returns that shape).
struct Shape {
  std::string name;
  const char* columns;
  int width;
  std::string from;
};

std::vector<Shape> Shapes() {
  return {
      {"tenants", kTenants.rows.columns, kTenants.rows.width, "tenants"},
      {"identities", kIdentities.rows.columns, kIdentities.rows.width, "identities"},
      {"authenticated identities", kAuthenticatedRows.columns, kAuthenticatedRows.width,
       "av_authenticate('spiffe://alpha/host', NULL, av_ts(0))"},
      {"accounts", kAccounts.rows.columns, kAccounts.rows.width, "accounts"},
      {"account keys", kAccountKeyRows.columns, kAccountKeyRows.width, "account_keys"},
      {"orders", kOrders.rows.columns, kOrders.rows.width, "orders"},
      {"authorizations", kAuthorizations.rows.columns, kAuthorizations.rows.width,
       "authorizations"},
      {"certificates", kCertificates.rows.columns, kCertificates.rows.width, "certificates"},
      {"audit log", kAuditRows.columns, kAuditRows.width, "audit_log"},
      {"due certificates", kDueRows.columns, kDueRows.width,
       "av_certificates_due(av_ts(9000000000000000), NULL, NULL, 10)"},
      {"compromise runs", kCompromiseRuns.rows.columns, kCompromiseRuns.rows.width,
       "compromise_runs"},
      {"jobs", kJobs.rows.columns, kJobs.rows.width, "jobs"},
  };
}

TEST(PostgresRows, EveryColumnListHasTheWidthOfItsMapper) {
  for (const Shape& shape : Shapes()) {
    EXPECT_EQ(CountColumns(shape.columns), shape.width) << shape.name << ": " << shape.columns;
  }
  // av_authenticate's shape is mapped by IdentityOf too.
  EXPECT_EQ(kAuthenticatedRows.width, kIdentities.rows.width);
  EXPECT_EQ(kAuthenticatedRows.map, kIdentities.rows.map);
}

// One tenant with a row in every table the store maps, and a second, empty tenant; `pool` is
// a bare pool as the app role, for transactions the test writes itself.
class PostgresRowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
    auto opened = CreateStoreOnDatabase(url, &clock_, TestKeks(KekText("kek-a", 'a')));
    ASSERT_TRUE(opened.ok()) << opened.status();
    db_ = std::move(opened->db);
    store_ = std::move(opened->store);
    alpha_ = MakeTenant("alpha");
    beta_ = MakeTenant("beta");
    ASSERT_OK(store_->AddSpiffeIdentity(alpha_, "spiffe://alpha/host", Role::kHost, "").status());
    auto key = crypto::PrivateKey::Generate(crypto::KeyAlgorithm::kEcdsaP256);
    ASSERT_TRUE(key.ok());
    std::string spki = absl::WebSafeBase64Escape(key->public_key().ToDer());
    auto account = store_->CreateAccount(
        alpha_, "https://ca.test/dir", *key,
        PublicKeyInfo{absl::StrCat("{\"spki\":\"", spki, "\"}"), spki.substr(0, 43)},
        KeyState::kActive);
    ASSERT_TRUE(account.ok()) << account.status();
    account_ = account->id;
    auto order = store_->CreateOrJoinOrder(
        alpha_, NewOrder{account_, {"a.alpha.test"}, "", "replica-1", absl::Minutes(1)});
    ASSERT_TRUE(order.ok()) << order.status();
    order_ = order->order.id;
    ASSERT_OK(store_
                  ->RecordAuthorization(
                      alpha_, {account_, order_, "https://ca.test/authz/1", "a.alpha.test",
                               AuthorizationStatus::kPending, std::nullopt})
                  .status());
    NewCertificate c;
    c.identifiers = {"a.alpha.test"};
    c.serial = "0a";
    c.not_before = clock_.Now();
    c.not_after = clock_.Now() + absl::Hours(24);
    c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    auto run = store_->StartCompromiseRun(alpha_, true, clock_.Now() + absl::Hours(1));
    ASSERT_TRUE(run.ok()) << run.status();
    run_ = run->id;
    ASSERT_OK(store_->InsertCertificate(alpha_, c).status());
    ASSERT_OK(store_
                  ->ScheduleJob(alpha_,
                                NewJob{"order_step", absl::StrCat(order_), "https://ca.test/dir",
                                       clock_.Now() + absl::Minutes(1)},
                                clock_.Now())
                  .status());

    PostgresPoolOptions options;
    options.url = db_->app_url();
    options.size = 2;
    auto pool = PostgresPool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
  }

  Scope MakeTenant(const std::string& name) {
    TenantSpec spec;
    spec.name = name;
    spec.acme_directory_url = "https://ca.test/dir";
    auto t = store_->CreateTenant(Actor{"spiffe://test/platform", "test/Setup"}, spec);
    EXPECT_TRUE(t.ok()) << t.status();
    return Scope{t.ok() ? t->id : 0, Actor{"spiffe://test/admin", "test/Rpc"}};
  }

  // Runs `body` in a transaction confined to `scope`'s tenant.
  absl::Status In(const Scope& scope, const PostgresPool::Body& body) {
    PostgresPool::TxOptions options;
    options.tenant = scope.tenant;
    return pool_->Run("Test", options, body);
  }

  acmevault::testing::FakeClock clock_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PostgresStore> store_;
  std::unique_ptr<PostgresPool> pool_;
  Scope alpha_;
  Scope beta_;
  AccountId account_ = 0;
  OrderId order_ = 0;
  CompromiseRunId run_ = 0;
};

TEST_F(PostgresRowsTest, EveryColumnListSelectsFromItsTableAndMapsItsRows) {
  for (const Shape& shape : Shapes()) {
    ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
      pqxx::result r = tx.exec(absl::StrCat("SELECT ", shape.columns, " FROM ", shape.from));
      EXPECT_EQ(static_cast<int>(r.columns()), shape.width) << shape.name;
      EXPECT_FALSE(r.empty()) << shape.name << " has no row to map";
      return absl::OkStatus();
    }));
  }
  // Mapped, the rows hold what the store wrote (the last column of each shape included).
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) -> absl::Status {
    const std::string select = "SELECT ";
    Identity host = kAuthenticatedRows.map(
        tx.exec1(absl::StrCat(select, kAuthenticatedRows.columns,
                              " FROM av_authenticate('spiffe://alpha/host', NULL, av_ts(0))")));
    EXPECT_EQ(host.tenant, alpha_.tenant);
    EXPECT_EQ(host.role, Role::kHost);
    EXPECT_EQ(host.revoked_at, std::nullopt);
    AccountKey key = kAccountKeyRows.map(
        tx.exec1(absl::StrCat(select, kAccountKeyRows.columns, " FROM account_keys")));
    EXPECT_EQ(key.account, account_);
    EXPECT_EQ(key.state, KeyState::kActive);
    EXPECT_EQ(key.compromised_at, std::nullopt);
    AuditRecord last = kAuditRows.map(tx.exec1(
        absl::StrCat(select, kAuditRows.columns, " FROM audit_log ORDER BY seq DESC LIMIT 1")));
    EXPECT_EQ(last.event.action, "InsertCertificate");
    EXPECT_EQ(last.hash.size(), 32u);
    DueCertificate due = kDueRows.map(tx.exec1(
        absl::StrCat(select, kDueRows.columns,
                     " FROM av_certificates_due(av_ts(9000000000000000), NULL, NULL, 10)")));
    EXPECT_EQ(due.tenant, alpha_.tenant);
    EXPECT_EQ(due.not_after, clock_.Now() + absl::Hours(24));
    ASSIGN_OR_RETURN(Order order, GetById(tx, kOrders, order_));
    EXPECT_EQ(order.account, account_);
    EXPECT_FALSE(order.has_certificate_key);
    ASSIGN_OR_RETURN(CompromiseRun run, GetById(tx, kCompromiseRuns, run_));
    EXPECT_EQ(run.tenant, alpha_.tenant);
    EXPECT_TRUE(run.deactivate_account);
    EXPECT_EQ(run.expires_at, clock_.Now() + absl::Hours(1));
    EXPECT_EQ(run.finished_at, std::nullopt);
    ASSIGN_OR_RETURN(pqxx::row lease, GetRowById(tx, kAccounts, account_, kKeyLeaseColumns));
    EXPECT_EQ(lease["key_lease_token"].as<int64_t>(), 0);
    EXPECT_TRUE(lease["key_lease_expires_us"].is_null());
    Job job = kJobs.rows.map(tx.exec1(absl::StrCat(select, kJobs.rows.columns, " FROM jobs")));
    EXPECT_EQ(job.subject, absl::StrCat(order_));
    EXPECT_EQ(job.not_before, clock_.Now() + absl::Minutes(1));
    EXPECT_EQ(job.failed_at, std::nullopt);
    EXPECT_EQ(job.updated_at, clock_.Now());
    return absl::OkStatus();
  }));
}

// GetCertificate's read: PostgreSQL inlines every expression of the certificate columns, so
// no SQL function (av_us is one PostgreSQL cannot inline) is parsed and planned at every
// execution; and the times read back are exact to the microsecond.
TEST_F(PostgresRowsTest, TheCertificateColumnsAreInlinedAndExactToTheMicrosecond) {
  NewCertificate c;
  c.identifiers = {"b.alpha.test"};
  c.serial = "0b";
  c.not_before = absl::FromUnixMicros(1767225600123457);
  c.not_after = absl::FromUnixMicros(1774915199999999);
  c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  ASSERT_OK(store_->InsertCertificate(alpha_, c).status());
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    const std::string select =
        absl::StrCat("SELECT ", kCertificates.rows.columns, " FROM certificates WHERE serial = '0b'");
    std::string plan;
    for (const auto& row : tx.exec(absl::StrCat("EXPLAIN (VERBOSE) ", select))) {
      absl::StrAppend(&plan, row[0].c_str(), "\n");
    }
    EXPECT_THAT(plan, HasSubstr("EXTRACT(epoch FROM not_before)")) << plan;
    EXPECT_THAT(plan, Not(HasSubstr("av_us("))) << plan;
    Certificate read = kCertificates.rows.map(tx.exec1(select));
    EXPECT_EQ(read.not_before, c.not_before);
    EXPECT_EQ(read.not_after, c.not_after);
    EXPECT_EQ(read.revoked_at, std::nullopt);
    EXPECT_EQ(read.created_at, clock_.Now());
    return absl::OkStatus();
  }));
}

// Migration 0022: the time helpers every query uses are inlined (a SQL function call per value
// before, its body planned on each execution), in every table's columns and in a write's
// parameters, and they still convert exactly to the microsecond.
TEST_F(PostgresRowsTest, TheTimeHelpersAreInlinedEverywhereAndExact) {
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    auto plan_of = [&](const std::string& sql) {
      std::string plan;
      for (const auto& row : tx.exec(absl::StrCat("EXPLAIN (VERBOSE) ", sql))) {
        absl::StrAppend(&plan, row[0].c_str(), "\n");
      }
      return plan;
    };
    for (const auto& [table, columns] :
         {std::pair{"orders", std::string(kOrders.rows.columns)},
          std::pair{"accounts", std::string(kAccounts.rows.columns)},
          std::pair{"tenants", std::string(kTenants.rows.columns)},
          std::pair{"authorizations", std::string(kAuthorizations.rows.columns)}}) {
      const std::string plan = plan_of(absl::StrCat("SELECT ", columns, " FROM ", table));
      EXPECT_THAT(plan, Not(HasSubstr("av_us("))) << table << "\n" << plan;
    }
    const std::string write = plan_of(
        "UPDATE orders SET updated_at = av_ts(1767225600123457) WHERE id = 0");
    EXPECT_THAT(write, Not(HasSubstr("av_ts("))) << write;
    for (int64_t micros : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1767225600123457},
                           int64_t{4102444799999999}, int64_t{-62135596800000000}}) {
      EXPECT_EQ(tx.exec1(absl::StrCat("SELECT av_us(av_ts(", micros, "))"))[0].as<int64_t>(),
                micros);
    }
    return absl::OkStatus();
  }));
}

// Issue 10: an identifier set's hash is computed once per statement, not once per row. With a
// sequential scan (what a generic plan of a small table is, and every store connection uses
// generic plans), av_identifiers_hash($n) written in the WHERE clause is the scan's filter:
// one SHA-256 per row of the table, each statement (superseding a certificate, finding the
// order in flight or the current certificate). IdentifiersHashOf's sub-select is an InitPlan
// computed once, and the filter compares with its value.
TEST_F(PostgresRowsTest, AnIdentifierSetsHashIsComputedOncePerStatement) {
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    tx.exec("SET LOCAL plan_cache_mode = force_generic_plan");
    tx.exec("SET LOCAL enable_indexscan = off");
    tx.exec("SET LOCAL enable_bitmapscan = off");
    auto filters_of = [&](const std::string& name, const std::string& hash) {
      tx.exec(absl::StrCat("PREPARE ", name, "(text[], bigint) AS UPDATE certificates ",
                           "SET superseded_at = av_ts($2) WHERE identifiers_hash = ", hash,
                           " AND revoked_at IS NULL AND superseded_at IS NULL"));
      std::string filters;
      for (const auto& row :
           tx.exec(absl::StrCat("EXPLAIN (VERBOSE) EXECUTE ", name, "('{a.test}', 0)"))) {
        const std::string line = row[0].c_str();
        if (absl::StrContains(line, "Filter:")) absl::StrAppend(&filters, line, "\n");
      }
      tx.exec(absl::StrCat("DEALLOCATE ", name));
      return filters;
    };
    const std::string once = filters_of("hash_once", IdentifiersHashOf(1));
    EXPECT_THAT(once, HasSubstr("identifiers_hash = "));
    EXPECT_THAT(once, Not(HasSubstr("sha256"))) << once;
    EXPECT_THAT(once, Not(HasSubstr("av_identifiers_hash"))) << once;
    // The form it replaced puts the hash in the filter: what this test tells apart.
    const std::string per_row = filters_of("hash_per_row", "av_identifiers_hash($1::text[])");
    EXPECT_THAT(per_row, AnyOf(HasSubstr("sha256"), HasSubstr("av_identifiers_hash"))) << per_row;
    // The same value either way.
    EXPECT_TRUE(tx.exec_params(absl::StrCat("SELECT ", IdentifiersHashOf(1),
                                            " = av_identifiers_hash('{a.test,b.test}'::text[])"),
                               "{a.test,b.test}")[0][0]
                    .as<bool>());
    return absl::OkStatus();
  }));
}

// Migration 0024: the helper functions PostgreSQL could not inline run from a plan kept per
// connection (PL/pgSQL) or are inlined (av_order_rank), with the values of their first
// definitions.
TEST_F(PostgresRowsTest, TheHelperFunctionsArePlannedOnceWithTheirFirstValues) {
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    for (const char* fn : {"av_identifiers_canonical", "av_next_job_time", "av_jobs_due"}) {
      EXPECT_EQ(tx.exec1(absl::StrCat("SELECT l.lanname FROM pg_proc p JOIN pg_language l "
                                      "ON l.oid = p.prolang WHERE p.proname = '", fn, "'"))[0]
                    .as<std::string>(),
                "plpgsql")
          << fn;
    }
    std::string plan;
    for (const auto& row : tx.exec("EXPLAIN (VERBOSE) SELECT av_order_rank(state) FROM orders")) {
      absl::StrAppend(&plan, row[0].c_str(), "\n");
    }
    EXPECT_THAT(plan, Not(HasSubstr("av_order_rank("))) << plan;
    const pqxx::row ranks = tx.exec1(
        "SELECT av_order_rank('created'), av_order_rank('pending'), av_order_rank('ready'), "
        "av_order_rank('processing'), av_order_rank('valid'), av_order_rank('invalid'), "
        "av_order_rank(NULL) IS NULL, av_order_rank('other') IS NULL");
    EXPECT_EQ(ranks[0].as<int>(), 0);
    EXPECT_EQ(ranks[1].as<int>(), 1);
    EXPECT_EQ(ranks[2].as<int>(), 2);
    EXPECT_EQ(ranks[3].as<int>(), 3);
    EXPECT_EQ(ranks[4].as<int>(), 4);
    EXPECT_EQ(ranks[5].as<int>(), 4);
    EXPECT_TRUE(ranks[6].as<bool>());
    EXPECT_TRUE(ranks[7].as<bool>());
    // Canonical: sorted by bytes, no duplicates, 1 to 100 names; NULL for NULL (STRICT).
    for (const auto& [ids, canonical] : std::vector<std::pair<std::string, std::string>>{
             {"'{a.test}'", "t"},
             {"'{A.test,a.test,b.test}'", "t"},
             {"'{b.test,a.test}'", "f"},
             {"'{a.test,a.test}'", "f"},
             {"'{}'", "f"},
             {"array_fill('x'::text, ARRAY[101])", "f"},
             {"ARRAY(SELECT 'n' || lpad(i::text, 3, '0') FROM generate_series(1, 100) i)", "t"},
             {"NULL", ""},
             // Edge cases of the first definition's ARRAY(SELECT DISTINCT ... ORDER BY)
             // comparison, kept by 0031's loop: one NULL, last only; a one-dimensional array
             // indexed from 1; bytes, not the locale, order.
             {"'{NULL}'", "t"},
             {"'{a.test,NULL}'", "t"},
             {"'{NULL,a.test}'", "f"},
             {"'{a.test,NULL,NULL}'", "f"},
             {"'[0:1]={a.test,b.test}'", "f"},
             {"'{{a.test,b.test}}'", "f"},
             {"'{\"\",a.test}'", "t"},
             {"'{a.test,\"\"}'", "f"},
             {"'{B.test,a.test}'", "t"},
             {"'{a.test,B.test}'", "f"},
             {"'{a.test,a.test2}'", "t"}}) {
      const pqxx::field f =
          tx.exec1(absl::StrCat("SELECT av_identifiers_canonical(", ids, "::text[])"))[0];
      EXPECT_EQ(f.is_null() ? "" : f.as<std::string>(), canonical) << ids;
    }
    return absl::OkStatus();
  }));
}

// Migration 0031: the format checks of jobs, challenges and certificates accept exactly the
// strings their patterns describe, without a regular expression's counted repeat (which
// PostgreSQL's engine expands per value: about 30 us for 1-200 or 1-255 characters).
TEST_F(PostgresRowsTest, TheFormatChecksAcceptWhatTheirPatternsSayWithoutCountedRepeats) {
  struct Check {
    const char* table;
    const char* name;
    const char* column;
    const char* pattern;  // what the check accepts, as a regular expression
  };
  const std::vector<Check> checks = {
      {"jobs", "jobs_subject_format", "subject", "^[!-~]{1,200}$"},
      {"challenges", "challenges_token_check", "token", "^[A-Za-z0-9_-]{1,255}$"},
      {"certificates", "certificates_serial_check", "serial", "^[0-9a-f]{1,64}$"},
      {"certificates", "certificates_replaces_serial_check", "replaces_serial", "^[0-9a-f]{1,64}$"},
  };
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    for (const Check& c : checks) {
      const pqxx::row def = tx.exec_params1(
          "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
          "WHERE c.conrelid = $1::regclass AND c.conname = $2",
          c.table, c.name);
      const std::string definition = def[0].as<std::string>();
      EXPECT_THAT(definition, Not(HasSubstr("{"))) << c.name;  // no counted repeat
      absl::string_view expr = definition;
      absl::ConsumePrefix(&expr, "CHECK ");
      absl::ConsumeSuffix(&expr, " NOT VALID");
      // The check's expression and the pattern, over values at and around every bound, with
      // characters just outside each class, and NULL.
      const pqxx::result differ = tx.exec_params(
          absl::StrCat(R"sql(
            WITH vals(x) AS (
              SELECT NULL::text
              UNION ALL
              SELECT repeat(ch, n) || tail
              FROM unnest(ARRAY['a', 'f', 'Z', '0', '_', '-', '!', '~', ' ', 'g', '.', 'é',
                                chr(127), chr(10)]) AS ch,
                   generate_series(0, 257) AS n,
                   unnest(ARRAY['', 'a', 'G', ' ', '~']) AS tail)
            SELECT )sql",
                       c.column, " FROM (SELECT x AS ", c.column, " FROM vals) AS t WHERE (", expr,
                       ") IS DISTINCT FROM (", c.column, " ~ $1)"),
          c.pattern);
      EXPECT_EQ(differ.size(), 0u) << c.name << ": " << expr << " first differs on '"
                                   << (differ.empty() ? "" : differ[0][0].c_str()) << "'";
    }
    return absl::OkStatus();
  }));
}

// Migration 0028: the SQL helpers whose bodies call convert_to (STABLE) are declared STABLE,
// so PostgreSQL inlines them into each statement instead of planning their bodies per call.
TEST_F(PostgresRowsTest, TheHelpersCallingConvertToAreInlined) {
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    for (const char* call : {"av_audit_text(actor)", "av_identifiers_hash(identifiers)"}) {
      std::string plan;
      for (const auto& row :
           tx.exec(absl::StrCat("EXPLAIN (VERBOSE) SELECT ", call, " FROM audit_log"))) {
        absl::StrAppend(&plan, row[0].c_str(), "\n");
      }
      const std::string name(absl::string_view(call).substr(0, absl::string_view(call).find('(')));
      EXPECT_THAT(plan, Not(HasSubstr(name + "("))) << plan;
      EXPECT_THAT(plan, HasSubstr("convert_to(")) << plan;
    }
    return absl::OkStatus();
  }));
}

// Pipelined sends prepared statements by SQL EXECUTE with quoted values, all in one query:
// every value arrives as it was (quotes, backslashes, NULL), results come back in order, and
// the first statement that fails is thrown.
TEST_F(PostgresRowsTest, PipelinedStatementsGetTheirValuesAsTheyWereAndTheirResultsInOrder) {
  const std::string odd = "it's a \\ 'quoted' \"value\"); SELECT 1; --";
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    tx.conn().prepare("pl_echo", "SELECT $1::text, $2::bigint");
    tx.conn().prepare("pl_count", "SELECT count(*) FROM generate_series(1, $1::int)");
    std::vector<pqxx::result> r = Pipelined(
        tx, {{"pl_echo", {odd, std::nullopt}}, {"pl_count", {"3"}}, {"pl_echo", {"", "7"}}});
    EXPECT_EQ(r.size(), 3u);
    if (r.size() != 3) return absl::OkStatus();
    EXPECT_EQ(r[0][0][0].as<std::string>(), odd);
    EXPECT_TRUE(r[0][0][1].is_null());
    EXPECT_EQ(r[1][0][0].as<int>(), 3);
    EXPECT_EQ(r[2][0][0].as<std::string>(), "");
    EXPECT_EQ(r[2][0][1].as<int>(), 7);
    return absl::OkStatus();
  }));
  EXPECT_THAT(
      In(alpha_,
         [&](pqxx::dbtransaction& tx) {
           tx.conn().prepare("pl_divide", "SELECT 1 / $1::int");
           Pipelined(tx, {{"pl_divide", {"1"}}, {"pl_divide", {"0"}}, {"pl_divide", {"2"}}});
           return absl::OkStatus();
         }),
      StatusIs(absl::StatusCode::kInvalidArgument, "division by zero"));
}

// GetById's statement is prepared on the connection: a row read by id is planned once per
// connection, not at every read.
TEST_F(PostgresRowsTest, GetByIdRunsAPreparedStatement) {
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
    for (int i = 0; i < 3; ++i) {
      ASSIGN_OR_RETURN(Order order, GetById(tx, kOrders, order_, Lock::kForUpdate));
      EXPECT_EQ(order.id, order_);
    }
    const pqxx::result r = tx.exec(
        "SELECT generic_plans + custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE 'SELECT % FROM orders WHERE id = $1 FOR UPDATE'");
    EXPECT_EQ(r.size(), 1u);
    if (!r.empty()) EXPECT_EQ(r[0][0].as<int>(), 3);
    return absl::OkStatus();
  }));
}

TEST_F(PostgresRowsTest, GetByIdSeesOnlyTheTransactionsTenant) {
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Account a, GetById(tx, kAccounts, account_));
    EXPECT_EQ(a.id, account_);
    EXPECT_EQ(a.tenant, alpha_.tenant);
    EXPECT_OK(RequireRow(tx, kAccounts, account_));
    EXPECT_OK(RequireRow(tx, kTenants, alpha_.tenant));
    EXPECT_THAT(GetById(tx, kAccounts, account_ + 1000),
                StatusIs(absl::StatusCode::kNotFound,
                         absl::StrCat("account ", account_ + 1000, " not found")));
    ASSIGN_OR_RETURN(pqxx::row with_key, GetRowById(tx, kOrders, order_, kSealedColumns));
    EXPECT_EQ(kOrders.rows.map(with_key).id, order_);
    EXPECT_FALSE(SealedKeyOf(with_key).has_value());
    return absl::OkStatus();
  }));
  // Row-level security hides alpha's rows from beta: they are missing, with the same words.
  ASSERT_OK(In(beta_, [&](pqxx::dbtransaction& tx) {
    EXPECT_THAT(
        GetById(tx, kAccounts, account_),
        StatusIs(absl::StatusCode::kNotFound, absl::StrCat("account ", account_, " not found")));
    EXPECT_THAT(
        GetById(tx, kOrders, order_, Lock::kForUpdate),
        StatusIs(absl::StatusCode::kNotFound, absl::StrCat("order ", order_, " not found")));
    EXPECT_THAT(RequireRow(tx, kTenants, alpha_.tenant),
                StatusIs(absl::StatusCode::kNotFound,
                         absl::StrCat("tenant ", alpha_.tenant, " not found")));
    return absl::OkStatus();
  }));
}

TEST_F(PostgresRowsTest, ForUpdateHoldsTheRowUntilTheTransactionEnds) {
  // While one transaction holds what it read, another transaction's SKIP LOCKED scan of the
  // same row finds nothing (and a free row once). No error path, so the pool's retry policy for
  // lock_not_available does not enter into it.
  auto lockable = [&]() -> int {
    int rows = -1;
    EXPECT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) {
      rows = static_cast<int>(
          Exec(tx, "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE SKIP LOCKED", order_).size());
      return absl::OkStatus();
    }));
    return rows;
  };
  ASSERT_OK(In(alpha_, [&](pqxx::dbtransaction& tx) -> absl::Status {
    RETURN_IF_ERROR(GetById(tx, kOrders, order_).status());
    EXPECT_EQ(lockable(), 1);
    RETURN_IF_ERROR(GetById(tx, kOrders, order_, Lock::kForUpdate).status());
    EXPECT_EQ(lockable(), 0);
    return absl::OkStatus();
  }));
  EXPECT_EQ(lockable(), 1);
}

}  // namespace
}  // namespace acmevault::storage::pg
