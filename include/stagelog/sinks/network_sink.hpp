#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "stagelog/sink.hpp"

namespace stagelog {

namespace detail {
struct NetworkSinkImpl;
}  // namespace detail

struct NetworkSinkOptions {
  // "http://host:port" or "https://host:port", optionally with a path prefix for a reverse
  // proxy ("http://gateway:8080/stagelog" posts to /stagelog/api/v1/events). https checks the
  // server's certificate (TLS 1.2 or later) and that it names the URL's host or IP address.
  std::string url;
  // For https: a PEM file of the CA certificates to trust instead of the system's (a private
  // CA, a self-signed server). Must be empty for an http:// url.
  std::string ca_file;
  // Sent as "Authorization: Bearer <token>" (a token with the ingest scope); empty sends none.
  std::string token;
  Level level = Level::Trace;
  // A batch leaves when batch_events are waiting, or when the oldest waiting event is
  // flush_interval old, whichever comes first; max_batch_bytes caps a request's body (a
  // single longer event still goes, alone).
  std::chrono::milliseconds flush_interval{100};
  std::size_t batch_events = 1000;
  std::size_t max_batch_bytes = std::size_t{4} << 20;
  // After a failed request (cannot connect, timeout, 5xx, 408, 429) the next try waits
  // retry_initial, doubling on each failure up to retry_max, +-25% jitter; a Retry-After
  // header is followed up to retry_max.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
  // Connect, send and read of one request together.
  std::chrono::milliseconds request_timeout{10000};
  // How long close() (and the destructor, and exit()) keeps trying to deliver.
  std::chrono::milliseconds shutdown_timeout{2000};
  // The spool file: every event passes through it on its way out (see NetworkSink). Empty
  // means default_spool_path(url).
  std::filesystem::path spool_path;
  // Bound on the events waiting in the spool (not yet acknowledged), in bytes of NDJSON.
  std::uint64_t spool_max_bytes = std::uint64_t{64} << 20;
  // Receives the sink's trouble reports ("cannot deliver to ...", "server rejected ...",
  // "network sink dropped N events ..."), on the sender or the backend thread. Empty: the
  // reports are thrown from the next tick() or flush() on the recorder's backend thread, so
  // they reach Options::on_error like any sink's errors.
  std::function<void(std::string_view)> on_error;
};

struct NetworkSinkStats {
  // Lines acknowledged by the server (a 2xx answer): stored for good. The sink's own
  // "dropped N events" lines count too.
  std::uint64_t sent = 0;
  std::uint64_t spooled = 0;          // Waited in the spool while the server could not be reached.
  std::uint64_t dropped = 0;          // Lost: the spool was full (or could not be written).
  std::uint64_t rejected = 0;         // Refused by the server (a 4xx batch, or lines it rejected).
  std::uint64_t replayed = 0;         // Found in spool files left by earlier processes, at start.
  std::uint64_t queued = 0;           // Now waiting: written and not yet sent, rejected or dropped.
  std::uint64_t failed_requests = 0;  // Requests that failed and were retried later.
};

// Sends events to a `stagelog serve` server: batches of NDJSON lines (the JsonlSink format,
// which the server reads back with parse_json_event) in `POST <url>/api/v1/events`.
//
// Threads. write(), flush() and tick() run on the recorder's backend thread and never wait on
// the network: write() formats the event into memory and, every batch_events or 64 KiB and on
// flush(), appends the lines to the spool file. The sink's own sender thread reads batches
// from the spool, posts them, and marks them sent when the server answers 2xx (the server
// answers 200 only once the events are durable). The spool is a write-ahead log: an event is
// on disk before it is sent, so a killed process loses at most what the recorder had not yet
// handed to the sink. flush() (hence Recorder::flush()) puts events in the spool, not on the
// server; wait_sent() waits for the server.
//
// Failures. Cannot connect, a timeout, 5xx, 408 or 429: the batch stays in the spool and is
// retried with backoff; newer events queue behind it, so order is kept. 413: the batch is
// halved and retried. Any other 4xx: the server refuses the data; the batch is counted as
// rejected, reported, and skipped (never retried). Lines the server rejects in a 200 answer
// ({"accepted": N, "rejected": [{"line": L, "error": "..."}]}) are counted and reported too.
// Past spool_max_bytes, new events are dropped and counted until the server has caught up to
// half the bound; then the line "network sink dropped N events (spool full: PATH, N bytes)" is
// queued in their place, so the loss shows on the server, and reported through on_error.
//
// The spool file holds a one-line header (the offset of the first unsent byte) and the NDJSON
// lines. It is flock()ed: one process per file. A second process (or sink) given the same path
// uses "<path>.<pid>" instead. At start, a sink replays its own file's unsent lines and adopts
// "<path>.<N>" files that no live process holds (left by a process that died), oldest first,
// before anything new; a fully sent file is emptied (or removed, when it is not the sink's own).
//
// Exit. close() — and the destructor, and exit() for sinks still alive then — keeps sending
// for at most shutdown_timeout (one try if the server is already unreachable); what is left
// stays in the spool for the next process with the same spool path. Events written after
// close() go to the spool only.
//
// fork(): the child gets a fresh sink state with its own spool "<path>.<child pid>" and a new
// sender thread; what the parent had queued stays the parent's to send. This relies on
// handlers registered when the program starts (before any Recorder); a child that will exec
// needs to do nothing.
//
// Delivery is at least once: a request whose answer was lost is sent again.
class NetworkSink : public Sink {
 public:
  // Throws Error naming the URL (malformed, or ca_file with http://), the CA file (cannot be
  // read, no certificate in it) or the spool path (cannot be created, not a spool file).
  explicit NetworkSink(NetworkSinkOptions options);
  ~NetworkSink() override;

  void write(const Event& event) override;
  void flush() override;
  void tick(std::int64_t now_ns) override;

  // Any thread. Sends what remains for up to shutdown_timeout, then stops the sender thread.
  // Idempotent.
  void close();
  // Any thread. Hands what write() buffered to the sender, asks it not to wait for
  // flush_interval, and waits until every event written so far is sent, rejected or dropped
  // and the reports about them have reached on_error. False on timeout. (Call Recorder::flush()
  // first for events still in the recorder.)
  bool wait_sent(std::chrono::milliseconds timeout);

  NetworkSinkStats stats() const;
  // The spool file in use: spool_path, or "<spool_path>.<pid>" when another holds that.
  std::filesystem::path spool_path() const;
  // The normalised server URL ("http[s]://host:port[/prefix]").
  const std::string& url() const noexcept;

 private:
  std::unique_ptr<detail::NetworkSinkImpl> impl_;
};

// "$XDG_STATE_HOME/stagelog/spool/<host>_<port>.spool" ("https_<host>_<port>.spool" for an
// https URL), else under "$HOME/.local/state/stagelog/spool/", else under
// "/tmp/stagelog-<uid>/spool/": one spool per server. Throws Error for a bad URL.
std::filesystem::path default_spool_path(std::string_view url);

// A NetworkSink configured from the environment, or nullptr when STAGELOG_SERVER is unset or
// empty. STAGELOG_SERVER is the URL, STAGELOG_TOKEN the token, STAGELOG_CA_FILE (optional, for
// https) the CA file, STAGELOG_SPOOL (optional) the spool path; `options` gives the rest.
// Throws Error naming the variable and its value when STAGELOG_SERVER is malformed, or when
// STAGELOG_CA_FILE is set and STAGELOG_SERVER is not https.
std::shared_ptr<NetworkSink> network_sink_from_env(NetworkSinkOptions options = {});

}  // namespace stagelog
