#include "service/identifiers.h"

#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Norm(const std::string& n) {
  auto r = NormalizeDnsName(n, "identifiers[0]");
  return r.ok() ? *r : "ERROR: " + std::string(r.status().message());
}

TEST(NormalizeDnsName, CanonicalFormsOfValidNames) {
  EXPECT_EQ(Norm("WWW.Example.COM"), "www.example.com");
  EXPECT_EQ(Norm("example.com."), "example.com");
  EXPECT_EQ(Norm("*.Example.com"), "*.example.com");
  EXPECT_EQ(Norm("a-b.c0.example"), "a-b.c0.example");
  EXPECT_EQ(Norm("b\xc3\xbc" "cher.example"), "xn--bcher-kva.example");
  EXPECT_EQ(Norm("xn--bcher-kva.example"), "xn--bcher-kva.example");
  EXPECT_EQ(Norm("*.b\xc3\xbc" "cher.example"), "*.xn--bcher-kva.example");
  EXPECT_EQ(Norm(std::string(63, 'a') + ".com"), std::string(63, 'a') + ".com");
}

struct Bad {
  std::string name;
  std::string why;
};

class NormalizeDnsNameRejects : public ::testing::TestWithParam<Bad> {};

TEST_P(NormalizeDnsNameRejects, WithAMessageNamingFieldAndRule) {
  auto r = NormalizeDnsName(GetParam().name, "identifiers[3]");
  ASSERT_FALSE(r.ok()) << GetParam().name << " -> " << *r;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("identifiers[3]"));
  EXPECT_THAT(r.status().message(), HasSubstr(GetParam().why));
}

INSTANTIATE_TEST_SUITE_P(
    Names, NormalizeDnsNameRejects,
    ::testing::Values(Bad{"", "is empty"}, Bad{".", "is empty"},
                      Bad{"localhost", "at least two labels"},
                      Bad{"a..example.com", "empty label"},
                      Bad{std::string(64, 'a') + ".com", "longer than 63"},
                      Bad{std::string(60, 'a') + "." + std::string(60, 'b') + "." +
                              std::string(60, 'c') + "." + std::string(60, 'd') + "." +
                              std::string(60, 'e') + ".com",  // 308 octets.
                          "longer than 253"},
                      Bad{"-a.example.com", "starts or ends with '-'"},
                      Bad{"a-.example.com", "starts or ends with '-'"},
                      Bad{"a_b.example.com", "other than letters"},
                      Bad{"a b.example.com", "other than letters"},
                      Bad{"*.com", "wildcard over a top-level domain"},
                      Bad{"a.*.example.com", "not the whole leftmost label"},
                      Bad{"*a.example.com", "not the whole leftmost label"},
                      Bad{"**.example.com", "not the whole leftmost label"},
                      Bad{"192.168.0.1", "all-numeric"},
                      Bad{"ab--cd.example.com", "reserved or invalid"},
                      Bad{"xn--zzzzzzzz-zzzz.example.com", "reserved or invalid"},
                      Bad{"a.example.com\n", "other than letters"}));

TEST(NormalizeDnsNames, SortsAndRejectsDuplicatesAfterNormalisation) {
  auto r = NormalizeDnsNames({"b.example.com", "A.example.com"}, "identifiers");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(*r, ElementsAre("a.example.com", "b.example.com"));
  auto dup = NormalizeDnsNames({"a.example.com", "A.EXAMPLE.COM."}, "identifiers");
  EXPECT_THAT(dup.status().message(), HasSubstr("\"a.example.com\" appears twice"));
  EXPECT_THAT(NormalizeDnsNames({}, "identifiers").status().message(), HasSubstr("none given"));
  std::vector<std::string> many(3, "x.example.com");
  EXPECT_THAT(NormalizeDnsNames(many, "identifiers", 2).status().message(), HasSubstr("at most 2"));
  EXPECT_THAT(NormalizeDnsNames({"ok.example.com", "bad_name.example.com"}, "identifiers")
                  .status()
                  .message(),
              HasSubstr("identifiers[1]"));
}

TEST(NormalizeSerial, AcceptsTheFormsOpensslPrintsAndReturnsTheStoredForm) {
  EXPECT_EQ(*NormalizeSerial("8f00d1e2c3b4a59687", "serial"), "8f00d1e2c3b4a59687");
  EXPECT_EQ(*NormalizeSerial("8F00D1E2C3B4A59687", "serial"), "8f00d1e2c3b4a59687");
  EXPECT_EQ(*NormalizeSerial("008F00D1E2C3B4A59687", "serial"), "8f00d1e2c3b4a59687");
  EXPECT_EQ(*NormalizeSerial("8f:00:d1:e2:c3:b4:a5:96:87", "serial"), "8f00d1e2c3b4a59687");
  EXPECT_EQ(*NormalizeSerial(" 0x1001 ", "serial"), "1001");
  EXPECT_EQ(*NormalizeSerial("00", "serial"), "0");
}

TEST(NormalizeSerial, RefusesWhatIsNotASerialNamingTheField) {
  for (const std::string& bad :
       std::vector<std::string>{"", "xyz", "12 34", ":", "0x", std::string(41, 'a')}) {
    absl::StatusOr<std::string> got = NormalizeSerial(bad, "serial");
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(got.status().message(), "serial")) << bad;
  }
}

TEST(AllowList, ExactAndBelowSuffixOnly) {
  auto list = AllowList::Create({"example.com", "*.Corp.Example.NET"});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(list->Allows("example.com"));
  EXPECT_FALSE(list->Allows("www.example.com"));  // Exact entries are exact.
  EXPECT_TRUE(list->Allows("a.corp.example.net"));
  EXPECT_TRUE(list->Allows("deep.a.corp.example.net"));
  EXPECT_TRUE(list->Allows("*.corp.example.net"));
  EXPECT_TRUE(list->Allows("*.a.corp.example.net"));
  EXPECT_FALSE(list->Allows("corp.example.net"));  // Strictly below.
  EXPECT_FALSE(list->Allows("evilcorp.example.net"));
  EXPECT_FALSE(list->Allows("corp.example.net.evil.com"));
  EXPECT_FALSE(list->Allows("*.example.net"));

  EXPECT_TRUE(list->CheckAll({"example.com", "x.corp.example.net"}).ok());
  absl::Status denied = list->CheckAll({"example.com", "other.example.org"});
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), HasSubstr("\"other.example.org\""));
}

TEST(AllowList, BadPatternsAreRejectedByPosition) {
  auto list = AllowList::Create({"ok.example.com", "*.com"});
  EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(list.status().message(), HasSubstr("allowed_identifiers[1]"));
  auto empty = AllowList::Create({});
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->Allows("a.example.com"));
}

}  // namespace
}  // namespace acmevault::service
