#include <unistd.h>

#include "format/format.hpp"
#include "sinks/fd_io.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"

namespace stagelog {

FileSink::FileSink(const std::filesystem::path& path, Level level)
    : Sink(level), path_(path), fd_(detail::open_append(path)) {
  buffer_.reserve(detail::kSinkBufferBytes * 2);
}

FileSink::~FileSink() {
  try {
    flush();
  } catch (...) {
  }
  ::close(fd_);
}

void FileSink::write(const Event& event) {
  format(event, buffer_);
  if (buffer_.size() >= detail::kSinkBufferBytes) flush();
}

void FileSink::flush() {
  if (buffer_.empty()) return;
  try {
    detail::write_all(fd_, buffer_, path_.string());
  } catch (...) {
    buffer_.clear();  // Nothing is kept for a retry: a broken disk must not grow memory.
    throw;
  }
  buffer_.clear();
}

void TextSink::format(const Event& event, std::string& out) { detail::format_text(event, out); }

void JsonlSink::format(const Event& event, std::string& out) { detail::format_json(event, out); }

}  // namespace stagelog
