#include "stagelog/watchdog.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <limits>
#include <utility>

#include "base/duration.hpp"

namespace stagelog {

namespace {

constexpr std::string_view kComponent = "watchdog";
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kSecond = 1'000'000'000;
// Half a second: with tail's 100 ms poll, a crash is still reported within a second.
constexpr std::int64_t kPidCheckPeriod = kSecond / 2;

// Something that opens and closes: a stage, a task or a request.
struct OpenItem {
  std::string name;   // Stage name, task id, request id.
  std::string cls;    // Task class, request's "what".
  std::string run;
  std::int64_t since_ns = 0;
  std::int64_t threshold_ns = 0;  // 0: never stuck.
  std::int64_t warn_offset_ns = 0;  // Time open at which the next warning is due.
  int warnings = 0;
  std::int64_t next_progress_ns = kNever;  // Stages: the next "Running" line.
  std::vector<std::string> waiting;        // Requests: workers that wait for it.
  std::string owner;                       // Requests: who asked.

  std::int64_t next_warning_ns() const noexcept {
    return threshold_ns > 0 ? since_ns + warn_offset_ns : kNever;
  }
};

struct Worker {
  std::string name;
  std::string host;
  std::string last_message;
  std::int64_t pid = 0;
  std::int64_t first_ns = 0;
  std::int64_t last_ns = 0;
  std::int64_t last_beat_ns = 0;
  bool beats = false;  // Sent a heartbeat, or is an agent: must keep beating.
  bool done = false;
  bool crashed = false;
  std::vector<OpenItem> stages;  // In the order they opened.
  std::vector<OpenItem> tasks;
  int silent_warnings = 0;
  std::int64_t silent_offset_ns = 0;
  std::int64_t next_pid_check_ns = 0;
  std::uint64_t tasks_done = 0;
  std::uint64_t tasks_failed = 0;
  std::uint64_t stages_done = 0;
  std::uint64_t stages_failed = 0;

  bool alive() const noexcept { return !done && !crashed; }
  std::int64_t beat_base_ns() const noexcept { return last_beat_ns != 0 ? last_beat_ns : first_ns; }
};

double seconds_of(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

std::int64_t threshold_for(const WatchdogOptions::Overrides& overrides,
                           WatchdogOptions::Duration fallback, std::string_view name) {
  auto it = overrides.find(name);
  return (it != overrides.end() ? it->second : fallback).count();
}

// The offset of the warning after one at `offset`: doubling, but at most max_repeat later.
std::int64_t next_offset(std::int64_t offset, std::int64_t max_repeat) {
  std::int64_t step = max_repeat > 0 ? std::min(offset, max_repeat) : offset;
  return offset > kNever - step ? kNever : offset + step;
}

// The first offset on the schedule threshold, x2, x4 ... (then every max_repeat) after
// `open`: a late tick gives one warning, and the next stays on the schedule.
std::int64_t offset_after(std::int64_t offset, std::int64_t open, std::int64_t max_repeat) {
  if (offset <= 0) return kNever;
  while (offset <= open && offset != kNever) {
    if (max_repeat > 0 && offset >= max_repeat) {  // Linear from here on.
      std::int64_t steps = (open - offset) / max_repeat + 1;
      return steps > (kNever - offset) / max_repeat ? kNever : offset + steps * max_repeat;
    }
    offset = next_offset(offset, max_repeat);
  }
  return offset;
}

std::string_view string_field(const Event& e, std::string_view key) {
  for (const auto& f : e.fields) {
    if (f.key != key) continue;
    if (const auto* s = std::get_if<std::string_view>(&f.value)) return *s;
  }
  return {};
}

std::vector<std::string> split_list(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

// kill(pid, 0) says a zombie lives; /proc says it is dead.
bool process_alive(std::int64_t pid) {
  if (pid <= 0 || pid > std::numeric_limits<pid_t>::max()) return true;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;  // No /proc: trust kill().
  auto paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

// "(pid 812, host h1)", or less when unknown.
std::string where(const Worker& w) {
  if (w.pid == 0 && w.host.empty()) return {};
  std::string out = " (";
  if (w.pid != 0) out += "pid " + std::to_string(w.pid);
  if (!w.host.empty()) out += (w.pid != 0 ? ", host " : "host ") + w.host;
  return out + ")";
}

}  // namespace

std::string_view worker_state_name(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::Running: return "running";
    case WorkerState::Idle: return "idle";
    case WorkerState::Stuck: return "stuck";
    case WorkerState::Silent: return "silent";
    case WorkerState::Crashed: return "crashed";
    case WorkerState::Done: return "done";
  }
  return "unknown";
}

struct Watchdog::State {
  WatchdogOptions options;
  Report report;
  std::map<std::string, Worker, std::less<>> workers;
  std::vector<OpenItem> requests;
  std::string queue;
  std::string host = host_name();
  std::int64_t pid = ::getpid();
  Worker* last_worker = nullptr;  // The last event's worker: events come in runs per thread.
  bool quiet_summary = false;  // The last MONITOR line had no live worker.
  bool tracked = false;  // Some worker has stages, tasks, heartbeats or a lifecycle.
  std::int64_t next_summary_ns = kNever;
  mutable std::int64_t deadline_ns = kNever;
  mutable bool dirty = true;

  // --- Reporting ---

  struct Finding {
    Kind kind = Kind::Log;
    Level level = Level::Warning;
    Status status = Status::None;
    std::string_view rule{};
    const Worker* worker = nullptr;
    std::string_view run{};
    std::string_view stage{};
    std::string message{};
    std::optional<std::int64_t> elapsed_ns{};
    std::vector<Field> extra{};
  };

  void emit(std::int64_t now, Finding f) {
    if (!report) return;
    std::vector<Field> fields;
    fields.reserve(f.extra.size() + 4);
    fields.push_back({"rule", FieldValue{f.rule}});
    if (f.worker != nullptr) {
      fields.push_back({"worker", FieldValue{std::string_view(f.worker->name)}});
      if (f.worker->pid != 0) fields.push_back({"pid", FieldValue{f.worker->pid}});
      if (!f.worker->host.empty()) {
        fields.push_back({"host", FieldValue{std::string_view(f.worker->host)}});
      }
    }
    fields.insert(fields.end(), f.extra.begin(), f.extra.end());
    Event e;
    e.ts_ns = now;
    e.kind = f.kind;
    e.level = f.level;
    e.status = f.status;
    e.run = f.run;
    e.worker = f.worker != nullptr ? std::string_view(f.worker->name) : kComponent;
    e.component = kComponent;
    e.stage = f.stage;
    e.message = f.message;
    e.elapsed_ns = f.elapsed_ns;
    e.fields = fields;
    e.pid = f.worker != nullptr ? f.worker->pid : pid;
    e.host = f.worker != nullptr ? std::string_view(f.worker->host) : std::string_view(host);
    e.fields_in_message = true;
    report(e);
  }

  std::string last_words(const Worker& w) const {
    return w.last_message.empty() ? std::string() : "; last message: " + w.last_message;
  }

  // "stage transcribe 3.2s, task d5de16d7 (transcribe) 3.3s", or "nothing open".
  std::string open_items(const Worker& w, std::int64_t now) const {
    std::string out;
    for (const auto& s : w.stages) {
      out += (out.empty() ? "" : ", ") + std::string("stage ") + s.name + " " +
             detail::rounded_seconds(now - s.since_ns);
    }
    for (const auto& t : w.tasks) {
      out += (out.empty() ? "" : ", ") + std::string("task ") + t.name +
             (t.cls.empty() ? "" : " (" + t.cls + ")") + " " + detail::rounded_seconds(now - t.since_ns);
    }
    return out.empty() ? "nothing open" : out;
  }

  // --- Folding ---

  Worker& worker(const Event& e) {
    if (last_worker != nullptr && last_worker->name == e.worker) return *last_worker;
    auto it = workers.find(e.worker);
    if (it == workers.end()) {
      it = workers.emplace(std::string(e.worker), Worker{}).first;
      it->second.name = std::string(e.worker);
      it->second.first_ns = e.ts_ns;
      it->second.next_pid_check_ns = e.ts_ns;  // Not 0: a deadline in 1970 never catches up.
    }
    last_worker = &it->second;
    return it->second;
  }

  OpenItem open(std::string_view name, std::string_view cls, const Event& e,
                std::int64_t threshold) const {
    OpenItem item;
    item.name = std::string(name);
    item.cls = std::string(cls);
    item.run = std::string(e.run);
    item.since_ns = e.ts_ns;
    item.threshold_ns = threshold;
    item.warn_offset_ns = threshold;
    return item;
  }

  // Removes the last item called `name` (or the last one when name is empty) and returns it.
  static std::optional<OpenItem> close(std::vector<OpenItem>& items, std::string_view name) {
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
      if (!name.empty() && it->name != name) continue;
      OpenItem item = std::move(*it);
      items.erase(std::next(it).base());
      return item;
    }
    return std::nullopt;
  }

  void recovered(const Event& e, const Worker* w, const OpenItem& item, std::string_view what,
                 std::string_view rule) {
    if (item.warnings == 0) return;
    std::string message = "recovered: " + std::string(what) + " " + item.name;
    if (!item.cls.empty()) message += " (" + item.cls + ")";
    if (w != nullptr) message += " on " + w->name;
    message += " ended " + std::string(status_name(e.status)) + " after " +
               detail::rounded_seconds(e.ts_ns - item.since_ns);
    Finding f{.level = Level::Info, .rule = "recovered", .worker = w, .run = item.run,
              .stage = what == "Stage" ? std::string_view(item.name) : std::string_view(),
              .message = std::move(message)};
    f.extra.push_back({"recovered", FieldValue{rule}});
    f.extra.push_back({"open_s", FieldValue{seconds_of(e.ts_ns - item.since_ns)}});
    emit(e.ts_ns, std::move(f));
  }

  void new_incarnation(Worker& w, const Event& e) {
    w.done = false;
    w.crashed = false;
    w.stages.clear();
    w.tasks.clear();
    w.first_ns = e.ts_ns;
    w.last_beat_ns = 0;
    w.silent_warnings = 0;
    w.silent_offset_ns = 0;
  }

  void observe(const Event& e) {
    if (e.component == kComponent) return;
    if (const auto q = string_field(e, "queue"); !q.empty() || has_field(e, "queue")) {
      queue = std::string(q);
    }
    if (e.kind == Kind::Request) {
      observe_request(e);
      // The asker is a worker too.
    }
    Worker& w = worker(e);
    bool restart = e.kind == Kind::Lifecycle &&
                   (e.status == Status::Starting || e.status == Status::Running) &&
                   (w.done || w.crashed);
    if (restart) new_incarnation(w, e);
    w.last_ns = std::max(w.last_ns, e.ts_ns);
    if (e.pid != 0) w.pid = e.pid;
    if (!e.host.empty() && e.host != w.host) w.host = std::string(e.host);
    // A heartbeat or the recorder's close would hide what the worker last said.
    if (e.kind != Kind::Heartbeat && !is_recorder_closed(e)) {
      if (!e.message.empty()) {
        w.last_message.assign(e.message);
      } else if (e.kind == Kind::Stage) {
        w.last_message = "Stage: " + std::string(e.stage) + " - " +
                         std::string(status_name(e.status));
      }
    }
    dirty = true;

    switch (e.kind) {
      case Kind::Stage: observe_stage(w, e); break;
      case Kind::Task: observe_task(w, e); break;
      case Kind::Heartbeat: observe_beat(w, e); break;
      case Kind::Lifecycle: observe_lifecycle(w, e); break;
      default: break;
    }
  }

  static bool has_field(const Event& e, std::string_view key) {
    return std::any_of(e.fields.begin(), e.fields.end(),
                       [&](const Field& f) { return f.key == key; });
  }

  void track() {
    if (tracked) return;
    tracked = true;
  }

  void start_summaries(std::int64_t ts) {
    if (next_summary_ns == kNever && options.summary_interval.count() > 0) {
      next_summary_ns = ts + options.summary_interval.count();
    }
  }

  void observe_stage(Worker& w, const Event& e) {
    track();
    start_summaries(e.ts_ns);
    if (e.status == Status::Starting) {
      OpenItem item = open(e.stage, {}, e,
                           threshold_for(options.stage_thresholds, options.stage_threshold, e.stage));
      std::int64_t progress = options.progress_interval.count();
      item.next_progress_ns = progress > 0 ? e.ts_ns + progress : kNever;
      w.stages.push_back(std::move(item));
    } else if (e.status == Status::Completed || e.status == Status::Failed ||
               e.status == Status::Skipped) {
      (e.status == Status::Failed ? w.stages_failed : w.stages_done) += 1;
      if (auto item = close(w.stages, e.stage)) recovered(e, &w, *item, "Stage", "stuck_stage");
    }
  }

  void observe_task(Worker& w, const Event& e) {
    track();
    start_summaries(e.ts_ns);
    std::string_view id = string_field(e, "task");
    if (e.status == Status::InProgress || e.status == Status::Starting ||
        e.status == Status::Running) {
      if (id.empty()) id = e.message;
      if (std::any_of(w.tasks.begin(), w.tasks.end(),
                      [&](const OpenItem& t) { return t.name == id; })) {
        return;  // A progress update of a task we know.
      }
      w.tasks.push_back(open(id, e.stage, e,
                             threshold_for(options.task_thresholds, options.task_threshold, e.stage)));
    } else if (e.status == Status::Completed || e.status == Status::Failed ||
               e.status == Status::Skipped) {
      (e.status == Status::Failed ? w.tasks_failed : w.tasks_done) += 1;
      if (auto item = close(w.tasks, id)) recovered(e, &w, *item, "Task", "stuck_task");
    }
  }

  void observe_request(const Event& e) {
    track();
    start_summaries(e.ts_ns);
    std::string_view id = string_field(e, "request");
    if (id.empty()) id = e.message;
    if (e.status == Status::InProgress || e.status == Status::Starting) {
      std::string_view what = string_field(e, "what");
      if (what.empty()) what = e.stage;
      OpenItem item = open(id, what, e,
                           threshold_for(options.request_thresholds, options.request_threshold, what));
      item.waiting = split_list(string_field(e, "waiting"));
      item.owner = std::string(e.worker);
      auto known = std::find_if(requests.begin(), requests.end(),
                                [&](const OpenItem& r) { return r.name == id; });
      if (known != requests.end()) {
        known->waiting = std::move(item.waiting);  // Asked again: still open since the first time.
      } else {
        requests.push_back(std::move(item));
      }
    } else if (e.status == Status::Completed || e.status == Status::Failed ||
               e.status == Status::Skipped) {
      if (auto item = close(requests, id)) {
        auto it = workers.find(item->owner);
        recovered(e, it == workers.end() ? nullptr : &it->second, *item, "Request",
                  "stale_request");
      }
    }
  }

  void observe_beat(Worker& w, const Event& e) {
    track();
    start_summaries(e.ts_ns);
    if (!w.alive()) return;  // Late beats after a shutdown or crash say nothing.
    if (w.silent_warnings > 0) {
      std::string message = "recovered: Worker " + w.name + " heartbeat resumed after " +
                            detail::rounded_seconds(e.ts_ns - w.beat_base_ns());
      Finding f{.level = Level::Info, .rule = "recovered", .worker = &w,
                .message = std::move(message)};
      f.extra.push_back({"recovered", FieldValue{std::string_view("silent")}});
      emit(e.ts_ns, std::move(f));
    }
    w.beats = true;
    w.last_beat_ns = e.ts_ns;
    w.silent_warnings = 0;
    w.silent_offset_ns = 0;
  }

  void observe_lifecycle(Worker& w, const Event& e) {
    track();
    start_summaries(e.ts_ns);
    if (e.status == Status::Starting || e.status == Status::Running) {
      w.beats = true;  // An agent: it is expected to heartbeat.
    } else if (e.status == Status::Completed) {
      w.done = true;
      // A recorder that closed normally: every worker of its process is done (a thread
      // worker seldom says shutdown; its process exiting is not a crash).
      if (is_recorder_closed(e) && e.pid != 0) {
        for (auto& [name, other] : workers) {
          if (other.pid == e.pid && other.host == e.host && !other.crashed) other.done = true;
        }
      }
    } else if (e.status == Status::Failed) {
      w.crashed = true;  // It said so itself: no need to repeat it.
    }
  }

  void crash(Worker& w, std::int64_t now, std::string_view reason) {
    w.crashed = true;
    std::string message = "Worker " + w.name + where(w) + " crashed: " + std::string(reason) +
                          "; open: " + open_items(w, now) + last_words(w);
    Finding f{.level = Level::Error, .status = Status::Failed, .rule = "crashed", .worker = &w,
              .message = std::move(message)};
    f.extra.push_back({"reason", FieldValue{reason}});
    emit(now, std::move(f));
  }

  // --- Rules ---

  void tick(std::int64_t now) {
    if (!dirty && now < deadline_ns) return;
    for (auto& [name, w] : workers) check_worker(w, now);
    for (auto& r : requests) check_request(r, now);
    if (tracked && now >= next_summary_ns) {
      // Once nobody is alive, one last line says so and the rest are left out.
      bool anyone = std::any_of(workers.begin(), workers.end(),
                                [&](const auto& w) { return w.second.alive(); });
      if (anyone || !quiet_summary) summary(now);
      quiet_summary = !anyone;
      std::int64_t interval = options.summary_interval.count();
      while (next_summary_ns <= now) next_summary_ns += interval;
    }
    dirty = false;
    deadline_ns = compute_deadline();
  }

  void check_worker(Worker& w, std::int64_t now) {
    if (w.alive() && options.check_processes && w.pid != 0 && w.pid != pid && w.host == host &&
        now >= w.next_pid_check_ns) {
      w.next_pid_check_ns = now + kPidCheckPeriod;
      if (!process_alive(w.pid)) crash(w, now, "process gone without a shutdown");
    }
    for (auto& s : w.stages) {
      if (w.alive() && now >= s.next_progress_ns) {
        std::int64_t progress = options.progress_interval.count();
        Finding f{.kind = Kind::Stage, .level = Level::Info, .status = Status::Running,
                  .rule = "running", .worker = &w, .run = s.run, .stage = s.name,
                  .elapsed_ns = now - s.since_ns};
        emit(now, std::move(f));
        s.next_progress_ns = s.since_ns + ((now - s.since_ns) / progress + 1) * progress;
      }
      check_open(w, s, now, "stuck_stage", "Stage ");
    }
    for (auto& t : w.tasks) check_open(w, t, now, "stuck_task", "Task ");
    check_silence(w, now);
  }

  // A warning is repeated while the worker lives; a crashed worker's items are reported once.
  bool due(const OpenItem& item, const Worker& w, std::int64_t now) const {
    return now >= item.next_warning_ns() && !w.done && (w.alive() || item.warnings == 0);
  }

  void check_open(Worker& w, OpenItem& item, std::int64_t now, std::string_view rule,
                  std::string_view what) {
    if (!due(item, w, now)) return;
    std::string message = std::string(what) + item.name;
    if (!item.cls.empty()) message += " (" + item.cls + ")";
    message += " on " + w.name + where(w) + " open for " + detail::rounded_seconds(now - item.since_ns) +
               " (threshold: " + detail::rounded_seconds(item.threshold_ns) + ")" + last_words(w);
    Finding f{.rule = rule, .worker = &w, .run = item.run,
              .stage = rule == "stuck_stage" ? std::string_view(item.name) : std::string_view(),
              .message = std::move(message)};
    f.extra.push_back({rule == "stuck_stage" ? "stage" : "task",
                       FieldValue{std::string_view(item.name)}});
    if (!item.cls.empty()) f.extra.push_back({"class", FieldValue{std::string_view(item.cls)}});
    f.extra.push_back({"open_s", FieldValue{seconds_of(now - item.since_ns)}});
    f.extra.push_back({"threshold_s", FieldValue{seconds_of(item.threshold_ns)}});
    f.extra.push_back({"last_message", FieldValue{std::string_view(w.last_message)}});
    emit(now, std::move(f));
    ++item.warnings;
    item.warn_offset_ns =
        offset_after(item.warn_offset_ns, now - item.since_ns, options.max_repeat.count());
  }

  std::int64_t silent_deadline(const Worker& w) const {
    std::int64_t timeout = options.heartbeat_timeout.count();
    if (!w.beats || timeout <= 0 || w.done || (w.crashed && w.silent_warnings > 0)) return kNever;
    return w.beat_base_ns() + (w.silent_offset_ns != 0 ? w.silent_offset_ns : timeout);
  }

  void check_silence(Worker& w, std::int64_t now) {
    if (now < silent_deadline(w)) return;
    std::int64_t quiet = now - w.beat_base_ns();
    std::string timeout = detail::rounded_seconds(options.heartbeat_timeout.count());
    std::string message =
        w.last_beat_ns != 0
            ? "Worker " + w.name + " last heartbeat " + detail::rounded_seconds(quiet) + " ago (threshold: " +
                  timeout + ")"
            : "Worker " + w.name + " has sent no heartbeat in the " + detail::rounded_seconds(quiet) +
                  " since it started (threshold: " + timeout + ")";
    message += last_words(w);
    Finding f{.rule = "silent", .worker = &w, .message = std::move(message)};
    f.extra.push_back({"quiet_s", FieldValue{seconds_of(quiet)}});
    f.extra.push_back({"threshold_s", FieldValue{seconds_of(options.heartbeat_timeout.count())}});
    f.extra.push_back({"last_message", FieldValue{std::string_view(w.last_message)}});
    emit(now, std::move(f));
    ++w.silent_warnings;
    std::int64_t offset =
        w.silent_offset_ns != 0 ? w.silent_offset_ns : options.heartbeat_timeout.count();
    w.silent_offset_ns = offset_after(offset, quiet, options.max_repeat.count());
  }

  // Workers a request waits for that still live; an unknown worker counts as waiting.
  std::vector<std::string_view> still_waiting(const OpenItem& r) const {
    std::vector<std::string_view> out;
    for (const auto& name : r.waiting) {
      auto it = workers.find(name);
      if (it == workers.end() || it->second.alive()) out.push_back(name);
    }
    return out;
  }

  void check_request(OpenItem& r, std::int64_t now) {
    if (now < r.next_warning_ns()) return;
    auto waiting = still_waiting(r);
    if (waiting.empty() && !r.waiting.empty()) return;
    std::string list;
    for (auto name : waiting) list += (list.empty() ? "" : ", ") + std::string(name);
    std::string message = "Request " + r.name + (r.cls.empty() ? "" : " (" + r.cls + ")") +
                          " open for " + detail::rounded_seconds(now - r.since_ns);
    message += waiting.empty() ? std::string(" and nobody has taken it")
                               : " but workers [" + list + "] still wait for it";
    message += " (threshold: " + detail::rounded_seconds(r.threshold_ns) + ")";
    auto owner = workers.find(r.owner);
    Finding f{.rule = "stale_request",
              .worker = owner == workers.end() ? nullptr : &owner->second,
              .run = r.run,
              .message = std::move(message)};
    f.extra.push_back({"request", FieldValue{std::string_view(r.name)}});
    f.extra.push_back({"what", FieldValue{std::string_view(r.cls)}});
    f.extra.push_back({"waiting", FieldValue{std::string_view(list)}});
    f.extra.push_back({"open_s", FieldValue{seconds_of(now - r.since_ns)}});
    f.extra.push_back({"threshold_s", FieldValue{seconds_of(r.threshold_ns)}});
    emit(now, std::move(f));
    ++r.warnings;
    r.warn_offset_ns =
        offset_after(r.warn_offset_ns, now - r.since_ns, options.max_repeat.count());
  }

  bool stuck(const Worker& w, std::int64_t now) const {
    auto over = [&](const OpenItem& i) { return now >= i.since_ns + i.threshold_ns && i.threshold_ns > 0; };
    return std::any_of(w.stages.begin(), w.stages.end(), over) ||
           std::any_of(w.tasks.begin(), w.tasks.end(), over);
  }

  bool silent(const Worker& w, std::int64_t now) const {
    std::int64_t timeout = options.heartbeat_timeout.count();
    return w.alive() && w.beats && timeout > 0 && now - w.beat_base_ns() >= timeout;
  }

  WorkerState state_of(const Worker& w, std::int64_t now) const {
    if (w.crashed) return WorkerState::Crashed;
    if (w.done) return WorkerState::Done;
    if (stuck(w, now)) return WorkerState::Stuck;
    if (silent(w, now)) return WorkerState::Silent;
    if (!w.stages.empty() || !w.tasks.empty()) return WorkerState::Running;
    return WorkerState::Idle;
  }

  void summary(std::int64_t now) {
    std::size_t alive = 0;
    std::size_t processing = 0;
    std::size_t stuck_tasks = 0;
    std::vector<std::pair<std::string_view, int>> stages;
    for (const auto& [name, w] : workers) {
      if (w.alive() && !silent(w, now)) ++alive;
      if (!w.alive()) continue;
      for (const auto& s : w.stages) {
        auto it = std::find_if(stages.begin(), stages.end(),
                               [&](const auto& p) { return p.first == s.name; });
        if (it == stages.end()) {
          stages.emplace_back(s.name, 1);
        } else {
          ++it->second;
        }
      }
      for (const auto& t : w.tasks) {
        ++processing;
        if (t.threshold_ns > 0 && now >= t.since_ns + t.threshold_ns) ++stuck_tasks;
      }
    }
    std::string message = "MONITOR: Workers: " + std::to_string(alive) + "/" +
                          std::to_string(workers.size()) + " alive, Stages: ";
    if (stages.empty()) message += "none";
    for (std::size_t i = 0; i < stages.size(); ++i) {
      message += (i == 0 ? "" : " ") + std::string(stages[i].first) + ":" +
                 std::to_string(stages[i].second);
    }
    message += ", Tasks: processing " + std::to_string(processing) + ", stuck " +
               std::to_string(stuck_tasks);
    if (!queue.empty()) message += ", Queue: " + queue;
    Finding f{.level = Level::Info, .rule = "monitor", .message = std::move(message)};
    f.extra.push_back({"alive", FieldValue{static_cast<std::uint64_t>(alive)}});
    f.extra.push_back({"workers", FieldValue{static_cast<std::uint64_t>(workers.size())}});
    f.extra.push_back({"processing", FieldValue{static_cast<std::uint64_t>(processing)}});
    f.extra.push_back({"stuck", FieldValue{static_cast<std::uint64_t>(stuck_tasks)}});
    f.extra.push_back({"queue", FieldValue{std::string_view(queue)}});
    emit(now, std::move(f));
  }

  std::int64_t compute_deadline() const {
    std::int64_t d = tracked ? next_summary_ns : kNever;
    for (const auto& [name, w] : workers) {
      if (w.done) continue;
      if (w.alive() && options.check_processes && w.pid != 0 && w.pid != pid && w.host == host) {
        d = std::min(d, w.next_pid_check_ns);
      }
      for (const auto& s : w.stages) {
        if (w.alive()) d = std::min(d, s.next_progress_ns);
        if (w.alive() || s.warnings == 0) d = std::min(d, s.next_warning_ns());
      }
      for (const auto& t : w.tasks) {
        if (w.alive() || t.warnings == 0) d = std::min(d, t.next_warning_ns());
      }
      d = std::min(d, silent_deadline(w));
    }
    for (const auto& r : requests) {
      // Nobody left to wait: check_request() says nothing, so it sets no deadline (a past one
      // would stay past forever). A worker that comes back marks the state dirty.
      if (!r.waiting.empty() && still_waiting(r).empty()) continue;
      d = std::min(d, r.next_warning_ns());
    }
    return d;
  }
};

Watchdog::Watchdog(WatchdogOptions options, Report report)
    : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->report = std::move(report);
}

Watchdog::~Watchdog() = default;
Watchdog::Watchdog(Watchdog&&) noexcept = default;
Watchdog& Watchdog::operator=(Watchdog&&) noexcept = default;

void Watchdog::observe(const Event& event) { state_->observe(event); }

void Watchdog::tick(std::int64_t now_ns) { state_->tick(now_ns); }

void Watchdog::monitor(std::int64_t now_ns) {
  if (!state_->workers.empty()) state_->summary(now_ns);
}

std::int64_t Watchdog::next_deadline() const noexcept {
  if (state_->dirty) {
    state_->deadline_ns = state_->compute_deadline();
    state_->dirty = false;
  }
  return state_->deadline_ns;
}

std::vector<WorkerView> Watchdog::workers(std::int64_t now_ns) const {
  std::vector<WorkerView> out;
  out.reserve(state_->workers.size());
  for (const auto& [name, w] : state_->workers) {
    WorkerView v;
    v.worker = w.name;
    v.state = state_->state_of(w, now_ns);
    if (!w.stages.empty()) {
      v.stage = w.stages.back().name;
      v.stage_since_ns = w.stages.back().since_ns;
    }
    if (!w.tasks.empty()) {
      v.task = w.tasks.back().name;
      v.task_class = w.tasks.back().cls;
    }
    v.first_event_ns = w.first_ns;
    v.last_event_ns = w.last_ns;
    v.last_heartbeat_ns = w.last_beat_ns;
    v.tasks_done = w.tasks_done;
    v.tasks_failed = w.tasks_failed;
    v.stages_done = w.stages_done;
    v.stages_failed = w.stages_failed;
    v.last_message = w.last_message;
    v.pid = w.pid;
    v.host = w.host;
    out.push_back(std::move(v));
  }
  return out;
}

const std::string& Watchdog::queue() const noexcept { return state_->queue; }

const WatchdogOptions& Watchdog::options() const noexcept { return state_->options; }

}  // namespace stagelog
