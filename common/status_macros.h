// Propagation macros for absl::Status and absl::StatusOr<T>. Debian's Abseil (20220623) has
// neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN, so they are defined once, here.
#ifndef ACMEVAULT_COMMON_STATUS_MACROS_H_
#define ACMEVAULT_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if not OK.
#define RETURN_IF_ERROR(expr)                                     \
  do {                                                            \
    ::absl::Status acmevault_status_ = (expr);                    \
    if (!acmevault_status_.ok()) return acmevault_status_;        \
  } while (false)

#define ACMEVAULT_CONCAT_INNER_(a, b) a##b
#define ACMEVAULT_CONCAT_(a, b) ACMEVAULT_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from the enclosing
// function, otherwise moves the value into `lhs` (a declaration such as `auto x` or an lvalue).
#define ASSIGN_OR_RETURN(lhs, rexpr)                                                 \
  auto ACMEVAULT_CONCAT_(acmevault_statusor_, __LINE__) = (rexpr);                   \
  if (!ACMEVAULT_CONCAT_(acmevault_statusor_, __LINE__).ok())                        \
    return std::move(ACMEVAULT_CONCAT_(acmevault_statusor_, __LINE__)).status();     \
  lhs = std::move(ACMEVAULT_CONCAT_(acmevault_statusor_, __LINE__)).value()

#endif  // ACMEVAULT_COMMON_STATUS_MACROS_H_
