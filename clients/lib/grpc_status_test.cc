#include "clients/lib/grpc_status.h"

#include "gmock/gmock.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"

namespace acmevault::clients {
namespace {

using ::testing::HasSubstr;

TEST(FromGrpcStatusTest, KeepsTheCodeAndMessage) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  absl::Status s = FromGrpcStatus(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(DescribeStatus(s), "PERMISSION_DENIED: no");
  EXPECT_FALSE(AcmeProblemOf(s).has_value());
}

TEST(FromGrpcStatusTest, CarriesTheAcmeProblemInTheMessageAndAsPayload) {
  v1::AcmeProblem problem;
  problem.set_type("urn:ietf:params:acme:error:rateLimited");
  problem.set_detail("too many certificates");
  problem.mutable_retry_after()->set_seconds(1893456000);
  google::rpc::Status details;
  details.set_code(8);
  details.add_details()->PackFrom(problem);
  absl::Status s = FromGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "rate limited",
                                               details.SerializeAsString()));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "rate limited; CA problem urn:ietf:params:acme:error:rateLimited: too many "
            "certificates (retry after 2030-01-01T00:00:00+00:00)");
  ASSERT_TRUE(AcmeProblemOf(s).has_value());
  EXPECT_EQ(AcmeProblemOf(s)->detail(), "too many certificates");
}

TEST(FromGrpcStatusTest, IgnoresDetailsItCannotRead) {
  absl::Status s =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::INTERNAL, "boom", "\xff\xff not a proto"));
  EXPECT_EQ(s.message(), "boom");
  EXPECT_FALSE(AcmeProblemOf(s).has_value());
}

}  // namespace
}  // namespace acmevault::clients
