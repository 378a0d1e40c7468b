#include "server/live.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <vector>

#include "base/time_text.hpp"
#include "format/format.hpp"
#include "server/server_metrics.hpp"

namespace stagelog::detail {

namespace {

bool is_stuck_report(const Event& e) {
  for (const Field& f : e.fields) {
    if (f.key != "rule") continue;
    const auto* rule = std::get_if<std::string_view>(&f.value);
    return rule != nullptr && (*rule == "stuck_stage" || *rule == "stuck_task");
  }
  return false;
}

// One worker of GET /api/v1/workers (and of the stream's worker entries).
void append_worker(std::string& out, const WorkerView& w, std::int64_t now_ns) {
  auto time_or_null = [&](std::int64_t ns) {
    if (ns == 0) {
      out += "null";
      return;
    }
    out += '"';
    append_iso_timestamp(out, ns);
    out += '"';
  };
  out += R"({"worker":)";
  append_json_string(out, w.worker);
  out += R"(,"state":")";
  out += worker_state_name(w.state);
  out += R"(","stage":)";
  append_json_string(out, w.stage);
  out += R"(,"time_in_stage_ms":)";
  if (w.stage.empty()) {
    out += "null";
  } else {
    out += std::to_string(std::max<std::int64_t>(0, now_ns - w.stage_since_ns) / 1'000'000);
  }
  out += R"(,"task":)";
  append_json_string(out, w.task);
  out += R"(,"last_event_at":)";
  time_or_null(w.last_event_ns);
  out += R"(,"last_heartbeat_at":)";
  time_or_null(w.last_heartbeat_ns);
  out += R"(,"tasks_done":)" + std::to_string(w.tasks_done);
  out += R"(,"tasks_failed":)" + std::to_string(w.tasks_failed);
  out += R"(,"stages_done":)" + std::to_string(w.stages_done);
  out += R"(,"stages_failed":)" + std::to_string(w.stages_failed);
  out += R"(,"last_message":)";
  append_json_string(out, w.last_message);
  out += R"(,"pid":)" + std::to_string(w.pid);
  out += R"(,"host":)";
  append_json_string(out, w.host);
  out += '}';
}

}  // namespace

LiveState::LiveState(WatchdogOptions options, StreamHub* hub, Watchdog::Report forward)
    : hub_(hub),
      watchdog_(std::move(options),
                [this](const Event& e) {
                  // Called by observe() and tick(), under mutex_.
                  if (is_stuck_report(e)) ++stuck_;
                  if (forward_) forward_(e);
                  if (hub_ == nullptr) return;
                  if (auto entry = warning_entry(e)) pending_.push_back(std::move(*entry));
                }),
      forward_(std::move(forward)) {}

void LiveState::observe(std::shared_ptr<const std::vector<OwnedEvent>> batch, bool here) {
  const std::vector<OwnedEvent>& events = *batch;
  std::lock_guard lock(mutex_);
  if (here) ingested_ += events.size();
  for (std::size_t i = 0; i < events.size(); ++i) {
    Event e = events[i].view();
    // Each event, then what the watchdog said about it (a "recovered").
    if (hub_ != nullptr) pending_.push_back(event_entry(batch, i));
    watchdog_.observe(e);
    bool ended =
        e.status == Status::Completed || e.status == Status::Failed || e.status == Status::Skipped;
    if (!here || e.kind != Kind::Stage || !ended || !e.elapsed_ns) continue;
    std::pair<std::string, std::string> key{std::string(e.stage),
                                            std::string(status_name(e.status))};
    auto it = stages_.find(key);
    if (it == stages_.end()) {
      if (stages_.size() >= kMaxSeries) key.first = "_other";
      it = stages_.try_emplace(std::move(key)).first;
    }
    double seconds = static_cast<double>(*e.elapsed_ns) / 1e9;
    Histogram& h = it->second;
    auto bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds);
    if (bucket != kBuckets.end()) ++h.buckets[static_cast<std::size_t>(bucket - kBuckets.begin())];
    ++h.count;
    h.sum += seconds;
  }
  if (hub_ != nullptr) hub_->publish(std::exchange(pending_, {}));
}

void LiveState::tick(std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  watchdog_.tick(now_ns);
  if (hub_ == nullptr) return;
  publish_worker_changes(now_ns);
  hub_->publish(std::exchange(pending_, {}));
}

void LiveState::publish_worker_changes(std::int64_t now_ns) {
  for (WorkerView& w : watchdog_.workers(now_ns)) {
    auto it = shown_.find(w.worker);
    std::string_view previous;
    if (it != shown_.end()) {
      const Shown& s = it->second;
      if (s.state == w.state && s.stage == w.stage && s.task == w.task) continue;
      previous = worker_state_name(s.state);
    }
    StreamEntry entry;
    entry.type = StreamType::Worker;
    entry.data = R"({"at":")";
    append_iso_timestamp(entry.data, now_ns);
    entry.data += R"(","previous_state":)";
    if (previous.empty()) {
      entry.data += "null";
    } else {
      append_json_string(entry.data, previous);
    }
    entry.data += ',';
    std::size_t at = entry.data.size();
    append_worker(entry.data, w, now_ns);
    entry.data.erase(at, 1);  // The worker object's '{': its members follow.
    entry.worker = w.worker;
    entry.stage = w.stage;
    shown_.insert_or_assign(w.worker, Shown{w.state, std::move(w.stage), std::move(w.task)});
    pending_.push_back(std::move(entry));
  }
}

std::string LiveState::workers_json(std::int64_t now_ns) const {
  std::lock_guard lock(mutex_);
  std::string out = R"({"success":true,"workers":[)";
  bool first = true;
  for (const WorkerView& w : watchdog_.workers(now_ns)) {
    if (!first) out += ',';
    first = false;
    append_worker(out, w, now_ns);
  }
  out += R"(],"queue":)";
  append_json_string(out, watchdog_.queue());
  out += '}';
  return out;
}

std::string LiveState::metrics_text(std::int64_t now_ns) const {
  std::lock_guard lock(mutex_);
  std::string out;
  append_family(out, "stagelog_events_ingested_total", "counter",
                "Events stored by this server since it started.");
  out += "stagelog_events_ingested_total ";
  append_number(out, ingested_);
  out += '\n';

  append_family(out, "stagelog_stage_duration_seconds", "histogram",
                "Time stages took, from their end events, by stage and status.");
  for (const auto& [key, h] : stages_) {
    std::string labels = "stage=";
    append_label_value(labels, key.first);
    labels += ",status=";
    append_label_value(labels, key.second);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kBuckets.size(); ++i) {
      out += "stagelog_stage_duration_seconds_bucket{" + labels + ",le=\"";
      if (i < kBuckets.size()) {
        cumulative += h.buckets[i];
        append_number(out, kBuckets[i]);
      } else {
        cumulative = h.count;
        out += "+Inf";
      }
      out += "\"} ";
      append_number(out, cumulative);
      out += '\n';
    }
    out += "stagelog_stage_duration_seconds_sum{" + labels + "} ";
    append_number(out, h.sum);
    out += "\nstagelog_stage_duration_seconds_count{" + labels + "} ";
    append_number(out, h.count);
    out += '\n';
  }

  std::vector<WorkerView> workers = watchdog_.workers(now_ns);
  append_family(out, "stagelog_workers", "gauge", "Workers seen, by state.");
  for (WorkerState state : {WorkerState::Running, WorkerState::Idle, WorkerState::Stuck,
                            WorkerState::Silent, WorkerState::Crashed, WorkerState::Done}) {
    auto n = std::count_if(workers.begin(), workers.end(),
                           [&](const WorkerView& w) { return w.state == state; });
    out += "stagelog_workers{state=\"";
    out += worker_state_name(state);
    out += "\"} " + std::to_string(n) + "\n";
  }
  append_family(out, "stagelog_open_stages", "gauge", "Workers with a stage open.");
  auto open = std::count_if(workers.begin(), workers.end(),
                            [](const WorkerView& w) { return !w.stage.empty(); });
  out += "stagelog_open_stages " + std::to_string(open) + "\n";
  append_family(out, "stagelog_stuck_total", "counter",
                "Stuck stage and stuck task warnings raised since the server started.");
  out += "stagelog_stuck_total ";
  append_number(out, stuck_);
  out += '\n';
  return out;
}

}  // namespace stagelog::detail
