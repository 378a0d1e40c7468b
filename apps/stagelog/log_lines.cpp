#include "log_lines.hpp"

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <istream>
#include <system_error>

#include "base/errno_text.hpp"
#include "stagelog/error.hpp"

namespace stagelog::cli {

namespace {

std::size_t read_stream(std::istream& in, const std::string& name, std::string_view command,
                        bool quiet,
                        const std::function<bool(std::string_view, std::string&)>& read) {
  std::size_t refused = 0;
  std::size_t number = 0;
  std::string line;
  std::string error;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line == "\r") continue;
    if (read(line, error)) continue;
    ++refused;
    if (!quiet) {
      std::fprintf(stderr, "stagelog %.*s: %s:%zu: %s\n", static_cast<int>(command.size()),
                   command.data(), name.c_str(), number, error.c_str());
    }
  }
  return refused;
}

}  // namespace

std::size_t read_log_lines(const std::vector<std::string>& files, std::string_view command,
                           bool quiet,
                           const std::function<bool(std::string_view, std::string&)>& read) {
  std::vector<std::string> names = files;
  if (names.empty()) names.push_back("-");
  std::size_t refused = 0;
  for (const std::string& file : names) {
    if (file == "-") {
      refused += read_stream(std::cin, "<stdin>", command, quiet, read);
      continue;
    }
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) {
      throw Error("cannot open " + file + ": " + detail::errno_text(EISDIR));
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error("cannot open " + file + ": " + detail::errno_text(errno));
    refused += read_stream(in, file, command, quiet, read);
  }
  return refused;
}

}  // namespace stagelog::cli
