// The SQLite store's step index: what the query side reads besides the executions themselves.
//
// Writes only mark what changed (executions.index_from, in the row they write anyway), so that
// ingest pays nothing for the index. The indexer, on a thread of its own while the store is
// not busy, and every query that reads the index before it reads, goes over the marked steps
// and derives:
//   step_facts     one row per step: its stage, worker, status, duration, error pattern;
//   step_text      an FTS5 table over each step's message and error details (rowid = fact);
//   stage_rollups  per hour, stage and worker: counts and a duration histogram.
// All three are derived from step_chunks and can be rebuilt from them (sqlite_schema.cpp's
// migrate_from_2 does). Facts go with their attempt (ON DELETE CASCADE, and a trigger for
// their text); rollups expire with the last attempt that added to them.

#include "store/sqlite_index.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "store/step_chunk.hpp"
#include "store/step_index.hpp"

namespace stagelog::store {

using detail::Database;
using detail::DurationHistogram;
using detail::floor_to;
using detail::has_duration;
using detail::kHourNs;
using detail::ScopedReset;
using detail::Statement;
using detail::Transaction;

namespace {

// Attempts indexed per transaction by the indexer thread: a write waits for one batch at most.
constexpr std::int64_t kBatch = 256;
// While writes go on: a batch that holds the store for a few milliseconds only.
constexpr std::int64_t kTrickleBatch = 32;

// What one indexing batch adds to and removes from one rollup row.
struct RollupDelta {
  std::int64_t count = 0;
  std::int64_t failures = 0;
  std::int64_t skipped = 0;
  std::multiset<std::int64_t> added;
  std::multiset<std::int64_t> removed;
  std::int64_t expires_at_ns = 0;

  void apply(std::string_view status, std::optional<std::int64_t> duration_ms, int sign) {
    if (status == "skipped") skipped += sign;
    if (!has_duration(status)) return;
    count += sign;
    if (status == "failed") failures += sign;
    std::int64_t d = duration_ms.value_or(0);
    if (sign < 0) {
      auto it = added.find(d);  // A step indexed again with the same duration: no change.
      if (it != added.end()) {
        added.erase(it);
      } else {
        removed.insert(d);
      }
    } else {
      auto it = removed.find(d);
      if (it != removed.end()) {
        removed.erase(it);
      } else {
        added.insert(d);
      }
    }
  }
};

using RollupKey = std::tuple<std::int64_t, std::string, std::string>;  // hour, stage, worker

}  // namespace

SqliteStore::IndexStatements::IndexStatements(Database& db)
    : pending(db,
              "SELECT id, index_from, started_at_ns, expires_at_ns, metadata_json, tracking_id "
              "FROM executions WHERE index_from IS NOT NULL ORDER BY id LIMIT ?1"),
      old_facts(db,
                "SELECT ts_ns, stage, worker, status, duration_ms FROM step_facts WHERE "
                "execution = ?1 AND n >= ?2"),
      delete_facts(db, "DELETE FROM step_facts WHERE execution = ?1 AND n >= ?2"),
      previous_ts(db, "SELECT ts_ns FROM step_facts WHERE execution = ?1 AND n = ?2"),
      chunks(db,
             "SELECT seq, steps_json FROM step_chunks WHERE execution = ?1 AND "
             "seq + count > ?2 ORDER BY seq"),
      insert_fact(db,
                  "INSERT INTO step_facts (execution, n, ts_ns, stage, worker, status, "
                  "duration_ms, pattern) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
      insert_text(db, "INSERT INTO step_text (rowid, message, error_details) VALUES (?1, ?2, ?3)"),
      indexed(db, "UPDATE executions SET index_from = NULL WHERE id = ?1"),
      select_rollup(db,
                    "SELECT count, failures, skipped, max_ms, histogram, expires_at_ns FROM "
                    "stage_rollups WHERE hour_ns = ?1 AND stage = ?2 AND worker = ?3"),
      max_in_hour(db,
                  "SELECT MAX(duration_ms) FROM step_facts WHERE stage = ?2 AND worker = ?3 "
                  "AND ts_ns >= ?1 AND ts_ns < ?1 + 3600000000000 AND status IN "
                  "('completed', 'failed')"),
      put_rollup(db,
                 "INSERT OR REPLACE INTO stage_rollups (hour_ns, stage, worker, count, "
                 "failures, skipped, max_ms, histogram, expires_at_ns) VALUES (?1, ?2, ?3, "
                 "?4, ?5, ?6, ?7, ?8, ?9)"),
      delete_rollup(db,
                    "DELETE FROM stage_rollups WHERE hour_ns = ?1 AND stage = ?2 AND "
                    "worker = ?3"),
      rollups(db,
              "SELECT hour_ns, stage, worker, count, failures, skipped, max_ms, histogram "
              "FROM stage_rollups WHERE hour_ns >= ?1 AND hour_ns < ?2 AND "
              "expires_at_ns > ?3 ORDER BY stage, worker, hour_ns"),
      failure_groups(
          db,
          "SELECT f.pattern, COUNT(*), MIN(f.ts_ns), MAX(f.ts_ns) FROM step_facts f "
          "JOIN executions e ON e.id = f.execution WHERE f.status = 'failed' AND "
          "f.ts_ns >= ?1 AND f.ts_ns < ?2 AND e.expires_at_ns > ?3 AND f.pattern IS "
          "NOT NULL GROUP BY f.pattern ORDER BY COUNT(*) DESC, MAX(f.ts_ns) DESC, f.pattern "
          "LIMIT ?4"),
      failure_stages(db,
                     "SELECT DISTINCT f.stage FROM step_facts f JOIN executions e ON e.id = "
                     "f.execution WHERE f.status = 'failed' AND f.pattern = ?1 AND f.ts_ns >= "
                     "?2 AND f.ts_ns < ?3 AND e.expires_at_ns > ?4 ORDER BY f.stage"),
      failure_examples(db,
                       "SELECT e.tracking_id, t.error_details, t.message FROM step_facts f "
                       "JOIN executions e ON e.id = f.execution JOIN step_text t ON t.rowid "
                       "= f.id WHERE f.status = 'failed' AND f.pattern = ?1 AND f.ts_ns >= ?2 "
                       "AND f.ts_ns < ?3 AND e.expires_at_ns > ?4 ORDER BY f.ts_ns DESC, f.id "
                       "DESC LIMIT 100"),
      purge_rollups(db, "DELETE FROM stage_rollups WHERE expires_at_ns <= ?1") {}

SqliteStore::Indexer::Indexer(SqliteStore& store) : store_(store) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-index");
    sigset_t all;  // Process signals are for the application's threads, not this one.
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    loop();
  });
}

SqliteStore::Indexer::~Indexer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void SqliteStore::Indexer::written() {
  {
    std::lock_guard lock(mutex_);
    last_write_ = Clock::now();
    pending_ = true;
  }
  wake_.notify_one();
}

void SqliteStore::Indexer::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || pending_; });
    if (stopping_) return;
    // Index once writes pause; while they go on, a small batch every kTrickle only.
    for (;;) {
      auto until = std::min(last_write_ + kQuiet, last_batch_ + kTrickle);
      if (Clock::now() >= until) break;
      if (wake_.wait_until(lock, until, [&] { return stopping_; })) return;
    }
    bool quiet = Clock::now() >= last_write_ + kQuiet;
    pending_ = false;  // A write during the batch sets it again.
    lock.unlock();
    auto started = Clock::now();
    bool more = store_.index_batch(quiet ? kBatch : kTrickleBatch);
    lock.lock();
    last_batch_ = Clock::now();
    if (more) pending_ = true;
    // As long again before the next batch: the store's mutex is not fair, and a reader waiting
    // for it (a GET of an execution) would otherwise wait for the whole backlog.
    if (more &&
        wake_.wait_until(lock, last_batch_ + (last_batch_ - started), [&] { return stopping_; })) {
      return;
    }
  }
}

void SqliteStore::start_indexer() { indexer_ = std::make_unique<Indexer>(*this); }

void SqliteStore::stop_indexer() noexcept {
  indexer_.reset();  // Joins its thread before the statements go.
  ix_.reset();
}

SqliteStore::IndexStatements& SqliteStore::index_statements() {
  // Prepared on first use rather than when the store opens: a file whose index tables are
  // damaged still opens, serves what is not damaged, and says what is when asked.
  if (ix_ == nullptr) ix_ = std::make_unique<IndexStatements>(*db_);
  return *ix_;
}

void SqliteStore::written() {
  if (indexer_ != nullptr) indexer_->written();
}

bool SqliteStore::index_batch(std::int64_t max_attempts) {
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    bool more = index_locked(max_attempts);
    tx.commit();
    return more;
  } catch (...) {
    // Left marked: the next query or batch tries again, and reports what failed.
    return false;
  }
}

void SqliteStore::catch_up_locked() {
  Transaction tx(*db_);
  while (index_locked(kBatch)) {
  }
  tx.commit();
}

bool SqliteStore::index_locked(std::int64_t max_attempts) {
  IndexStatements& ix = index_statements();
  struct Pending {
    std::int64_t id;
    std::int64_t from;
    std::int64_t started_at_ns;
    std::int64_t expires_at_ns;
    std::optional<std::string> worker;  // The attempt's metadata "worker".
    std::string tracking_id;
  };
  std::vector<Pending> pending;
  {
    ScopedReset reset(ix.pending);
    ix.pending.bind(1, max_attempts + 1);
    while (ix.pending.step()) {
      pending.push_back(Pending{
          ix.pending.int64(0), ix.pending.int64(1), ix.pending.int64(2), ix.pending.int64(3),
          detail::read_step_keys(ix.pending.text(4)).worker, ix.pending.text(5)});
    }
  }
  bool more = static_cast<std::int64_t>(pending.size()) > max_attempts;
  if (more) pending.pop_back();

  std::map<RollupKey, RollupDelta> deltas;
  std::vector<Step> steps;
  for (const Pending& p : pending) {
    // The facts of the steps indexed again leave the rollups.
    {
      ScopedReset reset(ix.old_facts);
      ix.old_facts.bind(1, p.id).bind(2, p.from);
      while (ix.old_facts.step()) {
        std::string status = ix.old_facts.text(3);
        RollupKey key{floor_to(ix.old_facts.int64(0), kHourNs), ix.old_facts.text(1),
                      ix.old_facts.text(2)};
        if (std::get<1>(key) == p.tracking_id) continue;  // Never counted: see below.
        deltas[key].apply(status, ix.old_facts.opt_int64(4), -1);
      }
    }
    {
      ScopedReset reset(ix.delete_facts);
      ix.delete_facts.bind(1, p.id).bind(2, p.from).run();
    }
    std::int64_t previous_ts = p.started_at_ns;
    if (p.from > 0) {
      ScopedReset reset(ix.previous_ts);
      ix.previous_ts.bind(1, p.id).bind(2, p.from - 1);
      if (ix.previous_ts.step()) previous_ts = ix.previous_ts.int64(0);
    }
    steps.clear();
    std::int64_t first = p.from;  // The position of steps[0].
    {
      ScopedReset reset(ix.chunks);
      ix.chunks.bind(1, p.id).bind(2, p.from);
      bool at_first_chunk = true;
      while (ix.chunks.step()) {
        if (at_first_chunk) first = ix.chunks.int64(0);
        at_first_chunk = false;
        if (!detail::decode_steps(ix.chunks.text(1), steps)) {
          throw std::runtime_error("a damaged step chunk at step " +
                                   std::to_string(ix.chunks.int64(0)));
        }
      }
    }
    for (std::size_t i = 0; i < steps.size(); ++i) {
      std::int64_t n = first + static_cast<std::int64_t>(i);
      if (n < p.from) continue;
      const Step& step = steps[i];
      detail::StepKeys keys = detail::read_step_keys(step.custom_json);
      std::string worker = keys.worker ? *keys.worker : p.worker.value_or("");
      std::optional<std::int64_t> duration_ms;
      if (has_duration(step.status)) {
        duration_ms = keys.duration_ms.value_or(
            std::max<std::int64_t>(0, (step.timestamp_ns - previous_ts) / 1'000'000));
      }
      previous_ts = step.timestamp_ns;
      // A step named like its tracking id stands for the whole job (a workflow node or a
      // nested run of that name), not a stage: searchable, but no stage statistics and no
      // failure pattern (its failure repeats the stage's that caused it).
      const bool whole_job = step.step == p.tracking_id;
      std::optional<std::string> pattern;
      if (step.status == "failed" && !whole_job) {
        pattern = detail::error_pattern(step.error_details.value_or(step.message));
      }
      {
        Statement& s = ix.insert_fact;
        ScopedReset reset(s);
        s.bind(1, p.id)
            .bind(2, n)
            .bind(3, step.timestamp_ns)
            .bind(4, std::string_view(step.step))
            .bind(5, std::string_view(worker))
            .bind(6, std::string_view(step.status))
            .bind(7, duration_ms)
            .bind(8, pattern)
            .run();
      }
      {
        Statement& s = ix.insert_text;
        ScopedReset reset(s);
        s.bind(1, sqlite3_last_insert_rowid(db_->get()))
            .bind(2, std::string_view(step.message))
            .bind(3, step.error_details)
            .run();
      }
      if (whole_job) continue;
      RollupDelta& delta =
          deltas[RollupKey{floor_to(step.timestamp_ns, kHourNs), step.step, std::move(worker)}];
      delta.apply(step.status, duration_ms, +1);
      delta.expires_at_ns = std::max(delta.expires_at_ns, p.expires_at_ns);
    }
    ScopedReset reset(ix.indexed);
    ix.indexed.bind(1, p.id).run();
  }

  for (auto& [key, delta] : deltas) {
    const auto& [hour, stage, worker] = key;
    std::int64_t count = 0, failures = 0, skipped = 0, max_ms = 0, expires = 0;
    DurationHistogram histogram;
    {
      Statement& s = ix.select_rollup;
      ScopedReset reset(s);
      s.bind(1, hour).bind(2, std::string_view(stage)).bind(3, std::string_view(worker));
      if (s.step()) {
        count = s.int64(0);
        failures = s.int64(1);
        skipped = s.int64(2);
        max_ms = s.int64(3);
        if (!histogram.decode(s.blob(4))) {
          throw std::runtime_error("a damaged duration histogram for stage " + stage);
        }
        expires = s.int64(5);
      }
    }
    count = std::max<std::int64_t>(0, count + delta.count);
    failures = std::max<std::int64_t>(0, failures + delta.failures);
    skipped = std::max<std::int64_t>(0, skipped + delta.skipped);
    expires = std::max(expires, delta.expires_at_ns);
    for (std::int64_t d : delta.added) histogram.add(d);
    for (std::int64_t d : delta.removed) histogram.add(d, -1);
    if (!delta.added.empty()) max_ms = std::max(max_ms, *delta.added.rbegin());
    if (!delta.removed.empty() && *delta.removed.rbegin() >= max_ms) {
      // The longest step may have left: ask the facts (rare: a step stored again with a
      // different duration).
      Statement& s = ix.max_in_hour;
      ScopedReset reset(s);
      s.bind(1, hour).bind(2, std::string_view(stage)).bind(3, std::string_view(worker));
      max_ms = s.step() && !s.is_null(0) ? s.int64(0) : 0;
    }
    if (count == 0 && skipped == 0) {
      Statement& s = ix.delete_rollup;
      ScopedReset reset(s);
      s.bind(1, hour).bind(2, std::string_view(stage)).bind(3, std::string_view(worker)).run();
      continue;
    }
    std::string bytes = histogram.encode();
    Statement& s = ix.put_rollup;
    ScopedReset reset(s);
    s.bind(1, hour)
        .bind(2, std::string_view(stage))
        .bind(3, std::string_view(worker))
        .bind(4, count)
        .bind(5, failures)
        .bind(6, skipped)
        .bind(7, max_ms)
        .bind_blob(8, bytes)
        .bind(9, expires)
        .run();
  }
  return more;
}

void SqliteStore::purge_index_locked(std::int64_t now_ns) {
  IndexStatements& ix = index_statements();
  ScopedReset reset(ix.purge_rollups);
  ix.purge_rollups.bind(1, now_ns).run();
}

Result<std::vector<StageStats>> SqliteStore::stage_stats(const StageStatsQuery& query,
                                                         std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    catch_up_locked();
    detail::StageStatsSum sum(query.by_worker, query.daily);
    Statement& s = index_statements().rollups;
    ScopedReset reset(s);
    s.bind(1, floor_to(query.since_ns, kHourNs)).bind(2, query.until_ns).bind(3, now_ns);
    while (s.step()) {
      detail::DurationTally hour;
      if (!hour.histogram.decode(s.blob(7))) {
        throw std::runtime_error("a damaged duration histogram for stage " + s.text(1));
      }
      hour.count = s.int64(3);
      hour.failures = s.int64(4);
      hour.skipped = s.int64(5);
      hour.max_ms = s.int64(6);
      sum.add(s.int64(0), s.text(1), s.text(2), hour);
    }
    return sum.rows();
  } catch (...) {
    return error("cannot read stage statistics");
  }
}

Result<std::vector<FailurePattern>> SqliteStore::failure_patterns(const FailureQuery& query,
                                                                  std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    catch_up_locked();
    Transaction tx(*db_, Transaction::Mode::Read);
    std::vector<FailurePattern> out;
    {
      Statement& s = index_statements().failure_groups;
      ScopedReset reset(s);
      s.bind(1, query.since_ns).bind(2, query.until_ns).bind(3, now_ns);
      s.bind(4, static_cast<std::int64_t>(std::min<std::size_t>(query.limit, 1'000'000)));
      while (s.step()) {
        FailurePattern& p = out.emplace_back();
        p.pattern = s.text(0);
        p.count = s.int64(1);
        p.first_seen_ns = s.int64(2);
        p.last_seen_ns = s.int64(3);
      }
    }
    // The failed steps of one pattern in the query's range: ?1 pattern, ?2 and ?3 the range.
    auto bind_pattern = [&](Statement& s, const FailurePattern& p) {
      s.bind(1, std::string_view(p.pattern))
          .bind(2, query.since_ns)
          .bind(3, query.until_ns)
          .bind(4, now_ns);
    };
    for (FailurePattern& p : out) {
      {
        Statement& s = index_statements().failure_stages;
        ScopedReset reset(s);
        bind_pattern(s, p);
        while (s.step()) p.stages.push_back(s.text(0));
      }
      Statement& s = index_statements().failure_examples;
      ScopedReset reset(s);
      bind_pattern(s, p);
      while (p.tracking_ids.size() < 3 && s.step()) {
        if (p.example.empty()) p.example = s.is_null(1) ? s.text(2) : s.text(1);
        std::string id = s.text(0);
        if (std::find(p.tracking_ids.begin(), p.tracking_ids.end(), id) == p.tracking_ids.end()) {
          p.tracking_ids.push_back(std::move(id));
        }
      }
    }
    tx.commit();
    return out;
  } catch (...) {
    return error("cannot read failure patterns");
  }
}

}  // namespace stagelog::store
