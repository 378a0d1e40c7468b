// stagelog run: placeholder, being written.

#include "commands.hpp"

namespace stagelog::cli {

Command add_run(CLI::App& app) {
  app.add_subcommand("run", "(not yet)");
  return [] { return 2; };
}

}  // namespace stagelog::cli
