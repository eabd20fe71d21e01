#include "service/failure.h"

#include <stdexcept>
#include <string>

#include "acme/http.h"
#include "acme/problem.h"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

TEST(ClipText, KeepsShortTextAndCutsLongTextOnACharacterBoundary) {
  EXPECT_EQ(ClipText("not found", 20), "not found");
  // "é" is two bytes: a cut inside it drops it whole.
  EXPECT_EQ(ClipText("ab\xC3\xA9", 3), "ab...");
  EXPECT_EQ(ClipText(std::string(1000, 'x')).size(), kMaxFailureDetail + 3);
}

TEST(ClipText, ReplacesInvalidUtf8AndControlCharacters) {
  EXPECT_EQ(ClipText("a\xFF" "b\nc\xED\xA0\x80"), "a?b?c???");
}

TEST(SummarizeFailure, NamesTheCodeTheAcmeTypeAndAClippedDetail) {
  acme::HttpResponse page;
  page.status = 503;
  page.headers = {{"content-type", "application/problem+json"}};
  page.body = nlohmann::json{{"type", "urn:ietf:params:acme:error:serverInternal"},
                             {"detail", std::string(5000, 'z')}}
                  .dump();
  std::string summary =
      SummarizeFailure(acme::ProblemStatus(page, "POST newOrder", absl::UnixEpoch()));
  EXPECT_THAT(summary, ::testing::StartsWith("UNAVAILABLE: acme serverInternal (HTTP 503): zzz"));
  EXPECT_LT(summary.size(), kMaxFailureDetail + 60);
  EXPECT_EQ(SummarizeFailure(absl::NotFoundError("no such order")), "NOT_FOUND: no such order");
}

TEST(ProblemTypeOf, IsTheCasFullTypeAndEmptyWithoutAProblemDocument) {
  acme::HttpResponse answer;
  answer.status = 400;
  answer.headers = {{"content-type", "application/problem+json"}};
  answer.body = R"({"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no"})";
  EXPECT_EQ(ProblemTypeOf(acme::ProblemStatus(answer, "POST newOrder", absl::UnixEpoch())),
            "urn:ietf:params:acme:error:rejectedIdentifier");
  // A proxy's page and a redirect carry a Problem, but no type of the CA's.
  answer.status = 502;
  answer.headers = {{"content-type", "text/html"}};
  answer.body = "<html>bad gateway</html>";
  EXPECT_EQ(ProblemTypeOf(acme::ProblemStatus(answer, "POST newOrder", absl::UnixEpoch())), "");
  answer.status = 302;
  EXPECT_EQ(ProblemTypeOf(acme::ProblemStatus(answer, "POST newOrder", absl::UnixEpoch())), "");
  EXPECT_EQ(ProblemTypeOf(absl::InvalidArgumentError("the chain has 11 certificates")), "");
  // Bounded, whatever the CA sent.
  answer.status = 400;
  answer.headers = {{"content-type", "application/problem+json"}};
  answer.body = nlohmann::json{{"type", "urn:x:" + std::string(5000, 't')}}.dump();
  EXPECT_LE(ProblemTypeOf(acme::ProblemStatus(answer, "POST newOrder", absl::UnixEpoch())).size(),
            kMaxProblemTypeBytes + 3);
}

TEST(DescribeException, NamesAnInternalErrorWithTheClippedMessage) {
  EXPECT_EQ(DescribeException(std::make_exception_ptr(std::runtime_error("boom"))),
            "internal error: boom");
  EXPECT_EQ(DescribeException(std::make_exception_ptr(42)), "internal error: unknown exception");
  std::string long_what(5000, 'y');
  EXPECT_LT(DescribeException(std::make_exception_ptr(std::runtime_error(long_what))).size(),
            kMaxFailureDetail + 40);
}

}  // namespace
}  // namespace acmevault::service
