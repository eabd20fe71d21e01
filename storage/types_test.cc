#include "storage/types.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::storage {
namespace {

using ::testing::ElementsAre;

TEST(CanonicalIdentifiers, LowerCasesSortsAndRemovesDuplicates) {
  auto ids = CanonicalIdentifiers({"WWW.Example.com", "example.com", "www.example.com"});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("example.com", "www.example.com"));
}

TEST(CanonicalIdentifiers, RejectsWhatCannotBeAnIdentifier) {
  for (std::vector<std::string> bad :
       {std::vector<std::string>{}, {""}, {"a b"}, {"a,b"}, {"a\nb"}, {std::string(256, 'a')}}) {
    EXPECT_EQ(CanonicalIdentifiers(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(CanonicalIdentifiers(std::vector<std::string>(101, "a")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CanonicalIdentifiers({std::string(255, 'a')}).ok());
}

TEST(Names, RoundTrip) {
  for (OrderState s : {OrderState::kCreated, OrderState::kPending, OrderState::kReady,
                       OrderState::kProcessing, OrderState::kValid, OrderState::kInvalid}) {
    EXPECT_EQ(*ParseOrderState(OrderStateName(s)), s);
  }
  EXPECT_EQ(KeyStateName(KeyState::kCompromised), "compromised");
  EXPECT_EQ(*ParseKeyState("retired"), KeyState::kRetired);
  EXPECT_EQ(RoleName(Role::kPlatformAdmin), "platform_admin");
  EXPECT_EQ(ParseRole("root").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseAuthorizationStatus("deactivated"), AuthorizationStatus::kDeactivated);
  EXPECT_EQ(*ParseAccountStatus("valid"), AccountStatus::kValid);
  EXPECT_TRUE(IsTerminal(OrderState::kInvalid));
  EXPECT_FALSE(IsTerminal(OrderState::kProcessing));
}

TEST(PageSize, IsClamped) {
  EXPECT_EQ(PageSize({"", 0}), 1);
  EXPECT_EQ(PageSize({"", 50}), 50);
  EXPECT_EQ(PageSize({"", 5000}), 1000);
}

TEST(TruncateToMicros, DropsNanoseconds) {
  absl::Time t = absl::FromUnixNanos(1'700'000'000'123'456'789);
  EXPECT_EQ(TruncateToMicros(t), absl::FromUnixMicros(1'700'000'000'123'456));
}

}  // namespace
}  // namespace acmevault::storage
