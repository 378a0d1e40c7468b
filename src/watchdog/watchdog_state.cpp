// The watchdog's fold: observe() and the per-worker state it updates. The recorder's backend
// calls it for every event. What it finds closed after a warning is reported through
// recovered() and resumed() (watchdog_rules.cpp).

#include "watchdog/watchdog_state.hpp"

#include <algorithm>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace stagelog {

namespace {

using detail::kNever;
using detail::OpenItem;

std::int64_t threshold_for(const WatchdogOptions::Overrides& overrides,
                           WatchdogOptions::Duration fallback, std::string_view name) {
  auto it = overrides.find(name);
  return (it != overrides.end() ? it->second : fallback).count();
}

std::string_view string_field(const Event& e, std::string_view key) {
  for (const auto& f : e.fields) {
    if (f.key != key) continue;
    if (const auto* s = std::get_if<std::string_view>(&f.value)) return *s;
  }
  return {};
}

bool has_field(const Event& e, std::string_view key) {
  return std::any_of(e.fields.begin(), e.fields.end(),
                     [&](const Field& f) { return f.key == key; });
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

}  // namespace

void Watchdog::State::observe(const Event& e) {
  if (e.component == detail::kWatchdogComponent) return;
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
      w.last_message =
          "Stage: " + std::string(e.stage) + " - " + std::string(status_name(e.status));
    }
  }
  dirty = true;

  switch (e.kind) {
    case Kind::Stage:
      observe_stage(w, e);
      break;
    case Kind::Task:
      observe_task(w, e);
      break;
    case Kind::Heartbeat:
      observe_beat(w, e);
      break;
    case Kind::Lifecycle:
      observe_lifecycle(w, e);
      break;
    default:
      break;
  }
}

detail::Worker& Watchdog::State::worker(const Event& e) {
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

detail::OpenItem Watchdog::State::open(std::string_view name, std::string_view cls, const Event& e,
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

std::optional<detail::OpenItem> Watchdog::State::close(std::vector<OpenItem>& items,
                                                       std::string_view name) {
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    if (!name.empty() && it->name != name) continue;
    OpenItem item = std::move(*it);
    items.erase(std::next(it).base());
    return item;
  }
  return std::nullopt;
}

void Watchdog::State::new_incarnation(Worker& w, const Event& e) {
  w.done = false;
  w.crashed = false;
  w.stages.clear();
  w.tasks.clear();
  w.first_ns = e.ts_ns;
  w.last_beat_ns = 0;
  w.silent_warnings = 0;
  w.silent_offset_ns = 0;
}

void Watchdog::State::track() {
  if (tracked) return;
  tracked = true;
}

void Watchdog::State::start_summaries(std::int64_t ts) {
  if (next_summary_ns == kNever && options.summary_interval.count() > 0) {
    next_summary_ns = ts + options.summary_interval.count();
  }
}

void Watchdog::State::release_elsewhere(const Worker& w, std::string_view id) {
  if (id.empty()) return;
  for (auto& [name, other] : workers) {
    if (&other == &w) continue;
    std::erase_if(other.tasks, [&](const OpenItem& t) { return t.name == id; });
  }
}

void Watchdog::State::observe_stage(Worker& w, const Event& e) {
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

void Watchdog::State::observe_task(Worker& w, const Event& e) {
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
    release_elsewhere(w, id);
    w.tasks.push_back(open(
        id, e.stage, e, threshold_for(options.task_thresholds, options.task_threshold, e.stage)));
    w.tasks.back().label = std::string(string_field(e, "name"));
  } else if (e.status == Status::Completed || e.status == Status::Failed ||
             e.status == Status::Skipped) {
    (e.status == Status::Failed ? w.tasks_failed : w.tasks_done) += 1;
    if (auto item = close(w.tasks, id)) recovered(e, &w, *item, "Task", "stuck_task");
    release_elsewhere(w, id);
    completions.push_back(e.ts_ns);
    std::int64_t window = options.completions_window.count();
    while (!completions.empty() && (window <= 0 || completions.front() <= e.ts_ns - window)) {
      completions.pop_front();
    }
  }
}

void Watchdog::State::observe_request(const Event& e) {
  track();
  start_summaries(e.ts_ns);
  std::string_view id = string_field(e, "request");
  if (id.empty()) id = e.message;
  if (e.status == Status::InProgress || e.status == Status::Starting) {
    std::string_view what = string_field(e, "what");
    if (what.empty()) what = e.stage;
    OpenItem item = open(
        id, what, e, threshold_for(options.request_thresholds, options.request_threshold, what));
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
      recovered(e, it == workers.end() ? nullptr : &it->second, *item, "Request", "stale_request");
    }
  }
}

void Watchdog::State::observe_beat(Worker& w, const Event& e) {
  track();
  start_summaries(e.ts_ns);
  if (!w.alive()) return;  // Late beats after a shutdown or crash say nothing.
  if (w.silent_warnings > 0) resumed(w, e.ts_ns);
  w.beats = true;
  w.last_beat_ns = e.ts_ns;
  w.silent_warnings = 0;
  w.silent_offset_ns = 0;
}

void Watchdog::State::observe_lifecycle(Worker& w, const Event& e) {
  track();
  start_summaries(e.ts_ns);
  if (has_field(e, "gpu")) w.gpu = true;
  if (e.status == Status::Starting || e.status == Status::Running) {
    w.beats = true;  // An agent: it is expected to heartbeat.
  } else if (e.status == Status::Completed && w.crashed) {
    // Seed 001's "Worker crashed in main loop", then "Worker shutting down": the shutdown
    // is the crash's cleanup, not a clean end. It stays crashed, its tasks orphaned.
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

}  // namespace stagelog
