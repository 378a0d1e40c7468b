#include "store/sqlite_store.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "base/fd_io.hpp"
#include "store/sqlite.hpp"
#include "store/sqlite_batches.hpp"
#include "store/sqlite_events.hpp"
#include "store/sqlite_index.hpp"
#include "store/sqlite_maintenance.hpp"
#include "store/sqlite_query.hpp"
#include "store/sqlite_schema.hpp"
#include "store/step_chunk.hpp"
#include "store/store_common.hpp"

namespace stagelog::store {

using detail::Database;
using detail::ScopedReset;
using detail::SqliteError;
using detail::Statement;
using detail::Transaction;

namespace {

constexpr const char* kExecutionColumns =
    "id, tracking_id, execution_id, started_at_ns, completed_at_ns, duration_ms, metadata_json";

std::string sql_select_execution(const char* where_order) {
  return std::string("SELECT ") + kExecutionColumns + " FROM executions " + where_order;
}

}  // namespace

struct SqliteStore::Statements {
  explicit Statements(Database& db)
      : upsert_execution(db,
                         "INSERT INTO executions (tracking_id, execution_id, attempt, "
                         "started_at_ns, completed_at_ns, duration_ms, metadata_json, "
                         "expires_at_ns, steps_count, final_status, index_from) VALUES (?1, "
                         "?2, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM executions WHERE "
                         "tracking_id = ?1), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
                         "ON CONFLICT (tracking_id, execution_id) DO UPDATE SET "
                         "started_at_ns = excluded.started_at_ns, "
                         "completed_at_ns = excluded.completed_at_ns, "
                         "duration_ms = excluded.duration_ms, "
                         "metadata_json = excluded.metadata_json, "
                         "expires_at_ns = excluded.expires_at_ns, "
                         "steps_count = excluded.steps_count, "
                         "final_status = excluded.final_status, "
                         "index_from = MIN(COALESCE(index_from, excluded.index_from), "
                         "excluded.index_from) RETURNING id"),
        select_steps_count(db,
                           "SELECT steps_count FROM executions WHERE tracking_id = ?1 AND "
                           "execution_id = ?2"),
        delete_chunks(db, "DELETE FROM step_chunks WHERE execution = ?1 AND seq >= ?2"),
        select_chunk_before(db,
                            "SELECT seq, count, steps_json FROM step_chunks WHERE execution = ?1 "
                            "AND seq < ?2 ORDER BY seq DESC LIMIT 1"),
        update_chunk(db,
                     "UPDATE step_chunks SET count = ?3, steps_json = ?4 WHERE execution = ?1 "
                     "AND seq = ?2"),
        insert_chunk(db,
                     "INSERT INTO step_chunks (execution, seq, count, steps_json) "
                     "VALUES (?1, ?2, ?3, ?4)"),
        update_final_status(db, "UPDATE executions SET final_status = ?2 WHERE id = ?1"),
        select_chunks(db, "SELECT steps_json FROM step_chunks WHERE execution = ?1 ORDER BY seq"),
        select_latest(db, sql_select_execution("WHERE tracking_id = ?1 AND expires_at_ns > ?2 "
                                               "ORDER BY started_at_ns DESC, id DESC LIMIT 1")),
        select_attempt(db, sql_select_execution("WHERE tracking_id = ?1 AND attempt = ?2 AND "
                                                "expires_at_ns > ?3")),
        select_attempts(db,
                        "SELECT attempt, execution_id, started_at_ns, completed_at_ns, "
                        "duration_ms, final_status, steps_count FROM executions WHERE "
                        "tracking_id = ?1 AND expires_at_ns > ?2 ORDER BY attempt"),
        count_worker_steps(db,
                           "SELECT COUNT(*) FROM (SELECT 1 FROM step_facts WHERE worker = ?1 "
                           "LIMIT ?2)"),
        count_stage_steps(db,
                          "SELECT COUNT(*) FROM (SELECT 1 FROM step_facts WHERE stage = ?1 "
                          "LIMIT ?2)") {}

  Statement upsert_execution;
  Statement select_steps_count;
  Statement delete_chunks;
  Statement select_chunk_before;
  Statement update_chunk;
  Statement insert_chunk;
  Statement update_final_status;
  Statement select_chunks;
  Statement select_latest;
  Statement select_attempt;
  Statement select_attempts;
  Statement count_worker_steps;  // Up to a limit: is a worker one of few steps?
  Statement count_stage_steps;
};

SqliteStore::SqliteStore(const std::filesystem::path& path) : SqliteStore(path, Options{}) {}

SqliteStore::SqliteStore(const std::filesystem::path& path, Options options) : path_(path) {
  const std::string where = "cannot open " + path.string() + ": ";
  std::filesystem::path folder = path.parent_path();
  if (folder.empty()) folder = ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec)) {
    throw Error(where + "folder " + folder.string() + " does not exist");
  }
  // A new database file is made here with mode 0600: SQLite would make it 0644 (less the
  // umask), and it gives the -wal and -shm files it creates the database file's mode. An
  // existing file keeps the mode its owner gave it.
  detail::create_private_file(path);
  try {
    db_ = std::make_unique<Database>(path.string(), /*create=*/true);
    sqlite3_busy_timeout(db_->get(), static_cast<int>(options.busy_timeout.count()));

    // Read before writing anything: a file that is not SQLite fails here ("file is not a
    // database"), and a newer or foreign schema is refused untouched.
    detail::stored_schema_version(*db_, where);

    {
      Statement wal(*db_, "PRAGMA journal_mode = WAL");
      wal.step();
      if (wal.text(0) != "wal") {
        throw Error(where + "cannot switch to WAL mode (journal_mode is " + wal.text(0) + ")");
      }
    }
    db_->exec(options.synchronous_full ? "PRAGMA synchronous = FULL"
                                       : "PRAGMA synchronous = NORMAL");
    db_->exec("PRAGMA foreign_keys = ON");
    // Reads through a memory map of the file (up to 1 GiB of it), no copy into SQLite's page
    // cache, which stays at its default 2 MB and holds what a write changes. Measured in one
    // run each (bench/ingest, bench/query): a 64 MiB page cache instead made each ingest batch
    // cost the writer thread 2.2x (fresh 4 KB pages going cold through a large cache) for
    // reads no faster than through the map; the 2 MB cache alone made full-text and
    // failure-pattern queries 2-4x slower.
    db_->exec("PRAGMA mmap_size = 1073741824");

    Transaction tx(*db_);
    detail::create_or_migrate(*db_, where);
    tx.commit();
    st_ = std::make_unique<Statements>(*db_);
    ev_ = std::make_unique<EventStatements>(*db_);
    bt_ = std::make_unique<BatchStatements>(*db_);
    batch_reader_ = std::make_unique<BatchReader>(path.string(), options.busy_timeout);
    start_indexer();
    checkpointer_ =
        std::make_unique<detail::Checkpointer>(*db_, path.string(), options.busy_timeout);
  } catch (const SqliteError& e) {
    throw Error(where + e.message);
  }
}

SqliteStore::~SqliteStore() { stop_indexer(); }

Error SqliteStore::error(std::string_view operation) const {
  std::string message = "sqlite store " + path_.string() + ": " + std::string(operation) + ": ";
  try {
    throw;
  } catch (const SqliteError& e) {
    return Error(message + e.message, detail::sqlite_error_kind(e.code));
  } catch (const Error& e) {
    return Error(message + e.what(), e.kind());
  } catch (const std::exception& e) {
    message += e.what();
  }
  return Error(message);
}

void SqliteStore::put_locked(const Execution& execution, std::int64_t expires_at_ns,
                             std::size_t steps_from) {
  std::int64_t count = detail::steps_end(steps_from, execution.steps.size());
  auto first = static_cast<std::int64_t>(steps_from);
  std::int64_t stored = 0;  // Steps of this attempt in the store before this write.
  // The steps kept must all be there, or the attempt would have a gap.
  if (first > 0) {
    Statement& s = st_->select_steps_count;
    ScopedReset reset(s);
    s.bind(1, std::string_view(execution.tracking_id))
        .bind(2, std::string_view(execution.execution_id));
    if (s.step()) stored = s.int64(0);
    detail::check_steps_kept(first, stored, execution.execution_id);
  }
  std::int64_t id;
  // A row the upsert inserts (rather than updates) has no chunks yet: SQLite sets the last
  // insert rowid for an insert only, not for an upsert's update. (A new row whose id happens
  // to equal the previous rowid looks updated: its chunks are deleted, of which it has none.)
  const std::int64_t rowid_before = sqlite3_last_insert_rowid(db_->get());
  bool inserted = false;
  {
    Statement& s = st_->upsert_execution;
    ScopedReset reset(s);
    s.bind(1, std::string_view(execution.tracking_id))
        .bind(2, std::string_view(execution.execution_id))
        .bind(3, execution.started_at_ns)
        .bind(4, execution.completed_at_ns)
        .bind(5, execution.duration_ms)
        .bind(6, std::string_view(execution.metadata_json))
        .bind(7, expires_at_ns)
        .bind(8, count);
    if (!execution.steps.empty()) {
      s.bind(9, std::string_view(execution.steps.back().status));
    } else {
      s.bind_null(9);  // Set below when earlier steps stay.
    }
    s.bind(10, first);  // The step index goes over the steps from here again.
    s.step();
    id = s.int64(0);
    inserted = id != rowid_before && sqlite3_last_insert_rowid(db_->get()) == id;
  }
  // Steps from `first` on are replaced: chunks that start there or later go, and a chunk that
  // straddles `first` is cut. Appending to an attempt (stored == first) touches neither, nor
  // does a new attempt.
  if (!inserted && (first == 0 || stored > first)) {
    ScopedReset reset(st_->delete_chunks);
    st_->delete_chunks.bind(1, id).bind(2, first).run();
  }
  std::optional<std::string> last_kept_status;
  if (first > 0 && (stored > first || execution.steps.empty())) {
    Statement& s = st_->select_chunk_before;
    ScopedReset reset(s);
    s.bind(1, id).bind(2, first);
    if (s.step()) {
      std::int64_t seq = s.int64(0);
      std::vector<Step> steps;
      if (!detail::decode_steps(s.text(2), steps) ||
          static_cast<std::int64_t>(steps.size()) != s.int64(1)) {
        throw std::runtime_error("attempt " + execution.execution_id +
                                 " has a damaged step chunk at step " + std::to_string(seq));
      }
      if (seq + s.int64(1) > first) {
        steps.resize(static_cast<std::size_t>(first - seq));
        std::string json;
        detail::encode_steps(steps, json);
        ScopedReset update_reset(st_->update_chunk);
        st_->update_chunk.bind(1, id)
            .bind(2, seq)
            .bind(3, static_cast<std::int64_t>(steps.size()))
            .bind(4, std::string_view(json))
            .run();
      }
      if (!steps.empty()) last_kept_status = steps.back().status;
    }
  }
  if (!execution.steps.empty()) {
    std::string json;
    detail::encode_steps(execution.steps, json);
    ScopedReset reset(st_->insert_chunk);
    st_->insert_chunk.bind(1, id)
        .bind(2, first)
        .bind(3, static_cast<std::int64_t>(execution.steps.size()))
        .bind(4, std::string_view(json))
        .run();
  } else if (last_kept_status) {
    ScopedReset reset(st_->update_final_status);
    st_->update_final_status.bind(1, id).bind(2, std::string_view(*last_kept_status)).run();
  }
}

Result<void> SqliteStore::put_execution(const Execution& execution, std::int64_t expires_at_ns) {
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    put_locked(execution, expires_at_ns, 0);
    tx.commit();
    written();
    return {};
  } catch (...) {
    return error("cannot store execution");
  }
}

std::optional<Execution> SqliteStore::read_execution(Statement& row) {
  if (!row.step()) return std::nullopt;
  Execution e;
  std::int64_t id = row.int64(0);
  e.tracking_id = row.text(1);
  e.execution_id = row.text(2);
  e.started_at_ns = row.int64(3);
  e.completed_at_ns = row.opt_int64(4);
  e.duration_ms = row.opt_int64(5);
  e.metadata_json = row.text(6);
  read_steps(id, e.execution_id, e.steps);
  return e;
}

void SqliteStore::read_steps(std::int64_t id, const std::string& execution_id,
                             std::vector<Step>& steps) {
  Statement& s = st_->select_chunks;
  ScopedReset reset(s);
  s.bind(1, id);
  while (s.step()) {
    if (!detail::decode_steps(s.text(0), steps)) {
      throw std::runtime_error("attempt " + execution_id + " has a damaged step chunk");
    }
  }
}

Result<std::optional<Execution>> SqliteStore::latest(std::string_view tracking_id,
                                                     std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    // The row and its steps from one snapshot.
    Transaction tx(*db_, Transaction::Mode::Read);
    Statement& s = st_->select_latest;
    ScopedReset reset(s);
    s.bind(1, tracking_id).bind(2, now_ns);
    auto result = read_execution(s);
    tx.commit();
    return result;
  } catch (...) {
    return error("cannot read execution");
  }
}

Result<std::optional<Execution>> SqliteStore::attempt(std::string_view tracking_id, int n,
                                                      std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_, Transaction::Mode::Read);
    Statement& s = st_->select_attempt;
    ScopedReset reset(s);
    s.bind(1, tracking_id).bind(2, std::int64_t{n}).bind(3, now_ns);
    auto result = read_execution(s);
    tx.commit();
    return result;
  } catch (...) {
    return error("cannot read execution");
  }
}

Result<std::vector<AttemptSummary>> SqliteStore::attempts(std::string_view tracking_id,
                                                          std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    Statement& s = st_->select_attempts;
    ScopedReset reset(s);
    s.bind(1, tracking_id).bind(2, now_ns);
    std::vector<AttemptSummary> out;
    while (s.step()) {
      AttemptSummary a;
      a.n = static_cast<int>(s.int64(0));
      a.execution_id = s.text(1);
      a.started_at_ns = s.int64(2);
      a.completed_at_ns = s.opt_int64(3);
      a.duration_ms = s.opt_int64(4);
      a.final_status = s.is_null(5) ? std::string(detail::kUnknownFinalStatus) : s.text(5);
      a.step_count = static_cast<std::size_t>(s.int64(6));
      out.push_back(std::move(a));
    }
    return out;
  } catch (...) {
    return error("cannot list attempts");
  }
}

Result<void> SqliteStore::write(std::span<const EventsWrite> events,
                                std::span<const ExecutionWrite> executions) {
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    for (const EventsWrite& w : events) {
      if (w.batch != nullptr) put_batch_locked(*w.batch, w.expires_at_ns);
      append_locked(w.events, w.expires_at_ns);
    }
    for (const ExecutionWrite& w : executions) {
      put_locked(w.execution, w.expires_at_ns, w.steps_from);
    }
    tx.commit();
    if (!executions.empty()) written();
    return {};
  } catch (...) {
    return error("cannot store events and executions");
  }
}

bool SqliteStore::few_steps_locked(const char* column, const std::string& value) {
  constexpr std::int64_t kFew = 2000;
  Statement& s =
      std::string_view(column) == "worker" ? st_->count_worker_steps : st_->count_stage_steps;
  ScopedReset reset(s);
  s.bind(1, std::string_view(value)).bind(2, kFew);
  return s.step() && s.int64(0) < kFew;
}

Result<std::vector<ExecutionSummary>> SqliteStore::list_executions(const ExecutionQuery& query,
                                                                   std::int64_t now_ns) {
  if (auto why = detail::query_error(query)) {
    return Error("sqlite store " + path_.string() + ": cannot list executions: " + *why);
  }
  std::string words = query.text ? search_query(*query.text) : std::string();
  if (query.text && words.empty()) return std::vector<ExecutionSummary>{};  // No word: no match.

  std::lock_guard lock(mutex_);
  try {
    if (query.worker || query.stage || query.text) catch_up_locked();
    detail::ListingPlan plan;
    if (query.worker) plan.few_worker_steps = few_steps_locked("worker", *query.worker);
    if (query.stage) plan.few_stage_steps = few_steps_locked("stage", *query.stage);
    const detail::ListingQuery listing(query, words, plan, now_ns);

    // The attempts and their steps from one snapshot.
    std::optional<Transaction> snapshot;
    if (query.with_steps) snapshot.emplace(*db_, Transaction::Mode::Read);
    Statement s(*db_, listing.sql());
    listing.bind(s);
    std::vector<ExecutionSummary> out;
    while (s.step()) out.push_back(detail::ListingQuery::read_row(s));
    if (query.with_steps) {
      for (ExecutionSummary& e : out) read_steps(e.position.seq, e.attempt.execution_id, e.steps);
      snapshot->commit();
    }
    return out;
  } catch (...) {
    return error("cannot list executions");
  }
}

Result<std::size_t> SqliteStore::purge(std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    if (purger_ == nullptr) purger_ = std::make_unique<detail::Purger>(*db_);
    std::size_t removed = purger_->purge(now_ns);
    purge_index_locked(now_ns);
    tx.commit();
    return removed;
  } catch (...) {
    return error("cannot purge");
  }
}

std::string SqliteStore::search_query(std::string_view text) { return detail::fts5_query(text); }

std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& path,
                                         SqliteStoreOptions options) {
  return std::make_unique<SqliteStore>(path, options);
}

}  // namespace stagelog::store
