#include "stagelog/agent.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "memory_sink.hpp"
#include "recording.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

using Fixture = test::Recording;

constexpr std::int64_t kSecond = 1'000'000'000;

// stagelog's terse wording, which these tests pin down; seed 001's own words are pinned by
// seed001_golden_test.cpp.
AgentOptions terse() {
  AgentOptions o;
  o.seed_wording = false;
  return o;
}

// The events whose kind is `kind`.
std::vector<test::OwnedEvent> of_kind(const std::vector<test::OwnedEvent>& events, Kind kind) {
  std::vector<test::OwnedEvent> out;
  for (const auto& e : events) {
    if (e.kind == kind) out.push_back(e);
  }
  return out;
}

std::vector<std::string> messages(const std::vector<test::OwnedEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.message);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

TEST(AgentTest, MakesTheCallingThreadTheWorker) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1");
  EXPECT_EQ(agent.name(), "gpu-1");
  EXPECT_EQ(agent.logger().name(), "worker");
  agent.starting();
  auto events = f.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].worker, "gpu-1");
  EXPECT_EQ(events[0].component, "worker");
}

TEST(AgentTest, ComponentCanBeNamed) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1", "gpu-agent");
  agent.starting();
  EXPECT_EQ(f.events().at(0).component, "gpu-agent");
}

TEST(AgentTest, InitializedCarriesItsAttributesAsFields) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1", terse());
  agent.initialized(kv("gpu", 1), kv("port", 11435), kv("model", "qwen2.5:7b"));
  auto events = of_kind(f.events(), Kind::Lifecycle);
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.message, "initialized");
  EXPECT_EQ(e.field("gpu"), "1");
  EXPECT_EQ(e.field("port"), "11435");
  EXPECT_EQ(e.field("model"), "qwen2.5:7b");
  EXPECT_EQ(e.worker, "gpu-1");
}

TEST(AgentTest, StartingIsAnInfoLifecycleEvent) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1", terse());
  agent.starting();
  auto events = of_kind(f.events(), Kind::Lifecycle);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].level, Level::Info);
  EXPECT_EQ(events[0].message, "starting");
}

TEST(AgentTest, ShutdownSaysHowManyTasksCompletedAndFailed) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1", terse());
  agent.claimed("t1", "llm");
  agent.completed("t1");
  agent.claimed("t2", "llm");
  agent.completed("t2");
  agent.claimed("t3", "llm");
  agent.failed("t3", "timeout");
  agent.shutdown();
  auto events = of_kind(f.events(), Kind::Lifecycle);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].message, "shutting down - completed 2, failed 1");
  EXPECT_EQ(events[0].level, Level::Info);
}

TEST(AgentTest, ShutdownIsRecordedOnlyOnce) {
  Fixture f;
  {
    Agent agent(f.recorder, "gpu-1", terse());
    agent.shutdown();
    agent.shutdown();
  }  // The destructor does not add a third.
  EXPECT_THAT(messages(of_kind(f.events(), Kind::Lifecycle)),
              ElementsAre("shutting down - completed 0, failed 0"));
}

TEST(AgentTest, DestructorWithoutShutdownStillRecordsIt) {
  Fixture f;
  try {
    Agent agent(f.recorder, "gpu-1", terse());
    agent.claimed("t1", "llm");
    agent.completed("t1");
    throw std::runtime_error("unwinding past the agent");
  } catch (const std::runtime_error&) {
  }
  EXPECT_THAT(messages(of_kind(f.events(), Kind::Lifecycle)),
              ElementsAre("shutting down - completed 1, failed 0"));
}

TEST(AgentTest, CrashedWithTypeAndMessage) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1", terse());
  agent.crashed("KeyError", "'model_name'");
  auto events = of_kind(f.events(), Kind::Lifecycle);
  ASSERT_GE(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.level, Level::Error);
  EXPECT_EQ(e.message, "crashed: KeyError: 'model_name'");
  EXPECT_EQ(e.field("exception"), "KeyError");
  EXPECT_EQ(e.field("error"), "'model_name'");
}

TEST(AgentTest, CrashedWithTheCurrentExceptionNamesItsTypeAndKeepsAStack) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1", terse());
  try {
    throw std::runtime_error("boom");
  } catch (...) {
    agent.crashed(std::current_exception());
  }
  auto events = of_kind(f.events(), Kind::Lifecycle);
  ASSERT_GE(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.level, Level::Error);
  EXPECT_THAT(e.message, StartsWith("crashed: std::runtime_error: boom"));
  EXPECT_EQ(e.field("exception"), "std::runtime_error");
  EXPECT_EQ(e.field("error"), "boom");
  EXPECT_THAT(e.field("stack"), Not(IsEmpty()));
}

TEST(AgentTest, CrashThenShutdownReadsLikeTheSeed) {
  Fixture f;
  {
    Agent agent(f.recorder, "gpu-1");
    agent.initialized(kv("gpu", 1));
    agent.starting();
    agent.crashed("KeyError", "model_name");
  }
  auto lifecycle = messages(of_kind(f.events(), Kind::Lifecycle));
  // Issue 22: seed 001's words, word for word.
  EXPECT_THAT(lifecycle,
              ElementsAre("GPU agent initialized: gpu-1 (GPU 1)", "GPU agent gpu-1 starting",
                          "GPU agent crashed: KeyError('model_name')",
                          "GPU gpu-1 shutting down - completed 0, failed 0"));
}

// ---------------------------------------------------------------------------------------------
// Tasks

TEST(AgentTest, ClaimedIsAnInProgressTaskEvent) {
  Fixture f;
  Agent agent(f.recorder, "gpu-2");
  agent.claimed("d5de16d7", "load_llm");
  auto events = of_kind(f.events(), Kind::Task);
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.status, Status::InProgress);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.message, "Claimed meta task: d5de16d7 (load_llm)");  // Seed 001's words.
  EXPECT_EQ(e.field("task"), "d5de16d7");
  EXPECT_EQ(e.field("class"), "load_llm");
  EXPECT_EQ(e.worker, "gpu-2");
}

TEST(AgentTest, CompletedCarriesTheTimeSinceTheClaim) {
  Fixture f;
  Agent agent(f.recorder, "gpu-2");
  agent.claimed("d5de16d7", "load_llm");
  f.clock.advance(13200ms);
  agent.completed("d5de16d7");
  auto events = of_kind(f.events(), Kind::Task);
  ASSERT_EQ(events.size(), 2u);
  const auto& e = events[1];
  EXPECT_EQ(e.status, Status::Completed);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.field("task"), "d5de16d7");
  EXPECT_EQ(e.field("class"), "load_llm");
  ASSERT_TRUE(e.elapsed_ns.has_value());
  EXPECT_EQ(*e.elapsed_ns, 13'200'000'000);
  EXPECT_EQ(agent.tasks_completed(), 1u);
  EXPECT_EQ(agent.tasks_failed(), 0u);
}

TEST(AgentTest, FailedIsAnErrorTaskEventWithTheError) {
  Fixture f;
  Agent agent(f.recorder, "gpu-2");
  agent.claimed("a1b2c3d4", "llm");
  f.clock.advance(2s);
  agent.failed("a1b2c3d4", "CUDA out of memory");
  auto events = of_kind(f.events(), Kind::Task);
  ASSERT_EQ(events.size(), 2u);
  const auto& e = events[1];
  EXPECT_EQ(e.status, Status::Failed);
  EXPECT_EQ(e.level, Level::Error);
  EXPECT_EQ(e.field("task"), "a1b2c3d4");
  EXPECT_EQ(e.field("class"), "llm");
  EXPECT_EQ(e.field("error"), "CUDA out of memory");
  EXPECT_THAT(e.message, HasSubstr("a1b2c3d4"));
  EXPECT_THAT(e.message, HasSubstr("CUDA out of memory"));
  ASSERT_TRUE(e.elapsed_ns.has_value());
  EXPECT_EQ(*e.elapsed_ns, 2 * kSecond);
  EXPECT_EQ(agent.tasks_completed(), 0u);
  EXPECT_EQ(agent.tasks_failed(), 1u);
}

TEST(AgentTest, CountsCompletedAndFailedTasks) {
  Fixture f;
  Agent agent(f.recorder, "gpu-2");
  for (int i = 0; i < 5; ++i) {
    std::string id = "task-" + std::to_string(i);
    agent.claimed(id, "cpu");
    if (i % 2 == 0) {
      agent.completed(id);
    } else {
      agent.failed(id, "bad input");
    }
  }
  EXPECT_EQ(agent.tasks_completed(), 3u);
  EXPECT_EQ(agent.tasks_failed(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Heartbeat

TEST(AgentTest, HeartbeatWhileIdleSaysHowLongSinceTheLastTask) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1");
  agent.claimed("t1", "llm");
  agent.completed("t1");
  f.clock.advance(34s);
  agent.heartbeat(kv("gpu_util", 0.93), kv("model_loaded", false));
  auto beats = of_kind(f.events(), Kind::Heartbeat);
  ASSERT_EQ(beats.size(), 1u);
  const auto& e = beats[0];
  EXPECT_EQ(e.level, Level::Debug);
  EXPECT_EQ(e.worker, "gpu-1");
  EXPECT_EQ(e.field("status"), "idle");
  EXPECT_EQ(e.field("idle_s"), "34");
  EXPECT_EQ(e.field("tasks_completed"), "1");
  EXPECT_EQ(e.field("gpu_util"), std::to_string(0.93));
  EXPECT_EQ(e.field("model_loaded"), "false");
}

TEST(AgentTest, HeartbeatBeforeAnyTaskCountsIdleFromTheStart) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1");
  f.clock.advance(4s);
  agent.heartbeat();
  auto beats = of_kind(f.events(), Kind::Heartbeat);
  ASSERT_EQ(beats.size(), 1u);
  EXPECT_EQ(beats[0].field("status"), "idle");
  EXPECT_EQ(beats[0].field("idle_s"), "4");
  EXPECT_EQ(beats[0].field("tasks_completed"), "0");
}

TEST(AgentTest, HeartbeatWhileProcessingSaysProcessing) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1");
  f.clock.advance(10s);
  agent.claimed("t1", "llm");
  f.clock.advance(5s);
  agent.heartbeat();
  agent.completed("t1");
  f.clock.advance(3s);
  agent.heartbeat();
  auto beats = of_kind(f.events(), Kind::Heartbeat);
  ASSERT_EQ(beats.size(), 2u);
  EXPECT_EQ(beats[0].field("status"), "processing");
  EXPECT_EQ(beats[0].field("idle_s"), "0");
  EXPECT_EQ(beats[0].field("tasks_completed"), "0");
  EXPECT_EQ(beats[1].field("status"), "idle");
  EXPECT_EQ(beats[1].field("idle_s"), "3");
  EXPECT_EQ(beats[1].field("tasks_completed"), "1");
}

TEST(AgentTest, HeartbeatsAreRecordedWhateverTheComponentLevelAndSinksFilterThem) {
  Fixture f;
  auto info_sink = std::make_shared<test::MemorySink>(Level::Info);
  f.recorder.add_sink(info_sink);
  f.recorder.component("worker").set_level(Level::Warning);
  Agent agent(f.recorder, "gpu-1");
  agent.heartbeat();
  auto beats = of_kind(f.events(), Kind::Heartbeat);
  ASSERT_EQ(beats.size(), 1u);
  EXPECT_EQ(beats[0].level, Level::Debug);
  EXPECT_THAT(of_kind(info_sink->events(), Kind::Heartbeat), IsEmpty());
}

TEST(AgentTest, HeartbeatMayComeFromAnotherThread) {
  Fixture f;
  Agent agent(f.recorder, "gpu-1");
  agent.claimed("t1", "llm");
  agent.completed("t1");
  f.clock.advance(7s);
  std::thread([&] { agent.heartbeat(kv("from", "monitor")); }).join();
  auto beats = of_kind(f.events(), Kind::Heartbeat);
  ASSERT_EQ(beats.size(), 1u);
  EXPECT_EQ(beats[0].field("idle_s"), "7");
  EXPECT_EQ(beats[0].field("tasks_completed"), "1");
  EXPECT_EQ(beats[0].field("from"), "monitor");
  EXPECT_EQ(beats[0].worker, "gpu-1");  // The agent's, not the monitor thread's.
}

// ---------------------------------------------------------------------------------------------
// Claim loop

TEST(AgentTest, ClaimLoopMessagesAreDebugWhenTheComponentAllowsIt) {
  Fixture f;
  f.recorder.component("worker").set_level(Level::Debug);
  Agent agent(f.recorder, "worker-gpu1");
  agent.attempt("d5de16d7");
  agent.lost_race("d5de16d7");
  agent.lock_timeout("d5de16d7");
  auto events = f.events();
  EXPECT_THAT(messages(events), ElementsAre("Attempting claim: d5de16d7",
                                            "Lost race: d5de16d7 (claimed by another worker)",
                                            "Lock timeout: d5de16d7 (another worker has it)"));
  for (const auto& e : events) {
    EXPECT_EQ(e.level, Level::Debug) << e.message;
    EXPECT_EQ(e.worker, "worker-gpu1") << e.message;
  }
}

TEST(AgentTest, NothingClaimedShowsTheQueueThePreferencesAndTheModel) {
  Fixture f;
  f.recorder.component("worker").set_level(Level::Debug);
  Agent agent(f.recorder, "worker-gpu1");
  agent.nothing_claimed({{"llm", 125}}, {"resource", "script", "cpu", "llm"}, false);
  agent.nothing_claimed({{"cpu", 0}, {"llm", 123}, {"script", 2}}, {"llm"}, true);
  auto events = f.events();
  EXPECT_THAT(messages(events),
              ElementsAre("No suitable tasks - Queue: [llm:125], Preferred: ['resource', "
                          "'script', 'cpu', 'llm'], Model loaded: False",
                          "No suitable tasks - Queue: [llm:123, script:2], Preferred: ['llm'], "
                          "Model loaded: True"));
  for (const auto& e : events) EXPECT_EQ(e.level, Level::Debug);
  EXPECT_EQ(events[1].field("queue"), "llm:123, script:2");  // The watchdog's queue by class.
}

TEST(AgentTest, NothingClaimedFromAnEmptyQueueSaysQueueEmpty) {
  Fixture f;
  f.recorder.component("worker").set_level(Level::Debug);
  Agent agent(f.recorder, "worker-gpu1");
  agent.nothing_claimed({{"llm", 0}, {"cpu", 0}}, {"llm", "cpu"}, false);
  agent.nothing_claimed({}, {"llm"}, true);
  auto events = f.events();
  EXPECT_THAT(messages(events), ElementsAre("Queue empty", "Queue empty"));
  for (const auto& e : events) EXPECT_EQ(e.level, Level::Debug);
}

// At INFO the claim loop writes no line. The races are not recorded at all; what the worker saw
// of the queue is (the watchdog's MONITOR breaks the queue down from it), for machines only.
TEST(AgentTest, ClaimLoopIsNotRecordedAtInfo) {
  test::TempDir dir;
  Fixture f;
  f.recorder.add_sink(std::make_shared<TextSink>(dir.path() / "agent.log"));
  f.recorder.component("worker").set_level(Level::Info);
  Agent agent(f.recorder, "worker-gpu1");
  agent.attempt("d5de16d7");
  agent.lost_race("d5de16d7");
  agent.lock_timeout("d5de16d7");
  agent.nothing_claimed({{"llm", 125}}, {"llm"}, false);
  agent.nothing_claimed({}, {"llm"}, false);
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].field("queue"), "llm:125");
  EXPECT_EQ(events[1].field("queue"), "empty");
  EXPECT_THAT(test::read_lines(dir.path() / "agent.log"), IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// Requests

TEST(AgentTest, RequestAndFulfilmentAreRequestEvents) {
  Fixture f;
  Agent brain(f.recorder, "brain", "brain");
  brain.request("r-42", "load_llm", {"worker-1", "worker-3"});
  f.clock.advance(62s);
  brain.fulfilled("r-42");
  auto events = of_kind(f.events(), Kind::Request);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].status, Status::InProgress);
  EXPECT_EQ(events[0].field("request"), "r-42");
  EXPECT_EQ(events[0].field("what"), "load_llm");
  EXPECT_THAT(events[0].field("waiting"), HasSubstr("worker-1"));
  EXPECT_THAT(events[0].field("waiting"), HasSubstr("worker-3"));
  EXPECT_EQ(events[1].status, Status::Completed);
  EXPECT_EQ(events[1].field("request"), "r-42");
}

// ---------------------------------------------------------------------------------------------
// As text

// A recorder with a TextSink; the lines it wrote.
struct TextFixture {
  TextFixture() : path(dir.path() / "agent.log") {
    rec.recorder.add_sink(std::make_shared<TextSink>(path));
  }
  std::vector<std::string> lines() {
    rec.recorder.flush();
    return test::read_lines(path);
  }
  test::TempDir dir;
  std::filesystem::path path;
  test::Recording rec;
};

TEST(AgentTest, TaskLinesDoNotRepeatTheirFields) {
  TextFixture f;
  Agent agent(f.rec.recorder, "gpu-2");
  agent.claimed("a1b2c3d4", "load_llm");
  EXPECT_THAT(f.lines(),
              ElementsAre("2026-01-04T19:30:15.234Z [gpu-2] INFO worker: Claimed meta task: "
                          "a1b2c3d4 (load_llm)"));
}

TEST(AgentTest, TaskEndLinesShowTheTimeSinceTheClaim) {
  TextFixture f;
  Agent agent(f.rec.recorder, "gpu-2");
  agent.claimed("a1b2c3d4", "load_llm");
  f.rec.clock.advance(13'200ms);
  agent.completed("a1b2c3d4");
  auto lines = f.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], ::testing::EndsWith("INFO worker: Completed task: a1b2c3d4 (13.2s)"));
}

TEST(AgentTest, LifecycleLinesDoNotRepeatTheirFields) {
  TextFixture f;
  {
    Agent agent(f.rec.recorder, "gpu-1");
    agent.crashed("KeyError", "model_name");
  }
  EXPECT_THAT(f.lines(),
              ElementsAre("2026-01-04T19:30:15.234Z [gpu-1] ERROR worker: Worker crashed in main "
                          "loop: KeyError('model_name')",
                          "2026-01-04T19:30:15.234Z [gpu-1] INFO worker: Worker shutting down - "
                          "completed 0 tasks"));
}

// The seed's lines: "[worker-gpu1] Attempting claim: d5de16d7" with nothing after.
TEST(AgentTest, ClaimLoopLinesDoNotRepeatTheTaskAsAField) {
  TextFixture f;
  f.rec.recorder.component("worker").set_level(Level::Debug);
  Agent agent(f.rec.recorder, "worker-gpu1");
  agent.attempt("d5de16d7");
  agent.lost_race("d5de16d7");
  EXPECT_THAT(f.lines(),
              ElementsAre("2026-01-04T19:30:15.234Z [worker-gpu1] DEBUG worker: Attempting "
                          "claim: d5de16d7",
                          "2026-01-04T19:30:15.234Z [worker-gpu1] DEBUG worker: Lost race: "
                          "d5de16d7 (claimed by another worker)"));
}

}  // namespace
}  // namespace stagelog
