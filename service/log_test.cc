#include "service/log.h"

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
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

// The line is written by hand: it must be exactly what dumping a JSON object of its members
// gives, for values that need escaping, non-ASCII and invalid UTF-8, and repeated names.
TEST_F(LogTest, EachLineIsTheDumpOfAJsonObjectOfItsMembers) {
  const std::vector<std::vector<LogField>> cases = {
      {},
      {{"request_id", "3f2a9c0d11e47b65"}, {"method", "/acmevault.v1.CertificateService/Get"}},
      {{"detail", "quote \" backslash \\ tab \t nl \n cr \r nul " + std::string(1, '\0')}},
      {{"detail", "\x01\x1f\x7f del, caf\xc3\xa9, \xe2\x9c\x93, \xf0\x9f\x94\x91"}},
      {{"detail", "bad \xff byte, cut \xe2\x9c, lone \x80"}},
      {{"k\"ey", "v"}, {"", ""}},
      {{"tenant", "1"}, {"msg", "replaced"}, {"tenant", "2"}, {"level", "x"}, {"ts", "t"}},
  };
  for (const auto& fields : cases) {
    lines_.clear();
    const absl::Time before = absl::Now();
    switch (fields.size()) {  // Log takes an initializer_list
      case 0:
        Log(LogLevel::kInfo, "m\xff");
        break;
      case 1:
        Log(LogLevel::kInfo, "m", {fields[0]});
        break;
      case 2:
        Log(LogLevel::kError, "m", {fields[0], fields[1]});
        break;
      default:
        Log(LogLevel::kWarning, "m", {fields[0], fields[1], fields[2], fields[3], fields[4]});
    }
    const absl::Time after = absl::Now();
    ASSERT_EQ(lines_.size(), 1u);
    auto parsed = nlohmann::ordered_json::parse(lines_[0]);
    nlohmann::ordered_json want;
    want["ts"] = parsed["ts"];
    want["level"] = parsed["level"];
    want["msg"] = fields.empty() ? "m\xff" : "m";
    for (const auto& [k, v] : fields) want[std::string(k)] = v;
    EXPECT_EQ(lines_[0],
              want.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    bool has_ts_field = false;
    for (const auto& [k, v] : fields) has_ts_field |= k == "ts";
    if (!has_ts_field) {
      absl::Time ts;
      std::string error;
      ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, parsed["ts"].get<std::string>(), &ts, &error))
          << error;
      EXPECT_GE(ts, absl::FromUnixMillis(absl::ToUnixMillis(before)));
      EXPECT_LE(ts, after);
    }
  }
}

TEST(RequestId, SixteenHexDigitsAndFresh) {
  std::string a = NewRequestId(), b = NewRequestId();
  EXPECT_THAT(a, ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_NE(a, b);
}

// Each serving thread draws ids from a generator of its own: no two threads repeat a sequence.
TEST(RequestId, ThreadsDrawDifferentIds) {
  constexpr int kThreads = 8, kEach = 1000;
  std::vector<std::vector<std::string>> drawn(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&drawn, t] {
      for (int i = 0; i < kEach; ++i) drawn[t].push_back(NewRequestId());
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& ids : drawn) all.insert(ids.begin(), ids.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
}

}  // namespace
}  // namespace acmevault::service
