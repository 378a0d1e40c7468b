#pragma once

// The SQLite store's step index, private to it: its prepared statements and the thread that
// indexes in the background (sqlite_index.cpp says what the index holds).

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "store/sqlite.hpp"
#include "store/sqlite_store.hpp"

namespace stagelog::store {

struct SqliteStore::IndexStatements {
  explicit IndexStatements(detail::Database& db);

  detail::Statement pending;
  detail::Statement old_facts;
  detail::Statement delete_facts;
  detail::Statement previous_ts;
  detail::Statement chunks;
  detail::Statement insert_fact;
  detail::Statement insert_text;
  detail::Statement indexed;
  detail::Statement select_rollup;
  detail::Statement max_in_hour;
  detail::Statement put_rollup;
  detail::Statement delete_rollup;
  detail::Statement rollups;
  detail::Statement failure_groups;
  detail::Statement failure_stages;
  detail::Statement failure_examples;
  detail::Statement purge_rollups;
};

// Indexes in the background, a batch per transaction: once writes pause for kQuiet, half the
// store's time at most (it waits as long as a batch took before the next), and while they go
// on a small batch every kTrickle only, so that a stream of writes keeps nearly all of the
// store's time. Queries do not wait for it: they index what is left themselves.
class SqliteStore::Indexer {
 public:
  static constexpr std::chrono::milliseconds kQuiet{200};
  static constexpr std::chrono::milliseconds kTrickle{1000};

  explicit Indexer(SqliteStore& store);
  ~Indexer();  // Joins the thread; a batch in progress finishes first.
  Indexer(const Indexer&) = delete;
  Indexer& operator=(const Indexer&) = delete;

  // A write committed something to index.
  void written();

 private:
  using Clock = std::chrono::steady_clock;
  void loop();

  SqliteStore& store_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool pending_ = true;  // What a previous process left unindexed, too.
  bool stopping_ = false;
  Clock::time_point last_write_{};
  Clock::time_point last_batch_{};
  std::thread thread_;
};

}  // namespace stagelog::store
