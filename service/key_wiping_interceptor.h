// A gRPC server interceptor that wipes the private key an IssueCertificateResponse carries as soon
// as gRPC has serialized the message. The handler's response is the service's last copy of a PEM
// it hands out (the issuer's own is crypto::SecretBytes), and gRPC would free it unwiped. The
// serialized bytes belong to gRPC and stay beyond reach. Register it on the server that serves
// CertificateService (ServerBuilder::experimental().SetInterceptorCreators). Thread-safe.
#ifndef ACMEVAULT_SERVICE_KEY_WIPING_INTERCEPTOR_H_
#define ACMEVAULT_SERVICE_KEY_WIPING_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

namespace acmevault::service {

// The one method whose responses carry a private key.
inline constexpr char kIssueCertificateMethod[] =
    "/acmevault.v1.CertificateService/IssueCertificate";

class KeyWipingInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // An interceptor for IssueCertificate; none (null) for every other method.
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_KEY_WIPING_INTERCEPTOR_H_
