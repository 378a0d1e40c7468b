// The stream's hub under concurrent publishers and readers (labelled concurrency: the tsan
// preset runs it): every reader sees every entry once, in id order, or is told exactly how
// many it missed.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "server/stream.hpp"

namespace stagelog::detail {
namespace {

using namespace std::chrono_literals;

constexpr int kPublishers = 4;
constexpr int kBatches = 500;
constexpr int kBatch = 10;
constexpr std::uint64_t kTotal = std::uint64_t{kPublishers} * kBatches * kBatch;

struct Tally {
  std::uint64_t seen = 0;
  std::uint64_t missed = 0;
  bool ordered = true;  // Each id one past the last (or past what was missed).
};

// Reads until `total` entries were seen or missed.
Tally drain(const StreamHub& hub, std::uint64_t total, bool slow) {
  Tally t;
  std::uint64_t position = 0;
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (t.seen + t.missed < total && std::chrono::steady_clock::now() < give_up) {
    auto r = hub.read(position, 64, std::chrono::steady_clock::now() + 10ms);
    t.missed += r.missed;
    position += r.missed;
    for (const auto& e : r.entries) {
      if (e->id != position + 1) t.ordered = false;
      position = e->id;
      ++t.seen;
    }
    if (slow) std::this_thread::yield();
  }
  return t;
}

TEST(StreamHubConcurrencyTest, ReadersSeeEveryEntryOnceInOrderOrCountWhatTheyMissed) {
  StreamHub big(kTotal, std::size_t{1} << 30);
  StreamHub small(16, std::size_t{1} << 30);
  std::vector<Tally> tallies(4);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { tallies[0] = drain(big, kTotal, false); });
  threads.emplace_back([&] { tallies[1] = drain(big, kTotal, true); });
  threads.emplace_back([&] { tallies[2] = drain(small, kTotal, false); });
  threads.emplace_back([&] { tallies[3] = drain(small, kTotal, true); });
  for (int p = 0; p < kPublishers; ++p) {
    threads.emplace_back([&, p] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<StreamEntry> batch(kBatch);
        for (auto& e : batch) e.data = "{\"p\":" + std::to_string(p) + "}";
        std::vector<StreamEntry> copy = batch;
        big.publish(std::move(batch));
        small.publish(std::move(copy));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(big.span().last, kTotal);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(tallies[i].seen + tallies[i].missed, kTotal) << "reader " << i;
    EXPECT_TRUE(tallies[i].ordered) << "reader " << i;
  }
  EXPECT_EQ(tallies[0].missed, 0u);  // The big hub keeps everything.
  EXPECT_EQ(tallies[1].missed, 0u);
}

}  // namespace
}  // namespace stagelog::detail
