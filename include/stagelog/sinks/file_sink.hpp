#pragma once

#include <filesystem>
#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

// A sink that appends formatted events to a file. Subclasses say how one event is formatted;
// this class buffers and writes. Whole lines reach the file in single write() calls to a file
// opened with O_APPEND, so several processes may append to one file without splitting each
// other's lines. The constructor throws Error naming the path if the file cannot be opened.
class FileSink : public Sink {
 public:
  ~FileSink() override;

  void write(const Event& event) final;
  void flush() final;

  const std::filesystem::path& path() const noexcept { return path_; }

 protected:
  FileSink(const std::filesystem::path& path, Level level);
  // Appends the event's text, newline included, to out; may append nothing.
  virtual void format(const Event& event, std::string& out) = 0;

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace stagelog
