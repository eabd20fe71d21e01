#include "service/log.h"

#include <cstdio>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace acmevault::service {
namespace {

absl::Mutex mu;
LogLevel min_level ABSL_GUARDED_BY(mu) = LogLevel::kInfo;
std::function<void(const std::string&)>* sink ABSL_GUARDED_BY(mu) = nullptr;

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) {
  {
    absl::MutexLock lock(&mu);
    if (level < min_level) return;
  }
  nlohmann::ordered_json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = LevelName(level);
  line["msg"] = std::string(message);
  for (const auto& [k, v] : fields) line[std::string(k)] = v;
  // Invalid UTF-8 (from a hostile CA's detail, say) is replaced, never thrown.
  std::string out = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  absl::MutexLock lock(&mu);
  if (sink != nullptr) {
    (*sink)(out);
  } else {
    std::fprintf(stderr, "%s\n", out.c_str());
  }
}

void SetLogLevel(LogLevel level) {
  absl::MutexLock lock(&mu);
  min_level = level;
}

void SetLogSink(std::function<void(const std::string&)> new_sink) {
  absl::MutexLock lock(&mu);
  delete sink;
  sink = new_sink ? new std::function<void(const std::string&)>(std::move(new_sink)) : nullptr;
}

std::string NewRequestId() {
  static absl::Mutex gen_mu;
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&gen_mu);
  return absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(*gen), absl::kZeroPad16));
}

}  // namespace acmevault::service
