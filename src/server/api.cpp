// The route table, and what every request goes through before its route answers: the route,
// the method, the token, the body's type and encoding.

#include "server/api.hpp"

#include <algorithm>
#include <array>
#include <exception>
#include <limits>
#include <utility>

#include "base/duration.hpp"

namespace stagelog::detail {

namespace {

using server::AuthResult;
using server::Scope;

// How often the log says that writes to the store fail, for each kind of failure.
constexpr std::chrono::seconds kStoreLogInterval{10};
// What a client refused for a full disk or an I/O error is told to wait before it tries again.
constexpr const char* kRetryAfterSeconds = "10";
// ... and one refused because the store cannot be reached: a database restart or failover is
// over in seconds, and the first request after it connects again.
constexpr const char* kRetryUnreachableSeconds = "2";

const char* retry_after(ErrorKind kind) {
  return kind == ErrorKind::Unavailable ? kRetryUnreachableSeconds : kRetryAfterSeconds;
}

// Every route, one row each (see routes.hpp). The web UI takes every path outside /api/ but
// the fixed ones; a path under /api/ that no row names is a 404.
constexpr std::array kRoutes = {
    Route{"/healthz", kGetHead, Access::Public, &Api::healthz},
    Route{"/readyz", kGetHead, Access::Public, &Api::readyz},
    Route{"/metrics", kGetHead, Access::Read, &Api::metrics},
    Route{"/api/v1/events", kPost, Access::Ingest, &Api::post_events},
    Route{"/api/v1/executions", kGetHead, Access::Read, &Api::list_executions},
    Route{"/api/v1/executions.csv", kGetHead, Access::Read, &Api::export_csv},
    Route{"/api/v1/executions.jsonl", kGetHead, Access::Read, &Api::export_jsonl},
    Route{"/api/v1/executions/{id}", kGetHead, Access::Read, &Api::get_execution},
    Route{"/api/v1/executions/{id}", kPut, Access::Ingest, &Api::put_execution},
    Route{"/api/v1/executions/{id}/attempts", kGetHead, Access::Read, &Api::attempts},
    Route{"/api/v1/executions/{id}/events", kGetHead, Access::Read, &Api::execution_events},
    Route{"/api/execution-logs/{id}", kGetHead, Access::Read, &Api::execution_log},
    Route{"/api/v1/workers", kGetHead, Access::Read, &Api::workers},
    Route{"/api/v1/stats/stages", kGetHead, Access::Read, &Api::stage_stats},
    Route{"/api/v1/stats/failures", kGetHead, Access::Read, &Api::failure_stats},
    Route{"/api/v1/alerts", kGetHead, Access::Read, &Api::alerts},
    Route{"/api/v1/report", kGetHead, Access::Read, &Api::get_report},
    Route{"/api/v1/stream", kGet, Access::Read, &Api::stream},
    Route{"/api/{*rest}", 0, Access::Public, nullptr},  // No other row: 404.
    Route{"/{*file}", kGetHead, Access::Public, &Api::web_file},
};

}  // namespace

Api::Api(store::Store& store, std::unique_ptr<TokenSource> tokens,
         const server::ServerOptions& options)
    : store_(store),
      tokens_(std::move(tokens)),
      options_(options),
      health_(StoreHealth::Options{{}, options.on_error, kStoreLogInterval}),
      writer_(store, IngestWriter::Options{options.max_open_runs, options.clock}),
      alert_engine_(make_alert_engine(options.alerts)),
      hub_(options.stream_history, options.stream_history_bytes),
      live_(options.watchdog, &hub_, [this](const Event& report) {
        if (auto incident = worker_incident(report)) incidents_.add(std::move(*incident));
        if (auto engine = alert_engine()) engine->watchdog_report(report);
      }) {}

std::shared_ptr<AlertEngine> Api::make_alert_engine(const server::AlertConfig& config) {
  if (config.empty()) return nullptr;
  return std::make_shared<AlertEngine>(
      config, store_,
      AlertEngine::Hooks{options_.clock, options_.on_error,
                         [this](const std::string& alert) { hub_.publish({alert_entry(alert)}); },
                         [this] { return leading(); }, &incidents_});
}

void Api::reload_alerts(const server::AlertConfig& config) {
  alert_engine_.store(make_alert_engine(config));
}

void Api::request_done(const ApiRequest& request, const Routed* routed, const ApiResponse& response,
                       std::chrono::steady_clock::time_point started, std::string_view remote) {
  const auto took = std::chrono::steady_clock::now() - started;
  const std::string_view route = routed ? routed->route->pattern : std::string_view();
  http_metrics_.record(route, request.method, response.status, took);
  if (options_.on_request) {
    options_.on_request(server::RequestRecord{
        request.method, request.target, route, remote, response.status,
        response.producer ? std::optional<std::size_t>() : response.body.size(),
        std::chrono::duration_cast<std::chrono::nanoseconds>(took)});
  }
}

std::span<const Route> Api::routes() { return kRoutes; }

std::optional<ApiError> Api::authorize(const ApiRequest& request, Access access) const {
  // The UI's files hold no data: the page asks for a token, then sends it to the API.
  if (!options_.require_auth || access == Access::Public) return std::nullopt;
  Scope needed = access == Access::Read ? Scope::Read : Scope::Ingest;
  std::optional<std::string_view> header;
  if (request.has_header("Authorization")) header = request.header("Authorization");
  switch (tokens_->check(header, needed)) {
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

Api::Admission Api::admit(const ApiRequest& request) const {
  Admission admission;
  // A refusal comes before the body is read: what is left of it is still on the connection,
  // so the connection is closed after the answer.
  auto refuse = [&](ApiResponse response) {
    response.close = has_body(request);
    admission.refusal = std::move(response);
    return std::move(admission);
  };
  auto routed = route(kRoutes, request.method, request.target);
  if (!routed) {
    ApiResponse response = error_response(routed.error().error);
    if (!routed.error().allow.empty()) response.set_header("Allow", routed.error().allow);
    return refuse(std::move(response));
  }
  if (auto error = authorize(request, routed->route->access)) {
    return refuse(error_response(*error));
  }
  if (request.method == "POST" || request.method == "PUT") {
    if (request.header("Content-Type").starts_with("multipart/")) {
      return refuse(error_response(
          ApiError{ApiErrorKind::UnsupportedMediaType,
                   "multipart bodies are not accepted: send NDJSON or JSON", nullptr}));
    }
    std::string_view encoding = request.header("Content-Encoding");
    if (!encoding.empty() && encoding != "identity" && encoding != "gzip" &&
        encoding != "deflate" && encoding != "br") {
      return refuse(
          error_response(ApiError{ApiErrorKind::UnsupportedMediaType,
                                  "unsupported Content-Encoding \"" + std::string(encoding) +
                                      "\" (accepted: gzip, deflate, br)",
                                  nullptr}));
    }
    if (auto expires = expiry(request); !expires) {
      ApiResponse response = error_response(expires.error());
      response.close = true;  // The body is not read.
      admission.refusal = std::move(response);
      return admission;
    }
    admission.takes_body = true;
  }
  admission.routed = std::move(*routed);
  return admission;
}

ApiResponse Api::answer(ApiRequest& request, const Routed& routed) {
  std::string what = "unknown exception";
  try {
    return (this->*routed.route->handler)(request, routed.match);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  report("request failed: " + what);
  return error_response(ApiError{ApiErrorKind::Internal, "internal error: " + what, nullptr});
}

Result<std::int64_t, ApiError> Api::expiry(const ApiRequest& request) const {
  std::chrono::nanoseconds retention = options_.retention;
  if (const std::string* text = request.param("retention")) {
    auto asked = parse_duration(*text);
    if (!asked || asked->count() <= 0) {
      return ApiError{
          ApiErrorKind::BadRequest,
          "retention: \"" + *text + "\" is not a duration above zero (examples: 12h, 3d, 30d)",
          nullptr};
    }
    retention = std::min(*asked, options_.max_retention);
  }
  std::int64_t expires = 0;
  if (__builtin_add_overflow(now(), retention.count(), &expires)) {
    expires = std::numeric_limits<std::int64_t>::max();
  }
  return expires;
}

ApiResponse Api::write_refused(const Error& error, std::string message,
                               nlohmann::ordered_json extra) {
  health_.write_failed(error);
  extra["details"] = error.what();
  ApiErrorKind kind = ApiErrorKind::Unavailable;
  if (error.kind() == ErrorKind::DiskFull) {
    kind = ApiErrorKind::InsufficientStorage;
  } else if (error.kind() == ErrorKind::Other) {
    kind = ApiErrorKind::StoreFailure;
  }
  ApiResponse response = error_response(ApiError{kind, std::move(message), std::move(extra)});
  if (kind != ApiErrorKind::StoreFailure) {
    response.set_header("Retry-After", retry_after(error.kind()));
  }
  return response;
}

ApiResponse Api::read_refused(const Error& error) {
  health_.read_failed(error);
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  extra["details"] = error.what();
  // A full disk refuses what a read needs to write (a sort's temporary files): the read may
  // succeed later, as one refused for another failure of the store.
  const bool later = error.kind() != ErrorKind::Other;
  ApiResponse response =
      error_response(ApiError{later ? ApiErrorKind::Unavailable : ApiErrorKind::StoreFailure,
                              kRetrieveFailed, std::move(extra)});
  if (later) response.set_header("Retry-After", retry_after(error.kind()));
  return response;
}

ApiError not_found(const std::string& tracking_id) {
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  extra["tracking_id"] = tracking_id;
  return ApiError{ApiErrorKind::NotFound, kNotFound, std::move(extra)};
}

ApiError bad_request(std::string message) {
  return ApiError{ApiErrorKind::BadRequest, std::move(message), nullptr};
}

}  // namespace stagelog::detail
