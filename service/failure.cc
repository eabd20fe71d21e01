#include "service/failure.h"

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "acme/problem.h"

namespace acmevault::service {
namespace {

// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629), 0 if none.
size_t Utf8Length(absl::string_view s) {
  const auto c = static_cast<unsigned char>(s[0]);
  size_t n;
  unsigned char min2 = 0x80, max2 = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) min2 = 0xA0;
    if (c == 0xED) max2 = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) min2 = 0x90;
    if (c == 0xF4) max2 = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (i == 1 ? (b < min2 || b > max2) : (b < 0x80 || b > 0xBF)) return 0;
  }
  return n;
}

}  // namespace

std::string ClipText(absl::string_view text, size_t max) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t n = Utf8Length(text.substr(i));
    const bool control = n == 1 && (static_cast<unsigned char>(text[i]) < 0x20 || text[i] == 0x7F);
    const size_t width = (n == 0 || control) ? 1 : n;
    if (out.size() + width > max) break;
    if (n == 0 || control) {
      out.push_back('?');
      i += 1;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  if (i < text.size()) out.append("...");
  return out;
}

std::string SummarizeFailure(const absl::Status& status) {
  std::string code = absl::StatusCodeToString(status.code());
  std::optional<acme::Problem> problem = acme::GetProblem(status);
  if (!problem) return absl::StrCat(code, ": ", ClipText(status.message()));
  return absl::StrCat(code, ": acme ", ClipText(problem->ShortType(), 80), " (HTTP ",
                      problem->http_status, "): ", ClipText(problem->detail));
}

std::string ProblemTypeOf(const absl::Status& status) {
  std::optional<acme::Problem> problem = acme::GetProblem(status);
  if (!problem || absl::StartsWith(problem->type, "http:")) return "";
  return ClipText(problem->type, kMaxProblemTypeBytes);
}

std::string DescribeException(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return absl::StrCat("internal error: ", ClipText(ex.what()));
  } catch (...) {
    return "internal error: unknown exception";
  }
}

}  // namespace acmevault::service
