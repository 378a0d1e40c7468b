#pragma once

#include <atomic>
#include <cstdint>

#include "base/time.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace stagelog::detail {

// Ticks for the hot path: the time-stamp counter where the CPU has one, else CLOCK_MONOTONIC
// in ns.
inline std::int64_t ticks() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return static_cast<std::int64_t>(__rdtsc());
#else
  return steady_ns();
#endif
}

// Converts ticks to wall-clock ns. Calibrated briefly at construction, then refined by the
// backend thread every second against CLOCK_REALTIME over an ever longer baseline, so a
// wall-clock step (NTP) shows up within a second. to_ns() is for the backend thread;
// ns_per_tick() may be read by any thread.
class TickClock {
 public:
  TickClock();
  std::int64_t to_ns(std::int64_t tick) const noexcept {
    return anchor_ns_ + static_cast<std::int64_t>(static_cast<double>(tick - anchor_tick_) *
                                                  ns_per_tick_.load(std::memory_order_relaxed));
  }
  std::int64_t duration_ns(std::int64_t ticks) const noexcept {
    return static_cast<std::int64_t>(static_cast<double>(ticks) *
                                     ns_per_tick_.load(std::memory_order_relaxed));
  }
  double ns_per_tick() const noexcept { return ns_per_tick_.load(std::memory_order_relaxed); }
  // Backend: re-anchor if a second has passed since the last time.
  void maybe_resync() noexcept;

 private:
  std::int64_t first_tick_, first_steady_;
  std::int64_t anchor_tick_, anchor_ns_;
  std::int64_t next_resync_steady_;
  std::atomic<double> ns_per_tick_{1.0};
};

}  // namespace stagelog::detail
