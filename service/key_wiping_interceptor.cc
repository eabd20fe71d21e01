#include "service/key_wiping_interceptor.h"

#include <cstring>

#include "acmevault/v1/certificate_service.pb.h"
#include "crypto/secret.h"

namespace acmevault::service {
namespace {

using grpc::experimental::InterceptionHookPoints;

class KeyWipingInterceptor final : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      const void* message = methods->GetSendMessage();
      if (message != nullptr) {
        // Serialize now (gRPC keeps the bytes and never reads the message again), then wipe the
        // message's copy. The handler's response object is not const: the cast is sound.
        methods->GetSerializedSendMessage();
        auto* response = const_cast<v1::IssueCertificateResponse*>(
            static_cast<const v1::IssueCertificateResponse*>(message));
        crypto::WipeString(response->mutable_private_key_pem());
      }
    }
    methods->Proceed();
  }
};

}  // namespace

grpc::experimental::Interceptor* KeyWipingInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (std::strcmp(info->method(), kIssueCertificateMethod) != 0) return nullptr;
  return new KeyWipingInterceptor();
}

}  // namespace acmevault::service
