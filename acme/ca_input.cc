#include "acme/ca_input.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace acmevault::acme {
namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence at the start of non-empty `s` (Unicode table 3-7),
// or 0 when there is none.
size_t SequenceLength(absl::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  size_t n = 0;
  unsigned char low = 0x80, high = 0xBF;  // What the second byte may be.
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead == 0xE0) {
    n = 3;
    low = 0xA0;  // No overlong forms.
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    n = 3;
  } else if (lead == 0xED) {
    n = 3;
    high = 0x9F;  // No surrogates.
  } else if (lead == 0xF0) {
    n = 4;
    low = 0x90;
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    n = 4;
  } else if (lead == 0xF4) {
    n = 4;
    high = 0x8F;  // Nothing above U+10FFFF.
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return n;
}

// True for the characters that would break a message onto a new line or steer a terminal:
// C0 controls, DEL, C1 controls (U+0080..U+009F), LINE SEPARATOR and PARAGRAPH SEPARATOR.
bool IsControl(absl::string_view ch) {
  const auto lead = static_cast<unsigned char>(ch[0]);
  if (ch.size() == 1) return lead < 0x20 || lead == 0x7F;
  if (ch.size() == 2) return lead == 0xC2 && static_cast<unsigned char>(ch[1]) < 0xA0;
  return ch == "\xE2\x80\xA8" || ch == "\xE2\x80\xA9";
}

// ValidUtf8, and CaText when `one_line`; stops after `max_bytes` of output (see CaText).
std::string Clean(absl::string_view text, bool one_line, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 3);
  while (!text.empty()) {
    const size_t n = SequenceLength(text);
    absl::string_view piece = n == 0 ? kReplacement : text.substr(0, n);
    if (one_line && n != 0 && IsControl(piece)) piece = " ";
    if (out.size() + piece.size() > max_bytes) {
      out.append("...");
      break;
    }
    out.append(piece.data(), piece.size());
    text.remove_prefix(n == 0 ? 1 : n);
  }
  return out;
}

}  // namespace

bool NestedTooDeep(absl::string_view json_text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : json_text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxCaJsonDepth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

absl::Status NestedTooDeepError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      what, what.empty() ? "" : ": ", "CA sent JSON nested deeper than ", kMaxCaJsonDepth));
}

absl::StatusOr<nlohmann::json> ParseCaJsonObject(absl::string_view body, absl::string_view what) {
  if (NestedTooDeep(body)) return NestedTooDeepError(what);
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": body is not a JSON object"));
  }
  return j;
}

std::string ValidUtf8(absl::string_view text) {
  return Clean(text, /*one_line=*/false, /*max_bytes=*/3 * text.size());
}

std::string CaText(absl::string_view text, size_t max_bytes) {
  return Clean(text, /*one_line=*/true, max_bytes);
}

std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace acmevault::acme
