// Three `stagelog serve` processes on one PostgreSQL database (STAGELOG_STORE), as replicas
// behind a load balancer: live events reach every replica, one replica leads (purges, alerts)
// and another takes over when it is killed, and clients that retry against the survivors
// store every acknowledged batch once.

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "events.hpp"
#include "eventually.hpp"
#include "ndjson_receiver.hpp"
#include "postgres_environment.hpp"
#include "scoped_env.hpp"
#include "serve_process.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// Bounds of the waits below; a passing run takes a small part of them.
constexpr auto kPatience = 60s;

// `n` servers on a fresh database sharing one tokens file, each started with `extra`.
class Replicas {
 public:
  explicit Replicas(int n, const std::vector<std::string>& extra = {}) {
    PostgresServer* pg = PostgresEnvironment::server();
    if (pg == nullptr) throw std::runtime_error("PostgreSQL is not running");
    store_.emplace("STAGELOG_STORE", pg->conninfo(pg->create_database()).c_str());
    for (int i = 0; i < n; ++i) {
      std::filesystem::path data = dir_.path() / std::to_string(i);
      if (i > 0) {
        std::filesystem::create_directories(data);
        std::filesystem::copy_file(dir_.path() / "0" / "tokens", data / "tokens");
      }
      servers.push_back(std::make_unique<ServeProcess>(
          data, "127.0.0.1:0", dir_.path() / ("stderr-" + std::to_string(i)), extra));
      if (!servers.back()->wait_until_listening()) throw std::runtime_error("a server failed");
      if (i == 0) token = servers.back()->token;
    }
  }
  int port(std::size_t i) const { return servers.at(i)->port; }
  httplib::Headers auth() const { return {{"Authorization", "Bearer " + token}}; }
  std::optional<std::string> get(std::size_t i, const std::string& path) const {
    httplib::Client c("127.0.0.1", port(i));
    c.set_connection_timeout(2s);
    c.set_read_timeout(10s);
    auto r = c.Get(path, auth());
    if (!r || r->status != 200) return std::nullopt;
    return r->body;
  }
  // Whether server i says it leads (/metrics); nullopt when it does not answer.
  std::optional<bool> leads(std::size_t i) const {
    auto metrics = get(i, "/metrics");
    if (!metrics) return std::nullopt;
    return metrics->find("\nstagelog_leader 1\n") != std::string::npos;
  }
  // The one server of `among` that leads, once exactly one does (nullopt after kPatience).
  std::optional<std::size_t> leader(const std::vector<std::size_t>& among) const {
    std::optional<std::size_t> found;
    bool one = eventually(
        [&] {
          int count = 0;
          for (std::size_t i : among) {
            if (leads(i).value_or(false)) {
              found = i;
              ++count;
            }
          }
          return count == 1;
        },
        kPatience);
    return one ? found : std::nullopt;
  }
  int post(std::size_t i, const std::string& body, const std::string& key = "") const {
    httplib::Client c("127.0.0.1", port(i));
    c.set_connection_timeout(2s);
    c.set_read_timeout(20s);
    httplib::Headers h = auth();
    if (!key.empty()) h.emplace("Idempotency-Key", key);
    auto r = c.Post("/api/v1/events", h, body, "application/x-ndjson");
    return r ? r->status : -1;
  }

  std::vector<std::unique_ptr<ServeProcess>> servers;
  std::string token;

 private:
  TempDir dir_;
  std::optional<ScopedEnv> store_;
};

// GET /api/v1/stream on its own thread, collecting what arrives.
class StreamReader {
 public:
  StreamReader(int port, const std::string& token) : client_("127.0.0.1", port) {
    client_.set_read_timeout(kPatience);
    thread_ = std::thread([this, token] {
      client_.Get(
          "/api/v1/stream", {{"Authorization", "Bearer " + token}, {"Accept", "text/event-stream"}},
          [this](const httplib::Response&) {
            connected_ = true;
            return true;
          },
          [this](const char* data, std::size_t n) {
            std::lock_guard lock(mutex_);
            text_.append(data, n);
            return true;
          });
    });
  }
  ~StreamReader() {
    client_.stop();
    thread_.join();
  }
  bool connected() const { return connected_; }
  bool saw(const std::string& s) const {
    std::lock_guard lock(mutex_);
    return text_.find(s) != std::string::npos;
  }

 private:
  httplib::Client client_;
  std::atomic<bool> connected_{false};
  mutable std::mutex mutex_;
  std::string text_;
  std::thread thread_;
};

TEST(ServeReplicasTest, AnEventPostedToOneReplicaStreamsFromAnotherAndLogsReadTheSame) {
  Replicas r(3);
  StreamReader stream(r.port(0), r.token);
  ASSERT_TRUE(eventually([&] { return stream.connected(); }, kPatience));

  const std::int64_t t0 = wall_now_ns();
  std::string body = stage_line("replica-run", "LOAD", "starting", t0) +
                     stage_line("replica-run", "LOAD", "completed", t0 + 1'000'000, "posted to C");
  ASSERT_EQ(r.post(2, body), 200);
  EXPECT_TRUE(eventually([&] { return stream.saw("posted to C"); }, kPatience));
  // The live worker board of A knows the worker too.
  EXPECT_TRUE(eventually(
      [&] { return r.get(0, "/api/v1/workers").value_or("").find("w1") != std::string::npos; },
      kPatience));
  // Its metrics count what it stored itself: summed over the replicas, each event once.
  EXPECT_NE(r.get(0, "/metrics").value_or("").find("\nstagelog_events_ingested_total 0\n"),
            std::string::npos);
  EXPECT_NE(r.get(2, "/metrics").value_or("").find("\nstagelog_events_ingested_total 2\n"),
            std::string::npos);

  auto logs = {r.get(0, "/api/execution-logs/replica-run"),
               r.get(1, "/api/execution-logs/replica-run"),
               r.get(2, "/api/execution-logs/replica-run")};
  for (const auto& log : logs) {
    ASSERT_TRUE(log);
    EXPECT_EQ(*log, **logs.begin());
    EXPECT_NE(log->find("LOAD"), std::string::npos);
  }
}

TEST(ServeReplicasTest, AnotherReplicaLeadsWhenTheLeaderIsKilledAndAnAlertFiresOnce) {
  Receiver hooks(0, kPatience, "/hook");
  TempDir config;
  std::filesystem::path alerts = config.path() / "alerts.json";
  std::ofstream(alerts) << R"({"webhooks": [{"name": "ops", "url": "http://127.0.0.1:)"
                        << hooks.port() << R"(/hook"}], "rules": [
      {"name": "judge", "type": "repeated_failures", "stage": "JUDGE", "count": 2,
       "window": "1h", "cooldown": "1h"},
      {"name": "marker", "type": "repeated_failures", "stage": "MARKER", "count": 1,
       "cooldown": "1h"}]})";
  Replicas r(3, {"--alerts", alerts.string()});

  std::optional<std::size_t> first = r.leader({0, 1, 2});
  ASSERT_TRUE(first);
  r.servers.at(*first)->kill_hard();  // SIGKILL: its session ends, and the lock goes with it.
  std::vector<std::size_t> rest;
  for (std::size_t i = 0; i < 3; ++i) {
    if (i != *first) rest.push_back(i);
  }
  std::optional<std::size_t> second = r.leader(rest);
  ASSERT_TRUE(second);
  std::size_t follower = rest[0] == *second ? rest[1] : rest[0];

  // One incident, its failures posted to both survivors; then a marker after it.
  const std::int64_t t0 = wall_now_ns();
  ASSERT_EQ(r.post(follower, stage_line("judged-1", "JUDGE", "failed", t0, "boom")), 200);
  ASSERT_EQ(r.post(*second, stage_line("judged-2", "JUDGE", "failed", t0 + 1'000, "boom")), 200);
  ASSERT_EQ(r.post(follower, stage_line("marked", "MARKER", "failed", t0 + 2'000, "x")), 200);
  auto count = [&](const std::string& rule) {
    std::size_t n = 0;
    for (const Received& got : hooks.requests()) {
      for (const std::string& l : got.lines) n += Json::parse(l)["rule"] == rule ? 1 : 0;
    }
    return n;
  };
  // The leader fires in the order it sees the events, and delivers in that order.
  ASSERT_TRUE(eventually([&] { return count("marker") >= 1; }, kPatience));
  EXPECT_EQ(count("judge"), 1u);
  EXPECT_EQ(count("marker"), 1u);
}

TEST(ServeReplicasTest, AReplicaKilledMidIngestLosesNoAcknowledgedBatchNorStoresOneTwice) {
  Replicas r(3);
  constexpr int kClients = 2;
  constexpr int kBatches = 30;
  constexpr int kLines = 5;
  std::atomic<int> acknowledged{0};
  std::atomic<bool> killed{false};
  std::vector<std::vector<std::string>> stored(kClients);  // The runs acknowledged.
  std::vector<std::thread> clients;
  const std::int64_t t0 = wall_now_ns();
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int b = 0; b < kBatches; ++b) {
        std::string run = "ingest-" + std::to_string(c) + "-" + std::to_string(b);
        std::string body;
        for (int l = 0; l < kLines; ++l) {
          body += stage_line(run, "S" + std::to_string(l), "completed", t0 + l, "line");
        }
        // <producer>-<seq>: one producer per client, 32 hex digits.
        std::string key =
            std::string(31, '0') + std::to_string(c + 1) + "-" + std::to_string(b + 1);
        // Round robin, and on to the next replica when one fails: at most 3 rounds.
        for (int attempt = 0; attempt < 9; ++attempt) {
          std::size_t at = static_cast<std::size_t>(b + c + attempt) % 3;
          if (killed && at == 1) continue;
          if (r.post(at, body, key) == 200) {
            stored[static_cast<std::size_t>(c)].push_back(run);
            ++acknowledged;
            break;
          }
        }
      }
    });
  }
  EXPECT_TRUE(eventually([&] { return acknowledged >= kClients * kBatches / 3; }, kPatience));
  r.servers.at(1)->kill_hard();
  killed = true;
  for (std::thread& t : clients) t.join();

  EXPECT_EQ(acknowledged, kClients * kBatches);  // Every batch found a replica in 3 rounds.
  for (const auto& runs : stored) {
    for (const std::string& run : runs) {
      auto events = r.get(0, "/api/v1/executions/" + run + "/events");
      ASSERT_TRUE(events) << run;
      EXPECT_EQ(Json::parse(*events)["events"].size(), static_cast<std::size_t>(kLines)) << run;
    }
  }
}

}  // namespace
}  // namespace stagelog::test
