// The limits acmevaultd's gRPC server enforces, so that no caller (or crowd of idle connections)
// can take every thread or all memory, and the metrics that show them at work.
#ifndef ACMEVAULT_SERVICE_GRPC_SERVER_H_
#define ACMEVAULT_SERVICE_GRPC_SERVER_H_

#include <grpcpp/server_builder.h>

#include <cstdint>

#include "absl/time/time.h"
#include "service/metrics.h"

namespace acmevault::service {

// The trailing metadata key of the request id that every call one of our handlers answered
// carries (grpc_services.h sets it first thing); a call without it was answered by gRPC itself.
inline constexpr char kRequestIdTrailer[] = "x-request-id";

// Each field's default is the ServerConfig default (proto/acmevault/v1/config.proto), where
// operators set them.
struct ServerLimits {
  // RPCs one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a client
  // queues its further calls until one ends, so one connection cannot take every thread.
  int max_concurrent_streams = 32;
  // Threads of gRPC's synchronous server (grpc::ResourceQuota::SetMaxThreads), across all
  // connections. One always waits for the next call, so at most max_threads - 1 calls run their
  // handlers at once (an IssueCertificate holds its thread while it waits for the CA); a call
  // that finds none free is answered RESOURCE_EXHAUSTED ("Server Threadpool Exhausted") at
  // once, and counted. Health checks are served on gRPC's own threads and still answer.
  int max_threads = 128;
  // Threads that served a call and wait for the next, at most: up to this many stay (under
  // load, not one thread started and ended per call); a thread beyond them ends with its call.
  // gRPC's synchronous server ends an idle thread only beyond this bound, so it is also the
  // number of threads a replica keeps after a burst of calls.
  int max_idle_threads = 8;
  // Memory gRPC may use for connections and calls (grpc::ResourceQuota::Resize): under pressure
  // it shrinks buffers and refuses new calls.
  int64_t max_memory_bytes = int64_t{256} << 20;
  // The largest request message accepted; a larger one is RESOURCE_EXHAUSTED before any handler
  // sees it. The largest legitimate request (a 16 KiB CSR and 100 names) is far below.
  int max_receive_message_bytes = 1 << 20;
  // The server pings a connection idle this long, and closes it when no answer comes within
  // keepalive_timeout: a vanished client's calls are cancelled (an IssueCertificate stops
  // waiting) instead of holding their threads.
  absl::Duration keepalive_time = absl::Minutes(1);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // A connection without any call for this long is closed (GOAWAY); clients reconnect.
  absl::Duration max_connection_idle = absl::Minutes(15);
};

// Sets `limits` on `builder` (before BuildAndStart). When `metrics` is set (borrowed; it must
// outlive the server), every call is counted in acmevault_rpcs_in_flight while it lasts, and a
// call gRPC refuses for want of a thread in acmevault_rpcs_rejected_total{limit="threads"}.
void ApplyServerLimits(const ServerLimits& limits, Metrics* metrics, grpc::ServerBuilder& builder);

}  // namespace acmevault::service

#endif  // ACMEVAULT_SERVICE_GRPC_SERVER_H_
