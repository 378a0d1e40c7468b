#pragma once

// What the NetworkSink tests (tests/unit/network_sink_test.cpp, network_spool_test.cpp) share:
// numbered events, options for a fast sink, a collector of on_error reports, free ports and a
// silent one (https_test uses some of them too). Needs
// cpp-httplib (ndjson_receiver.hpp): link PkgConfig::HTTPLIB.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ndjson_receiver.hpp"
#include "stagelog/event.hpp"
#include "stagelog/sinks/network_sink.hpp"

namespace stagelog::test {

// A port nothing listens on (yet): the receiver is bound, then stopped.
inline int free_port() {
  Receiver r;
  return r.port();
}

// A port that accepts connections (the kernel completes them) and never answers.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

inline std::string url_of(int port) { return "http://127.0.0.1:" + std::to_string(port); }

// Events as the recorder hands them to a sink: message "<prefix><i>".
class Events {
 public:
  const Event& make(const std::string& message) {
    messages_.push_back(std::make_unique<std::string>(message));
    Event e;
    e.ts_ns = 1767555015234000000 + static_cast<std::int64_t>(messages_.size()) * 1000000;
    e.kind = Kind::Log;
    e.level = Level::Info;
    e.run = "run-1";
    e.worker = "T0_00";
    e.component = "worker";
    e.message = *messages_.back();
    e.pid = 4242;
    e.host = "gpu-box";
    event_ = e;
    return event_;
  }

 private:
  std::vector<std::unique_ptr<std::string>> messages_;
  Event event_;
};

inline std::vector<std::string> numbered(const std::string& prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

inline void write_numbered(NetworkSink& sink, Events& events, const std::string& prefix, int from,
                           int to) {
  for (int i = from; i < to; ++i) sink.write(events.make(prefix + std::to_string(i)));
}

// Collects on_error reports from any thread.
struct Reports {
  std::function<void(std::string_view)> fn() {
    return [this](std::string_view m) {
      std::lock_guard lock(mu);
      list.emplace_back(m);
    };
  }
  std::vector<std::string> all() {
    std::lock_guard lock(mu);
    return list;
  }
  bool any_contains(std::string_view needle) {
    for (const auto& m : all()) {
      if (m.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  std::mutex mu;
  std::vector<std::string> list;
};

// Short intervals and backoff, so that the tests run fast.
inline NetworkSinkOptions options_for(const std::string& url, const std::filesystem::path& spool) {
  using namespace std::chrono_literals;
  NetworkSinkOptions o;
  o.url = url;
  o.spool_path = spool;
  o.flush_interval = 20ms;
  o.retry_initial = 10ms;
  o.retry_max = 100ms;
  o.request_timeout = 5s;
  o.shutdown_timeout = 5s;
  o.on_error = [](std::string_view) {};  // Else flush() throws the reports, for a recorder.
  return o;
}

}  // namespace stagelog::test
