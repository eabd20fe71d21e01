#include "service/log.h"

#include <cstdint>
#include <cstdio>
#include <vector>

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

// Appends `s` as a JSON string. Printable ASCII without quotes or backslashes (nearly every
// value) goes in as it is; anything else through nlohmann's serializer, which escapes it and
// replaces invalid UTF-8 (from a hostile CA's detail, say) rather than throwing.
void AppendJsonString(std::string& out, absl::string_view s) {
  for (const unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += nlohmann::json(std::string(s))
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    }
  }
  out += '"';
  out.append(s.data(), s.size());
  out += '"';
}

// RFC 3339 UTC with milliseconds ("2026-12-05T12:00:00.123Z"), the date and time formatted
// once a second per thread.
std::string Timestamp(absl::Time now) {
  thread_local int64_t formatted_second = INT64_MIN;
  thread_local std::string prefix;  // "2026-12-05T12:00:00"
  const int64_t millis = absl::ToUnixMillis(now);
  int64_t second = millis / 1000, milli = millis % 1000;
  if (milli < 0) {
    milli += 1000;
    --second;
  }
  if (second != formatted_second) {
    prefix =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second), absl::UTCTimeZone());
    formatted_second = second;
  }
  const char rest[] = {'.', static_cast<char>('0' + milli / 100),
                       static_cast<char>('0' + milli / 10 % 10),
                       static_cast<char>('0' + milli % 10), 'Z'};
  return absl::StrCat(prefix, absl::string_view(rest, sizeof(rest)));
}

}  // namespace

void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) {
  {
    absl::MutexLock lock(&mu);
    if (level < min_level) return;
  }
  // The line's members in order; a field named like an earlier member replaces its value in
  // place, as a JSON object's member assignment would. Written by hand: nearly every line of a
  // busy replica is one RPC's, and building a JSON object for it cost more than its write.
  const std::string ts = Timestamp(absl::Now());
  std::vector<std::pair<absl::string_view, absl::string_view>> members;
  members.reserve(3 + fields.size());
  members.emplace_back("ts", ts);
  members.emplace_back("level", LevelName(level));
  members.emplace_back("msg", message);
  for (const auto& [k, v] : fields) {
    auto it = members.begin();
    while (it != members.end() && it->first != k) ++it;
    if (it != members.end()) {
      it->second = v;
    } else {
      members.emplace_back(k, v);
    }
  }
  std::string out;
  out.reserve(256);
  for (const auto& [k, v] : members) {
    out += out.empty() ? '{' : ',';
    AppendJsonString(out, k);
    out += ':';
    AppendJsonString(out, v);
  }
  out += '}';
  absl::MutexLock lock(&mu);
  if (sink != nullptr) {
    (*sink)(out);
  } else {
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stderr);  // one write(2): stderr is unbuffered
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
  // One generator per thread, seeded once: every RPC takes an id, and one shared generator
  // made every serving thread take one lock.
  thread_local absl::BitGen gen;
  return absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16));
}

}  // namespace acmevault::service
