// The network sink under concurrent use (run under ThreadSanitizer by the tsan preset): threads
// logging through a recorder while the sender posts, the server restarts, and other threads read
// the counters, wait, and close.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "stagelog/parse.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using namespace std::chrono_literals;

constexpr auto kPatience = 60s;  // Upper bound on any wait (sanitizers are slow).

// POST /api/v1/events on 127.0.0.1: records each line's event, answers 200.
class Receiver {
 public:
  Receiver() { listen_on(0); }
  ~Receiver() { stop(); }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }
  void start() { listen_on(port_); }
  std::vector<OwnedEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  bool wait_for_events(std::size_t n) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return events_.size() >= n; });
  }

 private:
  void listen_on(int port) {
    server_ = std::make_unique<httplib::Server>();
    server_->set_keep_alive_timeout(1);
    server_->Post("/api/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
      std::vector<OwnedEvent> got;
      std::string_view body = req.body;
      while (!body.empty()) {
        auto nl = body.find('\n');
        if (auto e = parse_json_event(body.substr(0, nl))) got.push_back(std::move(*e));
        if (nl == std::string_view::npos) break;
        body.remove_prefix(nl + 1);
      }
      std::size_t n = got.size();
      {
        std::lock_guard lock(mu_);
        for (auto& e : got) events_.push_back(std::move(e));
      }
      cv_.notify_all();
      res.set_content(R"({"accepted":)" + std::to_string(n) + R"(,"rejected":[]})",
                      "application/json");
    });
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    if (port == 0) {
      port_ = server_->bind_to_any_port("127.0.0.1");
    } else {
      while (!server_->bind_to_port("127.0.0.1", port) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
      }
    }
    thread_ = std::thread([s = server_.get()] { s->listen_after_bind(); });
    while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
  }

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<OwnedEvent> events_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

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
  Receiver receiver;
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
    ASSERT_TRUE(receiver.wait_for_events(200));
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
  Receiver receiver;
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
  // Sent before close, or kept in the spool after: every event is one or the other.
  auto stats = sink->stats();
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.rejected, 0u);
  std::uint64_t worker_events_sent = 0;
  for (const auto& [w, numbers] : by_worker(receiver.events()))
    worker_events_sent += numbers.size();
  EXPECT_EQ(worker_events_sent + stats.queued, std::uint64_t{kThreads} * kPerThread);
}

}  // namespace
}  // namespace stagelog
