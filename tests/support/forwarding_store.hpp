#pragma once

// A Store that forwards every call to another one. Test doubles (a store that fails when told,
// one that holds a write) derive from it and override only the calls they change.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "stagelog/store/store.hpp"

namespace stagelog::test {

class ForwardingStore : public store::Store {
 public:
  explicit ForwardingStore(store::Store& inner) : inner_(inner) {}

  stagelog::Result<void> put_execution(const Execution& execution,
                                       std::int64_t expires_at_ns) override {
    return inner_.put_execution(execution, expires_at_ns);
  }
  stagelog::Result<std::optional<Execution>> latest(std::string_view tracking_id,
                                                    std::int64_t now_ns) override {
    return inner_.latest(tracking_id, now_ns);
  }
  stagelog::Result<std::optional<Execution>> attempt(std::string_view tracking_id, int n,
                                                     std::int64_t now_ns) override {
    return inner_.attempt(tracking_id, n, now_ns);
  }
  stagelog::Result<std::vector<store::AttemptSummary>> attempts(std::string_view tracking_id,
                                                                std::int64_t now_ns) override {
    return inner_.attempts(tracking_id, now_ns);
  }
  stagelog::Result<void> append_events(std::span<const OwnedEvent> events,
                                       std::int64_t expires_at_ns) override {
    return inner_.append_events(events, expires_at_ns);
  }
  stagelog::Result<void> write(std::span<const store::EventsWrite> events,
                               std::span<const store::ExecutionWrite> executions) override {
    return inner_.write(events, executions);
  }
  stagelog::Result<std::optional<store::BatchRecord>> batch(std::string_view key,
                                                            std::int64_t now_ns) override {
    return inner_.batch(key, now_ns);
  }
  stagelog::Result<std::vector<OwnedEvent>> events(std::string_view run, std::int64_t now_ns,
                                                   std::size_t limit) override {
    return inner_.events(run, now_ns, limit);
  }
  stagelog::Result<std::vector<store::ExecutionSummary>> list_executions(
      const store::ExecutionQuery& query, std::int64_t now_ns) override {
    return inner_.list_executions(query, now_ns);
  }
  stagelog::Result<std::vector<store::StoredEvent>> event_page(std::string_view run,
                                                               std::optional<store::Position> after,
                                                               std::size_t limit,
                                                               std::int64_t now_ns) override {
    return inner_.event_page(run, after, limit, now_ns);
  }
  stagelog::Result<std::vector<store::StageStats>> stage_stats(const store::StageStatsQuery& query,
                                                               std::int64_t now_ns) override {
    return inner_.stage_stats(query, now_ns);
  }
  stagelog::Result<std::vector<store::FailurePattern>> failure_patterns(
      const store::FailureQuery& query, std::int64_t now_ns) override {
    return inner_.failure_patterns(query, now_ns);
  }
  stagelog::Result<std::size_t> purge(std::int64_t now_ns) override { return inner_.purge(now_ns); }

 protected:
  store::Store& inner_;
};

}  // namespace stagelog::test
