#pragma once

// Runs a python3 script for tests that compare our rendering of Python text with Python's own.

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace stagelog::test {

inline bool have_python() { return std::system("command -v python3 >/dev/null 2>&1") == 0; }

#define STAGELOG_SKIP_WITHOUT_PYTHON()                           \
  do {                                                           \
    if (!::stagelog::test::have_python())                        \
      GTEST_SKIP() << "python3 is not on PATH (CI installs it)"; \
  } while (false)

// Runs `python3 -c '<script>'` (the script must not contain single quotes) with `input` as its
// stdin; returns stdout. Fails the test if Python exits non-zero.
inline std::string run_python(const std::string& script, const std::string& input) {
  TempDir dir;
  auto input_path = dir.path() / "stdin.txt";
  {
    std::ofstream out(input_path, std::ios::binary);
    out << input;
  }
  std::string command =
      "PYTHONIOENCODING=utf-8 python3 -c '" + script + "' < '" + input_path.string() + "'";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen failed: " << command;
    return {};
  }
  std::string output;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    output.append(buffer.data(), n);
  int status = pclose(pipe);
  EXPECT_EQ(status, 0) << "python3 failed for input:\n" << input;
  return output;
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace stagelog::test
