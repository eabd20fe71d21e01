// The first storage test: libpqxx talks to the local stack's real PostgreSQL 15. The stores
// themselves (and their conformance suite) build on exactly this connection path.
#include <pqxx/pqxx>

#include <string>

#include "common/testing/stack_env.h"
#include "gtest/gtest.h"

namespace acmevault::storage {
namespace {

TEST(PostgresConnection, ServerIsPostgres15OnLoopback) {
  ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  auto version = tx.exec1("SHOW server_version_num")[0].as<int>();
  EXPECT_GE(version, 150000);
  EXPECT_LT(version, 160000);
  // The stack binds loopback only.
  EXPECT_EQ(tx.exec1("SHOW listen_addresses")[0].as<std::string>(), "127.0.0.1");
}

TEST(PostgresConnection, BoundParametersRoundTripExactly) {
  ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
  pqxx::connection conn(url);
  conn.prepare("put", "INSERT INTO roundtrip (name, data) VALUES ($1, $2) RETURNING id");
  pqxx::work tx(conn);
  tx.exec0("CREATE TEMP TABLE roundtrip (id bigserial PRIMARY KEY, name text UNIQUE, data bytea)");

  // Quotes, a semicolon, non-ASCII and a NUL byte in bytea: nothing is spliced into SQL.
  const std::string name = "o'brien\"; DROP TABLE roundtrip; -- \xc3\xa9t\xc3\xa9";
  const std::string bytes("\x00\x01\xff'\\", 5);
  pqxx::binarystring blob(bytes);
  auto id = tx.exec_prepared1("put", name, blob)[0].as<long long>();
  EXPECT_GT(id, 0);

  auto row = tx.exec_params1("SELECT name, data, length(data) FROM roundtrip WHERE id = $1", id);
  EXPECT_EQ(row[0].as<std::string>(), name);
  EXPECT_EQ(pqxx::binarystring(row[1]).str(), bytes);
  EXPECT_EQ(row[2].as<int>(), 5);
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM roundtrip")[0].as<int>(), 1);
}

TEST(PostgresConnection, UniqueViolationIsReportedAsSuch) {
  ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  tx.exec0("CREATE TEMP TABLE uniq (name text PRIMARY KEY)");
  tx.exec_params0("INSERT INTO uniq VALUES ($1)", "a");
  EXPECT_THROW(tx.exec_params0("INSERT INTO uniq VALUES ($1)", "a"), pqxx::unique_violation);
}

TEST(PostgresConnection, WrongPasswordIsRefused) {
  ACMEVAULT_STACK_ENV_OR_SKIP(url, "ACMEVAULT_PG_URL");
  // postgresql://postgres:<password>@host... -> same URL with another password.
  size_t colon = url.find(':', std::string("postgresql://").size());
  size_t at = url.find('@');
  ASSERT_NE(colon, std::string::npos);
  ASSERT_NE(at, std::string::npos);
  std::string wrong = url.substr(0, colon + 1) + "not-the-password" + url.substr(at);
  EXPECT_THROW(pqxx::connection{wrong}, pqxx::broken_connection);
}

}  // namespace
}  // namespace acmevault::storage
