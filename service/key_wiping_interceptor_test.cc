#include "service/key_wiping_interceptor.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "acmevault/v1/certificate_service.grpc.pb.h"
#include "gtest/gtest.h"

namespace acmevault::service {
namespace {

using grpc::experimental::InterceptionHookPoints;

const std::string& Pem() {
  static const auto* pem = new std::string("-----BEGIN PRIVATE KEY-----\n" + std::string(180, 'A') +
                                           "\n-----END PRIVATE KEY-----\n");
  return *pem;
}

// Answers every IssueCertificate with Pem() and remembers its response message, which lives
// until the answer has been sent.
class KeyHandingService final : public v1::CertificateService::Service {
 public:
  grpc::Status IssueCertificate(grpc::ServerContext*, const v1::IssueCertificateRequest*,
                                v1::IssueCertificateResponse* response) override {
    response->set_private_key_pem(Pem());
    buffer_ = response->private_key_pem().data();
    capacity_ = response->private_key_pem().capacity();
    response_ = response;
    return grpc::Status::OK;
  }
  grpc::Status GetOrder(grpc::ServerContext*, const v1::GetOrderRequest*,
                        v1::Order* order) override {
    order->set_id("1");
    return grpc::Status::OK;
  }

  std::atomic<v1::IssueCertificateResponse*> response_{nullptr};
  const char* buffer_ = nullptr;
  size_t capacity_ = 0;
};

// Runs after the wiping interceptor, while the answer is being sent (the handler's response
// still lives): the key's buffer must hold only zeros by then.
class Probe final : public grpc::experimental::Interceptor {
 public:
  Probe(KeyHandingService* service, std::atomic<int>* wiped) : service_(service), wiped_(wiped) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE) &&
        service_->response_ != nullptr) {
      const v1::IssueCertificateResponse& sent = *service_->response_;
      bool zeros = sent.private_key_pem().empty() &&
                   sent.private_key_pem().data() == service_->buffer_ &&
                   std::string(service_->buffer_, service_->capacity_) ==
                       std::string(service_->capacity_, '\0');
      if (zeros) ++*wiped_;
    }
    methods->Proceed();
  }

 private:
  KeyHandingService* const service_;
  std::atomic<int>* const wiped_;
};

class ProbeFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  ProbeFactory(KeyHandingService* service, std::atomic<int>* wiped)
      : service_(service), wiped_(wiped) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (std::string(info->method()) != kIssueCertificateMethod) return nullptr;
    return new Probe(service_, wiped_);
  }

 private:
  KeyHandingService* const service_;
  std::atomic<int>* const wiped_;
};

TEST(KeyWipingInterceptor, TheCallerGetsTheKeyAndTheServersCopyIsWipedOnceSent) {
  KeyHandingService service;
  std::atomic<int> wiped{0};
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<KeyWipingInterceptorFactory>());
  creators.push_back(std::make_unique<ProbeFactory>(&service, &wiped));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::CertificateService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));

  grpc::ClientContext issue_context;
  v1::IssueCertificateResponse received;
  ASSERT_TRUE(stub->IssueCertificate(&issue_context, {}, &received).ok());
  EXPECT_TRUE(received.private_key_pem() == Pem()) << "the caller's key arrived altered";
  EXPECT_EQ(wiped.load(), 1);
  // Other methods pass untouched.
  grpc::ClientContext order_context;
  v1::Order order;
  ASSERT_TRUE(stub->GetOrder(&order_context, {}, &order).ok());
  EXPECT_EQ(order.id(), "1");
  server->Shutdown();
}

}  // namespace
}  // namespace acmevault::service
