#include <unistd.h>

#include "format/format.hpp"
#include "sinks/fd_io.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"

namespace stagelog {

TextSink::TextSink(const std::filesystem::path& path, Level level)
    : Sink(level), path_(path), fd_(detail::open_append(path)) {
  buffer_.reserve(detail::kSinkBufferBytes * 2);
}

TextSink::~TextSink() {
  try {
    flush();
  } catch (...) {
  }
  ::close(fd_);
}

void TextSink::write(const Event& event) {
  detail::format_text(event, buffer_);
  if (buffer_.size() >= detail::kSinkBufferBytes) flush();
}

void TextSink::flush() {
  if (buffer_.empty()) return;
  std::string_view pending = buffer_;
  try {
    detail::write_all(fd_, pending, path_.string());
  } catch (...) {
    buffer_.clear();  // Nothing is kept for a retry: a broken disk must not grow memory.
    throw;
  }
  buffer_.clear();
}

JsonlSink::JsonlSink(const std::filesystem::path& path, Level level)
    : Sink(level), path_(path), fd_(detail::open_append(path)) {
  buffer_.reserve(detail::kSinkBufferBytes * 2);
}

JsonlSink::~JsonlSink() {
  try {
    flush();
  } catch (...) {
  }
  ::close(fd_);
}

void JsonlSink::write(const Event& event) {
  detail::format_json(event, buffer_);
  if (buffer_.size() >= detail::kSinkBufferBytes) flush();
}

void JsonlSink::flush() {
  if (buffer_.empty()) return;
  std::string_view pending = buffer_;
  try {
    detail::write_all(fd_, pending, path_.string());
  } catch (...) {
    buffer_.clear();  // Nothing is kept for a retry: a broken disk must not grow memory.
    throw;
  }
  buffer_.clear();
}

}  // namespace stagelog
