#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stagelog/server/alerts.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/store/store.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::server {

// A request the server answered, as ServerOptions::on_request is told of it (an access log).
// The views are valid during the call only.
struct RequestRecord {
  std::string_view method;  // "GET"
  std::string_view target;  // As sent, with its query: "/api/v1/executions?status=failed".
  std::string_view route;   // The route's pattern ("/api/v1/executions/{id}"), "" for none.
  std::string_view remote;  // The client's address and port: "127.0.0.1:53122".
  int status = 0;
  std::optional<std::size_t> body_bytes;  // The answer's body before compression; none for a
                                          // stream.
  std::chrono::nanoseconds duration{0};   // From its headers read to its answer made.
};

struct ServerOptions {
  std::string host = "127.0.0.1";  // Loopback unless told: "0.0.0.0" listens everywhere.
  int port = 0;                    // 0: any free port; Server::port() says which.

  // How long what a request stores is kept: seed 004's expirationTtl. A request may ask for
  // its own with ?retention=3d (the CLI's duration syntax), capped at max_retention.
  std::chrono::nanoseconds retention = std::chrono::hours(24 * 7);
  std::chrono::nanoseconds max_retention = std::chrono::hours(24 * 365);
  // How often expired data is removed. It is never returned once expired, purged or not.
  std::chrono::nanoseconds purge_interval = std::chrono::minutes(10);

  // A request body over this, after decompression, is refused with 413 (a Content-Length
  // over it before any of the body is read). The network sink sends at most 4 MiB.
  std::size_t max_body_bytes = std::size_t{8} << 20;
  // Request bodies held at once, all connections together (each counts its Content-Length, or
  // max_body_bytes when chunked, while it is read and answered): past it, 503 + Retry-After.
  std::size_t max_inflight_bytes = std::size_t{256} << 20;
  // An ingested line over this is rejected on its own (the rest of the batch is stored).
  std::size_t max_event_bytes = std::size_t{1} << 20;
  // Open runs whose executions are kept in memory while events fold into them; past this
  // the least recently used are dropped (and read back from the store when they go on).
  std::size_t max_open_runs = 10'000;

  // A connection must send a request's line and headers within read_timeout of its first
  // byte (or of connecting), and within keep_alive_timeout when idle between requests; a body
  // that stops coming for read_timeout, or a client that stops reading for write_timeout, is
  // dropped.
  std::chrono::milliseconds read_timeout{5000};
  std::chrono::milliseconds write_timeout{5000};
  std::chrono::seconds keep_alive_timeout{5};
  // Connections open at once: past it, a new one is answered 503 + Retry-After and closed.
  // A connection costs memory (a few KiB), not a thread.
  std::size_t max_connections = 10'000;
  // A request line and headers over this many bytes, or more header fields than this: 431.
  std::size_t max_header_bytes = std::size_t{16} << 10;
  std::size_t max_header_fields = 100;
  // Threads that answer requests (the store, decoding, JSON): 0 is the number of cores, at
  // least 2. One more thread runs the event loop that reads and writes every connection.
  std::size_t threads = 0;

  // HTTPS: PEM files of the certificate (with its chain) and of its private key, both or
  // neither. Empty: plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;

  // Bearer tokens with scopes (auth.hpp) on every route but /healthz. Off only for
  // in-process benchmarks and tests that are not about auth.
  bool require_auth = true;

  // The rules GET /api/v1/workers, /metrics and the stream judge workers by (stuck, silent,
  // crashed).
  WatchdogOptions watchdog;
  // Alert rules and webhooks (alerts.hpp); none by default. Alerts fire from what is ingested
  // and from the watchdog above, and GET /api/v1/alerts lists the latest.
  AlertConfig alerts;

  // GET /api/v1/stream keeps its latest entries (events, warnings, worker changes) in memory
  // for clients that resume with Last-Event-ID: at most this many, and past the newest one at
  // most this many bytes of them. A client further behind is told what it missed.
  std::size_t stream_history = 10'000;
  std::size_t stream_history_bytes = std::size_t{64} << 20;
  // Streams open at once (each is a connection, holding no thread); beyond it: 503. 0 turns
  // the stream off.
  std::size_t max_streams = 1000;
  // A stream with nothing to send sends a comment this often (proxies, dead clients). A client
  // that left is noticed on the second write after it went, so its slot is held up to twice
  // this: short, because the web UI's live board opens a stream each time it is shown.
  std::chrono::milliseconds stream_keep_alive{5'000};

  // The web UI at "/": the files embedded at build time when empty; else read from this folder
  // on every request (serve --web-dir: working on the UI without rebuilding).
  std::string web_dir;

  // Wall clock, ns since the epoch: expiry times and what is expired. Default: the system's.
  std::function<std::int64_t()> clock;
  // Errors no request sees (a failed purge). Default: one line on stderr. Never gets a token.
  std::function<void(std::string_view)> on_error;
  // Each request answered, once its answer is made (from the request threads, at once): an
  // access log. None by default. Never gets a token (headers are not passed).
  std::function<void(const RequestRecord&)> on_request;
};

// `stagelog serve`: the HTTP API over a Store.
//
//   GET  /healthz                                  no token needed: the process answers
//   GET  /readyz                                   no token needed: the store takes writes
//   GET  /, /app.js, /css/...                      the web UI (web/)  no token needed
//   POST /api/v1/events[?retention=3d]             NDJSON events (gzip accepted)   ingest
//   PUT  /api/v1/executions/{tracking_id}          a seed-004 document verbatim    ingest
//   GET  /api/v1/executions/{tracking_id}[?attempt=N]  that document back        read
//   GET  /api/v1/executions/{tracking_id}/attempts every attempt, summarized       read
//   GET  /api/execution-logs/{trackingId}          seed 004's response, exactly    read
//   GET  /api/v1/executions[?status=&q=&worker=&stage=&since=&until=&metadata.<key>=
//                           &limit=&cursor=]       attempts newest first, in pages read
//   GET  /api/v1/executions.csv[?<those filters>]  their steps as CSV, streamed      read
//   GET  /api/v1/stats/stages[?since=&until=&group=&interval=]  durations per stage read
//   GET  /api/v1/stats/failures[?since=&until=&limit=]  failures by error pattern  read
//   GET  /api/v1/executions/{tracking_id}/events[?limit=&cursor=]  raw events      read
//   GET  /api/v1/workers                           live state of every worker      read
//   GET  /api/v1/alerts                            the latest alerts fired         read
//   GET  /metrics                                  Prometheus text format 0.0.4    read
//   GET  /api/v1/stream[?worker=&stage=&run=&kind=&types=&from=&last_event_id=]
//                                                  Server-Sent Events, live        read
//
// (admin may do everything.) Path segments are percent-decoded one by one, so a tracking id
// may hold any character ("a%2Fb" is "a/b"); ids are only ever keys in the store. Writes are
// answered after the store has committed them: an acknowledged event survives kill -9, and
// is streamed only then.
// Events fold into executions by run id (IngestWriter in src/server/ingest.hpp).
//
// Lifetime and threads: the Store must outlive the Server. Construct, then either run()
// (blocks; the CLI) or start() (returns once accepting; tests and benchmarks), then stop()
// from any other thread, or let the destructor stop it. A Server serves once: after stop()
// it cannot be started again. One thread reads and writes every connection (an event loop);
// requests are answered on a pool of ServerOptions::threads threads; one more thread writes to
// the store, one purges, one ticks the watchdog.
class Server {
 public:
  // Throws stagelog::Error for options that cannot work (zero limits, half a TLS pair).
  Server(store::Store& store, TokenFile tokens, ServerOptions options = {});
  // The same with the tokens of a file (throws as TokenFile::load), re-read when it changes:
  // a request looks at most once a second (the file's inode, size and times), so a token
  // added or removed is in force within a second without a restart. A file that cannot be
  // read or parsed any more goes to on_error once and the tokens read before stay in force.
  Server(store::Store& store, const std::filesystem::path& tokens_file, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts listening (run() and start() call it when it was not called). Throws
  // stagelog::Error naming the address when it cannot: "cannot listen on 127.0.0.1:8080:
  // Address already in use".
  void bind();
  // The port listened on, once bound (the real one when ServerOptions::port was 0); 0 before.
  int port() const noexcept;

  // Serves until stop(). Returns at once if stop() came first.
  void run();
  // Serves on a thread of its own; returns once connections are accepted.
  void start();
  // Stops accepting, ends open streams, lets requests in progress finish (their writes
  // included) and, when the server was start()ed, waits for that. Any thread but the server's
  // own; idempotent.
  void stop();

  // Re-reads the tokens file now, changed or not (`stagelog serve` on SIGHUP): how many tokens
  // it holds, or why it was not taken (the tokens read before stay). Any thread.
  Result<std::size_t> reload_tokens();
  // Replaces the alert rules and webhooks (`stagelog serve` on SIGHUP reads its --alerts file
  // again): the rules count afresh from now; GET /api/v1/alerts starts a new list. Any thread.
  void reload_alerts(const AlertConfig& alerts);

  // Removes expired data now, as the purge thread does every purge_interval. Returns how
  // many attempts and events it removed.
  Result<std::size_t> purge();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stagelog::server
