#pragma once

// The server's alerts (include/stagelog/server/alerts.hpp says what a user configures): which
// incidents fire, and their delivery to webhooks.
//
// Threads: observe() from request threads once the store acknowledged the events,
// watchdog_report() from the live thread, recent_json() and fired() from any; one thread of its
// own POSTs the alerts (retrying with doubling delays), and evaluates the slow_stage rules
// against the store and sends the reports due (report rules) once at its start and then every
// AlertConfig::evaluate_every. The Store must outlive the engine; the destructor
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

#include "server/report.hpp"
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
    // The worker incidents the reports list; null: the reports say only a server knows them.
    // Must outlive the engine.
    const ReportIncidents* incidents = nullptr;
  };

  AlertEngine(server::AlertConfig config, store::Store& store, Hooks hooks);
  ~AlertEngine();
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  // Events the server stored: failed stage and node ends count for repeated_failures rules.
  void observe(std::span<const OwnedEvent> events);
  // A report of the server's watchdog (stuck_stage, stuck_task, silent, crashed, ...).
  void watchdog_report(const Event& report);
  // Runs the slow_stage rules and sends the reports due now (the thread does so every
  // evaluate_every).
  void evaluate(std::int64_t now_ns);
  // Sends the report of each report rule whose latest period ended at or before now_ns,
  // unless it was sent already (by this engine, or by any engine sharing the store: the first
  // to send it records it there, as an ingest batch key "report/<rule>/<period end>"). Only
  // while leading. A report that cannot be made or recorded is tried again on the next call.
  void send_reports(std::int64_t now_ns);
  // The end of the latest period of a report rule that ended at or before now_ns.
  static std::int64_t report_due(const server::AlertRule& rule, std::int64_t now_ns);

  // The alerts fired in [since_ns, until_ns), oldest first (the last kFired of them).
  std::vector<FiredAlert> fired(std::int64_t since_ns, std::int64_t until_ns) const;

  // GET /api/v1/alerts: {"success":true,"alerts":[...]}, the last kRecent alerts, newest first.
  std::string recent_json() const;

  static constexpr std::size_t kRecent = 100;
  static constexpr std::size_t kMaxQueued = 1000;  // Deliveries waiting; more are dropped.
  static constexpr std::size_t kFired = 1000;      // Alerts kept for the reports.

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
  // With mutex_ held: queues `body` for each of the rule's webhooks.
  void enqueue_locked(const server::AlertRule& rule, const std::string& id,
                      const std::string& body);
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
  std::deque<FiredAlert> fired_;                              // Oldest first.
  std::map<std::string, std::int64_t> report_sent_;  // Per report rule: the last period end sent.
  std::deque<Delivery> queue_;
  std::thread thread_;
};

}  // namespace stagelog::detail
