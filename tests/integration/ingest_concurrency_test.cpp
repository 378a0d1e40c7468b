// The ingest pipeline (IngestWriter: request threads, the fold thread, the store thread) under
// concurrent requests, with a store that fails now and then: every acknowledged event is
// stored, no event of a failed request is, and every execution is whole. The tsan preset runs
// this file.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fake_clock.hpp"
#include "server/ingest.hpp"
#include "store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using test::FakeClock;
using test::TempDir;

constexpr std::int64_t kDay = 86'400'000'000'000;

// Forwards to a real store; every seventh write fails without storing anything.
class FlakyStore final : public store::Store {
 public:
  explicit FlakyStore(store::Store& inner) : inner_(inner) {}

  store::Result<void> write(std::span<const store::EventsWrite> events,
                            std::span<const store::ExecutionWrite> executions) override {
    if (++writes_ % 7 == 0) return Error("sqlite store x.db: cannot store: disk I/O error");
    return inner_.write(events, executions);
  }
  store::Result<void> put_execution(const server::Execution& e, std::int64_t x) override {
    return inner_.put_execution(e, x);
  }
  store::Result<std::optional<server::Execution>> latest(std::string_view id,
                                                         std::int64_t now) override {
    return inner_.latest(id, now);
  }
  store::Result<std::optional<server::Execution>> attempt(std::string_view id, int n,
                                                          std::int64_t now) override {
    return inner_.attempt(id, n, now);
  }
  store::Result<std::vector<store::AttemptSummary>> attempts(std::string_view id,
                                                             std::int64_t now) override {
    return inner_.attempts(id, now);
  }
  store::Result<void> append_events(std::span<const OwnedEvent> events, std::int64_t x) override {
    return inner_.append_events(events, x);
  }
  store::Result<std::vector<OwnedEvent>> events(std::string_view run, std::int64_t now,
                                                std::size_t limit) override {
    return inner_.events(run, now, limit);
  }
  store::Result<std::size_t> purge(std::int64_t now) override { return inner_.purge(now); }

 private:
  store::Store& inner_;
  std::atomic<int> writes_{0};  // Only the store thread writes; atomic for clarity.
};

// "c<client>-job<job>", built piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + string.
std::string job_name(int client, int job) {
  std::string name = "c";
  name += std::to_string(client);
  name += "-job";
  name += std::to_string(job);
  return name;
}

OwnedEvent event(const std::string& run, Kind kind, Status status, std::int64_t ts,
                 std::string stage) {
  OwnedEvent e;
  e.ts_ns = ts;
  e.kind = kind;
  e.status = status;
  e.run = run;
  e.stage = std::move(stage);
  return e;
}

TEST(IngestConcurrencyTest, AcknowledgedEventsAreStoredAndFailedOnesAreNot) {
  constexpr int kClients = 4;
  constexpr int kJobsPerClient = 25;
  TempDir dir;
  store::SqliteStore sqlite(dir.path() / "s.db");
  FlakyStore store(sqlite);
  FakeClock clock;
  // A small bound: runs leave memory and are read back while writes are in flight.
  detail::IngestWriter writer(store, {3, clock.fn()});
  const std::int64_t t = clock.now();

  // Each client runs its jobs; a request that fails is sent again, as the network sink does.
  std::mutex mutex;
  std::map<std::string, int> failures;  // Per job: requests that failed.
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int j = 0; j < kJobsPerClient; ++j) {
        std::string run = job_name(c, j);
        std::int64_t ts = t + j * 100;
        std::vector<std::vector<OwnedEvent>> requests = {
            {event(run, Kind::Run, Status::Starting, ts, "job"),
             event(run, Kind::Stage, Status::Starting, ts + 1, "AGENT")},
            {event(run, Kind::Stage, Status::Completed, ts + 2, "AGENT"),
             event(run, Kind::Stage, Status::Starting, ts + 3, "JUDGE")},
            {event(run, Kind::Stage, Status::Completed, ts + 4, "JUDGE"),
             event(run, Kind::Run, Status::Completed, ts + 5, "job")},
        };
        for (auto& request : requests) {
          for (int attempt = 0; attempt < 10; ++attempt) {
            if (writer.add_events(request, t + kDay)) break;
            std::lock_guard lock(mutex);
            ++failures[run];
          }
        }
      }
    });
  }
  for (auto& client : clients) client.join();

  int failed_requests = 0;
  for (const auto& [run, n] : failures) failed_requests += n;
  EXPECT_GT(failed_requests, 0) << "the store never failed: nothing was tested";
  for (int c = 0; c < kClients; ++c) {
    for (int j = 0; j < kJobsPerClient; ++j) {
      std::string run = job_name(c, j);
      SCOPED_TRACE(run);
      // Each event once: failed requests stored nothing, retried ones everything.
      auto events = sqlite.events(run, t, 100);
      ASSERT_TRUE(events);
      EXPECT_EQ(events->size(), 6u);
      auto latest = sqlite.latest(run, t);
      ASSERT_TRUE(latest && *latest);
      const server::Execution& e = **latest;
      ASSERT_EQ(e.steps.size(), 4u);
      EXPECT_EQ(e.steps[0].step, "AGENT");
      EXPECT_EQ(e.steps[0].status, "in_progress");
      EXPECT_EQ(e.steps[1].status, "completed");
      EXPECT_EQ(e.steps[2].step, "JUDGE");
      EXPECT_EQ(e.steps[3].status, "completed");
      EXPECT_TRUE(e.completed_at_ns.has_value());
      auto attempts = sqlite.attempts(run, t);
      ASSERT_TRUE(attempts);
      EXPECT_EQ(attempts->size(), 1u);
    }
  }
}

}  // namespace
}  // namespace stagelog
