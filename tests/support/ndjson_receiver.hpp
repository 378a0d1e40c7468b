#pragma once

// A loopback HTTP receiver for NetworkSink tests (and, on another path, for the server's alert
// webhooks). Needs cpp-httplib: link PkgConfig::HTTPLIB.

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "eventually.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::test {

// What the receiver answers to one request.
struct Reply {
  int status = 200;
  std::string body;  // Empty: {"accepted": <lines>, "rejected": []}.
  bool chunked = false;
};

// One request as the receiver got it: headers, the body's non-empty lines, and the status it
// answered.
struct Received {
  std::string authorization;
  std::string content_type;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  httplib::Headers headers;
  std::vector<std::string> lines;
  int status = 0;
};

// A loopback stand-in for the ingest route of `stagelog serve`: POST /api/v1/events on
// 127.0.0.1, records every request, answers what `policy` says (200 with the accepted JSON by
// default). Listens on `port` (0: any free one) from construction; stop() closes the port,
// start() listens again on the same one. Every wait (binding, starting, wait_for_*) gives up
// after `patience`. A gtest assertion fails if it cannot listen.
class Receiver {
 public:
  using Policy = std::function<Reply(const Received&)>;

  explicit Receiver(int port = 0, std::chrono::steady_clock::duration patience = kDefaultPatience,
                    std::string path = "/api/v1/events")
      : patience_(patience), path_(std::move(path)) {
    listen_on(port);
  }
  ~Receiver() { stop(); }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }
  void start() { listen_on(port_); }

  void set_policy(Policy policy) {
    std::lock_guard lock(mu_);
    policy_ = std::move(policy);
  }

  std::vector<Received> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  // The lines of the requests answered 2xx, in arrival order.
  std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_locked();
  }
  // Their messages, each line read back as the server would (parse_json_event).
  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (const auto& line : lines()) {
      std::string error;
      auto event = parse_json_event(line, &error);
      out.push_back(event ? event->message : "unparsable: " + error);
    }
    return out;
  }
  // Their events, each line parsed as the server would; unparsable lines are left out.
  std::vector<OwnedEvent> events() const {
    std::vector<OwnedEvent> out;
    for (const auto& line : lines()) {
      if (auto event = parse_json_event(line)) out.push_back(std::move(*event));
    }
    return out;
  }
  // Waits (at most the patience) until at least n lines were accepted.
  bool wait_for_lines(std::size_t n) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, patience_, [&] { return lines_locked().size() >= n; });
  }
  bool wait_for_requests(std::size_t n) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, patience_, [&] { return requests_.size() >= n; });
  }

 private:
  std::vector<std::string> lines_locked() const {
    std::vector<std::string> out;
    for (const auto& r : requests_) {
      if (r.status / 100 == 2) out.insert(out.end(), r.lines.begin(), r.lines.end());
    }
    return out;
  }

  void listen_on(int port) {
    server_ = std::make_unique<httplib::Server>();
    server_->set_keep_alive_timeout(1);  // stop() waits for kept connections to time out.
    server_->Post(
        path_, [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    if (port == 0) {
      port_ = server_->bind_to_any_port("127.0.0.1");
      ASSERT_GT(port_, 0);
    } else {
      // The old socket may linger for a moment: retry, bounded.
      bool bound = eventually([&] { return server_->bind_to_port("127.0.0.1", port); }, patience_);
      ASSERT_TRUE(bound) << "cannot listen on port " << port << " again";
      port_ = port;
    }
    thread_ = std::thread([s = server_.get()] { s->listen_after_bind(); });
    // stop() does nothing to a server whose loop has not started yet: wait for it.
    ASSERT_TRUE(eventually([&] { return server_->is_running(); }, patience_));
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    Received r;
    r.authorization = req.get_header_value("Authorization");
    r.content_type = req.get_header_value("Content-Type");
    r.headers = req.headers;
    std::string_view body = req.body;
    while (!body.empty()) {
      auto nl = body.find('\n');
      if (nl != 0) r.lines.emplace_back(body.substr(0, nl));
      if (nl == std::string_view::npos) break;
      body.remove_prefix(nl + 1);
    }
    Reply reply;
    {
      std::lock_guard lock(mu_);
      if (policy_) reply = policy_(r);
      r.status = reply.status;
      requests_.push_back(r);
    }
    cv_.notify_all();
    if (reply.body.empty() && reply.status == 200) {
      reply.body = R"({"accepted":)" + std::to_string(r.lines.size()) + R"(,"rejected":[]})";
    }
    res.status = reply.status;
    if (reply.chunked) {
      auto body_ptr = std::make_shared<std::string>(reply.body);
      res.set_chunked_content_provider("application/json",
                                       [body_ptr](std::size_t, httplib::DataSink& sink) {
                                         // A few chunks of uneven size.
                                         std::string_view b = *body_ptr;
                                         std::size_t step = 1;
                                         while (!b.empty()) {
                                           std::size_t n = std::min(step, b.size());
                                           sink.write(b.data(), n);
                                           b.remove_prefix(n);
                                           step = step * 3 + 1;
                                         }
                                         sink.done();
                                         return true;
                                       });
    } else {
      res.set_content(reply.body, "application/json");
    }
  }

  const std::chrono::steady_clock::duration patience_;
  const std::string path_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  Policy policy_;
  std::vector<Received> requests_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace stagelog::test
