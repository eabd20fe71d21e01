// PublishedAnswers: what this replica published is found until removed or expired; the
// capacity drops the oldest first.
#include "service/published_answers.h"

#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

using ::testing::Eq;
using ::testing::Optional;

TEST(PublishedAnswersTest, AnAnswerIsFoundUntilRemoved) {
  PublishedAnswers answers;
  EXPECT_EQ(answers.Find("tok"), std::nullopt);
  answers.Add("tok", "tok.thumb");
  EXPECT_THAT(answers.Find("tok"), Optional(Eq("tok.thumb")));
  EXPECT_EQ(answers.Find("other"), std::nullopt);
  answers.Remove("tok");
  EXPECT_EQ(answers.Find("tok"), std::nullopt);
  answers.Remove("tok");  // twice is harmless
  EXPECT_EQ(answers.size(), 0u);
}

TEST(PublishedAnswersTest, AnAnswerNobodyRemovedExpires) {
  acmevault::testing::FakeClock clock;
  PublishedAnswers answers({.clock = &clock, .ttl = absl::Minutes(10)});
  answers.Add("old", "old.thumb");
  clock.Advance(absl::Minutes(5));
  answers.Add("new", "new.thumb");
  answers.Add("old", "old.thumb");  // published again: aged from now
  clock.Advance(absl::Minutes(6));
  EXPECT_THAT(answers.Find("old"), Optional(Eq("old.thumb")));
  clock.Advance(absl::Minutes(5));
  EXPECT_EQ(answers.Find("old"), std::nullopt);
  EXPECT_EQ(answers.Find("new"), std::nullopt);
  answers.Add("third", "third.thumb");  // drops the expired ones
  EXPECT_EQ(answers.size(), 1u);
}

TEST(PublishedAnswersTest, BeyondTheCapacityTheOldestGoFirst) {
  acmevault::testing::FakeClock clock;
  PublishedAnswers answers({.clock = &clock, .capacity = 2});
  answers.Add("a", "a.t");
  clock.Advance(absl::Seconds(1));
  answers.Add("b", "b.t");
  clock.Advance(absl::Seconds(1));
  answers.Remove("b");
  answers.Add("c", "c.t");
  clock.Advance(absl::Seconds(1));
  answers.Add("d", "d.t");
  EXPECT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers.Find("a"), std::nullopt);
  EXPECT_THAT(answers.Find("c"), Optional(Eq("c.t")));
  EXPECT_THAT(answers.Find("d"), Optional(Eq("d.t")));
}

}  // namespace
}  // namespace acmevault::service
