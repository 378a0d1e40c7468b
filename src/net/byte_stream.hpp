#pragma once

// A byte stream over a connected TCP socket, plain or TLS (OpenSSL): what HttpClient sends its
// requests on and reads its answers from. Every connect, handshake, read and write waits with
// poll() and gives up at a deadline; none raises SIGPIPE (send() with MSG_NOSIGNAL, for TLS
// too: OpenSSL writes through a BIO of ours that sends that way).

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "net/url.hpp"
#include "stagelog/error.hpp"

struct ssl_st;
struct ssl_ctx_st;

namespace stagelog::detail {

// The network failed us: cannot resolve or connect, a TLS handshake or certificate refused, a
// timeout, the connection broken.
class NetError : public Error {
 public:
  explicit NetError(const std::string& what) : Error(what) {}
};

// How https connections are checked: TLS 1.2 at least, the server's certificate verified
// against the system's CA store (OpenSSL's default paths, which SSL_CERT_FILE and SSL_CERT_DIR
// override) or against the CAs of one PEM file, and its name (or IP address) matched to the
// URL's host. Immutable once made; shared by any number of connections on any threads.
class TlsConfig {
 public:
  // `ca_file` empty: the system's CAs. Throws Error "cannot read the CA file PATH: <reason>"
  // or "the CA file PATH holds no certificate: <reason>".
  explicit TlsConfig(const std::string& ca_file = {});
  ~TlsConfig();
  TlsConfig(const TlsConfig&) = delete;
  TlsConfig& operator=(const TlsConfig&) = delete;

  ssl_ctx_st* context() const noexcept { return ctx_; }
  const std::string& ca_file() const noexcept { return ca_file_; }

 private:
  ssl_ctx_st* ctx_ = nullptr;
  std::string ca_file_;
};

// One connection, used by one thread at a time. Closed until connect(); close() (or any error
// thrown) closes it again.
class ByteStream {
 public:
  using Clock = std::chrono::steady_clock;

  ByteStream() = default;
  ~ByteStream() { close(); }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Connects to url.host:url.port (each address the name resolves to, in turn) and, when
  // url.tls, makes the TLS handshake checked by `tls` (required then): SNI and the name check
  // for a host name, the IP address check for an IP literal. Throws NetError: "cannot connect
  // to HOST:PORT: ...", "TLS handshake with HOST:PORT failed: certificate verify failed:
  // <reason>", "timed out ...".
  void connect(const Url& url, const TlsConfig* tls, Clock::time_point deadline);
  // Sends all of `data`. Throws NetError (and closes) on failure or at the deadline.
  void write_all(std::string_view data, Clock::time_point deadline);
  // Reads what is there, up to `size` bytes, waiting until `until` for the first: the count,
  // 0 at the end of the stream, or -1 when nothing came by `until` or a signal ended the wait.
  // Throws NetError (and closes) when the connection breaks.
  long read(char* out, std::size_t size, Clock::time_point until);
  void close() noexcept;

  bool is_open() const noexcept { return fd_ >= 0; }
  // The socket, or -1: for a forked child, which closes its copy without touching the state.
  int fd() const noexcept { return fd_; }
  // "host:port", for messages.
  const std::string& peer() const noexcept { return peer_; }

 private:
  void connect_tcp(const Url& url, Clock::time_point deadline);
  void handshake(const Url& url, const TlsConfig& tls, Clock::time_point deadline);
  // Polls for `events` until `until`: false on timeout or a signal. Throws NetError on a poll
  // failure.
  bool wait(short events, Clock::time_point until);
  // wait(), throwing "timed out <doing> <peer>" on timeout (after closing).
  void wait_or_throw(short events, Clock::time_point deadline, std::string_view doing);
  [[noreturn]] void fail(const std::string& what);

  int fd_ = -1;
  ssl_st* ssl_ = nullptr;
  std::string peer_;
};

}  // namespace stagelog::detail
