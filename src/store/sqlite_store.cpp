#include "store/sqlite_store.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "format/format.hpp"
#include "store/sqlite.hpp"
#include "store/sqlite_index.hpp"
#include "store/step_chunk.hpp"

namespace stagelog::store {

using detail::Database;
using detail::ScopedReset;
using detail::SqliteError;
using detail::Statement;
using detail::Transaction;

namespace {

// Version 3. Executions: one row per attempt; `id` is the insertion order, `attempt` the
// number shown to users; steps_count and final_status summarize its steps. A tracking id's
// attempts are found through the UNIQUE index and sorted there (they are few). Steps are
// stored in chunks (store/step_chunk.hpp): each write adds one row with the steps it adds,
// seq being the first one's position. Chunks hang off their attempt and go with it; they are
// a rowid table, whose rows stay on their page up to about 4 KB (a WITHOUT ROWID table spills
// a row past about 1 KB into overflow pages, and a run's chunk is often that big). Events:
// one row per raw event, fields as a JSON object in JSONL's conventions.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
  id INTEGER PRIMARY KEY,
  tracking_id TEXT NOT NULL,
  execution_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  started_at_ns INTEGER NOT NULL,
  completed_at_ns INTEGER,
  duration_ms INTEGER,
  metadata_json TEXT NOT NULL,
  expires_at_ns INTEGER NOT NULL,
  steps_count INTEGER NOT NULL DEFAULT 0,
  final_status TEXT,
  index_from INTEGER,
  UNIQUE (tracking_id, execution_id)
);
CREATE INDEX IF NOT EXISTS executions_by_expiry ON executions (expires_at_ns);
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (started_at_ns, id);
CREATE TABLE IF NOT EXISTS step_chunks (
  id INTEGER PRIMARY KEY,
  execution INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  count INTEGER NOT NULL,
  steps_json TEXT NOT NULL,
  UNIQUE (execution, seq)
);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  ts_ns INTEGER NOT NULL,
  kind TEXT NOT NULL,
  level TEXT NOT NULL,
  status TEXT,
  run TEXT NOT NULL,
  worker TEXT NOT NULL,
  component TEXT NOT NULL,
  stage TEXT NOT NULL,
  message TEXT NOT NULL,
  elapsed_ns INTEGER,
  fields_json TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  fields_in_message INTEGER NOT NULL,
  expires_at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run, ts_ns, id);
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expires_at_ns);
)sql";

// Version 3: the step index (sqlite_index.cpp), derived from the steps and rebuilt from them.
// executions.index_from is the first step of the attempt not indexed yet (NULL: all are).
constexpr const char* kIndexSchema = R"sql(
CREATE INDEX IF NOT EXISTS executions_to_index ON executions (id) WHERE index_from IS NOT NULL;
CREATE TABLE IF NOT EXISTS step_facts (
  id INTEGER PRIMARY KEY,
  execution INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  n INTEGER NOT NULL,
  ts_ns INTEGER NOT NULL,
  stage TEXT NOT NULL,
  worker TEXT NOT NULL,
  status TEXT NOT NULL,
  duration_ms INTEGER,
  pattern TEXT,
  UNIQUE (execution, n)
);
CREATE INDEX IF NOT EXISTS step_facts_by_worker ON step_facts (worker, execution);
CREATE INDEX IF NOT EXISTS step_facts_by_stage ON step_facts (stage, execution);
CREATE INDEX IF NOT EXISTS step_facts_failed ON step_facts (ts_ns, pattern)
  WHERE status = 'failed';
CREATE INDEX IF NOT EXISTS step_facts_by_pattern ON step_facts (pattern, ts_ns)
  WHERE status = 'failed';
CREATE VIRTUAL TABLE IF NOT EXISTS step_text USING fts5 (message, error_details,
  tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS step_facts_text AFTER DELETE ON step_facts BEGIN
  DELETE FROM step_text WHERE rowid = old.id;
END;
CREATE TABLE IF NOT EXISTS stage_rollups (
  hour_ns INTEGER NOT NULL,
  stage TEXT NOT NULL,
  worker TEXT NOT NULL,
  count INTEGER NOT NULL,
  failures INTEGER NOT NULL,
  skipped INTEGER NOT NULL,
  max_ms INTEGER NOT NULL,
  histogram BLOB NOT NULL,
  expires_at_ns INTEGER NOT NULL,
  PRIMARY KEY (hour_ns, stage, worker)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stage_rollups_by_expiry ON stage_rollups (expires_at_ns);
)sql";

constexpr const char* kExecutionColumns =
    "id, tracking_id, execution_id, started_at_ns, completed_at_ns, duration_ms, metadata_json";

constexpr std::size_t kEventsPerInsert = 20;
// What read_event_row reads, in order; the row's id last.
constexpr const char* kEventColumnsRead =
    "ts_ns, kind, level, status, run, worker, component, stage, message, elapsed_ns, "
    "fields_json, pid, host, fields_in_message, id";
constexpr int kEventColumns = 15;

// INSERT INTO events (...) VALUES (?,...),(?,...)... for `rows` rows.
std::string sql_insert_events(std::size_t rows) {
  std::string sql =
      "INSERT INTO events (ts_ns, kind, level, status, run, worker, component, stage, message, "
      "elapsed_ns, fields_json, pid, host, fields_in_message, expires_at_ns) VALUES ";
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r == 0 ? "(" : ",(";
    for (int c = 0; c < kEventColumns; ++c) sql += c == 0 ? "?" : ",?";
    sql += ')';
  }
  return sql;
}

std::string sql_select_execution(const char* where_order) {
  return std::string("SELECT ") + kExecutionColumns + " FROM executions " + where_order;
}

// Reads the fields back with the JSONL reader, so both agree on every number and string.
bool read_fields(const std::string& json, OwnedEvent& out) {
  std::string line = R"({"ts_ns":0,"kind":"log","fields":)" + json + "}";
  auto parsed = parse_json_event(line);
  if (!parsed) return false;
  for (const Field& f : parsed->fields()) out.add_field(f.key, f.value);
  return true;
}

std::string_view nonempty_or(std::string_view s, std::string_view fallback) {
  return s.empty() ? fallback : s;
}

// Version 1 kept one row per step (table steps); version 2 keeps them in chunks. Each attempt's
// steps become one chunk, in the open write transaction.
void migrate_from_1(Database& db) {
  db.exec(
      "ALTER TABLE executions ADD COLUMN steps_count INTEGER NOT NULL DEFAULT 0;"
      "ALTER TABLE executions ADD COLUMN final_status TEXT;"
      "CREATE TABLE step_chunks (execution INTEGER NOT NULL REFERENCES executions (id) ON "
      "DELETE CASCADE, seq INTEGER NOT NULL, count INTEGER NOT NULL, steps_json TEXT NOT NULL, "
      "PRIMARY KEY (execution, seq)) WITHOUT ROWID;"
      "DROP INDEX executions_by_start; DROP INDEX executions_by_attempt;"
      "CREATE INDEX executions_by_time ON executions (started_at_ns, id);");
  Statement rows(db,
                 "SELECT execution, step, timestamp_ns, status, message, error_details, "
                 "custom_json FROM steps ORDER BY execution, seq");
  Statement insert(db,
                   "INSERT INTO step_chunks (execution, seq, count, steps_json) "
                   "VALUES (?1, 0, ?2, ?3)");
  Statement summary(db, "UPDATE executions SET steps_count = ?2, final_status = ?3 WHERE id = ?1");
  std::vector<Step> steps;
  std::int64_t execution = 0;
  auto flush = [&] {
    if (steps.empty()) return;
    std::string json;
    detail::encode_steps(steps, json);
    auto count = static_cast<std::int64_t>(steps.size());
    insert.bind(1, execution).bind(2, count).bind(3, std::string_view(json)).run();
    insert.reset();
    summary.bind(1, execution).bind(2, count).bind(3, std::string_view(steps.back().status)).run();
    summary.reset();
    steps.clear();
  };
  while (rows.step()) {
    if (rows.int64(0) != execution) {
      flush();
      execution = rows.int64(0);
    }
    Step& step = steps.emplace_back();
    step.step = rows.text(1);
    step.timestamp_ns = rows.int64(2);
    step.status = rows.text(3);
    step.message = rows.text(4);
    step.error_details = rows.opt_text(5);
    step.custom_json = rows.text(6);
  }
  flush();
  db.exec("DROP TABLE steps; UPDATE schema_version SET version = 2;");
}

// Version 3 keeps chunks in a rowid table and adds the step index; every attempt with steps is
// indexed by the indexer.
void migrate_from_2(Database& db) {
  db.exec(
      "CREATE TABLE step_chunks_3 (id INTEGER PRIMARY KEY, execution INTEGER NOT NULL "
      "REFERENCES executions (id) ON DELETE CASCADE, seq INTEGER NOT NULL, count INTEGER NOT "
      "NULL, steps_json TEXT NOT NULL, UNIQUE (execution, seq));"
      "INSERT INTO step_chunks_3 (execution, seq, count, steps_json) SELECT execution, seq, "
      "count, steps_json FROM step_chunks ORDER BY execution, seq;"
      "DROP TABLE step_chunks;"
      "ALTER TABLE step_chunks_3 RENAME TO step_chunks;");
  db.exec("ALTER TABLE executions ADD COLUMN index_from INTEGER;");
  db.exec(kIndexSchema);
  db.exec(
      "UPDATE executions SET index_from = 0 WHERE steps_count > 0;"
      "UPDATE schema_version SET version = 3;");
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
        insert_event(db, sql_insert_events(1)),
        insert_events(db, sql_insert_events(kEventsPerInsert)),
        select_events(db, std::string("SELECT ") + kEventColumnsRead +
                              " FROM events WHERE run = ?1 AND expires_at_ns > ?2 "
                              "ORDER BY ts_ns, id LIMIT ?3"),
        select_events_after(db, std::string("SELECT ") + kEventColumnsRead +
                                    " FROM events WHERE run = ?1 AND expires_at_ns > ?2 AND "
                                    "(ts_ns, id) > (?4, ?5) ORDER BY ts_ns, id LIMIT ?3"),
        count_worker_steps(db,
                           "SELECT COUNT(*) FROM (SELECT 1 FROM step_facts WHERE worker = ?1 "
                           "LIMIT ?2)"),
        count_stage_steps(db,
                          "SELECT COUNT(*) FROM (SELECT 1 FROM step_facts WHERE stage = ?1 "
                          "LIMIT ?2)"),
        purge_events(db, "DELETE FROM events WHERE expires_at_ns <= ?1") {}

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
  Statement insert_event;
  Statement insert_events;          // kEventsPerInsert rows.
  std::vector<std::string> fields;  // The fields' JSON of the rows being inserted.
  Statement select_events;
  Statement select_events_after;
  Statement count_worker_steps;  // Up to a limit: is a worker one of few steps?
  Statement count_stage_steps;
  // Prepared at the first purge: deleting attempts cascades to the step index, whose FTS5
  // table a damaged file may not open, and that must not keep the file from opening.
  std::unique_ptr<Statement> purge_executions;
  Statement purge_events;
};

// SQLite's default checkpoints the WAL inside the commit that takes it past 1000 pages: the
// writer copies those pages into the database file (and fsyncs it) before it acknowledges.
// Here a commit past kCheckpointPages only wakes this thread, which checkpoints (PASSIVE: it
// never blocks the writer) on its own connection. A checkpoint that runs beside a busy writer
// cannot reset the WAL (frames keep arriving), so past kWriterCheckpointPages the writer
// checkpoints as before: the WAL stays bounded, and most of its pages are copied by then.
class SqliteStore::Checkpointer {
 public:
  static constexpr int kCheckpointPages = 4000;
  static constexpr int kWriterCheckpointPages = 20000;

  Checkpointer(const std::string& path, std::chrono::milliseconds busy_timeout)
      : db_(path, /*create=*/false) {
    sqlite3_busy_timeout(db_.get(), static_cast<int>(busy_timeout.count()));
    // A connection checkpoints only once it has opened the WAL, which a first read does.
    db_.exec("SELECT 1 FROM sqlite_schema LIMIT 1");
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "stagelog-ckpt");
      sigset_t all;  // Process signals are for the application's threads, not this one.
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, nullptr);
      loop();
    });
  }
  ~Checkpointer() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // sqlite3_wal_hook's callback: runs in the writer's commit, with `pages` in the WAL.
  static int on_commit(void* self, sqlite3* db, const char* schema, int pages) {
    if (pages >= kWriterCheckpointPages) {
      sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (pages >= kCheckpointPages) {
      static_cast<Checkpointer*>(self)->request();
    }
    return SQLITE_OK;  // A checkpoint that could not run is tried again at a later commit.
  }

 private:
  void request() {
    {
      std::lock_guard lock(mutex_);
      wanted_ = true;
    }
    wake_.notify_one();
  }

  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || wanted_; });
      if (stopping_) return;
      wanted_ = false;
      lock.unlock();
      sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      lock.lock();
    }
  }

  detail::Database db_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool wanted_ = false;
  bool stopping_ = false;
  std::thread thread_;
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
  try {
    db_ = std::make_unique<Database>(path.string(), /*create=*/true);
    sqlite3_busy_timeout(db_->get(), static_cast<int>(options.busy_timeout.count()));

    // Read before writing anything: a file that is not SQLite fails here ("file is not a
    // database"), and a newer or foreign schema is refused untouched.
    auto check_schema = [&] {
      Statement tables(*db_,
                       "SELECT COUNT(*), COALESCE(SUM(name = 'schema_version'), 0) FROM "
                       "sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
                       "ESCAPE '\\'");
      tables.step();
      std::int64_t count = tables.int64(0);
      bool versioned = tables.int64(1) > 0;
      if (count > 0 && !versioned) {
        throw Error(where + "it is an SQLite database of another application (no " +
                    "schema_version table); stagelog will not add its tables to it");
      }
      if (!versioned) return std::int64_t{0};
      Statement version(*db_, "SELECT MAX(version) FROM schema_version");
      version.step();
      if (version.is_null(0)) return std::int64_t{0};
      std::int64_t v = version.int64(0);
      if (v > kSchemaVersion) {
        throw Error(where + "its schema version is " + std::to_string(v) +
                    ", newer than this stagelog supports (" + std::to_string(kSchemaVersion) +
                    "); open it with a newer stagelog");
      }
      return v;
    };
    check_schema();

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
    // 64 MiB of page cache instead of SQLite's 2: the indexes that ingest and the step index
    // update stay in memory, rather than being read back from the OS for every batch.
    db_->exec("PRAGMA cache_size = -65536");

    Transaction tx(*db_);
    std::int64_t version = check_schema();  // Again under the write lock: another process
                                            // may have created or migrated it meanwhile.
    if (version == 0) {
      db_->exec(kSchema);
      db_->exec(kIndexSchema);
      Statement insert(*db_, "INSERT INTO schema_version (version) VALUES (?1)");
      insert.bind(1, std::int64_t{kSchemaVersion}).run();
    } else {
      if (version == 1) migrate_from_1(*db_);
      if (version <= 2) migrate_from_2(*db_);
    }
    tx.commit();
    st_ = std::make_unique<Statements>(*db_);
    start_indexer();
    checkpointer_ = std::make_unique<Checkpointer>(path.string(), options.busy_timeout);
    sqlite3_wal_hook(db_->get(), &Checkpointer::on_commit, checkpointer_.get());
  } catch (const SqliteError& e) {
    throw Error(where + e.message);
  }
}

SqliteStore::~SqliteStore() {
  stop_indexer();
  if (db_ != nullptr) sqlite3_wal_hook(db_->get(), nullptr, nullptr);
}

Error SqliteStore::error(std::string_view operation) const {
  std::string message = "sqlite store " + path_.string() + ": " + std::string(operation) + ": ";
  try {
    throw;
  } catch (const SqliteError& e) {
    message += e.message;
  } catch (const std::exception& e) {
    message += e.what();
  }
  return Error(message);
}

void SqliteStore::put_locked(const Execution& execution, std::int64_t expires_at_ns,
                             std::size_t steps_from) {
  constexpr auto kMaxSeq = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  if (steps_from > kMaxSeq - execution.steps.size()) {
    throw std::runtime_error("steps_from " + std::to_string(steps_from) + " is out of range");
  }
  auto first = static_cast<std::int64_t>(steps_from);
  auto count = first + static_cast<std::int64_t>(execution.steps.size());
  std::int64_t stored = 0;  // Steps of this attempt in the store before this write.
  // The steps kept must all be there, or the attempt would have a gap.
  if (first > 0) {
    Statement& s = st_->select_steps_count;
    ScopedReset reset(s);
    s.bind(1, std::string_view(execution.tracking_id))
        .bind(2, std::string_view(execution.execution_id));
    if (s.step()) stored = s.int64(0);
    if (stored < first) {
      throw std::runtime_error("steps_from is " + std::to_string(first) + " but attempt " +
                               execution.execution_id + " has " + std::to_string(stored) +
                               " steps stored");
    }
  }
  std::int64_t id;
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
  }
  // Steps from `first` on are replaced: chunks that start there or later go, and a chunk that
  // straddles `first` is cut. Appending to an attempt (stored == first) touches neither.
  if (first == 0 || stored > first) {
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
  Statement& s = st_->select_chunks;
  ScopedReset reset(s);
  s.bind(1, id);
  while (s.step()) {
    if (!detail::decode_steps(s.text(0), e.steps)) {
      throw std::runtime_error("attempt " + e.execution_id + " has a damaged step chunk");
    }
  }
  return e;
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
      a.final_status = s.is_null(5) ? "unknown" : s.text(5);
      a.step_count = static_cast<std::size_t>(s.int64(6));
      out.push_back(std::move(a));
    }
    return out;
  } catch (...) {
    return error("cannot list attempts");
  }
}

namespace {

// Binds one event as the row of the insert whose first parameter is `first`. `fields` holds
// the fields' JSON until the statement runs.
void bind_event(Statement& s, int first, const OwnedEvent& e, std::string& fields,
                std::int64_t expires_at_ns) {
  fields.clear();
  detail::append_json_fields(fields, e.fields());
  s.bind(first, e.ts_ns)
      .bind(first + 1, kind_name(e.kind))
      .bind(first + 2, level_json_name(e.level));
  if (e.status == Status::None) {
    s.bind_null(first + 3);
  } else {
    s.bind(first + 3, status_name(e.status));
  }
  s.bind(first + 4, std::string_view(e.run))
      .bind(first + 5, std::string_view(e.worker))
      .bind(first + 6, std::string_view(e.component))
      .bind(first + 7, std::string_view(e.stage))
      .bind(first + 8, std::string_view(e.message))
      .bind(first + 9, e.elapsed_ns)
      .bind(first + 10, std::string_view(fields))
      .bind(first + 11, e.pid)
      .bind(first + 12, std::string_view(e.host))
      .bind(first + 13, std::int64_t{e.fields_in_message ? 1 : 0})
      .bind(first + 14, expires_at_ns);
}

}  // namespace

void SqliteStore::append_locked(std::span<const OwnedEvent> events, std::int64_t expires_at_ns) {
  // kEventsPerInsert rows per statement while there are that many: a statement's own cost
  // (step, reset, the program's prologue) is paid once for them.
  std::vector<std::string>& fields = st_->fields;
  fields.resize(kEventsPerInsert);
  while (events.size() >= kEventsPerInsert) {
    Statement& s = st_->insert_events;
    ScopedReset reset(s);
    for (std::size_t i = 0; i < kEventsPerInsert; ++i) {
      bind_event(s, static_cast<int>(i) * kEventColumns + 1, events[i], fields[i], expires_at_ns);
    }
    s.run();
    events = events.subspan(kEventsPerInsert);
  }
  for (const OwnedEvent& e : events) {
    Statement& s = st_->insert_event;
    ScopedReset reset(s);
    bind_event(s, 1, e, fields[0], expires_at_ns);
    s.run();
  }
}

Result<void> SqliteStore::append_events(std::span<const OwnedEvent> events,
                                        std::int64_t expires_at_ns) {
  if (events.empty()) return {};
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    append_locked(events, expires_at_ns);
    tx.commit();
    return {};
  } catch (...) {
    return error("cannot store events");
  }
}

Result<void> SqliteStore::write(std::span<const EventsWrite> events,
                                std::span<const ExecutionWrite> executions) {
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    for (const EventsWrite& w : events) append_locked(w.events, w.expires_at_ns);
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

namespace {

// The event of a row of kEventColumnsRead. Throws std::runtime_error for a row no stagelog
// wrote.
OwnedEvent read_event_row(Statement& s) {
  OwnedEvent e;
  e.ts_ns = s.int64(0);
  std::string kind = s.text(1);
  std::string level = s.text(2);
  auto k = parse_kind(kind);
  auto l = parse_level(level);
  if (!k || !l) {
    throw std::runtime_error("unknown kind or level \"" + kind + "\" / \"" + level + "\"");
  }
  e.kind = *k;
  e.level = *l;
  if (!s.is_null(3)) {
    std::string status = s.text(3);
    auto st = parse_status(status);
    if (!st) throw std::runtime_error("unknown status \"" + status + "\"");
    e.status = *st;
  }
  e.run = s.text(4);
  e.worker = s.text(5);
  e.component = s.text(6);
  e.stage = s.text(7);
  e.message = s.text(8);
  e.elapsed_ns = s.opt_int64(9);
  std::string fields = s.text(10);
  if (!read_fields(fields, e)) {
    throw std::runtime_error("stored fields are not a JSON object: " +
                             std::string(nonempty_or(fields, "(empty)")));
  }
  e.pid = s.int64(11);
  e.host = s.text(12);
  e.fields_in_message = s.int64(13) != 0;
  return e;
}

std::int64_t sql_limit(std::size_t limit) {
  constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, kMax));
}

}  // namespace

Result<std::vector<OwnedEvent>> SqliteStore::events(std::string_view run, std::int64_t now_ns,
                                                    std::size_t limit) {
  std::lock_guard lock(mutex_);
  try {
    Statement& s = st_->select_events;
    ScopedReset reset(s);
    s.bind(1, run).bind(2, now_ns).bind(3, sql_limit(limit));
    std::vector<OwnedEvent> out;
    while (s.step()) out.push_back(read_event_row(s));
    return out;
  } catch (...) {
    return error("cannot read events");
  }
}

Result<std::vector<StoredEvent>> SqliteStore::event_page(std::string_view run,
                                                         std::optional<Position> after,
                                                         std::size_t limit, std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    Statement& s = after ? st_->select_events_after : st_->select_events;
    ScopedReset reset(s);
    s.bind(1, run).bind(2, now_ns).bind(3, sql_limit(limit));
    if (after) s.bind(4, after->ns).bind(5, after->seq);
    std::vector<StoredEvent> out;
    while (s.step()) {
      OwnedEvent e = read_event_row(s);
      Position at{e.ts_ns, s.int64(14)};
      out.push_back(StoredEvent{std::move(e), at});
    }
    return out;
  } catch (...) {
    return error("cannot read events");
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
  for (const auto& [key, value] : query.metadata) {
    if (!is_filterable_metadata_key(key)) {
      return Error("sqlite store " + path_.string() + ": cannot list executions: metadata key \"" +
                   key + "\" may hold only letters, digits, '_' and '-'");
    }
  }
  std::string words = query.text ? search_query(*query.text) : std::string();
  if (query.text && words.empty()) return std::vector<ExecutionSummary>{};  // No word: no match.

  std::lock_guard lock(mutex_);
  try {
    if (query.worker || query.stage || query.text) catch_up_locked();
    // One statement per shape of query, built here: every value is a bound parameter.
    std::string sql =
        "SELECT id, tracking_id, attempt, execution_id, started_at_ns, completed_at_ns, "
        "duration_ms, final_status, steps_count, metadata_json FROM executions "
        "WHERE expires_at_ns > ?1";
    int next = 2;
    auto param = [&] {
      std::string p = "?";  // Not "?" + ...: GCC 12 warns falsely (-Wrestrict) in release.
      p += std::to_string(next++);
      return p;
    };
    if (query.final_status) {
      sql += *query.final_status == "unknown" ? " AND final_status IS NULL"
                                              : " AND final_status = " + param();
    }
    if (query.since_ns) sql += " AND started_at_ns >= " + param();
    if (query.until_ns) sql += " AND started_at_ns < " + param();
    // A worker or stage of many steps: walk the attempts newest first and probe the index for
    // each (the first page is found early). One of few steps (or none): take its attempts from
    // the index and sort those, rather than walk every attempt to find them.
    auto step_filter = [&](const char* column, const std::string& value) {
      std::string p = param();
      if (few_steps_locked(column, value)) {
        sql += std::string(" AND id IN (SELECT execution FROM step_facts WHERE ") + column + " = " +
               p + ")";
      } else {
        sql += std::string(" AND EXISTS (SELECT 1 FROM step_facts f WHERE f.") + column + " = " +
               p + " AND f.execution = executions.id)";
      }
    };
    if (query.worker) step_filter("worker", *query.worker);
    if (query.stage) step_filter("stage", *query.stage);
    if (query.text) {
      sql +=
          " AND id IN (SELECT f.execution FROM step_text JOIN step_facts f ON f.id = "
          "step_text.rowid WHERE step_text MATCH " +
          param() + ")";
    }
    for (std::size_t i = 0; i < query.metadata.size(); ++i) {
      // The value as text: a string as it is, anything else as its JSON text.
      std::string path = param();
      std::string extract = "json_extract(metadata_json, " + path + ")";
      sql += " AND (CASE json_type(metadata_json, " + path +
             ") WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
             "WHEN 'integer' THEN CAST(" +
             extract + " AS TEXT) WHEN 'real' THEN CAST(" + extract + " AS TEXT) ELSE " + extract +
             " END) = " + param();
    }
    if (query.after) {
      std::string ns = param();
      std::string seq = param();
      sql += " AND (started_at_ns, id) < (" + ns + ", " + seq + ")";
    }
    sql += " ORDER BY started_at_ns DESC, id DESC LIMIT " + param();

    // The attempts and their steps from one snapshot.
    std::optional<Transaction> snapshot;
    if (query.with_steps) snapshot.emplace(*db_, Transaction::Mode::Read);
    Statement s(*db_, sql);
    int p = 1;
    s.bind(p++, now_ns);
    if (query.final_status && *query.final_status != "unknown") {
      s.bind(p++, std::string_view(*query.final_status));
    }
    if (query.since_ns) s.bind(p++, *query.since_ns);
    if (query.until_ns) s.bind(p++, *query.until_ns);
    if (query.worker) s.bind(p++, std::string_view(*query.worker));
    if (query.stage) s.bind(p++, std::string_view(*query.stage));
    if (query.text) s.bind(p++, std::string_view(words));
    std::vector<std::string> paths;
    paths.reserve(query.metadata.size());
    for (const auto& [key, value] : query.metadata) {
      std::string path = "$.\"";
      path += key;
      path += '"';
      paths.push_back(std::move(path));
      s.bind(p++, std::string_view(paths.back()));
      s.bind(p++, std::string_view(value));
    }
    if (query.after) {
      s.bind(p++, query.after->ns);
      s.bind(p++, query.after->seq);
    }
    s.bind(p++, sql_limit(query.limit));
    std::vector<ExecutionSummary> out;
    while (s.step()) {
      ExecutionSummary e;
      e.position = Position{s.int64(4), s.int64(0)};
      e.tracking_id = s.text(1);
      e.attempt.n = static_cast<int>(s.int64(2));
      e.attempt.execution_id = s.text(3);
      e.attempt.started_at_ns = s.int64(4);
      e.attempt.completed_at_ns = s.opt_int64(5);
      e.attempt.duration_ms = s.opt_int64(6);
      e.attempt.final_status = s.is_null(7) ? "unknown" : s.text(7);
      e.attempt.step_count = static_cast<std::size_t>(s.int64(8));
      e.metadata_json = s.text(9);
      out.push_back(std::move(e));
    }
    if (query.with_steps) {
      Statement& chunks = st_->select_chunks;
      for (ExecutionSummary& e : out) {
        ScopedReset reset(chunks);
        chunks.bind(1, e.position.seq);
        while (chunks.step()) {
          if (!detail::decode_steps(chunks.text(0), e.steps)) {
            throw std::runtime_error("attempt " + e.attempt.execution_id +
                                     " has a damaged step chunk");
          }
        }
      }
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
    std::size_t removed = 0;
    if (st_->purge_executions == nullptr) {
      st_->purge_executions =
          std::make_unique<Statement>(*db_, "DELETE FROM executions WHERE expires_at_ns <= ?1");
    }
    for (Statement* s : {st_->purge_executions.get(), &st_->purge_events}) {
      ScopedReset reset(*s);
      s->bind(1, now_ns).run();
      removed += static_cast<std::size_t>(db_->changes());  // Cascaded steps not counted.
    }
    purge_index_locked(now_ns);
    tx.commit();
    return removed;
  } catch (...) {
    return error("cannot purge");
  }
}

}  // namespace stagelog::store
