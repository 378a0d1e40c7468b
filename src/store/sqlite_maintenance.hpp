#pragma once

// The SQLite store's upkeep besides its writes: WAL checkpoints on a thread and connection of
// their own, and the retention purge of expired rows.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "store/sqlite.hpp"

namespace stagelog::detail {

// SQLite's default checkpoints the WAL inside the commit that takes it past 1000 pages: the
// writer copies those pages into the database file (and fsyncs it) before it acknowledges.
// Here a commit past kCheckpointPages only wakes this thread, which checkpoints (PASSIVE: it
// never blocks the writer) on its own connection. A checkpoint that runs beside a busy writer
// cannot reset the WAL (frames keep arriving), so past kWriterCheckpointPages the writer
// checkpoints as before: the WAL stays bounded, and most of its pages are copied by then.
class Checkpointer {
 public:
  static constexpr int kCheckpointPages = 4000;
  static constexpr int kWriterCheckpointPages = 20000;

  // Opens a connection of its own to `path` (the file `writer` has open) and hooks the
  // writer's commits. `writer` must outlive it: the destructor unhooks them, then joins the
  // thread. Throws SqliteError.
  Checkpointer(Database& writer, const std::string& path, std::chrono::milliseconds busy_timeout);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

 private:
  // sqlite3_wal_hook's callback: runs in the writer's commit, with `pages` in the WAL.
  static int on_commit(void* self, sqlite3* db, const char* schema, int pages);
  void request();
  void loop();

  Database& writer_;
  Database db_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool wanted_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// Removes expired attempts (their step chunks and step index facts go with them: ON DELETE
// CASCADE), expired events and expired batch keys; the step index purges its rollups itself. Runs
// in the caller's write transaction, from the thread that holds the store's mutex.
class Purger {
 public:
  // Prepared at the first purge rather than when the store opens: deleting attempts cascades
  // to the step index, whose FTS5 table a damaged file may not open, and that must not keep
  // the file from opening. Throws SqliteError.
  explicit Purger(Database& db);

  // What expired at now_ns (expires_at_ns <= now_ns): the attempts and events removed, an
  // attempt counting once whatever its steps. Throws SqliteError.
  std::size_t purge(std::int64_t now_ns);

 private:
  Database& db_;
  Statement executions_;
  Statement events_;
  Statement batches_;  // Not counted.
};

}  // namespace stagelog::detail
