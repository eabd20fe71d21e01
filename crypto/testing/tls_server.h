// Test-only TLS for loopback servers that tests run themselves (the fault-injecting proxy in
// front of Pebble, tests/testing/fault_proxy.h): a server identity made on the spot and the
// server side of TLS over an accepted socket. It lives here because crypto/ is the only code
// that includes <openssl/...>. Built against OpenSSL 3 only, which every binary that uses it
// already links through gRPC; nothing in the product uses it.
#ifndef ACMEVAULT_CRYPTO_TESTING_TLS_SERVER_H_
#define ACMEVAULT_CRYPTO_TESTING_TLS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// OpenSSL's SSL and SSL_CTX, declared so this header needs no <openssl/...>.
struct ssl_st;
struct ssl_ctx_st;

namespace acmevault::crypto::testing {

// A fresh CA and a server certificate it signs for DNS "localhost" and IP 127.0.0.1, both
// P-256, valid from an hour ago for a day. PEM text; `key_pem` is the server key (PKCS#8).
struct LoopbackPki {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};
absl::StatusOr<LoopbackPki> MakeLoopbackPki();

// One server-side TLS connection over a socket it owns. One thread reads and writes it; another
// may call ShutdownSocket() to wake a blocked Read.
class TlsConnection {
 public:
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  // Reads up to `n` bytes into `buf`. 0 when the peer closed the connection (with or without
  // close_notify); UNAVAILABLE on any other failure, a shut-down socket included.
  absl::StatusOr<size_t> Read(char* buf, size_t n);
  // Writes all of `data`; UNAVAILABLE when the peer is gone (never SIGPIPE: see Create).
  absl::Status Write(absl::string_view data);
  // Ends the connection: with a TLS close_notify when `graceful`, otherwise by closing the
  // socket under the peer (what a crashed or cut-off server does). Idempotent.
  void Close(bool graceful);
  // Shuts the socket down in both directions without touching the TLS state: safe from
  // another thread, to unblock a Read.
  void ShutdownSocket();

 private:
  friend class TlsServerContext;
  TlsConnection(ssl_st* ssl, int fd) : ssl_(ssl), fd_(fd) {}
  ssl_st* ssl_;
  int fd_;
};

// Server certificate and key, loaded once; thread-safe.
class TlsServerContext {
 public:
  // INVALID_ARGUMENT when the PEM does not parse or the key does not match the certificate.
  // Also sets SIGPIPE to be ignored in this process: a write to a peer that hung up must fail,
  // not kill the test binary.
  static absl::StatusOr<std::unique_ptr<TlsServerContext>> Create(absl::string_view cert_pem,
                                                                  absl::string_view key_pem);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // Takes ownership of `fd`, a connected socket, and runs the server handshake on it (blocking;
  // bound it with the socket's receive timeout). UNAVAILABLE when the handshake fails (the
  // socket is closed then).
  absl::StatusOr<std::unique_ptr<TlsConnection>> Accept(int fd);

 private:
  explicit TlsServerContext(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

}  // namespace acmevault::crypto::testing

#endif  // ACMEVAULT_CRYPTO_TESTING_TLS_SERVER_H_
