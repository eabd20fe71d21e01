#include "crypto/testing/tls_server.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace acmevault::crypto::testing {
namespace {

// An OpenSSL client on one end of a socket pair that trusts only `ca_pem` and checks the
// server's certificate for IP 127.0.0.1, as curl does for https://127.0.0.1:PORT.
class Client {
 public:
  Client(int fd, const std::string& ca_pem) : fd_(fd) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
    X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_), ca);
    X509_free(ca);
    BIO_free(bio);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ctx_);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), "127.0.0.1");
    SSL_set_fd(ssl_, fd_);
  }
  ~Client() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    close(fd_);
  }
  bool Connect() { return SSL_connect(ssl_) == 1; }
  bool Write(const std::string& s) { return SSL_write(ssl_, s.data(), s.size()) == int(s.size()); }
  // Up to 100 bytes; "" at the end of the stream or on error.
  std::string Read() {
    char buf[100];
    int n = SSL_read(ssl_, buf, sizeof(buf));
    return n > 0 ? std::string(buf, n) : "";
  }

 private:
  int fd_;
  SSL_CTX* ctx_;
  SSL* ssl_;
};

TEST(TlsServerTest, ServesWithAMadeCertificateThatItsCaVerifies) {
  auto pki = MakeLoopbackPki();
  ASSERT_TRUE(pki.ok()) << pki.status();
  EXPECT_THAT(pki->key_pem, ::testing::HasSubstr("PRIVATE KEY"));
  auto context = TlsServerContext::Create(pki->cert_pem, pki->key_pem);
  ASSERT_TRUE(context.ok()) << context.status();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  std::string received;
  absl::Status end_of_stream;
  std::thread server([&] {
    auto connection = (*context)->Accept(fds[0]);
    ASSERT_TRUE(connection.ok()) << connection.status();
    char buf[16];
    auto n = (*connection)->Read(buf, sizeof(buf));
    ASSERT_TRUE(n.ok()) << n.status();
    received.assign(buf, *n);
    ASSERT_TRUE((*connection)->Write("pong").ok());
    auto eof = (*connection)->Read(buf, sizeof(buf));  // The client closes.
    end_of_stream = eof.ok() && *eof == 0 ? absl::OkStatus() : absl::InternalError("no EOF");
  });
  {
    Client client(fds[1], pki->ca_pem);
    ASSERT_TRUE(client.Connect());
    ASSERT_TRUE(client.Write("ping"));
    EXPECT_EQ(client.Read(), "pong");
  }  // Closes the socket without close_notify.
  server.join();
  EXPECT_EQ(received, "ping");
  EXPECT_TRUE(end_of_stream.ok());
}

TEST(TlsServerTest, AnotherCasClientRefusesTheHandshake) {
  auto pki = MakeLoopbackPki();
  auto other = MakeLoopbackPki();
  ASSERT_TRUE(pki.ok() && other.ok());
  auto context = TlsServerContext::Create(pki->cert_pem, pki->key_pem);
  ASSERT_TRUE(context.ok());
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  absl::Status accepted;
  std::thread server([&] { accepted = (*context)->Accept(fds[0]).status(); });
  {
    Client client(fds[1], other->ca_pem);
    EXPECT_FALSE(client.Connect());
    ERR_clear_error();
  }
  server.join();
  EXPECT_EQ(accepted.code(), absl::StatusCode::kUnavailable);
}

TEST(TlsServerTest, AnUngracefulCloseEndsTheClientsStream) {
  auto pki = MakeLoopbackPki();
  ASSERT_TRUE(pki.ok());
  auto context = TlsServerContext::Create(pki->cert_pem, pki->key_pem);
  ASSERT_TRUE(context.ok());
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  std::thread server([&] {
    auto connection = (*context)->Accept(fds[0]);
    ASSERT_TRUE(connection.ok());
    ASSERT_TRUE((*connection)->Write("part").ok());
    (*connection)->Close(/*graceful=*/false);
    EXPECT_FALSE((*connection)->Write("more").ok());
  });
  Client client(fds[1], pki->ca_pem);
  ASSERT_TRUE(client.Connect());
  EXPECT_EQ(client.Read(), "part");
  EXPECT_EQ(client.Read(), "");
  server.join();
}

TEST(TlsServerTest, RejectsAKeyOfAnotherCertificate) {
  auto pki = MakeLoopbackPki();
  auto other = MakeLoopbackPki();
  ASSERT_TRUE(pki.ok() && other.ok());
  EXPECT_EQ(TlsServerContext::Create(pki->cert_pem, other->key_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TlsServerContext::Create("not pem", pki->key_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acmevault::crypto::testing
