#include "store/postgres_schema.hpp"

#include <string>

#include "store/postgres_store.hpp"

namespace stagelog::detail {

namespace {

// The advisory lock under which the schema is created or migrated ("stagelog" in ASCII).
constexpr std::int64_t kSchemaLock = 0x737461'67656c6f67;

// Version 1. Executions: one row per attempt; `id` is the insertion order, `attempt` the number
// shown to users; steps_count and final_status summarize its steps; metadata_pairs holds
// "key\0value" for each filterable key of the metadata, its value as ExecutionQuery::metadata
// compares it. Steps in chunks (store/step_chunk.hpp), each write's steps one row. Step facts:
// one row per step, derived from the chunks in the same transaction: stage, worker, status,
// duration, error pattern, the error text of failed steps, and the words of its message and
// error details as a tsvector (GIN). Events: one row per raw event. Batches: ingest batch keys.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS executions (
  id BIGSERIAL PRIMARY KEY,
  tracking_id BYTEA NOT NULL,
  execution_id BYTEA NOT NULL,
  attempt BIGINT NOT NULL,
  started_at_ns BIGINT NOT NULL,
  completed_at_ns BIGINT,
  duration_ms BIGINT,
  metadata_json BYTEA NOT NULL,
  metadata_pairs BYTEA[] NOT NULL,
  expires_at_ns BIGINT NOT NULL,
  steps_count BIGINT NOT NULL DEFAULT 0,
  final_status BYTEA,
  UNIQUE (tracking_id, execution_id)
);
CREATE INDEX IF NOT EXISTS executions_by_expiry ON executions (expires_at_ns);
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (started_at_ns, id);
CREATE INDEX IF NOT EXISTS executions_by_attempt ON executions (tracking_id, attempt);
CREATE INDEX IF NOT EXISTS executions_by_metadata ON executions USING GIN (metadata_pairs);
CREATE TABLE IF NOT EXISTS step_chunks (
  execution BIGINT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  count BIGINT NOT NULL,
  steps_json BYTEA NOT NULL,
  PRIMARY KEY (execution, seq)
);
CREATE TABLE IF NOT EXISTS step_facts (
  id BIGSERIAL NOT NULL,
  execution BIGINT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  n BIGINT NOT NULL,
  ts_ns BIGINT NOT NULL,
  stage BYTEA NOT NULL,
  worker BYTEA NOT NULL,
  status BYTEA NOT NULL,
  duration_ms BIGINT,
  whole_job BOOLEAN NOT NULL,
  pattern BYTEA,
  message BYTEA,
  error_details BYTEA,
  words TSVECTOR NOT NULL,
  PRIMARY KEY (execution, n)
);
CREATE INDEX IF NOT EXISTS step_facts_by_worker ON step_facts (worker, execution);
CREATE INDEX IF NOT EXISTS step_facts_by_stage ON step_facts (stage, execution);
CREATE INDEX IF NOT EXISTS step_facts_by_time ON step_facts (ts_ns);
CREATE INDEX IF NOT EXISTS step_facts_failed ON step_facts (pattern, ts_ns)
  WHERE pattern IS NOT NULL;
CREATE INDEX IF NOT EXISTS step_facts_words ON step_facts USING GIN (words);
CREATE TABLE IF NOT EXISTS events (
  id BIGSERIAL PRIMARY KEY,
  ts_ns BIGINT NOT NULL,
  kind TEXT NOT NULL,
  level TEXT NOT NULL,
  status TEXT,
  run BYTEA NOT NULL,
  worker BYTEA NOT NULL,
  component BYTEA NOT NULL,
  stage BYTEA NOT NULL,
  message BYTEA NOT NULL,
  elapsed_ns BIGINT,
  fields_json BYTEA NOT NULL,
  pid BIGINT NOT NULL,
  host BYTEA NOT NULL,
  fields_in_message BOOLEAN NOT NULL,
  expires_at_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run, ts_ns, id);
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expires_at_ns);
CREATE TABLE IF NOT EXISTS batches (
  key BYTEA PRIMARY KEY,
  status BIGINT NOT NULL,
  body BYTEA NOT NULL,
  stored_at_ns BIGINT NOT NULL,
  expires_at_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_expiry ON batches (expires_at_ns);
)sql";

// Version 2: the change feed (store/postgres_feed.hpp), one row per range of a write's events.
constexpr const char* kFeedSchema = R"sql(
CREATE TABLE IF NOT EXISTS feed (
  id BIGSERIAL PRIMARY KEY,
  origin TEXT NOT NULL,
  first_event BIGINT NOT NULL,
  last_event BIGINT NOT NULL,
  expires_at_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS feed_by_expiry ON feed (expires_at_ns);
)sql";

}  // namespace

void pg_create_or_migrate(PgConnection& c) {
  PgTransaction tx(c);
  c.exec("SELECT pg_advisory_xact_lock($1)", PgParams().int64(kSchemaLock));
  c.script("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)");
  PgResult version = c.exec("SELECT MAX(version) FROM schema_version");
  constexpr int kVersion = store::PostgresStore::kSchemaVersion;
  if (!version.is_null(0, 0)) {
    std::int64_t v = version.int64(0, 0);
    if (v > kVersion) {
      throw PgError{"its schema version is " + std::to_string(v) +
                    ", newer than this stagelog supports (" + std::to_string(kVersion) +
                    "); use a newer stagelog"};
    }
    if (v < 2) {
      c.script(kFeedSchema);
      c.exec("INSERT INTO schema_version (version) VALUES (2)");
    }
    tx.commit();
    return;
  }
  c.script(kSchema);
  c.script(kFeedSchema);
  c.exec("INSERT INTO schema_version (version) VALUES ($1)",
         PgParams().int64(std::int64_t{kVersion}));
  tx.commit();
}

}  // namespace stagelog::detail
