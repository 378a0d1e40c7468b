#pragma once

// What older versions of the PostgreSQL store's schema (src/store/postgres_schema.cpp) made
// differently, for the tests of their migration: a test opens a store, then puts these back.

namespace stagelog::test {

// The events table of schema versions 1 and 2, in place of version 3's partitioned one: one
// table, deleted row by row. Empty; the schema_version rows are the test's to set.
inline constexpr const char* kEventsOfVersion2 = R"sql(
DROP TABLE events;
CREATE TABLE events (
  id BIGSERIAL PRIMARY KEY, ts_ns BIGINT NOT NULL, kind TEXT NOT NULL, level TEXT NOT NULL,
  status TEXT, run BYTEA NOT NULL, worker BYTEA NOT NULL, component BYTEA NOT NULL,
  stage BYTEA NOT NULL, message BYTEA NOT NULL, elapsed_ns BIGINT, fields_json BYTEA NOT NULL,
  pid BIGINT NOT NULL, host BYTEA NOT NULL, fields_in_message BOOLEAN NOT NULL,
  expires_at_ns BIGINT NOT NULL);
CREATE INDEX events_by_run ON events (run, ts_ns, id);
CREATE INDEX events_by_expiry ON events (expires_at_ns);
)sql";

}  // namespace stagelog::test
