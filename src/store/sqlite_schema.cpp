#include "store/sqlite_schema.hpp"

#include <vector>

#include "stagelog/error.hpp"
#include "store/sqlite_store.hpp"
#include "store/step_chunk.hpp"

namespace stagelog::detail {

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

// Version 4: ingest batch keys (Store::write's EventsWrite::batch), each with the first answer
// to its batch, expiring with the batch's events.
constexpr const char* kBatchSchema = R"sql(
CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  stored_at_ns INTEGER NOT NULL,
  expires_at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_expiry ON batches (expires_at_ns);
)sql";

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

std::int64_t stored_schema_version(Database& db, const std::string& where) {
  Statement tables(db,
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
  if (!versioned) return 0;
  Statement version(db, "SELECT MAX(version) FROM schema_version");
  version.step();
  if (version.is_null(0)) return 0;
  std::int64_t v = version.int64(0);
  constexpr int kSchemaVersion = store::SqliteStore::kSchemaVersion;
  if (v > kSchemaVersion) {
    throw Error(where + "its schema version is " + std::to_string(v) +
                ", newer than this stagelog supports (" + std::to_string(kSchemaVersion) +
                "); open it with a newer stagelog");
  }
  return v;
}

void create_or_migrate(Database& db, const std::string& where) {
  std::int64_t version = stored_schema_version(db, where);
  if (version == 0) {
    db.exec(kSchema);
    db.exec(kIndexSchema);
    db.exec(kBatchSchema);
    Statement insert(db, "INSERT INTO schema_version (version) VALUES (?1)");
    insert.bind(1, std::int64_t{store::SqliteStore::kSchemaVersion}).run();
    return;
  }
  if (version == 1) migrate_from_1(db);
  if (version <= 2) migrate_from_2(db);
  if (version <= 3) {
    db.exec(kBatchSchema);
    db.exec("UPDATE schema_version SET version = 4;");
  }
}

}  // namespace stagelog::detail
