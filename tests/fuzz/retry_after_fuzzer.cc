// Retry-After (RFC 9110 §10.2.3) as acme::ParseRetryAfter reads it: delay-seconds or an
// IMF-fixdate. The input is the header's value. Accepted: it gave a time.
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "acme/problem.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {

Verdict FuzzOne(absl::string_view input) {
  const absl::Time now = absl::FromUnixSeconds(1893456000);
  std::optional<absl::Time> at = acme::ParseRetryAfter(input, now);
  if (!at.has_value()) return Verdict::kRejected;
  FUZZ_CHECK(acme::ParseRetryAfter(input, now) == at);  // Deterministic.
  int64_t seconds;
  absl::string_view value = absl::StripAsciiWhitespace(input);
  if (!value.empty() && absl::ascii_isdigit(static_cast<unsigned char>(value[0])) &&
      absl::SimpleAtoi(value, &seconds)) {
    // delay-seconds: never in the past.
    FUZZ_CHECK(*at >= now);
  } else {
    // A date: the value names one instant, so formatting it back gives a value that reads the
    // same, the way a CA's clock would have written it.
    std::string again = absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", *at, absl::UTCTimeZone());
    FUZZ_CHECK_MSG(acme::ParseRetryAfter(again, now) == at, again);
  }
  return Verdict::kAccepted;
}

}  // namespace acmevault::fuzz
