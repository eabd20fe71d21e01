#include "service/grpc_status.h"

#include "acme/http.h"
#include "acme/problem.h"
#include "acmevault/v1/errors.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

TEST(ToGrpcStatus, CodesAndMessagesCarryOver) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  for (auto code : {absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
                    absl::StatusCode::kAlreadyExists, absl::StatusCode::kPermissionDenied,
                    absl::StatusCode::kFailedPrecondition, absl::StatusCode::kAborted,
                    absl::StatusCode::kUnavailable, absl::StatusCode::kResourceExhausted,
                    absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kUnauthenticated,
                    absl::StatusCode::kInternal, absl::StatusCode::kUnimplemented}) {
    grpc::Status s = ToGrpcStatus(absl::Status(code, "identifiers[0]: bad"));
    EXPECT_EQ(static_cast<int>(s.error_code()), static_cast<int>(code));
    EXPECT_EQ(s.error_message(), "identifiers[0]: bad");
    EXPECT_TRUE(s.error_details().empty());
  }
}

// gRPC carries the message in a header, and a client refuses headers past its limit (8 KiB by
// default): the caller would get "received initial metadata size exceeds limit" and lose the
// message's end, where a compromise run's id is ("pass run_id N to resume").
TEST(ToGrpcStatus, ALongMessageIsShortenedInTheMiddleKeepingItsEnds) {
  std::string listed;
  for (int i = 0; i < 1000; ++i) listed += "8f00d1e2c3b4a5968" + std::to_string(i) + " (order 9), ";
  grpc::Status s = ToGrpcStatus(absl::DeadlineExceededError(
      "reissue of certificates " + listed + "is still running (compromise run 7: pass run_id 7 "
      "to resume)"));
  EXPECT_LE(s.error_message().size(), 2048u);
  EXPECT_EQ(s.error_message().rfind("reissue of certificates 8f00d1e2c3b4a59680", 0), 0u);
  EXPECT_NE(s.error_message().find("bytes left out"), std::string::npos);
  EXPECT_NE(s.error_message().find("(compromise run 7: pass run_id 7 to resume)"),
            std::string::npos);
}

TEST(ToGrpcStatus, AcmeProblemTravelsAsBinaryDetails) {
  acme::HttpResponse r;
  r.status = 429;
  r.headers = {{"retry-after", "60"}};
  r.body = R"({"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow down",
              "subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier",
                              "detail":"no","identifier":{"type":"dns","value":"x.example"}}]})";
  absl::Status st = acme::ProblemStatus(r, "POST newOrder", absl::FromUnixSeconds(1000));
  grpc::Status g = ToGrpcStatus(st);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(g.error_message().find("rateLimited"), std::string::npos);
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(g.error_details()));
  EXPECT_EQ(details.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  ASSERT_EQ(details.details_size(), 1);
  v1::AcmeProblem p;
  ASSERT_TRUE(details.details(0).UnpackTo(&p));
  EXPECT_EQ(p.type(), "urn:ietf:params:acme:error:rateLimited");
  EXPECT_EQ(p.detail(), "slow down");
  EXPECT_EQ(p.http_status(), 429);
  EXPECT_EQ(p.retry_after().seconds(), 1060);
  ASSERT_EQ(p.subproblems_size(), 1);
  EXPECT_EQ(p.subproblems(0).identifier(), "dns:x.example");
}

}  // namespace
}  // namespace acmevault::service
