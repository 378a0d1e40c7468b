// Store::changes and Store::leader_lock on a real PostgreSQL: two stores on one database stand
// for two `stagelog serve` processes.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "postgres_environment.hpp"
#include "postgres_old_schema.hpp"
#include "stagelog/store/postgres_store.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;

const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

constexpr std::int64_t kT0 = 1'767'555'015'234'000'000;
constexpr std::int64_t kExpires = kT0 + 86'400'000'000'000;

std::string fresh_database() {
  PostgresServer* server = PostgresEnvironment::server();
  if (server == nullptr) throw std::runtime_error("PostgreSQL is not running");
  return server->conninfo(server->create_database());
}

// The first value of a query, as text ("" when it failed or found no row).
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

OwnedEvent event(const std::string& message) {
  OwnedEvent e;
  e.ts_ns = kT0;
  e.kind = Kind::Log;
  e.run = "feed-run";
  e.message = message;
  return e;
}

void append(store::Store& store, const std::vector<std::string>& messages) {
  std::vector<OwnedEvent> events;
  for (const std::string& m : messages) events.push_back(event(m));
  auto stored = store.append_events(events, kExpires);
  ASSERT_TRUE(stored) << stored.error().what();
}

// The messages the feed gives until `last` arrives: at most 100 calls of 100 ms. Errors (a
// lost connection) are collected, and the feed is called again.
std::vector<std::string> read_until(store::ChangeFeed& feed, const std::string& last,
                                    std::vector<std::string>* errors = nullptr) {
  std::vector<std::string> got;
  for (int i = 0; i < 100; ++i) {
    auto events = feed.next(100ms);
    if (!events) {
      if (errors != nullptr) errors->push_back(events.error().what());
      continue;
    }
    for (const OwnedEvent& e : *events) got.push_back(e.message);
    if (!got.empty() && got.back() == last) break;
  }
  return got;
}

TEST(PostgresFeedTest, FeedsCommittedWritesOfOtherStoresNotRolledBackOnesNorItsOwn) {
  std::string conninfo = fresh_database();
  auto here = store::open_postgres_store(conninfo);
  auto there = store::open_postgres_store(conninfo);
  std::unique_ptr<store::ChangeFeed> feed = here->changes();
  ASSERT_NE(feed, nullptr);
  ASSERT_TRUE(feed->next(0ms));  // Connects: writes from now on.

  append(*there, {"one", "two"});
  append(*here, {"own"});  // This store's own: the server saw them as it stored them.
  // A write that fails after its events were inserted rolls them back: never fed.
  std::vector<OwnedEvent> doomed = {event("rolled back")};
  store::EventsWrite events{doomed, kExpires, nullptr};
  Execution e;
  e.tracking_id = "t";
  e.execution_id = "x";
  e.started_at_ns = kT0;
  e.steps.push_back(Step{});
  store::ExecutionWrite bad{e, kExpires, 5};  // Steps from 5 of an attempt not stored: fails.
  ASSERT_FALSE(there->write({&events, 1}, {&bad, 1}));
  append(*there, {"three"});

  EXPECT_EQ(read_until(*feed, "three"), (std::vector<std::string>{"one", "two", "three"}));
}

TEST(PostgresFeedTest, ReconnectsAfterItsConnectionIsTerminatedAndMissesNothing) {
  std::string conninfo = fresh_database();
  auto here = store::open_postgres_store(conninfo);
  auto there = store::open_postgres_store(conninfo);
  std::unique_ptr<store::ChangeFeed> feed = here->changes();
  ASSERT_TRUE(feed->next(0ms));
  append(*there, {"one"});
  ASSERT_EQ(read_until(*feed, "one"), std::vector<std::string>{"one"});

  const std::string feed_backends =
      "FROM pg_stat_activity WHERE application_name = 'stagelog feed' AND "
      "datname = current_database()";
  ASSERT_EQ(query_one(conninfo, "SELECT COUNT(*) " + feed_backends), "1");
  query_one(conninfo, "SELECT pg_terminate_backend(pid) " + feed_backends);
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {  // At most 10 s.
    gone = query_one(conninfo, "SELECT COUNT(*) " + feed_backends) == "0";
    if (!gone) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(gone);
  // Written while nothing listens: no notification reaches the feed.
  append(*there, {"two"});
  append(*there, {"three", "four"});

  std::vector<std::string> errors;
  EXPECT_EQ(read_until(*feed, "four", &errors), (std::vector<std::string>{"two", "three", "four"}));
  ASSERT_LE(errors.size(), 1u);  // The call that found the connection closed.
  append(*there, {"five"});
  EXPECT_EQ(read_until(*feed, "five"), std::vector<std::string>{"five"});
}

TEST(PostgresFeedTest, ADatabaseOfSchemaVersionOneGainsTheFeed) {
  std::string conninfo = fresh_database();
  store::open_postgres_store(conninfo);  // Creates the schema, then made version 1 again:
  query_one(conninfo, "DROP TABLE feed; " + std::string(kEventsOfVersion2) +
                          "DELETE FROM schema_version; INSERT INTO schema_version VALUES (1); "
                          "SELECT 1");
  ASSERT_EQ(query_one(conninfo, "SELECT to_regclass('feed') IS NULL"), "t");
  auto here = store::open_postgres_store(conninfo);
  auto there = store::open_postgres_store(conninfo);
  EXPECT_EQ(query_one(conninfo, "SELECT MAX(version) FROM schema_version"),
            "3");  // And the events partitions.
  std::unique_ptr<store::ChangeFeed> feed = here->changes();
  ASSERT_TRUE(feed->next(0ms));
  append(*there, {"after the migration"});
  EXPECT_EQ(read_until(*feed, "after the migration"),
            std::vector<std::string>{"after the migration"});
}

TEST(PostgresFeedTest, OneStoreHoldsTheLeaderLockUntilItsSessionEnds) {
  std::string conninfo = fresh_database();
  auto first = store::open_postgres_store(conninfo);
  auto second = store::open_postgres_store(conninfo);
  auto a = first->leader_lock();
  auto b = second->leader_lock();
  ASSERT_TRUE(a && b);
  auto held_a = a->hold();
  auto held_b = b->hold();
  ASSERT_TRUE(held_a && held_b);
  EXPECT_TRUE(*held_a);
  EXPECT_FALSE(*held_b);
  EXPECT_TRUE(*a->hold());  // Held still.
  a.reset();                // Its connection closes, and the lock goes with the session.
  bool taken = false;
  for (int i = 0; i < 500 && !taken; ++i) {  // At most 10 s.
    auto held = b->hold();
    taken = held && *held;
    if (!taken) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(taken);
}

}  // namespace
}  // namespace stagelog::test
