#include "clients/cli/flags.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace acmevault::cli {
namespace {

std::string Normalized(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

const FlagSpec* Find(const std::vector<FlagSpec>& specs, const std::string& name) {
  for (const auto& spec : specs) {
    if (spec.name == name) return &spec;
    for (const auto& alias : spec.aliases) {
      if (Normalized(alias) == name) return &spec;
    }
  }
  return nullptr;
}

}  // namespace

std::string ParsedFlags::String(absl::string_view name, absl::string_view fallback) const {
  auto it = values_.find(std::string(name));
  return it == values_.end() || it->second.empty() ? std::string(fallback) : it->second.back();
}

bool ParsedFlags::Bool(absl::string_view name) const { return String(name) == "true"; }

int64_t ParsedFlags::Int(absl::string_view name, int64_t fallback) const {
  int64_t v;
  return Has(name) && absl::SimpleAtoi(String(name), &v) ? v : fallback;
}

std::vector<std::string> ParsedFlags::List(absl::string_view name) const {
  std::vector<std::string> out;
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return out;
  for (const auto& value : it->second) {
    for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      out.emplace_back(absl::StripAsciiWhitespace(part));
    }
  }
  return out;
}

absl::Duration ParsedFlags::Duration(absl::string_view name, absl::Duration fallback) const {
  if (!Has(name)) return fallback;
  absl::StatusOr<absl::Duration> d = ParseDurationFlag(String(name));
  return d.ok() ? *d : fallback;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view text) {
  absl::Duration d;
  int64_t days, seconds;
  if (absl::SimpleAtoi(text, &seconds) && seconds >= 0) return absl::Seconds(seconds);
  if (absl::EndsWith(text, "d") && absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) &&
      days >= 0) {
    return absl::Hours(24 * days);
  }
  if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration()) return d;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text, "\" is not a duration (e.g. 90d, 12h, 1h30m, 45s)"));
}

absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<FlagSpec>& specs,
                                       const std::vector<std::string>& args,
                                       std::vector<std::string>* positional) {
  ParsedFlags out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      for (++i; i < args.size(); ++i) {
        if (positional == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", args[i], "\""));
        }
        positional->push_back(args[i]);
      }
      break;
    }
    if (!absl::StartsWith(arg, "-") || arg == "-") {
      if (positional == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
      }
      positional->push_back(arg);
      continue;
    }
    absl::string_view body = absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
    std::string name, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = Normalized(body.substr(0, eq));
      value = std::string(body.substr(eq + 1));
      has_value = true;
    } else {
      name = Normalized(body);
    }
    const FlagSpec* spec = Find(specs, name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (spec->kind == FlagKind::kBool) {
      if (!has_value) value = "true";
      value = absl::AsciiStrToLower(value);
      if (value == "1" || value == "yes") value = "true";
      if (value == "0" || value == "no") value = "false";
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("--", spec->name, " takes true or false, not \"", value, "\""));
      }
    } else if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", spec->name, " needs a value"));
      }
      value = args[++i];
    }
    if (spec->kind == FlagKind::kInt) {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", spec->name, " takes a number, not \"", value, "\""));
      }
    }
    if (spec->kind == FlagKind::kDuration) {
      absl::StatusOr<absl::Duration> d = ParseDurationFlag(value);
      if (!d.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("--", spec->name, ": ", d.status().message()));
    }
    auto& values = out.values_[spec->name];
    if (spec->kind != FlagKind::kList) values.clear();
    values.push_back(std::move(value));
  }
  return out;
}

std::string FlagsHelp(const std::vector<FlagSpec>& specs) {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t width = 0;
  for (const auto& spec : specs) {
    std::string left = absl::StrCat("  --", spec.name);
    if (spec.kind != FlagKind::kBool) {
      absl::StrAppend(&left, " ", spec.value_name.empty() ? "VALUE" : spec.value_name);
    }
    width = std::max(width, left.size());
    rows.emplace_back(std::move(left), spec.help);
  }
  std::string out;
  for (const auto& [left, help] : rows) {
    absl::StrAppend(&out, left, std::string(width + 3 - left.size(), ' '), help, "\n");
  }
  return out;
}

}  // namespace acmevault::cli
