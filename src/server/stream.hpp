#pragma once

// GET /api/v1/stream: what the server stores and what its watchdog finds, as Server-Sent
// Events. A StreamHub keeps the latest entries in memory, numbered 1, 2, 3 ... per server
// process; each connection is a StreamSession that reads them at its own pace. Publishing
// never waits for a reader: a reader that falls more than the hub's history behind is told so
// (an `event: reset`) and goes on from the oldest entry still kept.
//
// Ids on the wire are "<epoch>-<n>": the epoch is 16 random hex digits drawn when the hub is
// made, so an id from an earlier server process is recognised as such.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "stagelog/event.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/result.hpp"

namespace stagelog::detail {

enum class StreamType : std::uint8_t { Event, Warning, Worker, Alert };
// "event", "warning", "worker", "alert"
std::string_view stream_type_name(StreamType type) noexcept;

struct StreamEntry {
  std::uint64_t id = 0;  // Given by StreamHub::publish().
  StreamType type = StreamType::Event;
  std::string data;  // One line of JSON: the SSE event's data.
  // What the filters look at; "" where the entry has none.
  std::string worker;
  std::string stage;
  std::string run;
  std::optional<Kind> kind;  // Events only.
  // An event entry holds the batch its event was stored with, not its text: the text is made
  // when a stream sends it, so that ingest pays nothing for a stream nobody reads. The batch
  // is shared by its entries and goes with the last of them.
  std::shared_ptr<const std::vector<OwnedEvent>> batch;
  std::size_t index = 0;

  // The SSE data: `data`, or the event's JSONL object.
  void append_data(std::string& out) const;
  // What the filters look at, from the event when there is one.
  std::string_view worker_name() const;
  std::string_view stage_name() const;
  std::string_view run_name() const;
  // About what it holds, for the hub's byte cap.
  std::size_t bytes() const;
};

// The index-th event of a stored batch: its JSONL object (format_json) as data, made when sent.
StreamEntry event_entry(std::shared_ptr<const std::vector<OwnedEvent>> batch, std::size_t index);
// A watchdog report: the JSONL object with "rule" first. Nothing for the reports that are not
// warnings about a worker (rules "running" and "monitor").
std::optional<StreamEntry> warning_entry(const Event& report);
// An alert as its webhooks get it (alerts.hpp). It has no worker, stage or run to filter on.
StreamEntry alert_entry(std::string alert_json);

// Thread-safe: request threads publish and read, Server::stop() closes.
class StreamHub {
 public:
  // Keeps at most `max_entries` entries and, past the newest one, `max_bytes` of their data.
  StreamHub(std::size_t max_entries, std::size_t max_bytes);

  const std::string& epoch() const noexcept { return epoch_; }

  // Numbers the entries in order and keeps them; wakes the readers. Never blocks on them.
  void publish(std::vector<StreamEntry> entries);

  struct Read {
    std::vector<std::shared_ptr<const StreamEntry>> entries;  // In id order.
    std::uint64_t missed = 0;  // Entries after `after` no longer kept: skipped.
    bool closed = false;
  };
  // Up to `max` entries after id `after`, waiting until `until` for the first when none is
  // there yet (entries empty then). After close(): closed, at once.
  Read read(std::uint64_t after, std::size_t max,
            std::chrono::steady_clock::time_point until) const;

  struct Span {
    std::uint64_t oldest = 1;  // The oldest entry kept; last + 1 when none is.
    std::uint64_t last = 0;    // The newest published; 0 before the first.
  };
  Span span() const;

  // Wakes every reader and ends their streams; later reads return closed at once.
  void close();

  // For readers that wait without a thread of their own (the server's event loop): `wake` is
  // called after every publish() and on close(), on the calling thread, outside the hub's
  // lock; it must not block (it posts to the loop). Registered while the handle lives; the
  // hub must outlive the handle.
  using Waker = std::function<void()>;
  std::shared_ptr<void> subscribe(Waker wake);
  bool closed() const;

  // A stream's hold on one of the `max` slots, released when the last copy goes.
  using Slot = std::shared_ptr<void>;
  // Null when `max` streams are open.
  Slot acquire(std::size_t max);

 private:
  const std::size_t max_entries_;
  const std::size_t max_bytes_;
  const std::string epoch_;

  mutable std::mutex mutex_;
  mutable std::condition_variable wake_;
  std::deque<std::shared_ptr<const StreamEntry>> entries_;  // Ids oldest .. last_.
  std::size_t bytes_ = 0;
  std::uint64_t last_ = 0;
  bool closed_ = false;
  std::size_t open_streams_ = 0;
  // Apart from mutex_: wakers are called under it, so none is called once unsubscribed.
  std::mutex wakers_mutex_;
  std::map<std::uint64_t, Waker> wakers_;
  std::uint64_t next_waker_ = 0;

  void wake_all();
};

// What a client asked for: GET /api/v1/stream's parameters and its Last-Event-ID.
struct StreamQuery {
  std::vector<std::string> workers;  // Each may be repeated: any of them matches.
  std::vector<std::string> stages;
  std::vector<std::string> runs;
  std::vector<Kind> kinds;
  std::vector<StreamType> types;  // Empty: all.
  bool from_oldest = false;       // from=oldest: start from the oldest entry kept.
  struct Resume {
    std::string epoch;
    std::uint64_t id = 0;
  };
  std::optional<Resume> resume;

  bool matches(const StreamEntry& entry) const;
};

// The parameters (worker, stage, run, kind, types, from, last_event_id) and the Last-Event-ID
// header ("" when absent; it wins over the parameter). An error says which parameter and why.
Result<StreamQuery, std::string> parse_stream_query(
    const std::multimap<std::string, std::string>& params, std::string_view last_event_id);

// One client's stream. next() gives the response's next piece of text: first, when the client
// has a gap, an `event: reset`; then `event: hello` whose id is where the stream starts; then
// the entries that match, as they come; a keep-alive comment (with the current id, so a
// filtered stream's position moves on) when nothing came for a while. "" once the hub closed.
class StreamSession {
 public:
  // An error (400) for a Last-Event-ID this server cannot have given: same epoch, not yet
  // published.
  static Result<StreamSession, std::string> open(const StreamHub& hub, StreamQuery query);

  std::string next(std::chrono::milliseconds keep_alive);
  // As next(), without waiting: "" when nothing is there to send and no keep-alive is due (the
  // last piece went less than `keep_alive` ago). For a reader woken by StreamHub::subscribe.
  std::string poll(std::chrono::milliseconds keep_alive);
  // Whether the hub closed: no piece will follow.
  bool ended() const noexcept { return ended_; }

  // At most this many entries are read from the hub per next().
  static constexpr std::size_t kBatch = 256;

 private:
  StreamSession(const StreamHub& hub, StreamQuery query) : hub_(&hub), query_(std::move(query)) {}
  std::string id_text(std::uint64_t n) const;
  void append_reset(std::string& out, std::string_view reason, std::uint64_t missed) const;
  // Appends what the hub has past position_ (a reset, the matching entries) to `out`, waiting
  // until `until` for the first entry. False once the hub closed.
  bool collect(std::string& out, std::chrono::steady_clock::time_point until);
  std::string keep_alive_text() const;

  const StreamHub* hub_;
  StreamQuery query_;
  std::uint64_t position_ = 0;  // The id of the last entry this stream has passed.
  std::string opening_;         // reset and hello, sent by the first next().
  bool ended_ = false;
  std::chrono::steady_clock::time_point last_sent_{};  // poll()'s last piece.
};

}  // namespace stagelog::detail
