#include "service/paging.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/testing/status_matchers.h"

namespace acmevault::service {
namespace {

using storage::testing::StatusIs;

TEST(CheckPage, DefaultsCapsAndRefusesNegativeSizes) {
  auto unset = CheckPage({"token", 0});
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->max_results, 100);
  EXPECT_EQ(unset->page_token, "token");
  EXPECT_EQ(CheckPage({"", 7})->max_results, 7);
  EXPECT_EQ(CheckPage({"", 1000})->max_results, 1000);
  EXPECT_EQ(CheckPage({"", 5000})->max_results, 1000);
  EXPECT_THAT(CheckPage({"", -1}), StatusIs(absl::StatusCode::kInvalidArgument, "page_size"));
}

}  // namespace
}  // namespace acmevault::service
