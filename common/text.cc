#include "common/text.h"

namespace acmevault {
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

std::string ClipUtf8(absl::string_view text, size_t max) {
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

}  // namespace acmevault
