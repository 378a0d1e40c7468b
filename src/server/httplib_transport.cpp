// HttpTransport over cpp-httplib: a pool of ServerOptions::threads threads, each serving one
// connection at a time.

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <exception>
#include <string>
#include <utility>

#include "base/errno_text.hpp"
#include "server/transport.hpp"

namespace stagelog::detail {

namespace {

// Connections are closed after this many requests: a client then reconnects, which on a
// keep-alive connection costs little, and no connection holds a thread for ever.
constexpr std::size_t kKeepAliveMaxCount = 1000;

ApiRequest request_of(const httplib::Request& req) {
  ApiRequest request;
  request.method = req.method;
  request.target = req.target;
  request.params = Params(req.params.begin(), req.params.end());
  request.headers.assign(req.headers.begin(), req.headers.end());
  return request;
}

void write(ApiResponse response, httplib::Response& res) {
  res.status = response.status;
  for (auto& [name, value] : response.headers) res.set_header(name, value);
  if (response.close) res.set_header("Connection", "close");
  if (response.producer) {
    res.set_chunked_content_provider(
        response.content_type,
        [producer = std::move(response.producer)](std::size_t, httplib::DataSink& sink) {
          std::string piece;
          StreamStep step = producer(piece);
          if (!piece.empty() && !sink.write(piece.data(), piece.size())) return false;
          if (step == StreamStep::Done) sink.done();
          return step != StreamStep::Abort;
        });
  } else if (!response.content_type.empty()) {
    res.set_content(std::move(response.body), response.content_type);
  }
}

}  // namespace

struct HttpTransport::Impl {
  Impl(Api& a, const server::ServerOptions& o) : api(a), options(o) {}

  Api& api;
  const server::ServerOptions& options;
  httplib::Server http;

  void setup();
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res);
  void with_body(const httplib::Request& req, httplib::Response& res,
                 const httplib::ContentReader& reader);
  Result<std::string, ApiError> read_body(const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& reader) const;
};

HttpTransport::HttpTransport(Api& api, const server::ServerOptions& options)
    : impl_(std::make_unique<Impl>(api, options)) {
  impl_->setup();
}

HttpTransport::~HttpTransport() = default;

void HttpTransport::Impl::setup() {
  std::size_t threads = options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second server
  // bind a port that is in use instead of failing.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_tcp_nodelay(true);
  http.set_keep_alive_max_count(kKeepAliveMaxCount);
  http.set_keep_alive_timeout(std::max<std::int64_t>(1, options.keep_alive_timeout.count()));
  http.set_read_timeout(options.read_timeout);
  http.set_write_timeout(options.write_timeout);
  // Checked against Content-Length before reading; read_body() checks what it decompresses.
  http.set_payload_max_length(options.max_body_bytes);

  http.set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) { return pre_route(req, res); });
  // pre_route() answered everything else; httplib needs a handler to give the body to. The
  // pattern is matched against the decoded path, which httplib caps at 8 KiB (414 beyond).
  auto body_handler = [this](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) { with_body(req, res, reader); };
  http.Post("[\\s\\S]*", body_handler);
  http.Put("[\\s\\S]*", body_handler);
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        res.set_content(status_body(res.status), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        api.report("request failed: " + what);
        write(error_response(ApiError{ApiErrorKind::Internal, "internal error: " + what, nullptr}),
              res);
      });
}

httplib::Server::HandlerResponse HttpTransport::Impl::pre_route(const httplib::Request& req,
                                                                httplib::Response& res) {
  ApiRequest request = request_of(req);
  Api::Admission admission = api.admit(request);
  if (!admission.routed) {
    write(std::move(admission.refusal), res);
    return httplib::Server::HandlerResponse::Handled;
  }
  if (admission.takes_body) return httplib::Server::HandlerResponse::Unhandled;  // with_body().
  ApiResponse response = api.answer(request, *admission.routed);
  response.close = response.close || has_body(request);  // A GET with a body: unread.
  write(std::move(response), res);
  return httplib::Server::HandlerResponse::Handled;
}

void HttpTransport::Impl::with_body(const httplib::Request& req, httplib::Response& res,
                                    const httplib::ContentReader& reader) {
  ApiRequest request = request_of(req);
  auto routed = route(Api::routes(), request.method, request.target);  // pre_route() took it.
  if (!routed) {
    ApiResponse response =
        error_response(ApiError{ApiErrorKind::Internal, "no handler for this route", nullptr});
    response.close = true;
    return write(std::move(response), res);
  }
  auto body = read_body(req, res, reader);
  if (!body) {
    ApiResponse response = error_response(body.error());
    response.close = true;  // The body was not read to its end.
    return write(std::move(response), res);
  }
  request.body = std::move(*body);
  write(api.answer(request, *routed), res);
}

Result<std::string, ApiError> HttpTransport::Impl::read_body(
    const httplib::Request& req, httplib::Response& res,
    const httplib::ContentReader& reader) const {
  const std::size_t max = options.max_body_bytes;
  std::string body;
  if (auto length = req.get_header_value("Content-Length"); !length.empty()) {
    std::size_t n = 0;
    std::from_chars(length.data(), length.data() + length.size(), n);
    body.reserve(std::min(n, max));
  }
  bool over = false;
  bool ok = reader([&](const char* data, std::size_t size) {
    if (size > max - body.size()) {
      over = true;
      return false;
    }
    body.append(data, size);
    return true;
  });
  if (ok) return body;
  if (over || res.status == 413) {
    return ApiError{
        ApiErrorKind::PayloadTooLarge,
        "request body over the limit of " + std::to_string(max) + " bytes (after decompression)",
        nullptr};
  }
  if (res.status == 415) {
    return ApiError{ApiErrorKind::UnsupportedMediaType, "unsupported Content-Encoding", nullptr};
  }
  bool encoded = !req.get_header_value("Content-Encoding").empty();
  return ApiError{ApiErrorKind::BadRequest,
                  encoded ? "cannot read the request body: not valid compressed data, or the "
                            "connection broke"
                          : "cannot read the request body: the connection broke or timed out",
                  nullptr};
}

int HttpTransport::bind() {
  const server::ServerOptions& o = impl_->options;
  std::string address = (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host) +
                        ":" + std::to_string(o.port);
  errno = 0;
  int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host)
                         : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0) {
    int err = errno;
    std::string why = err != 0 ? errno_text(err) : "cannot resolve or bind the address";
    throw Error("cannot listen on " + address + ": " + why);
  }
  return port;
}

void HttpTransport::run() { impl_->http.listen_after_bind(); }

bool HttpTransport::running() const { return impl_->http.is_running(); }

void HttpTransport::stop() { impl_->http.stop(); }

}  // namespace stagelog::detail
