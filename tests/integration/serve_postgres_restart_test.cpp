// `stagelog serve --store` (through STAGELOG_STORE) while its PostgreSQL stops and starts again
// (issue 18): every request that needs the database meanwhile, read or write, is answered 503
// with Retry-After (never 500, never a hang), /readyz says why, and once the database is back
// the server connects again by itself — the pool, the change feed's LISTEN, the leader lock —
// and clients retrying under their Idempotency-Key find every acknowledged batch stored once.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "events.hpp"
#include "eventually.hpp"
#include "postgres_environment.hpp"
#include "scoped_env.hpp"
#include "serve_process.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// Bounds of the waits below; a passing run takes a small part of them.
constexpr auto kPatience = 60s;
// What the server tells a client to wait while the store cannot be reached (api.cpp).
constexpr const char* kRetryUnreachable = "2";

// The database stopped for as long as it lives, started again by the destructor at the latest:
// a failed assertion part way leaves the next test a running server.
class Outage {
 public:
  explicit Outage(PostgresServer& pg) : pg_(pg) { pg_.stop(); }
  ~Outage() { end(); }
  Outage(const Outage&) = delete;
  Outage& operator=(const Outage&) = delete;
  void end() { pg_.start(); }

 private:
  PostgresServer& pg_;
};

// One `stagelog serve` on a fresh database of the fixture's PostgreSQL, its stderr in a file.
class Serve {
 public:
  Serve() {
    if (pg == nullptr) throw std::runtime_error("PostgreSQL is not running");
    store_.emplace("STAGELOG_STORE", pg->conninfo(pg->create_database()).c_str());
    process_.emplace(dir_.path() / "data", "127.0.0.1:0", dir_.path() / "stderr");
    if (!process_->wait_until_listening()) throw std::runtime_error("serve did not start");
  }

  httplib::Result request(const std::string& method, const std::string& path,
                          const std::string& body = "", const std::string& key = "") const {
    httplib::Client c("127.0.0.1", process_->port);
    c.set_connection_timeout(5s);
    c.set_read_timeout(30s);  // Bounds a request the database would hold: it must not.
    httplib::Headers h = {{"Authorization", "Bearer " + process_->token}};
    if (!key.empty()) h.emplace("Idempotency-Key", key);
    if (method == "POST") return c.Post(path, h, body, "application/x-ndjson");
    return c.Get(path, h);
  }
  httplib::Result get(const std::string& path) const { return request("GET", path); }
  httplib::Result post(const std::string& body, const std::string& key) const {
    return request("POST", "/api/v1/events", body, key);
  }

  std::string said() const {
    std::ifstream in(dir_.path() / "stderr");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  PostgresServer* const pg = PostgresEnvironment::server();

 private:
  TempDir dir_;
  std::optional<ScopedEnv> store_;
  std::optional<ServeProcess> process_;
};

// The statuses a loop of requests got, and whether every 503 said when to come back.
struct Tally {
  std::mutex mutex;
  std::map<int, int> statuses;  // -1: no answer.
  int unavailable_without_retry_after = 0;

  void add(const httplib::Result& r) {
    std::lock_guard lock(mutex);
    ++statuses[r ? r->status : -1];
    if (r && r->status == 503 && r->get_header_value("Retry-After") != kRetryUnreachable) {
      ++unavailable_without_retry_after;
    }
  }
  int count(int status) {
    std::lock_guard lock(mutex);
    return statuses.count(status) != 0 ? statuses[status] : 0;
  }
  // Every status but 200 and 503, with its count, for a failure's message.
  std::string others() {
    std::lock_guard lock(mutex);
    std::string out;
    for (auto [status, n] : statuses) {
      if (status != 200 && status != 503) {
        out += std::to_string(status) + " x" + std::to_string(n) + " ";
      }
    }
    return out;
  }
};

// What every read route answers while the database is down: 503, Retry-After, seed 004's body
// with the store's reason. The live routes, which read no store, still answer.
void expect_reads_unavailable(const Serve& s, const std::string& run) {
  for (const std::string& path :
       {"/api/execution-logs/" + run, "/api/v1/executions/" + run,
        "/api/v1/executions/" + run + "/attempts", "/api/v1/executions/" + run + "/events",
        std::string("/api/v1/executions"), std::string("/api/v1/executions?q=line"),
        std::string("/api/v1/executions?status=completed"), std::string("/api/v1/executions.csv"),
        std::string("/api/v1/stats/stages"), std::string("/api/v1/stats/failures")}) {
    auto r = s.get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 503) << path << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Retry-After"), kRetryUnreachable) << path;
    Json body = Json::parse(r->body, nullptr, false);
    EXPECT_EQ(body.value("error", ""), "Failed to retrieve execution log") << path;
    EXPECT_THAT(body.value("details", ""), HasSubstr("postgres store")) << path;
  }
  for (const char* path : {"/healthz", "/api/v1/workers", "/metrics"}) {
    auto r = s.get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
  }
}

TEST(ServePostgresRestartTest, ClientsSee503WhileItIsDownThenIngestResumesAndNothingAckedIsLost) {
  Serve s;
  PostgresServer& pg = *s.pg;
  constexpr int kClients = 3;
  constexpr int kBatches = 20;  // Each client's: half before the stop, half across it.
  constexpr int kLines = 5;
  const std::int64_t t0 = wall_now_ns();
  auto run_of = [](int c, int b) {
    return "restart-" + std::to_string(c) + "-" + std::to_string(b);
  };

  // The writers post their first halves, then wait for the stop to begin, and post the rest
  // through it: each batch under its own key, sent again with that key until it is stored.
  std::mutex mutex;
  std::condition_variable changed;
  int halfway = 0;
  bool stopping = false;
  std::atomic<int> acknowledged{0};
  std::atomic<int> gave_up{0};
  std::vector<std::atomic<int>> refused(kClients);  // 503s, per writer.
  Tally writes;
  std::vector<std::thread> writers;
  for (int c = 0; c < kClients; ++c) {
    writers.emplace_back([&, c] {
      for (int b = 0; b < kBatches; ++b) {
        if (b == kBatches / 2) {
          std::unique_lock lock(mutex);
          ++halfway;
          changed.notify_all();
          if (!changed.wait_for(lock, kPatience, [&] { return stopping; })) return;
        }
        std::string body;
        for (int l = 0; l < kLines; ++l) {
          body += stage_line(run_of(c, b), "S" + std::to_string(l), "completed", t0 + l, "line");
        }
        // <producer>-<seq>: one producer per writer, 32 hex digits.
        const std::string key =
            std::string(31, '0') + std::to_string(c + 1) + "-" + std::to_string(b + 1);
        const auto deadline = std::chrono::steady_clock::now() + kPatience;
        bool stored = false;
        while (!stored && std::chrono::steady_clock::now() < deadline) {
          auto r = s.post(body, key);
          writes.add(r);
          stored = r && r->status == 200;
          if (r && r->status == 503) ++refused[static_cast<std::size_t>(c)];
          // A pause between tries, not a hope: the loop ends on its deadline either way.
          if (!stored) std::this_thread::sleep_for(20ms);
        }
        if (!stored) {
          ++gave_up;
          return;
        }
        ++acknowledged;
      }
    });
  }
  auto join = [&] {
    for (std::thread& t : writers) t.join();
    writers.clear();
  };
  // The reader, started once the writers are halfway: the log of the first run stored, again
  // and again until told to end.
  std::atomic<bool> reading{true};
  Tally reads;
  std::thread reader;
  struct Joiner {  // Whatever fails below, the threads end before what they use does.
    std::function<void()> f;
    ~Joiner() { f(); }
  } joiner{[&] {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    changed.notify_all();
    reading = false;
    if (reader.joinable()) reader.join();
    join();
  }};

  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, kPatience, [&] { return halfway == kClients; }));
  }
  ASSERT_EQ(acknowledged, kClients * kBatches / 2);
  reader = std::thread([&] {
    for (int i = 0; i < 100'000 && reading; ++i) {
      reads.add(s.get("/api/execution-logs/" + run_of(0, 0)));
      std::this_thread::sleep_for(20ms);
    }
  });
  ASSERT_TRUE(eventually([&] { return reads.count(200) > 0; }, kPatience));
  // The leader lock is held before the outage, so that taking it again after means something.
  ASSERT_TRUE(eventually(
      [&] {
        auto m = s.get("/metrics");
        return m && m->body.find("\nstagelog_leader 1\n") != std::string::npos;
      },
      kPatience));

  {
    {
      std::lock_guard lock(mutex);
      stopping = true;  // The writers post while pg_ctl stops the server.
    }
    changed.notify_all();
    Outage outage(pg);
    // Every writer is refused (with a Retry-After: the tallies check every 503 for it).
    for (int c = 0; c < kClients; ++c) {
      EXPECT_TRUE(eventually([&] { return refused[static_cast<std::size_t>(c)] > 0; }, kPatience))
          << "writer " << c;
    }
    expect_reads_unavailable(s, run_of(0, 0));
    ASSERT_TRUE(eventually([&] { return reads.count(503) > 0; }, kPatience));
    auto ready = s.get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503);
    EXPECT_EQ(Json::parse(ready->body)["reason"], "the store cannot be reached");
    outage.end();
  }

  join();  // Each batch retried until stored: the writers end once all are.
  EXPECT_EQ(gave_up, 0);
  EXPECT_EQ(acknowledged, kClients * kBatches);
  EXPECT_EQ(writes.others(), "") << "writes answered neither 200 nor 503";
  EXPECT_EQ(writes.unavailable_without_retry_after, 0);
  const int read_before = reads.count(200);
  EXPECT_TRUE(eventually([&] { return reads.count(200) > read_before; }, kPatience));
  reading = false;
  reader.join();
  EXPECT_EQ(reads.others(), "") << "reads answered neither 200 nor 503";
  EXPECT_EQ(reads.unavailable_without_retry_after, 0);

  // Every batch acknowledged is there once: its run holds its lines, not one more.
  for (int c = 0; c < kClients; ++c) {
    for (int b = 0; b < kBatches; ++b) {
      auto r = s.get("/api/v1/executions/" + run_of(c, b) + "/events");
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << run_of(c, b) << ": " << r->body;
      EXPECT_EQ(Json::parse(r->body)["events"].size(), static_cast<std::size_t>(kLines))
          << run_of(c, b);
    }
  }
  auto listing = s.get("/api/v1/executions?limit=200");
  ASSERT_TRUE(listing);
  ASSERT_EQ(listing->status, 200) << listing->body;
  EXPECT_EQ(Json::parse(listing->body)["executions"].size(),
            static_cast<std::size_t>(kClients * kBatches));

  // Ready again; the change feed listens again and the leader lock is taken again, unasked.
  EXPECT_TRUE(eventually(
      [&] {
        auto r = s.get("/readyz");
        return r && r->status == 200;
      },
      kPatience));
  EXPECT_TRUE(
      eventually([&] { return s.said().find("change feed: connected again") != std::string::npos; },
                 kPatience))
      << s.said();
  // The leader lock's session ended with the server: the replica lets go of the lead, and
  // takes the lock again on a new connection.
  auto leads_now = [&] {
    std::string said = s.said();
    std::size_t n = 0;
    for (auto at = said.find("this server leads now"); at != std::string::npos;
         at = said.find("this server leads now", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_TRUE(eventually([&] { return leads_now() == 2; }, kPatience)) << s.said();
  EXPECT_THAT(s.said(), HasSubstr("this server no longer leads"));
  auto metrics = s.get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("\nstagelog_leader 1\n"));
  EXPECT_THAT(s.said(), HasSubstr("cannot reach the store ("));
}

// A replica taken out of a balancer's rotation gets no request but /readyz: that alone must
// find the database back, with no write to prove it.
TEST(ServePostgresRestartTest, ReadyzFindsTheDatabaseBackWithoutAWrite) {
  Serve s;
  PostgresServer& pg = *s.pg;
  auto stored = s.post(stage_line("ready-run", "LOAD", "completed", wall_now_ns()), "");
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->status, 200) << stored->body;
  {
    Outage outage(pg);
    auto r = s.get("/api/execution-logs/ready-run");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    auto ready = s.get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503);
    EXPECT_EQ(ready->get_header_value("Retry-After"), "10");
    EXPECT_EQ(Json::parse(ready->body)["reason"], "the store cannot be reached");
    // Asked again while the database is still down: still not ready.
    ready = s.get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503);
  }
  EXPECT_TRUE(eventually(
      [&] {
        auto r = s.get("/readyz");
        return r && r->status == 200;
      },
      kPatience));
  EXPECT_THAT(s.said(), HasSubstr("the store answers again, after"));
  auto r = s.get("/api/execution-logs/ready-run");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

}  // namespace
}  // namespace stagelog::test
