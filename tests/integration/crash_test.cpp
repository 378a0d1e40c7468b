// Real child processes that log and then die from real signals: what they logged before
// dying must be in their files, followed by a record of the crash.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stagelog/parse.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "stagelog/stage.hpp"
#include "stagelog/watchdog.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;  // ASan's own handler reports, then exits with status 1.
}  // namespace
}  // namespace stagelog
// ASan keeps SIGSEGV to itself unless told otherwise; programs that want stagelog's crash
// flush under ASan need the same option (see docs/ARCHITECTURE.md).
extern "C" const char* __asan_default_options() { return "allow_user_segv_handler=1"; }
namespace stagelog {
namespace {
#else
constexpr bool kSanitized = false;
#endif

// In a child process: a recorder with text and JSONL files in dir, 500 events, an open stage
// and last words. Never destroyed: the process dies first.
void log_until_death(const test::TempDir& dir) {
  auto* recorder = new Recorder();
  recorder->add_sink(std::make_shared<TextSink>(dir.path() / "child.log"));
  recorder->add_sink(std::make_shared<JsonlSink>(dir.path() / "child.jsonl"));
  recorder->set_worker("gpu-1");
  for (int i = 0; i < 500; ++i) recorder->logger().info("working", kv("i", i));
  new StageScope(*recorder, "transcribe");  // Open when the process dies.
  recorder->logger().error("last words before the crash");
}

// Forks; the child logs (log_until_death), then runs die(). Returns the child's wait status.
int run_child(const test::TempDir& dir, const std::function<void()>& die) {
  pid_t pid = fork();
  if (pid == 0) {
    log_until_death(dir);
    die();
    _exit(99);  // die() returned: the test fails on the status.
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

void expect_last_words(const test::TempDir& dir, const std::string& crash) {
  auto text = test::read_file(dir.path() / "child.log");
  EXPECT_THAT(text, HasSubstr("[gpu-1] INFO app: working i=499"));
  EXPECT_THAT(text, HasSubstr("[gpu-1] Stage: transcribe - Starting"));
  EXPECT_THAT(text, HasSubstr("[gpu-1] ERROR app: last words before the crash"));
  EXPECT_THAT(text, HasSubstr("[gpu-1] CRITICAL stagelog: " + crash));
  auto json = test::read_file(dir.path() / "child.jsonl");
  EXPECT_THAT(json, HasSubstr("\"kind\":\"lifecycle\",\"level\":\"critical\""));
  EXPECT_THAT(json, HasSubstr(crash));
  EXPECT_THAT(json, Not(HasSubstr("recorder_closed")));  // A crash is not a normal close.
}

TEST(CrashTest, SegfaultingChildLeavesItsLastEventsInTheFile) {
  test::TempDir dir;
  int status = run_child(dir, [] {
    // A real fault on a page with no access (a null store would be caught by UBSan first).
    void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *static_cast<volatile int*>(page) = 1;
  });
  if (!kSanitized) {
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  }
  expect_last_words(dir, "crashed: SIGSEGV");
}

TEST(CrashTest, AbortingChildLeavesItsLastEventsAndDiesOfSigabrt) {
  test::TempDir dir;
  int status = run_child(dir, [] { std::abort(); });
  if (!kSanitized) {
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGABRT);
  }
  expect_last_words(dir, "crashed: SIGABRT");
}

TEST(CrashTest, UncaughtExceptionRecordsWhatTerminateSaw) {
  test::TempDir dir;
  int status = run_child(
      dir, [] { std::thread([] { throw std::runtime_error("model_name missing"); }).join(); });
  if (!kSanitized) {
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGABRT);
  }
  auto text = test::read_file(dir.path() / "child.log");
  EXPECT_THAT(text, HasSubstr("terminate called: std::runtime_error: model_name missing"));
  EXPECT_THAT(text, HasSubstr("last words before the crash"));
}

TEST(CrashTest, SigbusFromKillIsFlushedAndReRaised) {
  test::TempDir dir;
  int ready_fd = -1;
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    log_until_death(dir);
    char c = 'r';
    (void)!write(pipe_fds[1], &c, 1);
    for (;;) pause();
  }
  close(pipe_fds[1]);
  ready_fd = pipe_fds[0];
  char c = 0;
  ASSERT_EQ(read(ready_fd, &c, 1), 1);
  close(ready_fd);
  ASSERT_EQ(kill(pid, SIGBUS), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!kSanitized) {
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGBUS);
  }
  // The backend thread blocks signals, so the kernel hands this one to the logging thread.
  expect_last_words(dir, "crashed: SIGBUS");
}

TEST(ExitTest, ExitWithTheRecorderOnTheStackStillWritesEverything) {
  test::TempDir dir;
  pid_t pid = fork();
  if (pid == 0) {
    Recorder recorder;  // exit() below never runs its destructor.
    recorder.add_sink(std::make_shared<TextSink>(dir.path() / "child.log"));
    recorder.set_worker("gpu-4");
    for (int i = 0; i < 500; ++i) recorder.logger().info("working", kv("i", i));
    std::exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(test::read_lines(dir.path() / "child.log").size(), 500u);
}

// Thread workers that log a stage each and never say shutdown, then end normally: by returning
// (the recorder's destructor runs) or by exit() (the recorder still on the stack).
void thread_workers(const test::TempDir& dir, bool by_exit) {
  Recorder recorder;
  recorder.add_sink(std::make_shared<JsonlSink>(dir.path() / "child.jsonl"));
  std::vector<std::thread> workers;
  for (int w = 1; w <= 3; ++w) {
    workers.emplace_back([&recorder, w] {
      recorder.set_worker("worker-" + std::to_string(w));
      StageScope stage(recorder, "AGENT");
      recorder.logger().info("item done");
    });
  }
  for (auto& t : workers) t.join();
  if (by_exit) std::exit(0);
}

// What a watchdog in another process (stagelog tail, the server) makes of the child's file once
// the child is gone.
std::vector<WorkerView> judge(const test::TempDir& dir) {
  WatchdogOptions options;
  options.check_processes = true;
  std::vector<std::string> crashes;
  Watchdog watchdog(options, [&](const Event& e) {
    for (const Field& f : e.fields) {
      auto* rule = std::get_if<std::string_view>(&f.value);
      if (f.key == "rule" && rule != nullptr && *rule == "crashed") crashes.emplace_back(e.message);
    }
  });
  std::int64_t last = 0;
  for (const std::string& line : test::read_lines(dir.path() / "child.jsonl")) {
    auto event = parse_event(line);
    EXPECT_TRUE(event) << line;
    if (!event) continue;
    watchdog.observe(event->view());
    last = event->ts_ns;
  }
  for (int s = 1; s <= 5; ++s) watchdog.tick(last + s * 1'000'000'000LL);
  EXPECT_THAT(crashes, IsEmpty());
  return watchdog.workers(last + 5'000'000'000LL);
}

TEST(ExitTest, ThreadWorkersOfAProcessThatEndsNormallyAreDoneNotCrashed) {
  for (bool by_exit : {false, true}) {
    SCOPED_TRACE(by_exit ? "exit()" : "return");
    test::TempDir dir;
    pid_t pid = fork();
    if (pid == 0) {
      thread_workers(dir, by_exit);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    auto json = test::read_file(dir.path() / "child.jsonl");
    EXPECT_THAT(json, HasSubstr("\"recorder_closed\":true"));
    auto workers = judge(dir);
    int done = 0;
    for (const WorkerView& w : workers) {
      if (w.worker.starts_with("worker-")) {
        EXPECT_EQ(w.state, WorkerState::Done) << w.worker;
        ++done;
      }
    }
    EXPECT_EQ(done, 3);
  }
}

}  // namespace
}  // namespace stagelog
