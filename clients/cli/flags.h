// Command-line flags of one acmevault command: declared as FlagSpecs (which also make the
// command's --help), parsed strictly: an unknown flag, a missing value or a malformed number is
// an error. Each flag is written --name=value or --name value; '_' and '-' are the same in
// names (--key_out is --key-out); a bool flag alone means true.
#ifndef ACMEVAULT_CLIENTS_CLI_FLAGS_H_
#define ACMEVAULT_CLIENTS_CLI_FLAGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace acmevault::cli {

enum class FlagKind {
  kString,
  kBool,
  kInt,
  // Comma-separated; repeating the flag adds to the list.
  kList,
  // "90d", "24h", "30m", "45s", Go-style "1h30m", or a bare number of seconds.
  kDuration,
};

struct FlagSpec {
  std::string name;  // Without "--", with '-'.
  FlagKind kind = FlagKind::kString;
  std::string value_name;  // "FILE", "NAMES": for help.
  std::string help;
  std::vector<std::string> aliases;  // Other names accepted (older spellings).
};

// What ParseFlags found. Names are FlagSpec::name.
class ParsedFlags {
 public:
  bool Has(absl::string_view name) const { return values_.count(std::string(name)) > 0; }
  // The value, or `fallback` when the flag was not given.
  std::string String(absl::string_view name, absl::string_view fallback = "") const;
  bool Bool(absl::string_view name) const;
  int64_t Int(absl::string_view name, int64_t fallback = 0) const;
  std::vector<std::string> List(absl::string_view name) const;
  absl::Duration Duration(absl::string_view name, absl::Duration fallback) const;

  // Sets a flag as if given (settings from the environment or a config file).
  void Set(const std::string& name, std::string value) { values_[name] = {std::move(value)}; }

 private:
  friend absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<FlagSpec>&,
                                                const std::vector<std::string>&,
                                                std::vector<std::string>*);
  std::map<std::string, std::vector<std::string>> values_;
};

// Parses `args`. Words that are not flags go to `positional` (an error when it is null);
// "--" ends the flags. INVALID_ARGUMENT naming the flag for an unknown one, a missing value, a
// bool that is not true/false, a malformed integer or duration.
absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<FlagSpec>& specs,
                                       const std::vector<std::string>& args,
                                       std::vector<std::string>* positional);

// "90d", "12h", "1h30m", "45s", "45" (seconds). INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view text);

// The flags' help lines, aligned: "  --key-out FILE   where to write ...".
std::string FlagsHelp(const std::vector<FlagSpec>& specs);

}  // namespace acmevault::cli

#endif  // ACMEVAULT_CLIENTS_CLI_FLAGS_H_
