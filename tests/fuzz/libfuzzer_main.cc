// libFuzzer's entry points for a fuzz target (linked only under --config=fuzz, with
// -fsanitize=fuzzer, which supplies main()).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

#define ACMEVAULT_FUZZ_STR2(x) #x
#define ACMEVAULT_FUZZ_STR(x) ACMEVAULT_FUZZ_STR2(x)

// Adds the target's -max_len (fuzz.bzl) unless the command line sets one. libFuzzer calls this
// before it reads its flags, and documents that it may change argv.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp((*argv)[i], "-max_len=", 9) == 0) return 0;
  }
  static std::vector<char*> args(*argv, *argv + *argc);
  static char max_len[] = "-max_len=" ACMEVAULT_FUZZ_STR(ACMEVAULT_FUZZ_MAX_LEN);
  args.insert(args.begin() + 1, max_len);
  args.push_back(nullptr);
  *argc += 1;
  *argv = args.data();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  acmevault::fuzz::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
