// Golden tests from seed 001's own quoted lines (shared/seeds/001, "Logging Improvements"):
// each line the seed quotes, fed the same situation on a FakeClock, is printed identically.
// The seed's logger prints "[time] [name] message"; the time aside, we compare "[worker]
// message" for the agents' lines and the message for the brain's (its "[brain]" is our
// watchdog). Agents record through a Recorder on a FakeClock; the brain's lines come from a
// Watchdog fed those same events with explicit ticks, as `stagelog tail --replay` would.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "base/python_text.hpp"
#include "recording.hpp"
#include "scoped_env.hpp"
#include "stagelog/agent.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "stagelog/watchdog.hpp"
#include "temp_dir.hpp"
#include "watchdog_harness.hpp"

namespace stagelog {
namespace {

using test::at;
using test::kT0;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;

// A recorder on a FakeClock at kT0 with no watchdog of its own (the brain below is one fed by
// hand), every component at DEBUG unless a test says otherwise.
struct Agents {
  Agents() : f(no_watchdog()) {}
  static Options no_watchdog() {
    Options o;
    o.watchdog = std::nullopt;
    return o;
  }
  // "[worker] message" of every event, in order.
  std::vector<std::string> lines() {
    std::vector<std::string> out;
    for (const auto& e : f.events()) out.push_back("[" + e.worker + "] " + e.message);
    return out;
  }
  test::ScopedEnv level{"WORKER_LOG_LEVEL", "DEBUG"};
  test::Recording f;
};

// The seed's brain: a watchdog with seed 001's defaults (seed wording, 5 min, 60 s, 60 s),
// no process checks (the events are replayed), MONITOR only when asked.
struct Brain {
  Brain() {
    WatchdogOptions o;
    o.check_processes = false;
    o.progress_interval = 0s;
    o.summary_interval = 0s;
    wd.emplace(o, r.fn());
  }
  // Feeds recorded events, as a replay does.
  void feed(const std::vector<test::OwnedEvent>& events) {
    for (const auto& e : events) {
      const stagelog::OwnedEvent owned = e.owned();
      wd->observe(owned.view());
    }
  }
  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (const auto& e : r.all()) out.push_back(e.message);
    return out;
  }
  test::Reports r;
  std::optional<Watchdog> wd;
};

// ---------------------------------------------------------------------------------------------
// P0: GPU agent lifecycle events

TEST(Seed001GoldenTest, GpuAgentLifecycle) {
  Agents a;
  {
    Agent agent(a.f.recorder, "gpu-1");
    agent.initialized(kv("gpu", 1), kv("port", 11435), kv("model", "qwen2.5:7b"));
    agent.starting();
    for (int i = 0; i < 42; ++i) {
      agent.claimed("t" + std::to_string(i), "llm");
      agent.completed("t" + std::to_string(i));
    }
    agent.claimed("t42", "llm");
    agent.failed("t42", "timeout");
    agent.crashed("KeyError", "model_name");
    agent.shutdown();
  }
  std::vector<std::string> lifecycle;
  for (const auto& e : a.f.events()) {
    if (e.kind == Kind::Lifecycle) lifecycle.push_back("[" + e.worker + "] " + e.message);
  }
  EXPECT_THAT(lifecycle,
              ElementsAre("[gpu-1] GPU agent initialized: gpu-1 (GPU 1), port 11435, model "
                          "qwen2.5:7b",
                          "[gpu-1] GPU agent gpu-1 starting",
                          "[gpu-1] GPU agent crashed: KeyError('model_name')",
                          "[gpu-1] GPU gpu-1 shutting down - completed 42, failed 1"));
}

// ---------------------------------------------------------------------------------------------
// P0: claim loop visibility, P1: claim attempts, P1: heartbeats

TEST(Seed001GoldenTest, ClaimLoopVisibility) {
  Agents a;
  Agent agent(a.f.recorder, "worker-gpu1");
  agent.nothing_claimed({{"llm", 125}}, {"resource", "script", "cpu", "llm"}, false);
  a.f.clock.advance(5s);
  agent.nothing_claimed({{"llm", 123}}, {"resource", "script", "cpu", "llm"}, false);
  agent.nothing_claimed({}, {"llm"}, false);
  EXPECT_THAT(a.lines(), ElementsAre("[worker-gpu1] No suitable tasks - Queue: [llm:125], "
                                     "Preferred: ['resource', 'script', 'cpu', 'llm'], Model "
                                     "loaded: False",
                                     "[worker-gpu1] No suitable tasks - Queue: [llm:123], "
                                     "Preferred: ['resource', 'script', 'cpu', 'llm'], Model "
                                     "loaded: False",
                                     "[worker-gpu1] Queue empty"));
}

TEST(Seed001GoldenTest, ClaimAttemptsAndLostRaces) {
  Agents a;
  {
    Agent gpu1(a.f.recorder, "worker-gpu1");
    gpu1.attempt("d5de16d7");
    gpu1.lost_race("d5de16d7");
  }
  Agent gpu2(a.f.recorder, "worker-gpu2");
  gpu2.attempt("d5de16d7");
  gpu2.claimed("d5de16d7", "load_llm");
  std::vector<std::string> lines;
  for (const auto& line : a.lines()) {
    if (line.find("shutting down") == std::string::npos) lines.push_back(line);
  }
  EXPECT_THAT(lines, ElementsAre("[worker-gpu1] Attempting claim: d5de16d7",
                                 "[worker-gpu1] Lost race: d5de16d7 (claimed by another worker)",
                                 "[worker-gpu2] Attempting claim: d5de16d7",
                                 "[worker-gpu2] Claimed meta task: d5de16d7 (load_llm)"));
}

TEST(Seed001GoldenTest, HeartbeatSent) {
  Agents a;
  Agent agent(a.f.recorder, "worker-gpu1");
  a.f.clock.advance(4s);
  agent.heartbeat();
  a.f.clock.advance(30s);
  agent.heartbeat();
  EXPECT_THAT(a.lines(), ElementsAre("[worker-gpu1] Heartbeat sent - status: idle, idle: 4s",
                                     "[worker-gpu1] Heartbeat sent - status: idle, idle: 34s"));
  auto events = a.f.events();
  EXPECT_EQ(events[0].field("model_loaded"), "false");
  EXPECT_EQ(events[0].field("idle_s"), "4");
  agent.set_model_loaded(true);
  agent.heartbeat();
  EXPECT_EQ(a.f.events().back().field("model_loaded"), "true");
}

// Seed 001: "heartbeat lines appear only with WORKER_LOG_LEVEL=DEBUG"; the level governs the
// lifecycle and claim lines too, while the watchdog's record (JSONL) keeps every event.
TEST(Seed001GoldenTest, WorkerLogLevelGovernsEveryLineOfTheComponent) {
  for (const char* level : {"ERROR", "INFO", "DEBUG"}) {
    SCOPED_TRACE(level);
    test::ScopedEnv env("WORKER_LOG_LEVEL", level);
    test::TempDir dir;
    {
      Options o;
      o.watchdog = std::nullopt;
      Recorder recorder(std::move(o));
      recorder.add_sink(std::make_shared<TextSink>(dir.path() / "run.log"));
      recorder.add_sink(std::make_shared<JsonlSink>(dir.path() / "run.jsonl"));
      Agent agent(recorder, "gpu-1");
      agent.starting();
      agent.claimed("d5de16d7", "llm");
      agent.heartbeat();
      agent.completed("d5de16d7");
      agent.shutdown();
    }
    std::ifstream text(dir.path() / "run.log");
    std::string all((std::istreambuf_iterator<char>(text)), std::istreambuf_iterator<char>());
    std::ifstream jsonl(dir.path() / "run.jsonl");
    std::string record((std::istreambuf_iterator<char>(jsonl)), std::istreambuf_iterator<char>());
    bool debug = std::string_view(level) == "DEBUG";
    bool info = debug || std::string_view(level) == "INFO";
    EXPECT_EQ(all.find("Heartbeat sent") != std::string::npos, debug) << all;
    EXPECT_EQ(all.find("Worker gpu-1 starting") != std::string::npos, info) << all;
    EXPECT_EQ(all.find("Claimed task: d5de16d7") != std::string::npos, info) << all;
    EXPECT_THAT(record, HasSubstr("Heartbeat sent"));
    EXPECT_THAT(record, HasSubstr("Claimed task: d5de16d7"));
  }
}

// ---------------------------------------------------------------------------------------------
// P0: stuck task detection, P2: the MONITOR line

TEST(Seed001GoldenTest, StuckTasksDetected) {
  Brain b;
  test::Feed feed(*b.wd);
  feed.send(kT0, Kind::Task, Status::InProgress, "worker-1", "llm",
            "Claimed task: a1b2c3d4-9f (llm)",
            {{"task", "a1b2c3d4-9f0e"}, {"class", "llm"}, {"name", "add_topics_..."}});
  b.wd->tick(at(6min));
  EXPECT_THAT(b.messages(), ElementsAre("Stuck tasks detected: [{'task_id': 'a1b2c3d4', "
                                        "'assigned_to': 'worker-1', 'elapsed_min': 6, 'name': "
                                        "'add_topics_...'}]"));
  EXPECT_EQ(b.r.all()[0].field("rule"), "stuck_task");
  EXPECT_EQ(b.r.all()[0].level, Level::Warning);
}

TEST(Seed001GoldenTest, StuckThresholdIsFiveMinutes) {
  Brain b;
  test::Feed feed(*b.wd);
  feed.claimed(kT0, "worker-1", "a1b2c3d4", "llm");
  EXPECT_EQ(b.wd->next_deadline(), at(5min));
  b.wd->tick(at(5min) - 1);
  EXPECT_THAT(b.messages(), IsEmpty());
  b.wd->tick(at(5min));
  EXPECT_THAT(b.messages(), ElementsAre("Stuck tasks detected: [{'task_id': 'a1b2c3d4', "
                                        "'assigned_to': 'worker-1', 'elapsed_min': 5, 'name': "
                                        "''}]"));
}

TEST(Seed001GoldenTest, MonitorLine) {
  Brain b;
  test::Feed feed(*b.wd);
  // Five GPU agents, of which three have shut down; three workers that heartbeat.
  for (int i = 1; i <= 5; ++i) {
    std::string gpu = "gpu-" + std::to_string(i);
    std::string id = std::to_string(i);
    feed.send(kT0, Kind::Lifecycle, Status::Starting, gpu, {}, "GPU agent initialized",
              {{"gpu", id}});
    if (i > 2) feed.lifecycle(at(1min), gpu, Status::Completed, "GPU shutting down");
  }
  feed.claimed(kT0, "worker-1", "a1b2c3d4", "llm");
  feed.claimed(kT0, "worker-2", "b2c3d4e5", "llm");
  feed.heartbeat(at(5min), "worker-3");
  for (const char* w : {"worker-1", "worker-2", "worker-3", "gpu-1", "gpu-2"}) {
    feed.heartbeat(at(9min + 30s), w);
  }
  feed.log(at(9min + 30s), "worker-3", "No suitable tasks", {{"queue", "llm:123"}});
  b.wd->monitor(at(10min));
  ASSERT_FALSE(b.r.rule("monitor").empty());
  const auto m = b.r.rule("monitor").back();
  EXPECT_EQ(m.message,
            "MONITOR: GPUs: 2/5, Workers: 3/3, Queue: 123 (llm:123), Processing: 2, "
            "Stuck: 2");
  EXPECT_EQ(m.field("gpus"), "5");
  EXPECT_EQ(m.field("queue_total"), "123");
  EXPECT_EQ(m.field("completed_last_5min"), "0");
}

TEST(Seed001GoldenTest, MonitorCountsCompletionsOfTheLastFiveMinutes) {
  Brain b;
  test::Feed feed(*b.wd);
  feed.claimed(kT0, "worker-1", "a", "llm");
  feed.task_end(at(1min), "worker-1", "a", "llm");
  feed.claimed(at(1min), "worker-1", "b", "llm");
  feed.task_end(at(7min), "worker-1", "b", "llm");
  feed.claimed(at(7min), "worker-1", "c", "llm");
  feed.task_end(at(8min), "worker-1", "c", "llm", Status::Failed);
  b.wd->monitor(at(9min));
  EXPECT_EQ(b.r.rule("monitor").back().field("completed_last_5min"), "2");
}

// ---------------------------------------------------------------------------------------------
// P1: model loading expectations

TEST(Seed001GoldenTest, LoadLlmInsertedAndStale) {
  Agents a;
  {
    Agent brain(a.f.recorder, "brain", "brain");
    brain.request("9a3f0c11", "load_llm", {"worker-1", "worker-3"}, 125, "llm");
  }
  auto events = a.f.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ("[" + events[0].worker + "] " + events[0].message,
            "[brain] LLM tasks waiting (125) but no models loaded - inserting load_llm task");
  Brain b;
  b.feed({events[0]});
  b.wd->tick(events[0].ts_ns + test::ns(62s));
  EXPECT_THAT(b.messages(), ElementsAre("load_llm task available for 62s but workers "
                                        "['worker-1', 'worker-3'] still have no model"));
}

// ---------------------------------------------------------------------------------------------
// The seed's test cases

// Test Case 1: Worker Dies. Kill worker-1 mid-task.
TEST(Seed001GoldenTest, TestCase1WorkerDies) {
  Agents a;
  {
    Agent worker(a.f.recorder, "worker-1");
    worker.starting();
    for (int i = 0; i < 15; ++i) {
      worker.claimed("t" + std::to_string(i), "llm");
      worker.completed("t" + std::to_string(i));
    }
    worker.claimed("f00dfeed-1234", "llm");
    a.f.clock.advance(10s);
    worker.heartbeat();
    worker.crashed("ConnectionError", "Connection refused");
    worker.shutdown();
  }
  auto events = a.f.events();
  std::vector<std::string> lifecycle;
  for (const auto& e : events) {
    if (e.kind == Kind::Lifecycle && e.status != Status::Running) {
      lifecycle.push_back("[" + e.worker + "] " + e.message);
    }
  }
  EXPECT_THAT(lifecycle,
              ElementsAre("[worker-1] Worker crashed in main loop: ConnectionError('Connection "
                          "refused')",
                          "[worker-1] Worker shutting down - completed 15 tasks"));
  // The brain: the heartbeat 90 s old, then the orphaned task stuck after 5+ min.
  Brain b;
  b.feed(events);
  std::int64_t beat = kT0 + test::ns(10s);
  b.wd->tick(beat + test::ns(90s));
  b.wd->tick(kT0 + test::ns(6min));
  EXPECT_THAT(b.messages(),
              ElementsAre("Worker worker-1 last heartbeat 90s ago (threshold: 60s)",
                          "Stuck tasks detected: [{'task_id': 'f00dfeed', 'assigned_to': "
                          "'worker-1', 'elapsed_min': 6, 'name': ''}]"));
  // Its task stays counted until someone else takes it.
  b.wd->monitor(kT0 + test::ns(6min));
  EXPECT_EQ(b.r.rule("monitor").back().message, "MONITOR: Workers: 0/1, Processing: 1, Stuck: 1");
  EXPECT_EQ(b.r.rule("monitor").back().field("orphaned"), "1");
  test::Feed feed(*b.wd);
  feed.claimed(kT0 + test::ns(7min), "worker-2", "f00dfeed-1234", "llm");
  b.wd->monitor(kT0 + test::ns(7min));
  EXPECT_EQ(b.r.rule("monitor").back().field("orphaned"), "0");
  EXPECT_EQ(b.r.rule("monitor").back().field("stuck"), "0");
}

// Test Case 2: No Model Workers. Workers without models, LLM tasks queued.
TEST(Seed001GoldenTest, TestCase2NoModelWorkers) {
  Agents a;
  {
    Agent worker1(a.f.recorder, "worker-1");
    worker1.nothing_claimed({{"llm", 125}}, {"resource", "script", "cpu", "llm"}, false);
  }
  {
    Agent brain(a.f.recorder, "brain", "brain");
    brain.request("d5de16d7", "load_llm", {"worker-1", "worker-2"}, 125, "llm");
  }
  {
    Agent worker1(a.f.recorder, "worker-1");
    worker1.attempt("d5de16d7");
    worker1.lost_race("d5de16d7");
  }
  Agent worker2(a.f.recorder, "worker-2");
  worker2.claimed("d5de16d7", "load_llm");
  std::vector<std::string> lines;
  for (const auto& line : a.lines()) {
    if (line.find("shutting down") == std::string::npos) lines.push_back(line);
  }
  EXPECT_THAT(lines, ElementsAre("[worker-1] No suitable tasks - Queue: [llm:125], Preferred: "
                                 "['resource', 'script', 'cpu', 'llm'], Model loaded: False",
                                 "[brain] LLM tasks waiting (125) but no models loaded - inserting "
                                 "load_llm task",
                                 "[worker-1] Attempting claim: d5de16d7",
                                 "[worker-1] Lost race: d5de16d7 (claimed by another worker)",
                                 "[worker-2] Claimed meta task: d5de16d7 (load_llm)"));
}

// Test Case 3: All Workers Busy. 200 tasks, 3 workers.
TEST(Seed001GoldenTest, TestCase3AllWorkersBusy) {
  Agents a;
  for (int i = 1; i <= 3; ++i) {
    Agent worker(a.f.recorder, "worker-" + std::to_string(i));
    worker.claimed("task-" + std::to_string(i), "llm");
  }
  Agent worker1(a.f.recorder, "worker-1");
  worker1.all_claimed_by_others(197, {"resource", "llm"});
  auto events = a.f.events();
  EXPECT_EQ("[" + events.back().worker + "] " + events.back().message,
            "[worker-1] Claim attempt: 197 tasks available in ['resource', 'llm'], all claimed "
            "by others");
  // The workers' shutdowns end nothing: their tasks stay open, as when they were killed.
  std::vector<test::OwnedEvent> busy;
  for (const auto& e : events) {
    if (e.kind != Kind::Lifecycle) busy.push_back(e);
  }
  Brain b;
  b.feed(busy);
  b.wd->monitor(kT0 + test::ns(1min));
  EXPECT_EQ(b.r.rule("monitor").back().message, "MONITOR: Queue: 197, Processing: 3, Stuck: 0");
}

// ---------------------------------------------------------------------------------------------
// Python's renderings

TEST(Seed001GoldenTest, PythonRenderings) {
  EXPECT_EQ(detail::python_seconds(125'250'000'000), "125.2s");  // Python: f"{125.25:.1f}"
  EXPECT_EQ(detail::python_seconds(436'000'000), "0.4s");
  EXPECT_EQ(detail::python_seconds(62'400'000'000, 0), "62s");
  EXPECT_EQ(detail::python_seconds(2'500'000'000, 0), "2s");  // Ties to even.
  EXPECT_EQ(detail::python_seconds(3'500'000'000, 0), "4s");
  std::string repr;
  detail::append_python_repr(repr, "it's");
  detail::append_python_repr(repr, "a\nb\\");
  EXPECT_EQ(repr, R"("it's"'a\nb\\')");
  std::string list;
  std::vector<std::string_view> none;
  detail::append_python_list(list, none);
  EXPECT_EQ(list, "[]");
}

}  // namespace
}  // namespace stagelog
