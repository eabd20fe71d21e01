#include "service/log.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace acmevault::service {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink([this](const std::string& line) { lines_.push_back(line); });
  }
  void TearDown() override {
    SetLogSink(nullptr);
    SetLogLevel(LogLevel::kInfo);
  }
  std::vector<std::string> lines_;
};

TEST_F(LogTest, OneJsonObjectPerLineWithFieldsInOrder) {
  Log(LogLevel::kWarning, "issuance failed \"badly\"\n",
      {{"request_id", "00000000000000ab"}, {"tenant", "acme-corp"}, {"outcome", "UNAVAILABLE"}});
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0].find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(lines_[0]);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["msg"], "issuance failed \"badly\"\n");
  EXPECT_EQ(j["request_id"], "00000000000000ab");
  EXPECT_EQ(j["tenant"], "acme-corp");
  EXPECT_THAT(j["ts"].get<std::string>(), ::testing::MatchesRegex(
                                              "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z"));
  EXPECT_THAT(lines_[0], ::testing::StartsWith("{\"ts\":"));
}

TEST_F(LogTest, LevelFilterAndInvalidUtf8) {
  Log(LogLevel::kDebug, "hidden");
  EXPECT_TRUE(lines_.empty());
  SetLogLevel(LogLevel::kDebug);
  Log(LogLevel::kDebug, "shown", {{"detail", std::string("bad \xff byte")}});
  ASSERT_EQ(lines_.size(), 1u);
  auto j = nlohmann::json::parse(lines_[0]);
  EXPECT_EQ(j["msg"], "shown");
  EXPECT_EQ(j["detail"], "bad \xEF\xBF\xBD byte");  // U+FFFD.
}

TEST(RequestId, SixteenHexDigitsAndFresh) {
  std::string a = NewRequestId(), b = NewRequestId();
  EXPECT_THAT(a, ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace acmevault::service
