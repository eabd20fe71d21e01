#include "clients/lib/enum_names.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::clients {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(EnumNamesTest, AcceptsTheSpellingsPeopleType) {
  const auto& role = *v1::Role_descriptor();
  for (const char* text : {"platform-admin", "platform_admin", "PLATFORM_ADMIN",
                           "ROLE_PLATFORM_ADMIN", "platformadmin"}) {
    EXPECT_EQ(*ParseEnumName(role, text, "role"), v1::ROLE_PLATFORM_ADMIN) << text;
  }
  EXPECT_EQ(*ParseEnumName(*v1::RevocationReason_descriptor(), "key-compromise", "reason"),
            v1::REVOCATION_REASON_KEY_COMPROMISE);
  EXPECT_EQ(*ParseEnumName(*v1::ChallengeType_descriptor(), "dns-01", "challenge"),
            v1::CHALLENGE_TYPE_DNS_01);
}

TEST(EnumNamesTest, RefusesUnknownNamesListingTheKnownOnes) {
  absl::StatusOr<int> r = ParseEnumName(*v1::Role_descriptor(), "root", "--role");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "--role: unknown value \"root\"; one of host, admin, platform-admin");
  EXPECT_FALSE(ParseEnumName(*v1::Role_descriptor(), "", "--role").ok());
}

TEST(EnumNamesTest, ShortNames) {
  EXPECT_EQ(EnumName(*v1::KeyAlgorithm_descriptor(), v1::KEY_ALGORITHM_ECDSA_P256), "ecdsa-p256");
  EXPECT_EQ(EnumName(*v1::KeyAlgorithm_descriptor(), 99), "99");
  EXPECT_THAT(EnumNames(*v1::Role_descriptor()), ElementsAre("host", "admin", "platform-admin"));
}

TEST(ParseKeyAlgorithmTest, AgentSpellingsAndTheLongOnes) {
  EXPECT_EQ(*ParseKeyAlgorithm("p256", "k"), v1::KEY_ALGORITHM_ECDSA_P256);
  EXPECT_EQ(*ParseKeyAlgorithm("P384", "k"), v1::KEY_ALGORITHM_ECDSA_P384);
  EXPECT_EQ(*ParseKeyAlgorithm("rsa2048", "k"), v1::KEY_ALGORITHM_RSA_2048);
  EXPECT_EQ(*ParseKeyAlgorithm("rsa-3072", "k"), v1::KEY_ALGORITHM_RSA_3072);
  EXPECT_EQ(*ParseKeyAlgorithm("ecdsa-p256", "k"), v1::KEY_ALGORITHM_ECDSA_P256);
  EXPECT_EQ(*ParseKeyAlgorithm("RSA_4096", "k"), v1::KEY_ALGORITHM_RSA_4096);
  for (const char* bad : {"rsa1024", "unspecified", "", "p521", "ed25519"}) {
    absl::StatusOr<v1::KeyAlgorithm> r = ParseKeyAlgorithm(bad, "--key-type");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("p256|p384|rsa2048|rsa3072|rsa4096"));
  }
}

}  // namespace
}  // namespace acmevault::clients
