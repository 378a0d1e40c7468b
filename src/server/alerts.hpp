#pragma once

// The server's alerts (include/stagelog/server/alerts.hpp says what a user configures): which
// incidents fire, and their delivery to webhooks.
//
// Threads: observe() from request threads once the store acknowledged the events,
// watchdog_report() from the live thread, recent_json() from any; one thread of its own POSTs
// the alerts (retrying with doubling delays) and evaluates the slow_stage rules against the
// store every AlertConfig::evaluate_every. The Store must outlive the engine; the destructor
// stops the thread (an alert still waiting for a retry is dropped and reported).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "stagelog/parse.hpp"
#include "stagelog/server/alerts.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

class AlertEngine {
 public:
  struct Hooks {
    std::function<std::int64_t()> clock;              // Wall clock, ns.
    std::function<void(std::string_view)> on_error;   // A delivery that gave up, a bad store.
    std::function<void(const std::string&)> publish;  // Each alert's JSON, as it fires.
    // Set: rules fire and slow_stage rules run only while it says true (the one server of
    // those sharing a store that leads); events and reports still count meanwhile.
    std::function<bool()> leading;
  };

  AlertEngine(server::AlertConfig config, store::Store& store, Hooks hooks);
  ~AlertEngine();
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  // Events the server stored: failed stage and node ends count for repeated_failures rules.
  void observe(std::span<const OwnedEvent> events);
  // A report of the server's watchdog (stuck_stage, stuck_task, silent, crashed, ...).
  void watchdog_report(const Event& report);
  // Runs the slow_stage rules now (the thread does so every evaluate_every).
  void evaluate(std::int64_t now_ns);

  // GET /api/v1/alerts: {"success":true,"alerts":[...]}, the last kRecent alerts, newest first.
  std::string recent_json() const;

  static constexpr std::size_t kRecent = 100;
  static constexpr std::size_t kMaxQueued = 1000;  // Deliveries waiting; more are dropped.

 private:
  struct Delivery {
    std::string alert_id;
    std::string body;
    std::size_t webhook = 0;
    int attempt = 0;  // Tried so far.
    std::chrono::steady_clock::time_point due;
  };

  // With mutex_ held: fires the rule for `incident` unless it fired within its cooldown.
  void fire_locked(const server::AlertRule& rule, const std::string& incident, std::int64_t at_ns,
                   std::string json_fields, const std::string& summary);
  void loop();
  bool deliver(const Delivery& d, std::string& error);

  server::AlertConfig config_;
  store::Store& store_;
  Hooks hooks_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, std::deque<std::int64_t>> failures_;  // Per rule and stage.
  std::map<std::string, std::int64_t> fired_at_;              // Per incident.
  std::deque<std::string> recent_;                            // Alert JSON, newest first.
  std::deque<Delivery> queue_;
  std::thread thread_;
};

}  // namespace stagelog::detail
