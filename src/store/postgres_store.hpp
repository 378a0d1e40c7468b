#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "stagelog/store/postgres_store.hpp"
#include "stagelog/store/store.hpp"
#include "store/postgres.hpp"
#include "store/postgres_facts.hpp"

namespace stagelog::store {

// The shared Store on PostgreSQL (open_postgres_store in stagelog/store/postgres_store.hpp says
// what users see). Its answers are the SQLite store's, query for query: the conformance suite
// holds both to them.
//
// Tables (postgres_schema.cpp): executions, step_chunks (steps stored as the SQLite store
// stores them, store/step_chunk.hpp), step_facts (one row per step: what search, statistics
// and failure patterns read, derived before the write's transaction and stored in it), events
// (partitioned by day of expiry: retention drops a day's partition whole, postgres_schema.hpp),
// batches. Every string a user gives (ids, names, messages, JSON) is bytea: any byte, NUL and
// invalid UTF-8 included, compared byte for byte as SQLite compares text.
//
// Several stores on one database (one per `stagelog serve`) see each other's events through
// the feed, and elect one leader (store/postgres_feed.hpp).
//
// Threads: each call takes a connection of the pool for its duration. A tracking id's new
// attempts are numbered under a transaction-scoped advisory lock on the id, so that two
// servers adding attempts to one tracking id at once number them 1, 2 rather than 1, 1.
class PostgresStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 3;
  using Options = PostgresStoreOptions;

  // Connects once (the first connection of the pool) and creates or migrates the schema.
  // Throws stagelog::Error saying what failed.
  PostgresStore(std::string conninfo, Options options);
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

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
  // store/postgres_feed.hpp.
  std::unique_ptr<ChangeFeed> changes() override;
  std::unique_ptr<LeaderLock> leader_lock() override;

 private:
  // A connection of the pool, lent to one call; given back by the destructor. failed() after
  // an error: a connection found broken makes every idle one connect again before its next
  // use (they lost their server too).
  class Lease {
   public:
    Lease(PostgresStore& store, std::unique_ptr<detail::PgConnection> conn,
          std::uint64_t generation) noexcept;
    ~Lease();
    Lease(Lease&& other) noexcept
        : store_(other.store_), conn_(std::move(other.conn_)), generation_(other.generation_) {}
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    detail::PgConnection& operator*() const noexcept { return *conn_; }
    void failed() noexcept;
    // Connects again (PQreset). Throws PgError.
    void reconnect(std::uint64_t generation);

   private:
    PostgresStore& store_;
    std::unique_ptr<detail::PgConnection> conn_;
    std::uint64_t generation_;
  };
  struct Idle {
    std::unique_ptr<detail::PgConnection> conn;
    std::uint64_t generation;
  };

  // Waits for a free connection (or opens one, up to the bound), connected again if it was
  // lost. Throws PgError.
  Lease acquire();
  // Runs f(connection) on a lent connection; any exception becomes the Result error of
  // `operation`.
  template <typename T, typename F>
  Result<T> call(std::string_view operation, F&& f);
  // In a catch block: the exception being handled as the Result error of `operation`.
  Error error(std::string_view operation) const;

  // An attempt to write, with what is computed from it alone before the transaction
  // begins, and what the transaction learns (its row's id, whether the row is new).
  struct PreparedExecution {
    const ExecutionWrite* write = nullptr;
    std::int64_t first = 0;  // steps_from.
    std::vector<std::string> metadata_pairs;
    std::string chunk_json;  // The steps written, as one chunk (empty: none).
    std::vector<detail::StepFact> facts;
    std::int64_t id = 0;
    bool added = false;
  };
  static PreparedExecution prepare(const ExecutionWrite& write);

  // A write's statements go through one pipeline (detail::PgPipeline), inside the caller's
  // transaction. send_* queue statements; the caller reads their results at its next sync.
  // postgres_store.cpp: the attempts (rows, chunks and facts), syncing as it needs their ids.
  // Throw PgError or std::runtime_error.
  static void put_locked(detail::PgPipeline& pipe, std::span<PreparedExecution> executions);
  static void put_round(detail::PgPipeline& pipe, std::span<PreparedExecution*> round);
  static std::optional<Execution> read_execution(detail::PgConnection& c, const std::string& where,
                                                 const detail::PgParams& params);
  static void read_steps(detail::PgConnection& c, std::int64_t id, const std::string& execution_id,
                         std::vector<Step>& steps);
  // postgres_events.cpp: the INSERT of events (its result: the ranges of their ids, as
  // read_id_ranges reads them) and of a batch key (checked by check_batch).
  static std::size_t send_events(detail::PgPipeline& pipe, std::span<const OwnedEvent> events,
                                 std::int64_t expires_at_ns);
  static std::size_t send_batch(detail::PgPipeline& pipe, const BatchRecord& batch,
                                std::int64_t expires_at_ns);
  static void check_batch(const detail::PgResult& result, const BatchRecord& batch);
  // postgres_index.cpp: the INSERT of the attempts' step facts (their ids known).
  static void send_facts(detail::PgPipeline& pipe, std::span<PreparedExecution* const> executions);

  std::string conninfo_;
  std::string where_;   // user@host/db, for messages.
  std::string origin_;  // This store's id in the feed: random, 16 hex digits.
  Options options_;
  std::mutex mutex_;
  std::condition_variable free_;
  std::vector<Idle> idle_;
  std::size_t open_ = 0;
  std::uint64_t generation_ = 0;
};

template <typename T, typename F>
Result<T> PostgresStore::call(std::string_view operation, F&& f) {
  try {
    Lease lease = acquire();
    try {
      if constexpr (std::is_void_v<T>) {
        f(*lease);
        return {};
      } else {
        return f(*lease);
      }
    } catch (...) {
      lease.failed();
      throw;
    }
  } catch (...) {
    return error(operation);
  }
}

}  // namespace stagelog::store
