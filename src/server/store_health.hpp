#pragma once

// Whether the store takes writes, as the requests find out: GET /readyz answers from it, and it
// tells the server's log when requests start failing (at most once per log_interval for each
// kind of failure, with how many requests were refused since) and when they succeed again.
// A write finds any failure of the store (a full disk, an I/O error, a busy file, a database
// server not reachable); a read counts only the last, which a read that succeeds ends too (the
// one Api::readyz makes while it lasts): a store that answers again needs no write to say so,
// where a full disk does.
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
  // (ErrorKind DiskFull, Io, Busy, Unavailable); Other is about the request, and is ignored.
  void write_failed(const Error& error);
  // A write request the store took: ends any failure.
  void write_succeeded();
  // A read request the store refused with `error`: counted when the store could not be reached
  // (ErrorKind::Unavailable), ignored otherwise.
  void read_failed(const Error& error);
  // A read the store answered: ends a failure of kind Unavailable, not one of writes.
  void read_succeeded();

  // Whether the last counted failure was a store not reached (and none ended it since): a read
  // may tell whether it is reached again (Api::readyz does).
  bool unreachable() const;

  // Why the store is not ready ("the last write to the store failed: disk full"), or nullopt:
  // the last counted failure was not ended since. Names no path: /readyz answers anyone.
  std::optional<std::string> not_ready() const;

 private:
  struct PerKind {
    std::optional<std::int64_t> logged_at;  // The last line about this kind.
    std::size_t refused_since_log = 0;
  };

  // failed(): a counted failure of a read or a write, and its line for the log. succeeded():
  // ends the failure (and logs so) when `ends_any` (a write) or when it is an Unavailable one.
  void failed(const Error& error);
  void succeeded(bool ends_any);

  Options options_;
  std::atomic<bool> failing_{false};
  mutable std::mutex mutex_;  // Guards what follows.
  ErrorKind last_kind_ = ErrorKind::Other;
  std::int64_t failing_since_ = 0;
  std::size_t refused_ = 0;  // Since the store began to fail.
  std::array<PerKind, 5> kinds_{};
};

// "disk full", "I/O error", "busy", "unreachable", "error".
std::string_view kind_text(ErrorKind kind) noexcept;

}  // namespace stagelog::detail
