#pragma once

// TLS for tests, with the OpenSSL API: a throwaway CA and a server certificate it signs, made
// at test time into a folder, and a TLS-terminating proxy on 127.0.0.1 that forwards what it
// decrypts to a plain TCP port (a real `stagelog serve`) and encrypts the answers back. The
// test target links OpenSSL::SSL.

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace stagelog::test {

namespace tls_detail {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + " failed");
}

inline void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key`, named `cn`, signed by issuer_key (self-signed when issuer is null).
inline Cert make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                      const std::string& san, long serial) {
  Cert cert(X509_new());
  X509* x = cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer != nullptr ? issuer : x;
  add_extension(x, signer, NID_subject_key_identifier, "hash");
  if (issuer == nullptr) {
    add_extension(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(x, signer, NID_authority_key_identifier, "keyid:always");
    add_extension(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(x, signer, NID_ext_key_usage, "serverAuth");
    add_extension(x, signer, NID_subject_alt_name, san.c_str());
  }
  check(X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

inline void write_pem(const std::filesystem::path& path, X509* cert, EVP_PKEY* key) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "fopen");
  bool ok = cert != nullptr
                ? PEM_write_X509(f, cert) == 1
                : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  check(ok, "PEM_write");
}

}  // namespace tls_detail

// A CA (ca.pem) and a server certificate it signed (server.pem, server.key) for the subject
// alternative names `san` ("IP:127.0.0.1,DNS:localhost"), written into `dir`.
struct TestCertificates {
  TestCertificates(const std::filesystem::path& dir,
                   const std::string& san = "IP:127.0.0.1,DNS:localhost")
      : ca_file(dir / "ca.pem"), cert_file(dir / "server.pem"), key_file(dir / "server.key") {
    std::filesystem::create_directories(dir);
    tls_detail::Key ca_key(EVP_EC_gen("P-256"));
    tls_detail::Key server_key(EVP_EC_gen("P-256"));
    tls_detail::check(ca_key && server_key, "EVP_EC_gen");
    auto ca = tls_detail::make_cert(ca_key.get(), "stagelog test CA", nullptr, nullptr, "", 1);
    auto server = tls_detail::make_cert(server_key.get(), "stagelog test server", ca.get(),
                                        ca_key.get(), san, 2);
    tls_detail::write_pem(ca_file, ca.get(), nullptr);
    tls_detail::write_pem(cert_file, server.get(), nullptr);
    tls_detail::write_pem(key_file, nullptr, server_key.get());
  }

  std::filesystem::path ca_file;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
};

// Listens on 127.0.0.1 (a free port), makes the TLS handshake with `certs`' server certificate,
// and forwards each connection's bytes to 127.0.0.1:backend_port and back. backend_port 0: each
// connection is closed right after the handshake. One thread per connection; every socket
// wait is bounded (100 ms polls, 10 s socket timeouts); the destructor stops and joins them.
class TlsProxy {
 public:
  TlsProxy(const TestCertificates& certs, int backend_port) : backend_port_(backend_port) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    tls_detail::check(ctx_ != nullptr, "SSL_CTX_new");
    tls_detail::check(
        SSL_CTX_use_certificate_file(ctx_, certs.cert_file.c_str(), SSL_FILETYPE_PEM) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx_, certs.key_file.c_str(), SSL_FILETYPE_PEM) == 1,
        "loading the server certificate");
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    tls_detail::check(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                          ::listen(listen_fd_, 64) == 0 &&
                          ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0,
                      "listening");
    port_ = ntohs(addr.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~TlsProxy() {
    stop_ = true;
    accept_thread_.join();
    std::lock_guard lock(mu_);
    for (auto& t : connections_) t.join();
    ::close(listen_fd_);
    SSL_CTX_free(ctx_);
  }
  TlsProxy(const TlsProxy&) = delete;
  TlsProxy& operator=(const TlsProxy&) = delete;

  int port() const { return port_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  int handshakes_done() const { return handshakes_done_; }
  int handshakes_failed() const { return handshakes_failed_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      connections_.emplace_back([this, fd] { serve(fd); });
    }
  }

  static bool send_all(int fd, const char* data, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  void serve(int client) {
    // A client gone mid-write must not kill the test process: OpenSSL's socket BIO writes
    // with write(), so SIGPIPE is blocked in this thread (EPIPE comes back instead).
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    timeval timeout{10, 0};
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, client);
    int backend = -1;
    if (SSL_accept(ssl) != 1) {
      ++handshakes_failed_;
    } else {
      ++handshakes_done_;
      if (backend_port_ != 0) backend = connect_backend();
    }
    char buf[16 * 1024];
    while (backend >= 0 && !stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {backend, POLLIN, 0}};
      if (SSL_pending(ssl) == 0 && ::poll(p, 2, 100) <= 0) continue;
      if (SSL_pending(ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0 || !send_all(backend, buf, static_cast<std::size_t>(n))) break;
      }
      if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ssize_t n = ::recv(backend, buf, sizeof buf, 0);
        if (n <= 0 || SSL_write(ssl, buf, static_cast<int>(n)) != n) break;
      }
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
    ::close(client);
    if (backend >= 0) ::close(backend);
  }

  int connect_backend() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(backend_port_));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  const int backend_port_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> handshakes_done_{0};
  std::atomic<int> handshakes_failed_{0};
  std::mutex mu_;
  std::vector<std::thread> connections_;
  std::thread accept_thread_;
};

}  // namespace stagelog::test
