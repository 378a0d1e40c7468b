#pragma once

// Whether the store takes writes, as the requests that write find out: GET /readyz answers
// from it, and it tells the server's log when writes start failing (at most once per
// log_interval for each kind of failure, with how many requests were refused since) and when
// they succeed again.
//
// Threads: every method may be called from any thread at once. write_succeeded() is on every
// write's path: while the store is healthy it reads one atomic and returns.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "stagelog/error.hpp"

namespace stagelog::detail {

class StoreHealth {
 public:
  struct Options {
    std::function<std::int64_t()> clock;           // Monotonic ns. Default: steady_ns.
    std::function<void(std::string_view)> report;  // One line for the server's log.
    std::chrono::nanoseconds log_interval = std::chrono::seconds(10);
  };

  explicit StoreHealth(Options options);

  // A write request the store refused with `error`. Only failures of the store itself count
  // (ErrorKind DiskFull, Io, Busy); another kind is about the request, and is ignored.
  void write_failed(const Error& error);
  // A write request the store took.
  void write_succeeded();

  // Why the store is not ready ("disk full"), or nullopt: the last counted write failed and
  // none succeeded since. Names no path: /readyz answers anyone.
  std::optional<std::string> not_ready() const;

 private:
  struct PerKind {
    std::optional<std::int64_t> logged_at;  // The last line about this kind.
    std::size_t refused_since_log = 0;
  };

  Options options_;
  std::atomic<bool> failing_{false};
  mutable std::mutex mutex_;  // Guards what follows.
  ErrorKind last_kind_ = ErrorKind::Other;
  std::int64_t failing_since_ = 0;
  std::size_t refused_ = 0;  // Since writes began to fail.
  std::array<PerKind, 4> kinds_{};
};

// "disk full", "I/O error", "busy", "error".
std::string_view kind_text(ErrorKind kind) noexcept;

}  // namespace stagelog::detail
