#include "acme/ca_input.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace acmevault::acme {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";

std::string Nested(int depth, const std::string& inner = "") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(NestedTooDeep, CountsArraysAndObjectsOutsideStrings) {
  EXPECT_FALSE(NestedTooDeep(Nested(kMaxCaJsonDepth)));
  EXPECT_TRUE(NestedTooDeep(Nested(kMaxCaJsonDepth + 1)));
  EXPECT_TRUE(NestedTooDeep(Nested(100000)));
  std::string objects;
  for (int i = 0; i < kMaxCaJsonDepth; ++i) objects += "{\"a\":";
  EXPECT_FALSE(NestedTooDeep(objects + "1" + std::string(kMaxCaJsonDepth, '}')));
  EXPECT_TRUE(NestedTooDeep(objects + "[1]" + std::string(kMaxCaJsonDepth, '}')));
  // Brackets in strings, escaped quotes included, do not count; siblings do not add up.
  EXPECT_FALSE(NestedTooDeep(Nested(kMaxCaJsonDepth, "\"[[[\\\"[[[\"")));
  EXPECT_FALSE(
      NestedTooDeep("[" + Nested(kMaxCaJsonDepth - 1) + "," + Nested(kMaxCaJsonDepth - 1) + "]"));
}

TEST(ParseCaJsonObject, RefusesDeepJsonAndAnythingButAnObject) {
  auto ok = ParseCaJsonObject(R"({"status":"valid","x":[[1]]})", "POST order");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["status"], "valid");
  auto deep = ParseCaJsonObject("{\"x\":" + Nested(100000) + "}", "POST order");
  EXPECT_EQ(deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(deep.status().message(), "POST order: CA sent JSON nested deeper than 32");
  for (const char* body : {"[1]", "\"s\"", "{not json", "{\"d\":\"\xFF\"}", ""}) {
    auto bad = ParseCaJsonObject(body, "GET directory");
    EXPECT_EQ(bad.status().message(), "GET directory: body is not a JSON object") << body;
  }
}

TEST(ValidUtf8, KeepsWellFormedTextAndReplacesEachBadByte) {
  EXPECT_EQ(ValidUtf8("plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x94\x91"),
            "plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x94\x91");
  EXPECT_EQ(ValidUtf8("R\xE9sum\xE9"), std::string("R") + kFffd + "sum" + kFffd);  // Latin-1.
  EXPECT_EQ(ValidUtf8("\xC0\xAF"), std::string(kFffd) + kFffd);                    // Overlong '/'.
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), std::string(kFffd) + kFffd + kFffd);        // Surrogate.
  EXPECT_EQ(ValidUtf8("\xF4\x90\x80\x80"), std::string(kFffd) + kFffd + kFffd + kFffd);
  EXPECT_EQ(ValidUtf8("ab\xE2\x82"), std::string("ab") + kFffd + kFffd);  // Cut short.
  EXPECT_EQ(ValidUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(CaText, IsOneLineOfValidUtf8) {
  EXPECT_EQ(CaText("line one\r\nline\ttwo\x7F"), "line one  line two ");
  EXPECT_EQ(CaText("c1 \xC2\x85 and \xE2\x80\xA8 here"), "c1   and   here");
  EXPECT_EQ(CaText("bad \xFF"), std::string("bad ") + kFffd);
}

TEST(CaText, TextAtTheBoundIsKeptWholeAndLongerTextIsClippedOnACharacter) {
  const std::string euro = "\xE2\x82\xAC";
  std::string at_bound;
  for (int i = 0; i < 4; ++i) at_bound += euro;  // 12 bytes.
  EXPECT_EQ(CaText(at_bound, 12), at_bound);
  EXPECT_EQ(CaText(at_bound + "x", 12), at_bound + "...");
  // The bound falls inside the third character: two whole ones are kept.
  EXPECT_EQ(CaText(at_bound, 8), euro + euro + "...");
  // A replacement character counts as its three bytes.
  EXPECT_EQ(CaText("ab\xFF", 4), "ab...");
  EXPECT_EQ(CaText(std::string(1 << 20, 'x')).size(), kMaxCaTextBytes + 3);
}

TEST(DumpJson, WritesBadUtf8AsReplacementCharactersWhereDumpWouldThrow) {
  nlohmann::json j = {{"detail", "bad \xFF"}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);
  EXPECT_EQ(DumpJson(j), std::string("{\"detail\":\"bad ") + kFffd + "\"}");
}

}  // namespace
}  // namespace acmevault::acme
