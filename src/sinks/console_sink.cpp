#include "stagelog/sinks/console_sink.hpp"

#include <unistd.h>

#include <cstdlib>

#include "base/fd_io.hpp"
#include "format/format.hpp"
#include "stagelog/error.hpp"

namespace stagelog {

namespace {

constexpr std::string_view kRed = "\x1b[31m";
constexpr std::string_view kYellow = "\x1b[33m";
constexpr std::string_view kGreen = "\x1b[32m";
constexpr std::string_view kDim = "\x1b[2m";
constexpr std::string_view kReset = "\x1b[0m";

bool want_color(const ConsoleOptions& o) {
  if (o.color == ColorMode::Always) return true;
  if (o.color == ColorMode::Never) return false;
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color != nullptr && *no_color != '\0') return false;
  return ::isatty(o.fd) == 1;
}

std::string_view color_for(const Event& e) {
  if (e.status == Status::Failed || e.level >= Level::Error) return kRed;
  if (e.level == Level::Warning) return kYellow;
  if ((e.kind == Kind::Stage || e.kind == Kind::Run) && e.status == Status::Completed) {
    return kGreen;
  }
  if (e.level <= Level::Debug) return kDim;
  return {};
}

}  // namespace

ConsoleSink::ConsoleSink(ConsoleOptions options)
    : Sink(options.level), fd_(options.fd), color_(want_color(options)) {
  if (fd_ < 0) throw Error("ConsoleSink: invalid file descriptor " + std::to_string(fd_));
}

ConsoleSink::~ConsoleSink() {
  try {
    flush();
  } catch (...) {
  }
}

void ConsoleSink::write(const Event& event) {
  std::string_view color = color_ ? color_for(event) : std::string_view{};
  std::size_t start = buffer_.size();
  if (!detail::format_text(event, buffer_)) return;
  if (!color.empty()) {
    buffer_.insert(start, color);
    buffer_.insert(buffer_.size() - 1, kReset);  // Before the newline.
  }
  if (buffer_.size() >= detail::kWriteBufferBytes) flush();
}

void ConsoleSink::flush() {
  if (buffer_.empty()) return;
  std::string_view pending = buffer_;
  try {
    detail::write_all(fd_, pending, fd_ == 2 ? "stderr" : "stdout");
  } catch (...) {
    buffer_.clear();  // Nothing is kept for a retry: a broken disk must not grow memory.
    throw;
  }
  buffer_.clear();
}

}  // namespace stagelog
