// Seed 001's GPU agents, as separate processes: N agents claim tasks from a file queue under
// DIR/queue (pending -> processing -> done | failed) with flock, while the parent, the brain,
// asks for a load_llm, watches heartbeats and reports how each agent ended.
//
// gpu-1 only takes llm work: it says "No suitable tasks ... Model loaded: false" until the
// brain's load_llm arrives, and again at the end while only other classes remain. Every 13th
// task fails with "CUDA out of memory". Each agent writes
//   DIR/logs/worker_<i>.log                  INFO: lifecycle, claims, stages, completions
//   DIR/logs/worker_<i>.jsonl                DEBUG too: claim attempts, lost races, heartbeats
//   DIR/heartbeats/gpu-<i>.heartbeat.json    its latest heartbeat
// and the brain DIR/brain.jsonl. Logs are appended across runs (worker logs mark each new
// session with "=== Resume at ... ==="); the queue and heartbeats start afresh.
//
//   gpu_agents [--agents N] [--tasks M] [--dir DIR] [--fast] [--crash-agent K]
//              [--stuck-agent K] [--no-model]

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "stagelog/stagelog.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using stagelog::kv;

constexpr std::string_view kModel = "qwen2.5:7b";
constexpr int kBasePort = 11434;
constexpr int kMaxAgents = 64;
constexpr int kMaxTasks = 100000;
constexpr int kFailEvery = 13;          // Task indexes 12, 25, 38 ... run out of GPU memory.
constexpr int kCrashOnClaim = 4;        // --crash-agent K: gpu-K dies on its 4th task.
constexpr double kHangMs = 120'000;     // --stuck-agent K: gpu-K's first task hangs this long
constexpr double kHangFloorMs = 6'000;  // (--fast: 6 s), alive and heartbeating.
constexpr std::string_view kOom = "CUDA out of memory";

// Task classes, in the order queue snapshots list them.
constexpr std::string_view kLoadLlm = "load_llm";
constexpr std::string_view kTranscribe = "transcribe";
constexpr std::string_view kLlm = "llm";
constexpr std::string_view kCpu = "cpu";
constexpr std::array<std::string_view, 4> kClasses = {kLoadLlm, kTranscribe, kLlm, kCpu};

// --- Task ids -----------------------------------------------------------------------------
// Eight hex digits that look random but decode back to the task's index, so an agent knows a
// task's duration and fate from its file name alone: id = index * kIdMul ^ kIdSalt (mod 2^32).

constexpr std::uint32_t kIdMul = 0x9E3779B1u;  // Odd, so invertible mod 2^32.
constexpr std::uint32_t kIdSalt = 0xa6e2c868u;

constexpr std::uint32_t inverse_mod_2_32(std::uint32_t a) {
  std::uint32_t x = a;  // Newton's iteration doubles the correct low bits each round.
  for (int i = 0; i < 5; ++i) x *= 2u - a * x;
  return x;
}
constexpr std::uint32_t kIdMulInverse = inverse_mod_2_32(kIdMul);
static_assert(kIdMul * kIdMulInverse == 1u);

std::string task_id(int index) {
  char id[9];
  std::snprintf(id, sizeof id, "%08x", (static_cast<std::uint32_t>(index) * kIdMul) ^ kIdSalt);
  return id;
}

std::int64_t task_index(std::string_view id) {
  std::uint32_t value = 0;
  auto [ptr, ec] = std::from_chars(id.data(), id.data() + id.size(), value, 16);
  if (ec != std::errc() || ptr != id.data() + id.size()) return -1;
  return static_cast<std::int64_t>((value ^ kIdSalt) * kIdMulInverse);
}

std::string_view class_of(int index) {
  switch (index % 5) {
    case 1:
      return kLlm;
    case 0:
    case 3:
      return kTranscribe;
    default:
      return kCpu;
  }
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A number in [0, 1) fixed for each task index.
double fraction(std::int64_t index, std::uint64_t salt) {
  return static_cast<double>(mix(static_cast<std::uint64_t>(index) ^ salt) % 1000) / 1000.0;
}

// Unscaled milliseconds a task takes: varied, but the same for the same task every run.
double task_ms(std::string_view task_class, std::int64_t index) {
  if (task_class == kLoadLlm) return 300;
  double r = fraction(index, 0);
  if (task_class == kTranscribe) return 200 + 200 * r;
  if (task_class == kLlm) return 80 + 140 * r;
  return 50 + 100 * r;
}

bool runs_out_of_memory(std::string_view task_class, std::int64_t index) {
  return task_class != kLoadLlm && index % kFailEvery == kFailEvery - 1;
}

// --- Timing -----------------------------------------------------------------------------

struct Timing {
  double scale = 1.0;  // --fast: 0.05

  // Milliseconds of the normal run, scaled, but never below floor_ms.
  std::chrono::microseconds operator()(double ms, double floor_ms = 0) const {
    return std::chrono::microseconds(std::llround(std::max(ms * scale, floor_ms) * 1000));
  }
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// --- The file queue -----------------------------------------------------------------------

struct Queue {
  explicit Queue(const fs::path& dir)
      : root(dir / "queue"),
        pending(root / "pending"),
        processing(root / "processing"),
        done(root / "done"),
        failed(root / "failed") {}
  fs::path root, pending, processing, done, failed;
};

struct Task {
  std::string id;
  std::string task_class;
  std::string owner;  // The agent that claimed it: the second line, once claimed.
};

// A task file: its class on the first line, the claiming agent on the second. Empty when the
// file has gone (another process moved it).
Task read_task(const fs::path& file) {
  Task task{file.stem().string(), {}, {}};
  std::ifstream in(file);
  std::getline(in, task.task_class);
  std::getline(in, task.owner);
  return task;
}

// The *.task files in a queue folder, by id. Other processes move files while we look, so
// every error means "not there any more".
std::vector<Task> list_tasks(const fs::path& dir) {
  std::vector<Task> tasks;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".task") continue;
    Task task = read_task(it->path());
    if (!task.task_class.empty()) tasks.push_back(std::move(task));
  }
  std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.id < b.id; });
  return tasks;
}

std::array<int, kClasses.size()> count_by_class(const std::vector<Task>& tasks) {
  std::array<int, kClasses.size()> counts{};
  for (const auto& task : tasks) {
    auto it = std::find(kClasses.begin(), kClasses.end(), task.task_class);
    if (it != kClasses.end()) ++counts[static_cast<std::size_t>(it - kClasses.begin())];
  }
  return counts;
}

int count_of(const std::array<int, kClasses.size()>& counts, std::string_view task_class) {
  auto it = std::find(kClasses.begin(), kClasses.end(), task_class);
  return counts[static_cast<std::size_t>(it - kClasses.begin())];
}

// "transcribe:8, cpu:4" (classes with tasks only), or "empty".
std::string describe_counts(const std::array<int, kClasses.size()>& counts) {
  std::string out;
  for (std::size_t i = 0; i < kClasses.size(); ++i) {
    if (counts[i] == 0) continue;
    if (!out.empty()) out += ", ";
    out += kClasses[i];
    out += ':';
    out += std::to_string(counts[i]);
  }
  return out.empty() ? "empty" : out;
}

void write_file(const fs::path& file, std::string_view text) {
  std::ofstream out(file, std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + file.string() + ": " + std::strerror(errno));
}

// Puts a task into pending atomically: readers see the whole file or none.
void enqueue(const Queue& queue, const std::string& id, std::string_view task_class) {
  fs::path temp = queue.pending / ("." + id + ".tmp");
  write_file(temp, std::string(task_class) + "\n");
  fs::rename(temp, queue.pending / (id + ".task"));
}

class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// --- An agent process ---------------------------------------------------------------------

struct AgentConfig {
  int index = 0;
  std::string name;  // "gpu-1"
  std::vector<std::string_view> preferred;
  fs::path dir;
  Timing timing;
  bool crash = false;     // --crash-agent names this one
  bool stuck = false;     // --stuck-agent names this one
  bool no_model = false;  // --no-model: nobody can load the model
  int start_fd = -1;      // Read end of the start pipe: EOF means go.
};

// gpu-1 does llm work only (a lone gpu-0 does everything); the others share the rest.
std::vector<std::string_view> preferences(int index, int agents) {
  if (agents == 1) return {kLoadLlm, kLlm, kTranscribe, kCpu};
  if (index == 1) return {kLoadLlm, kLlm};
  if (index % 2 == 0) return {kCpu, kTranscribe};
  return {kTranscribe, kCpu};
}

std::string join(const std::vector<std::string_view>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// Heartbeats from their own thread, every period, until stopped: Agent::heartbeat() records
// them as the agent's from any thread.
class HeartbeatThread {
 public:
  HeartbeatThread(stagelog::Recorder& recorder, stagelog::Agent& agent, int gpu,
                  std::chrono::microseconds period, const std::atomic<bool>& busy,
                  const std::atomic<bool>& model_loaded)
      : thread_([this, &recorder, &agent, gpu, period, &busy, &model_loaded] {
          for (int beat = 0;; ++beat) {
            double util = busy.load() ? (80 + beat % 15) / 100.0 : 0.03;
            agent.heartbeat(kv("gpu", gpu), kv("gpu_util", util),
                            kv("model_loaded", model_loaded.load()));
            std::unique_lock lock(mu_);
            if (cv_.wait_for(lock, period, [this] { return stop_; })) return;
          }
        }) {}
  ~HeartbeatThread() { stop(); }
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;

  void stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // Last: starts once the members above exist.
};

// For --crash-agent: a real invalid write, not raise(), so the crash path is the one a bug takes.
[[noreturn]] void crash_on_purpose(const stagelog::Agent& agent) {
  agent.logger().warning("--crash-agent: writing to a PROT_NONE page");
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // A crash on purpose needs no core file.
  auto size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* page = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page != MAP_FAILED) *static_cast<volatile char*>(page) = 1;
  std::raise(SIGSEGV);
  std::_Exit(139);
}

enum class Claim { Claimed, LostRace, Locked, Error };

// Seed 001's claim under a file lock (FileLock(timeout=...)): <task>.lock taken exclusively
// with non-blocking flock, retried until `wait` has passed, then a "lock timeout". Under the
// lock, the task is still pending, or another agent took it while we waited: a lost race.
Claim try_claim(stagelog::Agent& agent, const Task& task, const Queue& queue,
                std::chrono::microseconds wait, std::chrono::microseconds hold) {
  agent.attempt(task.id);
  fs::path file = queue.pending / (task.id + ".task");
  std::string lock_path = file.string() + ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (lock.get() < 0) {
    agent.logger().warning("cannot open lock file", kv("path", lock_path),
                           kv("error", std::strerror(errno)));
    return Claim::Error;
  }
  const auto give_up = Clock::now() + wait;
  while (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      agent.logger().warning("flock failed", kv("path", lock_path),
                             kv("error", std::strerror(errno)));
      return Claim::Error;
    }
    if (Clock::now() >= give_up) {
      agent.lock_timeout(task.id);
      return Claim::Locked;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  std::this_thread::sleep_for(hold);  // Reading the task's payload, under the lock.
  fs::path claimed = queue.processing / (task.id + ".task");
  if (::access(file.c_str(), F_OK) != 0 || ::rename(file.c_str(), claimed.c_str()) != 0) {
    agent.lost_race(task.id);
    return Claim::LostRace;
  }
  std::ofstream(claimed, std::ios::app) << agent.name() << "\n";
  agent.claimed(task.id, task.task_class);
  return Claim::Claimed;  // The lock goes with the descriptor.
}

// One claimed task: a stage named by its class, then done/ or failed/.
void run_task(stagelog::Agent& agent, const Task& task, const Queue& queue, const Timing& timing,
              std::atomic<bool>& model_loaded, bool crash, bool hang) {
  std::int64_t index = task_index(task.id);
  bool oom = runs_out_of_memory(task.task_class, index);
  {
    stagelog::StageScope stage(agent.logger(), task.task_class, kv("task", task.id));
    if (crash) crash_on_purpose(agent);
    if (hang) std::this_thread::sleep_for(timing(kHangMs, kHangFloorMs));
    std::this_thread::sleep_for(timing(task_ms(task.task_class, index)));
    if (oom) {
      stage.fail(kOom, kv("requested_mib", 2048 + index % 7 * 512), kv("free_mib", 312));
    } else if (task.task_class == kLoadLlm) {
      model_loaded.store(true);
      stage.complete(kv("model", kModel));
    } else if (task.task_class == kLlm) {
      stage.complete(kv("tokens", 400 + index * 37 % 900));
    } else if (task.task_class == kTranscribe) {
      stage.complete(kv("audio_s", 30 + index * 11 % 240));
    }
  }
  fs::path from = queue.processing / (task.id + ".task");
  fs::path to = (oom ? queue.failed : queue.done) / (task.id + ".task");
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) {
    agent.logger().warning("cannot move task", kv("task", task.id), kv("error", ec.message()));
  }
  if (oom) {
    agent.failed(task.id, kOom);
  } else {
    agent.completed(task.id);
  }
}

void wait_for_start(int fd) {
  char byte;
  while (::read(fd, &byte, 1) < 0 && errno == EINTR) {
  }
  ::close(fd);
}

void claim_loop(stagelog::Agent& agent, const AgentConfig& config, std::atomic<bool>& busy,
                std::atomic<bool>& model_loaded) {
  const Queue queue(config.dir);
  const Timing& t = config.timing;
  const auto start = Clock::now();
  const auto deadline = start + t(60'000, 10'000);
  const auto idle_limit = t(3'000, 1'000);  // Queue unchanged this long: nobody can go on.
  const auto report_every = t(1'000);
  auto rank = [&](std::string_view task_class) {
    return std::find(config.preferred.begin(), config.preferred.end(), task_class) -
           config.preferred.begin();
  };
  const auto none = static_cast<std::ptrdiff_t>(config.preferred.size());

  std::size_t last_size = SIZE_MAX;
  auto last_change = start;
  std::pair<std::array<int, kClasses.size()>, bool> last_report{};
  auto last_report_at = start;
  int claims = 0;
  for (;;) {
    std::vector<Task> pending = list_tasks(queue.pending);
    auto counts = count_by_class(pending);
    std::array<std::pair<std::string_view, int>, kClasses.size()> snapshot;
    for (std::size_t i = 0; i < kClasses.size(); ++i) snapshot[i] = {kClasses[i], counts[i]};
    if (pending.empty()) {
      agent.nothing_claimed(snapshot, config.preferred, model_loaded.load());  // "Queue empty"
      break;
    }
    auto now = Clock::now();
    if (pending.size() != last_size) {
      last_size = pending.size();
      last_change = now;
    }
    if (now > deadline) {
      agent.logger().warning("giving up: time limit reached", kv("queue", describe_counts(counts)));
      break;
    }

    // What this agent can take: its classes, llm only with a model, load_llm only without one.
    std::vector<const Task*> candidates;
    for (const auto& task : pending) {
      if (rank(task.task_class) == none) continue;
      if (task.task_class == kLlm && !model_loaded.load()) continue;
      if (task.task_class == kLoadLlm && (model_loaded.load() || config.no_model)) continue;
      candidates.push_back(&task);
    }
    std::stable_sort(candidates.begin(), candidates.end(), [&](const Task* a, const Task* b) {
      return rank(a->task_class) < rank(b->task_class);
    });

    if (candidates.empty()) {
      // Seed 001's P0: say what the queue holds, when it changed or now and then.
      auto report = std::pair(counts, model_loaded.load());
      if (report != last_report || now - last_report_at >= report_every) {
        agent.nothing_claimed(snapshot, config.preferred, report.second);
        last_report = report;
        last_report_at = now;
      }
      if (now - last_change >= idle_limit) {
        agent.logger().warning("giving up: queue unchanged and nothing claimable",
                               kv("queue", describe_counts(counts)),
                               kv("unchanged_s", std::round(seconds(now - last_change) * 10) / 10));
        break;
      }
      std::this_thread::sleep_for(t(50, 2));
      continue;
    }

    bool claimed = false;
    for (const Task* task : candidates) {
      // Waiting up to 3 ms for a lock held 1-5 ms: some waits time out, some end in a lost race.
      // (--fast shortens these only 4x: below a millisecond, sleeps are mostly noise.)
      double hold_ms = 1 + 4 * fraction(task_index(task->id), 0x10c4);
      Claim result = try_claim(agent, *task, queue, t(3, 3 / 4.0), t(hold_ms, hold_ms / 4));
      if (result != Claim::Claimed) continue;
      claimed = true;
      busy.store(true);
      ++claims;
      run_task(agent, *task, queue, t, model_loaded, config.crash && claims == kCrashOnClaim,
               config.stuck && claims == 1);
      busy.store(false);
      break;
    }
    if (!claimed) {
      agent.logger().debug("Claim attempt: all candidates claimed by others",
                           kv("candidates", candidates.size()));
      std::this_thread::sleep_for(t(5, 0.5));
    }
  }
  if (config.crash) crash_on_purpose(agent);  // Fewer than kCrashOnClaim tasks: crash now.
}

int run_agent(const AgentConfig& config) {
  try {
    stagelog::Recorder recorder;
    std::string rank = std::to_string(config.index);
    fs::path logs = config.dir / "logs";
    stagelog::setup_worker_logging(recorder, logs, rank,
                                   {.console_level = stagelog::Level::Warning});
    recorder.add_sink(std::make_shared<stagelog::HeartbeatFileSink>(config.dir / "heartbeats"));
    recorder.add_sink(std::make_shared<stagelog::JsonlSink>(logs / ("worker_" + rank + ".jsonl")));
    // Claim-loop lines are DEBUG: on for the JSONL file (the .log stays at INFO), unless
    // WORKER_LOG_LEVEL says otherwise.
    if (std::getenv("WORKER_LOG_LEVEL") == nullptr) {
      recorder.component("worker").set_level(stagelog::Level::Debug);
    }

    stagelog::Agent agent(recorder, config.name);
    agent.initialized(kv("gpu", config.index), kv("port", kBasePort + config.index),
                      kv("model", kModel), kv("preferred", join(config.preferred, ",")));
    std::atomic<bool> busy{false};
    std::atomic<bool> model_loaded{false};
    try {
      HeartbeatThread heartbeats(recorder, agent, config.index, config.timing(500), busy,
                                 model_loaded);
      agent.starting();
      wait_for_start(config.start_fd);
      claim_loop(agent, config, busy, model_loaded);
    } catch (...) {
      agent.crashed(std::current_exception());
      return 1;
    }
    agent.shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_agents: %s: %s\n", config.name.c_str(), e.what());
    return 1;
  }
}

// --- The brain (the parent process) -------------------------------------------------------

struct Args {
  int agents = 4;
  int tasks = 40;
  fs::path dir = "demo-out/gpu_agents";
  double scale = 1.0;
  int crash_agent = -1;
  int stuck_agent = -1;
  bool no_model = false;
  bool help = false;
};

constexpr const char* kUsage =
    "usage: gpu_agents [--agents N] [--tasks M] [--dir DIR] [--fast] [--crash-agent K]\n"
    "                  [--stuck-agent K] [--no-model]\n"
    "N GPU agent processes (default 4) claim M tasks (default 40) from a file queue in\n"
    "DIR/queue (default demo-out/gpu_agents) under flock; the parent, the brain, requests a\n"
    "load_llm for gpu-1, watches heartbeats and reports how every agent ended. Every 13th task\n"
    "fails with CUDA out of memory. --fast runs about 20x faster; --crash-agent K makes gpu-K\n"
    "die of SIGSEGV on its 4th task; --stuck-agent K makes gpu-K's first task hang for 120 s\n"
    "(6 s with --fast) while it keeps heartbeating; --no-model makes the load_llm impossible, so\n"
    "the request goes stale. Agents write DIR/logs/worker_<i>.log and .jsonl and\n"
    "DIR/heartbeats/gpu-<i>.heartbeat.json; the brain writes DIR/brain.jsonl.\n";

int parse_int(std::string_view flag, std::string_view text, int lo, int hi) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value < lo || value > hi) {
    throw std::runtime_error(std::string(flag) + " takes a whole number from " +
                             std::to_string(lo) + " to " + std::to_string(hi) + ", not '" +
                             std::string(text) + "'");
  }
  return value;
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool inline_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    auto next = [&]() -> std::string_view {
      if (inline_value) return value;
      if (i + 1 >= argc) throw std::runtime_error(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      args.help = true;
    } else if (arg == "--fast" && !inline_value) {
      args.scale = 0.05;
    } else if (arg == "--agents") {
      args.agents = parse_int(arg, next(), 1, kMaxAgents);
    } else if (arg == "--tasks") {
      args.tasks = parse_int(arg, next(), 0, kMaxTasks);
    } else if (arg == "--dir") {
      args.dir = next();
      if (args.dir.empty()) throw std::runtime_error("--dir needs a folder");
    } else if (arg == "--crash-agent") {
      args.crash_agent = parse_int(arg, next(), 0, kMaxAgents - 1);
    } else if (arg == "--stuck-agent") {
      args.stuck_agent = parse_int(arg, next(), 0, kMaxAgents - 1);
    } else if (arg == "--no-model" && !inline_value) {
      args.no_model = true;
    } else {
      throw std::runtime_error("unknown argument '" + std::string(argv[i]) + "' (see --help)");
    }
  }
  for (auto [flag, k] : {std::pair{"--crash-agent", args.crash_agent},
                         std::pair{"--stuck-agent", args.stuck_agent}}) {
    if (k >= args.agents) {
      throw std::runtime_error(std::string(flag) + " " + std::to_string(k) + ": there are only " +
                               std::to_string(args.agents) + " agents (gpu-0 to gpu-" +
                               std::to_string(args.agents - 1) + ")");
    }
  }
  return args;
}

void make_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create " + dir.string() + ": " + ec.message());
}

void remove_tree(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) throw std::runtime_error("cannot remove " + dir.string() + ": " + ec.message());
}

// A fresh queue of `tasks` tasks; logs from earlier runs stay.
void create_queue(const Args& args) {
  const Queue queue(args.dir);
  make_dir(args.dir);
  remove_tree(queue.root);
  remove_tree(args.dir / "heartbeats");
  for (const auto* dir : {&queue.pending, &queue.processing, &queue.done, &queue.failed}) {
    make_dir(*dir);
  }
  make_dir(args.dir / "logs");
  for (int k = 0; k < args.tasks; ++k) enqueue(queue, task_id(k), class_of(k));
}

std::string agent_name(int index) { return "gpu-" + std::to_string(index); }

struct Child {
  int index = 0;
  std::string name;
  pid_t pid = -1;
  bool running = true;
  int status = 0;  // waitpid's
};

std::string describe_exit(int status) {
  if (status < 0) return "could not be waited for";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (!WIFSIGNALED(status)) return "ended oddly (wait status " + std::to_string(status) + ")";
  int sig = WTERMSIG(status);
  const char* abbrev = sig == SIGSEGV   ? "SIGSEGV"
                       : sig == SIGABRT ? "SIGABRT"
                       : sig == SIGBUS  ? "SIGBUS"
                       : sig == SIGKILL ? "SIGKILL"
                       : sig == SIGTERM ? "SIGTERM"
                       : sig == SIGINT  ? "SIGINT"
                                        : "?";
  return "died of signal " + std::to_string(sig) + " (" + abbrev + ")";
}

struct Tally {
  int done = 0;
  int failed = 0;
  std::vector<Task> holding;  // Still in processing/.
};

Tally tally(const Queue& queue, const std::string& agent) {
  Tally t;
  for (const auto& task : list_tasks(queue.done)) t.done += task.owner == agent;
  for (const auto& task : list_tasks(queue.failed)) t.failed += task.owner == agent;
  for (auto& task : list_tasks(queue.processing)) {
    if (task.owner == agent) t.holding.push_back(std::move(task));
  }
  return t;
}

std::string last_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

std::string read_all(const fs::path& file) {
  std::ifstream in(file);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The brain's watchdog flags a load_llm request still open after 2 s (0.5 s with --fast).
stagelog::Options brain_options(const Args& args) {
  stagelog::Options options;
  options.watchdog->request_threshold = Timing{args.scale}(2'000, 500);
  return options;
}

class Brain {
 public:
  Brain(const Args& args, std::vector<Child>& children,
        std::vector<std::shared_ptr<stagelog::Sink>> sinks)
      : args_(args), queue_(args.dir), timing_{args.scale}, children_(children) {
    for (auto& sink : sinks) recorder_.add_sink(std::move(sink));
  }

  int run() {
    const stagelog::Logger& log = agent_.logger();
    agent_.initialized(kv("agents", args_.agents), kv("tasks", args_.tasks),
                       kv("dir", args_.dir.string()));
    std::array<int, kClasses.size()> counts{};
    for (int k = 0; k < args_.tasks; ++k) {
      auto it = std::find(kClasses.begin(), kClasses.end(), class_of(k));
      ++counts[static_cast<std::size_t>(it - kClasses.begin())];
    }
    log.info("queue created", kv("pending", args_.tasks), kv("queue", describe_counts(counts)));
    for (const auto& child : children_) {
      log.info("spawned agent", kv("agent", child.name), kv("pid", child.pid),
               kv("preferred", join(preferences(child.index, args_.agents), ",")));
    }
    agent_.starting();

    const auto start = Clock::now();
    const auto deadline = start + timing_(90'000, 15'000);
    auto last_monitor = start;
    while (alive() > 0) {
      reap();
      auto now = Clock::now();
      watch_models(now - start);
      if (now - last_monitor >= timing_(500)) {
        monitor();
        last_monitor = now;
      }
      if (now > deadline) {
        log.error("agents still running at the time limit: killing them");
        for (auto& child : children_) {
          if (child.running) ::kill(child.pid, SIGKILL);
        }
        deadline_hit_ = true;
        break;
      }
      std::this_thread::sleep_for(timing_(20, 2));
    }
    while (alive() > 0) reap(true);
    monitor();
    return report(seconds(Clock::now() - start));
  }

 private:
  int alive() const {
    return static_cast<int>(std::count_if(children_.begin(), children_.end(),
                                          [](const Child& c) { return c.running; }));
  }

  void reap(bool block = false) {
    const stagelog::Logger& log = agent_.logger();
    for (auto& child : children_) {
      if (!child.running) continue;
      int status = 0;
      pid_t pid = ::waitpid(child.pid, &status, block ? 0 : WNOHANG);
      if (pid == 0 || (pid < 0 && errno == EINTR)) continue;
      child.running = false;
      child.status = pid < 0 ? -1 : status;
      Tally t = tally(queue_, child.name);
      std::string what = child.name + " " + describe_exit(status) + " - done " +
                         std::to_string(t.done) + ", failed " + std::to_string(t.failed);
      bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      for (const auto& task : t.holding) {
        what += ", left " + task.id + " (" + task.task_class + ") in processing";
      }
      if (clean) {
        log.info(what, kv("agent", child.name), kv("pid", child.pid));
      } else {
        log.error(what, kv("agent", child.name), kv("pid", child.pid));
      }
      if (block) break;
    }
  }

  // Seed 001's P1: llm tasks waiting and no model loaded anywhere: insert a load_llm and
  // follow it until an agent has the model.
  void watch_models(Clock::duration since_start) {
    bool any_model = false;
    std::vector<std::string_view> waiting;
    int beating = 0;
    for (std::size_t i = 0; i < children_.size(); ++i) {
      std::string beat =
          read_all(args_.dir / "heartbeats" / (children_[i].name + ".heartbeat.json"));
      if (beat.empty()) continue;
      ++beating;
      bool loaded = beat.find("\"model_loaded\":true") != std::string::npos;
      any_model = any_model || loaded;
      auto prefs = preferences(children_[i].index, args_.agents);
      if (!loaded && children_[i].running &&
          std::find(prefs.begin(), prefs.end(), kLlm) != prefs.end()) {
        waiting.push_back(children_[i].name);
      }
    }
    // Ready: every agent has beaten once, so gpu-1 has had time to say what it is missing.
    bool ready =
        beating == static_cast<int>(children_.size()) || since_start >= timing_(1'000, 200);
    const stagelog::Logger& log = agent_.logger();

    if (load_id_.empty()) {
      if (!ready || any_model) return;
      int llm = count_of(count_by_class(list_tasks(queue_.pending)), kLlm);
      if (llm == 0 || waiting.empty()) return;
      load_id_ = task_id(args_.tasks);  // The index after the last task: never fails.
      log.info("LLM tasks waiting (" + std::to_string(llm) +
               ") but no models loaded - inserting load_llm task");
      enqueue(queue_, load_id_, kLoadLlm);
      agent_.request(load_id_, kLoadLlm, std::span(waiting.data(), waiting.size()));
      return;
    }
    if (fulfilled_) return;
    if (fs::exists(queue_.done / (load_id_ + ".task")) || any_model) {
      agent_.fulfilled(load_id_);
      fulfilled_ = true;
    }
    // A load_llm nobody takes is the watchdog's to flag (see brain_options): "Request ...
    // (load_llm) open for 2.0s but workers [gpu-1] still wait for it".
  }

  // Seed 001's MONITOR line.
  void monitor() {
    auto pending = count_by_class(list_tasks(queue_.pending));
    int total = 0;
    for (int n : pending) total += n;
    std::string line = "MONITOR: Agents: " + std::to_string(alive()) + "/" +
                       std::to_string(children_.size()) + ", Queue: " + std::to_string(total) +
                       " (" + describe_counts(pending) +
                       "), Processing: " + std::to_string(list_tasks(queue_.processing).size()) +
                       ", Done: " + std::to_string(list_tasks(queue_.done).size()) +
                       ", Failed: " + std::to_string(list_tasks(queue_.failed).size());
    // The queue as a field too: a watchdog reading this file shows it in its own MONITOR line.
    std::string queue = describe_counts(pending);
    const stagelog::Kv fields[] = {kv("queue", queue)};
    agent_.logger().event(stagelog::Kind::Log, stagelog::Level::Info, stagelog::Status::None, {},
                          line, fields, 0, true);
    agent_.heartbeat(kv("agents_alive", alive()));  // The brain is an agent: it beats too.
  }

  int report(double elapsed_s) {
    agent_.shutdown();
    recorder_.flush();
    const fs::path& dir = args_.dir;
    bool all_ok = !deadline_hit_;
    std::printf("\ngpu_agents: %d agents, %d tasks, %.1fs\n", args_.agents, args_.tasks, elapsed_s);
    std::printf("  %-7s %-8s %-30s %5s %7s\n", "agent", "pid", "exit", "done", "failed");
    for (const auto& child : children_) {
      Tally t = tally(queue_, child.name);
      bool ok = child.status >= 0 && WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0;
      all_ok = all_ok && ok;
      std::printf("  %-7s %-8d %-30s %5d %7d\n", child.name.c_str(), static_cast<int>(child.pid),
                  describe_exit(child.status).c_str(), t.done, t.failed);
      for (const auto& task : t.holding) {
        std::printf("          stuck in processing: %s (%s)\n", task.id.c_str(),
                    task.task_class.c_str());
      }
      if (!ok) {
        fs::path log = stagelog::worker_log_path(dir / "logs", child.index);
        std::printf("          last line of %s:\n          %s\n", log.c_str(),
                    last_line(log).c_str());
      }
    }
    auto pending = count_by_class(list_tasks(queue_.pending));
    std::printf("  queue: pending %s, processing %zu, done %zu, failed %zu\n",
                describe_counts(pending).c_str(), list_tasks(queue_.processing).size(),
                list_tasks(queue_.done).size(), list_tasks(queue_.failed).size());
    std::printf("files:\n  %s  (brain)\n", (dir / "brain.jsonl").c_str());
    std::printf("  %s  (INFO text, one per agent)\n", (dir / "logs/worker_<i>.log").c_str());
    std::printf("  %s  (DEBUG JSON lines: claim loop, heartbeats)\n",
                (dir / "logs/worker_<i>.jsonl").c_str());
    std::printf("  %s  (latest heartbeat)\n", (dir / "heartbeats/gpu-<i>.heartbeat.json").c_str());
    std::fflush(stdout);
    return all_ok ? 0 : 1;
  }

  const Args& args_;
  Queue queue_;
  Timing timing_;
  std::vector<Child>& children_;
  stagelog::Recorder recorder_{brain_options(args_)};
  stagelog::Agent agent_{recorder_, "brain", "brain"};
  std::string load_id_;
  bool fulfilled_ = false;
  bool deadline_hit_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::vector<std::shared_ptr<stagelog::Sink>> brain_sinks;
  try {
    args = parse_args(argc, argv);
    if (args.help) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    create_queue(args);
    // The brain's sinks now, so a bad --dir fails before any agent starts; its recorder only
    // after fork(), so the agents start with nothing of the parent's.
    brain_sinks.push_back(std::make_shared<stagelog::ConsoleSink>());
    brain_sinks.push_back(std::make_shared<stagelog::JsonlSink>(args.dir / "brain.jsonl"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_agents: %s\n", e.what());
    return 2;
  }

  // Agents wait on this pipe until every one of them exists, then race for the first tasks.
  int start[2];
  if (::pipe(start) != 0) {
    std::fprintf(stderr, "gpu_agents: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  std::vector<Child> children;
  std::fflush(nullptr);
  for (int i = 0; i < args.agents; ++i) {
    AgentConfig config{.index = i,
                       .name = agent_name(i),
                       .preferred = preferences(i, args.agents),
                       .dir = args.dir,
                       .timing = {args.scale},
                       .crash = args.crash_agent == i,
                       .stuck = args.stuck_agent == i,
                       .no_model = args.no_model,
                       .start_fd = start[0]};
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(start[1]);
      int code = run_agent(config);
      std::fflush(nullptr);
      ::_exit(code);
    }
    if (pid < 0) {
      std::fprintf(stderr, "gpu_agents: fork: %s\n", std::strerror(errno));
      for (const auto& child : children) ::kill(child.pid, SIGKILL);
      for (const auto& child : children) ::waitpid(child.pid, nullptr, 0);
      return 1;
    }
    children.push_back({i, config.name, pid});
  }
  ::close(start[0]);
  ::close(start[1]);  // Go.

  try {
    Brain brain(args, children, std::move(brain_sinks));
    return brain.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_agents: %s\n", e.what());
    for (const auto& child : children) ::kill(child.pid, SIGKILL);
    for (const auto& child : children) ::waitpid(child.pid, nullptr, 0);
    return 1;
  }
}
