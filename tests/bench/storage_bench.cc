// storage_bench: how the certificate queries the service runs most scale with the table.
//
// Loads 1,000 tenants and then certificates through PostgresStore (as the app role, with
// row-level security, triggers and audit rows, 4 writer threads), first 10,000 and then up to
// 100,000, into a fresh database on the local stack, and after each load times
//   - the renewal due query across tenants (ListCertificatesDueForRenewal), first page of 100,
//     and every page of a full sweep of the due set;
//   - the lookup of the current certificate by identifier set (GetCurrentCertificate);
// printing median and p99 milliseconds. Not a test: run it by hand and record the figures.
//
//   bazel run //tests/bench:storage_bench                 # URL from $ACMEVAULT_PG_URL
//   bazel run //tests/bench:storage_bench -- postgresql://postgres:...@127.0.0.1:5432/acmevault
//
// The URL is the stack's superuser URL; the benchmark creates (and drops) its own database and
// refuses anything but a loopback server.
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/testing/fake_clock.h"
#include "storage/postgres_store.h"
#include "storage/testing/test_database.h"
#include "storage/testing/test_keks.h"

namespace acmevault::storage {
namespace {

constexpr int kTenants = 1000;
constexpr int kWriters = 4;

struct Figures {
  double median_ms = 0;
  double p99_ms = 0;
  size_t samples = 0;
};

Figures Summarize(std::vector<double> ms) {
  Figures f;
  f.samples = ms.size();
  if (ms.empty()) return f;
  std::sort(ms.begin(), ms.end());
  f.median_ms = ms[ms.size() / 2];
  f.p99_ms = ms[std::min(ms.size() - 1, static_cast<size_t>(ms.size() * 0.99))];
  return f;
}

void Print(int rows, const std::string& what, const Figures& f) {
  std::cout << absl::StrFormat("%8d  %-44s %9.3f %9.3f %8d\n", rows, what, f.median_ms,
                               f.p99_ms, f.samples);
}

bool Loopback(const std::string& url) {
  for (const char* host : {"@127.0.0.1:", "@127.0.0.1/", "@localhost:", "@localhost/", "@[::1]"}) {
    if (absl::StrContains(url, host)) return true;
  }
  return false;
}

std::string Identifier(int tenant, int n) {
  return absl::StrCat("host-", n, ".tenant-", tenant, ".example");
}

class Bench {
 public:
  Bench(PostgresStore& store, acmevault::testing::FakeClock& clock,
        const std::vector<TenantId>& tenants)
      : store_(store), clock_(clock), tenants_(tenants) {}

  // Inserts certificates [from, to) round-robin over the tenants; certificate i belongs to
  // tenant i % kTenants and expires 1 to 90 days from now (uniformly).
  bool Load(int from, int to) {
    std::atomic<int> next{from};
    std::atomic<bool> failed{false};
    const absl::Time start = absl::Now();
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&] {
        for (int i = next++; i < to && !failed; i = next++) {
          int t = i % kTenants;
          NewCertificate c;
          c.identifiers = {Identifier(t, i / kTenants)};
          c.serial = absl::StrFormat("%x", i + 1);
          c.not_before = clock_.Now() - absl::Hours(24);
          c.not_after = clock_.Now() + absl::Hours(24) + absl::Minutes((i * 7919) % (89 * 1440));
          c.chain_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
          auto stored = store_.InsertCertificate(Scope{tenants_[t], {"bench", "bench"}}, c);
          if (!stored.ok()) {
            std::cerr << "insert failed: " << stored.status() << "\n";
            failed = true;
          }
        }
      });
    }
    for (std::thread& w : writers) w.join();
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    std::cout << absl::StrFormat("# inserted %d certificates in %.1f s (%.0f/s, %d writers)\n",
                                 to - from, seconds, (to - from) / seconds, kWriters);
    return !failed;
  }

  void Measure(int rows) {
    std::mt19937 rng(rows);
    // Due query, first page: what a scheduler tick asks first.
    std::vector<double> first_page;
    size_t due_first = 0;
    for (int i = 0; i < 200; ++i) {
      absl::Time t0 = absl::Now();
      auto page = store_.ListCertificatesDueForRenewal({"", 100});
      first_page.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      if (!page.ok()) {
        std::cerr << page.status() << "\n";
        return;
      }
      due_first = page->items.size();
    }
    Print(rows, absl::StrCat("due query, first page (", due_first, " rows)"),
          Summarize(first_page));

    // A full sweep of the due set, page by page (bounded).
    std::vector<double> sweep;
    size_t due_total = 0;
    PageRequest page{"", 100};
    for (int pages = 0; pages < 2000; ++pages) {
      absl::Time t0 = absl::Now();
      auto p = store_.ListCertificatesDueForRenewal(page);
      sweep.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      if (!p.ok()) break;
      due_total += p->items.size();
      page.page_token = p->next_page_token;
      if (page.page_token.empty()) break;
    }
    Print(rows, absl::StrCat("due query, sweep per page (", due_total, " due)"),
          Summarize(sweep));

    // Lookup of the current certificate by identifier set, random existing certificates.
    std::vector<double> lookup;
    int found = 0;
    std::uniform_int_distribution<int> pick(0, rows - 1);
    for (int i = 0; i < 1000; ++i) {
      int n = pick(rng);
      int t = n % kTenants;
      absl::Time t0 = absl::Now();
      auto c = store_.GetCurrentCertificate(Scope{tenants_[t], {"bench", "bench"}},
                                            {Identifier(t, n / kTenants)});
      lookup.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      found += c.ok() ? 1 : 0;
    }
    Print(rows, absl::StrCat("lookup by identifiers (", found, "/1000 found)"),
          Summarize(lookup));
  }

 private:
  PostgresStore& store_;
  acmevault::testing::FakeClock& clock_;
  const std::vector<TenantId>& tenants_;
};

void Explain(const std::string& superuser_url, const std::string& app_role, TenantId tenant,
             absl::Time now) {
  pqxx::connection conn(superuser_url);
  pqxx::work tx(conn);
  tx.exec("SET LOCAL ROLE " + app_role);
  tx.exec_params("SELECT set_config('acmevault.tenant_id', $1, true)", std::to_string(tenant));
  std::string ids = absl::StrCat("{", Identifier(0, 3), "}");
  std::cout << "# plan, lookup by identifiers (as the app role, row-level security on):\n";
  for (const pqxx::row& r : tx.exec_params(
           "EXPLAIN SELECT id FROM certificates WHERE tenant_id = $1 "
           "AND identifiers_hash = av_identifiers_hash($2::text[]) AND revoked_at IS NULL "
           "AND not_after > av_ts($3) ORDER BY not_after DESC LIMIT 1",
           tenant, ids, absl::ToUnixMicros(now))) {
    std::cout << "#   " << r[0].c_str() << "\n";
  }
  tx.exec("RESET ROLE");
  std::cout << "# plan, the due query's body (as in av_certificates_due):\n";
  for (const pqxx::row& r : tx.exec_params(
           "EXPLAIN SELECT c.tenant_id, c.id FROM certificates c JOIN tenants t "
           "ON t.id = c.tenant_id WHERE c.revoked_at IS NULL AND c.superseded_at IS NULL "
           "AND t.disabled_at IS NULL AND c.not_after <= av_ts($1) + (SELECT "
           "max(renewal_window_seconds) FROM tenants) * interval '1 second' AND c.not_after <= "
           "av_ts($1) + t.renewal_window_seconds * interval '1 second' AND (c.not_after, c.id) "
           "> ('-infinity', 0) ORDER BY c.not_after, c.id LIMIT 101",
           absl::ToUnixMicros(now))) {
    std::cout << "#   " << r[0].c_str() << "\n";
  }
}

int Main(int argc, char** argv) {
  const char* env = std::getenv("ACMEVAULT_PG_URL");
  std::string url = argc > 1 ? argv[1] : (env != nullptr ? env : "");
  if (url.empty()) {
    std::cerr << "usage: storage_bench [SUPERUSER_URL] (or set ACMEVAULT_PG_URL)\n";
    return 2;
  }
  if (!Loopback(url)) {
    std::cerr << "storage_bench: refusing a non-loopback database\n";
    return 2;
  }
  auto db = testing::TestDatabase::Create(url);
  if (!db.ok()) {
    std::cerr << db.status() << "\n";
    return 1;
  }
  acmevault::testing::FakeClock clock;
  auto store = (*db)->OpenStore(&clock, testing::TestKeks(testing::KekText("bench", 'b')), kWriters);
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    return 1;
  }
  std::vector<TenantId> tenants;
  for (int t = 0; t < kTenants; ++t) {
    TenantSpec spec;
    spec.name = absl::StrCat("tenant-", t);
    spec.acme_directory_url = "https://ca.test/dir";
    spec.policy.renewal_window = absl::Hours(24 * 30);
    auto tenant = (*store)->CreateTenant({"bench", "bench"}, spec);
    if (!tenant.ok()) {
      std::cerr << tenant.status() << "\n";
      return 1;
    }
    tenants.push_back(tenant->id);
  }
  std::cout << "# storage_bench: " << kTenants << " tenants, database " << (*db)->name()
            << ", PostgreSQL on loopback\n";
  std::cout << absl::StrFormat("%8s  %-44s %9s %9s %8s\n", "rows", "query", "median_ms",
                               "p99_ms", "samples");
  Bench bench(**store, clock, tenants);
  int loaded = 0;
  for (int rows : {10000, 100000}) {
    if (!bench.Load(loaded, rows)) return 1;
    loaded = rows;
    // As autovacuum would have by now: fresh statistics.
    if (!(*db)->Execute("ANALYZE").ok()) return 1;
    bench.Measure(rows);
  }
  Explain((*db)->superuser_url(), (*db)->name() + "_app", tenants[0], clock.Now());
  return 0;
}

}  // namespace
}  // namespace acmevault::storage

int main(int argc, char** argv) { return acmevault::storage::Main(argc, argv); }
