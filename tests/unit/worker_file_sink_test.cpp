#include "stagelog/sinks/worker_file_sink.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "fake_clock.hpp"
#include "recording.hpp"
#include "stagelog/error.hpp"
#include "stagelog/stage.hpp"
#include "stagelog/worker_logging.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

// A recorder on a FakeClock (2026-01-04T19:30:15.234Z) writing worker 3's file in dir.
struct WorkerFixture {
  explicit WorkerFixture(const fs::path& dir, WorkerFileOptions options = {})
      : sink(std::make_shared<WorkerFileSink>(dir, 3, options)) {
    rec.recorder.add_sink(sink);
  }
  std::vector<std::string> lines() {
    rec.recorder.flush();
    return test::read_lines(sink->path());
  }

  test::Recording rec;
  std::shared_ptr<WorkerFileSink> sink;
};

// The message of the Error that fn throws, or "" if it throws none.
template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

TEST(WorkerFileSinkTest, WorkerLogPathIsWorkerRankDotLogInTheFolder) {
  test::TempDir dir;
  EXPECT_EQ(worker_log_path(dir.path(), 3), dir.path() / "worker_3.log");
  EXPECT_EQ(worker_log_path(dir.path(), "gpu-1"), dir.path() / "worker_gpu-1.log");
}

TEST(WorkerFileSinkTest, WorkerLogPathCreatesNothing) {
  test::TempDir dir;
  fs::path logs = dir.path() / "logs";
  EXPECT_EQ(worker_log_path(logs, 3), logs / "worker_3.log");
  EXPECT_FALSE(fs::exists(logs));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(WorkerFileSinkTest, CreatesMissingFolders) {
  test::TempDir dir;
  fs::path logs = dir.path() / "a" / "b" / "logs";
  WorkerFileSink sink(logs, 3);
  EXPECT_EQ(sink.path(), logs / "worker_3.log");
  EXPECT_TRUE(fs::is_regular_file(logs / "worker_3.log"));
}

TEST(WorkerFileSinkTest, LineNamesTimeWorkerComponentLevelMessageAndFields) {
  test::TempDir dir;
  WorkerFixture f(dir.path());
  f.rec.recorder.component("worker").info("claimed task", kv("task", "d5de16d7"),
                                          kv("tokens", 1247));
  EXPECT_THAT(f.lines(), ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - "
                                     "claimed task task=d5de16d7 tokens=1247"));
}

TEST(WorkerFileSinkTest, LevelNamesAreUpperCase) {
  test::TempDir dir;
  WorkerFixture f(dir.path());
  Logger log = f.rec.recorder.component("worker");
  log.warning("slow disk");
  log.error("claim failed");
  EXPECT_THAT(f.lines(),
              ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - WARNING - slow disk",
                          "2026-01-04 19:30:15,234 - Worker 3 - worker - ERROR - claim failed"));
}

TEST(WorkerFileSinkTest, StageEventsReadAsStageLines) {
  test::TempDir dir;
  WorkerFixture f(dir.path());
  {
    StageScope stage(f.rec.recorder.component("worker"), "AGENT");
    f.rec.clock.advance(13200ms);
  }
  EXPECT_THAT(f.lines(),
              ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - Stage: AGENT - "
                          "Starting",
                          "2026-01-04 19:30:28,434 - Worker 3 - worker - INFO - Stage: AGENT - "
                          "Complete (13.2s)"));
}

TEST(WorkerFileSinkTest, DefaultLevelIsInfoSoDebugIsNotWritten) {
  test::TempDir dir;
  WorkerFixture f(dir.path());
  Logger log = f.rec.recorder.component("worker");
  log.set_level(Level::Debug);
  log.debug("heartbeat details");
  log.info("claimed task");
  auto lines = f.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr(" - INFO - claimed task"));
  // The recorder did record the DEBUG event: the sink left it out.
  ASSERT_EQ(f.rec.sink->events().size(), 2u);
}

TEST(WorkerFileSinkTest, LevelOptionLetsDebugThrough) {
  test::TempDir dir;
  WorkerFixture f(dir.path(), WorkerFileOptions{.level = Level::Debug});
  Logger log = f.rec.recorder.component("worker");
  log.set_level(Level::Debug);
  log.debug("Attempting claim");
  EXPECT_THAT(
      f.lines(),
      ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - DEBUG - Attempting claim"));
}

TEST(WorkerFileSinkTest, NewFileGetsNoResumeMarker) {
  test::TempDir dir;
  WorkerFixture f(dir.path());
  f.rec.recorder.component("worker").info("first session");
  EXPECT_THAT(f.lines(), ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - "
                                     "first session"));
}

TEST(WorkerFileSinkTest, EmptyExistingFileGetsNoResumeMarker) {
  test::TempDir dir;
  std::ofstream(dir.path() / "worker_3.log").close();
  ASSERT_EQ(fs::file_size(dir.path() / "worker_3.log"), 0u);
  WorkerFixture f(dir.path());
  f.rec.recorder.component("worker").info("first session");
  EXPECT_THAT(f.lines(), ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - "
                                     "first session"));
}

TEST(WorkerFileSinkTest, SecondSessionAppendsAfterOneResumeMarker) {
  test::TempDir dir;
  {
    WorkerFixture first(dir.path());
    Logger log = first.rec.recorder.component("worker");
    log.info("first session", kv("n", 1));
    log.info("first session", kv("n", 2));
    first.rec.recorder.flush();
  }
  WorkerFixture second(dir.path());
  second.rec.clock.advance(60s);
  Logger log = second.rec.recorder.component("worker");
  log.info("second session", kv("n", 1));
  log.info("second session", kv("n", 2));
  EXPECT_THAT(second.lines(),
              ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - first session n=1",
                          "2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - first session n=2",
                          "=== Resume at 2026-01-04T19:31:15.234Z ===",
                          "2026-01-04 19:31:15,234 - Worker 3 - worker - INFO - second session n=1",
                          "2026-01-04 19:31:15,234 - Worker 3 - worker - INFO - second session "
                          "n=2"));
}

TEST(WorkerFileSinkTest, EachResumedSessionGetsItsOwnMarker) {
  test::TempDir dir;
  for (int session = 0; session < 3; ++session) {
    WorkerFixture f(dir.path());
    f.rec.clock.advance(std::chrono::minutes(session));
    f.rec.recorder.component("worker").info("session", kv("n", session));
  }
  EXPECT_THAT(test::read_lines(worker_log_path(dir.path(), 3)),
              ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - session n=0",
                          "=== Resume at 2026-01-04T19:31:15.234Z ===",
                          "2026-01-04 19:31:15,234 - Worker 3 - worker - INFO - session n=1",
                          "=== Resume at 2026-01-04T19:32:15.234Z ===",
                          "2026-01-04 19:32:15,234 - Worker 3 - worker - INFO - session n=2"));
}

TEST(WorkerFileSinkTest, RotationKeepsWholeLinesWithinMaxBytesAndTheNewestEventsOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  constexpr std::uint64_t kMaxBytes = 4096;
  test::TempDir dir;
  test::FakeClock clock;
  {
    Options options;
    options.clock = clock.fn();
    Recorder recorder(std::move(options));
    recorder.add_sink(std::make_shared<WorkerFileSink>(
        dir.path(), 3, WorkerFileOptions{.rotation = {kMaxBytes, 3}}));
    Logger log = recorder.component("worker");
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < kPerThread; ++i) log.info("event", kv("thread", t), kv("seq", i));
      });
    }
    for (auto& th : threads) th.join();
    // The backend merges threads by timestamp; a later time puts "done" after every event.
    clock.advance(1s);
    log.info("done");
    recorder.flush();
  }

  fs::path base = worker_log_path(dir.path(), 3);
  auto numbered = [&](int n) { return fs::path(base.string() + "." + std::to_string(n)); };
  EXPECT_FALSE(fs::exists(numbered(4)));
  // Oldest first: .3, .2, .1, then the current file.
  std::vector<fs::path> files = {numbered(3), numbered(2), numbered(1), base};
  for (const auto& file : files) {
    ASSERT_TRUE(fs::exists(file)) << file;  // 8000 lines of ~80 bytes rotate many times.
    EXPECT_LE(fs::file_size(file), kMaxBytes) << file;
    EXPECT_GT(fs::file_size(file), 0u) << file;
  }

  const std::regex event_line(
      R"(2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - event thread=([0-3]) seq=(\d+))");
  const std::string done_line = "2026-01-04 19:30:16,234 - Worker 3 - worker - INFO - done";
  std::map<int, std::vector<int>> seqs;  // Per thread, in file order.
  std::vector<std::string> all;
  for (const auto& file : files) {
    for (auto& line : test::read_lines(file)) all.push_back(std::move(line));
  }
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back(), done_line);  // The newest event ends the newest file.
  for (std::size_t i = 0; i + 1 < all.size(); ++i) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(all[i], m, event_line)) << "torn or foreign line: " << all[i];
    seqs[std::stoi(m[1])].push_back(std::stoi(m[2]));
  }
  // What remains is the newest part of each thread's events: consecutive, each once, in order,
  // up to its last event.
  ASSERT_FALSE(seqs.empty());
  for (const auto& [thread, s] : seqs) {
    for (std::size_t i = 1; i < s.size(); ++i) {
      ASSERT_EQ(s[i], s[i - 1] + 1) << "thread " << thread << " at retained index " << i;
    }
    EXPECT_EQ(s.back(), kPerThread - 1) << "thread " << thread;
  }
}

TEST(WorkerFileSinkTest, UnwritableFolderThrowsErrorNamingThePath) {
  test::TempDir dir;
  std::ofstream(dir.path() / "blocker") << "a regular file\n";
  fs::path logs = dir.path() / "blocker" / "logs";
  std::string message = error_message([&] { WorkerFileSink sink(logs, 3); });
  EXPECT_THAT(message, HasSubstr(logs.string()));
}

TEST(WorkerFileSinkTest, UnopenableFileThrowsErrorNamingTheFile) {
  test::TempDir dir;
  fs::create_directory(dir.path() / "worker_3.log");  // A folder where the file should be.
  std::string message = error_message([&] { WorkerFileSink sink(dir.path(), 3); });
  EXPECT_THAT(message, HasSubstr((dir.path() / "worker_3.log").string()));
}

TEST(WorkerLoggingTest, SetupAddsTheFileSinkAndMakesTheCallingThreadTheWorker) {
  test::TempDir dir;
  test::Recording f;
  auto sink =
      setup_worker_logging(f.recorder, dir.path() / "logs", "3", {.console_level = Level::Off});
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(sink->path(), worker_log_path(dir.path() / "logs", 3));
  f.recorder.component("worker").info("claimed task", kv("task", "d5de16d7"));
  auto events = f.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].worker, "3");
  EXPECT_THAT(test::read_lines(sink->path()),
              ElementsAre("2026-01-04 19:30:15,234 - Worker 3 - worker - INFO - claimed task "
                          "task=d5de16d7"));
}

TEST(WorkerLoggingTest, SetupFileLevelDefaultsToInfoAndCanBeLowered) {
  test::TempDir dir;
  test::Recording f;
  auto info = setup_worker_logging(f.recorder, dir.path(), "0", {.console_level = Level::Off});
  Logger log = f.recorder.component("worker");
  log.set_level(Level::Debug);
  log.debug("not in the INFO file");
  f.recorder.flush();  // Written before the second file exists.
  auto debug = setup_worker_logging(f.recorder, dir.path(), "1",
                                    {.file_level = Level::Debug, .console_level = Level::Off});
  log.debug("in the DEBUG file");
  f.recorder.flush();
  EXPECT_THAT(test::read_lines(info->path()), IsEmpty());
  EXPECT_THAT(test::read_lines(debug->path()),
              ElementsAre("2026-01-04 19:30:15,234 - Worker 1 - worker - DEBUG - in the DEBUG "
                          "file"));
}

TEST(WorkerLoggingTest, SetupConsoleShowsWarningsAndUpByDefault) {
  test::TempDir dir;
  test::Recording f;
  ::testing::internal::CaptureStderr();
  setup_worker_logging(f.recorder, dir.path(), "3");
  Logger log = f.recorder.component("worker");
  log.info("routine progress");
  log.warning("disk almost full");
  f.recorder.flush();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr("disk almost full"));
  EXPECT_THAT(err, ::testing::Not(HasSubstr("routine progress")));
  // The file still has both.
  EXPECT_EQ(test::read_lines(worker_log_path(dir.path(), 3)).size(), 2u);
}

TEST(WorkerLoggingTest, SetupIntoAnUnwritableFolderThrowsErrorNamingThePath) {
  test::TempDir dir;
  std::ofstream(dir.path() / "blocker") << "a regular file\n";
  test::Recording f;
  fs::path logs = dir.path() / "blocker" / "logs";
  std::string message = error_message([&] { setup_worker_logging(f.recorder, logs, "3"); });
  EXPECT_THAT(message, HasSubstr(logs.string()));
}

TEST(WorkerFileSinkTest, EmptyRankIsRejectedAndCreatesNoFile) {
  test::TempDir dir;
  EXPECT_THROW(WorkerFileSink(dir.path(), std::string_view()), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace stagelog
