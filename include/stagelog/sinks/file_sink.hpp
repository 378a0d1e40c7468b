#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

// Size-based rotation: when a file would grow past max_bytes, it becomes <path>.1 (the older
// ones shift to .2 ... .keep, the oldest is deleted) and a new file starts. Rotation happens
// between lines, never inside one. max_bytes 0 turns rotation off.
struct Rotation {
  std::uint64_t max_bytes = 0;
  int keep = 5;
};

// A sink that appends formatted events to a file. Subclasses say how one event is formatted;
// this class buffers, writes and rotates. Whole lines reach the file in single write() calls to
// a file opened with O_APPEND, so several processes may append to one file without splitting
// each other's lines (rotation assumes one writing process per file). The constructor throws
// Error naming the path if the file cannot be opened.
class FileSink : public Sink {
 public:
  ~FileSink() override;

  void write(const Event& event) final;
  void flush() final;

  const std::filesystem::path& path() const noexcept { return path_; }

 protected:
  FileSink(const std::filesystem::path& path, Level level, Rotation rotation = {});
  // Appends the event's text, newline included, to out; may append nothing.
  virtual void format(const Event& event, std::string& out) = 0;
  // Whether the file held data when this sink opened it (a resumed session).
  bool opened_non_empty() const noexcept { return opened_non_empty_; }

 private:
  void rotate();

  std::filesystem::path path_;
  Rotation rotation_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  bool opened_non_empty_ = false;
  std::string buffer_;
};

}  // namespace stagelog
