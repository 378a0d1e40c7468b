#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/fd_io.hpp"
#include "format/format.hpp"
#include "stagelog/error.hpp"
#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/sinks/text_sink.hpp"

namespace stagelog {

namespace {

std::uint64_t size_of(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

std::filesystem::path numbered(const std::filesystem::path& path, int n) {
  return path.string() + "." + std::to_string(n);
}

}  // namespace

FileSink::FileSink(const std::filesystem::path& path, Level level, Rotation rotation)
    : Sink(level), path_(path), rotation_(rotation) {
  if (rotation_.keep < 0) {
    throw Error("rotation keep must be 0 or more, got " + std::to_string(rotation_.keep));
  }
  fd_ = detail::open_append(path);
  file_size_ = size_of(fd_);
  opened_non_empty_ = file_size_ > 0;
  buffer_.reserve(detail::kWriteBufferBytes * 2);
}

FileSink::~FileSink() {
  try {
    flush();
  } catch (...) {
  }
  ::close(fd_);
}

void FileSink::write(const Event& event) {
  std::size_t before = buffer_.size();
  format(event, buffer_);
  if (rotation_.max_bytes != 0 && file_size_ + buffer_.size() > rotation_.max_bytes &&
      file_size_ + before > 0) {
    // Write what came before this line to the old file; this line starts the new one.
    std::string line = buffer_.substr(before);
    buffer_.resize(before);
    flush();
    rotate();
    buffer_ = std::move(line);
  }
  if (buffer_.size() >= detail::kWriteBufferBytes) flush();
}

void FileSink::flush() {
  if (buffer_.empty()) return;
  try {
    detail::write_all(fd_, buffer_, path_.string());
  } catch (...) {
    buffer_.clear();  // Nothing is kept for a retry: a broken disk must not grow memory.
    throw;
  }
  file_size_ += buffer_.size();
  buffer_.clear();
}

void FileSink::rotate() {
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  if (rotation_.keep == 0) {
    std::filesystem::remove(path_, ec);
  } else {
    std::filesystem::remove(numbered(path_, rotation_.keep), ec);
    for (int i = rotation_.keep - 1; i >= 1; --i) {
      if (std::filesystem::exists(numbered(path_, i), ec)) {
        std::filesystem::rename(numbered(path_, i), numbered(path_, i + 1), ec);
      }
    }
    std::filesystem::rename(path_, numbered(path_, 1), ec);
  }
  fd_ = detail::open_append(path_);  // Throws if the folder vanished: the error handler says so.
  file_size_ = size_of(fd_);
}

void TextSink::format(const Event& event, std::string& out) { detail::format_text(event, out); }

void JsonlSink::format(const Event& event, std::string& out) { detail::format_json(event, out); }

}  // namespace stagelog
