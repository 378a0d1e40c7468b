// HttpTransport over Boost.Beast and Asio. One thread runs an event loop that reads and writes
// every connection, a coroutine each; what takes time (the store, decoding, JSON, gzip) runs on
// a pool of ServerOptions::threads threads, never on the loop. A connection costs memory (its
// coroutine frame and buffers), not a thread, so idle keep-alive connections, slow clients and
// open event streams do not hold requests up.
//
// Limits, each answered before what it guards is read: the request line and headers within
// read_timeout (keep_alive_timeout between requests) and within max_header_bytes/_fields (431);
// Content-Length within max_body_bytes (413); all bodies in flight within max_inflight_bytes
// and all connections within max_connections (503 + Retry-After).

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "server/body_coding.hpp"
#include "server/transport.hpp"

namespace stagelog::detail {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// After a refusal whose body was not read, the body is read and dropped for up to this long
// and this much before the connection closes: closing on unread bytes resets the connection,
// and the client may lose the answer before it reads it.
constexpr std::chrono::milliseconds kLinger{1000};
constexpr std::size_t kLingerBytes = std::size_t{1} << 20;
// Room a body is read into, per read. Beast reads at most what its buffer has room for, and
// after the headers that is a few hundred bytes: a 285 KB body took ~620 reads, each with its
// wakeup and timer, a tenth of the server's CPU at full ingest. Held only while a body is read.
constexpr std::size_t kBodyReadBytes = std::size_t{64} << 10;
// Connections over max_connections being answered 503 at once; beyond, they are just closed.
constexpr std::size_t kMaxRefusing = 256;
// How long the accept loop pauses when the process is out of file descriptors.
constexpr std::chrono::milliseconds kAcceptBackoff{50};

ApiRequest request_of(const http::request<http::empty_body>& head) {
  ApiRequest request;
  request.method = std::string(head.method_string());
  request.target = std::string(head.target());
  request.params = parse_query(request.target);
  for (const auto& field : head) {
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  return request;
}

// "127.0.0.1:53122", "[::1]:53122"; "" once the peer is gone.
std::string remote_of(beast::tcp_stream& stream) {
  beast::error_code ec;
  tcp::endpoint peer = stream.socket().remote_endpoint(ec);
  if (ec) return {};
  std::string host = peer.address().to_string(ec);
  if (peer.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(peer.port());
}

ApiResponse refusal(ApiErrorKind kind, std::string message) {
  ApiResponse response = error_response(ApiError{kind, std::move(message), nullptr});
  response.close = true;
  return response;
}

ApiResponse busy(std::string message) {
  ApiResponse response = refusal(ApiErrorKind::Unavailable, std::move(message));
  response.set_header("Retry-After", "1");
  return response;
}

// Whether the bytes came but do not make an HTTP request (not: the client left, a timeout).
bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

// A read error of the request line or headers as the answer it deserves; none when the client
// left or timed out (nobody to answer).
std::optional<ApiResponse> answer_to(const beast::error_code& ec, std::size_t max_header) {
  if (ec == http::error::header_limit) {
    return refusal(ApiErrorKind::HeaderTooLarge, "request line and headers over the limit of " +
                                                     std::to_string(max_header) + " bytes");
  }
  if (is_parse_error(ec)) {
    return refusal(ApiErrorKind::BadRequest, "bad request: " + ec.message());
  }
  return std::nullopt;
}

// Raises the soft limit on open files to the hard one: each connection is a descriptor.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// A reservation of request-body bytes against max_inflight_bytes, released when it goes.
class Budget {
 public:
  Budget(std::atomic<std::size_t>& used, std::size_t max, std::size_t bytes) : used_(used) {
    std::size_t now = used_.load();
    do {
      if (bytes > max - std::min(max, now)) return;
    } while (!used_.compare_exchange_weak(now, now + bytes));
    bytes_ = bytes;
  }
  ~Budget() { used_ -= bytes_; }
  Budget(const Budget&) = delete;
  Budget& operator=(const Budget&) = delete;
  bool granted() const { return bytes_ != 0; }

 private:
  std::atomic<std::size_t>& used_;
  std::size_t bytes_ = 0;
};

}  // namespace

struct HttpTransport::Impl {
  Impl(Api& a, const server::ServerOptions& o) : api(a), options(o), pool(o.threads) {}

  Api& api;
  const server::ServerOptions& options;
  asio::io_context loop{1};
  asio::thread_pool pool;
  tcp::acceptor acceptor{loop};
  std::optional<asio::ssl::context> tls;
  std::atomic<bool> running{false};
  std::atomic<bool> stopped{false};
  std::atomic<std::size_t> inflight_bytes{0};

  // The loop's own (no lock): open connections, those being refused, and how to close the
  // ones waiting for their next request (stop() closes them; the others finish theirs).
  std::size_t connections = 0;
  std::size_t refusing = 0;
  std::uint64_t next_waiter = 0;
  std::unordered_map<std::uint64_t, std::function<void()>> waiting;
  std::chrono::steady_clock::time_point last_accept_report{};

  awaitable<void> accept_loop();
  awaitable<void> connection(tcp::socket socket);
  awaitable<void> refuse(tcp::socket socket);
  template <class Stream>
  awaitable<void> serve(Stream& stream);
  // How reading a request's body ended: read into the request; refused (the answer says why);
  // or the client left or stopped sending, and nobody is there to answer.
  enum class BodyRead { Read, Refused, Gone };
  template <class Stream>
  awaitable<BodyRead> read_body(Stream& stream, beast::flat_buffer& buffer,
                                http::request_parser<http::empty_body>& head, ApiRequest& request,
                                ApiResponse& refused);
  template <class Stream>
  awaitable<bool> write(Stream& stream, ApiResponse& response, bool head_only, bool keep_alive,
                        bool gzip_ok);
  template <class Stream>
  awaitable<void> linger(Stream& stream);

  // Runs f() on the pool; the coroutine resumes on the loop with its result.
  template <class F>
  awaitable<std::invoke_result_t<F&>> on_pool(F f) {
    co_return co_await asio::co_spawn(
        pool.get_executor(), [&f]() -> awaitable<std::invoke_result_t<F&>> { co_return f(); },
        asio::use_awaitable);
  }
  // The route's answer, on the pool: never throws (500), gzipped when it pays.
  ApiResponse answer(ApiRequest& request, const Routed& routed, bool gzip_ok);
};

ApiResponse HttpTransport::Impl::answer(ApiRequest& request, const Routed& routed, bool gzip_ok) {
  ApiResponse response;
  try {
    response = api.answer(request, routed);
  } catch (const std::exception& e) {
    api.report(std::string("request failed: ") + e.what());
    response = error_response(
        ApiError{ApiErrorKind::Internal, std::string("internal error: ") + e.what(), nullptr});
  }
  if (gzip_ok && !response.producer && response.body.size() >= kMinCompressBytes &&
      compressible(response.content_type)) {
    response.body = gzip(response.body);
    response.set_header("Content-Encoding", "gzip");
    response.set_header("Vary", "Accept-Encoding");
  }
  return response;
}

awaitable<void> HttpTransport::Impl::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors (or memory): the backlog keeps the connection; try again shortly.
      auto now = std::chrono::steady_clock::now();
      if (now - last_accept_report > std::chrono::seconds(10)) {
        last_accept_report = now;
        api.report("cannot accept a connection: " + ec.message() + " (" +
                   std::to_string(connections) + " open)");
      }
      asio::steady_timer pause(loop, kAcceptBackoff);
      co_await pause.async_wait(kTuple);
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    if (connections >= options.max_connections) {
      if (refusing < kMaxRefusing) {
        ++refusing;
        asio::co_spawn(loop, refuse(std::move(socket)), [this](std::exception_ptr) { --refusing; });
      }
      continue;  // Else closed as it goes out of scope.
    }
    ++connections;
    asio::co_spawn(loop, connection(std::move(socket)), [this](std::exception_ptr e) {
      --connections;
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& error) {
        api.report(std::string("connection failed: ") + error.what());
      }
    });
  }
}

awaitable<void> HttpTransport::Impl::refuse(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  ApiResponse response =
      busy("too many connections (at most " + std::to_string(options.max_connections) +
           " on this server); try again later");
  if (tls) co_return;  // No handshake for a refused connection: just closed.
  if (co_await write(stream, response, false, false, false)) co_await linger(stream);
}

awaitable<void> HttpTransport::Impl::connection(tcp::socket socket) {
  beast::tcp_stream plain(std::move(socket));
  if (!tls) {
    co_await serve(plain);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(plain), *tls);
  beast::get_lowest_layer(stream).expires_after(options.read_timeout);
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
  if (ec) co_return;  // Not TLS, a bad client certificate, or too slow: nobody to answer.
  co_await serve(stream);
  beast::get_lowest_layer(stream).expires_after(kLinger);
  co_await stream.async_shutdown(kTuple);
}

template <class Stream>
awaitable<void> HttpTransport::Impl::serve(Stream& stream) {
  auto& lowest = beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  bool first = true;
  while (!stopped) {
    http::request_parser<http::empty_body> head;
    head.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    head.body_limit(boost::none);  // Content-Length is checked after admit(): 401 before 413.
    const std::uint64_t waiter = next_waiter++;
    waiting.emplace(waiter, [&lowest] { lowest.cancel(); });
    lowest.expires_after(first ? options.read_timeout
                               : std::chrono::milliseconds(options.keep_alive_timeout));
    auto [ec, n] = co_await http::async_read_header(stream, buffer, head, kTuple);
    waiting.erase(waiter);
    first = false;
    if (ec) {
      if (auto response = answer_to(ec, options.max_header_bytes)) {
        if (co_await write(stream, *response, false, false, false)) co_await linger(stream);
      }
      co_return;
    }
    const auto& message = head.get();
    if (static_cast<std::size_t>(std::distance(message.begin(), message.end())) >
        options.max_header_fields) {
      ApiResponse response =
          refusal(ApiErrorKind::HeaderTooLarge,
                  "more than " + std::to_string(options.max_header_fields) + " header fields");
      if (co_await write(stream, response, false, false, false)) co_await linger(stream);
      co_return;
    }
    ApiRequest request = request_of(message);
    const auto started = std::chrono::steady_clock::now();
    const bool head_only = message.method() == http::verb::head;
    const bool gzip_ok = accepts_gzip(request.header("Accept-Encoding"));
    const bool keep_alive = message.keep_alive();
    const bool unread_body = !head.is_done();
    Api::Admission admission = api.admit(request);
    ApiResponse response;
    bool body_read = !unread_body;
    if (!admission.routed) {
      response = std::move(admission.refusal);
    } else if (admission.takes_body) {
      auto length = head.content_length();
      if (length && *length > options.max_body_bytes) {
        response =
            refusal(ApiErrorKind::PayloadTooLarge,
                    "request body over the limit of " + std::to_string(options.max_body_bytes) +
                        " bytes (Content-Length " + std::to_string(*length) + ")");
      } else {
        Budget budget(inflight_bytes, options.max_inflight_bytes,
                      std::max<std::size_t>(1, length.value_or(options.max_body_bytes)));
        if (!budget.granted()) {
          response = busy("the server is reading too many request bodies at once; try again");
        } else {
          const BodyRead read = co_await read_body(stream, buffer, head, request, response);
          if (read == BodyRead::Gone) co_return;
          if (read == BodyRead::Read) {
            body_read = true;
            response = co_await on_pool([&] {
              auto decoded = decode_body(request.header("Content-Encoding"),
                                         std::move(request.body), options.max_body_bytes);
              if (!decoded) return error_response(decoded.error());
              request.body = std::move(*decoded);
              return answer(request, *admission.routed, gzip_ok);
            });
          }
        }
      }
    } else {
      response = co_await on_pool([&] { return answer(request, *admission.routed, gzip_ok); });
    }
    api.request_done(request, admission.routed ? &*admission.routed : nullptr, response, started,
                     remote_of(lowest));
    const bool again = keep_alive && body_read && !response.close && !stopped;
    if (!co_await write(stream, response, head_only, again, gzip_ok)) co_return;
    if (!again) {
      if (!body_read) co_await linger(stream);
      co_return;
    }
  }
}

template <class Stream>
awaitable<HttpTransport::Impl::BodyRead> HttpTransport::Impl::read_body(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& head,
    ApiRequest& request, ApiResponse& refused) {
  auto& lowest = beast::get_lowest_layer(stream);
  if (beast::iequals(head.get()[http::field::expect], "100-continue")) {
    http::response<http::empty_body> go_on{http::status::continue_, 11};
    lowest.expires_after(options.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, go_on, kTuple);
    if (ec) co_return BodyRead::Gone;
  }
  http::request_parser<http::string_body> parser(std::move(head));
  parser.body_limit(options.max_body_bytes);
  if (auto length = parser.content_length()) parser.get().body().reserve(*length);
  if (!parser.is_done()) buffer.reserve(kBodyReadBytes);
  // The room goes back when the body is in: an idle keep-alive connection costs little.
  struct Shrink {
    beast::flat_buffer& buffer;
    ~Shrink() { buffer.shrink_to_fit(); }
  } shrink{buffer};
  while (!parser.is_done()) {
    lowest.expires_after(options.read_timeout);
    auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, kTuple);
    if (!ec) continue;
    if (ec == http::error::body_limit) {
      refused = refusal(
          ApiErrorKind::PayloadTooLarge,
          "request body over the limit of " + std::to_string(options.max_body_bytes) + " bytes");
      co_return BodyRead::Refused;
    }
    if (is_parse_error(ec)) {
      refused = refusal(ApiErrorKind::BadRequest, "cannot read the request body: " + ec.message());
      co_return BodyRead::Refused;
    }
    co_return BodyRead::Gone;
  }
  request.body = std::move(parser.get().body());
  co_return BodyRead::Read;
}

template <class Stream>
awaitable<bool> HttpTransport::Impl::write(Stream& stream, ApiResponse& response, bool head_only,
                                           bool keep_alive, bool gzip_ok) {
  auto& lowest = beast::get_lowest_layer(stream);
  auto fill = [&](auto& message) {
    message.result(static_cast<unsigned>(response.status));
    message.version(11);
    for (auto& [name, value] : response.headers) message.insert(name, value);
    if (!response.content_type.empty())
      message.set(http::field::content_type, response.content_type);
    message.keep_alive(keep_alive);
  };
  if (!response.producer) {
    http::response<http::string_body> message;
    fill(message);
    message.body() = std::move(response.body);
    if (!response.content_type.empty() || response.status != 304) message.prepare_payload();
    http::response_serializer<http::string_body> serializer(message);
    if (head_only) {
      lowest.expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write_header(stream, serializer, kTuple);
      co_return !ec;
    }
    while (!serializer.is_done()) {
      lowest.expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write_some(stream, serializer, kTuple);
      if (ec) co_return false;
    }
    co_return true;
  }

  // Made as it is sent: chunked, each piece made on the pool, gzipped on the way when asked.
  const bool gzipped = gzip_ok && compressible(response.content_type);
  http::response<http::empty_body> message;
  fill(message);
  if (gzipped) {
    message.set(http::field::content_encoding, "gzip");
    message.set(http::field::vary, "Accept-Encoding");
  }
  message.chunked(true);
  http::response_serializer<http::empty_body> serializer(message);
  lowest.expires_after(options.write_timeout);
  if (auto [ec, n] = co_await http::async_write_header(stream, serializer, kTuple); ec) {
    co_return false;
  }
  if (head_only) co_return true;

  // An idle producer waits on this timer; the response's subscription cancels it.
  struct Wake {
    explicit Wake(asio::io_context& loop) : timer(loop) {}
    asio::steady_timer timer;
    bool woken = false;
  };
  auto wake = std::make_shared<Wake>(loop);
  std::shared_ptr<void> subscription;
  if (response.subscribe) {
    subscription = response.subscribe([weak = std::weak_ptr<Wake>(wake), &loop = loop] {
      asio::post(loop, [weak] {
        if (auto w = weak.lock()) {
          w->woken = true;
          w->timer.cancel();
        }
      });
    });
  }
  std::optional<GzipEncoder> encoder;
  if (gzipped) encoder.emplace();
  std::string piece;
  std::string packed;
  for (;;) {
    piece.clear();
    StreamStep step = co_await on_pool([&] {
      try {
        return response.producer(piece);
      } catch (const std::exception& e) {
        api.report(std::string("response failed: ") + e.what());
        return StreamStep::Abort;
      }
    });
    if (step == StreamStep::Abort) co_return false;
    if (step == StreamStep::Idle && piece.empty()) {
      if (!wake->woken) {
        wake->timer.expires_after(response.idle_wait);
        co_await wake->timer.async_wait(kTuple);
      }
      wake->woken = false;
      continue;
    }
    const std::string* out = &piece;
    if (encoder) {
      packed.clear();
      encoder->add(piece, packed, step == StreamStep::Done);
      out = &packed;
    }
    if (!out->empty()) {
      lowest.expires_after(options.write_timeout);
      auto [ec, n] =
          co_await asio::async_write(stream, http::make_chunk(asio::buffer(*out)), kTuple);
      if (ec) co_return false;
    }
    if (step == StreamStep::Done) {
      lowest.expires_after(options.write_timeout);
      auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
      co_return !ec;
    }
  }
}

template <class Stream>
awaitable<void> HttpTransport::Impl::linger(Stream& stream) {
  auto& lowest = beast::get_lowest_layer(stream);
  beast::error_code ignored;
  lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
  lowest.expires_after(kLinger);
  std::array<char, 16384> sink{};
  for (std::size_t total = 0; total < kLingerBytes;) {
    auto [ec, n] = co_await lowest.async_read_some(asio::buffer(sink), kTuple);
    if (ec) break;
    total += n;
  }
}

HttpTransport::HttpTransport(Api& api, const server::ServerOptions& options)
    : impl_(std::make_unique<Impl>(api, options)) {}

HttpTransport::~HttpTransport() { impl_->pool.join(); }

int HttpTransport::bind() {
  const server::ServerOptions& o = impl_->options;
  const std::string address =
      (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host) + ":" +
      std::to_string(o.port);
  raise_fd_limit();
  if (!o.tls_cert_file.empty()) {
    auto& tls = impl_->tls.emplace(asio::ssl::context::tls_server);
    tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1);
    beast::error_code ec;
    tls.use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) throw Error("cannot use the TLS certificate " + o.tls_cert_file + ": " + ec.message());
    tls.use_private_key_file(o.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) throw Error("cannot use the TLS key " + o.tls_key_file + ": " + ec.message());
  }
  beast::error_code ec;
  tcp::resolver resolver(impl_->loop);
  auto found = resolver.resolve(o.host, std::to_string(o.port),
                                tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || found.empty()) {
    throw Error("cannot listen on " + address + ": " + (ec ? ec.message() : "no such address"));
  }
  const tcp::endpoint endpoint = found.begin()->endpoint();
  tcp::acceptor& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  // SO_REUSEADDR only (not SO_REUSEPORT): a second server on a port in use must fail.
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    acceptor.close(ignored);
    throw Error("cannot listen on " + address + ": " + ec.message());
  }
  return acceptor.local_endpoint().port();
}

void HttpTransport::run() {
  Impl& impl = *impl_;
  if (impl.stopped) return;
  asio::co_spawn(impl.loop, impl.accept_loop(), asio::detached);
  impl.running = true;
  impl.loop.run();
  impl.running = false;
}

bool HttpTransport::running() const { return impl_->running; }

void HttpTransport::stop() {
  impl_->stopped = true;
  asio::post(impl_->loop, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    for (auto& [id, close] : impl->waiting) close();
  });
}

}  // namespace stagelog::detail
