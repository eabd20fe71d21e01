#include "service/required.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;

TEST(RequireCollaborators, NamesTheFirstMissingOne) {
  int a = 0, b = 0;
  EXPECT_TRUE(RequireCollaborators("Thing", {{"a", &a}, {"b", &b}}).ok());
  EXPECT_TRUE(RequireCollaborators("Thing", {}).ok());
  EXPECT_THAT(RequireCollaborators("Thing", {{"a", &a}, {"b", nullptr}, {"c", nullptr}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "Thing: Options.b is required"));
  EXPECT_THAT(RequireCollaborators("Thing", {{"a", nullptr}}, "Deps"),
              StatusIs(absl::StatusCode::kInvalidArgument, "Thing: Deps.a is required"));
}

}  // namespace
}  // namespace acmevault::service
