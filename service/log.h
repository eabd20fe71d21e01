// Structured logs: one JSON object per line (to stderr by default), with a timestamp, level,
// message, and string fields such as the request id, tenant, RPC and outcome. Callers pass no
// secrets; the logger has no way to format a key (it takes only strings). Thread-safe.
#ifndef ACMEVAULT_SERVICE_LOG_H_
#define ACMEVAULT_SERVICE_LOG_H_

#include <functional>
#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace acmevault::service {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogField = std::pair<absl::string_view, std::string>;

// Writes {"ts":"<RFC 3339 UTC>","level":"info","msg":...,<fields>} as one line.
void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields = {});

// Lines below `level` are dropped. Default kInfo.
void SetLogLevel(LogLevel level);
// Redirects lines (for tests); nullptr restores stderr.
void SetLogSink(std::function<void(const std::string& line)> sink);

// A fresh random request id (16 hex digits).
std::string NewRequestId();

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_LOG_H_
