// The network sink under concurrent use (run under ThreadSanitizer by the tsan preset): threads
// logging through a recorder while the sender posts, the server restarts, and other threads read
// the counters, wait, and close.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ndjson_receiver.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using namespace std::chrono_literals;

using test::Receiver;

constexpr auto kPatience = 60s;  // Upper bound on any wait (sanitizers are slow).

NetworkSinkOptions options_for(const std::string& url, const std::filesystem::path& spool) {
  NetworkSinkOptions o;
  o.url = url;
  o.spool_path = spool;
  o.flush_interval = 5ms;
  o.batch_events = 100;
  o.retry_initial = 5ms;
  o.retry_max = 50ms;
  o.shutdown_timeout = 10s;
  return o;
}

Options recorder_options() {
  Options o;
  o.watchdog = std::nullopt;
  o.install_crash_handlers = false;
  o.on_error = [](std::string_view) {};
  return o;
}

// Each worker's messages "0", "1", ... in the order the server got them.
std::map<std::string, std::vector<int>> by_worker(const std::vector<OwnedEvent>& events) {
  std::map<std::string, std::vector<int>> out;
  for (const auto& e : events) {
    if (e.component == "worker") out[e.worker].push_back(std::stoi(e.message));
  }
  return out;
}

TEST(NetworkSinkConcurrencyTest, ThreadsLoggingThroughAServerRestartLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1500;
  test::TempDir dir;
  Receiver receiver(0, kPatience);  // Any free port.
  auto sink = std::make_shared<NetworkSink>(options_for(receiver.url(), dir.path() / "spool"));
  {
    Recorder recorder(recorder_options());
    recorder.add_sink(sink);
    Logger worker = recorder.component("worker");
    std::atomic<bool> done{false};
    std::thread watcher([&] {  // Reads the counters all along.
      std::uint64_t last_sent = 0;
      while (!done.load()) {
        auto s = sink->stats();
        EXPECT_GE(s.sent, last_sent);
        last_sent = s.sent;
        (void)sink->spool_path();
        std::this_thread::sleep_for(1ms);
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        recorder.set_worker("w" + std::to_string(t));
        for (int i = 0; i < kPerThread; ++i) worker.info(std::to_string(i));
      });
    }
    ASSERT_TRUE(receiver.wait_for_lines(200));
    receiver.stop();
    std::this_thread::yield();
    receiver.start();
    for (auto& th : threads) th.join();
    recorder.flush();
    ASSERT_TRUE(sink->wait_sent(kPatience));
    done.store(true);
    watcher.join();
  }
  auto got = by_worker(receiver.events());
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kThreads));
  std::vector<int> expected(kPerThread);
  for (int i = 0; i < kPerThread; ++i) expected[static_cast<std::size_t>(i)] = i;
  for (const auto& [worker, numbers] : got) {
    // At least once: a batch whose answer was cut by the restart may come twice. Dropping
    // repeats must leave every number once, in order.
    std::vector<int> seen;
    for (int n : numbers) {
      if (seen.empty() || n > seen.back()) seen.push_back(n);
    }
    EXPECT_EQ(seen, expected) << worker;
  }
  EXPECT_EQ(sink->stats().dropped, 0u);
}

TEST(NetworkSinkConcurrencyTest, CloseWhileTheBackendWritesKeepsEveryEvent) {
  constexpr int kThreads = 3;
  constexpr int kPerThread = 1000;
  test::TempDir dir;
  Receiver receiver(0, kPatience);  // Any free port.
  auto sink = std::make_shared<NetworkSink>(options_for(receiver.url(), dir.path() / "spool"));
  {
    Recorder recorder(recorder_options());
    recorder.add_sink(sink);
    Logger worker = recorder.component("worker");
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        recorder.set_worker("w" + std::to_string(t));
        for (int i = 0; i < kPerThread; ++i) worker.info(std::to_string(i));
      });
    }
    std::thread waiter([&] { (void)sink->wait_sent(10ms); });
    std::thread closer([&] { sink->close(); });
    for (auto& th : threads) th.join();
    closer.join();
    waiter.join();
    recorder.flush();
  }
  // Sent before close, or kept in the spool after: every event is one or the other, the
  // recorder's closing event (from the destructor, on no worker) included.
  auto stats = sink->stats();
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.rejected, 0u);
  std::uint64_t worker_events_sent = 0;
  for (const auto& [w, numbers] : by_worker(receiver.events()))
    worker_events_sent += numbers.size();
  EXPECT_EQ(worker_events_sent + stats.queued, std::uint64_t{kThreads} * kPerThread + 1);
}

}  // namespace
}  // namespace stagelog
