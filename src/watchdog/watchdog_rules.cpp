// The watchdog's rules and reports: tick() checks stuck stages and tasks, silent workers,
// crashed processes and stale requests, repeats what still holds at 2x, 4x ... its threshold,
// writes the MONITOR line and the "recovered:" lines, and computes next_deadline().

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/duration.hpp"
#include "base/python_text.hpp"
#include "watchdog/watchdog_state.hpp"

namespace stagelog {

namespace {

using detail::kNever;
using detail::OpenItem;
using detail::Worker;

constexpr std::int64_t kSecond = 1'000'000'000;
// Half a second: with tail's 100 ms poll, a crash is still reported within a second.
constexpr std::int64_t kPidCheckPeriod = kSecond / 2;

double seconds_of(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

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

struct Watchdog::State::Finding {
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

void Watchdog::State::emit(std::int64_t now, Finding f) {
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
  e.worker = f.worker != nullptr ? std::string_view(f.worker->name) : detail::kWatchdogComponent;
  e.component = detail::kWatchdogComponent;
  e.stage = f.stage;
  e.message = f.message;
  e.elapsed_ns = f.elapsed_ns;
  e.fields = fields;
  e.pid = f.worker != nullptr ? f.worker->pid : pid;
  e.host = f.worker != nullptr ? std::string_view(f.worker->host) : std::string_view(host);
  e.fields_in_message = true;
  report(e);
}

std::string Watchdog::State::last_words(const Worker& w) const {
  return w.last_message.empty() ? std::string() : "; last message: " + w.last_message;
}

std::string Watchdog::State::open_items(const Worker& w, std::int64_t now) const {
  std::string out;
  for (const auto& s : w.stages) {
    out += (out.empty() ? "" : ", ") + std::string("stage ") + s.name + " " +
           detail::rounded_seconds(now - s.since_ns);
  }
  for (const auto& t : w.tasks) {
    out += (out.empty() ? "" : ", ") + std::string("task ") + t.name +
           (t.cls.empty() ? "" : " (" + t.cls + ")") + " " +
           detail::rounded_seconds(now - t.since_ns);
  }
  return out.empty() ? "nothing open" : out;
}

void Watchdog::State::recovered(const Event& e, const Worker* w, const OpenItem& item,
                                std::string_view what, std::string_view rule) {
  if (item.warnings == 0) return;
  std::string message = "recovered: " + std::string(what) + " " + item.name;
  if (!item.cls.empty()) message += " (" + item.cls + ")";
  if (w != nullptr) message += " on " + w->name;
  message += " ended " + std::string(status_name(e.status)) + " after " +
             detail::rounded_seconds(e.ts_ns - item.since_ns);
  Finding f{.level = Level::Info,
            .rule = "recovered",
            .worker = w,
            .run = item.run,
            .stage = what == "Stage" ? std::string_view(item.name) : std::string_view(),
            .message = std::move(message)};
  f.extra.push_back({"recovered", FieldValue{rule}});
  f.extra.push_back({"open_s", FieldValue{seconds_of(e.ts_ns - item.since_ns)}});
  emit(e.ts_ns, std::move(f));
}

void Watchdog::State::resumed(const Worker& w, std::int64_t beat_ns) {
  std::string message = "recovered: Worker " + w.name + " heartbeat resumed after " +
                        detail::rounded_seconds(beat_ns - w.beat_base_ns());
  Finding f{.level = Level::Info, .rule = "recovered", .worker = &w, .message = std::move(message)};
  f.extra.push_back({"recovered", FieldValue{std::string_view("silent")}});
  emit(beat_ns, std::move(f));
}

void Watchdog::State::crash(Worker& w, std::int64_t now, std::string_view reason) {
  w.crashed = true;
  std::string message = "Worker " + w.name + where(w) + " crashed: " + std::string(reason) +
                        "; open: " + open_items(w, now) + last_words(w);
  Finding f{.level = Level::Error,
            .status = Status::Failed,
            .rule = "crashed",
            .worker = &w,
            .message = std::move(message)};
  f.extra.push_back({"reason", FieldValue{reason}});
  emit(now, std::move(f));
}

void Watchdog::State::tick(std::int64_t now) {
  if (!dirty && now < deadline_ns) return;
  for (auto& [name, w] : workers) check_worker(w, now);
  if (options.seed_wording) check_tasks(now);
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

void Watchdog::State::check_worker(Worker& w, std::int64_t now) {
  if (w.alive() && options.check_processes && w.pid != 0 && w.pid != pid && w.host == host &&
      now >= w.next_pid_check_ns) {
    w.next_pid_check_ns = now + kPidCheckPeriod;
    if (!process_alive(w.pid)) crash(w, now, "process gone without a shutdown");
  }
  for (auto& s : w.stages) {
    if (w.alive() && now >= s.next_progress_ns) {
      std::int64_t progress = options.progress_interval.count();
      Finding f{.kind = Kind::Stage,
                .level = Level::Info,
                .status = Status::Running,
                .rule = "running",
                .worker = &w,
                .run = s.run,
                .stage = s.name,
                .elapsed_ns = now - s.since_ns};
      emit(now, std::move(f));
      s.next_progress_ns = s.since_ns + ((now - s.since_ns) / progress + 1) * progress;
    }
    check_open(w, s, now, "stuck_stage", "Stage ");
  }
  if (!options.seed_wording) {
    for (auto& t : w.tasks) check_open(w, t, now, "stuck_task", "Task ");
  }
  check_silence(w, now);
}

bool Watchdog::State::due(const OpenItem& item, const Worker& w, std::int64_t now) const {
  // A task left open by a worker that shut down is orphaned like a crashed worker's; a stage
  // it left open says nothing more.
  bool orphan = w.done && std::any_of(w.tasks.begin(), w.tasks.end(),
                                      [&](const OpenItem& t) { return &t == &item; });
  return now >= item.next_warning_ns() && (!w.done || orphan) && (w.alive() || item.warnings == 0);
}

void Watchdog::State::check_tasks(std::int64_t now) {
  bool any_due = false;
  for (const auto& [name, w] : workers) {
    for (const auto& t : w.tasks) any_due = any_due || due(t, w, now);
  }
  if (!any_due) return;
  // Seed 001's brain: stuck_tasks.append({'task_id': task['task_id'][:8], 'assigned_to': ...,
  // 'elapsed_min': int(elapsed / 60), 'name': task.get('name', '')}), then one warning.
  std::string list;
  std::size_t count = 0;
  const Worker* only = nullptr;
  bool one_worker = true;
  for (const auto& [name, w] : workers) {
    for (const auto& t : w.tasks) {
      if (t.threshold_ns <= 0 || now < t.since_ns + t.threshold_ns) continue;
      list += count++ == 0 ? "{'task_id': " : ", {'task_id': ";
      detail::append_python_repr(list, std::string_view(t.name).substr(0, 8));
      list += ", 'assigned_to': ";
      detail::append_python_repr(list, w.name);
      list += ", 'elapsed_min': " + std::to_string((now - t.since_ns) / (60 * kSecond));
      list += ", 'name': ";
      detail::append_python_repr(list, t.label);
      list += '}';
      one_worker = one_worker && (only == nullptr || only == &w);
      only = &w;
    }
  }
  const Worker* subject = one_worker ? only : nullptr;
  Finding f{.rule = "stuck_task",
            .worker = subject,
            .run = subject != nullptr && !subject->tasks.empty()
                       ? std::string_view(subject->tasks.front().run)
                       : std::string_view(),
            .message = "Stuck tasks detected: [" + list + "]"};
  f.extra.push_back({"stuck", FieldValue{static_cast<std::uint64_t>(count)}});
  if (count == 1 && subject != nullptr) {
    for (const auto& t : subject->tasks) {
      if (t.threshold_ns <= 0 || now < t.since_ns + t.threshold_ns) continue;
      f.extra.push_back({"task", FieldValue{std::string_view(t.name)}});
      if (!t.cls.empty()) f.extra.push_back({"class", FieldValue{std::string_view(t.cls)}});
      f.extra.push_back({"open_s", FieldValue{seconds_of(now - t.since_ns)}});
      f.extra.push_back({"threshold_s", FieldValue{seconds_of(t.threshold_ns)}});
    }
  }
  emit(now, std::move(f));
  for (auto& [name, w] : workers) {
    for (auto& t : w.tasks) {
      if (!due(t, w, now)) continue;
      ++t.warnings;
      t.warn_offset_ns =
          offset_after(t.warn_offset_ns, now - t.since_ns, options.max_repeat.count());
    }
  }
}

void Watchdog::State::check_open(Worker& w, OpenItem& item, std::int64_t now, std::string_view rule,
                                 std::string_view what) {
  if (!due(item, w, now)) return;
  std::string message = std::string(what) + item.name;
  if (!item.cls.empty()) message += " (" + item.cls + ")";
  message += " on " + w.name + where(w) + " open for " +
             detail::rounded_seconds(now - item.since_ns) +
             " (threshold: " + detail::rounded_seconds(item.threshold_ns) + ")" + last_words(w);
  Finding f{.rule = rule,
            .worker = &w,
            .run = item.run,
            .stage = rule == "stuck_stage" ? std::string_view(item.name) : std::string_view(),
            .message = std::move(message)};
  f.extra.push_back(
      {rule == "stuck_stage" ? "stage" : "task", FieldValue{std::string_view(item.name)}});
  if (!item.cls.empty()) f.extra.push_back({"class", FieldValue{std::string_view(item.cls)}});
  f.extra.push_back({"open_s", FieldValue{seconds_of(now - item.since_ns)}});
  f.extra.push_back({"threshold_s", FieldValue{seconds_of(item.threshold_ns)}});
  f.extra.push_back({"last_message", FieldValue{std::string_view(w.last_message)}});
  emit(now, std::move(f));
  ++item.warnings;
  item.warn_offset_ns =
      offset_after(item.warn_offset_ns, now - item.since_ns, options.max_repeat.count());
}

std::int64_t Watchdog::State::silent_deadline(const Worker& w) const {
  std::int64_t timeout = options.heartbeat_timeout.count();
  if (!w.beats || timeout <= 0 || w.done || (w.crashed && w.silent_warnings > 0)) return kNever;
  return w.beat_base_ns() + (w.silent_offset_ns != 0 ? w.silent_offset_ns : timeout);
}

void Watchdog::State::check_silence(Worker& w, std::int64_t now) {
  if (now < silent_deadline(w)) return;
  std::int64_t quiet = now - w.beat_base_ns();
  auto seconds = [&](std::int64_t ns) {
    return options.seed_wording ? detail::python_seconds(ns, 0) : detail::rounded_seconds(ns);
  };
  std::string timeout = seconds(options.heartbeat_timeout.count());
  std::string message = w.last_beat_ns != 0
                            ? "Worker " + w.name + " last heartbeat " + seconds(quiet) +
                                  " ago (threshold: " + timeout + ")"
                            : "Worker " + w.name + " has sent no heartbeat in the " +
                                  seconds(quiet) + " since it started (threshold: " + timeout + ")";
  if (!options.seed_wording) message += last_words(w);
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

std::vector<std::string_view> Watchdog::State::still_waiting(const OpenItem& r) const {
  std::vector<std::string_view> out;
  for (const auto& name : r.waiting) {
    auto it = workers.find(name);
    if (it == workers.end() || it->second.alive()) out.push_back(name);
  }
  return out;
}

void Watchdog::State::check_request(OpenItem& r, std::int64_t now) {
  if (now < r.next_warning_ns()) return;
  auto waiting = still_waiting(r);
  if (waiting.empty() && !r.waiting.empty()) return;
  std::string list;
  for (auto name : waiting) list += (list.empty() ? "" : ", ") + std::string(name);
  std::string message;
  if (options.seed_wording) {
    // Seed 001: f"load_llm task available for {age:.0f}s but workers {workers_still_waiting}
    // still have no model".
    message = (r.cls.empty() ? r.name : r.cls) + " task available for " +
              detail::python_seconds(now - r.since_ns, 0);
    if (waiting.empty()) {
      message += " and nobody has taken it";
    } else {
      message += " but workers ";
      detail::append_python_list(message, waiting);
      message += " still have no model";
    }
  } else {
    message = "Request " + r.name + (r.cls.empty() ? "" : " (" + r.cls + ")") + " open for " +
              detail::rounded_seconds(now - r.since_ns);
    message += waiting.empty() ? std::string(" and nobody has taken it")
                               : " but workers [" + list + "] still wait for it";
    message += " (threshold: " + detail::rounded_seconds(r.threshold_ns) + ")";
  }
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
  r.warn_offset_ns = offset_after(r.warn_offset_ns, now - r.since_ns, options.max_repeat.count());
}

bool Watchdog::State::silent(const Worker& w, std::int64_t now) const {
  std::int64_t timeout = options.heartbeat_timeout.count();
  return w.alive() && w.beats && timeout > 0 && now - w.beat_base_ns() >= timeout;
}

namespace {

// The queue field as counts: "llm:123, cpu:4" -> 127 and the breakdown; a bare "197" -> 197
// and no breakdown. nullopt when it says neither ("empty" counts as 0).
struct QueueCounts {
  std::uint64_t total = 0;
  bool by_class = false;
};

std::optional<QueueCounts> queue_counts(std::string_view queue) {
  QueueCounts out;
  if (queue == "empty" || queue == "[]") return out;
  auto number = [](std::string_view text) -> std::optional<std::uint64_t> {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return v;
  };
  if (auto bare = number(queue)) {
    out.total = *bare;
    return out;
  }
  while (!queue.empty()) {
    auto comma = queue.find(',');
    std::string_view item = queue.substr(0, comma);
    auto colon = item.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto count = number(item.substr(colon + 1));
    if (!count) return std::nullopt;
    out.total += *count;
    out.by_class = true;
    if (comma == std::string_view::npos) break;
    queue.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

std::string Watchdog::State::seed_summary(std::int64_t now, std::size_t processing,
                                          std::size_t stuck) const {
  std::size_t gpus = 0, gpus_alive = 0, others = 0, others_alive = 0;
  for (const auto& [name, w] : workers) {
    bool up = w.alive() && !silent(w, now);
    if (w.gpu) {
      ++gpus;
      gpus_alive += up ? 1 : 0;
    } else if (w.beats) {
      ++others;
      others_alive += up ? 1 : 0;
    }
  }
  std::string message = "MONITOR: ";
  if (gpus > 0) {
    message += "GPUs: " + std::to_string(gpus_alive) + "/" + std::to_string(gpus) + ", ";
  }
  if (others > 0) {
    message += "Workers: " + std::to_string(others_alive) + "/" + std::to_string(others) + ", ";
  }
  if (!queue.empty()) {
    auto counts = queue_counts(queue);
    message += "Queue: ";
    if (!counts) {
      message += queue;
    } else {
      message += std::to_string(counts->total);
      if (counts->by_class) message += " (" + queue + ")";
    }
    message += ", ";
  }
  message += "Processing: " + std::to_string(processing) + ", Stuck: " + std::to_string(stuck);
  return message;
}

void Watchdog::State::summary(std::int64_t now) {
  std::size_t alive = 0;
  std::size_t processing = 0;
  std::size_t stuck_tasks = 0;
  std::size_t orphaned = 0;
  std::size_t gpus = 0;
  std::size_t gpus_alive = 0;
  std::vector<std::pair<std::string_view, int>> stages;
  for (const auto& [name, w] : workers) {
    bool up = w.alive() && !silent(w, now);
    if (up) ++alive;
    if (w.gpu) {
      ++gpus;
      gpus_alive += up ? 1 : 0;
    }
    // A crashed, finished or silent worker's tasks are still open: orphaned, not gone.
    for (const auto& t : w.tasks) {
      ++processing;
      if (!up) ++orphaned;
      if (t.threshold_ns > 0 && now >= t.since_ns + t.threshold_ns) ++stuck_tasks;
    }
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
  }
  std::int64_t window = options.completions_window.count();
  while (!completions.empty() && (window <= 0 || completions.front() <= now - window)) {
    completions.pop_front();
  }
  std::string message;
  if (options.seed_wording) {
    message = seed_summary(now, processing, stuck_tasks);
  } else {
    message = "MONITOR: Workers: " + std::to_string(alive) + "/" + std::to_string(workers.size()) +
              " alive, Stages: ";
    if (stages.empty()) message += "none";
    for (std::size_t i = 0; i < stages.size(); ++i) {
      message += (i == 0 ? "" : " ") + std::string(stages[i].first) + ":" +
                 std::to_string(stages[i].second);
    }
    message += ", Tasks: processing " + std::to_string(processing) + ", stuck " +
               std::to_string(stuck_tasks);
    if (orphaned > 0) message += ", orphaned " + std::to_string(orphaned);
    if (!queue.empty()) message += ", Queue: " + queue;
  }
  auto counts = queue_counts(queue);
  auto count = [](std::size_t n) { return FieldValue{static_cast<std::uint64_t>(n)}; };
  Finding f{.level = Level::Info, .rule = "monitor", .message = std::move(message)};
  f.extra.push_back({"alive", count(alive)});
  f.extra.push_back({"workers", count(workers.size())});
  f.extra.push_back({"gpus", count(gpus)});
  f.extra.push_back({"gpus_alive", count(gpus_alive)});
  f.extra.push_back({"processing", count(processing)});
  f.extra.push_back({"stuck", count(stuck_tasks)});
  f.extra.push_back({"orphaned", count(orphaned)});
  f.extra.push_back({"queue", FieldValue{std::string_view(queue)}});
  if (counts) f.extra.push_back({"queue_total", FieldValue{counts->total}});
  f.extra.push_back({"completed_last_5min", count(completions.size())});
  emit(now, std::move(f));
}

std::int64_t Watchdog::State::compute_deadline() const {
  std::int64_t d = tracked ? next_summary_ns : kNever;
  for (const auto& [name, w] : workers) {
    if (w.done) {
      for (const auto& t : w.tasks) {
        if (t.warnings == 0) d = std::min(d, t.next_warning_ns());  // Orphaned, told once.
      }
      continue;
    }
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

}  // namespace stagelog
