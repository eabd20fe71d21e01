// What a CA sends, made safe before anything else touches it: JSON parsed under a nesting limit,
// and CA text made fit for a Status message, a log line or a strict JSON serialiser. A CA,
// hostile or broken, controls every byte of its answers; nothing here throws or recurses on them.
#ifndef ACMEVAULT_ACME_CA_INPUT_H_
#define ACMEVAULT_ACME_CA_INPUT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme {

// Deepest nesting of arrays and objects accepted in a CA's JSON. RFC 8555 resources nest four
// levels at most (an order, its error, a subproblem, its identifier). Copying, comparing and
// serialising nlohmann::json recurse once per level, so 100,000 nested brackets (200 KB, well
// under the response cap) would otherwise exhaust the stack.
inline constexpr int kMaxCaJsonDepth = 32;

// Most bytes of a piece of CA text (a content type, a status, an identifier, a URL, a body that
// is not a problem document) quoted in a message before it is clipped.
inline constexpr size_t kMaxCaTextBytes = 200;

// True when arrays and objects in `json_text` nest deeper than kMaxCaJsonDepth (brackets inside
// strings do not count). One pass, no recursion, whatever the text.
bool NestedTooDeep(absl::string_view json_text);

// INVALID_ARGUMENT "<what>: CA sent JSON nested deeper than 32" (without "<what>: " when `what`
// is empty).
absl::Status NestedTooDeepError(absl::string_view what);

// Every parse of JSON from a CA: `body` as a JSON object, or INVALID_ARGUMENT: the
// NestedTooDeepError (checked before the parser runs), or "<what>: body is not a JSON object"
// (which covers invalid UTF-8 inside strings: the parser refuses it).
absl::StatusOr<nlohmann::json> ParseCaJsonObject(absl::string_view body, absl::string_view what);

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
