#include "common/testing/stack_env.h"

#include <cstdlib>

namespace acmevault::testing {

std::string StackEnv(absl::string_view name) {
  const char* value = std::getenv(std::string(name).c_str());
  return value == nullptr ? "" : value;
}

bool StackRequired() { return StackEnv("ACMEVAULT_REQUIRE_STACK") == "1"; }

}  // namespace acmevault::testing
