#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "stagelog/store/sqlite_store.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {
class Database;
class Statement;
class Checkpointer;
class Purger;
}  // namespace stagelog::detail

namespace stagelog::store {

// The embedded Store: one SQLite file in WAL mode. A write returns after its transaction is
// committed and (with Options::synchronous_full, the default) fsynced, so an acknowledged
// write survives a power cut. One connection, serialized by a mutex: every method may be
// called from any thread. Other processes may open the same file; they wait up to
// Options::busy_timeout for each other's write transactions.
//
// The file carries its schema version; a file written by a newer stagelog is refused rather
// than altered, and so is a file that is not SQLite or is another application's database.
// open_sqlite_store() (stagelog/store/sqlite_store.hpp) makes one for users of the library.
class SqliteStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 4;

  using Options = SqliteStoreOptions;

  // Opens the file, creating it (and its schema) when missing. Throws stagelog::Error naming
  // the path: its folder does not exist, the file is not a stagelog store, its schema is
  // newer than kSchemaVersion, or SQLite cannot open it.
  explicit SqliteStore(const std::filesystem::path& path);
  SqliteStore(const std::filesystem::path& path, Options options);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<void> put_execution(const Execution& execution, std::int64_t expires_at_ns) override;
  Result<std::optional<Execution>> latest(std::string_view tracking_id,
                                          std::int64_t now_ns) override;
  Result<std::optional<Execution>> attempt(std::string_view tracking_id, int n,
                                           std::int64_t now_ns) override;
  Result<std::vector<AttemptSummary>> attempts(std::string_view tracking_id,
                                               std::int64_t now_ns) override;
  Result<void> append_events(std::span<const OwnedEvent> events,
                             std::int64_t expires_at_ns) override;
  Result<void> write(std::span<const EventsWrite> events,
                     std::span<const ExecutionWrite> executions) override;
  Result<std::optional<BatchRecord>> batch(std::string_view key, std::int64_t now_ns) override;
  Result<std::vector<OwnedEvent>> events(std::string_view run, std::int64_t now_ns,
                                         std::size_t limit) override;
  Result<std::vector<ExecutionSummary>> list_executions(const ExecutionQuery& query,
                                                        std::int64_t now_ns) override;
  Result<std::vector<StoredEvent>> event_page(std::string_view run, std::optional<Position> after,
                                              std::size_t limit, std::int64_t now_ns) override;
  Result<std::vector<StageStats>> stage_stats(const StageStatsQuery& query,
                                              std::int64_t now_ns) override;
  Result<std::vector<FailurePattern>> failure_patterns(const FailureQuery& query,
                                                       std::int64_t now_ns) override;
  Result<std::size_t> purge(std::int64_t now_ns) override;

  // ExecutionQuery::text as the FTS5 query the store runs: each word quoted, so that nothing
  // in the text is query syntax. "" when the text holds no word (then it matches nothing).
  static std::string search_query(std::string_view text);

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  struct Statements;
  struct EventStatements;
  struct IndexStatements;
  struct BatchStatements;
  class BatchReader;
  class Indexer;

  // With mutex_ held, inside a write transaction. Throw SqliteError or std::runtime_error.
  // append_locked, like append_events, events and event_page, is in sqlite_events.cpp.
  void put_locked(const Execution& execution, std::int64_t expires_at_ns, std::size_t steps_from);
  void append_locked(std::span<const OwnedEvent> events, std::int64_t expires_at_ns);
  // Stores a batch key (sqlite_batches.cpp); throws std::runtime_error when it is taken.
  void put_batch_locked(const BatchRecord& batch, std::int64_t expires_at_ns);
  // With mutex_ held. Throw SqliteError or std::runtime_error.
  std::optional<Execution> read_execution(detail::Statement& row);
  void read_steps(std::int64_t id, const std::string& execution_id, std::vector<Step>& steps);
  // In a catch block: the exception being handled as the Result error of `operation`.
  Error error(std::string_view operation) const;

  // The step index (sqlite_index.cpp). index_locked indexes up to max_attempts marked
  // attempts, inside the caller's write transaction, and says whether more are marked;
  // catch_up_locked indexes them all in a transaction of its own. index_batch is the
  // indexer thread's: one batch, one transaction, under the mutex.
  void start_indexer();
  void stop_indexer() noexcept;
  void written();  // After a commit that marked attempts.
  bool index_batch(std::int64_t max_attempts);
  bool index_locked(std::int64_t max_attempts);
  void catch_up_locked();
  void purge_index_locked(std::int64_t now_ns);
  IndexStatements& index_statements();  // With mutex_ held. Throws SqliteError.
  // True when fewer than 2000 steps have `column` ("worker" or "stage") = value.
  bool few_steps_locked(const char* column, const std::string& value);

  std::filesystem::path path_;
  std::mutex mutex_;
  std::unique_ptr<detail::Database> db_;
  std::unique_ptr<Statements> st_;  // Prepared once; destroyed before db_.
  std::unique_ptr<EventStatements> ev_;
  std::unique_ptr<IndexStatements> ix_;
  std::unique_ptr<BatchStatements> bt_;
  // batch() reads on a connection of its own, so that looking a key up never waits for a
  // commit on the writing connection (WAL: readers see the last commit).
  std::unique_ptr<BatchReader> batch_reader_;
  std::unique_ptr<detail::Purger> purger_;  // Prepared at the first purge().
  std::unique_ptr<Indexer> indexer_;        // Stopped first by the destructor.
  // Copies the WAL into the database file on a connection and thread of its own, so that
  // commits do not; declared last: it is stopped before the writing connection closes.
  std::unique_ptr<detail::Checkpointer> checkpointer_;
};

}  // namespace stagelog::store
