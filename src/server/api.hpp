#pragma once

// The HTTP API of `stagelog serve` without its transport: what each route answers (api_*.cpp),
// who may call it, and the server's live parts the routes share (the ingest writer, the live
// worker state, the stream hub, the alerts). A transport (transport.hpp) reads requests and
// asks admit() before it reads a body, then answer() for the response.
//
// Threads: admit() and answer() are called from any number of threads at once; the parts
// they share are thread-safe. A handler may block on the store.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/alerts.hpp"
#include "server/http.hpp"
#include "server/ingest.hpp"
#include "server/live.hpp"
#include "server/report.hpp"
#include "server/routes.hpp"
#include "server/server_metrics.hpp"
#include "server/store_health.hpp"
#include "server/stream.hpp"
#include "server/token_source.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/server.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

class Api {
 public:
  // `store` must outlive the Api; `options` are checked (Server's constructor).
  Api(store::Store& store, std::unique_ptr<TokenSource> tokens,
      const server::ServerOptions& options);

  // What the transport learns once the headers are in: the request's route, or the answer
  // that refuses it (unknown route, method, token, Content-Type or Content-Encoding, a bad
  // ?retention=) before any body is read.
  struct Admission {
    std::optional<Routed> routed;
    ApiResponse refusal;      // When !routed.
    bool takes_body = false;  // POST and PUT: the transport reads the body, then answer().
  };
  Admission admit(const ApiRequest& request) const;
  // The route's answer. `request.body` is read when admit() said takes_body.
  ApiResponse answer(ApiRequest& request, const Routed& routed);

  // The routes, in the order they are tried.
  static std::span<const Route> routes();

  // For the server's background threads.
  std::int64_t now() const { return options_.clock(); }
  void report(std::string_view message) const { options_.on_error(message); }
  store::Store& store() { return store_; }
  LiveState& live() { return live_; }
  StreamHub& hub() { return hub_; }
  IngestWriter& writer() { return writer_; }
  StoreHealth& health() { return health_; }
  Result<std::size_t> reload_tokens() { return tokens_->reload(); }
  // Replaces the alert rules and webhooks (serve's SIGHUP): alerts fire by the new rules from
  // now on, counting afresh; an empty config turns alerts off. Any thread.
  void reload_alerts(const server::AlertConfig& config);
  // A request answered (the transport calls it once the answer is made, before it is sent):
  // counted in /metrics, and handed to ServerOptions::on_request (the access log). `routed`
  // is null for a request no route took. Any thread.
  void request_done(const ApiRequest& request, const Routed* routed, const ApiResponse& response,
                    std::chrono::steady_clock::time_point started, std::string_view remote);
  // Events another server stored in the shared store (the change feed's): they go where this
  // server's own go once stored (the live state, the stream, the alerts).
  void observe_stored(std::vector<OwnedEvent> events);
  // Whether this server does the work that must happen once among the servers sharing the
  // store (purging, alerts); set by the server's leader thread, true without other servers.
  bool leading() const noexcept { return leading_.load(std::memory_order_relaxed); }
  void set_leading(bool leading) noexcept { leading_.store(leading, std::memory_order_relaxed); }

  // ---- The routes (api_*.cpp) ----
  ApiResponse healthz(ApiRequest&, const RouteMatch&);
  ApiResponse readyz(ApiRequest&, const RouteMatch&);
  ApiResponse web_file(ApiRequest&, const RouteMatch&);
  ApiResponse workers(ApiRequest&, const RouteMatch&);
  ApiResponse metrics(ApiRequest&, const RouteMatch&);
  ApiResponse alerts(ApiRequest&, const RouteMatch&);
  ApiResponse stream(ApiRequest&, const RouteMatch&);
  ApiResponse execution_log(ApiRequest&, const RouteMatch&);
  ApiResponse get_execution(ApiRequest&, const RouteMatch&);
  ApiResponse put_execution(ApiRequest&, const RouteMatch&);
  ApiResponse attempts(ApiRequest&, const RouteMatch&);
  ApiResponse execution_events(ApiRequest&, const RouteMatch&);
  ApiResponse post_events(ApiRequest&, const RouteMatch&);
  ApiResponse list_executions(ApiRequest&, const RouteMatch&);
  ApiResponse export_csv(ApiRequest&, const RouteMatch&);
  ApiResponse export_jsonl(ApiRequest&, const RouteMatch&);
  ApiResponse get_report(ApiRequest&, const RouteMatch&);
  ApiResponse stage_stats(ApiRequest&, const RouteMatch&);
  ApiResponse failure_stats(ApiRequest&, const RouteMatch&);

 private:
  // export_csv and export_jsonl (api_listings.cpp).
  ApiResponse export_rows(ApiRequest& req, bool csv);
  std::optional<ApiError> authorize(const ApiRequest& request, Access access) const;
  // When what a write stores expires: now + ?retention= (capped), or the default retention.
  Result<std::int64_t, ApiError> expiry(const ApiRequest& request) const;
  // The answer to a write the store refused, `message` saying what was not stored: 507 for a
  // full disk, 503 for an I/O error, a busy store or one not reached (with Retry-After), else
  // 500. The failure goes to health_. `extra` goes into the answer, with the error's details.
  ApiResponse write_refused(const Error& error, std::string message,
                            nlohmann::ordered_json extra = nlohmann::ordered_json::object());
  // The answer to a read the store refused, as seed 004 words it (kRetrieveFailed, with the
  // error's details): 503 with Retry-After when the store cannot answer now (not reached, busy,
  // failing its I/O or out of disk), 500 for anything else (a bug). A store not reached goes
  // to health_.
  ApiResponse read_refused(const Error& error);
  // write_refused for an ingest batch of which the first stored_lines lines are stored (the
  // pieces of a large body before the one that failed; see post_events).
  ApiResponse partial_write_refused(const Error& error, std::size_t stored_lines, bool keyed);
  // Stores one piece of an ingest batch, under `record`'s key when not null (add_batch), and
  // hands the events to the live state and the alerts when this call stored them (it moves
  // them there). What add_batch returns.
  Result<std::optional<store::BatchRecord>> store_piece(std::vector<OwnedEvent>& events,
                                                        std::int64_t expires_at_ns,
                                                        const store::BatchRecord* record);

  store::Store& store_;
  std::atomic<bool> leading_{true};
  std::atomic<bool> probing_{false};  // A /readyz is asking the store whether it answers.
  const std::unique_ptr<TokenSource> tokens_;
  const server::ServerOptions& options_;
  StoreHealth health_;
  IngestWriter writer_;
  ReportIncidents incidents_;  // Before alert_engine_, which reads it, and live_, which feeds it.
  // The alerts engine, none without rules; replaced whole by reload_alerts(), so it is read
  // through alert_engine(), which keeps the one it returns alive. Outlives live_.
  std::shared_ptr<AlertEngine> alert_engine() const { return alert_engine_.load(); }
  std::shared_ptr<AlertEngine> make_alert_engine(const server::AlertConfig& config);
  std::atomic<std::shared_ptr<AlertEngine>> alert_engine_;
  HttpMetrics http_metrics_;
  StreamHub hub_;  // Before live_, which publishes to it (and the alerts, which do too).
  LiveState live_;
};

// seed 004's Pages function, word for word.
inline constexpr const char* kNotFound = "No execution log found for this tracking ID";
inline constexpr const char* kRetrieveFailed = "Failed to retrieve execution log";

// 404 for a tracking id, as seed 004 answers it.
ApiError not_found(const std::string& tracking_id);
ApiError bad_request(std::string message);

}  // namespace stagelog::detail
