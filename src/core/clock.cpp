#include "core/clock.hpp"

namespace stagelog::detail {

namespace {
constexpr std::int64_t kCalibrationNs = 2'000'000;
constexpr std::int64_t kResyncNs = 1'000'000'000;
}  // namespace

TickClock::TickClock() {
  first_steady_ = steady_ns();
  first_tick_ = ticks();
  std::int64_t now = first_steady_;
  while (now - first_steady_ < kCalibrationNs) now = steady_ns();
  std::int64_t tick = ticks();
  if (tick != first_tick_) {
    ns_per_tick_.store(
        static_cast<double>(now - first_steady_) / static_cast<double>(tick - first_tick_),
        std::memory_order_relaxed);
  }
  anchor_tick_ = ticks();
  anchor_ns_ = realtime_ns();
  next_resync_steady_ = steady_ns() + kResyncNs;
}

void TickClock::maybe_resync() noexcept {
  std::int64_t steady = steady_ns();
  if (steady < next_resync_steady_) return;
  std::int64_t tick = ticks();
  std::int64_t wall = realtime_ns();
  if (tick != first_tick_) {
    ns_per_tick_.store(
        static_cast<double>(steady - first_steady_) / static_cast<double>(tick - first_tick_),
        std::memory_order_relaxed);
  }
  anchor_tick_ = tick;
  anchor_ns_ = wall;
  next_resync_steady_ = steady + kResyncNs;
}

}  // namespace stagelog::detail
