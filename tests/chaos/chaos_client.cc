// chaos_client: drives IssueCertificate against one or more running acmevaultd replicas while
// tests/chaos/run injects faults, and records what every caller finally got.
//
// Issuance i asks for "c<i>.<tenant>.<domain>" with a service-generated P-256 key and the
// idempotency key "chaos-<i>", so a call repeated after a fault continues the same order rather
// than starting another. Each call goes to a random replica of --grpc. A call answered with a
// code listed in --retry_codes, or with an order still pending at the CA, is repeated (after
// 200 ms) until the issuance's own limit (--issuance_seconds); any other error ends the
// issuance as failed. Every loop is bounded by a count and a time limit.
//
// Prints, as one line:
//   issue issuances=N completed=C failed=F attempts=A pending_answers=P codes=UNAVAILABLE:3,...
//     seconds=S p50_ms=.. p99_ms=.. max_ms=.. [first_error=...]
// (codes counts every non-OK answer by name; latencies are per issuance, retries included) and
// writes one line per completed issuance to --record: "<idempotency key> <order id> <serial>".
// With --calls it also writes one line per call as it ends: "<unix ms at the end> <issuance>
// <OK|PENDING|code name> <ms the call took>" (the failover suite's outage window and plot).
// The first line of stdout is "tenant <name>".
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tests/testing/api_client.h"

ABSL_FLAG(std::string, grpc, "", "acmevaultd replicas' gRPC addresses, comma-separated");
ABSL_FLAG(std::string, root_token_file, "", "a platform-admin bearer token");
ABSL_FLAG(std::string, domain, "example", "names are c<i>.<tenant>.<domain>");
ABSL_FLAG(bool, dns01, false, "ask for DNS-01 (every replica can publish) instead of HTTP-01");
ABSL_FLAG(int, issuances, 50, "issuances");
ABSL_FLAG(int, callers, 8, "concurrent callers");
ABSL_FLAG(int, seconds, 600, "time limit of the whole run");
ABSL_FLAG(int, spread_seconds, 0,
          "issuance i starts no earlier than i * spread_seconds / issuances after the start, so "
          "the run lasts at least this long however fast the service is (a suite's faults then "
          "fall inside it)");
ABSL_FLAG(int, issuance_seconds, 300, "time limit of one issuance, retries included");
ABSL_FLAG(int, wait_seconds, 15, "IssueCertificate's wait_seconds");
ABSL_FLAG(int, call_seconds, 30, "each call's deadline");
ABSL_FLAG(std::string, retry_codes, "", "gRPC code names that repeat the call, comma-separated");
ABSL_FLAG(std::string, record, "", "where completed issuances are written");
ABSL_FLAG(std::string, calls, "", "where every call is written as it ends (optional)");

namespace acmevault::chaos {
namespace {

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",  "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",       "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "?";
}

struct Outcome {
  bool completed = false;
  std::string order_id, serial, error;
  double ms = 0;
};

class Driver {
 public:
  Driver(std::vector<std::unique_ptr<testing::ApiClient>> replicas, testing::ApiTenant tenant)
      : replicas_(std::move(replicas)), tenant_(std::move(tenant)) {
    if (!absl::GetFlag(FLAGS_calls).empty()) calls_.open(absl::GetFlag(FLAGS_calls));
    for (absl::string_view c :
         absl::StrSplit(absl::GetFlag(FLAGS_retry_codes), ',', absl::SkipEmpty())) {
      retry_.insert(std::string(c));
    }
  }

  // Issuance `i`, repeated as the file comment says.
  Outcome Issue(int i, std::mt19937& rng) {
    Outcome out;
    const absl::Time start = absl::Now();
    const absl::Time limit = start + absl::Seconds(absl::GetFlag(FLAGS_issuance_seconds));
    v1::IssueCertificateRequest r;
    r.add_identifiers(absl::StrCat("c", i, ".", tenant_.name, ".", absl::GetFlag(FLAGS_domain)));
    r.set_key_algorithm(v1::KEY_ALGORITHM_ECDSA_P256);
    r.set_idempotency_key(absl::StrCat("chaos-", i));
    r.set_wait_seconds(absl::GetFlag(FLAGS_wait_seconds));
    if (absl::GetFlag(FLAGS_dns01)) r.set_challenge_type(v1::CHALLENGE_TYPE_DNS_01);
    while (absl::Now() < limit) {
      testing::ApiClient& replica = *replicas_[rng() % replicas_.size()];
      v1::IssueCertificateResponse resp;
      auto ctx = testing::ApiContext(tenant_.host_token,
                                     absl::Seconds(absl::GetFlag(FLAGS_call_seconds)));
      const absl::Time call_start = absl::Now();
      grpc::Status s = replica.certs().IssueCertificate(ctx.get(), r, &resp);
      attempts_.fetch_add(1);
      LogCall(i, !s.ok() ? CodeName(s.error_code()) : resp.has_certificate() ? "OK" : "PENDING",
              call_start);
      if (s.ok() && resp.has_certificate()) {
        out.completed = true;
        out.order_id = resp.order().id();
        out.serial = resp.certificate().serial();
        break;
      }
      if (s.ok() && resp.order().state() == v1::ORDER_STATE_INVALID) {
        out.error = absl::StrCat("order invalid: ", resp.order().error());
        break;
      }
      if (s.ok()) {
        pending_.fetch_add(1);
      } else {
        {
          absl::MutexLock lock(&mu_);
          ++codes_[CodeName(s.error_code())];
        }
        if (!retry_.contains(CodeName(s.error_code()))) {
          out.error = absl::StrCat(CodeName(s.error_code()), ": ", s.error_message());
          break;
        }
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
    if (!out.completed && out.error.empty()) out.error = "issuance time limit";
    out.ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    return out;
  }

  std::string Codes() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> parts;
    for (const auto& [name, n] : codes_) parts.push_back(absl::StrCat(name, ":", n));
    return parts.empty() ? "none" : absl::StrJoin(parts, ",");
  }
  int attempts() const { return attempts_.load(); }
  int pending() const { return pending_.load(); }

 private:
  void LogCall(int i, const char* outcome, absl::Time start) {
    if (!calls_.is_open()) return;
    const absl::Time end = absl::Now();
    absl::MutexLock lock(&mu_);
    calls_ << absl::ToUnixMillis(end) << " " << i << " " << outcome << " "
           << absl::ToInt64Milliseconds(end - start) << std::endl;
  }

  std::vector<std::unique_ptr<testing::ApiClient>> replicas_;
  const testing::ApiTenant tenant_;
  absl::flat_hash_set<std::string> retry_;
  std::atomic<int> attempts_{0}, pending_{0};
  absl::Mutex mu_;
  std::map<std::string, int> codes_ ABSL_GUARDED_BY(mu_);
  std::ofstream calls_ ABSL_GUARDED_BY(mu_);
};

int Main() {
  std::vector<std::unique_ptr<testing::ApiClient>> replicas;
  for (absl::string_view a : absl::StrSplit(absl::GetFlag(FLAGS_grpc), ',', absl::SkipEmpty())) {
    replicas.push_back(std::make_unique<testing::ApiClient>(
        std::string(a), absl::GetFlag(FLAGS_root_token_file)));
  }
  if (replicas.empty()) {
    std::fprintf(stderr, "--grpc is required\n");
    return 2;
  }
  testing::ApiTenant tenant = replicas[0]->NewTenant("chaos", absl::GetFlag(FLAGS_domain));
  if (!tenant.status.ok()) {
    std::printf("setup failed: %s\n", tenant.status.error_message().c_str());
    return 1;
  }
  std::printf("tenant %s\n", tenant.name.c_str());
  std::fflush(stdout);
  Driver driver(std::move(replicas), tenant);

  const int total = absl::GetFlag(FLAGS_issuances);
  std::vector<Outcome> outcomes(total);
  std::atomic<int> next{0};
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const absl::Duration spread = absl::Seconds(absl::GetFlag(FLAGS_spread_seconds));
  std::vector<std::thread> callers;
  for (int w = 0; w < absl::GetFlag(FLAGS_callers); ++w) {
    callers.emplace_back([&, w] {
      std::mt19937 rng(w * 7919 + static_cast<unsigned>(absl::ToUnixNanos(start)));
      for (int i = next++; i < total && absl::Now() < deadline; i = next++) {
        absl::SleepFor(start + spread * i / total - absl::Now());
        outcomes[i] = driver.Issue(i, rng);
      }
    });
  }
  for (std::thread& c : callers) c.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  int completed = 0, failed = 0;
  std::string first_error;
  std::vector<double> ms;
  std::ofstream record(absl::GetFlag(FLAGS_record));
  for (int i = 0; i < total; ++i) {
    const Outcome& o = outcomes[i];
    if (o.completed) {
      ++completed;
      ms.push_back(o.ms);
      record << "chaos-" << i << " " << o.order_id << " " << o.serial << "\n";
    } else {
      ++failed;  // Failed, or never started within the run's time limit.
      if (first_error.empty()) first_error = o.error.empty() ? "not started" : o.error;
    }
  }
  const double max_ms = ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end());
  std::printf(
      "issue issuances=%d completed=%d failed=%d attempts=%d pending_answers=%d codes=%s "
      "seconds=%.1f p50_ms=%.0f p99_ms=%.0f max_ms=%.0f%s%s\n",
      total, completed, failed, driver.attempts(), driver.pending(), driver.Codes().c_str(),
      seconds, testing::Percentile(ms, 0.5), testing::Percentile(ms, 0.99), max_ms,
      first_error.empty() ? "" : " first_error=", first_error.c_str());
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace acmevault::chaos

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return acmevault::chaos::Main();
}
