#include "net/byte_stream.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>

#include "base/errno_text.hpp"

namespace stagelog::detail {

namespace {

int remaining_ms(ByteStream::Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - ByteStream::Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30));
}

// The reason of OpenSSL's latest error on this thread ("certificate verify failed"), or
// `otherwise` when there is none. Empties the thread's error queue.
std::string ssl_error_text(const char* otherwise) {
  unsigned long code = 0;
  unsigned long last = 0;
  while ((code = ERR_get_error()) != 0) last = code;
  if (last == 0) return otherwise;
  if (const char* reason = ERR_reason_error_string(last)) return reason;
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

// --- A socket BIO that cannot raise SIGPIPE ----------------------------------------------
// OpenSSL's own socket BIO writes with write(): a peer that has gone would kill the process
// with SIGPIPE. This one sends with MSG_NOSIGNAL and is otherwise the same for a non-blocking
// socket: "try again" on EAGAIN, end of stream remembered for BIO_eof().

struct BioSocket {
  int fd;
  bool eof = false;
};

int bio_write(BIO* bio, const char* data, int size) {
  auto* s = static_cast<BioSocket*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  ssize_t n = ::send(s->fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

int bio_read(BIO* bio, char* out, int size) {
  auto* s = static_cast<BioSocket*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  ssize_t n = ::recv(s->fd, out, static_cast<std::size_t>(size), 0);
  if (n == 0) s->eof = true;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_read(bio);
  }
  return static_cast<int>(n);
}

long bio_ctrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return static_cast<BioSocket*>(BIO_get_data(bio))->eof ? 1 : 0;
    default:
      return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_data(bio, nullptr);
  BIO_set_init(bio, 1);
  return 1;
}

int bio_destroy(BIO* bio) {
  delete static_cast<BioSocket*>(BIO_get_data(bio));
  BIO_set_data(bio, nullptr);
  return 1;
}

const BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "stagelog socket");
    if (m == nullptr) return m;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    BIO_meth_set_destroy(m, bio_destroy);
    return m;
  }();
  return method;
}

}  // namespace

// --- TlsConfig -------------------------------------------------------------------------------

TlsConfig::TlsConfig(const std::string& ca_file) : ca_file_(ca_file) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) throw Error("cannot set up TLS: " + ssl_error_text("SSL_CTX_new failed"));
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  // A server that closes without close_notify ends the stream like one that sends it: HTTP's
  // own framing (Content-Length, chunks) tells a cut answer from a whole one.
  SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx_) != 1) {
      std::string why = ssl_error_text("unknown error");
      SSL_CTX_free(ctx_);
      throw Error("cannot load the system's CA certificates: " + why);
    }
    return;
  }
  if (std::FILE* f = std::fopen(ca_file.c_str(), "r")) {
    std::fclose(f);
  } else {
    int err = errno;
    SSL_CTX_free(ctx_);
    throw Error("cannot read the CA file " + ca_file + ": " + errno_text(err));
  }
  if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) {
    std::string why = ssl_error_text("no PEM certificate found");
    SSL_CTX_free(ctx_);
    throw Error("the CA file " + ca_file + " holds no certificate: " + why);
  }
}

TlsConfig::~TlsConfig() { SSL_CTX_free(ctx_); }

// --- ByteStream ------------------------------------------------------------------------------

void ByteStream::close() noexcept {
  if (ssl_ != nullptr) {
    (void)SSL_shutdown(ssl_);  // Our close_notify, if the socket takes it now; no waiting.
    SSL_free(ssl_);            // Frees the BIO too.
    ssl_ = nullptr;
    ERR_clear_error();
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void ByteStream::fail(const std::string& what) {
  close();
  throw NetError(what);
}

bool ByteStream::wait(short events, Clock::time_point until) {
  pollfd p{fd_, events, 0};
  int r = ::poll(&p, 1, remaining_ms(until));
  if (r > 0) return true;  // Ready, or an error the next call reports.
  if (r == 0 || errno == EINTR) return false;
  fail("poll: " + errno_text(errno));
}

void ByteStream::wait_or_throw(short events, Clock::time_point deadline, std::string_view doing) {
  while (!wait(events, deadline)) {
    if (Clock::now() >= deadline) fail("timed out " + std::string(doing) + " " + peer_);
  }
}

void ByteStream::connect(const Url& url, const TlsConfig* tls, Clock::time_point deadline) {
  close();
  peer_ = url.host_header;
  connect_tcp(url, deadline);
  if (url.tls) {
    if (tls == nullptr) fail("https to " + peer_ + " without a TLS configuration");
    handshake(url, *tls, deadline);
  }
}

void ByteStream::connect_tcp(const Url& url, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  // getaddrinfo() has no timeout: a hung resolver holds the calling thread (for the network
  // sink its sender thread, never the recorder's backend).
  std::string port = std::to_string(url.port);
  int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) throw NetError("cannot resolve " + url.host + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, ::freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = errno_text(errno);
      continue;
    }
    fd_ = fd;
    int r = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      wait_or_throw(POLLOUT, deadline, "connecting to");
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      r = err == 0 ? 0 : -1;
      errno = err;
    }
    if (r == 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return;
    }
    last_error = errno_text(errno);
    close();
  }
  throw NetError("cannot connect to " + peer_ + ": " + last_error);
}

void ByteStream::handshake(const Url& url, const TlsConfig& tls, Clock::time_point deadline) {
  const std::string failed = "TLS handshake with " + peer_ + " failed: ";
  ERR_clear_error();
  ssl_ = SSL_new(tls.context());
  BIO* bio = ssl_ == nullptr ? nullptr : BIO_new(socket_bio_method());
  if (bio == nullptr) fail(failed + ssl_error_text("out of memory"));
  BIO_set_data(bio, new BioSocket{fd_});
  SSL_set_bio(ssl_, bio, bio);
  bool ok = true;
  if (is_ip_literal(url.host)) {
    // No SNI for an address (RFC 6066); the certificate must name it in an IP SAN.
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), url.host.c_str()) == 1;
  } else {
    ok = SSL_set_tlsext_host_name(ssl_, url.host.c_str()) == 1 &&
         SSL_set1_host(ssl_, url.host.c_str()) == 1;
  }
  if (!ok) fail(failed + ssl_error_text("cannot set the host name to check"));
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(ssl_);
    if (r == 1) return;
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) &&
          Clock::now() >= deadline) {
        fail(failed + "timed out");
      }
      continue;
    }
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      fail(failed + "certificate verify failed: " + X509_verify_cert_error_string(verify));
    }
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      fail(failed + (errno != 0 ? errno_text(errno) : "connection closed by the server"));
    }
    fail(failed + ssl_error_text("unknown error"));
  }
}

void ByteStream::write_all(std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    if (ssl_ == nullptr) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wait_or_throw(POLLOUT, deadline, "sending to");
      } else {
        fail("cannot send to " + peer_ + ": " + errno_text(errno));
      }
      continue;
    }
    ERR_clear_error();
    int size = static_cast<int>(std::min<std::size_t>(data.size(), INT_MAX));
    int n = SSL_write(ssl_, data.data(), size);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      wait_or_throw(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, "sending to");
    } else if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      fail("cannot send to " + peer_ + ": " + errno_text(errno));
    } else {
      fail("cannot send to " + peer_ + ": " + ssl_error_text("TLS error"));
    }
  }
}

long ByteStream::read(char* out, std::size_t size, Clock::time_point until) {
  for (;;) {
    if (ssl_ == nullptr) {
      ssize_t n = ::recv(fd_, out, size, 0);
      if (n >= 0) return static_cast<long>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        fail("cannot read from " + peer_ + ": " + errno_text(errno));
      }
      if (!wait(POLLIN, until)) return -1;
      continue;
    }
    ERR_clear_error();
    int n = SSL_read(ssl_, out, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
    if (n > 0) return n;
    int err = SSL_get_error(ssl_, n);
    switch (err) {
      case SSL_ERROR_ZERO_RETURN:
        return 0;
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        if (!wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, until)) return -1;
        continue;
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
          if (errno == 0) return 0;
          fail("cannot read from " + peer_ + ": " + errno_text(errno));
        }
        [[fallthrough]];
      default:
        fail("cannot read from " + peer_ + ": " + ssl_error_text("TLS error"));
    }
  }
}

}  // namespace stagelog::detail
