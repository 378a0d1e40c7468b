#include "store/postgres_schema.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <string_view>

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
// error details as a tsvector (GIN). Batches: ingest batch keys. (Events: version 3.)
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

// Version 3: events, one row per raw event and the store's volume, partitioned by expiry, one
// partition per UTC day (events_YYYYMMDD, [midnight, next midnight)), so that retention drops a
// whole day's table instead of deleting its rows one by one (pg_partition_events). An event's
// expiry is fixed when it is stored, so a row never moves between partitions. The default
// partition takes an event whose day has no partition (yet): it never fails an insert, and its
// rows are deleted as they expire. The primary key holds the partition key, as PostgreSQL
// requires; ids stay unique as one sequence numbers them all, which the feed's id ranges and
// the (ts_ns, id) order of reads rely on. The index by expiry is the default partition's only:
// a day partition is dropped whole, never searched by expiry.
//
// Executions (and the step chunks and facts that cascade from them), batch keys and the feed
// stay single tables deleted row by row: executions and batches are upserted (ON CONFLICT on
// (tracking_id, execution_id), on key), and a partitioned table's unique keys must hold its
// partition key, while a re-post renews an attempt's expiry; the feed is small.
constexpr const char* kEventsSchema = R"sql(
CREATE SEQUENCE IF NOT EXISTS events_id_seq;
CREATE TABLE events (
  id BIGINT NOT NULL DEFAULT nextval('events_id_seq'),
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
  expires_at_ns BIGINT NOT NULL,
  PRIMARY KEY (id, expires_at_ns)
) PARTITION BY RANGE (expires_at_ns);
ALTER SEQUENCE events_id_seq OWNED BY events.id;
CREATE INDEX events_by_run ON events (run, ts_ns, id);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_default_by_expiry ON events_default (expires_at_ns);
)sql";

// Version 2's events, renamed to be copied into version 3's and dropped.
constexpr const char* kRenameEvents = R"sql(
ALTER TABLE events RENAME TO events_v2;
ALTER TABLE events_v2 RENAME CONSTRAINT events_pkey TO events_v2_pkey;
ALTER INDEX events_by_run RENAME TO events_v2_by_run;
ALTER INDEX events_by_expiry RENAME TO events_v2_by_expiry;
)sql";

constexpr const char* kCopyEvents = R"sql(
INSERT INTO events (id, ts_ns, kind, level, status, run, worker, component, stage, message,
  elapsed_ns, fields_json, pid, host, fields_in_message, expires_at_ns)
SELECT id, ts_ns, kind, level, status, run, worker, component, stage, message, elapsed_ns,
  fields_json, pid, host, fields_in_message, expires_at_ns FROM events_v2;
DROP TABLE events_v2;
)sql";

constexpr std::int64_t kDayNs = 86'400'000'000'000;
// Day partitions made ahead, from tomorrow on: the server's default retention (7 days) and two
// more. Longer retentions are learned from the data (make_partitions).
constexpr std::int64_t kDaysAhead = 9;
// No partition is made further ahead than this (the server's longest retention, 365 days by
// default, and a margin): rows expiring later stay in the default partition.
constexpr std::int64_t kMaxDaysAhead = 400;
// The last day whose upper bound fits an int64 of nanoseconds.
constexpr std::int64_t kLastDay = INT64_MAX / kDayNs - 1;

std::string partition_name(std::int64_t day) {
  const std::chrono::year_month_day date{std::chrono::sys_days{std::chrono::days{day}}};
  char name[32];
  std::snprintf(name, sizeof name, "events_%04d%02u%02u", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return name;
}

// The day of a partition this store made, from its name; nullopt for any other table.
std::optional<std::int64_t> partition_day(const std::string& name) {
  constexpr std::string_view kPrefix = "events_";
  if (name.size() != kPrefix.size() + 8 || name.compare(0, kPrefix.size(), kPrefix) != 0) {
    return std::nullopt;
  }
  int digits[8];
  for (std::size_t i = 0; i < 8; ++i) {
    char ch = name[kPrefix.size() + i];
    if (ch < '0' || ch > '9') return std::nullopt;
    digits[i] = ch - '0';
  }
  const int year = digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3];
  const auto month = static_cast<unsigned>(digits[4] * 10 + digits[5]);
  const auto day = static_cast<unsigned>(digits[6] * 10 + digits[7]);
  const std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{month},
                                         std::chrono::day{day}};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days{date}.time_since_epoch().count();
}

// The days of the events partitions this store made, ascending.
std::set<std::int64_t> partition_days(PgConnection& c) {
  PgResult r = c.exec(
      "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
      "WHERE i.inhparent = 'events'::regclass");
  std::set<std::int64_t> days;
  for (int i = 0; i < r.rows(); ++i) {
    if (auto day = partition_day(r.bytes(i, 0))) days.insert(*day);
  }
  return days;
}

// The days from `first` to `last` on which rows of `table` expire.
std::set<std::int64_t> days_with_rows(PgConnection& c, const std::string& table, std::int64_t first,
                                      std::int64_t last) {
  PgResult r = c.exec("SELECT DISTINCT expires_at_ns / " + std::to_string(kDayNs) + " FROM " +
                          table + " WHERE expires_at_ns >= $1 AND expires_at_ns < $2",
                      PgParams().int64(first * kDayNs).int64((last + 1) * kDayNs));
  std::set<std::int64_t> days;
  for (int i = 0; i < r.rows(); ++i) days.insert(r.int64(i, 0));
  return days;
}

// What make_partitions does: the days to make, and those of them whose rows are to be moved
// out of the default partition.
struct PartitionPlan {
  std::set<std::int64_t> make;
  std::set<std::int64_t> move;
};

// Partitions for every day from tomorrow on that holds rows of `rows_in` (the default partition,
// or the table being migrated) and for the next kDaysAhead days; and past the last partition of
// any run of days whose last partition holds rows, two more days: the frontier of a retention
// longer than kDaysAhead moves a day further each day, and finds its partition made.
PartitionPlan plan_partitions(PgConnection& c, std::int64_t now_ns, const std::string& rows_in) {
  PartitionPlan plan;
  if (now_ns < 0) return plan;
  const std::int64_t tomorrow = now_ns / kDayNs + 1;
  const std::int64_t last = std::min(tomorrow + kMaxDaysAhead, kLastDay);
  if (tomorrow > last) return plan;
  const std::set<std::int64_t> have = partition_days(c);
  std::set<std::int64_t> wanted;
  for (std::int64_t d = tomorrow; d < tomorrow + kDaysAhead; ++d) wanted.insert(d);
  for (std::int64_t d : days_with_rows(c, rows_in, tomorrow, last)) {
    wanted.insert({d, d + 1, d + 2});
    if (!have.contains(d)) plan.move.insert(d);
  }
  for (std::int64_t d : have) {
    if (d < tomorrow || have.contains(d + 1)) continue;
    if (c.exec("SELECT EXISTS (SELECT 1 FROM " + partition_name(d) + ")").boolean(0, 0)) {
      wanted.insert({d + 1, d + 2});
    }
  }
  for (std::int64_t d : wanted) {
    if (d <= last && !have.contains(d)) plan.make.insert(d);
  }
  return plan;
}

// One day's partition. `move`: the default partition holds rows of the day, which go into the
// new table before it becomes the day's partition (PostgreSQL refuses a partition whose rows
// sit in the default). The caller holds events in ACCESS EXCLUSIVE mode, so that no insert
// routes a row of the day to the default partition meanwhile.
void make_partition(PgConnection& c, std::int64_t day, bool move) {
  const std::string name = partition_name(day);
  const std::string range = " FOR VALUES FROM (" + std::to_string(day * kDayNs) + ") TO (" +
                            std::to_string((day + 1) * kDayNs) + ")";
  if (!move) {
    c.exec("CREATE TABLE IF NOT EXISTS " + name + " PARTITION OF events" + range);
    return;
  }
  c.exec("CREATE TABLE " + name + " (LIKE events)");
  c.exec(
      "WITH moved AS (DELETE FROM events_default WHERE expires_at_ns >= $1 AND "
      "expires_at_ns < $2 RETURNING *) INSERT INTO " +
          name + " SELECT * FROM moved",
      PgParams().int64(day * kDayNs).int64((day + 1) * kDayNs));
  c.exec("ALTER TABLE events ATTACH PARTITION " + name + range);
}

// Under the schema lock, in the caller's transaction. `rows_in` as in plan_partitions; the
// default partition's rows are moved, the migrated table's are copied afterwards.
void make_partitions(PgConnection& c, std::int64_t now_ns, const std::string& rows_in) {
  PartitionPlan plan = plan_partitions(c, now_ns, rows_in);
  if (plan.make.empty()) return;
  // Inserts wait from here to the commit, then see the new partitions. Planned again under the
  // lock: an insert may have put a row of a planned day in the default partition since.
  c.exec("LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
  plan = plan_partitions(c, now_ns, rows_in);
  const bool moving = rows_in == "events_default";
  for (std::int64_t d : plan.make) make_partition(c, d, moving && plan.move.contains(d));
}

// Drops the partitions of days that ended at or before now_ns; returns how many events they
// held. Under the schema lock, in the caller's transaction.
std::size_t drop_partitions(PgConnection& c, std::int64_t now_ns) {
  std::size_t dropped = 0;
  bool locked = false;
  for (std::int64_t d : partition_days(c)) {
    if (d >= kLastDay || (d + 1) * kDayNs > now_ns) break;
    if (!locked) {
      c.exec("LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
      locked = true;
    }
    const std::string name = partition_name(d);
    dropped += static_cast<std::size_t>(c.exec("SELECT COUNT(*) FROM " + name).int64(0, 0));
    c.exec("DROP TABLE " + name);
  }
  return dropped;
}

}  // namespace

void pg_create_or_migrate(PgConnection& c) {
  // The partitions ahead are laid out by the clock of the machine that opens the store: where
  // rows are kept, never which are returned (reads and purges take their time from the caller).
  const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  PgTransaction tx(c);
  c.exec("SELECT pg_advisory_xact_lock($1)", PgParams().int64(kSchemaLock));
  c.script("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)");
  PgResult version = c.exec("SELECT MAX(version) FROM schema_version");
  constexpr int kVersion = store::PostgresStore::kSchemaVersion;
  if (version.is_null(0, 0)) {
    c.script(kSchema);
    c.script(kFeedSchema);
    c.script(kEventsSchema);
    make_partitions(c, now_ns, "events_default");
    c.exec("INSERT INTO schema_version (version) VALUES ($1)",
           PgParams().int64(std::int64_t{kVersion}));
    tx.commit();
    return;
  }
  const std::int64_t v = version.int64(0, 0);
  if (v > kVersion) {
    throw PgError{"its schema version is " + std::to_string(v) +
                  ", newer than this stagelog supports (" + std::to_string(kVersion) +
                  "); use a newer stagelog"};
  }
  if (v < 2) {
    c.script(kFeedSchema);
    c.exec("INSERT INTO schema_version (version) VALUES (2)");
  }
  if (v < 3) {
    // Every event kept, ids included (the feed's ranges name them): renamed, copied into the
    // partitions (made first for the days the copy needs), dropped, in this one transaction.
    c.script(kRenameEvents);
    c.script(kEventsSchema);
    make_partitions(c, now_ns, "events_v2");
    c.script(kCopyEvents);
    c.exec("INSERT INTO schema_version (version) VALUES (3)");
  } else {
    make_partitions(c, now_ns, "events_default");  // Days that began since the last pass.
  }
  tx.commit();
}

std::size_t pg_partition_events(PgConnection& c, std::int64_t now_ns) {
  PgTransaction tx(c);
  // Inserts queue behind a lock that waits: a pass that cannot have it soon gives up, and the
  // next one tries again.
  c.exec("SET LOCAL lock_timeout = '2s'");
  c.exec("SELECT pg_advisory_xact_lock($1)", PgParams().int64(kSchemaLock));
  make_partitions(c, now_ns, "events_default");
  const std::size_t dropped = drop_partitions(c, now_ns);
  tx.commit();
  return dropped;
}

}  // namespace stagelog::detail
