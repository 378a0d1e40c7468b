// stagelog: the command-line tool. One file per subcommand; this one dispatches and turns
// errors into "stagelog: <message>" and a non-zero exit status.

#include <cstdio>
#include <exception>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "stagelog: which stage is every worker in, for how long, is it alive, and where and why "
      "did it fail.",
      "stagelog"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "stagelog 0.1.0");
  stagelog::cli::Command parse = stagelog::cli::add_parse(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (app.got_subcommand("parse")) return parse();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stagelog: %s\n", e.what());
    return 2;
  }
  return 2;
}
