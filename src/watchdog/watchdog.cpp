// The public Watchdog: its construction and what it shows of its state. The fold is in
// watchdog_state.cpp, the rules in watchdog_rules.cpp.

#include "stagelog/watchdog.hpp"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "watchdog/watchdog_state.hpp"

namespace stagelog {

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

}  // namespace

std::string_view worker_state_name(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::Running:
      return "running";
    case WorkerState::Idle:
      return "idle";
    case WorkerState::Stuck:
      return "stuck";
    case WorkerState::Silent:
      return "silent";
    case WorkerState::Crashed:
      return "crashed";
    case WorkerState::Done:
      return "done";
  }
  return "unknown";
}

bool Watchdog::State::stuck(const Worker& w, std::int64_t now) const {
  auto over = [&](const OpenItem& i) {
    return now >= i.since_ns + i.threshold_ns && i.threshold_ns > 0;
  };
  return std::any_of(w.stages.begin(), w.stages.end(), over) ||
         std::any_of(w.tasks.begin(), w.tasks.end(), over);
}

WorkerState Watchdog::State::state_of(const Worker& w, std::int64_t now) const {
  if (w.crashed) return WorkerState::Crashed;
  if (w.done) return WorkerState::Done;
  if (stuck(w, now)) return WorkerState::Stuck;
  if (silent(w, now)) return WorkerState::Silent;
  if (!w.stages.empty() || !w.tasks.empty()) return WorkerState::Running;
  return WorkerState::Idle;
}

Watchdog::Watchdog(WatchdogOptions options, Report report) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->report = std::move(report);
  state_->host = host_name();
  state_->pid = ::getpid();
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
