// What one of acmevaultd's log lines costs (service/log.h): the RPC line every call writes,
// timed over many calls on one thread, made into a sink that keeps it and written to stderr (run
// it with stderr sent to /dev/null). Two references measured in the same run: the same line
// made as a JSON object of its members and dumped (nlohmann's ordered_json, as Log made it
// until 2026-12-05), and the line's bytes alone written with one write(2). Figures only:
// nothing asserts.
//
//   bazel run -c opt //tests/bench:log_bench -- [--lines=200000] 2>/dev/null
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "service/log.h"

ABSL_FLAG(int, lines, 200000, "lines per figure");

namespace {

using acmevault::service::Log;
using acmevault::service::LogLevel;

double NanosPerCall(int calls, const std::function<void()>& f) {
  for (int i = 0; i < calls / 10; ++i) f();  // warm
  const absl::Time start = absl::Now();
  for (int i = 0; i < calls; ++i) f();
  return absl::ToDoubleNanoseconds(absl::Now() - start) / calls;
}

void RpcLine() {
  Log(LogLevel::kInfo, "rpc",
      {{"request_id", "3f2a9c0d11e47b65"},
       {"method", "/acmevault.v1.CertificateService/GetCertificate"},
       {"caller", "host:web-7f9c"},
       {"tenant", "2"},
       {"code", "OK"},
       {"error", ""},
       {"ms", "0"}});
}

// The same line as a JSON object of its members, dumped.
std::string JsonObjectLine() {
  nlohmann::ordered_json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = "info";
  line["msg"] = "rpc";
  line["request_id"] = "3f2a9c0d11e47b65";
  line["method"] = "/acmevault.v1.CertificateService/GetCertificate";
  line["caller"] = "host:web-7f9c";
  line["tenant"] = "2";
  line["code"] = "OK";
  line["error"] = "";
  line["ms"] = "0";
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// Whether two lines are the same but for their first member, the time they were made.
bool SameButTs(const std::string& a, const std::string& b) {
  return a.substr(a.find(',')) == b.substr(b.find(','));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int lines = absl::GetFlag(FLAGS_lines);
  std::string last;
  acmevault::service::SetLogSink([&](const std::string& line) { last = line; });
  const double made = NanosPerCall(lines, RpcLine);
  const std::string line = last + "\n";
  std::string object_line;
  const double made_as_object = NanosPerCall(lines, [&] { object_line = JsonObjectLine(); });
  acmevault::service::SetLogSink(nullptr);
  const double to_stderr = NanosPerCall(lines, RpcLine);
  const double write_only = NanosPerCall(lines, [&] {
    if (write(STDERR_FILENO, line.data(), line.size()) < 0) std::abort();
  });
  std::printf(
      "log_line bytes=%zu same_as_object=%d made_ns=%.0f made_as_object_ns=%.0f "
      "made_vs_object=%.2f stderr_ns=%.0f write_ns=%.0f stderr_vs_write=%.2f\n",
      line.size(), SameButTs(object_line + "\n", line), made, made_as_object, made / made_as_object,
      to_stderr, write_only, to_stderr / write_only);
  return 0;
}
