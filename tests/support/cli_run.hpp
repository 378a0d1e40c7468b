#pragma once

// Runs the stagelog CLI (STAGELOG_CLI, set by tests/CMakeLists.txt) to its end as a real
// process: stdin from /dev/null, stdout and stderr captured through files in a test folder.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace stagelog::test {

struct CliRun {
  int status = -1;  // The exit status; -1 if a signal ended it.
  std::string out;
  std::string err;
};

// `stagelog <args>`; its output files go to `dir` (stdout.txt, stderr.txt).
inline CliRun run_stagelog(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), STAGELOG_CLI);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string out = (dir.path() / "stdout.txt").string();
  std::string err = (dir.path() / "stderr.txt").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + std::string(STAGELOG_CLI));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  CliRun result;
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = read_file(out);
  result.err = read_file(err);
  return result;
}

}  // namespace stagelog::test
