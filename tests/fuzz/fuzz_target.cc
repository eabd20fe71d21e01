#include "tests/fuzz/fuzz_target.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace acmevault::fuzz {

void CheckFailed(const char* file, int line, const char* condition, absl::string_view detail) {
  std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s%s%.*s\n", file, line, condition,
               detail.empty() ? "" : ": ", static_cast<int>(detail.size()), detail.data());
  std::abort();
}

bool SkipKnownFinding(absl::string_view finding) {
  static const std::vector<std::string>* skipped = [] {
    const char* value = std::getenv("ACMEVAULT_FUZZ_SKIP_KNOWN");
    return new std::vector<std::string>(
        absl::StrSplit(value == nullptr ? "" : value, ',', absl::SkipEmpty()));
  }();
  for (const std::string& name : *skipped) {
    if (name == "all" || name == finding) return true;
  }
  return false;
}

std::string ReadRunfile(absl::string_view path) {
  std::vector<std::string> candidates = {std::string(path)};
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0)
    candidates.push_back(absl::StrCat(absl::string_view(self, n), ".runfiles/acmevault/", path));
  for (const std::string& candidate : candidates) {
    std::ifstream in(candidate, std::ios::binary);
    if (!in) continue;
    std::stringstream contents;
    contents << in.rdbuf();
    return contents.str();
  }
  CheckFailed(__FILE__, __LINE__, "runfile present", path);
}

}  // namespace acmevault::fuzz
