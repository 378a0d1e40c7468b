// `stagelog serve`'s HTTP API: routing, auth, limits, and the translation of every outcome into
// a status and a JSON body. Writes go through the IngestWriter (ingest.hpp).

#include "stagelog/server/server.hpp"

#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "base/duration.hpp"
#include "base/errno_text.hpp"
#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "base/time.hpp"
#include "base/time_text.hpp"
#include "format/format.hpp"
#include "server/alerts.hpp"
#include "server/http_errors.hpp"
#include "server/ingest.hpp"
#include "server/live.hpp"
#include "server/stream.hpp"
#include "server/web.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/server/execution_log.hpp"

namespace stagelog::server {

namespace {

using detail::ApiError;
using detail::ApiErrorKind;
using Json = nlohmann::ordered_json;

// Connections are closed after this many requests: a client then reconnects, which on a
// keep-alive connection costs little, and no connection holds a thread for ever.
constexpr std::size_t kKeepAliveMaxCount = 1000;

// How often the watchdog's rules run: a stuck stage is reported within this of its threshold.
constexpr std::chrono::milliseconds kTickInterval{250};

// seed 004's Pages function, word for word.
constexpr const char* kNotFound = "No execution log found for this tracking ID";
constexpr const char* kRetrieveFailed = "Failed to retrieve execution log";

// ---- Routes ----------------------------------------------------------------------------------

enum class RouteId {
  Healthz,
  Events,
  Executions,     // The listing.
  ExecutionsCsv,  // The listing's steps as CSV.
  Execution,
  Attempts,
  ExecutionEvents,  // A run's raw events.
  ExecutionLog,
  Workers,
  Metrics,
  StageStats,    // Duration statistics per stage.
  FailureStats,  // Failed steps grouped by error pattern.
  Alerts,        // The alerts fired lately.
  Stream,        // Server-Sent Events.
  Web,           // A file of the web UI; Route::tracking_id holds its path.
};

struct Route {
  RouteId id;
  std::string tracking_id;  // Percent-decoded: any bytes.
};

// One path segment, percent-decoded ('+' stays '+': it is a space only in query strings).
std::optional<std::string> percent_decode(std::string_view segment) {
  std::string out;
  out.reserve(segment.size());
  for (std::size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] != '%') {
      out += segment[i];
      continue;
    }
    if (i + 2 >= segment.size()) return std::nullopt;
    int hi = detail::hex_value(segment[i + 1]);
    int lo = detail::hex_value(segment[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// The route of a request target ("/api/v1/executions/a%2Fb?attempt=2"). The path is split at
// '/' before each segment is decoded, so an encoded '/' (or "..") is part of an id and never a
// separator: ids are keys in the store, never paths.
std::variant<Route, ApiError> parse_route(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  if (!path.starts_with('/')) {
    return ApiError{ApiErrorKind::NotFound, "no such route: " + std::string(path), nullptr};
  }
  std::vector<std::string> segments;
  std::string_view rest = path.substr(1);
  for (;;) {
    std::size_t slash = rest.find('/');
    auto decoded = percent_decode(rest.substr(0, slash));
    if (!decoded) {
      return ApiError{ApiErrorKind::BadRequest,
                      "bad percent-encoding in the path (a '%' must be followed by two hex "
                      "digits)",
                      nullptr};
    }
    segments.push_back(std::move(*decoded));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  auto is = [&](std::initializer_list<std::string_view> prefix) {
    if (segments.size() < prefix.size()) return false;
    return std::equal(prefix.begin(), prefix.end(), segments.begin());
  };
  const std::size_t n = segments.size();
  // Everything outside /api/ but the two fixed routes is the web UI's: "/" is its index.
  if (segments[0] != "api" && !(n == 1 && (segments[0] == "healthz" || segments[0] == "metrics"))) {
    std::string file;  // find_web_file() refuses any part that is empty or starts with '.'.
    for (const std::string& segment : segments) {
      if (!file.empty()) file += '/';
      file += segment;
    }
    return Route{RouteId::Web, std::move(file)};
  }
  if (n == 1 && segments[0] == "healthz") return Route{RouteId::Healthz, {}};
  if (n == 1 && segments[0] == "metrics") return Route{RouteId::Metrics, {}};
  if (n == 3 && is({"api", "v1", "workers"})) return Route{RouteId::Workers, {}};
  if (n == 4 && is({"api", "v1", "stats", "stages"})) return Route{RouteId::StageStats, {}};
  if (n == 4 && is({"api", "v1", "stats", "failures"})) return Route{RouteId::FailureStats, {}};
  if (n == 3 && is({"api", "v1", "alerts"})) return Route{RouteId::Alerts, {}};
  if (n == 3 && is({"api", "v1", "stream"})) return Route{RouteId::Stream, {}};
  if (n == 3 && is({"api", "v1", "events"})) return Route{RouteId::Events, {}};
  if (n == 3 && is({"api", "v1", "executions"})) return Route{RouteId::Executions, {}};
  if (n == 3 && is({"api", "v1", "executions.csv"})) return Route{RouteId::ExecutionsCsv, {}};
  if (n == 4 && is({"api", "v1", "executions"}) && !segments[3].empty()) {
    return Route{RouteId::Execution, std::move(segments[3])};
  }
  if (n == 5 && is({"api", "v1", "executions"}) && !segments[3].empty() &&
      segments[4] == "attempts") {
    return Route{RouteId::Attempts, std::move(segments[3])};
  }
  if (n == 5 && is({"api", "v1", "executions"}) && !segments[3].empty() &&
      segments[4] == "events") {
    return Route{RouteId::ExecutionEvents, std::move(segments[3])};
  }
  if (n == 3 && is({"api", "execution-logs"}) && !segments[2].empty()) {
    return Route{RouteId::ExecutionLog, std::move(segments[2])};
  }
  return ApiError{ApiErrorKind::NotFound, "no such route: " + std::string(path), nullptr};
}

// The methods a route answers (HEAD wherever GET is).
std::vector<std::string_view> methods_of(RouteId id) {
  switch (id) {
    case RouteId::Events:
      return {"POST"};
    case RouteId::Execution:
      return {"GET", "HEAD", "PUT"};
    case RouteId::Stream:
      return {"GET"};
    case RouteId::Healthz:
    case RouteId::Web:
    case RouteId::Executions:
    case RouteId::ExecutionsCsv:
    case RouteId::Attempts:
    case RouteId::ExecutionEvents:
    case RouteId::ExecutionLog:
    case RouteId::Workers:
    case RouteId::Metrics:
    case RouteId::StageStats:
    case RouteId::FailureStats:
    case RouteId::Alerts:
      break;
  }
  return {"GET", "HEAD"};
}

std::string join(const std::vector<std::string_view>& items) {
  std::string out;
  for (std::string_view item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

bool has_body(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding")) return true;
  std::string length = req.get_header_value("Content-Length");
  return !length.empty() && length != "0";
}

void reply_json(httplib::Response& res, int status, std::string body) {
  res.status = status;
  res.set_content(std::move(body), "application/json");
}

void reply(httplib::Response& res, const ApiError& error) {
  detail::HttpAnswer answer = detail::to_http(error);
  if (answer.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  reply_json(res, answer.status, std::move(answer.body));
}

}  // namespace

// ---- Server::Impl ----------------------------------------------------------------------------

struct Server::Impl {
  Impl(store::Store& s, TokenFile t, ServerOptions o)
      : store(s),
        tokens(std::move(t)),
        options(std::move(o)),
        writer(s, detail::IngestWriter::Options{options.max_open_runs, options.clock}),
        alerts(options.alerts.empty()
                   ? nullptr
                   : std::make_unique<detail::AlertEngine>(
                         options.alerts, s,
                         detail::AlertEngine::Hooks{options.clock, options.on_error,
                                                    [this](const std::string& alert) {
                                                      hub.publish({detail::alert_entry(alert)});
                                                    }})),
        hub(options.stream_history, options.stream_history_bytes),
        live(options.watchdog, &hub, [this](const Event& report) {
          if (alerts) alerts->watchdog_report(report);
        }) {}

  store::Store& store;
  const TokenFile tokens;
  const ServerOptions options;
  detail::IngestWriter writer;
  std::unique_ptr<detail::AlertEngine> alerts;  // None without rules. Outlives `live`.
  detail::StreamHub hub;  // Before live, which publishes to it (and alerts, which does too).
  detail::LiveState live;
  httplib::Server http;

  std::mutex mutex;                    // Guards what follows.
  std::condition_variable purge_wake;  // Also wakes the live thread to stop.
  bool bound = false;
  bool stopping = false;
  bool in_run = false;
  bool background_stopped = false;
  std::thread listener;  // start()'s.
  std::thread purger;
  std::thread ticker;  // Runs the watchdog's rules.
  std::atomic<int> port{0};

  void setup();
  void purge_loop();
  void tick_loop();
  void stop_background();

  std::int64_t now() const { return options.clock(); }
  void report(std::string_view message) const { options.on_error(message); }

  // Routing, auth and the GETs, before httplib reads any body.
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res);
  std::optional<ApiError> authorize(const httplib::Request& req, RouteId route) const;
  void get(const Route& route, const httplib::Request& req, httplib::Response& res);
  void get_execution_log(const std::string& id, httplib::Response& res);
  void get_execution(const std::string& id, const httplib::Request& req, httplib::Response& res);
  void get_attempts(const std::string& id, httplib::Response& res);
  void list_executions(const httplib::Request& req, httplib::Response& res);
  void export_csv(const httplib::Request& req, httplib::Response& res);
  void get_stage_stats(const httplib::Request& req, httplib::Response& res);
  void get_failure_stats(const httplib::Request& req, httplib::Response& res);
  void get_alerts(const httplib::Request& req, httplib::Response& res);
  void get_events(const std::string& id, const httplib::Request& req, httplib::Response& res);
  void stream(const httplib::Request& req, httplib::Response& res);
  void get_web_file(const std::string& path, const httplib::Request& req, httplib::Response& res);

  // The routes with a body.
  void with_body(const httplib::Request& req, httplib::Response& res,
                 const httplib::ContentReader& reader);
  std::variant<std::string, ApiError> read_body(const httplib::Request& req, httplib::Response& res,
                                                const httplib::ContentReader& reader) const;
  std::variant<std::int64_t, ApiError> expiry(const httplib::Request& req) const;
  // A write's expiry and body, or nullopt once the error has been answered.
  struct Write {
    std::int64_t expires_at_ns = 0;
    std::string body;
  };
  std::optional<Write> read_write(const httplib::Request& req, httplib::Response& res,
                                  const httplib::ContentReader& reader) const;
  void post_events(const httplib::Request& req, httplib::Response& res,
                   const httplib::ContentReader& reader);
  void put_execution(const std::string& id, const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& reader);
};

void Server::Impl::setup() {
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
        res.set_content(detail::status_body(res.status), "application/json");
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
        report("request failed: " + what);
        reply(res, ApiError{ApiErrorKind::Internal, "internal error: " + what, nullptr});
      });
}

std::optional<ApiError> Server::Impl::authorize(const httplib::Request& req, RouteId route) const {
  // The UI's files hold no data: the page asks for a token, then sends it to the API.
  if (!options.require_auth || route == RouteId::Healthz || route == RouteId::Web) {
    return std::nullopt;
  }
  Scope needed = req.method == "GET" || req.method == "HEAD" ? Scope::Read : Scope::Ingest;
  std::optional<std::string_view> header;
  auto it = req.headers.find("Authorization");
  if (it != req.headers.end()) header = it->second;
  switch (tokens.check(header, needed)) {
    case AuthResult::Allowed:
      return std::nullopt;
    case AuthResult::Missing:
      return ApiError{ApiErrorKind::Unauthorized,
                      "missing token: send \"Authorization: Bearer <token>\"", nullptr};
    case AuthResult::Unknown:
      return ApiError{ApiErrorKind::Unauthorized, "unknown token", nullptr};
    case AuthResult::Forbidden:
      return ApiError{ApiErrorKind::Forbidden,
                      "this token does not have the " + std::string(scope_name(needed)) + " scope",
                      nullptr};
  }
  return ApiError{ApiErrorKind::Unauthorized, "unknown token", nullptr};
}

httplib::Server::HandlerResponse Server::Impl::pre_route(const httplib::Request& req,
                                                         httplib::Response& res) {
  using R = httplib::Server::HandlerResponse;
  // An answer before the body was read: the rest of the body is still on the connection,
  // so the connection is closed after the answer.
  auto refuse = [&](const ApiError& error) {
    if (has_body(req)) res.set_header("Connection", "close");
    reply(res, error);
    return R::Handled;
  };
  auto parsed = parse_route(req.target);
  if (auto* error = std::get_if<ApiError>(&parsed)) return refuse(*error);
  const Route& route = std::get<Route>(parsed);
  auto methods = methods_of(route.id);
  if (std::find(methods.begin(), methods.end(), req.method) == methods.end()) {
    res.set_header("Allow", join(methods));
    return refuse(ApiError{ApiErrorKind::MethodNotAllowed,
                           req.method + " is not allowed here (allowed: " + join(methods) + ")",
                           nullptr});
  }
  if (auto error = authorize(req, route.id)) return refuse(*error);
  if (req.method == "POST" || req.method == "PUT") {
    if (req.get_header_value("Content-Type").starts_with("multipart/")) {
      return refuse(ApiError{ApiErrorKind::UnsupportedMediaType,
                             "multipart bodies are not accepted: send NDJSON or JSON", nullptr});
    }
    std::string encoding = req.get_header_value("Content-Encoding");
    if (!encoding.empty() && encoding != "identity" && encoding != "gzip" &&
        encoding != "deflate" && encoding != "br") {
      return refuse(ApiError{
          ApiErrorKind::UnsupportedMediaType,
          "unsupported Content-Encoding \"" + encoding + "\" (accepted: gzip, deflate, br)",
          nullptr});
    }
    return R::Unhandled;  // On to with_body(), which reads the body.
  }
  if (has_body(req)) res.set_header("Connection", "close");  // A GET with a body: unread.
  get(route, req, res);
  return R::Handled;
}

// ---- GET -------------------------------------------------------------------------------------

void Server::Impl::get(const Route& route, const httplib::Request& req, httplib::Response& res) {
  switch (route.id) {
    case RouteId::Healthz:
      reply_json(res, 200, R"({"status":"ok"})");
      return;
    case RouteId::ExecutionLog:
      get_execution_log(route.tracking_id, res);
      return;
    case RouteId::Execution:
      get_execution(route.tracking_id, req, res);
      return;
    case RouteId::Attempts:
      get_attempts(route.tracking_id, res);
      return;
    case RouteId::Executions:
      list_executions(req, res);
      return;
    case RouteId::ExecutionsCsv:
      export_csv(req, res);
      return;
    case RouteId::ExecutionEvents:
      get_events(route.tracking_id, req, res);
      return;
    case RouteId::Workers:
      reply_json(res, 200, live.workers_json(now()));
      return;
    case RouteId::Metrics:
      res.status = 200;
      res.set_content(live.metrics_text(now()), "text/plain; version=0.0.4; charset=utf-8");
      return;
    case RouteId::StageStats:
      get_stage_stats(req, res);
      return;
    case RouteId::FailureStats:
      get_failure_stats(req, res);
      return;
    case RouteId::Alerts:
      get_alerts(req, res);
      return;
    case RouteId::Stream:
      stream(req, res);
      return;
    case RouteId::Web:
      get_web_file(route.tracking_id, req, res);
      return;
    case RouteId::Events:
      break;
  }
  reply(res, ApiError{ApiErrorKind::Internal, "no GET handler for this route", nullptr});
}

namespace {

ApiError not_found(const std::string& id) {
  Json extra = Json::object();
  extra["tracking_id"] = id;
  return ApiError{ApiErrorKind::NotFound, kNotFound, std::move(extra)};
}

ApiError store_failure(const Error& error) {
  Json extra = Json::object();
  extra["details"] = error.what();
  return ApiError{ApiErrorKind::StoreFailure, kRetrieveFailed, std::move(extra)};
}

}  // namespace

void Server::Impl::get_execution_log(const std::string& id, httplib::Response& res) {
  auto latest = store.latest(id, now());
  if (!latest) return reply(res, store_failure(latest.error()));
  if (!*latest) return reply(res, not_found(id));
  reply_json(res, 200, execution_log_response(**latest));
}

void Server::Impl::get_execution(const std::string& id, const httplib::Request& req,
                                 httplib::Response& res) {
  std::optional<int> attempt;
  if (req.has_param("attempt")) {
    std::string text = req.get_param_value("attempt");
    int n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n < 1) {
      return reply(
          res, ApiError{ApiErrorKind::BadRequest,
                        "attempt: expected a whole number from 1, got \"" + text + "\"", nullptr});
    }
    attempt = n;
  }
  auto found = attempt ? store.attempt(id, *attempt, now()) : store.latest(id, now());
  if (!found) return reply(res, store_failure(found.error()));
  if (!*found) {
    ApiError error = not_found(id);
    if (attempt) error.extra["attempt"] = *attempt;
    return reply(res, error);
  }
  reply_json(res, 200, execution_document(**found));
}

void Server::Impl::get_attempts(const std::string& id, httplib::Response& res) {
  auto list = store.attempts(id, now());
  if (!list) return reply(res, store_failure(list.error()));
  if (list->empty()) return reply(res, not_found(id));
  Json attempts = Json::array();
  for (const store::AttemptSummary& a : *list) {
    Json item = Json::object();
    item["attempt"] = a.n;
    item["execution_id"] = a.execution_id;
    item["started_at"] = detail::iso_timestamp(a.started_at_ns);
    item["completed_at"] = a.completed_at_ns ? Json(detail::iso_timestamp(*a.completed_at_ns)) : Json();
    item["duration_ms"] = a.duration_ms ? Json(*a.duration_ms) : Json();
    item["final_status"] = a.final_status;
    item["total_steps"] = a.step_count;
    attempts.push_back(std::move(item));
  }
  Json body = Json::object();
  body["success"] = true;
  body["tracking_id"] = id;
  body["attempts"] = std::move(attempts);
  reply_json(res, 200, detail::dump_json(body));
}

// ---- Listings --------------------------------------------------------------------------------

namespace {

constexpr std::size_t kDefaultLimit = 50;
constexpr std::size_t kMaxLimit = 1000;
constexpr std::size_t kMaxMetadataFilters = 16;
constexpr std::size_t kCsvPage = 200;         // Attempts read from the store at a time.
constexpr std::size_t kMaxFilterText = 1000;  // Bytes of q, worker or stage.

ApiError bad_request(std::string message) {
  return ApiError{ApiErrorKind::BadRequest, std::move(message), nullptr};
}

// limit=N: 1 to kMaxLimit, kDefaultLimit when absent.
std::variant<std::size_t, ApiError> parse_limit(const httplib::Request& req) {
  if (!req.has_param("limit")) return kDefaultLimit;
  std::string text = req.get_param_value("limit");
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < 1) {
    return bad_request("limit: expected a whole number from 1 to " + std::to_string(kMaxLimit) +
                       ", got \"" + text + "\"");
  }
  if (n > kMaxLimit) {
    return bad_request("limit: " + text + " is over the maximum of " + std::to_string(kMaxLimit));
  }
  return n;
}

// A point in time: a UTC timestamp (2026-01-04T19:30:15.234Z) or a duration before now (7d).
std::variant<std::int64_t, ApiError> parse_time(std::string_view name, const std::string& text,
                                                std::int64_t now_ns) {
  if (auto ns = parse_timestamp(text)) return *ns;
  if (auto ago = detail::parse_duration(text)) return now_ns - ago->count();
  return bad_request(std::string(name) + ": expected a UTC timestamp like " +
                     "2026-01-04T19:30:15.234Z or a duration before now like 7d, got \"" + text +
                     "\"");
}

// Cursors: "v1.<ns>.<seq>.<query>", query being the first 16 hex digits of the SHA-256 of
// what the listing was asked (so a cursor cannot continue another query).
std::string query_hash(std::string_view canonical) {
  auto digest = detail::sha256(canonical);
  return detail::to_hex(std::span<const unsigned char>(digest.data(), 8));
}

std::string make_cursor(const store::Position& at, std::string_view canonical) {
  return "v1." + std::to_string(at.ns) + "." + std::to_string(at.seq) + "." + query_hash(canonical);
}

std::variant<store::Position, ApiError> parse_cursor(const std::string& text,
                                                     std::string_view canonical) {
  auto bad = [&] { return bad_request("cursor: \"" + text + "\" is not a cursor of this API"); };
  std::vector<std::string_view> parts;
  std::string_view rest = text;
  for (std::size_t dot; (dot = rest.find('.')) != std::string_view::npos;) {
    parts.push_back(rest.substr(0, dot));
    rest.remove_prefix(dot + 1);
  }
  parts.push_back(rest);
  if (parts.size() != 4 || parts[0] != "v1") return bad();
  store::Position at;
  for (auto [part, out] : {std::pair{parts[1], &at.ns}, std::pair{parts[2], &at.seq}}) {
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), *out);
    if (ec != std::errc() || end != part.data() + part.size() || part.empty()) return bad();
  }
  if (parts[3] != query_hash(canonical)) {
    return bad_request("cursor: it continues another query (its filters differ from these)");
  }
  return at;
}

template <typename T>
const ApiError* error_of(const std::variant<T, ApiError>& v) {
  return std::get_if<ApiError>(&v);
}

}  // namespace

namespace {

// The filters of a listing (JSON or CSV) and what they were, in one order whatever the order
// of the parameters (the cursor's query hash).
struct Filters {
  store::ExecutionQuery query;
  std::string canonical;
};

// A word of full text: what the store's search matches (ASCII letters and digits, and every
// character beyond ASCII, which the store's tokenizer sorts out).
bool has_word(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u >= 0x80;
  });
}

// status, q, worker, stage, since, until and metadata.<key>; `paging` also lets limit and
// cursor through (the caller reads them). Anything else is a 400 that says what is supported.
std::variant<Filters, ApiError> parse_filters(const httplib::Request& req, std::int64_t now_ns,
                                              bool paging) {
  const std::string supported =
      std::string("status, q, worker, stage, since, until, metadata.<key>") +
      (paging ? ", limit, cursor" : "");
  Filters f;
  std::vector<std::string> canonical;
  for (const auto& [name, value] : req.params) {
    if (req.get_param_value_count(name) > 1 && !name.starts_with("metadata.")) {
      return bad_request(name + ": given more than once");
    }
    if (paging && (name == "cursor" || name == "limit")) continue;
    canonical.push_back(name + "=" + value);
    if (name == "status") {
      static const std::vector<std::string_view> kStatuses = {"completed", "failed", "in_progress",
                                                              "skipped", "unknown"};
      if (std::find(kStatuses.begin(), kStatuses.end(), value) == kStatuses.end()) {
        return bad_request(
            "status: expected completed, failed, in_progress, skipped or "
            "unknown, got \"" +
            value + "\"");
      }
      f.query.final_status = value;
    } else if (name == "since" || name == "until") {
      auto t = parse_time(name, value, now_ns);
      if (const ApiError* e = error_of(t)) return *e;
      (name == "since" ? f.query.since_ns : f.query.until_ns) = std::get<std::int64_t>(t);
    } else if (name.starts_with("metadata.")) {
      std::string key = name.substr(9);
      if (!store::is_filterable_metadata_key(key)) {
        return bad_request("metadata." + key +
                           ": a metadata key may hold only letters, digits, '_' and '-'");
      }
      if (f.query.metadata.size() == kMaxMetadataFilters) {
        return bad_request("at most " + std::to_string(kMaxMetadataFilters) + " metadata filters");
      }
      f.query.metadata.emplace_back(std::move(key), value);
    } else if (name == "q" || name == "worker" || name == "stage") {
      if (value.empty() || value.size() > kMaxFilterText) {
        return bad_request(name + ": expected 1 to " + std::to_string(kMaxFilterText) +
                           " bytes, got " + std::to_string(value.size()));
      }
      if (detail::invalid_utf8_at(value) != std::string_view::npos) {
        return bad_request(name + ": not valid UTF-8");
      }
      if (name == "q" && !has_word(value)) {
        return bad_request("q: \"" + value + "\" holds no word to search for (letters or digits)");
      }
      (name == "q" ? f.query.text : name == "worker" ? f.query.worker : f.query.stage) = value;
    } else {
      return bad_request("unknown parameter \"" + name + "\" (supported: " + supported + ")");
    }
  }
  if (f.query.since_ns && f.query.until_ns && *f.query.since_ns >= *f.query.until_ns) {
    return bad_request("since must be before until");
  }
  std::sort(canonical.begin(), canonical.end());
  f.canonical = "executions";
  for (const std::string& c : canonical) f.canonical += "&" + c;
  return f;
}

// A CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or LF; quotes doubled.
void append_csv_field(std::string& out, std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) {
    out += field;
    return;
  }
  out += '"';
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

}  // namespace

void Server::Impl::list_executions(const httplib::Request& req, httplib::Response& res) {
  const std::int64_t now_ns = now();
  auto filters = parse_filters(req, now_ns, /*paging=*/true);
  if (const ApiError* e = error_of(filters)) return reply(res, *e);
  store::ExecutionQuery& query = std::get<Filters>(filters).query;
  const std::string& canonical_text = std::get<Filters>(filters).canonical;
  auto limit = parse_limit(req);
  if (const ApiError* e = error_of(limit)) return reply(res, *e);
  if (req.has_param("cursor")) {
    auto at = parse_cursor(req.get_param_value("cursor"), canonical_text);
    if (const ApiError* e = error_of(at)) return reply(res, *e);
    query.after = std::get<store::Position>(at);
  }
  query.limit = std::get<std::size_t>(limit) + 1;  // One more: is there a next page?
  auto rows = store.list_executions(query, now_ns);
  if (!rows) return reply(res, store_failure(rows.error()));
  bool more = rows->size() > std::get<std::size_t>(limit);
  if (more) rows->pop_back();
  Json list = Json::array();
  for (const store::ExecutionSummary& row : *rows) {
    const store::AttemptSummary& a = row.attempt;
    Json item = Json::object();
    item["tracking_id"] = row.tracking_id;
    item["attempt"] = a.n;
    item["execution_id"] = a.execution_id;
    item["started_at"] = detail::iso_timestamp(a.started_at_ns);
    item["completed_at"] = a.completed_at_ns ? Json(detail::iso_timestamp(*a.completed_at_ns)) : Json();
    item["duration_ms"] = a.duration_ms ? Json(*a.duration_ms) : Json();
    item["duration_readable"] = a.duration_ms ? Json(readable_duration(*a.duration_ms)) : Json();
    item["final_status"] = a.final_status;
    item["total_steps"] = a.step_count;
    Json metadata = Json::parse(row.metadata_json, nullptr, /*allow_exceptions=*/false);
    item["metadata"] = metadata.is_object() ? std::move(metadata) : Json::object();
    list.push_back(std::move(item));
  }
  Json body = Json::object();
  body["success"] = true;
  body["executions"] = std::move(list);
  body["next_cursor"] = more ? Json(make_cursor(rows->back().position, canonical_text)) : Json();
  reply_json(res, 200, detail::dump_json(body));
}

// One row per step (an attempt without steps: one row with the step columns empty), attempts
// newest first, streamed a page of attempts at a time: memory stays flat whatever the size.
void Server::Impl::export_csv(const httplib::Request& req, httplib::Response& res) {
  const std::int64_t now_ns = now();
  auto filters = parse_filters(req, now_ns, /*paging=*/false);
  if (const ApiError* e = error_of(filters)) return reply(res, *e);
  struct Export {
    store::ExecutionQuery query;
    std::vector<store::ExecutionSummary> rows;  // The page being written.
    bool header = true;
  };
  auto state = std::make_shared<Export>();
  state->query = std::move(std::get<Filters>(filters).query);
  state->query.limit = kCsvPage;
  state->query.with_steps = true;  // Each page and its steps in one snapshot.
  // The first page is read now: a store that fails is a 500, not a cut-off download.
  auto first = store.list_executions(state->query, now_ns);
  if (!first) return reply(res, store_failure(first.error()));
  state->rows = std::move(*first);
  res.status = 200;
  res.set_header("Content-Disposition", "attachment; filename=\"executions.csv\"");
  res.set_chunked_content_provider(
      "text/csv; charset=utf-8", [this, state, now_ns](std::size_t, httplib::DataSink& sink) {
        std::string out;
        if (state->header) {
          out +=
              "tracking_id,attempt,execution_id,started_at,completed_at,duration_ms,"
              "final_status,step_number,step,status,timestamp,time_from_start_ms,message,"
              "error_details,metadata\r\n";
          state->header = false;
        }
        if (state->rows.empty()) {
          if (!out.empty() && !sink.write(out.data(), out.size())) return false;
          sink.done();
          return true;
        }
        std::string prefix;
        std::string metadata;
        for (const store::ExecutionSummary& row : state->rows) {
          const store::AttemptSummary& a = row.attempt;
          prefix.clear();
          append_csv_field(prefix, row.tracking_id);
          prefix += ',';
          prefix += std::to_string(a.n);
          prefix += ',';
          append_csv_field(prefix, a.execution_id);
          prefix += ',';
          detail::append_iso_timestamp(prefix, a.started_at_ns);
          prefix += ',';
          if (a.completed_at_ns) detail::append_iso_timestamp(prefix, *a.completed_at_ns);
          prefix += ',';
          if (a.duration_ms) prefix += std::to_string(*a.duration_ms);
          prefix += ',';
          append_csv_field(prefix, a.final_status);
          prefix += ',';
          metadata.clear();
          append_csv_field(metadata, row.metadata_json);
          auto line = [&](std::size_t n, const Step* step) {
            out += prefix;
            if (step != nullptr) {
              out += std::to_string(n);
              out += ',';
              append_csv_field(out, step->step);
              out += ',';
              append_csv_field(out, step->status);
              out += ',';
              detail::append_iso_timestamp(out, step->timestamp_ns);
              out += ',';
              out += std::to_string((step->timestamp_ns - a.started_at_ns) / 1'000'000);
              out += ',';
              append_csv_field(out, step->message);
              out += ',';
              if (step->error_details) append_csv_field(out, *step->error_details);
            } else {
              out += ",,,,,,";
            }
            out += ',';
            out += metadata;
            out += "\r\n";
          };
          if (row.steps.empty()) line(0, nullptr);
          for (std::size_t i = 0; i < row.steps.size(); ++i) line(i + 1, &row.steps[i]);
        }
        if (!sink.write(out.data(), out.size())) return false;
        state->query.after = state->rows.back().position;
        auto next = store.list_executions(state->query, now_ns);
        if (!next) {
          report("CSV export stopped: " + std::string(next.error().what()));
          return false;
        }
        state->rows = std::move(*next);
        return true;
      });
}

void Server::Impl::get_events(const std::string& id, const httplib::Request& req,
                              httplib::Response& res) {
  for (const auto& [name, value] : req.params) {
    if (name != "limit" && name != "cursor") {
      return reply(res,
                   bad_request("unknown parameter \"" + name + "\" (supported: limit, cursor)"));
    }
  }
  const std::string canonical = "events&" + id;
  auto limit = parse_limit(req);
  if (const ApiError* e = error_of(limit)) return reply(res, *e);
  std::optional<store::Position> after;
  if (req.has_param("cursor")) {
    auto at = parse_cursor(req.get_param_value("cursor"), canonical);
    if (const ApiError* e = error_of(at)) return reply(res, *e);
    after = std::get<store::Position>(at);
  }
  std::size_t n = std::get<std::size_t>(limit);
  auto page = store.event_page(id, after, n + 1, now());
  if (!page) return reply(res, store_failure(page.error()));
  bool more = page->size() > n;
  if (more) page->pop_back();
  // The events as JSONL writes them, one object each, written straight into the body.
  std::string body = R"({"success":true,"tracking_id":)";
  detail::append_json_string(body, id);
  body += R"(,"events":[)";
  for (std::size_t i = 0; i < page->size(); ++i) {
    if (i > 0) body += ',';
    detail::format_json((*page)[i].event.view(), body);
    body.pop_back();  // Its newline.
  }
  body += R"(],"next_cursor":)";
  if (more) {
    detail::append_json_string(body, make_cursor(page->back().position, canonical));
  } else {
    body += "null";
  }
  body += '}';
  reply_json(res, 200, std::move(body));
}

// ---- Statistics ------------------------------------------------------------------------------

namespace {

constexpr std::int64_t kDayNs = std::int64_t{86'400} * 1'000'000'000;

// A 400 for a parameter not in `supported` or given twice.
std::optional<ApiError> check_params(const httplib::Request& req,
                                     std::initializer_list<std::string_view> supported) {
  for (const auto& [name, value] : req.params) {
    if (std::find(supported.begin(), supported.end(), name) == supported.end()) {
      std::string list;
      for (std::string_view s : supported) {
        if (!list.empty()) list += ", ";
        list += s;
      }
      return bad_request("unknown parameter \"" + name + "\" (" +
                         (list.empty() ? "this route takes none" : "supported: " + list) + ")");
    }
    if (req.get_param_value_count(name) > 1) return bad_request(name + ": given more than once");
  }
  return std::nullopt;
}

// since (default: 7 days before now) and until (default: now), since before until.
std::variant<std::pair<std::int64_t, std::int64_t>, ApiError> parse_range(
    const httplib::Request& req, std::int64_t now_ns) {
  std::pair<std::int64_t, std::int64_t> range{now_ns - 7 * kDayNs, now_ns};
  for (auto [name, out] : {std::pair{"since", &range.first}, std::pair{"until", &range.second}}) {
    if (!req.has_param(name)) continue;
    auto t = parse_time(name, req.get_param_value(name), now_ns);
    if (const ApiError* e = error_of(t)) return *e;
    *out = std::get<std::int64_t>(t);
  }
  if (range.first >= range.second) return bad_request("since must be before until");
  return range;
}

// Milliseconds to a tenth: percentiles are within 1% anyway.
double tenths(double ms) { return std::round(ms * 10) / 10; }

Json duration_stats_json(const store::DurationStats& s) {
  Json out = Json::object();
  out["count"] = s.count;
  out["failures"] = s.failures;
  out["skipped"] = s.skipped;
  out["p50_ms"] = tenths(s.p50_ms);
  out["p95_ms"] = tenths(s.p95_ms);
  out["p99_ms"] = tenths(s.p99_ms);
  out["max_ms"] = s.max_ms;
  return out;
}

}  // namespace

// Per stage (or stage and worker): count, failures, p50 / p95 / p99 / max, and a series per
// hour or day. Percentiles come from histograms kept per hour: within 1% of the exact value,
// and the range is widened to whole hours.
void Server::Impl::get_stage_stats(const httplib::Request& req, httplib::Response& res) {
  const std::int64_t now_ns = now();
  if (auto e = check_params(req, {"since", "until", "group", "interval"})) return reply(res, *e);
  auto range = parse_range(req, now_ns);
  if (const ApiError* e = error_of(range)) return reply(res, *e);
  store::StageStatsQuery q;
  std::tie(q.since_ns, q.until_ns) = std::get<0>(range);
  std::string group = req.has_param("group") ? req.get_param_value("group") : "stage";
  if (group != "stage" && group != "worker") {
    return reply(res, bad_request("group: expected stage or worker, got \"" + group + "\""));
  }
  q.by_worker = group == "worker";
  // Hours for up to two days, days beyond: a chart of a week has 7 points, not 168.
  std::string interval = req.has_param("interval")               ? req.get_param_value("interval")
                         : q.until_ns - q.since_ns <= 2 * kDayNs ? "hour"
                                                                 : "day";
  if (interval != "hour" && interval != "day") {
    return reply(res, bad_request("interval: expected hour or day, got \"" + interval + "\""));
  }
  q.daily = interval == "day";
  auto stats = store.stage_stats(q, now_ns);
  if (!stats) return reply(res, store_failure(stats.error()));
  Json rows = Json::array();
  for (const store::StageStats& s : *stats) {
    Json row = Json::object();
    row["stage"] = s.stage;
    if (q.by_worker) row["worker"] = s.worker;
    row.update(duration_stats_json(s.stats));
    Json series = Json::array();
    for (const store::StageStatsPoint& point : s.series) {
      Json p = Json::object();
      p["start"] = detail::iso_timestamp(point.start_ns);
      p.update(duration_stats_json(point.stats));
      series.push_back(std::move(p));
    }
    row["series"] = std::move(series);
    rows.push_back(std::move(row));
  }
  Json body = Json::object();
  body["success"] = true;
  body["since"] = detail::iso_timestamp(q.since_ns);
  body["until"] = detail::iso_timestamp(q.until_ns);
  body["group"] = group;
  body["interval"] = interval;
  body["percentile_error"] = store::DurationStats::kPercentileError;
  body["stages"] = std::move(rows);
  reply_json(res, 200, detail::dump_json(body));
}

// Failed steps grouped by their error with numbers, ids, hex and paths masked: seed 004's
// error pattern analysis.
void Server::Impl::get_failure_stats(const httplib::Request& req, httplib::Response& res) {
  const std::int64_t now_ns = now();
  if (auto e = check_params(req, {"since", "until", "limit"})) return reply(res, *e);
  auto range = parse_range(req, now_ns);
  if (const ApiError* e = error_of(range)) return reply(res, *e);
  auto limit = parse_limit(req);
  if (const ApiError* e = error_of(limit)) return reply(res, *e);
  store::FailureQuery q;
  std::tie(q.since_ns, q.until_ns) = std::get<0>(range);
  q.limit = std::get<std::size_t>(limit);
  auto patterns = store.failure_patterns(q, now_ns);
  if (!patterns) return reply(res, store_failure(patterns.error()));
  Json rows = Json::array();
  for (const store::FailurePattern& p : *patterns) {
    Json row = Json::object();
    row["pattern"] = p.pattern;
    row["count"] = p.count;
    row["first_seen"] = detail::iso_timestamp(p.first_seen_ns);
    row["last_seen"] = detail::iso_timestamp(p.last_seen_ns);
    row["stages"] = p.stages;
    row["example_tracking_ids"] = p.tracking_ids;
    row["example_error"] = p.example;
    rows.push_back(std::move(row));
  }
  Json body = Json::object();
  body["success"] = true;
  body["since"] = detail::iso_timestamp(q.since_ns);
  body["until"] = detail::iso_timestamp(q.until_ns);
  body["patterns"] = std::move(rows);
  reply_json(res, 200, detail::dump_json(body));
}

// The UI's files, revalidated on every load (an ETag makes that a 304), with a policy that lets
// the page run only its own scripts and talk only to this server.
void Server::Impl::get_web_file(const std::string& path, const httplib::Request& req,
                                httplib::Response& res) {
  auto file = detail::find_web_file(path, options.web_dir);
  if (!file) {
    return reply(res, ApiError{ApiErrorKind::NotFound, "no such file: /" + path, nullptr});
  }
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; base-uri 'none'; form-action 'self'; "
                 "frame-ancestors 'none'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  if (file->etag.empty()) {
    res.set_header("Cache-Control", "no-store");  // --web-dir: always the file as it is now.
  } else {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("ETag", file->etag);
    if (req.get_header_value("If-None-Match") == file->etag) {
      res.status = 304;
      return;
    }
  }
  res.status = 200;
  res.set_content(std::move(file->bytes), std::string(file->content_type));
}

void Server::Impl::get_alerts(const httplib::Request& req, httplib::Response& res) {
  if (auto e = check_params(req, {})) return reply(res, *e);
  reply_json(res, 200, alerts ? alerts->recent_json() : R"({"success":true,"alerts":[]})");
}

// ---- The stream ------------------------------------------------------------------------------

// Holds a request thread while open: capped by max_streams, woken by stop(), and a client that
// stops reading is dropped after write_timeout. See stream.hpp.
void Server::Impl::stream(const httplib::Request& req, httplib::Response& res) {
  auto query = detail::parse_stream_query(req.params, req.get_header_value("Last-Event-ID"));
  if (auto* why = std::get_if<std::string>(&query)) return reply(res, bad_request(*why));
  auto opened = detail::StreamSession::open(hub, std::move(std::get<detail::StreamQuery>(query)));
  if (auto* why = std::get_if<std::string>(&opened)) return reply(res, bad_request(*why));
  if (hub.closed()) {
    return reply(res, ApiError{ApiErrorKind::Unavailable, "the server is stopping", nullptr});
  }
  const std::size_t max = *options.max_streams;
  if (max == 0) {
    return reply(res, ApiError{ApiErrorKind::Unavailable,
                               "streams are off on this server (max_streams 0: it has too few "
                               "request threads to lend one to a stream)",
                               nullptr});
  }
  detail::StreamHub::Slot slot = hub.acquire(max);
  if (!slot) {
    Json extra = Json::object();
    extra["max_streams"] = max;
    return reply(res, ApiError{ApiErrorKind::Unavailable,
                               "too many open streams (at most " + std::to_string(max) +
                                   " on this server); try again later",
                               std::move(extra)});
  }
  struct Open {
    detail::StreamSession session;
    detail::StreamHub::Slot slot;
  };
  auto state = std::make_shared<Open>(
      Open{std::move(std::get<detail::StreamSession>(opened)), std::move(slot)});
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // nginx: pass each event on at once.
  // Exactly "text/event-stream": httplib then never compresses it (a gzip stream would hold
  // events back until its buffer fills). SSE is UTF-8 by definition.
  res.set_chunked_content_provider(
      "text/event-stream",
      [state, keep_alive = options.stream_keep_alive](std::size_t, httplib::DataSink& sink) {
        std::string piece = state->session.next(keep_alive);
        if (piece.empty()) {  // The server is stopping.
          sink.done();
          return true;
        }
        return sink.write(piece.data(), piece.size());
      });
}

// ---- POST and PUT ----------------------------------------------------------------------------

std::variant<std::string, ApiError> Server::Impl::read_body(
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
  // The body was not read to its end: close the connection after answering.
  res.set_header("Connection", "close");
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

std::variant<std::int64_t, ApiError> Server::Impl::expiry(const httplib::Request& req) const {
  std::chrono::nanoseconds retention = options.retention;
  if (req.has_param("retention")) {
    std::string text = req.get_param_value("retention");
    auto asked = detail::parse_duration(text);
    if (!asked || asked->count() <= 0) {
      return ApiError{
          ApiErrorKind::BadRequest,
          "retention: \"" + text + "\" is not a duration above zero (examples: 12h, 3d, 30d)",
          nullptr};
    }
    retention = std::min(*asked, options.max_retention);
  }
  std::int64_t now_ns = now();
  std::int64_t expires = 0;
  if (__builtin_add_overflow(now_ns, retention.count(), &expires)) {
    expires = std::numeric_limits<std::int64_t>::max();
  }
  return expires;
}

void Server::Impl::with_body(const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) {
  auto parsed = parse_route(req.target);  // pre_route() accepted it.
  const Route* route = std::get_if<Route>(&parsed);
  if (route != nullptr && route->id == RouteId::Events && req.method == "POST") {
    return post_events(req, res, reader);
  }
  if (route != nullptr && route->id == RouteId::Execution && req.method == "PUT") {
    return put_execution(route->tracking_id, req, res, reader);
  }
  res.set_header("Connection", "close");
  reply(res, ApiError{ApiErrorKind::Internal, "no handler for this route", nullptr});
}

std::optional<Server::Impl::Write> Server::Impl::read_write(
    const httplib::Request& req, httplib::Response& res,
    const httplib::ContentReader& reader) const {
  auto expires = expiry(req);
  if (auto* error = std::get_if<ApiError>(&expires)) {
    res.set_header("Connection", "close");  // The body is not read.
    reply(res, *error);
    return std::nullopt;
  }
  auto body = read_body(req, res, reader);
  if (auto* error = std::get_if<ApiError>(&body)) {
    reply(res, *error);
    return std::nullopt;
  }
  return Write{std::get<std::int64_t>(expires), std::move(std::get<std::string>(body))};
}

void Server::Impl::post_events(const httplib::Request& req, httplib::Response& res,
                               const httplib::ContentReader& reader) {
  std::optional<Write> write = read_write(req, res, reader);
  if (!write) return;
  detail::ParsedBatch batch = detail::parse_batch(write->body, options.max_event_bytes);
  write->body = std::string();  // Not held while waiting for the store.

  Json answer = Json::object();
  answer["accepted"] = batch.events.size();
  Json rejected = Json::array();
  for (detail::RejectedLine& r : batch.rejected) {
    Json item = Json::object();
    item["line"] = r.line;
    item["error"] = std::move(r.error);
    rejected.push_back(std::move(item));
  }
  answer["rejected"] = std::move(rejected);
  if (batch.rejected_count > batch.rejected.size()) {
    answer["rejected_not_listed"] = batch.rejected_count - batch.rejected.size();
  }
  if (batch.events.empty()) {
    return reply(res, ApiError{ApiErrorKind::BadRequest,
                               batch.rejected_count == 0 ? "no event in the request body"
                                                         : "no valid event in the batch",
                               std::move(answer)});
  }
  auto stored = writer.add_events(batch.events, write->expires_at_ns);
  if (stored) {
    // The batch goes to the live state as it is: the stream keeps it, not a copy.
    auto events = std::make_shared<const std::vector<OwnedEvent>>(std::move(batch.events));
    live.observe(events);
    if (alerts) alerts->observe(*events);
  }
  if (!stored) {
    Json extra = Json::object();
    extra["details"] = stored.error().what();
    return reply(res, ApiError{ApiErrorKind::StoreFailure,
                               "cannot store the events; nothing "
                               "of this batch was stored",
                               std::move(extra)});
  }
  reply_json(res, 200, detail::dump_json(answer));
}

// The tracking id comes from the URL; the document may leave it out (then it is the URL's)
// or repeat it, but a different one is refused: a PUT to one id never writes another.
void Server::Impl::put_execution(const std::string& id, const httplib::Request& req,
                                 httplib::Response& res, const httplib::ContentReader& reader) {
  std::optional<Write> write = read_write(req, res, reader);
  if (!write) return;
  if (detail::invalid_utf8_at(id) != std::string_view::npos) {
    return reply(res, ApiError{ApiErrorKind::BadRequest,
                               "the tracking id in the URL is not valid UTF-8", nullptr});
  }
  std::string why;
  auto execution = parse_execution(write->body, id, &why);
  if (!execution) {
    return reply(res, ApiError{ApiErrorKind::BadRequest, "not an execution log: " + why, nullptr});
  }
  if (execution->tracking_id != id) {
    Json extra = Json::object();
    extra["tracking_id"] = id;
    extra["document_tracking_id"] = execution->tracking_id;
    return reply(res,
                 ApiError{ApiErrorKind::BadRequest,
                          "the document's tracking_id does not match the URL's", std::move(extra)});
  }
  std::string execution_id = execution->execution_id;
  auto stored = writer.put_execution(std::move(*execution), write->expires_at_ns);
  if (!stored) {
    Json extra = Json::object();
    extra["details"] = stored.error().what();
    return reply(res, ApiError{ApiErrorKind::StoreFailure, "cannot store the execution log",
                               std::move(extra)});
  }
  Json answer = Json::object();
  answer["success"] = true;
  answer["tracking_id"] = id;
  answer["execution_id"] = execution_id;
  reply_json(res, 200, detail::dump_json(answer));
}

// ---- Lifecycle -------------------------------------------------------------------------------

void Server::Impl::purge_loop() {
  std::unique_lock lock(mutex);
  for (;;) {
    if (purge_wake.wait_for(lock, options.purge_interval, [&] { return stopping; })) return;
    lock.unlock();
    auto removed = store.purge(now());
    if (!removed) report("purge failed: " + std::string(removed.error().what()));
    lock.lock();
  }
}

void Server::Impl::tick_loop() {
  std::unique_lock lock(mutex);
  for (;;) {
    if (purge_wake.wait_for(lock, kTickInterval, [&] { return stopping; })) return;
    lock.unlock();
    live.tick(now());
    lock.lock();
  }
}

void Server::Impl::stop_background() {
  {
    std::lock_guard lock(mutex);
    if (background_stopped) return;
    background_stopped = true;
    stopping = true;
  }
  purge_wake.notify_all();
  if (purger.joinable()) purger.join();
  if (ticker.joinable()) ticker.join();
  writer.stop();
}

namespace {

ServerOptions checked(ServerOptions options) {
  if (options.threads == 0) throw Error("server: threads must be at least 1");
  if (options.max_body_bytes == 0) throw Error("server: max_body_bytes must be above 0");
  if (options.max_event_bytes == 0) throw Error("server: max_event_bytes must be above 0");
  if (options.max_open_runs == 0) throw Error("server: max_open_runs must be above 0");
  if (options.stream_history == 0) throw Error("server: stream_history must be above 0");
  if (options.stream_keep_alive.count() <= 0) {
    throw Error("server: stream_keep_alive must be above 0");
  }
  if (!options.max_streams) options.max_streams = options.threads / 2;
  if (*options.max_streams >= options.threads) {
    throw Error("server: max_streams (" + std::to_string(*options.max_streams) +
                ") must be below threads (" + std::to_string(options.threads) +
                "): each open stream holds a request thread");
  }
  if (options.retention.count() <= 0) throw Error("server: retention must be above 0");
  if (options.max_retention < options.retention) options.max_retention = options.retention;
  if (options.purge_interval.count() <= 0) throw Error("server: purge_interval must be above 0");
  if (options.port < 0 || options.port > 65535) {
    throw Error("server: port " + std::to_string(options.port) + " is not 0 to 65535");
  }
  if (!options.clock) options.clock = detail::realtime_ns;
  if (!options.on_error) {
    options.on_error = [](std::string_view message) {
      std::fprintf(stderr, "stagelog serve: %.*s\n", static_cast<int>(message.size()),
                   message.data());
    };
  }
  return options;
}

}  // namespace

Server::Server(store::Store& store, TokenFile tokens, ServerOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(tokens), checked(std::move(options)))) {
  impl_->setup();
  impl_->purger = std::thread([impl = impl_.get()] {
    pthread_setname_np(pthread_self(), "stagelog-purge");
    impl->purge_loop();
  });
  impl_->ticker = std::thread([impl = impl_.get()] {
    pthread_setname_np(pthread_self(), "stagelog-live");
    impl->tick_loop();
  });
}

Server::~Server() {
  stop();
  impl_->stop_background();
}

void Server::bind() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->bound) return;
  if (impl_->stopping) throw Error("server: bind() after stop()");
  const ServerOptions& o = impl_->options;
  std::string address = (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host) +
                        ":" + std::to_string(o.port);
  errno = 0;
  int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host)
                         : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0) {
    int err = errno;
    std::string why = err != 0 ? detail::errno_text(err) : "cannot resolve or bind the address";
    throw Error("cannot listen on " + address + ": " + why);
  }
  impl_->port = port;
  impl_->bound = true;
}

int Server::port() const noexcept { return impl_->port.load(); }

void Server::run() {
  bind();
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return;
    impl_->in_run = true;
  }
  impl_->http.listen_after_bind();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->in_run = false;
  }
  impl_->stop_background();
}

void Server::start() {
  bind();
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->listener.joinable()) return;
    if (impl_->stopping) throw Error("server: start() after stop()");
    impl_->listener = std::thread([this] { run(); });
  }
  // The socket listens already (connections queue); wait until they are also accepted. The
  // bound keeps a broken start from hanging a test for ever.
  for (int i = 0; i < 10'000 && !impl_->http.is_running(); ++i) {
    {
      std::lock_guard lock(impl_->mutex);
      if (impl_->stopping) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!impl_->http.is_running()) throw Error("server: did not start accepting connections");
}

void Server::stop() {
  bool was_running;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    was_running = impl_->in_run;
  }
  impl_->purge_wake.notify_all();
  impl_->hub.close();  // Open streams end, so their threads can be joined.
  // run() may be between its check of `stopping` and httplib's accept loop, where httplib's
  // stop() does nothing: keep asking until the loop is up, a bounded while.
  for (int i = 0; was_running && i < 10'000; ++i) {
    if (impl_->http.is_running()) {
      impl_->http.stop();
      break;
    }
    {
      std::lock_guard lock(impl_->mutex);
      if (!impl_->in_run) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (impl_->listener.joinable() && impl_->listener.get_id() != std::this_thread::get_id()) {
    impl_->listener.join();
  }
}

stagelog::Result<std::size_t> Server::purge() { return impl_->store.purge(impl_->now()); }

}  // namespace stagelog::server
