#pragma once

// A `stagelog tail` child process whose output a test reads, bounded in time: tail_test and
// https_test. Needs the STAGELOG_CLI compile definition (tests/CMakeLists.txt).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace stagelog::test {

// A `stagelog tail` child whose output we read: through a pipe, or a pty when `terminal`.
class Tail {
 public:
  static constexpr auto kPatience = std::chrono::seconds(30);  // Bound on every wait.

  // `with_stderr`: stderr goes to the same pipe as stdout (not on a terminal).
  Tail(std::vector<std::string> args, bool terminal, bool with_stderr = false) {
    args.insert(args.begin(), {STAGELOG_CLI, "tail"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (terminal) {
      winsize size{40, 160, 0, 0};
      pid_ = ::forkpty(&fd_, nullptr, nullptr, &size);
      if (pid_ == 0) {
        ::setenv("TERM", "xterm", 1);
        ::unsetenv("NO_COLOR");
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
    } else {
      int out[2];
      if (::pipe(out) != 0) throw std::runtime_error("pipe");
      pid_ = ::fork();
      if (pid_ == 0) {
        ::dup2(out[1], STDOUT_FILENO);
        if (with_stderr) ::dup2(out[1], STDERR_FILENO);
        ::close(out[0]);
        ::close(out[1]);
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      ::close(out[1]);
      fd_ = out[0];
    }
    if (pid_ < 0) throw std::runtime_error("fork");
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Tail() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }

  // Reads until `text` has appeared after position `from` of the output; false after the
  // patience runs out (or the output ends).
  bool wait_for(const std::string& text, std::size_t from = 0) {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (out_.find(text, from) == std::string::npos) {
      if (std::chrono::steady_clock::now() > give_up || !read_some()) return false;
    }
    return true;
  }

  void write(const std::string& keys) {
    ASSERT_EQ(::write(fd_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  // Waits for the exit (bounded) and returns the wait status, reading what is left.
  int wait_exit() {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > give_up) return -1;
      read_some();
    }
    pid_ = -1;
    while (read_some()) {
    }
    return status;
  }

  void signal(int sig) { ::kill(pid_, sig); }
  const std::string& output() const { return out_; }

 private:
  // False at the end of the output.
  bool read_some() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) return true;
    char buf[4096];
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) out_.append(buf, static_cast<std::size_t>(n));
    return n > 0 || (n < 0 && errno == EAGAIN);
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
};

}  // namespace stagelog::test
