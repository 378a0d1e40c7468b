#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace stagelog::cli {

// Each subcommand registers its options on `app` and returns what runs it; the function
// returns the process exit status.
using Command = std::function<int()>;

Command add_parse(CLI::App& app);
Command add_summary(CLI::App& app);
Command add_run(CLI::App& app);
Command add_tail(CLI::App& app);
Command add_token(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_migrate(CLI::App& app);
Command add_report(CLI::App& app);
// help and completion read the commands registered before them: add them last.
Command add_help(CLI::App& app);
Command add_completion(CLI::App& app);

}  // namespace stagelog::cli
