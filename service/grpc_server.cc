#include "service/grpc_server.h"

#include <grpcpp/resource_quota.h>
#include <grpcpp/support/server_interceptor.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace acmevault::service {
namespace {

namespace gx = grpc::experimental;

int Millis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT_MAX));
}

// One per call: counts it in flight while it lasts, and a call that gRPC answered itself with
// RESOURCE_EXHAUSTED (its thread pool was exhausted; no handler ran, so the call carries no
// request id) as rejected.
class LimitsInterceptor final : public gx::Interceptor {
 public:
  explicit LimitsInterceptor(Metrics* metrics) : metrics_(metrics) { metrics_->AddRpcsInFlight(1); }
  ~LimitsInterceptor() override { metrics_->AddRpcsInFlight(-1); }

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
        methods->GetSendTrailingMetadata()->count(kRequestIdTrailer) == 0) {
      metrics_->RecordRpcRejected("threads");
    }
    methods->Proceed();
  }

 private:
  Metrics* const metrics_;
};

class LimitsInterceptorFactory final : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit LimitsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo*) override {
    return new LimitsInterceptor(metrics_);
  }

 private:
  Metrics* const metrics_;
};

}  // namespace

void ApplyServerLimits(const ServerLimits& limits, Metrics* metrics, grpc::ServerBuilder& builder) {
  grpc::ResourceQuota quota("acmevaultd");
  quota.SetMaxThreads(limits.max_threads);
  quota.Resize(static_cast<size_t>(limits.max_memory_bytes));
  builder.SetResourceQuota(quota);
  // gRPC's synchronous server keeps at most max_pollers threads waiting for calls (default 2):
  // with more calls in flight, each further call started a thread that ended with the call, a
  // clone, stack mapping and unmapping per call under load. Up to max_idle_threads stay to
  // serve the next calls. Not more: a thread waiting for calls ends only beyond max_pollers
  // (its 10 s poll timeout does not end it otherwise), so what stays, stays for good.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              std::max(1, std::min(limits.max_idle_threads, limits.max_threads)));
  builder.SetMaxReceiveMessageSize(limits.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(limits.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(limits.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, Millis(limits.max_connection_idle));
  if (metrics != nullptr) {
    std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<LimitsInterceptorFactory>(metrics));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
}

}  // namespace acmevault::service
