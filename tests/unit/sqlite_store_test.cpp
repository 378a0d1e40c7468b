#include "store/sqlite_store.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "stagelog/error.hpp"
#include "store/sqlite.hpp"
#include "store_conformance.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using store::SqliteStore;
using ::testing::AllOf;
using ::testing::HasSubstr;

class SqliteBackend final : public StoreBackend {
 public:
  std::unique_ptr<store::Store> open() override {
    return std::make_unique<SqliteStore>(dir_.path() / "stagelog.db");
  }

 private:
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(SqliteStore, StoreConformanceTest,
                         ::testing::Values(StoreBackendFactory{
                             "sqlite", [] { return std::make_unique<SqliteBackend>(); }}),
                         StoreBackendName{});

// The message of the stagelog::Error that opening `path` throws, or "" if it opens.
std::string open_error(const std::filesystem::path& path) {
  try {
    SqliteStore store(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

TEST(SqliteStoreTest, CreatesTheFileInWalModeWithTheCurrentSchemaVersion) {
  TempDir dir;
  auto path = dir.path() / "new.db";
  { SqliteStore store(path); }
  ASSERT_TRUE(std::filesystem::exists(path));
  detail::Database db(path.string(), false);
  detail::Statement mode(db, "PRAGMA journal_mode");
  ASSERT_TRUE(mode.step());
  EXPECT_EQ(mode.text(0), "wal");
  detail::Statement version(db, "SELECT version FROM schema_version");
  ASSERT_TRUE(version.step());
  EXPECT_EQ(version.int64(0), SqliteStore::kSchemaVersion);
  EXPECT_FALSE(version.step());  // One row, also after reopening.
}

TEST(SqliteStoreTest, ReopeningDoesNotAddASecondVersionRow) {
  TempDir dir;
  auto path = dir.path() / "s.db";
  { SqliteStore store(path); }
  { SqliteStore store(path); }
  detail::Database db(path.string(), false);
  detail::Statement count(db, "SELECT COUNT(*) FROM schema_version");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(count.int64(0), 1);
}

TEST(SqliteStoreTest, UsesTheIndexesForLatestAndPurge) {
  TempDir dir;
  auto path = dir.path() / "s.db";
  { SqliteStore store(path); }
  detail::Database db(path.string(), false);
  auto plan = [&](const char* sql) {
    detail::Statement s(db, std::string("EXPLAIN QUERY PLAN ") + sql);
    std::string out;
    while (s.step()) out += s.text(3) + "\n";
    return out;
  };
  // A tracking id's attempts are found by the (tracking_id, execution_id) index and only they
  // are sorted: a job has a handful of attempts, not worth two more indexes on every insert.
  for (const char* sql :
       {"SELECT id FROM executions WHERE tracking_id = 'x' AND expires_at_ns > 0 "
        "ORDER BY started_at_ns DESC, id DESC LIMIT 1",
        "SELECT id FROM executions WHERE tracking_id = 'x' AND attempt = 2 AND expires_at_ns > 0",
        "SELECT id FROM executions WHERE tracking_id = 'x' AND expires_at_ns > 0 "
        "ORDER BY attempt"}) {
    EXPECT_THAT(plan(sql), HasSubstr("USING INDEX sqlite_autoindex_executions_1 (tracking_id=?)"))
        << sql;
  }
  // The listing walks the time index newest first, whatever it filters on.
  EXPECT_THAT(plan("SELECT id FROM executions WHERE expires_at_ns > 0 AND final_status = 'x' "
                   "AND (started_at_ns, id) < (5, 6) ORDER BY started_at_ns DESC, id DESC "
                   "LIMIT 10"),
              AllOf(HasSubstr("executions_by_time"), ::testing::Not(HasSubstr("TEMP B-TREE"))));
  // The step index: a worker or stage filter probes its index per attempt; failures and
  // statistics read a time range of an index.
  EXPECT_THAT(plan("SELECT id FROM executions WHERE expires_at_ns > 0 AND EXISTS (SELECT 1 "
                   "FROM step_facts f WHERE f.worker = 'w' AND f.execution = executions.id) "
                   "ORDER BY started_at_ns DESC, id DESC LIMIT 10"),
              AllOf(HasSubstr("step_facts_by_worker (worker=? AND execution=?)"),
                    ::testing::Not(HasSubstr("TEMP B-TREE"))));
  // A worker of few steps: its attempts come from the index, then are sorted.
  EXPECT_THAT(plan("SELECT id FROM executions WHERE expires_at_ns > 0 AND id IN (SELECT "
                   "execution FROM step_facts WHERE worker = 'w') ORDER BY started_at_ns DESC, "
                   "id DESC LIMIT 10"),
              AllOf(HasSubstr("USING INTEGER PRIMARY KEY (rowid=?)"),
                    HasSubstr("step_facts_by_worker (worker=?)")));
  EXPECT_THAT(plan("SELECT pattern, COUNT(*) FROM step_facts WHERE status = 'failed' AND "
                   "ts_ns >= 1 AND ts_ns < 2 GROUP BY pattern"),
              HasSubstr("step_facts_failed (ts_ns>? AND ts_ns<?)"));
  EXPECT_THAT(plan("SELECT count FROM stage_rollups WHERE hour_ns >= 1 AND hour_ns < 2 AND "
                   "expires_at_ns > 0"),
              HasSubstr("PRIMARY KEY (hour_ns>? AND hour_ns<?)"));
  EXPECT_THAT(plan("DELETE FROM executions WHERE expires_at_ns <= 5"),
              HasSubstr("executions_by_expiry"));
  EXPECT_THAT(plan("DELETE FROM events WHERE expires_at_ns <= 5"), HasSubstr("events_by_expiry"));
  EXPECT_THAT(plan("SELECT id FROM events WHERE run = 'r' AND expires_at_ns > 0 "
                   "ORDER BY ts_ns, id LIMIT 10"),
              AllOf(HasSubstr("events_by_run"), ::testing::Not(HasSubstr("TEMP B-TREE"))));
}

TEST(SqliteStoreTest, RefusesANewerSchemaVersionAndLeavesTheFileAlone) {
  TempDir dir;
  auto path = dir.path() / "s.db";
  {
    SqliteStore store(path);
    ASSERT_TRUE(store.put_execution(conformance::seed_execution(), conformance::kT0 + 1));
  }
  {
    detail::Database db(path.string(), false);
    db.exec("UPDATE schema_version SET version = 99");
  }
  std::string message = open_error(path);
  std::string supported = "newer than this stagelog supports (";  // Piecewise: GCC 12 warns
  supported += std::to_string(SqliteStore::kSchemaVersion);       // falsely (-Wrestrict) on
  supported += ")";                                               // "literal" + string.
  EXPECT_THAT(message, AllOf(HasSubstr(path.string()), HasSubstr("schema version is 99"),
                             HasSubstr(supported)));
  detail::Database db(path.string(), false);
  detail::Statement version(db, "SELECT version FROM schema_version");
  ASSERT_TRUE(version.step());
  EXPECT_EQ(version.int64(0), 99);
}

// A store written by version 1 (one row per step), as that version created it.
void write_version_1_store(const std::filesystem::path& path) {
  detail::Database db(path.string(), true);
  db.exec(R"sql(
    PRAGMA journal_mode = WAL;
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version VALUES (1);
    CREATE TABLE executions (id INTEGER PRIMARY KEY, tracking_id TEXT NOT NULL,
      execution_id TEXT NOT NULL, attempt INTEGER NOT NULL, started_at_ns INTEGER NOT NULL,
      completed_at_ns INTEGER, duration_ms INTEGER, metadata_json TEXT NOT NULL,
      expires_at_ns INTEGER NOT NULL, UNIQUE (tracking_id, execution_id));
    CREATE INDEX executions_by_start ON executions (tracking_id, started_at_ns, id);
    CREATE INDEX executions_by_attempt ON executions (tracking_id, attempt);
    CREATE INDEX executions_by_expiry ON executions (expires_at_ns);
    CREATE TABLE steps (execution INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
      seq INTEGER NOT NULL, step TEXT NOT NULL, timestamp_ns INTEGER NOT NULL,
      status TEXT NOT NULL, message TEXT NOT NULL, error_details TEXT,
      custom_json TEXT NOT NULL, PRIMARY KEY (execution, seq)) WITHOUT ROWID;
    CREATE TABLE events (id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL,
      level TEXT NOT NULL, status TEXT, run TEXT NOT NULL, worker TEXT NOT NULL,
      component TEXT NOT NULL, stage TEXT NOT NULL, message TEXT NOT NULL, elapsed_ns INTEGER,
      fields_json TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
      fields_in_message INTEGER NOT NULL, expires_at_ns INTEGER NOT NULL);
    CREATE INDEX events_by_run ON events (run, ts_ns, id);
    CREATE INDEX events_by_expiry ON events (expires_at_ns);
  )sql");
  Execution e = conformance::seed_execution();
  detail::Statement execution(db,
                              "INSERT INTO executions VALUES (1, ?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)");
  execution.bind(1, std::string_view(e.tracking_id))
      .bind(2, std::string_view(e.execution_id))
      .bind(3, e.started_at_ns)
      .bind(4, e.completed_at_ns)
      .bind(5, e.duration_ms)
      .bind(6, std::string_view(e.metadata_json))
      .bind(7, conformance::kT0 + conformance::kDay)
      .run();
  // A second attempt without steps.
  db.exec(
      "INSERT INTO executions VALUES (2, '60B3RNTB', 'exec_2', 2, 1, NULL, NULL, '{}', "
      "9223372036854775807)");
  detail::Statement step(db, "INSERT INTO steps VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  // Inserted out of order: seq decides.
  for (std::int64_t seq : {2, 0, 3, 1}) {
    const Step& s = e.steps[static_cast<std::size_t>(seq)];
    step.bind(1, seq)
        .bind(2, std::string_view(s.step))
        .bind(3, s.timestamp_ns)
        .bind(4, std::string_view(s.status))
        .bind(5, std::string_view(s.message))
        .bind(6, s.error_details)
        .bind(7, std::string_view(s.custom_json))
        .run();
    step.reset();
  }
}

TEST(SqliteStoreTest, AVersion1StoreIsMigratedWithEveryStepKept) {
  TempDir dir;
  auto path = dir.path() / "v1.db";
  write_version_1_store(path);
  {
    SqliteStore store(path);
    auto got = store.attempt("60B3RNTB", 1, conformance::kT0);
    ASSERT_TRUE(got) << got.error().what();
    ASSERT_TRUE(got->has_value());
    conformance::expect_same(**got, conformance::seed_execution());
    auto list = store.attempts("60B3RNTB", conformance::kT0);
    ASSERT_TRUE(list);
    ASSERT_EQ(list->size(), 2u);
    EXPECT_EQ((*list)[0].step_count, 4u);
    EXPECT_EQ((*list)[0].final_status, "failed");
    EXPECT_EQ((*list)[1].step_count, 0u);
    EXPECT_EQ((*list)[1].final_status, "unknown");
    // The step index (version 3) is built for what was there.
    store::ExecutionQuery q;
    q.text = "timeout";
    auto found = store.list_executions(q, conformance::kT0);
    ASSERT_TRUE(found) << found.error().what();
    ASSERT_EQ(found->size(), 1u);
    EXPECT_EQ((*found)[0].attempt.n, 1);
    store::FailureQuery failures;
    failures.until_ns = conformance::kT0 + conformance::kDay;
    auto patterns = store.failure_patterns(failures, conformance::kT0);
    ASSERT_TRUE(patterns) << patterns.error().what();
    ASSERT_EQ(patterns->size(), 1u);
    EXPECT_EQ((*patterns)[0].stages, std::vector<std::string>{"error_handling"});
    // Batch keys (version 4) are kept from now on.
    const auto record = conformance::batch_record("p-1");
    std::vector<store::EventsWrite> keyed = {{{}, conformance::kT0 + conformance::kDay, &record}};
    ASSERT_TRUE(store.write(keyed, {}));
    auto key = store.batch("p-1", conformance::kT0);
    ASSERT_TRUE(key) << key.error().what();
    EXPECT_TRUE(key->has_value());
  }
  detail::Database db(path.string(), false);
  detail::Statement version(db, "SELECT version FROM schema_version");
  ASSERT_TRUE(version.step());
  EXPECT_EQ(version.int64(0), SqliteStore::kSchemaVersion);
  detail::Statement old(db,
                        "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('steps', "
                        "'executions_by_start', 'executions_by_attempt')");
  ASSERT_TRUE(old.step());
  EXPECT_EQ(old.int64(0), 0);
}

TEST(SqliteStoreTest, APathInAMissingFolderIsAClearError) {
  TempDir dir;
  auto path = dir.path() / "no" / "such" / "stagelog.db";
  EXPECT_EQ(open_error(path), "cannot open " + path.string() + ": folder " +
                                  (dir.path() / "no" / "such").string() + " does not exist");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "no"));
}

TEST(SqliteStoreTest, AFileThatIsNotSqliteIsAClearErrorAndLeftIntact) {
  TempDir dir;
  auto path = dir.path() / "notes.db";
  const std::string text =
      "These are my notes, not a database.\nThey are long enough to fill SQLite's header of a "
      "hundred bytes, so that SQLite has something to read and reject.\n";
  write_file(path, text);
  EXPECT_EQ(open_error(path), "cannot open " + path.string() + ": file is not a database");
  EXPECT_EQ(read_file(path), text);
  EXPECT_FALSE(std::filesystem::exists(path.string() + "-wal"));
}

TEST(SqliteStoreTest, AnotherApplicationsDatabaseIsRefusedUntouched) {
  TempDir dir;
  auto path = dir.path() / "app.db";
  {
    detail::Database db(path.string(), true);
    db.exec("CREATE TABLE users (name TEXT)");
  }
  EXPECT_THAT(open_error(path),
              AllOf(HasSubstr(path.string()), HasSubstr("SQLite database of another application")));
  detail::Database db(path.string(), false);
  detail::Statement tables(db, "SELECT COUNT(*) FROM sqlite_schema");
  ASSERT_TRUE(tables.step());
  EXPECT_EQ(tables.int64(0), 1);
}

TEST(SqliteStoreTest, ADirectoryInsteadOfAFileIsAClearError) {
  TempDir dir;
  EXPECT_THAT(open_error(dir.path()), HasSubstr("cannot open " + dir.path().string() + ": "));
}

// "T<i>", built piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + string.
std::string tracking_id(int i) {
  std::string id = "T";
  id += std::to_string(i);
  return id;
}

TEST(SqliteStoreTest, ACorruptedFileGivesErrorsNotCrashes) {
  TempDir dir;
  auto path = dir.path() / "s.db";
  {
    SqliteStore store(path);
    for (int i = 0; i < 200; ++i) {
      auto e = conformance::seed_execution(tracking_id(i), "exec");
      ASSERT_TRUE(store.put_execution(e, conformance::kT0 + conformance::kDay));
    }
  }
  // Checkpointed into the main file on close. Scribble over its second half: the schema
  // (first pages) still reads, the rows and indexes written last do not.
  auto size = static_cast<std::size_t>(std::filesystem::file_size(path));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    std::string junk(size - size / 2, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  SqliteStore store(path);
  int errors = 0;
  for (int i = 0; i < 200; ++i) {
    auto got = store.latest(tracking_id(i), conformance::kT0);
    if (got) continue;
    ++errors;
    // SQLite finds its pages malformed, or a chunk's text reads as junk: said either way.
    EXPECT_THAT(got.error().what(),
                AllOf(HasSubstr("sqlite store " + path.string() + ": cannot read execution: "),
                      ::testing::AnyOf(HasSubstr("malformed"), HasSubstr("damaged step chunk"))));
  }
  EXPECT_GT(errors, 0);
  auto put = store.put_execution(conformance::seed_execution("T0", "exec2"), conformance::kT0);
  auto purged = store.purge(conformance::kT0 + conformance::kDay);
  EXPECT_TRUE(!put || !purged);  // Writes touch the broken pages too; either way, no crash.
}

TEST(SqliteStoreTest, AnErrorResultThrowsItsErrorFromValue) {
  stagelog::Result<int> r(Error("boom"));
  EXPECT_FALSE(r);
  EXPECT_THROW(r.value(), Error);
  stagelog::Result<void> v(Error("bang"));
  EXPECT_THROW(v.value(), Error);
  stagelog::Result<int> fine(3);
  EXPECT_EQ(*fine, 3);
}

}  // namespace
}  // namespace stagelog::test
