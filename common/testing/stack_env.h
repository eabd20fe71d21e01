// Test helper: the addresses of the local stack (deploy/local/stack) that tests/run passes to
// integration tests through the environment. Outside tests/run those variables are absent and
// integration tests skip; with ACMEVAULT_REQUIRE_STACK=1 (tests/run sets it) they fail instead,
// so a misconfigured run can never pass by skipping.
#ifndef ACMEVAULT_COMMON_TESTING_STACK_ENV_H_
#define ACMEVAULT_COMMON_TESTING_STACK_ENV_H_

#include <string>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace acmevault::testing {

// The value of environment variable `name`, or "" when unset.
std::string StackEnv(absl::string_view name);
// True when tests/run asked integration tests to fail rather than skip without the stack.
bool StackRequired();

}  // namespace acmevault::testing

// Declares `std::string var` holding environment variable `name`; when it is unset, skips the
// test (or fails it under ACMEVAULT_REQUIRE_STACK=1). Use at the top of a TEST body or SetUp.
#define ACMEVAULT_STACK_ENV_OR_SKIP(var, name)                                             \
  std::string var = ::acmevault::testing::StackEnv(name);                                  \
  if (var.empty()) {                                                                       \
    if (::acmevault::testing::StackRequired()) {                                           \
      FAIL() << (name) << " is not set: the local stack did not start (see tests/run)";    \
    } else {                                                                               \
      GTEST_SKIP() << (name) << " is not set; run tests/run for integration tests";        \
    }                                                                                      \
  }

#endif  // ACMEVAULT_COMMON_TESTING_STACK_ENV_H_
