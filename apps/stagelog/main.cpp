// stagelog: the command-line tool. One file per subcommand; this one dispatches and turns
// errors into "stagelog: <message>" and a non-zero exit status.

#include <cstdio>
#include <exception>

#include "commands.hpp"
#include "stagelog/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "stagelog: which stage is every worker in, for how long, is it alive, and where and why "
      "did it fail.",
      "stagelog"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "stagelog " STAGELOG_VERSION_STRING);
  stagelog::cli::Command parse = stagelog::cli::add_parse(app);
  stagelog::cli::Command summary = stagelog::cli::add_summary(app);
  stagelog::cli::Command run = stagelog::cli::add_run(app);
  stagelog::cli::Command tail = stagelog::cli::add_tail(app);
  stagelog::cli::Command token = stagelog::cli::add_token(app);
  stagelog::cli::Command serve = stagelog::cli::add_serve(app);
  stagelog::cli::Command migrate = stagelog::cli::add_migrate(app);
  stagelog::cli::Command report = stagelog::cli::add_report(app);
  stagelog::cli::Command help = stagelog::cli::add_help(app);
  stagelog::cli::Command completion = stagelog::cli::add_completion(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (app.got_subcommand("parse")) return parse();
    if (app.got_subcommand("summary")) return summary();
    if (app.got_subcommand("run")) return run();
    if (app.got_subcommand("tail")) return tail();
    if (app.got_subcommand("token")) return token();
    if (app.got_subcommand("serve")) return serve();
    if (app.got_subcommand("migrate")) return migrate();
    if (app.got_subcommand("report")) return report();
    if (app.got_subcommand("help")) return help();
    if (app.got_subcommand("completion")) return completion();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stagelog: %s\n", e.what());
    return 2;
  }
  return 2;
}
