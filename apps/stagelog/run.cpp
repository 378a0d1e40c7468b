// stagelog run --worker W --stage S -- CMD [ARGS...]: runs a command as one stage of worker W,
// so that a program in any language reports like a stagelog worker. The command's stdout and
// stderr lines become log events (components "stdout" and "stderr"), the stage ends Complete
// or Failed with the exit code, and that exit code is ours.
//
// One thread does everything here: it spawns the child, reads both of its pipes in a poll()
// loop, heartbeats every --interval and forwards signals. Signal handlers only write the signal
// number to a pipe that the loop polls too. The recorder's backend thread blocks every signal,
// so the handlers run on this thread.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "base/errno_text.hpp"
#include "commands.hpp"
#include "duration.hpp"
#include "format/line_reader.hpp"
#include "stagelog/agent.hpp"
#include "stagelog/error.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sinks/console_sink.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "stagelog/stage.hpp"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX names it.

namespace stagelog::cli {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

// Longer lines (or output that never ends one) are recorded in pieces of at most this size.
constexpr std::size_t kMaxLine = 64 * 1024;
constexpr nanoseconds kMinInterval = std::chrono::milliseconds(10);
constexpr nanoseconds kMaxInterval = std::chrono::hours(24);
// The watchdog calls a worker silent after this many intervals without a heartbeat.
constexpr int kHeartbeatTimeoutIntervals = 3;
// After the child has exited, read at most this much more from each pipe: what it wrote
// before exiting is all there, but a background grandchild may hold the pipe and keep writing.
constexpr std::size_t kDrainLimit = 16 * 1024 * 1024;
// Exit statuses of a shell that cannot run a command.
constexpr int kNotFound = 127;
constexpr int kNotExecutable = 126;

// Forwarded to the child. INT, TERM and HUP are the ones that end jobs; QUIT, USR1 and USR2
// would otherwise kill us and leave the child's output and exit status unrecorded.
constexpr std::array<int, 6> kForwarded = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
// A byte on the signal pipe: the signal number, with this bit when the kernel sent it (a ^C on
// the terminal), in which case the child, in the same foreground process group, got it too.
constexpr unsigned char kFromKernel = 0x80;

struct RunOptions {
  std::string worker;
  std::string stage;
  std::string run;
  std::string component = "run";
  std::string log;
  std::string jsonl;
  std::string interval = "30s";
  std::string stuck = "300s";
  bool quiet = false;
  std::vector<std::string> command;
};

// The --interval check: a duration (duration.hpp) from 10ms to 24h. "" when it is one.
std::string check_interval(const std::string& text) {
  std::string error = check_duration(text);
  if (!error.empty()) return error;
  nanoseconds interval = *parse_duration(text);
  if (interval < kMinInterval) return "'" + text + "' is too short (at least 10ms)";
  if (interval > kMaxInterval) return "'" + text + "' is too long (at most 24h)";
  return {};
}

std::string signal_name(int sig) {
  if (const char* abbrev = sigabbrev_np(sig)) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(sig);
}

// The command as a shell would take it back, for the record: sh -c 'exit 3'.
std::string shell_join(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& arg : args) {
    if (!out.empty()) out += ' ';
    bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
      return std::string_view("%+,-./:=@_").find(c) != std::string_view::npos ||
             (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    });
    if (plain) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'') {
        out += "'\\''";
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A pipe whose ends are close-on-exec and numbered 3 or above, so that dup2() onto the child's
// 1 and 2 never meets an end that already has that number (when we were started with stdout
// closed).
std::pair<Fd, Fd> make_pipe(bool nonblocking_read, bool nonblocking_write) {
  auto fail = [] { throw Error(std::string("pipe: ") + detail::errno_text(errno)); };
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) fail();
  Fd read_end(ends[0]);
  Fd write_end(ends[1]);
  for (Fd* end : {&read_end, &write_end}) {
    if (end->get() >= 3) continue;
    int fd = ::fcntl(end->get(), F_DUPFD_CLOEXEC, 3);
    if (fd < 0) fail();
    *end = Fd(fd);
  }
  if (nonblocking_read) ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
  if (nonblocking_write) ::fcntl(write_end.get(), F_SETFL, O_NONBLOCK);
  return {std::move(read_end), std::move(write_end)};
}

int g_signal_fd = -1;  // The signal pipe's write end, for the handler.

void on_signal(int sig, siginfo_t* info, void* /*context*/) {
  int saved_errno = errno;
  auto byte = static_cast<unsigned char>(sig);
#ifdef SI_KERNEL
  if (info != nullptr && info->si_code == SI_KERNEL) byte |= kFromKernel;
#endif
  (void)!::write(g_signal_fd, &byte, 1);
  errno = saved_errno;
}

// Installs the handlers for SIGCHLD and the forwarded signals, and ignores SIGPIPE (a closed
// stderr must not kill us before we report the child's status). Signals that were ignored when
// we started (nohup, a background job) stay ignored, for us and for the child. The destructor
// puts everything back before closing the pipe.
class SignalRelay {
 public:
  SignalRelay() {
    auto [read_end, write_end] = make_pipe(true, true);
    read_ = std::move(read_end);
    write_ = std::move(write_end);
    g_signal_fd = write_.get();
    struct sigaction action {};
    action.sa_sigaction = on_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    install(SIGCHLD, action);
    for (int sig : kForwarded) {
      struct sigaction current {};
      sigaction(sig, nullptr, &current);
      if (current.sa_handler != SIG_IGN) install(sig, action);
    }
    struct sigaction current {};
    sigaction(SIGPIPE, nullptr, &current);
    if (current.sa_handler == SIG_DFL) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      sigemptyset(&ignore.sa_mask);
      install(SIGPIPE, ignore);
      sigaddset(&child_defaults_, SIGPIPE);
    }
  }
  ~SignalRelay() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      sigaction(it->first, &it->second, nullptr);
    }
    g_signal_fd = -1;
  }
  SignalRelay(const SignalRelay&) = delete;
  SignalRelay& operator=(const SignalRelay&) = delete;

  int fd() const noexcept { return read_.get(); }
  // Signals the child must get back at their default action (we changed them from it).
  const sigset_t& child_defaults() const noexcept { return child_defaults_; }

 private:
  void install(int sig, const struct sigaction& action) {
    struct sigaction previous {};
    sigaction(sig, &action, &previous);
    saved_.emplace_back(sig, previous);
  }

  Fd read_;
  Fd write_;
  std::vector<std::pair<int, struct sigaction>> saved_;
  sigset_t child_defaults_ = [] {
    sigset_t set;
    sigemptyset(&set);
    return set;
  }();
};

// Cuts one stream's bytes into lines and records each as an INFO event of its component. A
// line ends at '\n' ("\r\n" too); a line longer than kMaxLine is recorded in pieces, cut
// between UTF-8 characters; what is left when the stream ends is the last line.
class LineSplitter {
 public:
  // A line that holds a stage line (any format detail::LineReader reads) becomes that stage's
  // event, for the worker the line names, with the fields parent_worker and parent_stage: the
  // stage `stagelog run` itself records, which it nests in.
  LineSplitter(Logger log, const detail::LineReader& reader, std::string parent_worker,
               std::string parent_stage)
      : log_(log),
        reader_(reader),
        parent_worker_(std::move(parent_worker)),
        parent_stage_(std::move(parent_stage)) {}

  void feed(std::string_view data) {
    buffer_.append(data);
    std::string_view pending(buffer_);
    for (std::size_t nl; (nl = pending.find('\n')) != std::string_view::npos;) {
      emit_line(pending.substr(0, nl));
      pending.remove_prefix(nl + 1);
    }
    while (pending.size() > kMaxLine) pending.remove_prefix(emit_piece(pending));
    buffer_.erase(0, buffer_.size() - pending.size());
  }

  void finish() {
    if (!buffer_.empty()) emit_line(buffer_);
    buffer_.clear();
  }

  std::uint64_t lines() const noexcept { return lines_; }

 private:
  void emit_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (line.size() > kMaxLine) line.remove_prefix(emit_piece(line));
    record(line);
  }

  // Records the first at most kMaxLine bytes of text, cut before a UTF-8 character rather
  // than inside one, and returns how many it took.
  std::size_t emit_piece(std::string_view text) {
    auto continuation = [&](std::size_t i) {
      return (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80;
    };
    std::size_t cut = std::min(text.size(), kMaxLine);
    if (cut < text.size() && continuation(cut)) {
      std::size_t at = cut - 1;
      while (at > cut - 3 && continuation(at)) --at;
      if (!continuation(at)) cut = at;  // Else not UTF-8: cut where we are.
    }
    record(text.substr(0, cut));
    return cut;
  }

  void record(std::string_view line) {
    ++lines_;
    if (line.find("Stage: ") != std::string_view::npos && record_stage(line)) return;
    log_.info(line);
  }

  bool record_stage(std::string_view line) {
    auto e = reader_.read(line);
    if (!e || (e->kind != Kind::Stage && e->kind != Kind::Run)) return false;
    std::int64_t begin = 0;
    if (e->elapsed_ns) {
      // The line's time as begin ticks: now, less the seconds in the recorder's ticks (a
      // billion ticks measured in seconds gives the rate).
      std::int64_t now = log_.now_ticks();
      double gig_seconds = log_.seconds_since(now - 1'000'000'000);
      if (gig_seconds > 0) {
        begin = now - std::llround(static_cast<double>(*e->elapsed_ns) / 1e9 / gig_seconds * 1e9);
        if (begin == 0) begin = -1;
      }
    }
    std::vector<Kv> fields = {kv("parent_worker", parent_worker_),
                              kv("parent_stage", parent_stage_)};
    std::string status_text;
    if (const FieldValue* text = e->field("status_text");
        text != nullptr && std::holds_alternative<std::string_view>(*text)) {
      status_text = std::string(std::get<std::string_view>(*text));
      fields.push_back(kv("status_text", status_text));
    }
    log_.event(e->kind, e->level, e->status, e->stage, e->message, fields, begin, false, e->worker);
    return true;
  }

  Logger log_;
  const detail::LineReader& reader_;
  std::string parent_worker_;
  std::string parent_stage_;
  std::string buffer_;
  std::uint64_t lines_ = 0;
};

// How the child ended, as an exit status of ours and a Failed message ("" for success).
struct Outcome {
  int exit_code = 0;
  std::string failure;
};

Outcome outcome_of(int status) {
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    return {code, code == 0 ? "" : "exit code " + std::to_string(code)};
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    std::string message = "killed by " + signal_name(sig);
    if (WCOREDUMP(status)) message += " (core dumped)";
    return {128 + sig, message};
  }
  return {1, "ended with wait status " + std::to_string(status)};
}

// Spawns the command with stdout and stderr on pipes and stdin inherited. Returns the pid,
// or the errno of a command that could not be run.
struct Spawned {
  pid_t pid = -1;
  int error = 0;
};

Spawned spawn(const std::vector<std::string>& command, int out_fd, int err_fd,
              const sigset_t& defaults) {
  std::vector<char*> argv;
  argv.reserve(command.size() + 1);
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  Spawned result;
  result.error = posix_spawnp(&result.pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return result;
}

int run_command(const RunOptions& o) {
  if (o.worker.empty()) throw Error("run: --worker is empty");
  if (o.stage.empty()) throw Error("run: --stage is empty");
  if (o.component.empty()) throw Error("run: --component is empty");
  if (o.command.empty()) {
    std::fprintf(stderr,
                 "stagelog run: no command to run; give it after --, as in\n"
                 "  stagelog run --worker %s --stage %s -- make -j8\n"
                 "Run with --help for more information.\n",
                 o.worker.c_str(), o.stage.c_str());
    return 2;
  }
  if (std::string error = check_interval(o.interval); !error.empty()) {
    throw Error("run: --interval: " + error);
  }
  nanoseconds interval = *parse_duration(o.interval);

  // Sinks first: a file that cannot be opened stops us before anything runs.
  std::vector<std::shared_ptr<Sink>> sinks;
  if (!o.log.empty()) sinks.push_back(std::make_shared<TextSink>(o.log));
  if (!o.jsonl.empty()) sinks.push_back(std::make_shared<JsonlSink>(o.jsonl));
  if (!o.quiet) sinks.push_back(std::make_shared<ConsoleSink>(ConsoleOptions{.fd = 2}));

  SignalRelay signals;
  auto [out_read, out_write] = make_pipe(true, false);
  auto [err_read, err_write] = make_pipe(true, false);

  Options options;
  WatchdogOptions watchdog;
  watchdog.progress_interval = interval;
  watchdog.heartbeat_timeout = kHeartbeatTimeoutIntervals * interval;
  watchdog.summary_interval = nanoseconds(0);  // One worker: its Running lines say it all.
  watchdog.stage_threshold = *parse_duration(o.stuck);
  options.watchdog = watchdog;
  Recorder recorder(std::move(options));
  for (auto& sink : sinks) recorder.add_sink(std::move(sink));
  if (!o.run.empty()) recorder.set_run(o.run);

  Outcome outcome;
  {
    std::string command_line = shell_join(o.command);
    // This thread becomes worker W. A wrapped command is no seed 001 GPU agent: its lifecycle
    // lines keep stagelog's words ("initialized command=...", "shutting down - completed 0,
    // failed 0").
    Agent agent(recorder, o.worker, AgentOptions{.component = o.component, .seed_wording = false});
    const Logger& log = agent.logger();
    agent.initialized(kv("command", command_line));
    agent.starting();
    const detail::LineReader reader;
    LineSplitter out(recorder.component("stdout"), reader, o.worker, o.stage);
    LineSplitter err(recorder.component("stderr"), reader, o.worker, o.stage);
    StageScope stage(log, o.stage);

    Spawned child = spawn(o.command, out_write.get(), err_write.get(), signals.child_defaults());
    out_write.reset();
    err_write.reset();
    if (child.error != 0) {
      outcome.exit_code = child.error == ENOENT ? kNotFound : kNotExecutable;
      outcome.failure = "cannot run " + o.command[0] + ": " + detail::errno_text(child.error);
      stage.fail(outcome.failure, kv("exit_code", outcome.exit_code));
      agent.shutdown();
      recorder.flush();
      std::fprintf(stderr, "stagelog run: %s\n", outcome.failure.c_str());
      return outcome.exit_code;
    }

    std::optional<int> wait_status;
    auto reap = [&] {
      if (wait_status) return;
      int status = 0;
      pid_t r;
      do {
        r = ::waitpid(child.pid, &status, WNOHANG);
      } while (r < 0 && errno == EINTR);
      if (r == child.pid) wait_status = status;
    };
    auto beat = [&] {
      log.event(Kind::Heartbeat, Level::Debug, Status::Running, {}, "heartbeat",
                std::array{kv("status", "running"), kv("child_pid", child.pid),
                           kv("stdout_lines", out.lines()), kv("stderr_lines", err.lines())},
                0, false, o.worker);
    };
    auto on_signals = [&] {
      unsigned char bytes[64];
      for (ssize_t n; (n = ::read(signals.fd(), bytes, sizeof bytes)) > 0;) {
        for (ssize_t i = 0; i < n; ++i) {
          int sig = bytes[i] & ~kFromKernel;
          if (sig == SIGCHLD) {
            reap();
            continue;
          }
          std::string name = signal_name(sig);
          if ((bytes[i] & kFromKernel) != 0) {
            log.info("received " + name + " from the terminal, as the command did");
          } else if (!wait_status) {
            ::kill(child.pid, sig);
            log.info("received " + name + ", forwarded to the command (pid " +
                     std::to_string(child.pid) + ")");
          }
        }
      }
    };

    std::vector<char> chunk(kMaxLine);
    // Reads what one pipe has; returns false at its end (EOF or an error).
    auto read_some = [&](int fd, LineSplitter& lines) {
      ssize_t n;
      do {
        n = ::read(fd, chunk.data(), chunk.size());
      } while (n < 0 && errno == EINTR);
      if (n > 0) {
        lines.feed(std::string_view(chunk.data(), static_cast<std::size_t>(n)));
        return true;
      }
      return n < 0 && errno == EAGAIN;
    };

    std::array<pollfd, 3> fds = {pollfd{signals.fd(), POLLIN, 0}, pollfd{out_read.get(), POLLIN, 0},
                                 pollfd{err_read.get(), POLLIN, 0}};
    std::array<LineSplitter*, 3> splitters = {nullptr, &out, &err};
    Clock::time_point next_beat = Clock::now() + interval;
    while (!wait_status) {
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_beat - Clock::now());
      int timeout = static_cast<int>(std::max<std::int64_t>(0, wait.count()));
      int ready = ::poll(fds.data(), fds.size(), timeout);
      if (ready < 0 && errno != EINTR)
        throw Error(std::string("poll: ") + detail::errno_text(errno));
      if (ready > 0) {
        if (fds[0].revents != 0) on_signals();
        for (std::size_t i = 1; i < fds.size(); ++i) {
          if (fds[i].fd < 0 || fds[i].revents == 0) continue;
          if (!read_some(fds[i].fd, *splitters[i])) {
            splitters[i]->finish();
            fds[i].fd = -1;  // poll() skips it from now on.
          }
        }
      }
      if (Clock::now() >= next_beat) {
        beat();
        reap();  // In case a SIGCHLD was lost to a full signal pipe.
        next_beat = std::max(next_beat + interval, Clock::now());
      }
    }
    // The child is gone; what it wrote is in the pipes. Take that, but do not wait for
    // grandchildren that may hold the pipes open.
    for (std::size_t i = 1; i < fds.size(); ++i) {
      std::size_t taken = 0;
      while (fds[i].fd >= 0 && taken < kDrainLimit) {
        ssize_t n;
        do {
          n = ::read(fds[i].fd, chunk.data(), chunk.size());
        } while (n < 0 && errno == EINTR);
        if (n <= 0) break;
        splitters[i]->feed(std::string_view(chunk.data(), static_cast<std::size_t>(n)));
        taken += static_cast<std::size_t>(n);
      }
      splitters[i]->finish();
    }

    outcome = outcome_of(*wait_status);
    if (outcome.failure.empty()) {
      stage.complete();
    } else {
      stage.fail(outcome.failure, kv("exit_code", outcome.exit_code));
    }
    agent.shutdown();
  }
  return outcome.exit_code;  // ~Recorder writes and flushes everything.
}

}  // namespace

Command add_run(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Run a command as one stage of a worker, so that a program in any language reports like a\n"
      "stagelog worker: 'Stage: S - Starting', 'Running (30.0s)' lines and heartbeats while it\n"
      "runs, then 'Complete (1.2s)' or 'Failed (1.2s): exit code 3'. Each line the command\n"
      "writes to stdout or stderr becomes an event of component stdout or stderr (shown on our\n"
      "stderr unless --quiet); a stage line among them ('[T0_00] Stage: AGENT - Starting', in any\n"
      "format stagelog parse reads) becomes a stage event of the worker it names, with fields\n"
      "parent_worker and parent_stage. The exit status is the command's: 128+N when signal N\n"
      "killed it, 127 when it cannot be found, 126 when it cannot be run. SIGINT, SIGTERM,\n"
      "SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to the command.");
  cmd->add_option("--worker", options->worker, "Worker id of the events (gpu-1, T0_00)")
      ->type_name("W")
      ->required();
  cmd->add_option("--stage", options->stage, "Stage name (TRAIN, orchestrator_execution)")
      ->type_name("S")
      ->required();
  cmd->add_option("--run", options->run, "Run id of the events")->type_name("ID");
  cmd->add_option("--component", options->component, "Component of the stage and lifecycle events")
      ->type_name("NAME")
      ->capture_default_str();
  cmd->add_option("--log", options->log, "Append text lines to FILE")->type_name("FILE");
  cmd->add_option("--jsonl", options->jsonl, "Append one JSON object per event to FILE")
      ->type_name("FILE");
  cmd->add_option("--interval", options->interval,
                  "How often to log 'Running' and heartbeat: 500ms, 2s, 1.5m, 1h")
      ->type_name("DURATION")
      ->capture_default_str()
      ->check(CLI::Validator([](const std::string& text) { return check_interval(text); }, ""));
  cmd->add_option("--stuck", options->stuck,
                  "Warn that the stage is stuck once it has run this long (0: never)")
      ->type_name("DURATION")
      ->capture_default_str()
      ->check(CLI::Validator([](const std::string& text) { return check_duration(text); }, ""));
  cmd->add_flag("-q,--quiet", options->quiet,
                "Do not show events on stderr (heartbeats are never shown there)");
  cmd->add_option("command", options->command, "The command and its arguments: all that follows --")
      ->type_name("CMD");
  cmd->positionals_at_end();  // As with env(1): from the command's name on, nothing is ours.
  cmd->footer(
      "Example:\n"
      "  $ stagelog run --worker w1 --stage TRAIN -- sh -c 'echo loss=0.31; exit 3'\n"
      "  2026-11-23T18:38:12.197Z [w1] INFO run: initialized command=\"sh -c 'echo loss=0.31; "
      "exit 3'\"\n"
      "  2026-11-23T18:38:12.197Z [w1] INFO run: starting\n"
      "  2026-11-23T18:38:12.197Z [w1] Stage: TRAIN - Starting\n"
      "  2026-11-23T18:38:12.220Z [w1] INFO stdout: loss=0.31\n"
      "  2026-11-23T18:38:12.220Z [w1] Stage: TRAIN - Failed (0.023s): exit code 3 exit_code=3\n"
      "  2026-11-23T18:38:12.220Z [w1] INFO run: shutting down - completed 0, failed 0\n"
      "  $ echo $?\n"
      "  3\n");
  return [options]() -> int { return run_command(*options); };
}

}  // namespace stagelog::cli
