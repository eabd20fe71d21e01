#include "storage/testing/test_database.h"

#include <pqxx/pqxx>

#include <unistd.h>

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "storage/migrate.h"

namespace acmevault::storage::testing {
namespace {

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < bytes; ++i) absl::StrAppendFormat(&out, "%02x", rd() & 0xff);
  return out;
}

// The user:password part and the database of a postgresql:// URL.
struct UrlParts {
  std::string scheme, credentials, host, database, query;
};

UrlParts Split(absl::string_view url) {
  UrlParts p;
  size_t scheme_end = url.find("://");
  p.scheme = std::string(url.substr(0, scheme_end + 3));
  absl::string_view rest = url.substr(scheme_end + 3);
  size_t at = rest.find('@');
  if (at != absl::string_view::npos) {
    p.credentials = std::string(rest.substr(0, at));
    rest.remove_prefix(at + 1);
  }
  size_t slash = rest.find('/');
  p.host = std::string(rest.substr(0, slash));
  if (slash != absl::string_view::npos) {
    absl::string_view path = rest.substr(slash + 1);
    size_t q = path.find('?');
    p.database = std::string(path.substr(0, q));
    if (q != absl::string_view::npos) p.query = std::string(path.substr(q));
  }
  return p;
}

absl::Status Run(const std::string& url, const std::string& sql) {
  try {
    pqxx::connection conn(url);
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(e.what());
  }
}

}  // namespace

std::string RewriteUrl(absl::string_view url, absl::string_view user, absl::string_view password,
                       absl::string_view database) {
  UrlParts p = Split(url);
  return absl::StrCat(p.scheme, user, ":", password, "@", p.host, "/", database, p.query);
}

TestDatabase::TestDatabase(std::string admin_url, std::string name)
    : admin_url_(std::move(admin_url)), name_(std::move(name)) {}

absl::StatusOr<std::unique_ptr<TestDatabase>> TestDatabase::Create(
    const std::string& superuser_url, bool migrate) {
  std::string name = "t_" + RandomHex(8);
  auto db = std::unique_ptr<TestDatabase>(new TestDatabase(superuser_url, name));
  UrlParts p = Split(superuser_url);
  db->superuser_url_ = absl::StrCat(p.scheme, p.credentials, "@", p.host, "/", name, p.query);
  RETURN_IF_ERROR(Run(superuser_url, absl::StrCat("CREATE DATABASE ", name)));
  if (migrate) {
    MigrateOptions options;
    options.url = db->superuser_url_;
    RETURN_IF_ERROR(Migrate(options).status());
    RETURN_IF_ERROR(db->CreateAppRole());
  }
  return db;
}

absl::Status TestDatabase::CreateAppRole() {
  std::string password = RandomHex(16);
  RETURN_IF_ERROR(Run(admin_url_, absl::StrCat("CREATE ROLE ", name_, "_app LOGIN PASSWORD '",
                                               password, "' IN ROLE acmevault_app")));
  app_role_ = true;
  app_url_ = RewriteUrl(superuser_url_, name_ + "_app", password, name_);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PostgresStore>> TestDatabase::OpenStore(const Clock* clock,
                                                                       KekSet keks,
                                                                       int pool_size) const {
  PostgresStoreOptions options;
  options.pool.url = app_url_;
  options.pool.size = pool_size;
  options.clock = clock;
  return PostgresStore::Create(options, std::move(keks));
}

absl::StatusOr<StoreOnDatabase> CreateStoreOnDatabase(const std::string& superuser_url,
                                                      const Clock* clock, KekSet keks) {
  StoreOnDatabase out;
  ASSIGN_OR_RETURN(out.db, TestDatabase::Create(superuser_url));
  ASSIGN_OR_RETURN(out.store, out.db->OpenStore(clock, std::move(keks)));
  return out;
}

absl::Status TestDatabase::Execute(const std::string& sql) { return Run(superuser_url_, sql); }

absl::StatusOr<std::string> TestDatabase::Dump() const {
  const char* pg_dump = access("/usr/lib/postgresql/15/bin/pg_dump", X_OK) == 0
                            ? "/usr/lib/postgresql/15/bin/pg_dump"
                            : "pg_dump";
  std::string command = absl::StrCat(pg_dump, " --no-owner --dbname='", superuser_url_, "'");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run pg_dump");
  std::string out;
  char buffer[65536];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  int rc = pclose(pipe);
  if (rc != 0) return absl::InternalError(absl::StrCat("pg_dump exited with ", rc));
  return out;
}

TestDatabase::~TestDatabase() {
  Run(admin_url_, absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)")).IgnoreError();
  if (app_role_) Run(admin_url_, absl::StrCat("DROP ROLE IF EXISTS ", name_, "_app")).IgnoreError();
}

}  // namespace acmevault::storage::testing
