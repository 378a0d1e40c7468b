#pragma once

// A minimal HTTP/1.1 client over POSIX sockets, plain or TLS (byte_stream.hpp), for the network
// sink, the streaming GET that `stagelog tail --server` reads the server's event stream with,
// and the server's alert webhooks.
//
// Why not cpp-httplib: stagelog::stagelog is installed and consumed with find_package(stagelog),
// and its link interface must stay free of third-party libraries; linking httplib here would
// leak it to every consumer. The sink needs one thing — POST a body to one host and read the
// answer, with timeouts and keep-alive — and the tail one more, a GET whose body is read as it
// arrives; this file does only that. OpenSSL, which TLS needs, is linked privately like the
// crypto library already was.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/byte_stream.hpp"
#include "net/url.hpp"

namespace stagelog::detail {

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // Names lower-cased.
  std::string body;

  // The first header with this (lower-case) name, or "".
  std::string_view header(std::string_view name) const noexcept;
};

// The request did not produce a response: cannot resolve or connect, a TLS handshake or
// certificate refused, a timeout, the connection closed early, or an answer that is not HTTP.
// Whether the server acted on the request is unknown.
using HttpError = NetError;

// One keep-alive connection to one server, used by one thread at a time. post() connects when
// needed, reuses the connection while the server keeps it open, and reconnects once when a
// reused connection turns out to be closed before any byte of the answer came back.
class HttpClient {
 public:
  using Header = std::pair<std::string_view, std::string_view>;
  using Clock = std::chrono::steady_clock;

  // For an https URL, `tls` checks the server (nullptr: a TlsConfig with the system's CAs,
  // which may throw Error); for http it is not used.
  explicit HttpClient(Url url, std::shared_ptr<const TlsConfig> tls = nullptr);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends "POST <base_path><path>" with Host, Content-Type, Content-Length and `headers`, and
  // reads the answer: Content-Length, chunked, or up to the end of the connection. Every
  // connect, read and write waits at most until `deadline`. Throws HttpError.
  HttpResponse post(std::string_view path, std::string_view content_type, std::string_view body,
                    std::span<const Header> headers, Clock::time_point deadline);

  // Sends "GET <base_path><path>" with Host and `headers` on a new connection and reads the
  // answer's status and headers, waiting at most until `deadline`. A 2xx answer's body is left
  // for read_stream(); any other answer is read whole into the response, as post() reads it.
  // Throws HttpError.
  HttpResponse get_stream(std::string_view path, std::span<const Header> headers,
                          Clock::time_point deadline);
  // Appends what has arrived of a get_stream() body to `out` (decoded from chunks), waiting
  // until `until` at most when nothing is there yet, or less when a signal comes. Returns false
  // once the body has ended (what it appended still counts), and then closes the connection.
  // Throws HttpError when the connection breaks before the body's end.
  bool read_stream(std::string& out, Clock::time_point until);

  void close() noexcept;
  // The socket, or -1: for a forked child, which closes its copy without touching the state.
  int fd() const noexcept { return stream_.fd(); }
  const Url& url() const noexcept { return url_; }

  // Largest answer read, headers and body; a bigger one is an HttpError.
  static constexpr std::size_t kMaxResponseBytes = 16u << 20;

 private:
  // "<method> <base_path><path> HTTP/1.1", Host, `own_lines` (each ending in CRLF), the
  // caller's headers and the blank line.
  std::string request_head(std::string_view method, std::string_view path,
                           std::string_view own_lines, std::span<const Header> headers) const;
  // Reads more bytes into in_; false at the end of the connection.
  bool read_some(Clock::time_point deadline);
  HttpResponse read_response(Clock::time_point deadline, bool* keep_alive);
  // The status line and headers (past any 1xx); `pos` ends after them.
  HttpResponse read_head(std::size_t& pos, Clock::time_point deadline, bool* keep_alive);
  void read_body(std::size_t& pos, HttpResponse& response, Clock::time_point deadline,
                 bool* keep_alive);
  // Moves what in_ holds of a streamed body to `out`; true once the body is complete.
  bool decode_stream(std::string& out);
  std::string read_line(std::size_t& pos, Clock::time_point deadline);
  void read_exactly(std::size_t& pos, std::size_t n, std::string& out, Clock::time_point deadline);

  Url url_;
  std::shared_ptr<const TlsConfig> tls_;
  ByteStream stream_;
  std::string in_;            // Bytes read and not yet consumed by the answer being parsed.
  std::size_t received_ = 0;  // Bytes of the current answer received so far.

  // The body get_stream() left to read_stream().
  enum class Body : std::uint8_t { None, Chunked, Length, ToClose };
  enum class Chunk : std::uint8_t { Size, Data, DataEnd, Trailers };
  Body body_ = Body::None;
  Chunk chunk_ = Chunk::Size;
  std::uint64_t left_ = 0;  // Of the chunk (Chunked) or of the body (Length).
};

}  // namespace stagelog::detail
