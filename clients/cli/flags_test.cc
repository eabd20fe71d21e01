#include "clients/cli/flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<FlagSpec> kSpecs = {
    {"key-out", FlagKind::kString, "FILE", "where", {"key-file"}},
    {"names", FlagKind::kList, "NAMES", "names"},
    {"json", FlagKind::kBool, "", "json"},
    {"run-id", FlagKind::kInt, "N", "run"},
    {"ttl", FlagKind::kDuration, "DURATION", "ttl"},
};

TEST(FlagsTest, ParsesEveryForm) {
  std::vector<std::string> positional;
  auto f = ParseFlags(kSpecs,
                      {"--key_out=a.key", "--names", "a.example,b.example", "--names=c.example",
                       "--json", "--run-id", "12", "--ttl=30d", "word"},
                      &positional);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->String("key-out"), "a.key");
  EXPECT_THAT(f->List("names"), ElementsAre("a.example", "b.example", "c.example"));
  EXPECT_TRUE(f->Bool("json"));
  EXPECT_EQ(f->Int("run-id"), 12);
  EXPECT_EQ(f->Duration("ttl", absl::ZeroDuration()), absl::Hours(24 * 30));
  EXPECT_THAT(positional, ElementsAre("word"));
  EXPECT_FALSE(f->Has("other"));
  EXPECT_EQ(f->String("other", "fallback"), "fallback");
}

TEST(FlagsTest, AliasesAndBoolValues) {
  auto f = ParseFlags(kSpecs, {"--key-file=x", "--json=false"}, nullptr);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->String("key-out"), "x");
  EXPECT_FALSE(f->Bool("json"));
}

TEST(FlagsTest, RefusesWhatItCannotRead) {
  EXPECT_THAT(ParseFlags(kSpecs, {"--nope=1"}, nullptr).status().message(),
              HasSubstr("unknown flag --nope"));
  EXPECT_THAT(ParseFlags(kSpecs, {"--key-out"}, nullptr).status().message(),
              HasSubstr("--key-out needs a value"));
  EXPECT_THAT(ParseFlags(kSpecs, {"--run-id=x"}, nullptr).status().message(),
              HasSubstr("takes a number"));
  EXPECT_THAT(ParseFlags(kSpecs, {"--json=maybe"}, nullptr).status().message(),
              HasSubstr("true or false"));
  EXPECT_THAT(ParseFlags(kSpecs, {"--ttl=soon"}, nullptr).status().message(),
              HasSubstr("not a duration"));
  EXPECT_THAT(ParseFlags(kSpecs, {"stray"}, nullptr).status().message(),
              HasSubstr("unexpected argument"));
}

TEST(FlagsTest, Durations) {
  EXPECT_EQ(*ParseDurationFlag("90d"), absl::Hours(24 * 90));
  EXPECT_EQ(*ParseDurationFlag("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationFlag("45"), absl::Seconds(45));
  EXPECT_FALSE(ParseDurationFlag("-5s").ok());
  EXPECT_FALSE(ParseDurationFlag("d").ok());
}

TEST(FlagsTest, HelpIsAligned) {
  EXPECT_EQ(FlagsHelp({kSpecs[0], kSpecs[2]}),
            "  --key-out FILE   where\n"
            "  --json           json\n");
}

}  // namespace
}  // namespace acmevault::cli
