#pragma once

// What both benchmark programs need: a scratch folder and a way to wait for spdlog's async
// logger to have written everything, so the peers are measured the same way.

#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/sink.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

namespace stagelog::bench {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "stagelog-bench-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Forwards to a file sink and counts completed flushes, so that a caller can wait until the
// thread pool has written everything logged before (spdlog's async flush() does not wait).
class FlushCountingSink final : public spdlog::sinks::sink {
 public:
  explicit FlushCountingSink(const std::string& path)
      : file_(std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, true)) {}

  void log(const spdlog::details::log_msg& msg) override { file_->log(msg); }
  void flush() override {
    file_->flush();
    flushes_.fetch_add(1, std::memory_order_release);
    flushes_.notify_all();
  }
  void set_pattern(const std::string& pattern) override { file_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    file_->set_formatter(std::move(formatter));
  }

  // Contract: one waiter at a time, and `logger` writes only to this sink.
  void wait_written(spdlog::logger& logger) {
    const std::uint64_t before = flushes_.load(std::memory_order_acquire);
    logger.flush();
    std::uint64_t seen;
    while ((seen = flushes_.load(std::memory_order_acquire)) == before) {
      flushes_.wait(seen, std::memory_order_acquire);
    }
  }

 private:
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file_;
  std::atomic<std::uint64_t> flushes_{0};
};

}  // namespace stagelog::bench
