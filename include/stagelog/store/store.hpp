#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "stagelog/error.hpp"
#include "stagelog/execution.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/result.hpp"

namespace stagelog::store {

// One line of an attempts() listing.
struct AttemptSummary {
  int n = 0;  // 1 for the tracking id's first attempt.
  std::string execution_id;
  std::int64_t started_at_ns = 0;
  std::optional<std::int64_t> completed_at_ns;
  std::optional<std::int64_t> duration_ms;
  std::string final_status;  // The last step's status, "unknown" without steps.
  std::size_t step_count = 0;
};

// Where a row stands in a listing, to continue after it: list_executions orders attempts by
// (started_at_ns, seq) descending, event_page orders events by (ts_ns, seq) ascending. seq is
// the store's insertion order, unique within the listing.
struct Position {
  std::int64_t ns = 0;
  std::int64_t seq = 0;
  friend bool operator==(const Position&, const Position&) = default;
};

// A metadata key an ExecutionQuery can filter on: not empty, ASCII letters, digits, '_' and
// '-' only.
inline bool is_filterable_metadata_key(std::string_view key) noexcept {
  if (key.empty()) return false;
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// What list_executions lists: live attempts of every tracking id, newest start first.
struct ExecutionQuery {
  std::optional<std::string> final_status;  // completed, failed, in_progress, skipped, unknown
  std::optional<std::int64_t> since_ns;     // started_at_ns >= since_ns
  std::optional<std::int64_t> until_ns;     // started_at_ns < until_ns
  // Metadata key = value, all of them: a string value as it is, any other as its JSON text
  // (3, 2.5, true, null). Keys pass is_filterable_metadata_key, or the listing fails.
  std::vector<std::pair<std::string, std::string>> metadata;
  // An attempt with a step run by this worker: the step's "worker" key (steps folded from
  // events carry their event's worker there), else the attempt's metadata "worker".
  std::optional<std::string> worker;
  std::optional<std::string> stage;  // An attempt with a step of this name.
  // Full text: an attempt with a step whose message or error details hold every word of it
  // (a word's prefix matches when it ends in '*': "time*"). Words are Unicode letters and
  // digits; case and diacritics do not matter. The text is never parsed as a query language.
  std::optional<std::string> text;
  std::size_t limit = 50;
  bool with_steps = false;        // Fill ExecutionSummary::steps (an export); else they stay empty.
  std::optional<Position> after;  // The last row of the previous page.
};

// One line of a list_executions listing.
struct ExecutionSummary {
  std::string tracking_id;
  AttemptSummary attempt;
  std::string metadata_json;
  Position position;
  std::vector<Step> steps;  // With ExecutionQuery::with_steps, read in one snapshot.
};

// What stage_stats aggregates: steps that ended (completed or failed; skipped ones are only
// counted) with their timestamp in [since_ns, until_ns), widened to whole hours. A step named
// like its attempt's tracking id stands for the whole job (a workflow node, a nested run of
// that name), not a stage: it is left out here and in failure_patterns, and found by search.
struct StageStatsQuery {
  std::int64_t since_ns = 0;
  std::int64_t until_ns = 0;
  bool by_worker = false;  // One row per (stage, worker) instead of per stage.
  bool daily = false;      // Series points per UTC day instead of per hour.
};

// Durations of one group of steps. A step's duration is its "duration_ms" key when it has one
// (steps folded from events carry the stage's measured time there), else the time since the
// previous step of its attempt (since started_at for the first): seed 004's documents record
// when each step ended. Percentiles are nearest-rank, within 1% of the exact value; the rest
// is exact.
struct DurationStats {
  static constexpr double kPercentileError = 0.01;  // Relative, at most.

  std::int64_t count = 0;  // Completed and failed.
  std::int64_t failures = 0;
  std::int64_t skipped = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
  std::int64_t max_ms = 0;
};

struct StageStatsPoint {
  std::int64_t start_ns = 0;  // The hour or UTC day the point covers.
  DurationStats stats;
};

struct StageStats {
  std::string stage;
  std::string worker;  // With StageStatsQuery::by_worker; "" for steps of no worker.
  DurationStats stats;
  std::vector<StageStatsPoint> series;  // Oldest first; hours or days with steps only.
};

// What failure_patterns groups: failed steps with their timestamp in [since_ns, until_ns).
struct FailureQuery {
  std::int64_t since_ns = 0;
  std::int64_t until_ns = 0;
  std::size_t limit = 50;  // Patterns, the most frequent first.
};

// Failed steps whose error (error details, else message) reads the same once numbers, ids,
// hex strings and paths are masked (seed 004's "error pattern analysis").
struct FailurePattern {
  std::string pattern;  // "timeout after <n>ms"
  std::string example;  // One such error as it was, the most recent.
  std::int64_t count = 0;
  std::int64_t first_seen_ns = 0;
  std::int64_t last_seen_ns = 0;
  std::vector<std::string> stages;        // Sorted.
  std::vector<std::string> tracking_ids;  // Up to three, the most recent first.
};

// One event of an event_page.
struct StoredEvent {
  OwnedEvent event;
  Position position;
};

// An ingest batch's id (its Idempotency-Key) and the answer the server gave it the first
// time, kept with the batch's rows so that a repeat of the batch is answered the same way
// instead of being stored again.
struct BatchRecord {
  std::string key;  // Opaque, not empty.
  int status = 0;
  std::string body;
  std::int64_t stored_at_ns = 0;  // When it was first answered.
  friend bool operator==(const BatchRecord&, const BatchRecord&) = default;
};

// Events for Store::write, all expiring at once.
struct EventsWrite {
  std::span<const OwnedEvent> events;
  std::int64_t expires_at_ns = 0;
  // Set: the events are the ingest batch of this key. The key is stored in the same
  // transaction as the events, expiring with them (see Store::write). Not owned: it must
  // outlive the write.
  const BatchRecord* batch = nullptr;
};

// One attempt for Store::write. With steps_from = k > 0, execution.steps are the attempt's
// steps k, k+1, ...: steps 0 to k-1 are already stored and stay as they are, so that a
// long-running execution folded from events grows without being rewritten on every batch.
// The attempt must then be stored with at least k steps; otherwise the write fails.
struct ExecutionWrite {
  Execution execution;
  std::int64_t expires_at_ns = 0;
  std::size_t steps_from = 0;
};

// Events that other processes sharing the store's backend stored, as their writes commit
// (Store::changes). Each write's events come once, in commit order, never those of a write
// that rolled back, nor this process's own. A lost connection is opened again by the next
// call, which then returns what was committed meanwhile: nothing is missed or given twice.
//
// Threads: one thread calls next(); wake() may be called from any thread. The Store must
// outlive the feed.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // Waits up to `timeout` for writes, and returns their events (empty when none came in time,
  // or after wake()). An error (the backend unreachable) says what failed; call again later.
  virtual Result<std::vector<OwnedEvent>> next(std::chrono::milliseconds timeout) = 0;
  // Makes a waiting next() return now.
  virtual void wake() noexcept = 0;
};

// A lock that one process of those sharing the store's backend holds at a time
// (Store::leader_lock): work that must happen once (purging, alerts) runs where it is held.
// It is held by a session of the backend: when the process dies or loses its connection, the
// lock goes, and another process's next hold() takes it.
//
// Threads: one thread calls hold(). The Store must outlive the lock.
class LeaderLock {
 public:
  virtual ~LeaderLock() = default;
  // Whether this process holds the lock now: takes it when it is free, and checks that a lock
  // held still is (its connection alive). An error (the backend unreachable) means not held.
  virtual Result<bool> hold() = 0;
};

// Where `stagelog serve` keeps execution logs (seed 004) and raw events, each with an expiry
// time. Two implementations (SQLite, PostgreSQL) pass one conformance suite
// (tests/support/store_conformance.hpp), which is the precise specification of what follows.
//
// Time: nothing here reads a clock. Writes take an absolute expires_at_ns, reads take now_ns;
// a row is live while now_ns < expires_at_ns. Expired rows are never returned, whether or not
// purge() has removed them yet.
//
// Executions: one row per attempt, keyed by (tracking_id, execution_id). Tracking ids and
// execution ids are opaque byte strings (any characters, '/', quotes, "..", NUL included).
// Attempts are numbered 1, 2, ... per tracking id in order of their first put; a number is
// never reused while an attempt of that tracking id is still stored (they restart at 1 only
// once every attempt of the tracking id has been purged).
//
// Errors: setup (constructing an implementation) throws stagelog::Error; every operation
// returns a Result whose error says what failed and where. A write that returns success is
// durable: it survives a crash of the process and, for SQLite, of the machine.
//
// Threads: every operation may be called from any thread, concurrently. A Store must outlive
// the calls made on it.
class Store {
 public:
  virtual ~Store() = default;

  // Stores one attempt. A new execution_id adds an attempt; an execution_id already stored
  // for this tracking id replaces that attempt entirely (steps, metadata, expiry), keeping its
  // number and its place in insertion order: a worker re-posts the whole document as steps
  // are added.
  virtual Result<void> put_execution(const Execution& execution, std::int64_t expires_at_ns) = 0;

  // The most recent live attempt: greatest started_at_ns, ties broken by insertion order
  // (the later first put wins). nullopt when the tracking id has no live attempt.
  virtual Result<std::optional<Execution>> latest(std::string_view tracking_id,
                                                  std::int64_t now_ns) = 0;

  // Attempt number n (1 = the first), if it is live.
  virtual Result<std::optional<Execution>> attempt(std::string_view tracking_id, int n,
                                                   std::int64_t now_ns) = 0;

  // The live attempts of a tracking id, by number.
  virtual Result<std::vector<AttemptSummary>> attempts(std::string_view tracking_id,
                                                       std::int64_t now_ns) = 0;

  // Stores raw events, all or none, durable when it returns. Every field of OwnedEvent is
  // kept; fields keep their order, repeated keys and values, with JSONL's number conventions
  // (a non-negative integer reads back as std::int64_t unless it exceeds its range).
  virtual Result<void> append_events(std::span<const OwnedEvent> events,
                                     std::int64_t expires_at_ns) = 0;

  // Stores events and attempts in one transaction: all or none, durable when it returns, with
  // one commit for everything (for SQLite, one fsync). This is how the server's ingest lets
  // concurrent requests share a commit. Attempts are stored in order, each as put_execution
  // would (a later one with the same ids replaces an earlier one), but keeping the steps
  // before steps_from; events as append_events would, the spans in order.
  //
  // Batch keys (EventsWrite::batch) are stored with their events: batch(key) finds the record
  // once the write returned, and never before. A key that is still stored and live at the
  // record's stored_at_ns (also one stored earlier in the same write) fails the whole write,
  // nothing stored: a batch is stored once, even by two servers sharing one backend. A key
  // stored but expired at stored_at_ns is replaced.
  virtual Result<void> write(std::span<const EventsWrite> events,
                             std::span<const ExecutionWrite> executions) = 0;

  // The record of an ingest batch stored with this key, if it is live at now_ns. Cheap (one
  // lookup by key) and, for SQLite, not held up by a write in progress.
  virtual Result<std::optional<BatchRecord>> batch(std::string_view key, std::int64_t now_ns) = 0;

  // Up to `limit` live events of a run, by ts_ns, then by order of appending.
  virtual Result<std::vector<OwnedEvent>> events(std::string_view run, std::int64_t now_ns,
                                                 std::size_t limit) = 0;

  // Up to query.limit live attempts matching the query, by started_at_ns descending, then by
  // insertion order descending; after query.after when set. A listing is stable while new
  // data arrives: an attempt stored later never shifts the pages after one already read.
  virtual Result<std::vector<ExecutionSummary>> list_executions(const ExecutionQuery& query,
                                                                std::int64_t now_ns) = 0;

  // Up to `limit` live events of a run, in events()'s order, after `after` when set.
  virtual Result<std::vector<StoredEvent>> event_page(std::string_view run,
                                                      std::optional<Position> after,
                                                      std::size_t limit, std::int64_t now_ns) = 0;

  // Per stage (or stage and worker) duration statistics of the live attempts' steps, by
  // stage name; with a series per hour or day. Sees every write that returned before it.
  virtual Result<std::vector<StageStats>> stage_stats(const StageStatsQuery& query,
                                                      std::int64_t now_ns) = 0;

  // Failed steps of live attempts grouped by pattern, the most frequent first (ties: the most
  // recent first). Sees every write that returned before it.
  virtual Result<std::vector<FailurePattern>> failure_patterns(const FailureQuery& query,
                                                               std::int64_t now_ns) = 0;

  // Removes everything expired at now_ns (expires_at_ns <= now_ns) and returns how many
  // attempts and events it removed (an attempt counts once, whatever its step count; batch
  // records are removed too, and not counted). One exception: the PostgreSQL store keeps events
  // in a partition per UTC day of expiry, made before that day begins, and removes such a
  // partition whole once its day has ended, so an expired event may stay (never returned) until
  // the first purge after midnight; an event whose day had no partition is removed at expiry.
  virtual Result<std::size_t> purge(std::int64_t now_ns) = 0;

  // Optional capabilities of a store that several processes share.
  // The events other processes store, as they commit; null when no other process can write to
  // this store (SQLite: one process owns the file).
  virtual std::unique_ptr<ChangeFeed> changes() { return nullptr; }
  // The lock that elects one process among those sharing the store; null when this process is
  // the only one (it always leads).
  virtual std::unique_ptr<LeaderLock> leader_lock() { return nullptr; }
};

}  // namespace stagelog::store
