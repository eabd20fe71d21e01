#include "common/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace acmevault {
namespace {

absl::StatusOr<int> Parse(bool ok) {
  if (!ok) return absl::InvalidArgumentError("not a number");
  return 42;
}

absl::StatusOr<std::unique_ptr<std::string>> MoveOnly(bool ok) {
  if (!ok) return absl::NotFoundError("none");
  return std::make_unique<std::string>("value");
}

absl::Status Check(bool ok, int* calls) {
  RETURN_IF_ERROR(Parse(ok).status());
  ++*calls;
  return absl::OkStatus();
}

absl::StatusOr<int> Twice(bool ok) {
  ASSIGN_OR_RETURN(int v, Parse(ok));
  ASSIGN_OR_RETURN(auto p, MoveOnly(ok));
  return v * 2 + static_cast<int>(p->size());
}

TEST(StatusMacros, ReturnIfErrorStopsAtTheFirstError) {
  int calls = 0;
  EXPECT_TRUE(Check(true, &calls).ok());
  EXPECT_EQ(calls, 1);
  absl::Status s = Check(false, &calls);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "not a number");
  EXPECT_EQ(calls, 1);
}

TEST(StatusMacros, AssignOrReturnMovesTheValueOrTheError) {
  ASSERT_TRUE(Twice(true).ok());
  EXPECT_EQ(*Twice(true), 89);
  EXPECT_EQ(Twice(false).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acmevault
