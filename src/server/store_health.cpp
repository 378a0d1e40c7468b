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
    case ErrorKind::Unavailable:
      return "unreachable";
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
  if (error.kind() != ErrorKind::Other) failed(error);
}

void StoreHealth::write_succeeded() { succeeded(/*ends_any=*/true); }

void StoreHealth::read_failed(const Error& error) {
  if (error.kind() == ErrorKind::Unavailable) failed(error);
}

void StoreHealth::read_succeeded() { succeeded(/*ends_any=*/false); }

void StoreHealth::failed(const Error& error) {
  const ErrorKind kind = error.kind();
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
    if (kind == ErrorKind::Unavailable) {
      line = "cannot reach the store (" + std::string(error.what()) + "); ";
    } else {
      line = "cannot write to the store: " + std::string(kind_text(kind)) + " (" + error.what() +
             "); ";
    }
    if (!k.logged_at) {
      line += kind == ErrorKind::Unavailable ? "answering 503 until it can"
                                             : "refusing writes until it can";
    } else {
      line += requests(k.refused_since_log) + " refused in the last " +
              seconds(now - *k.logged_at) + " s";
    }
    k.logged_at = now;
    k.refused_since_log = 0;
  }
  options_.report(line);
}

void StoreHealth::succeeded(bool ends_any) {
  if (!failing_.load(std::memory_order_relaxed)) return;
  const std::int64_t now = options_.clock();
  std::string line;
  {
    std::lock_guard lock(mutex_);
    if (!failing_.load(std::memory_order_relaxed)) return;
    const bool unreachable = last_kind_ == ErrorKind::Unavailable;
    if (!ends_any && !unreachable) return;
    failing_.store(false, std::memory_order_relaxed);
    line =
        std::string(unreachable ? "the store answers again" : "writes to the store succeed again") +
        ", after " + seconds(now - failing_since_) + " s and " + requests(refused_) + " refused";
  }
  options_.report(line);
}

bool StoreHealth::unreachable() const {
  if (!failing_.load(std::memory_order_relaxed)) return false;
  std::lock_guard lock(mutex_);
  return failing_.load(std::memory_order_relaxed) && last_kind_ == ErrorKind::Unavailable;
}

std::optional<std::string> StoreHealth::not_ready() const {
  if (!failing_.load(std::memory_order_relaxed)) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (!failing_.load(std::memory_order_relaxed)) return std::nullopt;
  if (last_kind_ == ErrorKind::Unavailable) return "the store cannot be reached";
  return "the last write to the store failed: " + std::string(kind_text(last_kind_));
}

}  // namespace stagelog::detail
