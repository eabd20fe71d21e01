// Replays inputs through a fuzz target without libFuzzer: the seed-corpus test of every target
// (fuzz.bzl), and, under the normal build, a way to rerun one finding in a debugger.
//
//   <target>_fuzzer_test DIR_OR_FILE...
//
// Arguments starting with '-' (libFuzzer flags) are ignored. Every file is run once; a file's
// name states the verdict it must get: "ok-*" must be accepted, "bad-*" rejected; libFuzzer's
// findings ("crash-*", "leak-*", "timeout-*", "oom-*", "slow-unit-*") only have to run through
// without a crash or a failed check. Any other name, a seed longer than the target's max_len
// (libFuzzer would truncate it), a directory with no seeds, or a wrong verdict fails the run.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "tests/fuzz/fuzz_target.h"

namespace acmevault::fuzz {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFindingPrefixes[] = {"crash-", "leak-", "timeout-", "oom-", "slow-unit-"};

enum class Expect { kAccepted, kRejected, kRunsThrough, kUnknown };

Expect ExpectationOf(const std::string& name) {
  if (absl::StartsWith(name, "ok-")) return Expect::kAccepted;
  if (absl::StartsWith(name, "bad-")) return Expect::kRejected;
  for (const char* prefix : kFindingPrefixes) {
    if (absl::StartsWith(name, prefix)) return Expect::kRunsThrough;
  }
  return Expect::kUnknown;
}

int Main(int argc, char** argv) {
  std::vector<fs::path> files;
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    fs::path arg(argv[i]);
    std::error_code error;
    if (fs::is_directory(arg, error)) {
      size_t before = files.size();
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (!fs::is_directory(entry.path())) files.push_back(entry.path());
      }
      if (files.size() == before) {
        std::fprintf(stderr, "FAIL %s: no seeds\n", arg.c_str());
        ++failures;
      }
    } else {
      files.push_back(arg);
    }
  }
  std::sort(files.begin(), files.end());
  int accepted = 0;
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "FAIL %s: cannot read\n", file.c_str());
      ++failures;
      continue;
    }
    std::stringstream contents;
    contents << in.rdbuf();
    const std::string input = contents.str();
    const std::string name = file.filename().string();
    Expect expect = ExpectationOf(name);
    if (expect == Expect::kUnknown) {
      std::fprintf(stderr,
                   "FAIL %s: a seed name must start with ok-, bad- or a libFuzzer finding prefix\n",
                   file.c_str());
      ++failures;
      continue;
    }
    if (input.size() > ACMEVAULT_FUZZ_MAX_LEN) {
      std::fprintf(stderr, "FAIL %s: %zu bytes, longer than this target's max_len %d\n",
                   file.c_str(), input.size(), ACMEVAULT_FUZZ_MAX_LEN);
      ++failures;
      continue;
    }
    // Named first: a crash ends the process before any verdict is printed.
    std::fprintf(stderr, "replaying %s\n", file.c_str());
    Verdict verdict = FuzzOne(input);
    if (verdict == Verdict::kAccepted) ++accepted;
    if ((expect == Expect::kAccepted && verdict != Verdict::kAccepted) ||
        (expect == Expect::kRejected && verdict != Verdict::kRejected)) {
      std::fprintf(stderr, "FAIL %s: %s, but its name says %s\n", file.c_str(),
                   verdict == Verdict::kAccepted ? "accepted" : "rejected",
                   expect == Expect::kAccepted ? "ok" : "bad");
      ++failures;
    }
  }
  std::printf("%zu inputs: %d accepted, %zu rejected; %d failed\n", files.size(), accepted,
              files.size() - accepted, failures);
  return failures == 0 && !files.empty() ? 0 : 1;
}

}  // namespace
}  // namespace acmevault::fuzz

int main(int argc, char** argv) { return acmevault::fuzz::Main(argc, argv); }
