#include "stagelog/sinks/heartbeat_file_sink.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "recording.hpp"
#include "stagelog/agent.hpp"
#include "stagelog/error.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

// A recorder on a FakeClock, host "gpu-box", with a HeartbeatFileSink writing into dir.
struct HeartbeatFixture {
  explicit HeartbeatFixture(const fs::path& dir)
      : rec(with_host()), sink(std::make_shared<HeartbeatFileSink>(dir)) {
    rec.recorder.add_sink(sink);
  }
  static Options with_host() {
    Options options;
    options.host = "gpu-box";
    return options;
  }

  test::Recording rec;
  std::shared_ptr<HeartbeatFileSink> sink;
};

nlohmann::json read_json(const fs::path& path) {
  return nlohmann::json::parse(test::read_file(path));
}

// The names of the entries directly in dir.
std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

TEST(HeartbeatFileSinkTest, WritesTheLatestHeartbeatAsJsonPerWorker) {
  test::TempDir dir;
  HeartbeatFixture f(dir.path());
  Agent agent(f.rec.recorder, "gpu-1");
  agent.claimed("t1", "llm");
  agent.completed("t1");
  f.rec.clock.advance(34s);
  agent.heartbeat(kv("gpu_util", 0.93), kv("model_loaded", true));
  f.rec.recorder.flush();

  fs::path path = dir.path() / "gpu-1.heartbeat.json";
  EXPECT_EQ(f.sink->path_for("gpu-1"), path);
  ASSERT_TRUE(fs::exists(path));
  auto j = read_json(path);
  EXPECT_EQ(j["worker"], "gpu-1");
  EXPECT_EQ(j["timestamp"], "2026-01-04T19:30:49.234Z");
  EXPECT_EQ(j["status"], "idle");
  EXPECT_EQ(j["idle_s"], 34);
  EXPECT_EQ(j["tasks_completed"], 1);
  EXPECT_EQ(j["gpu_util"], 0.93);
  EXPECT_EQ(j["model_loaded"], true);
  EXPECT_EQ(j["pid"], getpid());
  EXPECT_EQ(j["host"], "gpu-box");
}

TEST(HeartbeatFileSinkTest, NewHeartbeatReplacesTheOldOne) {
  test::TempDir dir;
  HeartbeatFixture f(dir.path());
  Agent agent(f.rec.recorder, "gpu-1");
  agent.heartbeat();
  agent.claimed("t1", "llm");
  f.rec.clock.advance(5s);
  agent.heartbeat(kv("n", 2));
  f.rec.recorder.flush();
  auto j = read_json(dir.path() / "gpu-1.heartbeat.json");
  EXPECT_EQ(j["status"], "processing");
  EXPECT_EQ(j["n"], 2);
  EXPECT_EQ(j["timestamp"], "2026-01-04T19:30:20.234Z");
  EXPECT_THAT(entries(dir.path()), ElementsAre("gpu-1.heartbeat.json"));  // No temporary left.
}

TEST(HeartbeatFileSinkTest, EachWorkerHasItsOwnFile) {
  test::TempDir dir;
  HeartbeatFixture f(dir.path());
  for (const char* name : {"gpu-1", "gpu-2"}) {
    std::thread([&, name] {
      Agent agent(f.rec.recorder, name);
      agent.heartbeat();
    }).join();
  }
  f.rec.recorder.flush();
  EXPECT_EQ(read_json(dir.path() / "gpu-1.heartbeat.json")["worker"], "gpu-1");
  EXPECT_EQ(read_json(dir.path() / "gpu-2.heartbeat.json")["worker"], "gpu-2");
}

TEST(HeartbeatFileSinkTest, OtherEventsWriteNothing) {
  test::TempDir dir;
  HeartbeatFixture f(dir.path());
  f.rec.recorder.component("worker").set_level(Level::Debug);
  {
    Agent agent(f.rec.recorder, "gpu-1");
    agent.initialized(kv("gpu", 1));
    agent.starting();
    agent.attempt("d5de16d7");
    agent.claimed("d5de16d7", "llm");
    agent.completed("d5de16d7");
    agent.request("r1", "load_llm", {"gpu-2"});
    agent.nothing_claimed({{"llm", 3}}, {"llm"}, false);
    agent.crashed("KeyError", "'model_name'");
    f.rec.recorder.component("worker").info("plain log line");
  }
  f.rec.recorder.flush();
  EXPECT_GT(f.rec.sink->events().size(), 5u);
  EXPECT_THAT(entries(dir.path()), IsEmpty());
}

TEST(HeartbeatFileSinkTest, CreatesMissingFolders) {
  test::TempDir dir;
  fs::path hb = dir.path() / "state" / "heartbeats";
  HeartbeatFileSink sink(hb);
  EXPECT_TRUE(fs::is_directory(hb));
}

TEST(HeartbeatFileSinkTest, WorkerIdsWithSlashesBecomeFileNamesInTheFolder) {
  test::TempDir dir;
  fs::path hb = dir.path() / "hb";
  HeartbeatFixture f(hb);
  for (const char* name : {"node-a/gpu-1", "../escape", ".hidden"}) {
    fs::path path = f.sink->path_for(name);
    EXPECT_EQ(path.parent_path(), hb) << name;
    EXPECT_THAT(path.filename().string(), ::testing::EndsWith(".heartbeat.json")) << name;
    EXPECT_NE(path.filename().string().front(), '.') << name;
  }
  std::thread([&] {
    Agent agent(f.rec.recorder, "node-a/gpu-1");
    agent.heartbeat();
  }).join();
  f.rec.recorder.flush();
  auto names = entries(hb);
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0], f.sink->path_for("node-a/gpu-1").filename().string());
  EXPECT_TRUE(fs::is_regular_file(hb / names[0]));
  EXPECT_EQ(read_json(hb / names[0])["worker"], "node-a/gpu-1");
  EXPECT_THAT(entries(dir.path()), ElementsAre("hb"));  // Nothing escaped the folder.
}

TEST(HeartbeatFileSinkTest, UncreatableFolderThrowsErrorNamingIt) {
  test::TempDir dir;
  std::ofstream(dir.path() / "blocker") << "a regular file\n";
  fs::path hb = dir.path() / "blocker" / "heartbeats";
  std::string message;
  try {
    HeartbeatFileSink sink(hb);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_THAT(message, HasSubstr(hb.string()));
}

// A reader polling the file while heartbeats are written must only ever see whole JSON.
TEST(HeartbeatFileSinkTest, ReaderNeverSeesATornFile) {
  constexpr int kBeats = 1000;
  constexpr int kMaxReads = 200'000;
  test::TempDir dir;
  fs::path path = dir.path() / "gpu-1.heartbeat.json";
  Recorder recorder;
  recorder.add_sink(std::make_shared<HeartbeatFileSink>(dir.path()));

  std::atomic<bool> done{false};
  std::thread writer([&] {
    Agent agent(recorder, "gpu-1");
    const std::string pad(200, 'x');  // Bigger files, more time spent writing each.
    for (int i = 0; i < kBeats; ++i) {
      agent.heartbeat(kv("seq", i), kv("pad", std::string_view(pad)));
    }
    recorder.flush();
    done.store(true);
  });

  int reads = 0, parsed = 0;
  std::vector<std::string> torn;
  auto read_once = [&] {
    std::ifstream in(path, std::ios::binary);
    if (!in) return;  // Not written yet.
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      if (torn.size() < 5) torn.push_back(text);
      return;
    }
    ++parsed;
  };
  while (!done.load() && reads < kMaxReads) {
    ++reads;
    read_once();
  }
  writer.join();
  read_once();  // Once more after the last heartbeat, so there is always at least one.

  RecordProperty("reads", reads);
  RecordProperty("parsed", parsed);
  EXPECT_THAT(torn, IsEmpty());
  EXPECT_GT(parsed, 0);
  auto last = read_json(path);
  EXPECT_EQ(last["seq"], kBeats - 1);
  EXPECT_EQ(last["worker"], "gpu-1");
}

}  // namespace
}  // namespace stagelog
