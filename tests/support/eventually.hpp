#pragma once

#include <chrono>
#include <thread>

namespace stagelog::test {

// The default upper bound on a wait in a test; a passing test takes far less. Tests that need
// longer (sanitizers, a real server) pass their own.
inline constexpr std::chrono::seconds kDefaultPatience{20};

// Polls `done` every 2 ms until it holds (true) or `patience` passes (false): for state that has
// no condition to wait on (a sink's counters, a server's is_running()).
template <typename Pred>
bool eventually(Pred done, std::chrono::steady_clock::duration patience = kDefaultPatience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace stagelog::test
