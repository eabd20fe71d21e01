// Text that crosses into a log line, an error message or a database column from somewhere we do
// not control (a CA's answer, an exception): bounded and valid UTF-8 on one line.
#ifndef ACMEVAULT_COMMON_TEXT_H_
#define ACMEVAULT_COMMON_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace acmevault {

// `text` cut to at most `max` bytes on a UTF-8 character boundary, ill-formed UTF-8 (RFC 3629:
// no overlong forms, surrogates or code points past U+10FFFF) and control characters (NUL and
// newlines included) replaced by '?', with "..." appended when anything was cut: at most
// max + 3 bytes.
std::string ClipUtf8(absl::string_view text, size_t max);

}  // namespace acmevault

#endif  // ACMEVAULT_COMMON_TEXT_H_
