#include "service/identifiers.h"

#include <idn2.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace acmevault::service {
namespace {

constexpr size_t kMaxName = 253;
constexpr size_t kMaxLabel = 63;

absl::Status Bad(absl::string_view field, absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": \"", name, "\" ", why));
}

bool IsLdh(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-'; }

// IDNA 2008 lookup conversion of a UTF-8 name to A-labels.
absl::StatusOr<std::string> ToAscii(absl::string_view name, absl::string_view field) {
  std::string in(name);
  char* out = nullptr;
  int rc = idn2_lookup_u8(reinterpret_cast<const uint8_t*>(in.c_str()),
                          reinterpret_cast<uint8_t**>(&out), IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  if (rc != IDN2_OK) return Bad(field, name, absl::StrCat("is not a valid IDN: ", idn2_strerror(rc)));
  std::string ascii(out);
  idn2_free(out);
  return ascii;
}

// An "xn--" label must be the A-label form of a valid U-label.
bool ValidALabel(const std::string& label) {
  char* unicode = nullptr;
  if (idn2_to_unicode_8z8z(label.c_str(), &unicode, 0) != IDN2_OK) return false;
  char* back = nullptr;
  int rc = idn2_lookup_u8(reinterpret_cast<const uint8_t*>(unicode),
                          reinterpret_cast<uint8_t**>(&back), IDN2_NONTRANSITIONAL);
  bool ok = rc == IDN2_OK && label == back;
  idn2_free(unicode);
  idn2_free(back);
  return ok;
}

}  // namespace

absl::StatusOr<std::string> NormalizeDnsName(absl::string_view raw, absl::string_view field) {
  absl::string_view name = absl::StripSuffix(raw, ".");
  if (name.empty()) return Bad(field, raw, "is empty");
  if (name.size() > 4 * kMaxName) return Bad(field, raw.substr(0, 64), "is far too long");
  std::string canonical;
  bool ascii = std::all_of(name.begin(), name.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  bool wildcard = absl::StartsWith(name, "*.");
  absl::string_view rest = wildcard ? name.substr(2) : name;
  if (ascii) {
    canonical = absl::AsciiStrToLower(rest);
  } else {
    ASSIGN_OR_RETURN(canonical, ToAscii(rest, field));
    canonical = absl::AsciiStrToLower(canonical);
  }
  if (wildcard) canonical = absl::StrCat("*.", canonical);
  if (canonical.size() > kMaxName) return Bad(field, raw, "is longer than 253 octets");

  std::vector<std::string> labels = absl::StrSplit(wildcard ? canonical.substr(2) : canonical, '.');
  if (labels.size() < 2) {
    return Bad(field, raw, wildcard ? "is a wildcard over a top-level domain" : "needs at least two labels");
  }
  for (const std::string& label : labels) {
    if (label.empty()) return Bad(field, raw, "has an empty label");
    if (label.size() > kMaxLabel) return Bad(field, raw, "has a label longer than 63 octets");
    if (label.find('*') != std::string::npos) {
      return Bad(field, raw, "has a wildcard that is not the whole leftmost label");
    }
    if (!std::all_of(label.begin(), label.end(), IsLdh)) {
      return Bad(field, raw, "has a character other than letters, digits and '-'");
    }
    if (label.front() == '-' || label.back() == '-') {
      return Bad(field, raw, "has a label that starts or ends with '-'");
    }
    if (label.size() >= 4 && label.substr(2, 2) == "--") {
      if (!absl::StartsWith(label, "xn--") || !ValidALabel(label)) {
        return Bad(field, raw, "has a reserved or invalid \"?\?--\" label");
      }
    }
  }
  const std::string& tld = labels.back();
  if (std::all_of(tld.begin(), tld.end(),
                  [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    return Bad(field, raw, "ends in an all-numeric label (IP addresses are not supported)");
  }
  return canonical;
}

absl::StatusOr<std::vector<std::string>> NormalizeDnsNames(const std::vector<std::string>& names,
                                                           absl::string_view field, size_t max) {
  if (names.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": none given"));
  if (names.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", names.size(), " names, at most ", max));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < names.size(); ++i) {
    ASSIGN_OR_RETURN(std::string n, NormalizeDnsName(names[i], absl::StrCat(field, "[", i, "]")));
    out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end());
  auto dup = std::adjacent_find(out.begin(), out.end());
  if (dup != out.end()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"", *dup, "\" appears twice"));
  }
  return out;
}

absl::StatusOr<AllowList> AllowList::Create(const std::vector<std::string>& patterns) {
  AllowList list;
  for (size_t i = 0; i < patterns.size(); ++i) {
    ASSIGN_OR_RETURN(std::string p,
                     NormalizeDnsName(patterns[i], absl::StrCat("allowed_identifiers[", i, "]")));
    if (absl::StartsWith(p, "*.")) {
      list.suffixes_.push_back(p.substr(1));  // ".example.com"
    } else {
      list.exact_.push_back(p);
    }
  }
  return list;
}

bool AllowList::Allows(absl::string_view name) const {
  for (const auto& e : exact_) {
    if (name == e) return true;
  }
  for (const auto& s : suffixes_) {
    // Strictly below: "a.example.com" and "*.example.com" end with ".example.com";
    // "example.com" and "badexample.com" do not.
    if (name.size() > s.size() && absl::EndsWith(name, s)) return true;
  }
  return false;
}

absl::Status AllowList::CheckAll(const std::vector<std::string>& names) const {
  for (const auto& n : names) {
    if (!Allows(n)) {
      return absl::PermissionDeniedError(
          absl::StrCat("identifiers: \"", n, "\" is not in this tenant's allowed identifiers"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NormalizeSerial(absl::string_view serial, absl::string_view field) {
  absl::string_view text = absl::StripAsciiWhitespace(serial);
  if (absl::StartsWithIgnoreCase(text, "0x")) text.remove_prefix(2);
  std::string hex;
  for (char c : text) {
    if (c == ':') continue;
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": a serial is hex digits, optionally with colons between octets"));
    }
    hex.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  if (hex.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  // Leading zeros go first: `openssl x509 -text` prints a DER sign octet ("00:8f:...").
  const size_t first = hex.find_first_not_of('0');
  if (first == std::string::npos) return std::string("0");
  hex.erase(0, first);
  if (hex.size() > 40) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": longer than a certificate serial (at most 20 octets)"));
  }
  return hex;
}

}  // namespace acmevault::service
