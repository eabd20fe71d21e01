// DNS identifiers (service/identifiers.h) as a caller sends them: the input's first line is one
// name for NormalizeDnsName, and all its lines are both a request's names (NormalizeDnsNames)
// and a tenant's allow-list (AllowList). Accepted: the first line normalised.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "service/identifiers.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

// What NormalizeDnsName promises of a canonical name.
void CheckCanonical(const std::string& name) {
  FUZZ_CHECK_MSG(!name.empty() && name.size() <= 253, name);
  FUZZ_CHECK_MSG(name.back() != '.', name);
  for (char c : name) {
    FUZZ_CHECK_MSG(absl::ascii_islower(static_cast<unsigned char>(c)) ||
                       absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.' ||
                       c == '*',
                   name);
  }
  FUZZ_CHECK_MSG(name.find('*') == std::string::npos ||
                     (absl::StartsWith(name, "*.") && name.find('*', 1) == std::string::npos),
                 name);
  // Canonical forms are fixed points.
  auto again = service::NormalizeDnsName(name, "again");
  FUZZ_CHECK_MSG(again.ok() && *again == name, name);
}

}  // namespace

Verdict FuzzOne(absl::string_view input) {
  std::vector<std::string> lines = absl::StrSplit(input, '\n');
  auto name = service::NormalizeDnsName(lines[0], "identifiers[0]");
  if (name.ok()) CheckCanonical(*name);

  auto names = service::NormalizeDnsNames(lines, "identifiers");
  if (names.ok()) {
    FUZZ_CHECK(names->size() == lines.size());
    FUZZ_CHECK(std::is_sorted(names->begin(), names->end()));
    FUZZ_CHECK(std::adjacent_find(names->begin(), names->end()) == names->end());
    for (const std::string& n : *names) CheckCanonical(n);
  }

  auto allow = service::AllowList::Create(lines);
  if (allow.ok()) {
    // Every exact pattern allows itself; a wildcard pattern allows names strictly below it and
    // never its own base name.
    for (const std::string& exact : allow->exact()) FUZZ_CHECK(allow->Allows(exact));
    for (const std::string& suffix : allow->suffixes()) {
      FUZZ_CHECK(absl::StartsWith(suffix, "."));
      FUZZ_CHECK(allow->Allows("x" + suffix));
      FUZZ_CHECK(allow->Allows("*" + suffix));
      std::string base = suffix.substr(1);
      bool listed =
          std::find(allow->exact().begin(), allow->exact().end(), base) != allow->exact().end();
      bool covered_by_other = std::any_of(
          allow->suffixes().begin(), allow->suffixes().end(), [&](const std::string& other) {
            return base.size() > other.size() && absl::EndsWith(base, other);
          });
      if (!listed && !covered_by_other) FUZZ_CHECK_MSG(!allow->Allows(base), base);
    }
    if (name.ok()) {
      FUZZ_CHECK(allow->CheckAll({*name}).ok() == allow->Allows(*name));
    }
  }
  return name.ok() ? Verdict::kAccepted : Verdict::kRejected;
}

}  // namespace acmevault::fuzz
