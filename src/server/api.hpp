#pragma once

// The HTTP API of `stagelog serve` without its transport: what each route answers (api_*.cpp),
// who may call it, and the server's live parts the routes share (the ingest writer, the live
// worker state, the stream hub, the alerts). A transport (transport.hpp) reads requests and
// asks admit() before it reads a body, then answer() for the response.
//
// Threads: admit() and answer() are called from any number of threads at once; the parts
// they share are thread-safe. A handler may block on the store.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "server/alerts.hpp"
#include "server/http.hpp"
#include "server/ingest.hpp"
#include "server/live.hpp"
#include "server/routes.hpp"
#include "server/stream.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/server.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

class Api {
 public:
  // `store` must outlive the Api; `options` are checked (Server's constructor).
  Api(store::Store& store, server::TokenFile tokens, const server::ServerOptions& options);

  // What the transport learns once the headers are in: the request's route, or the answer
  // that refuses it (unknown route, method, token, Content-Type or Content-Encoding, a bad
  // ?retention=) before any body is read.
  struct Admission {
    std::optional<Routed> routed;
    HttpResponse refusal;     // When !routed.
    bool takes_body = false;  // POST and PUT: the transport reads the body, then answer().
  };
  Admission admit(const HttpRequest& request) const;
  // The route's answer. `request.body` is read when admit() said takes_body.
  HttpResponse answer(HttpRequest& request, const Routed& routed);

  // The routes, in the order they are tried.
  static std::span<const Route> routes();

  // For the server's background threads.
  std::int64_t now() const { return options_.clock(); }
  void report(std::string_view message) const { options_.on_error(message); }
  store::Store& store() { return store_; }
  LiveState& live() { return live_; }
  StreamHub& hub() { return hub_; }
  IngestWriter& writer() { return writer_; }

  // ---- The routes (api_*.cpp) ----
  HttpResponse healthz(HttpRequest&, const RouteMatch&);
  HttpResponse web_file(HttpRequest&, const RouteMatch&);
  HttpResponse workers(HttpRequest&, const RouteMatch&);
  HttpResponse metrics(HttpRequest&, const RouteMatch&);
  HttpResponse alerts(HttpRequest&, const RouteMatch&);
  HttpResponse stream(HttpRequest&, const RouteMatch&);
  HttpResponse execution_log(HttpRequest&, const RouteMatch&);
  HttpResponse get_execution(HttpRequest&, const RouteMatch&);
  HttpResponse put_execution(HttpRequest&, const RouteMatch&);
  HttpResponse attempts(HttpRequest&, const RouteMatch&);
  HttpResponse execution_events(HttpRequest&, const RouteMatch&);
  HttpResponse post_events(HttpRequest&, const RouteMatch&);
  HttpResponse list_executions(HttpRequest&, const RouteMatch&);
  HttpResponse export_csv(HttpRequest&, const RouteMatch&);
  HttpResponse stage_stats(HttpRequest&, const RouteMatch&);
  HttpResponse failure_stats(HttpRequest&, const RouteMatch&);

 private:
  std::optional<ApiError> authorize(const HttpRequest& request, Access access) const;
  // When what a write stores expires: now + ?retention= (capped), or the default retention.
  Result<std::int64_t, ApiError> expiry(const HttpRequest& request) const;

  store::Store& store_;
  const server::TokenFile tokens_;
  const server::ServerOptions& options_;
  IngestWriter writer_;
  std::unique_ptr<AlertEngine> alert_engine_;  // None without rules. Outlives live_.
  StreamHub hub_;  // Before live_, which publishes to it (and the alerts, which do too).
  LiveState live_;
};

// seed 004's Pages function, word for word.
inline constexpr const char* kNotFound = "No execution log found for this tracking ID";
inline constexpr const char* kRetrieveFailed = "Failed to retrieve execution log";

// 404 for a tracking id, as seed 004 answers it.
ApiError not_found(const std::string& tracking_id);
// 500 for a store that failed a read, as seed 004 answers it.
ApiError store_failure(const Error& error);
ApiError bad_request(std::string message);

}  // namespace stagelog::detail
