#include "server/store_health.hpp"

#include <utility>

#include "base/time.hpp"

namespace stagelog::detail {

namespace {

std::string requests(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " request" : " requests");
}

// Whole seconds, rounded to the nearest: "in the last 10 s".
std::string seconds(std::int64_t ns) {
  return std::to_string((ns + kNsPerSecond / 2) / kNsPerSecond);
}

}  // namespace

std::string_view kind_text(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::DiskFull:
      return "disk full";
    case ErrorKind::Io:
      return "I/O error";
    case ErrorKind::Busy:
      return "busy";
    case ErrorKind::Other:
      break;
  }
  return "error";
}

StoreHealth::StoreHealth(Options options) : options_(std::move(options)) {
  if (!options_.clock) options_.clock = steady_ns;
  if (!options_.report) options_.report = [](std::string_view) {};
}

void StoreHealth::write_failed(const Error& error) {
  const ErrorKind kind = error.kind();
  if (kind == ErrorKind::Other) return;
  const std::int64_t now = options_.clock();
  std::string line;
  {
    std::lock_guard lock(mutex_);
    if (!failing_.load(std::memory_order_relaxed)) {
      failing_since_ = now;
      refused_ = 0;
      kinds_ = {};
    }
    failing_.store(true, std::memory_order_relaxed);
    last_kind_ = kind;
    ++refused_;
    PerKind& k = kinds_[static_cast<std::size_t>(kind)];
    ++k.refused_since_log;
    if (k.logged_at && now - *k.logged_at < options_.log_interval.count()) return;
    line =
        "cannot write to the store: " + std::string(kind_text(kind)) + " (" + error.what() + "); ";
    if (!k.logged_at) {
      line += "refusing writes until it can";
    } else {
      line += requests(k.refused_since_log) + " refused in the last " +
              seconds(now - *k.logged_at) + " s";
    }
    k.logged_at = now;
    k.refused_since_log = 0;
  }
  options_.report(line);
}

void StoreHealth::write_succeeded() {
  if (!failing_.load(std::memory_order_relaxed)) return;
  const std::int64_t now = options_.clock();
  std::string line;
  {
    std::lock_guard lock(mutex_);
    if (!failing_.load(std::memory_order_relaxed)) return;
    failing_.store(false, std::memory_order_relaxed);
    line = "writes to the store succeed again, after " + seconds(now - failing_since_) + " s and " +
           requests(refused_) + " refused";
  }
  options_.report(line);
}

std::optional<std::string> StoreHealth::not_ready() const {
  if (!failing_.load(std::memory_order_relaxed)) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (!failing_.load(std::memory_order_relaxed)) return std::nullopt;
  return "the last write to the store failed: " + std::string(kind_text(last_kind_));
}

}  // namespace stagelog::detail
