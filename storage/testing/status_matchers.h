// Test helpers for absl::Status and absl::StatusOr (Debian's Abseil ships no matchers).
#ifndef ACMEVAULT_STORAGE_TESTING_STATUS_MATCHERS_H_
#define ACMEVAULT_STORAGE_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"

namespace acmevault::storage::testing {

inline absl::Status StatusOf(const absl::Status& s) { return s; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// StatusIs(code) and StatusIs(code, "substring of the message").
MATCHER_P(StatusIs, code, "") {
  absl::Status s = StatusOf(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}
MATCHER_P2(StatusIs, code, substring, "") {
  absl::Status s = StatusOf(arg);
  *result_listener << "status is " << s;
  return s.code() == code && absl::StrContains(s.message(), substring);
}

}  // namespace acmevault::storage::testing

#define ACMEVAULT_TEST_CONCAT_INNER_(a, b) a##b
#define ACMEVAULT_TEST_CONCAT_(a, b) ACMEVAULT_TEST_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr)                                         \
  do {                                                          \
    const ::absl::Status acmevault_test_status_ = (expr);       \
    ASSERT_TRUE(acmevault_test_status_.ok()) << acmevault_test_status_; \
  } while (false)

#define EXPECT_OK(expr)                                         \
  do {                                                          \
    const ::absl::Status acmevault_test_status_ = (expr);       \
    EXPECT_TRUE(acmevault_test_status_.ok()) << acmevault_test_status_; \
  } while (false)

// Asserts that `rexpr` (a StatusOr) is OK and moves its value into `lhs`.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                                 \
  ASSERT_OK_AND_ASSIGN_IMPL_(ACMEVAULT_TEST_CONCAT_(acmevault_test_so_, __LINE__), lhs, \
                             rexpr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(so, lhs, rexpr) \
  auto so = (rexpr);                               \
  ASSERT_TRUE(so.ok()) << so.status();             \
  lhs = std::move(so).value()

#endif  // ACMEVAULT_STORAGE_TESTING_STATUS_MATCHERS_H_
