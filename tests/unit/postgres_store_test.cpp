#include "stagelog/store/postgres_store.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "postgres_environment.hpp"
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

TEST(PostgresStoreTest, TwoStoresOpeningAtOnceCreateTheSchemaOnce) {
  PostgresBackend backend;
  constexpr int kStores = 4;
  std::vector<std::unique_ptr<store::Store>> stores(kStores);
  std::vector<std::string> errors(kStores);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStores; ++i) {
    threads.emplace_back([&, i] {
      try {
        stores[static_cast<std::size_t>(i)] = backend.open();
      } catch (const Error& e) {
        errors[static_cast<std::size_t>(i)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStores; ++i) {
    EXPECT_EQ(errors[static_cast<std::size_t>(i)], "") << "store " << i;
    EXPECT_NE(stores[static_cast<std::size_t>(i)], nullptr) << "store " << i;
  }
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT COUNT(*) FROM schema_version"), "1");
  EXPECT_EQ(query_one(backend.conninfo(), "SELECT version FROM schema_version"),
            "2");  // With the feed.
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

}  // namespace
}  // namespace stagelog::test
