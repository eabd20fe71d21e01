// What a CA sends, made safe before anything else touches it: CA text made fit for a Status
// message, a log line or a strict JSON serialiser. A CA, hostile or broken, controls every byte
// of its answers; nothing here throws.
#ifndef ACMEVAULT_ACME_CA_INPUT_H_
#define ACMEVAULT_ACME_CA_INPUT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme {

// Most bytes of a piece of CA text (a content type, a status, an identifier, a URL, a body that
// is not a problem document) quoted in a message before it is clipped.
inline constexpr size_t kMaxCaTextBytes = 200;

// `text` as valid UTF-8: every byte that does not start a well-formed sequence (Unicode table
// 3-7: no overlong forms, no surrogates, nothing above U+10FFFF) becomes U+FFFD. Valid input
// comes back unchanged.
std::string ValidUtf8(absl::string_view text);

// `text` made fit for a message: ValidUtf8, on one line (C0 and C1 controls, DEL, U+2028 and
// U+2029 become spaces), and, when that is longer than `max_bytes`, clipped at a character
// boundary to at most `max_bytes` bytes followed by "...". Text of exactly `max_bytes` bytes is
// kept whole.
std::string CaText(absl::string_view text, size_t max_bytes = kMaxCaTextBytes);

// `j` serialised without throwing: a string that is not valid UTF-8 is written with U+FFFD in
// place of its bad bytes (nlohmann's default, strict, handler throws type_error.316 instead).
// Every dump of JSON that holds anything taken from a CA goes through here.
std::string DumpJson(const nlohmann::json& j);

}  // namespace acmevault::acme

#endif  // ACMEVAULT_ACME_CA_INPUT_H_
