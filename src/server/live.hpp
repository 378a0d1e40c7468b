#pragma once

// What `stagelog serve` knows live, from the events it has stored: each worker's state (the
// Watchdog, the same rules as the recorder's and `stagelog tail`'s) and the counters that
// GET /metrics shows. Thread-safe, one mutex: request threads feed it the events they have
// stored, the server's live thread ticks it, reads come from any request thread. With a
// StreamHub it also publishes, in the order it sees them, the events, the watchdog's warnings
// and (on each tick) the workers whose state, stage or task changed.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "server/stream.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::detail {

class LiveState {
 public:
  // `hub`, when given, must outlive the LiveState. `forward`, when set, gets each of the
  // watchdog's reports too (the alerts), with this object's mutex held: it must not call back
  // into it.
  explicit LiveState(WatchdogOptions options, StreamHub* hub = nullptr,
                     Watchdog::Report forward = {});

  // Events stored, in the order they were stored. The stream keeps the batch (not a copy).
  // `here`: this server stored them; false for another server's (the store's change feed),
  // which the watchdog and the stream see but this server's metrics do not count.
  void observe(std::shared_ptr<const std::vector<OwnedEvent>> events, bool here = true);
  // Runs the watchdog's rules at now_ns.
  void tick(std::int64_t now_ns);

  // GET /api/v1/workers: {"success":true,"workers":[...],"queue":"..."}.
  std::string workers_json(std::int64_t now_ns) const;
  // GET /metrics: Prometheus text exposition format 0.0.4.
  std::string metrics_text(std::int64_t now_ns) const;

  // Upper bounds of the stage duration histogram's buckets, in seconds (+Inf follows).
  static constexpr std::array<double, 18> kBuckets = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
  // Distinct (stage, status) series at most; later stages count as stage "_other".
  static constexpr std::size_t kMaxSeries = 500;

 private:
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> buckets{};  // Not cumulative.
    std::uint64_t count = 0;
    double sum = 0;
  };

  struct Shown {  // A worker as the stream last showed it.
    WorkerState state = WorkerState::Idle;
    std::string stage;
    std::string task;
  };
  void publish_worker_changes(std::int64_t now_ns);

  mutable std::mutex mutex_;
  StreamHub* hub_;
  std::vector<StreamEntry> pending_;  // For hub_, published before mutex_ is released.
  std::map<std::string, Shown, std::less<>> shown_;
  Watchdog watchdog_;
  std::uint64_t ingested_ = 0;
  std::uint64_t stuck_ = 0;  // Stuck stage and stuck task warnings.
  Watchdog::Report forward_;
  std::map<std::pair<std::string, std::string>, Histogram> stages_;  // (stage, status)
};

}  // namespace stagelog::detail
