// Many threads into one recorder: exactly-once delivery, per-thread order, drop accounting.
// These also run under ThreadSanitizer (the tsan preset).

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "stagelog/recorder.hpp"
#include "stagelog/stage.hpp"

namespace stagelog {
namespace {

// Checks each worker's "seq" field arrives as 0, 1, 2 ... and counts events; keeps no copies.
class SequenceSink : public Sink {
 public:
  void write(const Event& e) override {
    if (e.kind == Kind::Log && e.component == "stagelog") {
      for (const auto& f : e.fields) {
        if (f.key == "dropped") reported_drops_ += std::get<std::uint64_t>(f.value);
      }
      return;
    }
    ++total_;
    for (const auto& f : e.fields) {
      if (f.key != "seq") continue;
      auto seq = std::get<std::int64_t>(f.value);
      auto& expected = next_[std::string(e.worker)];
      if (seq != expected) ++out_of_order_;
      expected = seq + 1;
    }
  }
  // Read after Recorder::flush(): flush orders the backend's writes before the caller's reads.
  std::uint64_t total() const { return total_; }
  std::uint64_t out_of_order() const { return out_of_order_; }
  std::uint64_t reported_drops() const { return reported_drops_; }
  const std::map<std::string, std::int64_t>& next() const { return next_; }

 private:
  std::uint64_t total_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::uint64_t reported_drops_ = 0;
  std::map<std::string, std::int64_t> next_;
};

TEST(RecorderConcurrencyTest, EightThreadsOfHundredThousandEventsArriveOnceEachInOrder) {
  constexpr int kThreads = 8;
  constexpr int kEvents = 100'000;
  Options options;
  options.queue_capacity = 64 * 1024;  // Small: the rings wrap and fill, producers block.
  Recorder recorder(std::move(options));
  auto sink = std::make_shared<SequenceSink>();
  recorder.add_sink(sink);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&recorder, t] {
      recorder.set_worker("w" + std::to_string(t));
      Logger log = recorder.component("worker");
      for (int i = 0; i < kEvents; ++i) log.info("event", kv("seq", i), kv("payload", "abc"));
    });
  }
  for (auto& t : threads) t.join();
  recorder.flush();
  EXPECT_EQ(sink->total(), std::uint64_t{kThreads} * kEvents);
  EXPECT_EQ(sink->out_of_order(), 0u);
  ASSERT_EQ(sink->next().size(), static_cast<std::size_t>(kThreads));
  for (const auto& [worker, next] : sink->next()) EXPECT_EQ(next, kEvents) << worker;
  EXPECT_EQ(recorder.dropped(), 0u);
}

TEST(RecorderConcurrencyTest, DropPolicyCountsAndReportsExactlyWhatItDrops) {
  constexpr int kThreads = 2;
  constexpr int kEvents = 50'000;
  Options options;
  options.queue_capacity = 4096;  // Tiny: the producers outrun the backend and drop.
  options.full_policy = FullPolicy::Drop;
  Recorder recorder(std::move(options));
  auto sink = std::make_shared<SequenceSink>();
  recorder.add_sink(sink);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&recorder, t] {
      recorder.set_worker("d" + std::to_string(t));
      for (int i = 0; i < kEvents; ++i) recorder.logger().info("event", kv("n", i));
    });
  }
  for (auto& t : threads) t.join();
  recorder.flush();
  const std::uint64_t dropped = recorder.dropped();
  EXPECT_EQ(sink->total() + dropped, std::uint64_t{kThreads} * kEvents);
  EXPECT_EQ(sink->reported_drops(), dropped);
}

TEST(RecorderConcurrencyTest, StagesFromManyThreadsPairUpPerWorker) {
  constexpr int kThreads = 6;
  constexpr int kStages = 2000;
  Recorder recorder;
  struct PairSink : Sink {
    void write(const Event& e) override {
      if (e.kind != Kind::Stage) return;
      auto& open = open_[std::string(e.worker)];
      if (e.status == Status::Starting) {
        if (open) ++errors_;
        open = true;
      } else {
        if (!open || !e.elapsed_ns) ++errors_;
        open = false;
        ++ended_;
      }
    }
    std::map<std::string, bool> open_;
    int errors_ = 0;
    int ended_ = 0;
  };
  auto sink = std::make_shared<PairSink>();
  recorder.add_sink(sink);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&recorder, t] {
      recorder.set_worker("gpu-" + std::to_string(t));
      for (int i = 0; i < kStages; ++i) StageScope stage(recorder, i % 2 == 0 ? "AGENT" : "JUDGE");
    });
  }
  for (auto& t : threads) t.join();
  recorder.flush();
  EXPECT_EQ(sink->errors_, 0);
  EXPECT_EQ(sink->ended_, kThreads * kStages);
}

TEST(RecorderConcurrencyTest, FlushFromSeveralThreadsWhileOthersLog) {
  constexpr int kEvents = 200'000;
  Recorder recorder;
  auto sink = std::make_shared<SequenceSink>();
  recorder.add_sink(sink);
  std::thread producer([&] {
    recorder.set_worker("busy");
    for (int i = 0; i < kEvents; ++i) recorder.logger().info("x", kv("seq", i));
  });
  std::vector<std::thread> flushers;
  for (int t = 0; t < 3; ++t) {
    flushers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) recorder.flush();
    });
  }
  for (auto& t : flushers) t.join();
  producer.join();
  recorder.flush();
  EXPECT_EQ(sink->out_of_order(), 0u);
  EXPECT_EQ(sink->total(), std::uint64_t{kEvents});
}

// A thread's first event and a flush() right after it: the flush must wait for that event,
// even though the thread's ring did not exist when the backend last looked.
TEST(RecorderConcurrencyTest, FlushCoversTheFirstEventOfANewThread) {
  Recorder recorder;
  auto sink = std::make_shared<SequenceSink>();
  recorder.add_sink(sink);
  for (int t = 0; t < 200; ++t) {
    std::thread([&recorder, t] {
      recorder.set_worker("new" + std::to_string(t));
      recorder.logger().info("first", kv("seq", 0));
      recorder.flush();
    }).join();
    ASSERT_EQ(sink->total(), static_cast<std::uint64_t>(t + 1));
  }
}

}  // namespace
}  // namespace stagelog
