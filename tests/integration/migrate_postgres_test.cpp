// `stagelog migrate` as a real process, from a SQLite store into a real PostgreSQL: every read
// answers the same on both stores afterwards (attempts, listings, search, statistics, failure
// patterns, events, batch keys, and what a purge removes, so expiries too), a second run adds
// nothing, a run after a partial copy completes it without doubles, the SQLite file is left as
// it was, and bad inputs are refused saying why.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "format/format.hpp"
#include "postgres_environment.hpp"
#include "stagelog/store/postgres_store.hpp"
#include "stagelog/store/sqlite_store.hpp"
#include "temp_dir.hpp"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX names it.

namespace stagelog::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kHour = 3600 * kSecond;
constexpr std::int64_t kDay = 24 * kHour;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Execution execution(std::string tracking_id, std::string execution_id, std::int64_t t,
                    std::string worker, bool fails) {
  Execution e;
  e.tracking_id = std::move(tracking_id);
  e.execution_id = std::move(execution_id);
  e.started_at_ns = t;
  e.completed_at_ns = t + 90 * kSecond;
  e.duration_ms = 90'000;
  e.metadata_json = R"({"tier":"gold","worker":")" + worker + R"("})";
  e.steps = {
      {"initialization", t + kSecond, "completed", "Started for Acme", std::nullopt, "{}"},
      {"LOAD", t + 30 * kSecond, "completed", "Loaded 1200 rows", std::nullopt,
       R"({"duration_ms":29000})"},
      {"skip_cache", t + 31 * kSecond, "skipped", "cache off", std::nullopt, "{}"},
  };
  if (fails) {
    e.steps.push_back({"GENERATE", t + 90 * kSecond, "failed", "AI generation timeout after 4800ms",
                       "Error: timeout after 4800ms\n at worker.js:12:3", R"({"retry":true})"});
  } else {
    e.steps.push_back(
        {"GENERATE", t + 90 * kSecond, "completed", "Generated the report", std::nullopt, "{}"});
  }
  return e;
}

OwnedEvent event(std::string run, std::int64_t ts_ns, std::string stage, Status status,
                 std::string message) {
  OwnedEvent e;
  e.ts_ns = ts_ns;
  e.kind = Kind::Stage;
  e.status = status;
  e.run = std::move(run);
  e.worker = "T0_00";
  e.component = "app";
  e.stage = std::move(stage);
  e.message = std::move(message);
  e.elapsed_ns = 13'200'000'000;
  e.pid = 4242;
  e.host = "gpu-node-1";
  e.add_field("rows", std::int64_t{1200});
  e.add_field("file", std::string_view("a \"b\".csv"));
  return e;
}

// A SQLite store with several tracking ids, a retried one, failed steps, events of runs with
// and without an execution (two of them alike), two expiries, and a batch key.
void fill(store::Store& s, std::int64_t now) {
  const std::int64_t t0 = now - 3 * kDay;
  const std::int64_t soon = now + kDay;
  const std::int64_t later = now + 30 * kDay;
  std::vector<store::ExecutionWrite> attempts = {
      {execution("job-a", "a1", t0, "w1", true), later, 0},
      {execution("job-b", "b1", t0 + kHour, "w2", false), soon, 0},
      {execution("job-a", "a2", t0 + 2 * kHour, "w1", false), later, 0},
      {execution("odd/id \"quoted\" ..", "c1", t0 + 2 * kHour, "w2", true), soon, 0},
      {execution("job-d", "d1", t0 + 3 * kHour, "w3", true), later, 0},
      {execution("job-e", "e1", t0 + kDay, "w1", false), later, 0},
  };
  std::vector<OwnedEvent> a = {
      event("job-a", t0 + kSecond, "LOAD", Status::Starting, "loading"),
      event("job-a", t0 + 30 * kSecond, "LOAD", Status::Completed, "loaded"),
      event("job-a", t0 + 30 * kSecond, "LOAD", Status::Completed, "loaded"),
      event("job-a", t0 + 90 * kSecond, "GENERATE", Status::Failed, "timeout after 4800ms"),
  };
  std::vector<OwnedEvent> b = {
      event("job-b", t0 + kHour, "LOAD", Status::Starting, "loading"),
      event("orphan-run", t0 + kHour, "fetch", Status::Completed, "no execution for this run"),
  };
  store::BatchRecord record{"0123456789abcdef0123456789abcdef-7", 200, R"({"accepted":2})",
                            now - kHour};
  std::vector<store::EventsWrite> events = {
      {a, later, nullptr},
      {b, soon, &record},
  };
  ASSERT_TRUE(s.write(events, attempts));
}

std::string text(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : "-"; }

std::string text(const store::DurationStats& d) {
  return std::to_string(d.count) + " " + std::to_string(d.failures) + " " +
         std::to_string(d.skipped) + " " + std::to_string(d.p50_ms) + " " +
         std::to_string(d.p95_ms) + " " + std::to_string(d.p99_ms) + " " + std::to_string(d.max_ms);
}

// What a store answers to every read, positions (the store's own row ids) left out.
std::string answers(store::Store& s, std::int64_t now) {
  std::string out;
  auto listing = [&](store::ExecutionQuery q, const std::string& name) {
    q.limit = 100;
    q.with_steps = true;
    auto rows = s.list_executions(q, now);
    EXPECT_TRUE(rows) << name;
    out += "list " + name + ":\n";
    if (!rows) return;
    for (const auto& r : *rows) {
      out += "  " + r.tracking_id + " #" + std::to_string(r.attempt.n) + " " +
             r.attempt.execution_id + " " + r.attempt.final_status + " " +
             std::to_string(r.attempt.step_count) + " " + r.metadata_json + " " +
             std::to_string(r.steps.size()) + "\n";
    }
  };
  store::ExecutionQuery q;
  listing(q, "all");
  q.final_status = "failed";
  listing(q, "failed");
  q = {};
  q.since_ns = now - 3 * kDay + kHour;
  q.until_ns = now - kDay;
  listing(q, "time range");
  q = {};
  q.metadata = {{"tier", "gold"}};
  listing(q, "metadata");
  q = {};
  q.worker = "w2";
  listing(q, "worker");
  q = {};
  q.stage = "GENERATE";
  listing(q, "stage");
  q = {};
  q.text = "TIMEOUT";
  listing(q, "search");
  q.text = "generat*";
  listing(q, "search prefix");

  for (const char* id : {"job-a", "job-b", "odd/id \"quoted\" ..", "job-d", "job-e", "none"}) {
    auto attempts = s.attempts(id, now);
    EXPECT_TRUE(attempts) << id;
    if (!attempts) continue;
    out += std::string("attempts ") + id + ":\n";
    for (const auto& a : *attempts) {
      out += "  " + std::to_string(a.n) + " " + a.execution_id + " " +
             std::to_string(a.started_at_ns) + " " + text(a.completed_at_ns) + " " +
             text(a.duration_ms) + " " + a.final_status + " " + std::to_string(a.step_count) + "\n";
      auto one = s.attempt(id, a.n, now);
      EXPECT_TRUE(one && *one);
      if (one && *one) out += "  " + execution_document(**one) + "\n";
    }
    auto latest = s.latest(id, now);
    EXPECT_TRUE(latest);
    if (latest && *latest) out += "  latest " + execution_document(**latest) + "\n";
  }

  for (bool by_worker : {false, true}) {
    for (bool daily : {false, true}) {
      auto stats = s.stage_stats({now - 10 * kDay, now + kDay, by_worker, daily}, now);
      EXPECT_TRUE(stats);
      if (!stats) continue;
      out += "stats " + std::to_string(by_worker) + std::to_string(daily) + ":\n";
      for (const auto& st : *stats) {
        out += "  " + st.stage + " [" + st.worker + "] " + text(st.stats) + "\n";
        for (const auto& p : st.series) {
          out += "    " + std::to_string(p.start_ns) + " " + text(p.stats) + "\n";
        }
      }
    }
  }

  auto failures = s.failure_patterns({now - 10 * kDay, now + kDay, 50}, now);
  EXPECT_TRUE(failures);
  if (failures) {
    out += "failures:\n";
    for (const auto& f : *failures) {
      out += "  " + f.pattern + " | " + f.example + " | " + std::to_string(f.count) + " " +
             std::to_string(f.first_seen_ns) + " " + std::to_string(f.last_seen_ns);
      for (const auto& st : f.stages) out += " " + st;
      for (const auto& t : f.tracking_ids) out += " " + t;
      out += "\n";
    }
  }

  for (const char* run : {"job-a", "job-b", "orphan-run", "none"}) {
    auto events = s.events(run, now, 100);
    EXPECT_TRUE(events);
    out += std::string("events ") + run + ":\n";
    if (events) {
      for (const auto& e : *events) {
        out += "  ";
        detail::format_json(e.view(), out);
      }
    }
    auto page = s.event_page(run, std::nullopt, 2, now);
    EXPECT_TRUE(page);
    if (page) out += "  first page: " + std::to_string(page->size()) + "\n";
  }

  auto batch = s.batch("0123456789abcdef0123456789abcdef-7", now);
  EXPECT_TRUE(batch);
  if (batch && *batch) {
    out += "batch " + std::to_string((*batch)->status) + " " + (*batch)->body + " " +
           std::to_string((*batch)->stored_at_ns) + "\n";
  }
  return out;
}

class MigratePostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PostgresServer* pg = PostgresEnvironment::server();
    ASSERT_NE(pg, nullptr);
    conninfo_ = pg->conninfo(pg->create_database());
    std::filesystem::create_directories(data());
  }

  std::filesystem::path data() const { return dir_.path() / "data"; }
  std::filesystem::path db() const { return data() / "stagelog.db"; }
  CliRun migrate() {
    return run_stagelog(dir_, {"migrate", "--from", data().string(), "--to", conninfo_});
  }

  TempDir dir_;
  std::string conninfo_;
};

TEST_F(MigratePostgresTest, EveryReadAnswersTheSameAndASecondRunAddsNothing) {
  const std::int64_t now = now_ns();
  {
    auto sqlite = store::open_sqlite_store(db());
    fill(*sqlite, now);
  }
  const std::string before = read_file(db());

  CliRun first = migrate();
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("6 attempts (0 already there), 6 events (0 already there), "
                                   "1 batch keys (0 already there)"));
  EXPECT_THAT(first.err, HasSubstr("attempts 6/6"));
  EXPECT_THAT(first.err, HasSubstr("events 6/6"));
  EXPECT_EQ(read_file(db()), before);  // Never written.

  CliRun second = migrate();
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_THAT(second.out, HasSubstr("0 attempts (6 already there), 0 events (6 already there), "
                                    "0 batch keys (1 already there)"));

  auto sqlite = store::open_sqlite_store(db());
  auto pg = store::open_postgres_store(conninfo_);
  const std::string want = answers(*sqlite, now);
  EXPECT_THAT(want, HasSubstr("job-a #2 a2"));
  EXPECT_THAT(want, HasSubstr("timeout after <n>ms"));
  EXPECT_EQ(answers(*pg, now), want);

  // The expiries came along: a purge two days from now removes the same on both. (Not sooner:
  // PostgreSQL drops events a whole UTC day of expiry at a time, store.hpp's purge.)
  const std::int64_t later = now + 2 * kDay;
  auto purged_sqlite = sqlite->purge(later);
  auto purged_pg = pg->purge(later);
  ASSERT_TRUE(purged_sqlite && purged_pg);
  EXPECT_EQ(*purged_sqlite, 4u);  // Two attempts, two events.
  EXPECT_EQ(*purged_pg, *purged_sqlite);
  EXPECT_EQ(answers(*pg, later), answers(*sqlite, later));
}

TEST_F(MigratePostgresTest, ARunAfterAPartialCopyAddsOnlyWhatIsMissing) {
  const std::int64_t now = now_ns();
  {
    auto sqlite = store::open_sqlite_store(db());
    fill(*sqlite, now);
  }
  {
    // As an interrupted run would have left it: the first attempts and some events stored.
    auto pg = store::open_postgres_store(conninfo_);
    ASSERT_TRUE(
        pg->put_execution(execution("job-a", "a1", now - 3 * kDay, "w1", true), now + 30 * kDay));
    std::vector<OwnedEvent> some = {
        event("job-a", now - 3 * kDay + kSecond, "LOAD", Status::Starting, "loading"),
        event("job-a", now - 3 * kDay + 30 * kSecond, "LOAD", Status::Completed, "loaded"),
    };
    ASSERT_TRUE(pg->append_events(some, now + 30 * kDay));
  }
  CliRun run = migrate();
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("5 attempts (1 already there), 4 events (2 already there)"));
  auto sqlite = store::open_sqlite_store(db());
  auto pg = store::open_postgres_store(conninfo_);
  EXPECT_EQ(answers(*pg, now), answers(*sqlite, now));
}

TEST_F(MigratePostgresTest, BadInputsSayWhatIsWrong) {
  auto run = [&](const std::string& from, const std::string& to) {
    return run_stagelog(dir_, {"migrate", "--from", from, "--to", to});
  };
  CliRun missing = run((dir_.path() / "nowhere").string(), conninfo_);
  EXPECT_EQ(missing.status, 2);
  EXPECT_THAT(missing.err, HasSubstr("nowhere: no such folder"));

  CliRun empty = run(data().string(), conninfo_);
  EXPECT_EQ(empty.status, 2);
  EXPECT_THAT(empty.err, HasSubstr("no stagelog.db in it"));

  { std::ofstream(db()) << "this is a text file, not a database\n"; }
  CliRun not_sqlite = run(data().string(), conninfo_);
  EXPECT_EQ(not_sqlite.status, 2);
  EXPECT_THAT(not_sqlite.err, HasSubstr("is not a stagelog store"));
  std::filesystem::remove(db());

  CliRun password = run(data().string(), "postgresql://stagelog:hunter2@db.internal/stagelog");
  EXPECT_EQ(password.status, 2);
  EXPECT_THAT(password.err, HasSubstr("holds a password"));
  EXPECT_THAT(password.err, Not(HasSubstr("hunter2")));

  { auto sqlite = store::open_sqlite_store(db()); }
  CliRun unreachable =
      run(data().string(), "host=" + (dir_.path() / "no-server").string() + " dbname=stagelog");
  EXPECT_EQ(unreachable.status, 2);
  EXPECT_THAT(unreachable.err, HasSubstr("cannot open the PostgreSQL store"));

  CliRun no_args = run_stagelog(dir_, {"migrate"});
  EXPECT_EQ(no_args.status, 2);
  EXPECT_THAT(no_args.err, HasSubstr("--from is required"));
}

}  // namespace
}  // namespace stagelog::test
