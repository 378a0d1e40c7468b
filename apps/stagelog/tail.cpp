// stagelog tail PATH...: follows JSONL (and seed-format text) logs of any number of processes,
// and with --server URL the event stream of a `stagelog serve`, runs the watchdog over them and
// shows every worker: a live table on a terminal, state changes and warnings as lines
// otherwise. --replay runs a finished recording through the watchdog with the events' own
// clock instead.

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/time.hpp"
#include "commands.hpp"
#include "duration.hpp"
#include "stagelog/error.hpp"
#include "stagelog/watchdog.hpp"
#include "tail_sources.hpp"
#include "tail_view.hpp"

namespace stagelog::cli {

namespace {

constexpr int kPollMs = 100;
constexpr std::int64_t kRedrawNs = 250'000'000;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_resized{false};

struct TailOptions {
  std::vector<std::string> paths;
  std::string server;      // --server URL
  std::string token_file;  // --token-file FILE
  std::string ca_file;     // --ca-file FILE
  bool replay = false;
  bool plain = false;
  bool verbose = false;
  bool exit_when_done = false;
  bool no_pid_check = false;
  std::string wording = "seed";  // --wording seed|stagelog
  std::string stage_threshold = "300s";
  std::string task_threshold = "300s";
  std::string request_threshold = "60s";
  std::string heartbeat_timeout = "60s";
  std::string summary_interval = "60s";
  std::vector<std::string> stage_overrides;  // NAME=DURATION
  std::vector<std::string> task_overrides;
  std::vector<std::string> request_overrides;
};

std::chrono::nanoseconds duration_of(const std::string& text) {
  auto d = parse_duration(text);
  if (!d) throw Error(check_duration(text));
  return *d;
}

void add_overrides(WatchdogOptions::Overrides& out, const std::vector<std::string>& items,
                   std::string_view option) {
  for (const auto& item : items) {
    auto eq = item.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      throw Error(std::string(option) + " expects NAME=DURATION, got '" + item + "'");
    }
    out[item.substr(0, eq)] = duration_of(item.substr(eq + 1));
  }
}

WatchdogOptions watchdog_options(const TailOptions& o) {
  WatchdogOptions w;
  w.progress_interval = std::chrono::nanoseconds(0);  // The table shows time in stage.
  w.stage_threshold = duration_of(o.stage_threshold);
  w.task_threshold = duration_of(o.task_threshold);
  w.request_threshold = duration_of(o.request_threshold);
  w.heartbeat_timeout = duration_of(o.heartbeat_timeout);
  w.summary_interval = duration_of(o.summary_interval);
  add_overrides(w.stage_thresholds, o.stage_overrides, "--stage");
  add_overrides(w.task_thresholds, o.task_overrides, "--task");
  add_overrides(w.request_thresholds, o.request_overrides, "--request");
  w.check_processes = !o.no_pid_check && !o.replay;
  if (o.wording != "seed" && o.wording != "stagelog") {
    throw Error("--wording expects seed or stagelog, got '" + o.wording + "'");
  }
  w.seed_wording = o.wording == "seed";
  return w;
}

bool all_finished(const Watchdog& watchdog, std::int64_t now) {
  auto workers = watchdog.workers(now);
  return !workers.empty() && std::all_of(workers.begin(), workers.end(), [](const WorkerView& w) {
    return w.state == WorkerState::Done || w.state == WorkerState::Crashed;
  });
}

// Every event goes to the watchdog; a worker's own warnings are shown as they come.
void observe(Watchdog& watchdog, TailView& view, const OwnedEvent& owned) {
  Event e = owned.view();
  if (e.component != "watchdog" && e.level >= Level::Warning) view.report(e);
  watchdog.observe(e);
}

int replay(const TailOptions& options) {
  TailView view(false, options.verbose);
  Watchdog watchdog(watchdog_options(options), [&](const Event& e) { view.report(e); });
  FileSource files(options.paths);
  auto events = files.poll(0);
  if (files.skipped() > 0) {
    std::fprintf(stderr, "stagelog tail: %zu unreadable line%s, the last: %s\n", files.skipped(),
                 files.skipped() == 1 ? "" : "s", files.take_error().c_str());
  }
  std::int64_t now = 0;
  for (const auto& event : events) {
    // The rules fire exactly when they would have live.
    while (watchdog.next_deadline() <= event.ts_ns) {
      now = watchdog.next_deadline();
      watchdog.tick(now);
      view.transitions(watchdog, now);
    }
    now = std::max(now, event.ts_ns);
    observe(watchdog, view, event);
    watchdog.tick(now);
    view.transitions(watchdog, now);
  }
  if (!events.empty() && watchdog.options().summary_interval.count() > 0) watchdog.monitor(now);
  std::fflush(stdout);
  return view.warnings() == 0 ? 0 : 1;
}

void on_signal(int sig) {
  if (sig == SIGWINCH) {
    g_resized.store(true);
  } else {
    g_stop.store(true);
  }
}

int follow(const TailOptions& options) {
  bool terminal = !options.plain && ::isatty(STDOUT_FILENO) && ::isatty(STDIN_FILENO);
  TailView view(terminal, options.verbose);
  Watchdog watchdog(watchdog_options(options), [&](const Event& e) { view.report(e); });
  FileSource files(options.paths);
  std::optional<ServerSource> server;
  if (!options.server.empty())
    server.emplace(options.server, server_token(options.token_file), options.ca_file);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) ::sigaction(sig, &sa, nullptr);
  std::optional<Terminal> screen;
  if (terminal) screen.emplace();
  TableKeys keys;
  std::int64_t last_draw = 0;
  while (!g_stop.load()) {
    std::int64_t now = detail::realtime_ns();
    for (const auto& e : files.poll(now)) observe(watchdog, view, e);
    if (server) {  // Waits on the connection instead of the keys' poll below.
      for (const auto& e : server->poll(std::chrono::milliseconds(kPollMs))) {
        observe(watchdog, view, e);
      }
    }
    if (!terminal) {  // The table counts unreadable lines instead.
      std::string error = files.take_error();
      if (!error.empty()) view.note(error);
    }
    if (server) {
      for (const auto& note : server->take_notes()) view.note(note);
    }
    now = detail::realtime_ns();
    watchdog.tick(now);
    view.transitions(watchdog, now);
    if (options.exit_when_done && all_finished(watchdog, now)) break;
    if (terminal && (now - last_draw >= kRedrawNs || g_resized.exchange(false))) {
      SourceStatus sources{files.files(), files.skipped(), server ? server->url() : "",
                           server && !server->connected()};
      view.draw(watchdog, now, sources, keys);
      last_draw = now;
    }
    pollfd stdin_fd{STDIN_FILENO, POLLIN, 0};
    if (::poll(&stdin_fd, terminal ? 1 : 0, server ? 0 : kPollMs) > 0 && terminal) {
      keys.read();
      if (keys.quit()) g_stop.store(true);
      last_draw = 0;
    }
  }
  std::int64_t end = detail::realtime_ns();
  if (screen) {
    screen.reset();
    view.final_report(watchdog, end);
  }
  std::fflush(stdout);
  return view.warnings() == 0 ? 0 : 1;
}

}  // namespace

Command add_tail(CLI::App& app) {
  auto o = std::make_shared<TailOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tail",
      "Follow the logs of every worker and flag the stuck, the silent and the crashed.\n"
      "Reads JSONL files (as JsonlSink writes them) and seed-format text lines; a folder means\n"
      "every *.jsonl file in it and below, including files that appear later. Rotated and\n"
      "truncated files are followed. With --server URL, also the events a `stagelog serve`\n"
      "stores, from its live stream. On a terminal: a live table, one row per worker (q quits,\n"
      "/ filters). Otherwise: state changes and warnings, one per line.");
  cmd->add_option("paths", o->paths, "Files and folders to follow");
  cmd->add_option("--server", o->server,
                  "Also follow what a `stagelog serve` at this http:// or https:// URL stores, "
                  "through its event stream (GET /api/v1/stream; a read token); reconnects and "
                  "resumes when the connection drops");
  cmd->add_option("--token-file", o->token_file,
                  "File whose first line is the token for --server (default: $STAGELOG_TOKEN)");
  cmd->add_option("--ca-file", o->ca_file,
                  "PEM file of the CA certificates that an https:// --server's certificate must "
                  "chain to (default: the system's CAs)");
  cmd->add_flag("--replay", o->replay,
                "Run the recorded events through the watchdog on their own clock, print what it "
                "would have said, and exit (no process checks)");
  cmd->add_flag("--plain", o->plain, "Lines instead of the table, even on a terminal");
  cmd->add_flag("-v,--verbose", o->verbose, "Also print running <-> idle changes");
  cmd->add_flag("--exit-when-done", o->exit_when_done,
                "Exit once every worker has shut down or crashed");
  cmd->add_flag("--no-pid-check", o->no_pid_check,
                "Do not ask the kernel whether workers' processes still run");
  cmd->add_option("--wording", o->wording,
                  "seed: the brain's lines as seed 001 words them (\"Stuck tasks detected: "
                  "[...]\", \"MONITOR: GPUs: 2/5, ...\"); stagelog: lines that name pid, host "
                  "and last message")
      ->capture_default_str();
  cmd->add_option("--stuck-stage", o->stage_threshold, "A stage open this long is stuck")
      ->check(check_duration)
      ->capture_default_str();
  cmd->add_option("--stuck-task", o->task_threshold, "A task open this long is stuck")
      ->check(check_duration)
      ->capture_default_str();
  cmd->add_option("--stale-request", o->request_threshold,
                  "A request open this long while workers wait is stale")
      ->check(check_duration)
      ->capture_default_str();
  cmd->add_option("--heartbeat-timeout", o->heartbeat_timeout,
                  "A worker that heartbeats and then is quiet this long is silent")
      ->check(check_duration)
      ->capture_default_str();
  cmd->add_option("--summary-interval", o->summary_interval,
                  "How often to print the MONITOR line (0: never)")
      ->check(check_duration)
      ->capture_default_str();
  cmd->add_option("--stage", o->stage_overrides, "Per-stage threshold, NAME=DURATION (repeat)");
  cmd->add_option("--task", o->task_overrides, "Per-task-class threshold, CLASS=DURATION");
  cmd->add_option("--request", o->request_overrides, "Per-request threshold, WHAT=DURATION");
  cmd->footer(
      "Durations: 500ms, 30s, 1.5m, 2h, 7d.\n"
      "Exit status: 0, or 1 if any warning was raised; 2 on bad usage.\n"
      "Examples:\n"
      "  stagelog tail run/logs                          # live table of every worker\n"
      "  stagelog tail --plain --stuck-task 5m logs/ | tee watch.log\n"
      "  stagelog tail --replay --stage AGENT=10m run.jsonl  # what would have been flagged\n"
      "  STAGELOG_TOKEN=slg_... stagelog tail --server http://127.0.0.1:8080\n"
      "  stagelog tail --server https://logs.example.com --ca-file ca.pem --token-file tok\n");
  return [o]() -> int {
    watchdog_options(*o);  // Bad values fail before anything is shown.
    if (o->paths.empty() && o->server.empty()) {
      throw Error("nothing to follow: give files or folders, or --server URL");
    }
    if (!o->ca_file.empty() && o->server.empty()) throw Error("--ca-file needs --server URL");
    if (o->replay && !o->server.empty()) {
      throw Error("--replay reads recorded files; it cannot follow --server");
    }
    return o->replay ? replay(*o) : follow(*o);
  };
}

}  // namespace stagelog::cli
