#pragma once

#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

enum class ColorMode : std::uint8_t {
  Auto,  // Colours when the stream is a terminal and NO_COLOR is unset or empty.
  Always,
  Never,
};

struct ConsoleOptions {
  Level level = Level::Info;
  int fd = 1;  // 1 for stdout, 2 for stderr.
  ColorMode color = ColorMode::Auto;
};

// Writes the text format to the terminal, with its own level (so the file can keep DEBUG
// while the console shows INFO and up). Colours only on a terminal: failed stages and errors
// red, warnings yellow, completed stages green.
class ConsoleSink : public Sink {
 public:
  explicit ConsoleSink(ConsoleOptions options = {});
  ~ConsoleSink() override;
  bool obeys_component_levels() const noexcept override { return true; }  // Lines for people.

  void write(const Event& event) override;
  void flush() override;

  bool colored() const noexcept { return color_; }

 private:
  int fd_;
  bool color_;
  std::string buffer_;
};

}  // namespace stagelog
