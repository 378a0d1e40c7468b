#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace stagelog::cli {

// Reads the lines of each file named, in order ("-", or no file at all, is stdin), for the
// commands that read logs. Blank lines (and a lone "\r") are skipped; `read` gets the others
// and returns false with a reason in `error` for a line it cannot read, which is then
// reported on stderr as "stagelog <command>: <file>:<n>: <error>" unless `quiet`. Returns how
// many lines `read` refused. Throws Error "cannot open <file>: <reason>" for a file that
// cannot be opened or is a folder.
std::size_t read_log_lines(
    const std::vector<std::string>& files, std::string_view command, bool quiet,
    const std::function<bool(std::string_view line, std::string& error)>& read);

}  // namespace stagelog::cli
