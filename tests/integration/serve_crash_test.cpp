// The real `stagelog serve` binary killed with SIGKILL in the middle of ingest: after a restart on
// the same data folder, every event it acknowledged is there, and the run that was open goes
// on in the same execution.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "serve_process.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

std::string stage_line(std::int64_t seq, std::int64_t ts_ns) {
  Json j = {{"ts_ns", ts_ns},        {"kind", "stage"},         {"level", "info"},
            {"run", "crash-run"},    {"worker", "T0_00"},       {"stage", "work"},
            {"status", "completed"}, {"fields", {{"seq", seq}}}};
  return j.dump() + "\n";
}

std::string run_line(std::string_view status, std::int64_t ts_ns) {
  Json j = {{"ts_ns", ts_ns},
            {"kind", "run"},
            {"run", "crash-run"},
            {"stage", "job"},
            {"status", status}};
  return j.dump() + "\n";
}

httplib::Headers auth(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

TEST(ServeCrashTest, EveryAcknowledgedEventSurvivesKillDashNine) {
  TempDir dir;
  const auto data = dir.path() / "data";
  const std::int64_t t0 = 1'767'555'015'234'000'000;
  constexpr int kPerBatch = 200;
  constexpr int kMaxBatches = 5000;
  constexpr int kBatchesBeforeKill = 15;

  std::string token;
  std::string execution_id;
  std::vector<std::int64_t> acknowledged;  // seq of every event a 200 answered.
  {
    ServeProcess serve(data);
    ASSERT_TRUE(serve.wait_until_listening());
    ASSERT_FALSE(serve.token.empty()) << "no admin token printed on first start";
    token = serve.token;
    httplib::Client client("127.0.0.1", serve.port);
    client.set_read_timeout(10, 0);
    auto r = client.Post("/api/v1/events", auth(token), run_line("starting", t0),
                         "application/x-ndjson");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;

    std::mutex mutex;
    std::condition_variable acked_more;
    int batches_acked = 0;
    std::thread poster([&] {
      httplib::Client c("127.0.0.1", serve.port);
      c.set_read_timeout(10, 0);
      c.set_write_timeout(10, 0);
      std::int64_t seq = 0;
      for (int b = 0; b < kMaxBatches; ++b) {
        std::string body;
        std::int64_t first = seq;
        for (int i = 0; i < kPerBatch; ++i, ++seq) body += stage_line(seq, t0 + 1 + seq);
        auto res = c.Post("/api/v1/events", auth(token), body, "application/x-ndjson");
        if (!res || res->status != 200) break;  // Killed.
        std::lock_guard lock(mutex);
        for (std::int64_t s = first; s < seq; ++s) acknowledged.push_back(s);
        ++batches_acked;
        acked_more.notify_all();
      }
    });
    {
      std::unique_lock lock(mutex);
      ASSERT_TRUE(
          acked_more.wait_for(lock, 120s, [&] { return batches_acked >= kBatchesBeforeKill; }))
          << "only " << batches_acked << " batches acknowledged";
    }
    serve.kill_hard();  // Mid-ingest: the poster has a batch in flight, or is about to.
    poster.join();
    r = httplib::Client("127.0.0.1", serve.port).Get("/healthz");
    EXPECT_FALSE(r) << "the server still answers after SIGKILL";
  }
  ASSERT_GE(acknowledged.size(), std::size_t{kBatchesBeforeKill * kPerBatch});

  ServeProcess again(data);
  ASSERT_TRUE(again.wait_until_listening());
  EXPECT_TRUE(again.token.empty()) << "a second admin token was printed";
  httplib::Client client("127.0.0.1", again.port);
  client.set_read_timeout(30, 0);
  auto r = client.Get("/api/v1/executions/crash-run", auth(token));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  Json doc = Json::parse(r->body);
  execution_id = doc["execution_id"];
  std::set<std::int64_t> stored;
  for (const Json& step : doc["steps"]) {
    if (step.contains("seq")) stored.insert(step["seq"].get<std::int64_t>());
  }
  std::size_t missing = 0;
  for (std::int64_t seq : acknowledged) missing += stored.count(seq) == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0u) << "of " << acknowledged.size() << " acknowledged events";

  // The run was open when the server died: its end closes the same execution.
  r = client.Post("/api/v1/events", auth(token), run_line("completed", t0 + 10'000'000'000'000),
                  "application/x-ndjson");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  r = client.Get("/api/execution-logs/crash-run", auth(token));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  Json data_json = Json::parse(r->body)["data"];
  EXPECT_EQ(data_json["execution_id"], execution_id);
  EXPECT_FALSE(data_json["completed_at"].is_null());
  r = client.Get("/api/v1/executions/crash-run/attempts", auth(token));
  ASSERT_TRUE(r);
  EXPECT_EQ(Json::parse(r->body)["attempts"].size(), 1u);

  int status = again.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

}  // namespace
}  // namespace stagelog::test
