#include "log_lines.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <istream>
#include <limits>
#include <system_error>

#include "base/errno_text.hpp"
#include "stagelog/error.hpp"

namespace stagelog::cli {

namespace {

std::size_t read_stream(std::istream& in, const std::string& name, std::string_view command,
                        bool quiet, const std::function<bool(std::string_view, std::string&)>& read,
                        std::size_t max_line, std::size_t& cut) {
  std::size_t refused = 0;
  std::size_t number = 0;
  // One buffer of max_line + 1 bytes: istream::getline stops there on a longer line, whose
  // rest is then skipped by ignore(), so a huge line never sits in memory.
  std::string buffer(max_line + 1, '\0');
  std::string error;
  for (;;) {
    in.getline(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    auto got = static_cast<std::size_t>(in.gcount());
    if (in.eof() && got == 0) break;
    bool long_line = in.fail() && !in.eof();
    std::size_t length = got;
    if (!long_line && got > 0 && !in.eof()) --length;  // The '\n' extracted.
    if (in.bad()) break;
    ++number;
    std::string_view line(buffer.data(), std::min(length, max_line));
    if (long_line) {
      in.clear();
      in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
      auto skipped = static_cast<std::size_t>(in.gcount());
      if (!in.eof() && skipped > 0) --skipped;  // The '\n'.
      ++cut;
      if (!quiet) {
        std::fprintf(stderr,
                     "stagelog %.*s: %s:%zu: line longer than %zu bytes: read its first %zu, "
                     "skipped the other %zu\n",
                     static_cast<int>(command.size()), command.data(), name.c_str(), number,
                     max_line, max_line, skipped);
      }
    }
    if (line.empty() || line == "\r") {
      if (in.eof()) break;
      continue;
    }
    if (!read(line, error)) {
      ++refused;
      if (!quiet) {
        std::fprintf(stderr, "stagelog %.*s: %s:%zu: %s\n", static_cast<int>(command.size()),
                     command.data(), name.c_str(), number, error.c_str());
      }
    }
    if (in.eof()) break;
  }
  return refused;
}

}  // namespace

std::size_t read_log_lines(const std::vector<std::string>& files, std::string_view command,
                           bool quiet,
                           const std::function<bool(std::string_view, std::string&)>& read,
                           std::size_t max_line, std::size_t* cut) {
  std::size_t cut_lines = 0;
  std::vector<std::string> names = files;
  if (names.empty()) names.push_back("-");
  std::size_t refused = 0;
  for (const std::string& file : names) {
    if (file == "-") {
      refused += read_stream(std::cin, "<stdin>", command, quiet, read, max_line, cut_lines);
      continue;
    }
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) {
      throw Error("cannot open " + file + ": " + detail::errno_text(EISDIR));
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error("cannot open " + file + ": " + detail::errno_text(errno));
    refused += read_stream(in, file, command, quiet, read, max_line, cut_lines);
  }
  if (cut != nullptr) *cut = cut_lines;
  return refused;
}

}  // namespace stagelog::cli
