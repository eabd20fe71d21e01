#include "crypto/testing/tls_server.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "crypto/internal.h"

namespace acmevault::crypto::testing {
namespace {

using internal::BioContents;
using internal::BioPtr;
using internal::Deleter;
using internal::EvpPkeyPtr;
using internal::LibraryError;
using internal::MemoryBio;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

absl::StatusOr<EvpPkeyPtr> NewP256Key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (key == nullptr) return LibraryError(absl::StatusCode::kInternal, "P-256 key generation");
  return key;
}

// Adds extension `nid` with OpenSSL's config-string `value` (e.g. "critical,CA:TRUE").
absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return LibraryError(absl::StatusCode::kInternal, "certificate extension");
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (added != 1) return LibraryError(absl::StatusCode::kInternal, "certificate extension");
  return absl::OkStatus();
}

// A certificate for `key` named `cn`, signed by `issuer_key` (self-signed when `issuer` is
// null), with the extensions in `extensions` ({nid, value} pairs).
absl::StatusOr<X509Ptr> MakeCertificate(
    EVP_PKEY* key, const char* cn, long serial, X509* issuer, EVP_PKEY* issuer_key,
    std::initializer_list<std::pair<int, const char*>> extensions) {
  X509Ptr cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), 2) != 1 ||
      ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600) == nullptr ||
      X509_set_pubkey(cert.get(), key) != 1 ||
      X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(cn), -1, -1, 0) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "certificate fields");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "certificate issuer");
  }
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = AddExtension(cert.get(), signer, nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) {
    return LibraryError(absl::StatusCode::kInternal, "certificate signature");
  }
  return cert;
}

absl::StatusOr<std::string> CertificatePem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "certificate PEM");
  }
  return BioContents(bio.get());
}

}  // namespace

absl::StatusOr<LoopbackPki> MakeLoopbackPki() {
  auto ca_key = NewP256Key();
  if (!ca_key.ok()) return ca_key.status();
  auto ca = MakeCertificate(ca_key->get(), "acmevault test loopback CA", 1, nullptr, ca_key->get(),
                            {{NID_basic_constraints, "critical,CA:TRUE"},
                             {NID_key_usage, "critical,keyCertSign,cRLSign"},
                             {NID_subject_key_identifier, "hash"}});
  if (!ca.ok()) return ca.status();
  auto key = NewP256Key();
  if (!key.ok()) return key.status();
  auto cert = MakeCertificate(key->get(), "localhost", 2, ca->get(), ca_key->get(),
                              {{NID_basic_constraints, "critical,CA:FALSE"},
                               {NID_key_usage, "critical,digitalSignature"},
                               {NID_ext_key_usage, "serverAuth"},
                               {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                               {NID_subject_key_identifier, "hash"},
                               {NID_authority_key_identifier, "keyid:always"}});
  if (!cert.ok()) return cert.status();
  LoopbackPki pki;
  auto ca_pem = CertificatePem(ca->get());
  auto cert_pem = CertificatePem(cert->get());
  if (!ca_pem.ok()) return ca_pem.status();
  if (!cert_pem.ok()) return cert_pem.status();
  pki.ca_pem = *std::move(ca_pem);
  pki.cert_pem = *std::move(cert_pem);
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key->get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return LibraryError(absl::StatusCode::kInternal, "key PEM");
  }
  pki.key_pem = BioContents(bio.get());
  return pki;
}

TlsConnection::~TlsConnection() {
  Close(/*graceful=*/false);
  SSL_free(ssl_);
}

absl::StatusOr<size_t> TlsConnection::Read(char* buf, size_t n) {
  if (fd_ < 0) return absl::UnavailableError("TLS read: connection closed");
  size_t got = 0;
  if (SSL_read_ex(ssl_, buf, n, &got) == 1) return got;
  const int error = SSL_get_error(ssl_, 0);
  // The peer's close, with close_notify or without (SSL_OP_IGNORE_UNEXPECTED_EOF makes that one
  // a zero return too), is the end of the stream.
  if (error == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return 0;
  }
  return LibraryError(absl::StatusCode::kUnavailable, "TLS read");
}

absl::Status TlsConnection::Write(absl::string_view data) {
  if (fd_ < 0) return absl::UnavailableError("TLS write: connection closed");
  while (!data.empty()) {
    size_t written = 0;
    if (SSL_write_ex(ssl_, data.data(), data.size(), &written) != 1) {
      return LibraryError(absl::StatusCode::kUnavailable, "TLS write");
    }
    data.remove_prefix(written);
  }
  return absl::OkStatus();
}

void TlsConnection::Close(bool graceful) {
  if (fd_ < 0) return;
  if (graceful) SSL_shutdown(ssl_);  // Sends close_notify; the peer's reply is not awaited.
  ERR_clear_error();
  close(fd_);
  fd_ = -1;
}

void TlsConnection::ShutdownSocket() {
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

absl::StatusOr<std::unique_ptr<TlsServerContext>> TlsServerContext::Create(
    absl::string_view cert_pem, absl::string_view key_pem) {
  signal(SIGPIPE, SIG_IGN);
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (raw == nullptr) return LibraryError(absl::StatusCode::kInternal, "SSL_CTX_new");
  std::unique_ptr<TlsServerContext> context(new TlsServerContext(raw));
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  SSL_CTX_set_options(raw, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(raw, SSL_MODE_AUTO_RETRY);
  BioPtr cert_bio = MemoryBio(cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  BioPtr key_bio = MemoryBio(key_pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr || key == nullptr) {
    return LibraryError(absl::StatusCode::kInvalidArgument, "TLS server certificate or key PEM");
  }
  if (SSL_CTX_use_certificate(raw, cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(raw, key.get()) != 1 || SSL_CTX_check_private_key(raw) != 1) {
    return LibraryError(absl::StatusCode::kInvalidArgument,
                        "TLS server key does not match its certificate");
  }
  return context;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

absl::StatusOr<std::unique_ptr<TlsConnection>> TlsServerContext::Accept(int fd) {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) {
    close(fd);
    return LibraryError(absl::StatusCode::kInternal, "SSL_new");
  }
  std::unique_ptr<TlsConnection> connection(new TlsConnection(ssl, fd));
  if (SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1) {
    return LibraryError(absl::StatusCode::kUnavailable, "TLS handshake");
  }
  return connection;
}

}  // namespace acmevault::crypto::testing
