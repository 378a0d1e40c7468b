#include "stagelog/store/postgres_store.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "postgres_environment.hpp"
#include "postgres_old_schema.hpp"
#include "scoped_env.hpp"
#include "stagelog/error.hpp"
#include "store/postgres_facts.hpp"
#include "store_conformance.hpp"

namespace stagelog::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// A fresh database on the executable's one server; every store opened on it shares it.
class PostgresBackend final : public StoreBackend {
 public:
  PostgresBackend() {
    PostgresServer* server = PostgresEnvironment::server();
    if (server == nullptr) throw std::runtime_error("PostgreSQL is not running");
    conninfo_ = server->conninfo(server->create_database());
  }
  std::unique_ptr<store::Store> open() override { return store::open_postgres_store(conninfo_); }
  const std::string& conninfo() const noexcept { return conninfo_; }

 private:
  std::string conninfo_;
};

INSTANTIATE_TEST_SUITE_P(PostgresStore, StoreConformanceTest,
                         ::testing::Values(StoreBackendFactory{
                             "postgres", [] { return std::make_unique<PostgresBackend>(); }}),
                         StoreBackendName{});

void ok_write(store::Store& store, const Execution& e) {
  auto written = store.put_execution(e, conformance::kT0 + conformance::kDay);
  ASSERT_TRUE(written) << written.error().what();
}

// One value of a query on the backend's database, as text.
std::string query_one(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string out;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
    PQclear(r);
  }
  PQfinish(c);
  return out;
}

// Runs SQL (statements separated by ';') on the backend's database: "" or the error.
std::string run_sql(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string error;
  if (PQstatus(c) != CONNECTION_OK) {
    error = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      error = PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(c);
  return error;
}

// Opens `count` stores on one database at once, each on its own thread; every one must open.
std::vector<std::unique_ptr<store::Store>> open_at_once(const std::string& conninfo, int count) {
  std::vector<std::unique_ptr<store::Store>> stores(static_cast<std::size_t>(count));
  std::vector<std::string> errors(static_cast<std::size_t>(count));
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < stores.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        stores[i] = store::open_postgres_store(conninfo);
      } catch (const Error& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < stores.size(); ++i) {
    EXPECT_EQ(errors[i], "") << "store " << i;
    EXPECT_NE(stores[i], nullptr) << "store " << i;
  }
  return stores;
}

TEST(PostgresStoreTest, TwoStoresOpeningAtOnceCreateTheSchemaOnce) {
  PostgresBackend backend;
  auto stores = open_at_once(backend.conninfo(), 4);
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT COUNT(*) FROM schema_version"), "1");
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT version FROM schema_version"),
            "3");  // With the feed and the events partitions.
  EXPECT_EQ(query_one(backend.conninfo(),
                      "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"),
            "10");  // Nine days ahead and the default.
  // Reopening adds nothing either.
  backend.open();
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT COUNT(*) FROM schema_version"), "1");
}

TEST(PostgresStoreTest, ANewerSchemaIsRefusedWithAClearError) {
  PostgresBackend backend;
  backend.open();
  query_one(backend.conninfo(), "UPDATE schema_version SET version = 99 RETURNING version");
  try {
    backend.open();
    FAIL() << "opened a store whose schema is newer";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("schema version is 99"));
  }
}

TEST(PostgresStoreTest, AfterARestartTheNextCallWorksAfterOneClearError) {
  PostgresBackend backend;
  auto store = backend.open();
  using conformance::kDay;
  using conformance::kT0;
  ASSERT_TRUE(store->put_execution(conformance::seed_execution("T1", "a"), kT0 + kDay));

  PostgresEnvironment::server()->restart();
  // The pooled connection is dead: the call that finds it fails, saying what and why.
  auto failed = store->latest("T1", kT0);
  ASSERT_FALSE(failed);
  EXPECT_THAT(failed.error().what(), HasSubstr("postgres store"));
  EXPECT_THAT(failed.error().what(), HasSubstr("cannot read execution"));
  EXPECT_EQ(failed.error().kind(), ErrorKind::Unavailable);  // 503 for a read or a write.
  // The next one connects again.
  auto got = store->latest("T1", kT0);
  ASSERT_TRUE(got) << got.error().what();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->execution_id, "a");
  ASSERT_TRUE(store->put_execution(conformance::seed_execution("T1", "b", kT0 + 1), kT0 + kDay));
  EXPECT_EQ(store->attempts("T1", kT0)->size(), 2u);
}

TEST(PostgresStoreTest, AUrlWithTheRestFromLibpqsEnvironmentConnects) {
  PostgresServer* server = PostgresEnvironment::server();
  std::string database = server->create_database();
  ScopedEnv host("PGHOST", server->dir().c_str());
  ScopedEnv port("PGPORT", "5432");
  auto store = store::open_postgres_store("postgresql://stagelog@/" + database);
  using conformance::kDay;
  using conformance::kT0;
  ASSERT_TRUE(store->put_execution(conformance::seed_execution("T1", "a"), kT0 + kDay));
  auto got = store->latest("T1", kT0);
  ASSERT_TRUE(got && got->has_value());
}

TEST(PostgresStoreTest, ABadConninfoIsAClearError) {
  auto server = PostgresEnvironment::server();
  for (const std::string& conninfo :
       {std::string("postgresql://[bad"), server->conninfo("no_such_database"),
        "host=" + server->dir().string() + "/missing port=5432 dbname=x"}) {
    try {
      store::open_postgres_store(conninfo);
      ADD_FAILURE() << "opened " << conninfo;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("cannot open postgres store")) << conninfo;
      EXPECT_GT(std::string(e.what()).size(), std::string("cannot open postgres store: ").size());
    }
  }
  try {
    store::open_postgres_store(server->conninfo("no_such_database"));
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no_such_database"));
  }
}

TEST(PostgresStoreTest, AConninfoWithAPasswordIsRefusedBeforeConnecting) {
  EXPECT_TRUE(store::check_postgres_conninfo("postgresql://stagelog@db.internal/stagelog"));
  EXPECT_TRUE(store::check_postgres_conninfo("host=/run/postgresql dbname=stagelog"));
  for (const char* conninfo : {"postgresql://stagelog:secret@db.internal/stagelog",
                               "postgresql://db.internal/stagelog?password=secret",
                               "host=db dbname=stagelog password=secret"}) {
    auto checked = store::check_postgres_conninfo(conninfo);
    ASSERT_FALSE(checked) << conninfo;
    EXPECT_THAT(checked.error().what(), HasSubstr("password")) << conninfo;
    EXPECT_THAT(checked.error().what(), HasSubstr("PGPASSFILE")) << conninfo;
    EXPECT_THAT(checked.error().what(), ::testing::Not(HasSubstr("secret"))) << conninfo;
  }
  auto bad = store::check_postgres_conninfo("postgresql://[bad");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().what(), HasSubstr("not a PostgreSQL connection string"));
}

TEST(PostgresStoreTest, ConcurrentCallsShareABoundedPool) {
  PostgresBackend backend;
  auto store = store::open_postgres_store(backend.conninfo(), {.pool_size = 2});
  using conformance::kDay;
  using conformance::kT0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto id = "exec_" + std::to_string(t) + "_" + std::to_string(i);
        EXPECT_TRUE(store->put_execution(conformance::seed_execution("shared", id), kT0 + kDay));
      }
    });
  }
  for (auto& t : threads) t.join();
  auto list = store->attempts("shared", kT0);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 60u);
  for (std::size_t i = 0; i < list->size(); ++i) EXPECT_EQ((*list)[i].n, static_cast<int>(i) + 1);
  EXPECT_LE(std::stoi(query_one(backend.conninfo(),
                                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid()")),
            2);
}

// A tsvector holds 1 MB at most: a step whose message has more distinct words than that is
// still stored whole, and found by its first words.
TEST(PostgresStoreTest, AStepWithAHugeMessageIsStoredAndFound) {
  PostgresBackend backend;
  auto store = backend.open();
  using namespace conformance;
  std::string message = "needle";
  for (int i = 0; i < 200'000; ++i) message += " word" + std::to_string(i);
  ok_write(*store, with_steps("huge", kT0, {step("load", kT0, "failed", message)}));
  store::ExecutionQuery q;
  q.text = "needle word1*";
  auto rows = store->list_executions(q, kT0);
  ASSERT_TRUE(rows) << rows.error().what();
  ASSERT_EQ(rows->size(), 1u);
  auto got = store->latest("huge", kT0);
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->steps.at(0).message, message);
}

TEST(PostgresStoreTest, SearchWordsFoldCaseAndDiacritics) {
  EXPECT_THAT(detail::search_words("Upload to Zürich: TIMEOUT-free ✓ 480000ms"),
              ElementsAre("upload", "to", "zurich", "timeout", "free", "480000ms"));
  EXPECT_EQ(detail::search_tsquery("gener* \"x\" OR"), "'gener':* & 'x' & 'or'");
  EXPECT_EQ(detail::search_tsquery("!!! *"), "");
  EXPECT_THAT(
      detail::metadata_pairs(R"({"n":3,"r":2.5,"big":1e2,"s":"x","o":{"a":1},"bad.key":1})"),
      ElementsAre(std::string("n\0"
                              "3",
                              3),
                  std::string("r\0"
                              "2.5",
                              5),
                  std::string("big\0"
                              "100.0",
                              9),
                  std::string("s\0x", 3)));
}

// The events partitions (store/postgres_schema.hpp): one per UTC day of expiry, named
// events_YYYYMMDD, made from tomorrow on; the rest in events_default.
constexpr std::int64_t kDayNs = conformance::kDay;
constexpr std::int64_t kHourNs = kDayNs / 24;

std::int64_t clock_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string partition_of(std::int64_t ns) {
  const std::chrono::year_month_day date{std::chrono::floor<std::chrono::days>(
      std::chrono::sys_time<std::chrono::nanoseconds>(std::chrono::nanoseconds(ns)))};
  char name[32];
  std::snprintf(name, sizeof name, "events_%04d%02u%02u", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return name;
}

// "t" when `table` is a partition of events.
std::string is_partition(const std::string& conninfo, const std::string& table) {
  return query_one(conninfo,
                   "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON "
                   "c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass AND c.relname = '" +
                       table + "')");
}

std::string rows_in(const std::string& conninfo, const std::string& table) {
  return query_one(conninfo, "SELECT COUNT(*) FROM " + table);
}

std::vector<std::string> messages(store::Store& store, const std::string& run, std::int64_t now) {
  auto got = store.events(run, now, 1000);
  EXPECT_TRUE(got) << got.error().what();
  std::vector<std::string> out;
  if (got) {
    for (const OwnedEvent& e : *got) out.push_back(e.message);
  }
  return out;
}

OwnedEvent said(const std::string& run, std::int64_t ts_ns, const std::string& message) {
  OwnedEvent e = conformance::event(run, ts_ns);
  e.message = message;
  return e;
}

TEST(PostgresStoreTest, PartitionsAreMadeForTheComingDays) {
  PostgresBackend backend;
  auto store = backend.open();
  // The store laid them out by its own clock, read before this one.
  const std::int64_t tomorrow = (clock_now_ns() / kDayNs + 1) * kDayNs;
  EXPECT_EQ(is_partition(backend.conninfo(), "events_default"), "t");
  for (int day = 0; day < 8; ++day) {
    EXPECT_EQ(is_partition(backend.conninfo(), partition_of(tomorrow + day * kDayNs)), "t")
        << "day " << day;
  }
  EXPECT_EQ(is_partition(backend.conninfo(), partition_of(tomorrow + 20 * kDayNs)), "f");
  // An event of one of those days is stored in its partition.
  std::vector<OwnedEvent> events = {said("r", tomorrow, "in a day partition")};
  ASSERT_TRUE(store->append_events(events, tomorrow + 2 * kDayNs + kHourNs));
  EXPECT_EQ(rows_in(backend.conninfo(), partition_of(tomorrow + 2 * kDayNs)), "1");
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "0");
}

TEST(PostgresStoreTest, AnExpiredDayIsDroppedWholeAndLaterDaysStayReadable) {
  PostgresBackend backend;
  auto store = backend.open();
  const std::int64_t tomorrow = (clock_now_ns() / kDayNs + 1) * kDayNs;
  std::vector<OwnedEvent> first = {said("r", tomorrow, "one"), said("r", tomorrow + 1, "two")};
  std::vector<OwnedEvent> later = {said("r", tomorrow + 2, "three")};
  ASSERT_TRUE(store->append_events(first, tomorrow + kHourNs));
  ASSERT_TRUE(store->append_events(later, tomorrow + 3 * kDayNs + kHourNs));
  const std::string day = partition_of(tomorrow);
  ASSERT_EQ(rows_in(backend.conninfo(), day), "2");

  // Expired but its day not over: kept, and never returned.
  auto removed = store->purge(tomorrow + 2 * kHourNs);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 0u);
  EXPECT_THAT(messages(*store, "r", tomorrow + 2 * kHourNs), ElementsAre("three"));
  EXPECT_EQ(is_partition(backend.conninfo(), day), "t");

  // Its day over: the partition is dropped, its two events counted.
  removed = store->purge(tomorrow + kDayNs);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 2u);
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT to_regclass('" + day + "') IS NULL"), "t");
  EXPECT_THAT(messages(*store, "r", tomorrow + kDayNs), ElementsAre("three"));
  EXPECT_THAT(messages(*store, "r", tomorrow), ElementsAre("three"));  // Gone, not hidden.
  // The pass made the partitions of the days after the one it ran on.
  EXPECT_EQ(is_partition(backend.conninfo(), partition_of(tomorrow + 10 * kDayNs)), "t");
  removed = store->purge(tomorrow + kDayNs);
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 0u);
}

TEST(PostgresStoreTest, AnEventOfADayWithoutPartitionIsInTheDefaultAndDeletedAtExpiry) {
  PostgresBackend backend;
  auto store = backend.open();
  using conformance::kT0;
  // kT0 lies in the past: no partition is ever made for a day that has begun.
  std::vector<OwnedEvent> events = {said("r", kT0, "old")};
  ASSERT_TRUE(store->append_events(events, kT0 + kDayNs));
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "1");
  auto removed = store->purge(kT0 + kDayNs - 1);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 0u);
  EXPECT_THAT(messages(*store, "r", kT0), ElementsAre("old"));
  removed = store->purge(kT0 + kDayNs);  // At its expiry, not at the end of its day.
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 1u);
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "0");
  EXPECT_TRUE(messages(*store, "r", kT0).empty());
}

TEST(PostgresStoreTest, ALongerRetentionGetsItsDaysPartitionsAtTheNextPass) {
  PostgresBackend backend;
  auto store = backend.open();
  const std::int64_t now = clock_now_ns();
  const std::int64_t expiry = now + 30 * kDayNs;  // Beyond the nine days made ahead.
  const std::int64_t far = now + 500 * kDayNs;    // Beyond any partition made ahead.
  std::vector<OwnedEvent> month = {said("r", now, "month")};
  std::vector<OwnedEvent> years = {said("r", now + 1, "years")};
  ASSERT_TRUE(store->append_events(month, expiry));
  ASSERT_TRUE(store->append_events(years, far));
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "2");

  auto removed = store->purge(now);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 0u);
  // Moved into a partition of its day, the next two days made for the same retention tomorrow.
  EXPECT_EQ(rows_in(backend.conninfo(), partition_of(expiry)), "1");
  EXPECT_EQ(is_partition(backend.conninfo(), partition_of(expiry + kDayNs)), "t");
  EXPECT_EQ(is_partition(backend.conninfo(), partition_of(expiry + 2 * kDayNs)), "t");
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "1");  // The far one stays.
  EXPECT_THAT(messages(*store, "r", now), ElementsAre("month", "years"));

  removed = store->purge(expiry - expiry % kDayNs + kDayNs);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 1u);
  EXPECT_THAT(messages(*store, "r", now), ElementsAre("years"));
}

// A retention pass of one server (making and moving partitions) while another inserts events
// of the days it makes: every insert succeeds, and every event ends up in its day's partition.
TEST(PostgresStoreTest, InsertsDuringPartitionPassesNeverFail) {
  PostgresBackend backend;
  auto writer = backend.open();
  auto leader = backend.open();
  const std::int64_t now = clock_now_ns();
  constexpr int kEvents = 150;
  std::vector<std::string> failures;
  std::thread purging([&] {
    for (int i = 0; i < 15; ++i) {
      auto removed = leader->purge(now);
      if (!removed) failures.push_back(removed.error().what());
    }
  });
  for (int i = 0; i < kEvents; ++i) {
    std::vector<OwnedEvent> one = {said("r", now + i, "event " + std::to_string(i))};
    // Days 10 to 49 from now: none made ahead, each made by a pass (moving what it finds).
    auto stored = writer->append_events(one, now + (10 + i % 40) * kDayNs);
    EXPECT_TRUE(stored) << stored.error().what();
  }
  purging.join();
  EXPECT_THAT(failures, ::testing::IsEmpty());
  auto removed = leader->purge(now);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "0");
  EXPECT_EQ(messages(*writer, "r", now).size(), static_cast<std::size_t>(kEvents));
}

TEST(PostgresStoreTest, MigratingAVersion2DatabaseKeepsItsEvents) {
  PostgresBackend backend;
  backend.open();  // Everything else as it is; events then made as version 2 had them.
  ASSERT_EQ(run_sql(backend.conninfo(),
                    std::string(kEventsOfVersion2) +
                        "DELETE FROM schema_version; INSERT INTO schema_version VALUES (1), (2)"),
            "");
  const std::int64_t now = clock_now_ns();
  const std::int64_t tomorrow = (now / kDayNs + 1) * kDayNs;
  using conformance::kT0;
  const std::string insert =
      "INSERT INTO events (ts_ns, kind, level, run, worker, component, stage, message, "
      "fields_json, pid, host, fields_in_message, expires_at_ns) VALUES ";
  auto row = [](std::int64_t ts, const std::string& message, std::int64_t expires) {
    return "(" + std::to_string(ts) + ", 'log', 'info', 'r', 'w', 'c', 'load', '" + message +
           "', '{\"rows\":3}', 7, 'h', false, " + std::to_string(expires) + ")";
  };
  ASSERT_EQ(run_sql(backend.conninfo(), insert + row(kT0, "expired", kT0 + kDayNs) + "," +
                                            row(now, "tomorrow", tomorrow + kHourNs) + "," +
                                            row(now + 1, "in a month", now + 30 * kDayNs)),
            "");

  auto stores = open_at_once(backend.conninfo(), 2);  // Both at once: one migrates.
  ASSERT_NE(stores[0], nullptr);
  store::Store& store = *stores[0];
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT MAX(version) FROM schema_version"), "3");
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT to_regclass('events_v2') IS NULL"), "t");
  EXPECT_EQ(
      query_one(backend.conninfo(), "SELECT relkind::text FROM pg_class WHERE relname = 'events'"),
      "p");
  EXPECT_EQ(rows_in(backend.conninfo(), partition_of(tomorrow)), "1");
  EXPECT_EQ(rows_in(backend.conninfo(), partition_of(now + 30 * kDayNs)), "1");
  EXPECT_EQ(rows_in(backend.conninfo(), "events_default"), "1");  // The expired one.

  auto page = store.event_page("r", std::nullopt, 10, kT0);
  ASSERT_TRUE(page) << page.error().what();
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].event.message, "expired");
  EXPECT_EQ((*page)[0].position.seq, 1);  // Ids kept: the feed's ranges name them.
  EXPECT_EQ((*page)[2].position.seq, 3);
  ASSERT_EQ((*page)[0].event.fields().size(), 1u);
  EXPECT_EQ((*page)[0].event.fields()[0].key, "rows");
  EXPECT_THAT(messages(store, "r", now), ElementsAre("tomorrow", "in a month"));

  // New events take the next ids.
  std::vector<OwnedEvent> more = {said("r", now + 2, "new")};
  ASSERT_TRUE(store.append_events(more, tomorrow + kHourNs));
  page = store.event_page("r", std::nullopt, 10, now);
  ASSERT_TRUE(page) << page.error().what();
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ(page->back().event.message, "new");
  EXPECT_EQ(page->back().position.seq, 4);

  auto removed = store.purge(now);
  ASSERT_TRUE(removed) << removed.error().what();
  EXPECT_EQ(*removed, 1u);  // The expired one, deleted from the default partition.
}

}  // namespace
}  // namespace stagelog::test
