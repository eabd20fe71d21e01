// The contract between a fuzz target and its two drivers: libFuzzer (libfuzzer_main.cc, under
// --config=fuzz) and the seed replay (replay_main.cc, the plain test `bazel test //...` runs).
//
// Each target defines FuzzOne once. It feeds the input to the parser under test, checks what the
// parser promises with FUZZ_CHECK (an exception escaping, a sanitizer report or a failed check
// is a finding), and says whether the parser accepted the input. The verdict must depend on the
// input alone, so the replay can hold every seed to the verdict its name states.
#ifndef ACMEVAULT_TESTS_FUZZ_FUZZ_TARGET_H_
#define ACMEVAULT_TESTS_FUZZ_FUZZ_TARGET_H_

#include <string>

#include "absl/strings/string_view.h"

namespace acmevault::fuzz {

enum class Verdict { kAccepted, kRejected };

Verdict FuzzOne(absl::string_view input);

// Prints the broken promise and aborts, so libFuzzer keeps the input as a crash.
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              absl::string_view detail);

// True when the environment variable ACMEVAULT_FUZZ_SKIP_KNOWN is "all" or a comma-separated
// list naming `finding`. A long run that should look past findings already reported (README.md
// lists them) sets it (tests/fuzz/run --skip-known), and targets then return early on inputs
// that would only repeat one. Unset, as in the replay tests and tests/run, nothing is skipped.
bool SkipKnownFinding(absl::string_view finding);

// The contents of a file the build puts in the binary's runfiles (e.g. "crypto/testdata/x.pem"),
// found from the working directory (bazel test) or beside the binary (<binary>.runfiles/, when
// tests/fuzz/run starts it). Aborts when it is missing: the target cannot run without it.
std::string ReadRunfile(absl::string_view path);

}  // namespace acmevault::fuzz

#define FUZZ_CHECK(condition) FUZZ_CHECK_MSG(condition, "")
#define FUZZ_CHECK_MSG(condition, detail)                                                       \
  do {                                                                                          \
    if (!(condition)) ::acmevault::fuzz::CheckFailed(__FILE__, __LINE__, #condition, (detail)); \
  } while (false)

#endif  // ACMEVAULT_TESTS_FUZZ_FUZZ_TARGET_H_
