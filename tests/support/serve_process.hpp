#pragma once

// The real `stagelog serve` binary as a child process, for integration tests. The test target
// needs the STAGELOG_CLI compile definition (tests/CMakeLists.txt gives every test the path of
// the built binary) and add_dependencies(<test> stagelog_cli).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace stagelog::test {

// A `stagelog serve --data DATA --listen LISTEN` child with its stdout on a pipe, and its
// stderr appended to `stderr_file` when one is given, and `extra` arguments after those. The
// destructor kills it (SIGKILL) if it
// still runs.
class ServeProcess {
 public:
  explicit ServeProcess(const std::filesystem::path& data,
                        const std::string& listen = "127.0.0.1:0",
                        const std::filesystem::path& stderr_file = {},
                        const std::vector<std::string>& extra = {}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    if (!stderr_file.empty()) {
      posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_file.c_str(),
                                       O_WRONLY | O_CREAT | O_APPEND, 0600);
    }
    std::string data_arg = data.string();
    std::vector<std::string> args = {STAGELOG_CLI, "serve", "--data", data_arg, "--listen", listen};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pid_, STAGELOG_CLI, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    out_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("cannot start " + std::string(STAGELOG_CLI));
    }
  }
  ~ServeProcess() {
    if (pid_ > 0) kill_hard();
    close(out_);
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  // Reads stdout until "listening on http://127.0.0.1:PORT" (at most 30 s): the port, and the
  // admin token if the process made one (read from the admin-token file it names, since stdout
  // is no terminal here). False if it never said so.
  bool wait_until_listening() {
    using namespace std::chrono_literals;
    static const std::regex listening(R"(listening on http://127\.0\.0\.1:([0-9]+))");
    static const std::regex token_line(R"(admin token: (slg_[A-Za-z0-9_-]+))");
    static const std::regex token_file(R"(admin token, written to (\S+) \(mode 0600)");
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    std::string text;
    char buf[512];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) return false;  // Exited.
      text.append(buf, static_cast<std::size_t>(n));
      std::smatch m;
      if (std::regex_search(text, m, listening)) {
        port = std::stoi(m[1]);
        if (std::regex_search(text, m, token_line)) {
          token = m[1];
        } else if (std::regex_search(text, m, token_file)) {
          // Not a terminal: the token is only in its 0600 file.
          std::ifstream in(m[1].str());
          std::getline(in, token);
        }
        return true;
      }
    }
    return false;
  }

  // Sends a signal (SIGHUP: re-read the tokens file).
  void signal(int signal) const { kill(pid_, signal); }

  // SIGKILL, and waits for it.
  void kill_hard() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGTERM, then the exit status (at most 30 s; SIGKILL and -1 after that).
  int terminate() {
    using namespace std::chrono_literals;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 3000; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(10ms);
    }
    kill_hard();
    return -1;
  }

  int port = 0;
  std::string token;  // Empty unless this start printed one (the first on a data folder).

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

}  // namespace stagelog::test
