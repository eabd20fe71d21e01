// The proto macro's output works end to end: messages (with a well-known type) serialize, and
// the generated stub reaches the generated service over a real loopback gRPC channel.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "testing/echo.grpc.pb.h"
#include "testing/echo.pb.h"

namespace acmevault::testing {
namespace {

class EchoImpl final : public Echo::Service {
  grpc::Status Echo(grpc::ServerContext*, const EchoRequest* req, EchoResponse* resp) override {
    if (req->text().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "text: must not be empty");
    }
    resp->set_text(req->text());
    *resp->mutable_sent_at() = req->sent_at();
    resp->set_length(static_cast<int64_t>(req->text().size()));
    return grpc::Status::OK;
  }
};

TEST(ProtoCodegen, MessagesRoundTripThroughTheWireFormat) {
  EchoRequest req;
  req.set_text("h\xc3\xa9llo");
  req.mutable_sent_at()->set_seconds(1700000000);
  std::string wire = req.SerializeAsString();
  EchoRequest back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.text(), "h\xc3\xa9llo");
  EXPECT_EQ(back.sent_at().seconds(), 1700000000);
}

TEST(ProtoCodegen, StubCallsServiceOnLoopback) {
  EchoImpl service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);

  auto stub = Echo::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                grpc::InsecureChannelCredentials()));
  EchoRequest req;
  req.set_text("ping");
  req.mutable_sent_at()->set_seconds(42);
  EchoResponse resp;
  grpc::ClientContext ctx;
  grpc::Status status = stub->Echo(&ctx, req, &resp);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.text(), "ping");
  EXPECT_EQ(resp.length(), 4);
  EXPECT_EQ(resp.sent_at().seconds(), 42);

  grpc::ClientContext ctx2;
  status = stub->Echo(&ctx2, EchoRequest(), &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "text: must not be empty");
  server->Shutdown();
}

}  // namespace
}  // namespace acmevault::testing
