// A NetworkSink against the real `stagelog serve` binary: the server killed with SIGKILL and
// restarted on the same port and data folder loses none of the sink's events and keeps their
// order; a spool left by a process killed before it could deliver is sent by the next process
// that opens it. What the server stored is read back from its SQLite file after it exits.
//
// Every event carries the same timestamp (a constant Options::clock): Store::events orders by
// ts_ns, then by order of appending, so with one timestamp the order read back is the order
// the server received and stored the events, and a reordering on the way would show.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "eventually.hpp"
#include "serve_process.hpp"
#include "stagelog/field.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "stagelog/stage.hpp"
#include "store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr auto kPatience = 30s;  // Upper bound on any wait; a passing test takes far less.

std::int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

httplib::Headers auth(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

// Collects the sink's trouble reports (from its sender and the backend thread).
class Reports {
 public:
  std::function<void(std::string_view)> handler() {
    return [this](std::string_view m) {
      std::lock_guard lock(mu_);
      messages_.emplace_back(m);
    };
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return messages_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
};

NetworkSinkOptions sink_options(int port, const std::string& token, const fs::path& spool,
                                const std::function<void(std::string_view)>& on_error) {
  NetworkSinkOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(port);
  o.token = token;
  o.spool_path = spool;
  o.batch_events = 100;  // Many requests, so that the kill may land on one.
  o.retry_initial = 50ms;
  o.retry_max = 200ms;
  o.request_timeout = 5s;
  o.on_error = on_error;
  return o;
}

Options recorder_options(std::int64_t ts_ns) {
  Options o;
  o.clock = [ts_ns] { return ts_ns; };  // See the top of the file.
  o.watchdog = std::nullopt;            // Its events would be steps too.
  o.install_crash_handlers = false;
  o.on_error = [](std::string_view m) { std::cerr << "recorder: " << m << "\n"; };
  return o;
}

// One "work" stage end per seq, in the calling thread's run.
void record_stages(Recorder& recorder, std::int64_t from, std::int64_t to) {
  for (std::int64_t seq = from; seq < to; ++seq) {
    const Kv fields[] = {kv("seq", seq)};
    recorder.logger().event(Kind::Stage, Level::Info, Status::Completed, "work", "", fields);
  }
}

std::optional<std::int64_t> seq_of(const OwnedEvent& event) {
  for (const Field& f : event.fields()) {
    if (f.key != "seq") continue;
    if (const auto* v = std::get_if<std::int64_t>(&f.value)) return *v;
  }
  return std::nullopt;
}

// What `stagelog serve` stored for a run, read from its SQLite file once it has exited.
struct Stored {
  std::vector<OwnedEvent> events;
  std::vector<std::int64_t> stage_seqs;  // The seq of each stage event, in stored order.
  std::optional<Execution> execution;
  std::size_t attempts = 0;
};

Stored read_store(const fs::path& data, const std::string& run) {
  store::SqliteStore store(data / "stagelog.db");
  const std::int64_t now = wall_now_ns();
  Stored out;
  out.events = store.events(run, now, 10'000'000).value();
  for (const OwnedEvent& e : out.events) {
    if (e.kind != Kind::Stage) continue;
    out.stage_seqs.push_back(seq_of(e).value_or(-1));
  }
  out.execution = store.latest(run, now).value();
  out.attempts = store.attempts(run, now).value().size();
  return out;
}

// The seq of each step of an execution folded from the events, in step order.
std::vector<std::int64_t> step_seqs(const Execution& execution) {
  std::vector<std::int64_t> out;
  for (const Step& step : execution.steps) {
    Json custom = Json::parse(step.custom_json);
    out.push_back(custom.contains("seq") ? custom["seq"].get<std::int64_t>() : -1);
  }
  return out;
}

// Lets the worker thread and the test take turns: reach(n) marks step n done, wait(n) waits
// (at most kPatience) for it. release_all() frees every waiter, for an early exit.
class Steps {
 public:
  void reach(int n) {
    std::lock_guard lock(mu_);
    if (n > reached_) reached_ = n;
    cv_.notify_all();
  }
  bool wait(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return reached_ >= n; });
  }
  void release_all() { reach(1 << 30); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int reached_ = 0;
};

TEST(NetworkSinkServeTest, NothingLostAndOrderKeptAcrossAServerRestart) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const std::string run = "e2e-restart";
  constexpr std::int64_t kEvents = 3000;
  constexpr std::int64_t kThird = kEvents / 3;
  constexpr std::int64_t kHalf = kEvents / 2;

  std::optional<ServeProcess> serve(std::in_place, data);
  ASSERT_TRUE(serve->wait_until_listening());
  ASSERT_FALSE(serve->token.empty()) << "no admin token printed on first start";
  const std::string token = serve->token;
  const int port = serve->port;

  Reports reports;
  auto sink = std::make_shared<NetworkSink>(
      sink_options(port, token, dir.path() / "spool" / "server.spool", reports.handler()));
  const std::int64_t ts = wall_now_ns();
  Recorder recorder(recorder_options(ts));
  recorder.add_sink(sink);

  // The worker records seq 0..kEvents-1 in one run: the first third, then up to half while the
  // test waits for the first third to be acknowledged and kills the server (those may be in
  // flight at the kill), the rest of the second third once the server is dead, the last third
  // once it listens again.
  Steps worker_done;  // 1: first third recorded, 2: up to half, 3: second third, 4: all.
  Steps test_done;    // 3: server killed, 4: server restarted.
  std::thread worker([&] {
    RunScope scope(recorder, run);
    record_stages(recorder, 0, kThird);
    worker_done.reach(1);
    record_stages(recorder, kThird, kHalf);
    worker_done.reach(2);
    if (test_done.wait(3)) record_stages(recorder, kHalf, 2 * kThird);
    worker_done.reach(3);
    if (test_done.wait(4)) record_stages(recorder, 2 * kThird, kEvents);
  });
  struct JoinAtExit {
    std::thread& thread;
    Steps& steps;
    ~JoinAtExit() {
      steps.release_all();
      if (thread.joinable()) thread.join();
    }
  } join_at_exit{worker, test_done};

  ASSERT_TRUE(worker_done.wait(1));
  // The run start and the first third: acknowledged, hence stored.
  ASSERT_TRUE(eventually([&] { return sink->stats().sent >= kThird + 1; }, kPatience))
      << "sent " << sink->stats().sent;
  serve->kill_hard();
  const std::uint64_t sent_before_kill = sink->stats().sent;

  ASSERT_TRUE(worker_done.wait(2));
  test_done.reach(3);
  ASSERT_TRUE(worker_done.wait(3));
  recorder.flush();  // Into the spool: the server is dead.
  EXPECT_GE(sink->stats().queued, static_cast<std::uint64_t>(2 * kThird - kHalf));
  ASSERT_TRUE(eventually([&] { return sink->stats().failed_requests > 0; }, kPatience))
      << "the sink never tried the dead server";

  serve.emplace(data, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(serve->wait_until_listening()) << "cannot listen on port " << port << " again";
  ASSERT_EQ(serve->port, port);
  EXPECT_TRUE(serve->token.empty()) << "a second admin token was printed";

  test_done.reach(4);
  worker.join();  // After the scope's run end.
  recorder.flush();
  ASSERT_TRUE(sink->wait_sent(kPatience)) << "queued " << sink->stats().queued;
  const NetworkSinkStats stats = sink->stats();
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.rejected, 0u);
  EXPECT_GE(stats.sent, static_cast<std::uint64_t>(kEvents + 2));
  EXPECT_GT(stats.spooled, 0u);

  sink->close();  // Its idle keep-alive connection would hold up the server's stop.
  Json log;
  {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(30, 0);
    auto r = client.Get("/api/execution-logs/" + run, auth(token));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    log = Json::parse(r->body)["data"];
  }

  const int status = serve->terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  const Stored stored = read_store(data, run);
  ASSERT_GE(stored.events.size(), 2u);
  EXPECT_EQ(stored.events.front().kind, Kind::Run);
  EXPECT_EQ(stored.events.front().status, Status::Starting);
  EXPECT_EQ(stored.events.back().kind, Kind::Run);
  EXPECT_EQ(stored.events.back().status, Status::Completed);
  std::size_t other_ts = 0;
  for (const OwnedEvent& e : stored.events) other_ts += e.ts_ns != ts ? 1 : 0;
  ASSERT_EQ(other_ts, 0u) << "the order read back would be by timestamp, not by arrival";

  // At least once, in order: each seq is the next new one (kept order, nothing skipped) or
  // one seen already (a batch sent again because its answer was lost to the kill).
  std::int64_t next = 0;
  std::size_t duplicates = 0;
  for (std::size_t i = 0; i < stored.stage_seqs.size(); ++i) {
    std::int64_t seq = stored.stage_seqs[i];
    if (seq == next) {
      ++next;
    } else if (seq >= 0 && seq < next) {
      ++duplicates;
    } else {
      ADD_FAILURE() << "stored stage " << i << " has seq " << seq << ", expected " << next
                    << " or a repeat";
      break;
    }
  }
  EXPECT_EQ(next, kEvents) << "seq " << next << " and later are missing";
  EXPECT_EQ(stored.stage_seqs.size(), static_cast<std::size_t>(kEvents) + duplicates);
  ::testing::Test::RecordProperty("duplicates", static_cast<int>(duplicates));
  ::testing::Test::RecordProperty("sent_before_kill", static_cast<int>(sent_before_kill));
  std::cout << "[ info ] " << duplicates << " duplicate events (at-least-once), "
            << sent_before_kill << " acknowledged before the kill, " << stats.failed_requests
            << " failed requests, " << reports.size() << " sink reports\n";

  // One execution across the restart; one step per stored stage event, in the same order
  // (ExecutionFolder: a stage end adds a step; the run start and a completed run end add none).
  EXPECT_EQ(stored.attempts, 1u);
  ASSERT_TRUE(stored.execution);
  EXPECT_EQ(step_seqs(*stored.execution), stored.stage_seqs);
  EXPECT_EQ(log["total_steps"].get<std::size_t>(), stored.stage_seqs.size());
  EXPECT_EQ(log["steps"].size(), stored.stage_seqs.size());
  EXPECT_EQ(log["final_status"], "completed");
  EXPECT_FALSE(log["completed_at"].is_null());
  EXPECT_EQ(log["execution_id"], stored.execution->execution_id);
}

TEST(NetworkSinkServeTest, SpoolFromADeadProcessIsDeliveredByTheNext) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const fs::path spool = dir.path() / "spool" / "server.spool";
  const std::string run = "e2e-orphan";
  constexpr std::int64_t kEvents = 500;

  // A first start for the token and a port; the server is down while the child records.
  std::string token;
  int port = 0;
  {
    ServeProcess serve(data);
    ASSERT_TRUE(serve.wait_until_listening());
    ASSERT_FALSE(serve.token.empty());
    token = serve.token;
    port = serve.port;
    ASSERT_EQ(serve.terminate(), 0);
  }

  // The child (forked while this process has no recorder or sink) records the run, flushes it
  // into the spool, reports its sink's counters and waits to be killed with SIGKILL.
  int to_parent[2];
  int hold[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(hold), 0);
  const std::int64_t ts = wall_now_ns();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(to_parent[0]);
    close(hold[1]);
    try {
      auto sink =
          std::make_shared<NetworkSink>(sink_options(port, token, spool, [](std::string_view) {}));
      Recorder recorder(recorder_options(ts));
      recorder.add_sink(sink);
      {
        RunScope scope(recorder, run);
        record_stages(recorder, 0, kEvents);
      }
      recorder.flush();
      NetworkSinkStats s = sink->stats();
      std::uint64_t report[3] = {s.queued, s.sent, sink->spool_path() == spool ? 1u : 0u};
      if (write(to_parent[1], report, sizeof report) != sizeof report) _exit(2);
      char c;
      if (read(hold[0], &c, 1) >= 0) {  // Returns only if the parent died first.
      }
    } catch (...) {
    }
    _exit(3);
  }
  close(to_parent[1]);
  close(hold[0]);
  std::uint64_t report[3] = {};
  ssize_t n = read(to_parent[0], report, sizeof report);
  kill(child, SIGKILL);
  int child_status = 0;
  waitpid(child, &child_status, 0);
  close(to_parent[0]);
  close(hold[1]);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof report)) << "the child failed before reporting";
  EXPECT_TRUE(WIFSIGNALED(child_status) && WTERMSIG(child_status) == SIGKILL);
  EXPECT_EQ(report[0], static_cast<std::uint64_t>(kEvents + 2)) << "queued in the child";
  EXPECT_EQ(report[1], 0u) << "sent by the child";
  EXPECT_EQ(report[2], 1u) << "the child did not spool to " << spool;

  ServeProcess serve(data, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(serve.wait_until_listening()) << "cannot listen on port " << port << " again";
  Reports reports;
  {
    NetworkSink sink(sink_options(port, token, spool, reports.handler()));
    EXPECT_EQ(sink.spool_path(), spool);
    EXPECT_EQ(sink.stats().replayed, static_cast<std::uint64_t>(kEvents + 2));
    ASSERT_TRUE(sink.wait_sent(kPatience)) << "queued " << sink.stats().queued;
    EXPECT_EQ(sink.stats().sent, static_cast<std::uint64_t>(kEvents + 2));
    EXPECT_EQ(sink.stats().rejected, 0u);
  }
  const int status = serve.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  // Nothing was acknowledged before, and the server stayed up: exactly once, in order.
  const Stored stored = read_store(data, run);
  ASSERT_EQ(stored.events.size(), static_cast<std::size_t>(kEvents + 2));
  EXPECT_EQ(stored.events.front().kind, Kind::Run);
  EXPECT_EQ(stored.events.back().kind, Kind::Run);
  EXPECT_EQ(stored.events.back().status, Status::Completed);
  std::vector<std::int64_t> expected;
  for (std::int64_t seq = 0; seq < kEvents; ++seq) expected.push_back(seq);
  EXPECT_EQ(stored.stage_seqs, expected);
  EXPECT_EQ(stored.attempts, 1u);
  ASSERT_TRUE(stored.execution);
  EXPECT_EQ(step_seqs(*stored.execution), expected);
  EXPECT_TRUE(stored.execution->completed_at_ns.has_value());
}

}  // namespace
}  // namespace stagelog::test
