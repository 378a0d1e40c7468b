#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace stagelog::test {

// A wall clock that moves only when told. Pass clock.fn() as Options::clock.
class FakeClock {
 public:
  // 2026-01-04T19:30:15.234Z, the first line of seed 000.
  static constexpr std::int64_t kSeedStart = 1767555015234000000;

  explicit FakeClock(std::int64_t start_ns = kSeedStart) : now_(start_ns) {}

  std::int64_t now() const noexcept { return now_.load(); }
  void set(std::int64_t ns) noexcept { now_.store(ns); }
  template <typename Rep, typename Period>
  void advance(std::chrono::duration<Rep, Period> d) noexcept {
    now_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }
  std::function<std::int64_t()> fn() {
    return [this] { return now_.load(); };
  }

 private:
  std::atomic<std::int64_t> now_;
};

}  // namespace stagelog::test
