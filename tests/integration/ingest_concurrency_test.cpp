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

#include "events.hpp"
#include "fake_clock.hpp"
#include "forwarding_store.hpp"
#include "server/ingest.hpp"
#include "store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using test::FakeClock;
using test::run_event;
using test::TempDir;

constexpr std::int64_t kDay = 86'400'000'000'000;

// Forwards to a real store; every seventh write fails without storing anything.
class FlakyStore final : public test::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  stagelog::Result<void> write(std::span<const store::EventsWrite> events,
                               std::span<const store::ExecutionWrite> executions) override {
    if (++writes_ % 7 == 0) return Error("sqlite store x.db: cannot store: disk I/O error");
    return inner_.write(events, executions);
  }

 private:
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
            {run_event(run, Kind::Run, Status::Starting, ts, "job"),
             run_event(run, Kind::Stage, Status::Starting, ts + 1, "AGENT")},
            {run_event(run, Kind::Stage, Status::Completed, ts + 2, "AGENT"),
             run_event(run, Kind::Stage, Status::Starting, ts + 3, "JUDGE")},
            {run_event(run, Kind::Stage, Status::Completed, ts + 4, "JUDGE"),
             run_event(run, Kind::Run, Status::Completed, ts + 5, "job")},
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
      const Execution& e = **latest;
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
