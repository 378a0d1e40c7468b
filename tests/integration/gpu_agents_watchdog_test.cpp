// Seed 001's three test cases (worker dies, no model, all busy) against examples/gpu_agents:
// real agent processes, a real SIGKILL, and `stagelog tail` watching them live or replaying
// their files. Thresholds are short; every wait has a deadline (kPatience) after which the test
// fails with what it saw so far; nothing asserts on how long anything took. The detection
// latencies of the first case are recorded (RecordProperty and a printed line), not checked.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "temp_dir.hpp"

namespace stagelog {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kPatience = std::chrono::seconds(60);  // Any wait longer than this fails.
constexpr int kPollMs = 20;  // Paces the loops that wait for a file, a line or an exit.

// The gpu_agents example, or "" where the examples are not built (the asan and tsan presets).
std::string gpu_agents() {
#ifdef STAGELOG_GPU_AGENTS
  return STAGELOG_GPU_AGENTS;
#else
  return {};
#endif
}
constexpr const char* kNoAgents =
    "examples/gpu_agents is not built in this configuration (STAGELOG_BUILD_EXAMPLES=OFF)";

std::int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// A child process with stdout and stderr on pipes, read without blocking. It runs in its own
// process group, so that a test that gives up can kill gpu_agents together with its agents, and
// it is killed if the test process dies first (PR_SET_PDEATHSIG), so no tail outlives a test.
class Process {
 public:
  explicit Process(const std::vector<std::string>& argv) {
    int out[2];
    int err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // The test died before prctl().
      int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::close_range(3, ~0U, 0);
      ::execv(args[0], args.data());
      ::dprintf(STDERR_FILENO, "cannot run %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);  // Also here: the group exists before kill(-pid) can be called.
    ::close(out[1]);
    ::close(err[1]);
    fds_[0] = out[0];
    fds_[1] = err[0];
    for (int fd : fds_) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    name_ = argv.size() > 1 && argv[0].find("stagelog") != std::string::npos
                ? fs::path(argv[0]).filename().string() + " " + argv[1]
                : fs::path(argv[0]).filename().string();
  }

  ~Process() {
    if (!reaped_) {  // The test gave up: the process and whatever it started go too.
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }
  bool reaped() const { return reaped_; }
  int status() const { return status_; }
  // Reaped, and both pipes at their end: everything it (and its children) wrote is in out().
  bool finished() const { return reaped_ && fds_[0] < 0 && fds_[1] < 0; }

  // What it said, for failure messages.
  std::string transcript() const {
    std::string s = "--- " + name_ + " (pid " + std::to_string(pid_) + ", " +
                    (reaped_ ? describe_status(status_) : std::string("still running")) +
                    ") stdout:\n" + out_;
    if (!err_.empty()) s += "--- " + name_ + " stderr:\n" + err_;
    return s;
  }

  // Reads whatever the processes wrote, waiting up to timeout_ms for the first byte (the wait
  // only paces the caller's loop), and reaps those that ended.
  static void pump(const std::vector<Process*>& processes, int timeout_ms) {
    std::vector<pollfd> fds;
    for (auto* p : processes) {
      for (int fd : p->fds_) {
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
      }
    }
    ::poll(fds.data(), fds.size(), timeout_ms);
    for (auto* p : processes) {
      p->drain(0, p->out_);
      p->drain(1, p->err_);
      p->try_reap();
    }
  }

  void signal(int sig) const {
    if (!reaped_) ::kill(pid_, sig);
  }

 private:
  void drain(int which, std::string& into) {
    int& fd = fds_[which];
    char buf[1 << 16];
    while (fd >= 0) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        into.append(buf, static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        return;
      } else {
        ::close(fd);
        fd = -1;
      }
    }
  }

  void try_reap() {
    if (reaped_) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      status_ = status;
    }
  }

  pid_t pid_ = -1;
  int fds_[2] = {-1, -1};
  std::string name_;
  std::string out_;
  std::string err_;
  bool reaped_ = false;
  int status_ = 0;
};

// Pumps the processes' output until done() holds; false if the deadline passes first.
bool wait_until(const std::vector<Process*>& processes, const std::function<bool()>& done,
                Clock::time_point deadline) {
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    Process::pump(processes, kPollMs);
  }
}

struct Finished {
  bool ended = false;  // false: still running after kPatience (and killed).
  int status = 0;
  std::string out;
  std::string err;
  std::string transcript;
};

// Runs argv to its end, or for kPatience at most.
Finished run(const std::vector<std::string>& argv) {
  Process p(argv);
  bool ended = wait_until(
      {&p}, [&] { return p.finished(); }, Clock::now() + kPatience);
  return {ended, p.status(), p.out(), p.err(), p.transcript()};
}

bool exited_with(const Finished& r, int code) {
  return r.ended && WIFEXITED(r.status) && WEXITSTATUS(r.status) == code;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t begin = 0;
  for (std::size_t nl; (nl = text.find('\n', begin)) != std::string::npos; begin = nl + 1) {
    lines.push_back(text.substr(begin, nl - begin));
  }
  if (begin < text.size()) lines.push_back(text.substr(begin));
  return lines;
}

// The complete JSON lines of a file that a process may still be writing.
std::vector<nlohmann::json> read_events(const fs::path& file) {
  std::string text = test::read_file(file);
  std::vector<nlohmann::json> events;
  std::size_t begin = 0;
  for (std::size_t nl; (nl = text.find('\n', begin)) != std::string::npos; begin = nl + 1) {
    auto e = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(begin),
                                   text.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
    if (!e.is_discarded() && e.is_object()) events.push_back(std::move(e));
  }
  return events;
}

std::string str(const nlohmann::json& e, const char* key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string field(const nlohmann::json& e, const char* key) {
  auto fields = e.find("fields");
  return fields != e.end() && fields->is_object() ? str(*fields, key) : std::string();
}

std::int64_t ts_ns(const nlohmann::json& e) { return e.value("ts_ns", std::int64_t{0}); }

// The time at the start of a tail line, "2026-11-23T18:47:56.845Z ...", in ns since the epoch.
std::optional<std::int64_t> line_time_ns(const std::string& line) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(line.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(::timegm(&tm)) * 1'000'000'000 +
         static_cast<std::int64_t>(ms) * 1'000'000;
}

std::int64_t ms_of(std::int64_t ns) { return static_cast<std::int64_t>(std::llround(ns / 1e6)); }

// --- 1. Worker dies --------------------------------------------------------------------------

// gpu-2 hangs in its first task (--stuck-agent 2), is killed there with SIGKILL, and a live
// `stagelog tail` must flag it three ways: crashed (its pid is gone), its task stuck, and silent.
TEST(GpuAgentsWatchdogTest, AgentKilledMidTaskIsReportedCrashedStuckAndSilent) {
  if (gpu_agents().empty()) GTEST_SKIP() << kNoAgents;
  test::TempDir dir;
  const std::string root = dir.path().string();
  fs::create_directories(dir.path() / "logs");  // tail refuses a path that does not exist.
  // stagelog's wording: its stuck-task line names the pid, host and seconds open checked here.
  Process tail({STAGELOG_CLI, "tail", "--plain", "--wording", "stagelog", "--stuck-task", "2s",
                "--stuck-stage", "2s", "--heartbeat-timeout", "1500ms", "--summary-interval", "0",
                root});
  Process agents({gpu_agents(), "--fast", "--agents", "3", "--tasks", "30", "--stuck-agent", "2",
                  "--dir", root});
  const std::vector<Process*> both = {&tail, &agents};
  const auto deadline = Clock::now() + kPatience;

  // gpu-2's first stage start, in its own file, and a heartbeat after it: gpu-2 hangs there
  // (6 s) while it heartbeats. Waiting for the heartbeat too matters: an agent's first beat
  // can reach its file after its first stage start, and a worker killed before any beat of
  // its is in the file is reported as one that "has sent no heartbeat ... since it started".
  const fs::path log2 = dir.path() / "logs" / "worker_2.jsonl";
  nlohmann::json start;
  bool started = wait_until(
      both,
      [&] {
        start = nullptr;
        for (auto& e : read_events(log2)) {
          if (str(e, "worker") != "gpu-2") continue;
          if (start.is_null() && str(e, "kind") == "stage" && str(e, "status") == "starting") {
            start = std::move(e);
          } else if (!start.is_null() && str(e, "kind") == "heartbeat") {
            return true;
          }
        }
        return false;
      },
      deadline);
  ASSERT_TRUE(started) << "no stage start of gpu-2 followed by a heartbeat in " << log2 << " after "
                       << kPatience.count() << "s\n"
                       << test::read_file(log2) << agents.transcript() << tail.transcript();
  const pid_t pid = static_cast<pid_t>(start.value("pid", 0));
  const std::string task = field(start, "task");
  const std::string task_class = str(start, "stage");
  const std::string host = str(start, "host");
  ASSERT_FALSE(task.empty()) << start.dump();
  // Only ever a process this test started: one of gpu_agents' own children.
  ASSERT_GT(pid, 1) << start.dump();
  ASSERT_EQ(::getpgid(pid), agents.pid()) << "pid " << pid << " is not one of gpu_agents' agents";
  const std::int64_t killed_ns = realtime_ns();
  ASSERT_EQ(::kill(pid, SIGKILL), 0) << std::strerror(errno);

  // What tail must say about gpu-2, each at least once; and gpu_agents must end.
  const std::regex crashed_re(
      R"(^(\S+) ERROR \[gpu-2\] Worker gpu-2 \(pid (\d+), host ([^)]*)\) crashed: process gone )"
      R"(without a shutdown; open: stage (\S+) [0-9.]+s, task (\w+) \((\w+)\) [0-9.]+s)");
  const std::regex task_re(
      R"(^(\S+) WARNING \[gpu-2\] Task (\w+) \((\w+)\) on gpu-2 \(pid (\d+), host ([^)]*)\) )"
      R"(open for ([0-9.]+)s \(threshold: 2\.0s\))");
  const std::regex silent_re(
      R"(^(\S+) WARNING \[gpu-2\] Worker gpu-2 last heartbeat ([0-9.]+)s ago \(threshold: 1\.5s\))");
  std::smatch crashed;
  std::smatch stuck_task;
  std::smatch silent;
  std::vector<std::string> lines;
  auto seen_all = [&] {
    lines = lines_of(tail.out());
    bool c = false;
    bool t = false;
    bool s = false;
    for (const auto& line : lines) {
      if (!c && std::regex_search(line, crashed, crashed_re)) c = true;
      if (!t && std::regex_search(line, stuck_task, task_re)) t = true;
      if (!s && std::regex_search(line, silent, silent_re)) s = true;
    }
    return c && t && s && agents.finished();
  };
  bool seen = wait_until(both, seen_all, deadline);
  // The matches point into `lines`: rescan once more so they belong to its final contents.
  seen_all();
  EXPECT_TRUE(seen) << "after " << kPatience.count() << "s, tail has not said all of: crashed, "
                    << "stuck task, silent for gpu-2 (or gpu_agents has not ended)\n"
                    << agents.transcript() << tail.transcript();

  // gpu_agents' brain saw the kill and fails the run.
  EXPECT_TRUE(agents.reaped());
  EXPECT_FALSE(WIFEXITED(agents.status()) && WEXITSTATUS(agents.status()) == 0)
      << agents.transcript();
  EXPECT_THAT(agents.out(), HasSubstr("gpu-2 died of signal 9"));
  // ... while gpu-2 held its task: it was killed mid-task.
  EXPECT_THAT(agents.out(), HasSubstr("left " + task + " (" + task_class + ") in processing"));

  tail.signal(SIGTERM);
  bool tail_ended = wait_until(
      {&tail}, [&] { return tail.finished(); }, Clock::now() + kPatience);
  ASSERT_TRUE(tail_ended) << "tail still runs " << kPatience.count() << "s after SIGTERM\n"
                          << tail.transcript();
  EXPECT_TRUE(WIFEXITED(tail.status()) && WEXITSTATUS(tail.status()) == 1)
      << "tail raised warnings, so it must exit with status 1; it "
      << describe_status(tail.status()) << "\n"
      << tail.transcript();
  if (!seen) return;

  EXPECT_EQ(crashed[2].str(), std::to_string(pid)) << crashed[0];
  EXPECT_EQ(crashed[3].str(), host) << crashed[0];
  EXPECT_EQ(crashed[4].str(), task_class) << crashed[0];
  EXPECT_EQ(crashed[5].str(), task) << crashed[0];
  EXPECT_EQ(crashed[6].str(), task_class) << crashed[0];
  EXPECT_EQ(stuck_task[2].str(), task) << stuck_task[0];
  EXPECT_EQ(stuck_task[3].str(), task_class) << stuck_task[0];
  EXPECT_EQ(stuck_task[4].str(), std::to_string(pid)) << stuck_task[0];
  EXPECT_EQ(stuck_task[5].str(), host) << stuck_task[0];

  // How far past its threshold each was reported (recorded, not asserted). The exact figures
  // come from the line's time and the events in gpu-2's file: the task opened with its claim,
  // and the silence began at the last heartbeat the file holds.
  std::int64_t task_open_ns = 0;
  std::int64_t last_beat_ns = 0;
  for (const auto& e : read_events(log2)) {
    if (str(e, "kind") == "task" && field(e, "task") == task && task_open_ns == 0) {
      task_open_ns = ts_ns(e);
    }
    if (str(e, "kind") == "heartbeat") last_beat_ns = std::max(last_beat_ns, ts_ns(e));
  }
  ASSERT_NE(task_open_ns, 0) << "no task event for " << task << " in " << log2;
  ASSERT_NE(last_beat_ns, 0) << "no heartbeat in " << log2;
  auto crashed_at = line_time_ns(crashed[0].str());
  auto task_at = line_time_ns(stuck_task[0].str());
  auto silent_at = line_time_ns(silent[0].str());
  ASSERT_TRUE(crashed_at && task_at && silent_at);
  const std::int64_t crash_ms = ms_of(*crashed_at - killed_ns);
  const std::int64_t task_ms = ms_of(*task_at - (task_open_ns + 2'000'000'000));
  const std::int64_t silent_ms = ms_of(*silent_at - (last_beat_ns + 1'500'000'000));
  const std::int64_t task_figure_ms = std::llround(std::stod(stuck_task[6].str()) * 1000) - 2000;
  const std::int64_t silent_figure_ms = std::llround(std::stod(silent[2].str()) * 1000) - 1500;
  RecordProperty("crashed_ms_after_kill", static_cast<int>(crash_ms));
  RecordProperty("stuck_task_ms_past_threshold", static_cast<int>(task_ms));
  RecordProperty("stuck_task_open_for", stuck_task[6].str() + "s");
  RecordProperty("silent_ms_past_threshold", static_cast<int>(silent_ms));
  RecordProperty("silent_last_heartbeat_ago", silent[2].str() + "s");
  std::printf(
      "[ latency  ] gpu-2 killed: crashed reported %lld ms after the kill (pid checks: 1 s); "
      "stuck task %lld ms past 2.0s (says open for %ss, %+lld ms); silent %lld ms past 1.5s "
      "(says %ss ago, %+lld ms)\n",
      static_cast<long long>(crash_ms), static_cast<long long>(task_ms),
      stuck_task[6].str().c_str(), static_cast<long long>(task_figure_ms),
      static_cast<long long>(silent_ms), silent[2].str().c_str(),
      static_cast<long long>(silent_figure_ms));
  std::fflush(stdout);
}

// --- 2. No model -----------------------------------------------------------------------------

// With --no-model nobody can take the brain's load_llm: gpu-1 keeps saying what it sees and
// that it has no model, and the brain's own watchdog (0.5 s with --fast) flags the request.
TEST(GpuAgentsWatchdogTest, LoadLlmThatNobodyCanTakeIsFlaggedAsStale) {
  if (gpu_agents().empty()) GTEST_SKIP() << kNoAgents;
  test::TempDir dir;
  const std::string root = dir.path().string();
  Finished agents =
      run({gpu_agents(), "--fast", "--agents", "3", "--tasks", "30", "--no-model", "--dir", root});
  ASSERT_TRUE(agents.ended) << "gpu_agents still runs after " << kPatience.count() << "s\n"
                            << agents.transcript;
  // Agents that can take nothing give up and exit cleanly: the run itself succeeds.
  EXPECT_TRUE(exited_with(agents, 0)) << agents.transcript;

  // gpu-1's queue snapshots: llm work in sight, no model. In the end only what it cannot take
  // is left: the load_llm nobody can run and the 6 llm tasks (indexes 1, 6 ... 26).
  std::vector<std::string> snapshots;
  for (const auto& e : read_events(dir.path() / "logs" / "worker_1.jsonl")) {
    std::string message = str(e, "message");
    if (message.starts_with("No suitable tasks - Queue: [")) snapshots.push_back(message);
  }
  ASSERT_FALSE(snapshots.empty()) << "worker_1.jsonl has no queue snapshot";
  const std::regex llm_in_queue(R"(Queue: \[([^\]]*, )?llm:\d+)");
  EXPECT_TRUE(std::any_of(snapshots.begin(), snapshots.end(), [&](const std::string& s) {
    return std::regex_search(s, llm_in_queue);
  })) << snapshots.front();
  EXPECT_THAT(snapshots, testing::Contains(HasSubstr("Queue: [load_llm:1, llm:6]")));
  EXPECT_THAT(snapshots, testing::Each(HasSubstr("Model loaded: False")));  // Python's bool.

  // The brain's request, and its in-process watchdog's warning about it.
  std::string request;
  std::vector<nlohmann::json> stale;
  for (auto& e : read_events(dir.path() / "brain.jsonl")) {
    if (str(e, "kind") == "request" && field(e, "what") == "load_llm" && request.empty()) {
      request = field(e, "request");
    }
    if (str(e, "component") == "watchdog" && field(e, "rule") == "stale_request") {
      stale.push_back(std::move(e));
    }
  }
  ASSERT_FALSE(request.empty()) << "brain.jsonl has no load_llm request";
  ASSERT_FALSE(stale.empty()) << "brain.jsonl has no stale_request warning\n"
                              << test::read_file(dir.path() / "brain.jsonl");
  // Seed 001's words: f"load_llm task available for {age:.0f}s but workers {...} still have
  // no model".
  const std::regex stale_re(
      R"(^load_llm task available for [0-9]+s but workers \['gpu-1'\] still have no model$)");
  EXPECT_EQ(str(stale.front(), "level"), "warning") << stale.front().dump();
  EXPECT_TRUE(std::regex_search(str(stale.front(), "message"), stale_re)) << stale.front().dump();

  // `stagelog tail --replay` says the same from the files alone, and exits 1 for the warning.
  Finished replay = run({STAGELOG_CLI, "tail", "--replay", "--stale-request", "500ms", root});
  ASSERT_TRUE(replay.ended) << replay.transcript;
  EXPECT_TRUE(exited_with(replay, 1)) << replay.transcript;
  const std::regex replayed_re(R"(^\S+ WARNING \[brain\] load_llm task available for [0-9]+s )"
                               R"(but workers \['gpu-1'\] still have no model$)");
  auto lines = lines_of(replay.out);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [&](const std::string& line) {
    return std::regex_search(line, replayed_re);
  })) << replay.transcript;
}

// --- 3. All busy -----------------------------------------------------------------------------

// 200 tasks for 3 agents, all of which they finish.
void run_all_busy(const test::TempDir& dir) {
  Finished agents = run(
      {gpu_agents(), "--fast", "--agents", "3", "--tasks", "200", "--dir", dir.path().string()});
  ASSERT_TRUE(agents.ended) << "gpu_agents still runs after " << kPatience.count() << "s\n"
                            << agents.transcript;
  ASSERT_TRUE(exited_with(agents, 0)) << agents.transcript;
}

// "transcribe:80, llm:40, cpu:80" -> 200; "empty" -> 0; nullopt if it is neither.
std::optional<int> queue_total(const std::string& queue) {
  if (queue == "empty") return 0;
  static const std::regex item(R"(^[a-z_]+:(\d+)$)");
  int total = 0;
  std::size_t begin = 0;
  for (;;) {
    std::size_t comma = queue.find(", ", begin);
    std::string part = queue.substr(begin, comma == std::string::npos ? comma : comma - begin);
    std::smatch m;
    if (!std::regex_match(part, m, item)) return std::nullopt;
    total += std::stoi(m[1].str());
    if (comma == std::string::npos) return total;
    begin = comma + 2;
  }
}

// The replayed MONITOR lines follow the queue (from the brain's monitor events) as it drains,
// and nothing is stuck, silent or crashed.
TEST(GpuAgentsWatchdogTest, AllBusyReplayShowsTheQueueDrainWithoutWarnings) {
  if (gpu_agents().empty()) GTEST_SKIP() << kNoAgents;
  test::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(run_all_busy(dir));
  Finished replay = run({STAGELOG_CLI, "tail", "--replay", "--wording", "stagelog",
                         "--summary-interval", "200ms", "--stuck-task", "3s", "--stuck-stage", "3s",
                         "--heartbeat-timeout", "2s", dir.path().string()});
  ASSERT_TRUE(replay.ended) << replay.transcript;
  EXPECT_TRUE(exited_with(replay, 0)) << "the watchdog raised warnings\n" << replay.transcript;

  const std::regex monitor_re(
      R"(MONITOR: Workers: (\d+)/(\d+) alive, Stages: .*, Tasks: processing (\d+), stuck (\d+), )"
      R"(Queue: (.*)$)");
  const std::regex stuck_count(R"(stuck (\d+))");
  std::vector<int> totals;
  std::vector<std::string> queues;
  for (const auto& line : lines_of(replay.out)) {
    std::smatch m;
    if (line.find("MONITOR:") != std::string::npos) {
      ASSERT_TRUE(std::regex_search(line, m, monitor_re)) << "odd MONITOR line: " << line;
      auto total = queue_total(m[5].str());
      ASSERT_TRUE(total) << "odd queue in: " << line;
      totals.push_back(*total);
      queues.push_back(m[5].str());
    }
    for (auto it = std::sregex_iterator(line.begin(), line.end(), stuck_count);
         it != std::sregex_iterator(); ++it) {
      EXPECT_EQ((*it)[1].str(), "0") << line;
    }
    EXPECT_THAT(line, Not(HasSubstr("-> stuck")));
    EXPECT_THAT(line, Not(HasSubstr(" open for ")));
    EXPECT_THAT(line, Not(HasSubstr("crashed")));
    EXPECT_THAT(line, Not(HasSubstr("last heartbeat")));
  }
  ASSERT_FALSE(totals.empty()) << "no MONITOR line\n" << replay.transcript;
  std::set<int> distinct(totals.begin(), totals.end());
  EXPECT_GE(distinct.size(), 3u) << replay.transcript;
  for (int total : totals) {
    EXPECT_LE(total, totals.front() + 1) << "the queue grew by more than a load_llm\n"
                                         << replay.transcript;
  }
  // The queue drains: the replay's closing MONITOR line, at the last event, shows it empty.
  EXPECT_EQ(queues.back(), "empty") << replay.transcript;
  EXPECT_LT(totals.back(), totals.front()) << replay.transcript;
  RecordProperty("monitor_lines", static_cast<int>(totals.size()));
  RecordProperty("last_monitor_queue", queues.back());
}

// Agents heartbeat until they shut down, so even a 200 ms heartbeat timeout must never flag an
// agent after its "shutting down" line.
TEST(GpuAgentsWatchdogTest, NoSilentWarningForAnAgentAfterItShutsDown) {
  if (gpu_agents().empty()) GTEST_SKIP() << kNoAgents;
  test::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(run_all_busy(dir));
  std::map<std::string, std::int64_t> shutdown_ns;  // gpu-N -> its "shutting down" line
  for (int i = 0; i < 3; ++i) {
    for (const auto& e :
         read_events(dir.path() / "logs" / ("worker_" + std::to_string(i) + ".jsonl"))) {
      if (str(e, "kind") == "lifecycle" &&
          str(e, "message").find("shutting down") != std::string::npos) {
        shutdown_ns[str(e, "worker")] = ts_ns(e);
      }
    }
  }
  ASSERT_EQ(shutdown_ns.size(), 3u) << "not every agent shut down cleanly";

  Finished replay =
      run({STAGELOG_CLI, "tail", "--replay", "--heartbeat-timeout", "200ms", dir.path().string()});
  ASSERT_TRUE(replay.ended) << replay.transcript;
  const std::regex silent_re(R"(^(\S+) WARNING \[(gpu-\d+)\] Worker \2 last heartbeat)");
  const std::regex done_re(R"(^\S+ \[(gpu-\d+)\] \w+ -> done)");
  std::set<std::string> done;
  int before_shutdown = 0;
  for (const auto& line : lines_of(replay.out)) {
    std::smatch m;
    if (std::regex_search(line, m, done_re)) done.insert(m[1].str());
    if (!std::regex_search(line, m, silent_re)) continue;
    const std::string worker = m[2].str();
    EXPECT_FALSE(done.contains(worker)) << "after " << worker << " shut down: " << line;
    auto at = line_time_ns(line);
    ASSERT_TRUE(at) << line;
    ASSERT_TRUE(shutdown_ns.contains(worker)) << line;
    // Lines carry milliseconds: compare at that precision.
    EXPECT_LE(*at / 1'000'000, shutdown_ns[worker] / 1'000'000)
        << "after " << worker << " shut down: " << line;
    ++before_shutdown;  // A real gap between two heartbeats while it ran.
  }
  EXPECT_EQ(done.size(), 3u) << replay.transcript;
  RecordProperty("silent_warnings_while_running", before_shutdown);
  if (before_shutdown > 0) {
    std::printf("[ note     ] %d silent warning(s) before a shutdown (heartbeat gaps > 200 ms)\n",
                before_shutdown);
  }
}

}  // namespace
}  // namespace stagelog
