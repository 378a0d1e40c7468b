// What monitoring and the web UI read: /healthz, the live workers, /metrics, the alerts, the
// event stream, and the UI's own files.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "server/api.hpp"
#include "server/api_params.hpp"
#include "server/web.hpp"

namespace stagelog::detail {

ApiResponse Api::healthz(ApiRequest&, const RouteMatch&) {
  return json_response(R"({"status":"ok"})");
}

// Ready: the last write to the store did not fail, or one succeeded since, and the store was
// reached the last time a request tried. A load balancer stops sending requests here while the
// disk is full; /healthz still says the process is alive. While the store is not reached, each
// /readyz (one at a time) asks it for a batch key no sender uses: a replica out of rotation
// gets no request to find out that the database is back.
ApiResponse Api::readyz(ApiRequest&, const RouteMatch&) {
  if (health_.unreachable() && !probing_.exchange(true, std::memory_order_acquire)) {
    struct Done {
      std::atomic<bool>& probing;
      ~Done() { probing.store(false, std::memory_order_release); }
    } done{probing_};
    if (store_.batch("", now())) health_.read_succeeded();
  }
  std::optional<std::string> why = health_.not_ready();
  if (!why) return json_response(R"({"ready":true})");
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  body["ready"] = false;
  body["reason"] = std::move(*why);
  ApiResponse response = json_response(dump_json(body), 503);
  response.set_header("Retry-After", "10");
  return response;
}

ApiResponse Api::workers(ApiRequest&, const RouteMatch&) {
  return json_response(live_.workers_json(now()));
}

ApiResponse Api::metrics(ApiRequest&, const RouteMatch&) {
  ApiResponse response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = live_.metrics_text(now());
  response.body +=
      "# HELP stagelog_leader 1 when this server purges and sends alerts for the servers "
      "sharing its store (it holds the leader lock), else 0.\n# TYPE stagelog_leader gauge\n"
      "stagelog_leader ";
  response.body += leading() ? "1\n" : "0\n";
  response.body += http_metrics_.text();
  response.body += build_and_process_metrics();
  return response;
}

ApiResponse Api::alerts(ApiRequest& req, const RouteMatch&) {
  if (auto e = check_params(req, {})) return error_response(*e);
  auto engine = alert_engine();
  return json_response(engine ? engine->recent_json() : R"({"success":true,"alerts":[]})");
}

// A connection like any other while open (no thread waits for it): capped by max_streams,
// woken by what the hub publishes and by its close(); a client that stops reading is dropped
// after write_timeout. See stream.hpp.
ApiResponse Api::stream(ApiRequest& req, const RouteMatch&) {
  auto query = parse_stream_query(req.params, req.header("Last-Event-ID"));
  if (!query) return error_response(bad_request(query.error()));
  auto opened = StreamSession::open(hub_, std::move(*query));
  if (!opened) return error_response(bad_request(opened.error()));
  if (hub_.closed()) {
    return error_response(ApiError{ApiErrorKind::Unavailable, "the server is stopping", nullptr});
  }
  const std::size_t max = options_.max_streams;
  if (max == 0) {
    return error_response(ApiError{ApiErrorKind::Unavailable,
                                   "streams are off on this server (max_streams 0)", nullptr});
  }
  StreamHub::Slot slot = hub_.acquire(max);
  if (!slot) {
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
    extra["max_streams"] = max;
    return error_response(ApiError{ApiErrorKind::Unavailable,
                                   "too many open streams (at most " + std::to_string(max) +
                                       " on this server); try again later",
                                   std::move(extra)});
  }
  struct Open {
    StreamSession session;
    StreamHub::Slot slot;
  };
  auto state = std::make_shared<Open>(Open{std::move(*opened), std::move(slot)});
  ApiResponse response;
  // Exactly "text/event-stream": never compressed (a gzip stream would hold events back until
  // its buffer fills). SSE is UTF-8 by definition.
  response.content_type = "text/event-stream";
  response.set_header("Cache-Control", "no-cache");
  response.set_header("X-Accel-Buffering", "no");  // nginx: pass each event on at once.
  const std::chrono::milliseconds keep_alive = options_.stream_keep_alive;
  response.producer = [state, keep_alive](std::string& piece) {
    piece = state->session.poll(keep_alive);
    if (state->session.ended()) return StreamStep::Done;  // The server stops.
    return piece.empty() ? StreamStep::Idle : StreamStep::More;
  };
  response.subscribe = [hub = &hub_](std::function<void()> wake) {
    return hub->subscribe(std::move(wake));
  };
  // A keep-alive goes between keep_alive and 1.25 x keep_alive after the last piece.
  response.idle_wait = std::max(std::chrono::milliseconds(1), keep_alive / 4);
  return response;
}

// The UI's files, revalidated on every load (an ETag makes that a 304), with a policy that lets
// the page run only its own scripts and talk only to this server.
ApiResponse Api::web_file(ApiRequest& req, const RouteMatch& match) {
  auto file = find_web_file(match.id, options_.web_dir);
  if (!file) {
    return error_response(ApiError{ApiErrorKind::NotFound, "no such file: /" + match.id, nullptr});
  }
  ApiResponse response;
  response.set_header("Content-Security-Policy",
                      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
                      "data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                      "frame-ancestors 'none'");
  response.set_header("X-Content-Type-Options", "nosniff");
  response.set_header("Referrer-Policy", "no-referrer");
  if (file->etag.empty()) {
    response.set_header("Cache-Control", "no-store");  // --web-dir: always the file as it is now.
  } else {
    response.set_header("Cache-Control", "no-cache");
    response.set_header("ETag", file->etag);
    if (req.header("If-None-Match") == file->etag) {
      response.status = 304;
      return response;
    }
  }
  response.content_type = std::string(file->content_type);
  response.body = std::move(file->bytes);
  return response;
}

}  // namespace stagelog::detail
