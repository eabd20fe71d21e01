// End-to-end benchmark of a running acmevaultd: prints figures, asserts nothing.
//
//  --mode=issue    IssueCertificate (unique names, service-generated P-256 keys) with --callers
//                  concurrent callers: certificates/s, p50/p99, and per certificate the CPU
//                  seconds of acmevaultd and of PostgreSQL (/proc/<pid>/stat, PostgreSQL's
//                  postmaster and its children), the database's committed transactions
//                  (pg_stat_database.xact_commit) and the ACME operations the service
//                  counts (acmevault_acme_requests_total: not HTTP requests, no nonces).
//                  With --perf_out, `perf record -a -g` during the run (perf report --comm
//                  acmevaultd, postgres, pebble).
//  --mode=read     GetCertificate by serial on --streams concurrent calls, then the server's own
//                  health check (grpc.health.v1.Health/Check) the same way, through the same
//                  client: rates, p50/p99, their ratio, transactions and CPU (acmevaultd's,
//                  PostgreSQL's) per read. With --perf_out, `perf record -g` samples acmevaultd
//                  and the database's backends during the GetCertificate run only (perf report
//                  --comm postgres, or the sync server's threads: grpcpp_sync_ser).
//  --mode=profile  A few issuances and reads one at a time with the database's statement log on
//                  (the caller runs `ALTER DATABASE ... SET log_statement = 'all'` first): per
//                  call, the statements (logged queries: one round trip each, though a simple
//                  query may carry several, "BEGIN; EXECUTE ..." or "...; COMMIT"),
//                  transactions (BEGIN, or a query outside one), tenant settings sent as text
//                  (set_config; prepared set-ups do not show), audit inserts and order-row
//                  reads the service sent, then its transactions per call by their first
//                  statement.
//  --mode=inflight  Orders kept in flight by a slow CA (its validations sleep): --issuances
//                  IssueCertificate calls from --callers callers, each with a --call_ms
//                  deadline so it returns the order handle, then --seconds more of watching.
//                  Every second: orders in flight (the database's non-terminal orders; at_ca:
//                  those made at the CA, the rest still queued as jobs), and
//                  acmevaultd's threads and resident memory (/proc/<pid>/status); at the end
//                  the peaks (VmHWM for memory).
//  --mode=paced    GetCertificate by serial at --rate calls a second in all from --streams callers
//                  (each call waits for its turn on a fixed schedule) for --seconds: one
//                  authenticated unary call per certificate whose answer carries a chain, the
//                  least gRPC a service's issuance costs (run_e2e_bench --ceiling runs it beside
//                  the library and PostgreSQL's floor). Prints "paced ready" once its tenant and
//                  certificate are made, then the rate it kept and, per call, acmevaultd's CPU
//                  and its own (its gRPC threads included).
//
// Each run makes its own tenant (root token from --root_token_file) with an ACME account, its key
// in the vault or, with --key_storage=pkcs11, in the daemon's PKCS#11 token. Every
// loop is bounded by a count and a time limit; everything is on loopback.
// tests/bench/run_e2e_bench starts the stack, a fresh Pebble and service for each run.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "acme/http.h"
#include "acmevault/v1/account_service.grpc.pb.h"
#include "acmevault/v1/admin_service.grpc.pb.h"
#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "tests/testing/api_client.h"

ABSL_FLAG(std::string, mode, "issue", "issue, read or profile");
ABSL_FLAG(std::string, grpc, "", "acmevaultd's gRPC address, host:port");
ABSL_FLAG(std::string, metrics, "", "acmevaultd's metrics URL (http://127.0.0.1:PORT/metrics)");
ABSL_FLAG(std::string, root_token_file, "", "a platform-admin bearer token");
ABSL_FLAG(int, daemon_pid, 0, "acmevaultd's process id, for its CPU time");
ABSL_FLAG(int, postmaster_pid, 0, "PostgreSQL's postmaster process id, for its CPU time");
ABSL_FLAG(std::string, pg_url, "", "a superuser libpq URL of the cluster (statistics, markers)");
ABSL_FLAG(std::string, database, "", "the service's database name");
ABSL_FLAG(std::string, pg_log, "", "PostgreSQL's log file (profile mode)");
ABSL_FLAG(int, callers, 8, "concurrent IssueCertificate callers");
ABSL_FLAG(int, issuances, 200, "issuances, at most");
ABSL_FLAG(int, seconds, 30, "time limit of the issuance run or of each read run");
ABSL_FLAG(int, streams, 64, "concurrent calls of the read run");
ABSL_FLAG(double, rate, 100, "paced mode: calls a second, in all");
ABSL_FLAG(std::string, perf_out, "",
          "record a perf profile (perf record -g) into this file: of acmevaultd and "
          "PostgreSQL's backends during the GetCertificate run (read mode), of the whole "
          "machine during the IssueCertificate run (issue mode)");
ABSL_FLAG(std::string, label, "", "printed first on every line");
ABSL_FLAG(int, call_ms, 500, "inflight mode: each IssueCertificate call's deadline");
ABSL_FLAG(std::string, key_storage, "vault",
          "where the run's tenant keeps its account key: vault or pkcs11 (the daemon's token)");

namespace acmevault::bench {
namespace {

using Clock = std::chrono::system_clock;

// utime + stime (+ the reaped children's, when `children`) of `pid`, in seconds; 0 if unknown.
double CpuSeconds(int pid, bool children) {
  std::string stat = ::acmevault::testing::ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  // Fields after "(comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
  std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
  if (f.size() < 15) return 0;
  double ticks = 0, v = 0;
  for (int field : children ? std::vector<int>{14, 15, 16, 17} : std::vector<int>{14, 15}) {
    if (absl::SimpleAtod(f[field - 3], &v)) ticks += v;
  }
  return ticks / sysconf(_SC_CLK_TCK);
}

// The postmaster's CPU seconds with every child's, live or reaped.
double PostgresCpuSeconds(int postmaster) {
  if (postmaster <= 0) return 0;
  double total = CpuSeconds(postmaster, /*children=*/true);
  for (absl::string_view task :
       absl::StrSplit(::acmevault::testing::ReadFileOrEmpty(absl::StrCat("/proc/", postmaster, "/task/", postmaster,
                                           "/children")),
                      ' ', absl::SkipWhitespace())) {
    int child = 0;
    if (absl::SimpleAtoi(task, &child)) total += CpuSeconds(child, /*children=*/false);
  }
  return total;
}

// Starts `perf record -g -o out -p <acmevaultd>,<its database's backends>` (with `whole`, -a:
// every process, for runs whose database connections are opened while they run; perf report
// --comm picks acmevaultd's and PostgreSQL's); returns its pid, or 0.
pid_t StartPerf(const std::string& out, bool whole = false) {
  std::string pids = absl::StrCat(absl::GetFlag(FLAGS_daemon_pid));
  try {
    pqxx::connection c(absl::GetFlag(FLAGS_pg_url));
    pqxx::nontransaction tx(c);
    for (const auto& row : tx.exec_params(
             "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
             absl::GetFlag(FLAGS_database))) {
      absl::StrAppend(&pids, ",", row[0].as<int>());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pg_stat_activity: %s\n", e.what());
  }
  std::vector<std::string> args = {"perf", "record", "-g", "-o", out};
  if (whole) {
    args.push_back("-a");
  } else {
    args.insert(args.end(), {"-p", pids});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, "perf", nullptr, nullptr, argv.data(), environ) != 0) {
    std::fprintf(stderr, "could not start perf\n");
    return 0;
  }
  absl::SleepFor(absl::Milliseconds(500));  // perf attaches before the run starts
  return pid;
}

void StopPerf(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
}

// pg_stat_database.xact_commit of the service's database, read once the statistics of idle
// backends have been flushed: PostgreSQL 15 flushes a backend's counts at most once a second
// and, when it goes idle within a second of its last flush, 10 s later.
int64_t Commits() {
  if (absl::GetFlag(FLAGS_pg_url).empty()) return 0;
  absl::SleepFor(absl::Seconds(11));
  try {
    pqxx::connection c(absl::GetFlag(FLAGS_pg_url));
    pqxx::nontransaction tx(c);
    return tx
        .exec_params1("SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                      absl::GetFlag(FLAGS_database))[0]
        .as<int64_t>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pg_stat_database: %s\n", e.what());
    return 0;
  }
}

// The sum of every sample of `prefix` in acmevaultd's metrics.
double Metric(absl::string_view prefix) {
  if (absl::GetFlag(FLAGS_metrics).empty()) return 0;
  auto http = acme::CurlTransport::Create({.allow_http = true});
  if (!http.ok()) return 0;
  auto r = (*http)->Send({"GET", absl::GetFlag(FLAGS_metrics), {}, ""});
  if (!r.ok()) return 0;
  double total = 0, v = 0;
  for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
    if (!absl::StartsWith(line, prefix)) continue;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += v;
  }
  return total;
}

using Service = ::acmevault::testing::ApiClient;
using Tenant = ::acmevault::testing::ApiTenant;
using ::acmevault::testing::Percentile;

// A tenant for one run; prints why when its setup failed.
Tenant NewTenant(Service& s) {
  // The service's default policy, but for where the account key is kept.
  v1::TenantPolicy policy;
  policy.set_key_storage(v1::KEY_STORAGE_PKCS11);
  const bool token = absl::GetFlag(FLAGS_key_storage) == "pkcs11";
  Tenant t = s.NewTenant("bench", "example", token ? &policy : nullptr);
  if (!t.status.ok()) std::printf("setup failed: %s\n", t.status.error_message().c_str());
  return t;
}

grpc::Status Issue(Service& s, const Tenant& t, int n, v1::IssueCertificateResponse* out) {
  v1::IssueCertificateRequest r;
  r.add_identifiers(absl::StrCat("c", n, ".", t.name, ".example"));
  r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
  return s.certs().IssueCertificate(::acmevault::testing::ApiContext(t.host_token).get(), r, out);
}

struct Run {
  int ok = 0, failed = 0;
  double seconds = 0;
  std::vector<double> ms;
  std::string first_error;
};

// Calls `call(i)` from `threads` threads until `total` calls were made or `limit` passed; with a
// `rate` (calls a second), call i starts no earlier than i / rate seconds after the first.
Run Drive(int threads, int total, absl::Duration limit,
          const std::function<grpc::Status(int)>& call, double rate = 0) {
  Run run;
  absl::Mutex mu;
  int started = 0;
  const absl::Time start = absl::Now(), deadline = start + limit;
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w) {
    pool.emplace_back([&] {
      std::vector<double> mine;
      for (;;) {
        int i;
        {
          absl::MutexLock lock(&mu);
          if (started >= total || absl::Now() >= deadline) break;
          i = started++;
        }
        if (rate > 0) {
          const absl::Time turn = start + absl::Seconds(i / rate);
          if (turn >= deadline) break;
          absl::SleepFor(turn - absl::Now());
        }
        const absl::Time t0 = absl::Now();
        grpc::Status st = call(i);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
        if (st.ok()) {
          mine.push_back(ms);
          continue;
        }
        absl::MutexLock lock(&mu);
        ++run.failed;
        if (run.first_error.empty()) run.first_error = st.error_message();
      }
      absl::MutexLock lock(&mu);
      run.ok += static_cast<int>(mine.size());
      run.ms.insert(run.ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : pool) t.join();
  run.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return run;
}

std::string Label() {
  const std::string label = absl::GetFlag(FLAGS_label);
  return label.empty() ? "" : label + " ";
}

void PrintRun(absl::string_view what, Run& run, absl::string_view extra) {
  std::printf("%s%s ok=%d failed=%d seconds=%.1f per_s=%.1f p50_ms=%.1f p99_ms=%.1f%s%s%s\n",
              Label().c_str(), std::string(what).c_str(), run.ok, run.failed, run.seconds,
              run.seconds > 0 ? run.ok / run.seconds : 0.0, Percentile(run.ms, 0.5),
              Percentile(run.ms, 0.99), std::string(extra).c_str(),
              run.first_error.empty() ? "" : " first_error=", run.first_error.c_str());
}

void BenchIssue(Service& s) {
  Tenant t = NewTenant(s);
  if (!t.status.ok()) return;
  const int callers = absl::GetFlag(FLAGS_callers);
  const int64_t commits0 = Commits();
  const double acme0 = Metric("acmevault_acme_requests_total");
  const double daemon0 = CpuSeconds(absl::GetFlag(FLAGS_daemon_pid), false);
  const double pg0 = PostgresCpuSeconds(absl::GetFlag(FLAGS_postmaster_pid));
  const pid_t perf =
      absl::GetFlag(FLAGS_perf_out).empty() ? 0 : StartPerf(absl::GetFlag(FLAGS_perf_out), true);
  Run run = Drive(callers, absl::GetFlag(FLAGS_issuances),
                  absl::Seconds(absl::GetFlag(FLAGS_seconds)), [&](int i) {
                    v1::IssueCertificateResponse out;
                    return Issue(s, t, i, &out);
                  });
  const double daemon_cpu = CpuSeconds(absl::GetFlag(FLAGS_daemon_pid), false) - daemon0;
  const double pg_cpu = PostgresCpuSeconds(absl::GetFlag(FLAGS_postmaster_pid)) - pg0;
  StopPerf(perf);
  const double acme = Metric("acmevault_acme_requests_total") - acme0;
  const int64_t commits = Commits() - commits0;
  const double n = std::max(run.ok, 1);
  PrintRun(absl::StrCat("issue callers=", callers), run,
           absl::StrFormat(" daemon_cpu_ms_per_cert=%.2f pg_cpu_ms_per_cert=%.2f "
                           "pg_xacts_per_cert=%.1f acme_operations_per_cert=%.1f",
                           1000 * daemon_cpu / n, 1000 * pg_cpu / n, commits / n, acme / n));
}

// A tenant and the serial of one certificate issued for it, which the read runs get again and
// again; nullopt (and why, printed) when that could not be made.
struct Issued {
  Tenant tenant;
  std::string serial;
};
std::optional<Issued> IssueOne(Service& s, absl::string_view run) {
  Tenant t = NewTenant(s);
  if (!t.status.ok()) return std::nullopt;
  v1::IssueCertificateResponse issued;
  grpc::Status st = Issue(s, t, 0, &issued);
  if (!st.ok()) {
    std::printf("%s%s setup: IssueCertificate: %s\n", Label().c_str(), std::string(run).c_str(),
                st.error_message().c_str());
    return std::nullopt;
  }
  return Issued{t, issued.certificate().serial()};
}

// GetCertificate of that certificate by serial, as its tenant's host.
grpc::Status GetIssued(Service& s, const Issued& one) {
  v1::GetCertificateRequest r;
  r.set_serial(one.serial);
  v1::Certificate out;
  return s.certs().GetCertificate(::acmevault::testing::ApiContext(one.tenant.host_token).get(), r,
                                  &out);
}

void BenchRead(Service& s) {
  const std::optional<Issued> one = IssueOne(s, "read");
  if (!one) return;
  const int streams = absl::GetFlag(FLAGS_streams);
  const absl::Duration limit = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  constexpr int kMaxCalls = 2000000;
  auto get = [&](int) { return GetIssued(s, *one); };
  Drive(streams, 5 * streams, limit, get);  // Warm: connections, caches.
  const int64_t commits0 = Commits();
  const double daemon0 = CpuSeconds(absl::GetFlag(FLAGS_daemon_pid), false);
  const double pg0 = PostgresCpuSeconds(absl::GetFlag(FLAGS_postmaster_pid));
  const pid_t perf =
      absl::GetFlag(FLAGS_perf_out).empty() ? 0 : StartPerf(absl::GetFlag(FLAGS_perf_out));
  Run reads = Drive(streams, kMaxCalls, limit, get);
  const double daemon_cpu = CpuSeconds(absl::GetFlag(FLAGS_daemon_pid), false) - daemon0;
  const double pg_cpu = PostgresCpuSeconds(absl::GetFlag(FLAGS_postmaster_pid)) - pg0;
  StopPerf(perf);
  const int64_t commits = Commits() - commits0;
  grpc::GenericStub generic(s.channel());
  Run health = Drive(streams, kMaxCalls, limit, [&](int) {
    grpc::ByteBuffer request, response;
    grpc::Slice empty("", 0);  // HealthCheckRequest{service: ""}: no bytes.
    request = grpc::ByteBuffer(&empty, 1);
    grpc::ClientContext ctx;
    ctx.set_deadline(Clock::now() + std::chrono::seconds(10));
    grpc::Status result;
    absl::Notification done;
    generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                      &response, [&](grpc::Status status) {
                        result = status;
                        done.Notify();
                      });
    done.WaitForNotification();
    return result;
  });
  const double n = std::max(reads.ok, 1);
  PrintRun(absl::StrCat("read streams=", streams), reads,
           absl::StrFormat(" pg_xacts_per_read=%.2f daemon_cpu_us_per_read=%.0f "
                           "pg_cpu_us_per_read=%.0f",
                           commits / n, 1e6 * daemon_cpu / n, 1e6 * pg_cpu / n));
  PrintRun(absl::StrCat("health streams=", streams), health, "");
  std::printf("%sread_vs_health rate_ratio=%.3f\n", Label().c_str(),
              health.ok > 0 ? (reads.ok / reads.seconds) / (health.ok / health.seconds) : 0.0);
}

void BenchPaced(Service& s) {
  const double rate = absl::GetFlag(FLAGS_rate);
  if (!(rate > 0)) {
    std::fprintf(stderr, "--rate must be above 0 calls a second, not %g\n", rate);
    std::exit(2);
  }
  const std::optional<Issued> one = IssueOne(s, "paced");
  if (!one) return;
  const int streams = absl::GetFlag(FLAGS_streams);
  auto get = [&](int) { return GetIssued(s, *one); };
  Drive(streams, 5 * streams, absl::Seconds(10), get);  // Warm: connections, caches.
  std::printf("%spaced ready\n", Label().c_str());
  std::fflush(stdout);
  const double daemon0 = CpuSeconds(absl::GetFlag(FLAGS_daemon_pid), false);
  const double self0 = CpuSeconds(getpid(), false);
  Run run = Drive(streams, 2000000, absl::Seconds(absl::GetFlag(FLAGS_seconds)), get, rate);
  const double daemon_cpu = CpuSeconds(absl::GetFlag(FLAGS_daemon_pid), false) - daemon0;
  const double self_cpu = CpuSeconds(getpid(), false) - self0;
  const double n = std::max(run.ok, 1);
  PrintRun(absl::StrFormat("paced streams=%d rate=%.0f", streams, rate), run,
           absl::StrFormat(" daemon_cpu_us_per_call=%.0f client_cpu_us_per_call=%.0f",
                           1e6 * daemon_cpu / n, 1e6 * self_cpu / n));
}

// Per call, what the statement log shows between two markers. A transaction is a BEGIN or a
// statement sent outside one (autocommit).
struct StatementCounts {
  int statements = 0, transactions = 0, set_configs = 0, audit_inserts = 0, order_reads = 0;
  // Transactions by their first statement that is not BEGIN or the tenant's set-up (its first
  // 90 characters).
  std::map<std::string, int> by_first;
};

StatementCounts CountStatements(const std::string& log, const std::string& from,
                                const std::string& to, int own_pid) {
  StatementCounts c;
  bool on = false;
  std::map<std::string, bool> in_transaction;  // By server process.
  std::map<std::string, bool> tx_named;        // Its transaction is in by_first.
  // A statement whose text has line breaks (a certificate's PEM) goes on in lines that begin
  // with a tab: one entry, so that what follows the breaks (its "; COMMIT") counts.
  std::vector<std::string> entries;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StartsWith(line, "\t") && !entries.empty()) {
      absl::StrAppend(&entries.back(), "\n", line.substr(1));
    } else {
      entries.emplace_back(line);
    }
  }
  for (absl::string_view line : entries) {
    if (absl::StrContains(line, from)) on = true;
    if (absl::StrContains(line, to)) break;
    const size_t open = line.find('['), close = line.find(']');
    if (!on || open == absl::string_view::npos || close < open) continue;
    const std::string pid(line.substr(open + 1, close - open - 1));
    if (pid == absl::StrCat(own_pid)) continue;
    size_t at = line.find(" LOG:  statement: ");
    size_t text = at == absl::string_view::npos ? 0 : at + 18;
    if (at == absl::string_view::npos) {
      at = line.find(" LOG:  execute ");
      if (at == absl::string_view::npos) continue;
      text = line.find(": ", at + 15);
      if (text == absl::string_view::npos) continue;
      text += 2;
    }
    absl::string_view sql = line.substr(text);
    ++c.statements;
    bool& open_tx = in_transaction[pid];
    bool& named = tx_named[pid];
    auto name = [&](absl::string_view first) {
      if (named || first.empty() || absl::StrContains(first, "set_config('acmevault.tenant_id'")) {
        return;
      }
      ++c.by_first[std::string(first.substr(0, 90))];
      named = true;
    };
    // One logged line is one round trip: a simple query may carry several statements, as
    // "EXECUTE <audit insert>(...); COMMIT" does, and a transaction's opening travels with its
    // first statements after libpqxx's pipeline's "SELECT 1": "SELECT 1; BEGIN; EXECUTE
    // <tenant set-up>(...); <first statement>; ...".
    const bool ends = absl::StartsWith(sql, "COMMIT") || absl::StartsWith(sql, "ROLLBACK") ||
                      absl::EndsWith(absl::StripTrailingAsciiWhitespace(sql), "; COMMIT");
    if (absl::StartsWith(sql, "SELECT 1; BEGIN")) {
      open_tx = true;
      named = false;
      ++c.transactions;
      absl::string_view rest = sql.substr(sql.find("BEGIN"));
      const size_t set_up = rest.find("; EXECUTE av_");
      const size_t next = rest.find("; ", set_up == absl::string_view::npos ? 0 : set_up + 2);
      name(next == absl::string_view::npos ? "" : rest.substr(next + 2));
    } else if (absl::StartsWith(sql, "BEGIN")) {
      open_tx = true;
      named = false;
      ++c.transactions;
    } else if (!open_tx) {
      ++c.transactions;
      named = false;
      name(sql);
    } else if (!absl::StartsWith(sql, "COMMIT")) {
      name(sql);
    }
    if (ends) open_tx = false;
    if (absl::StrContains(sql, "set_config('acmevault.tenant_id'")) ++c.set_configs;
    if (absl::StrContains(sql, "INSERT INTO audit_log") ||
        absl::StrContains(sql, "EXECUTE av_audit_insert")) {
      ++c.audit_inserts;
    }
    if (absl::StrContains(sql, "FROM orders")) ++c.order_reads;
  }
  return c;
}

void BenchProfile(Service& s) {
  Tenant t = NewTenant(s);
  if (!t.status.ok()) return;
  const int n = std::min(absl::GetFlag(FLAGS_issuances), 20);
  constexpr int kReads = 100;
  std::string serial;
  try {
    // The markers go through the service's own database, whose sessions log every statement.
    std::string url = absl::GetFlag(FLAGS_pg_url);
    url = absl::StrCat(url.substr(0, url.rfind('/') + 1), absl::GetFlag(FLAGS_database));
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    const int own_pid = tx.exec1("SELECT pg_backend_pid()")[0].as<int>();
    auto mark = [&](absl::string_view what) {
      tx.exec(absl::StrCat("SELECT 'acmevault-bench-", what, "'"));
    };
    absl::SleepFor(absl::Seconds(2));  // The engine's idle claims are logged too; let it settle.
    mark("issue");
    int issued = 0;
    for (int i = 0; i < n; ++i) {
      v1::IssueCertificateResponse out;
      if (Issue(s, t, i, &out).ok()) {
        ++issued;
        serial = out.certificate().serial();
      }
    }
    mark("read");
    int reads = 0;
    for (int i = 0; i < kReads && !serial.empty(); ++i) {
      v1::GetCertificateRequest r;
      r.set_serial(serial);
      v1::Certificate out;
      if (s.certs().GetCertificate(::acmevault::testing::ApiContext(t.host_token).get(), r, &out).ok()) ++reads;
    }
    mark("end");
    absl::SleepFor(absl::Milliseconds(500));
    const std::string log = ::acmevault::testing::ReadFileOrEmpty(absl::GetFlag(FLAGS_pg_log));
    for (auto [what, from, to, calls] :
         {std::tuple{"IssueCertificate", "acmevault-bench-issue", "acmevault-bench-read", issued},
          std::tuple{"GetCertificate", "acmevault-bench-read", "acmevault-bench-end", reads}}) {
      StatementCounts c = CountStatements(log, from, to, own_pid);
      const double k = std::max(calls, 1);
      std::printf(
          "%sprofile %s calls=%d statements=%.1f transactions=%.1f set_config=%.1f "
          "audit_inserts=%.1f order_reads=%.1f (per call)\n",
          Label().c_str(), what, calls, c.statements / k, c.transactions / k, c.set_configs / k,
          c.audit_inserts / k, c.order_reads / k);
      std::vector<std::pair<int, std::string>> firsts;
      for (const auto& [sql, count] : c.by_first) firsts.emplace_back(count, sql);
      std::sort(firsts.rbegin(), firsts.rend());
      for (const auto& [count, sql] : firsts) {
        std::printf("%sprofile %s transactions_per_call=%.2f first=%s\n", Label().c_str(), what,
                    count / k, sql.c_str());
      }
    }
  } catch (const std::exception& e) {
    std::printf("%sprofile: %s\n", Label().c_str(), e.what());
  }
}

// A number from the "Name:  value" line of /proc/<pid>/status (kB for memory), or -1.
int64_t ProcStatus(int pid, absl::string_view name) {
  const std::string status =
      ::acmevault::testing::ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/status"));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, ":")) continue;
    line = absl::StripAsciiWhitespace(line);
    int64_t v = 0;
    if (absl::SimpleAtoi(line.substr(0, line.find(' ')), &v)) return v;
  }
  return -1;
}

void BenchInflight(Service& s) {
  Tenant t = NewTenant(s);
  if (!t.status.ok()) return;
  const int pid = absl::GetFlag(FLAGS_daemon_pid);
  std::string url = absl::GetFlag(FLAGS_pg_url);
  url = absl::StrCat(url.substr(0, url.rfind('/') + 1), absl::GetFlag(FLAGS_database));
  std::atomic<bool> submitting{true}, done{false};
  std::atomic<int64_t> peak_inflight{0}, peak_threads{0};
  const absl::Time start = absl::Now();
  // Samples once a second until `done`: bounded by the run's own limits below.
  std::thread sampler([&] {
    std::unique_ptr<pqxx::connection> c;
    try {
      c = std::make_unique<pqxx::connection>(url);
    } catch (const std::exception& e) {
      std::printf("%sinflight: database: %s\n", Label().c_str(), e.what());
    }
    while (!done) {
      int64_t inflight = -1, at_ca = -1, valid = -1;
      if (c) {
        try {
          pqxx::nontransaction tx(*c);
          pqxx::row r = tx.exec1(
              "SELECT count(*) FILTER (WHERE state NOT IN ('valid', 'invalid')), "
              "count(*) FILTER (WHERE state IN ('pending', 'ready', 'processing')), "
              "count(*) FILTER (WHERE state = 'valid') FROM orders");
          inflight = r[0].as<int64_t>();
          at_ca = r[1].as<int64_t>();
          valid = r[2].as<int64_t>();
        } catch (const std::exception& e) {
          std::printf("%sinflight: count: %s\n", Label().c_str(), e.what());
        }
      }
      const int64_t threads = ProcStatus(pid, "Threads");
      peak_inflight = std::max<int64_t>(peak_inflight, inflight);
      peak_threads = std::max<int64_t>(peak_threads, threads);
      std::printf("%sinflight t=%.0f submitting=%d in_flight=%lld at_ca=%lld valid=%lld "
                  "threads=%lld rss_mb=%.1f\n",
                  Label().c_str(), absl::ToDoubleSeconds(absl::Now() - start),
                  submitting ? 1 : 0, static_cast<long long>(inflight),
                  static_cast<long long>(at_ca), static_cast<long long>(valid),
                  static_cast<long long>(threads),
                  ProcStatus(pid, "VmRSS") / 1024.0);
      std::fflush(stdout);
      absl::SleepFor(absl::Seconds(1));
    }
  });
  const int call_ms = absl::GetFlag(FLAGS_call_ms);
  std::map<std::string, int> codes;
  absl::Mutex codes_mu;
  Run run = Drive(absl::GetFlag(FLAGS_callers), absl::GetFlag(FLAGS_issuances),
                  absl::Minutes(30), [&](int i) {
                    v1::IssueCertificateRequest r;
                    r.add_identifiers(absl::StrCat("f", i, ".", t.name, ".example"));
                    r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
                    auto ctx = ::acmevault::testing::ApiContext(t.host_token);
                    ctx->set_deadline(Clock::now() + std::chrono::milliseconds(call_ms));
                    v1::IssueCertificateResponse out;
                    grpc::Status st = s.certs().IssueCertificate(ctx.get(), r, &out);
                    absl::MutexLock lock(&codes_mu);
                    ++codes[st.ok() ? (out.has_certificate() ? "certificate" : "handle")
                                    : absl::StrCat("code", static_cast<int>(st.error_code()))];
                    return st;
                  });
  submitting = false;
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  done = true;
  sampler.join();
  std::string answers;
  for (const auto& [code, n] : codes) absl::StrAppend(&answers, answers.empty() ? "" : ",", code, ":", n);
  std::printf("%sinflight calls=%d submit_seconds=%.1f answers=%s peak_in_flight=%lld "
              "peak_threads=%lld peak_rss_mb=%.1f\n",
              Label().c_str(), run.ok + run.failed, run.seconds, answers.c_str(),
              static_cast<long long>(peak_inflight.load()),
              static_cast<long long>(peak_threads.load()), ProcStatus(pid, "VmHWM") / 1024.0);
}

}  // namespace
}  // namespace acmevault::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  acmevault::testing::ApiClient s(absl::GetFlag(FLAGS_grpc), absl::GetFlag(FLAGS_root_token_file));
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "issue") {
    acmevault::bench::BenchIssue(s);
  } else if (mode == "read") {
    acmevault::bench::BenchRead(s);
  } else if (mode == "paced") {
    acmevault::bench::BenchPaced(s);
  } else if (mode == "profile") {
    acmevault::bench::BenchProfile(s);
  } else if (mode == "inflight") {
    acmevault::bench::BenchInflight(s);
  } else {
    std::fprintf(stderr, "unknown --mode %s\n", mode.c_str());
    return 2;
  }
  return 0;
}
