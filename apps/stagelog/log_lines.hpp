#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace stagelog::cli {

// Lines longer than this are cut by default (`stagelog parse --max-line`).
inline constexpr std::size_t kDefaultMaxLine = std::size_t{1} << 20;

// Reads the lines of each file named, in order ("-", or no file at all, is stdin), for the
// commands that read logs. Blank lines (and a lone "\r") are skipped; `read` gets the others
// and returns false with a reason in `error` for a line it cannot read, which is then
// reported on stderr as "stagelog <command>: <file>:<n>: <error>" unless `quiet`. A line
// longer than `max_line` bytes is cut there: `read` gets its first `max_line` bytes, the rest
// is skipped without being held in memory, a warning says so, and line numbers stay those of
// the file. Returns how many lines `read` refused; *cut (when given) counts the lines cut.
// Throws Error "cannot open <file>: <reason>" for a file that cannot be opened or is a folder.
std::size_t read_log_lines(
    const std::vector<std::string>& files, std::string_view command, bool quiet,
    const std::function<bool(std::string_view line, std::string& error)>& read,
    std::size_t max_line = kDefaultMaxLine, std::size_t* cut = nullptr);

}  // namespace stagelog::cli
