// `stagelog tail` as a user runs it: following files that grow, rotate and appear, the live
// table on a real pseudo-terminal, and the event stream of a real `stagelog serve`. Every wait
// is bounded; none asserts on timing.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "net/http_client.hpp"
#include "scoped_env.hpp"
#include "serve_process.hpp"
#include "tail_process.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr auto kPatience = std::chrono::seconds(30);

const fs::path kData = fs::path(STAGELOG_TEST_DATA) / "cli" / "data";

using stagelog::test::Tail;

void append(const fs::path& file, const std::string& text) {
  std::ofstream(file, std::ios::app) << text << std::flush;
}

// A JSONL line as JsonlSink writes it (the fields tail needs).
std::string event(const std::string& worker, const std::string& kind, const std::string& stage,
                  const std::string& status, const std::string& message = "") {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  long long ns = static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
  return "{\"ts_ns\":" + std::to_string(ns) + ",\"kind\":\"" + kind + "\",\"level\":\"info\"," +
         "\"worker\":\"" + worker + "\",\"component\":\"worker\",\"stage\":\"" + stage +
         "\",\"status\":\"" + status + "\",\"message\":\"" + message + "\",\"pid\":0}\n";
}

TEST(TailTest, FollowsGrowingRotatedAndNewFiles) {
  stagelog::test::TempDir dir;
  fs::create_directories(dir.path() / "logs");
  const fs::path first = dir.path() / "logs" / "a.jsonl";
  append(first, event("w1", "lifecycle", "", "starting", "starting"));
  Tail tail({"--plain", "--stuck-stage", "1h", dir.path().string()}, false);
  ASSERT_TRUE(tail.wait_for("[w1] idle")) << tail.output();

  // Grows.
  append(first, event("w1", "stage", "FETCH", "starting"));
  append(first, event("w1", "stage", "FETCH", "completed"));
  // Rotated: the rest of the old file is read, then the new one from its start.
  fs::rename(first, dir.path() / "logs" / "a.jsonl.1");
  append(first, event("w1", "lifecycle", "", "completed", "shutting down"));
  ASSERT_TRUE(tail.wait_for("[w1] idle -> done")) << tail.output();

  // A new file in a subfolder, found by the rescan.
  fs::create_directories(dir.path() / "logs" / "more");
  append(dir.path() / "logs" / "more" / "b.jsonl", event("w2", "stage", "LOAD", "starting"));
  ASSERT_TRUE(tail.wait_for("[w2] running (stage LOAD)")) << tail.output();

  // Truncated and rewritten: read again from the start.
  std::ofstream(dir.path() / "logs" / "more" / "b.jsonl", std::ios::trunc)
      << event("w3", "stage", "SAVE", "starting");
  ASSERT_TRUE(tail.wait_for("[w3] running (stage SAVE)")) << tail.output();

  tail.signal(SIGTERM);
  int status = tail.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << tail.output();  // Nothing was flagged.
}

TEST(TailTest, UnreadableLinesAreReportedAndSkipped) {
  stagelog::test::TempDir dir;
  const fs::path file = dir.path() / "x.jsonl";
  append(file, "{not json\n");
  append(file, event("w1", "stage", "FETCH", "starting"));
  Tail tail({"--plain", file.string()}, false);
  ASSERT_TRUE(tail.wait_for("[w1] running (stage FETCH)")) << tail.output();
  tail.signal(SIGINT);
  int status = tail.wait_exit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(TailTest, TerminalTableFlagsAndFiltersAndQuits) {
  // The recorded scenario of tests/cli/tail_replay, now long past: live, every rule has fired.
  Tail tail({"--no-pid-check", "--stuck-stage", "20s", "--stuck-task", "25s", "--heartbeat-timeout",
             "12s", (kData / "tail_agents.jsonl").string(), (kData / "tail_brain.jsonl").string()},
            true);
  ASSERT_TRUE(tail.wait_for("\x1b[?1049h")) << "no alternate screen: " << tail.output();
  ASSERT_TRUE(tail.wait_for("WORKER")) << tail.output();
  // gpu-1's row is red (stuck), gpu-2's red (crashed), gpu-0 is done.
  ASSERT_TRUE(tail.wait_for("\x1b[31mgpu-1          stuck")) << tail.output();
  ASSERT_TRUE(tail.wait_for("\x1b[31mgpu-2          crashed")) << tail.output();
  ASSERT_TRUE(tail.wait_for("gpu-0          done")) << tail.output();
  ASSERT_TRUE(tail.wait_for("q quit")) << tail.output();

  // Filter to gpu-1: a later frame shows it and no other worker.
  tail.write("/gpu-1\r");
  ASSERT_TRUE(tail.wait_for("filter (gpu-1)")) << tail.output();
  std::size_t frame = tail.output().rfind("\x1b[H\x1b[2J");
  ASSERT_NE(frame, std::string::npos);
  ASSERT_TRUE(tail.wait_for("filter (gpu-1)", tail.output().size())) << tail.output();
  std::string last = tail.output().substr(tail.output().rfind("\x1b[H\x1b[2J"));
  std::string table = last.substr(last.find("WORKER"));
  EXPECT_NE(table.find("gpu-1"), std::string::npos) << table;
  EXPECT_EQ(table.find("gpu-0 "), std::string::npos) << table;
  EXPECT_EQ(table.find("brain"), std::string::npos) << table;

  tail.write("q");
  int status = tail.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);  // Warnings were raised.
  // The screen is restored and the final state printed on the normal screen.
  std::string after = tail.output().substr(tail.output().rfind("\x1b[?1049l"));
  EXPECT_NE(after.find("gpu-1          stuck"), std::string::npos) << after;
  EXPECT_NE(after.find("gpu-2          crashed"), std::string::npos) << after;
  EXPECT_NE(after.find("warnings"), std::string::npos) << after;
}

// ---- --server ------------------------------------------------------------------------------

// Posts NDJSON to a `stagelog serve` with an admin token.
void post_events(int port, const std::string& token, const std::string& body) {
  stagelog::detail::HttpClient client(
      stagelog::detail::parse_url("http://127.0.0.1:" + std::to_string(port)));
  std::string bearer = "Bearer " + token;
  const stagelog::detail::HttpClient::Header headers[] = {{"Authorization", bearer}};
  auto r = client.post("/api/v1/events", "application/x-ndjson", body, headers,
                       Clock::now() + kPatience);
  ASSERT_EQ(r.status, 200) << r.body;
}

TEST(TailTest, FollowsAServerAndReconnectsWhenItRestarts) {
  stagelog::test::TempDir dir;
  auto serve = std::make_unique<stagelog::test::ServeProcess>(dir.path() / "data");
  ASSERT_TRUE(serve->wait_until_listening());
  const int port = serve->port;
  const std::string token = serve->token;
  ASSERT_FALSE(token.empty());
  std::ofstream(dir.path() / "token") << token << "\n";
  // Stored before tail starts: a first connection reads what the server still keeps.
  post_events(port, token, event("w1", "stage", "FETCH", "starting"));

  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  Tail tail({"--plain", "--stuck-stage", "1h", "--server", url, "--token-file",
             (dir.path() / "token").string()},
            false, /*with_stderr=*/true);
  ASSERT_TRUE(tail.wait_for("[w1] running (stage FETCH)")) << tail.output();
  post_events(port, token, event("w2", "stage", "LOAD", "starting"));
  ASSERT_TRUE(tail.wait_for("[w2] running (stage LOAD)")) << tail.output();

  // The server goes away and comes back on the same port: tail says so and follows it again.
  ASSERT_EQ(serve->terminate(), 0);
  ASSERT_TRUE(tail.wait_for("reconnecting in")) << tail.output();
  serve.reset();
  serve = std::make_unique<stagelog::test::ServeProcess>(dir.path() / "data",
                                                         "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(serve->wait_until_listening());
  ASSERT_TRUE(tail.wait_for("reconnected to " + url)) << tail.output();
  EXPECT_TRUE(tail.wait_for("the server restarted")) << tail.output();
  post_events(
      port, token,
      event("w1", "stage", "FETCH", "completed") + event("w3", "stage", "SAVE", "starting"));
  ASSERT_TRUE(tail.wait_for("[w3] running (stage SAVE)")) << tail.output();

  tail.signal(SIGTERM);
  int status = tail.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << tail.output();  // Nothing was flagged.
  // Each event once: w2's start was not shown twice after the reconnection.
  std::string out = tail.output();
  EXPECT_EQ(out.find("[w2] running"), out.rfind("[w2] running")) << out;
}

TEST(TailTest, AServerThatRefusesTheTokenIsAClearError) {
  stagelog::test::TempDir dir;
  stagelog::test::ServeProcess serve(dir.path() / "data");
  ASSERT_TRUE(serve.wait_until_listening());
  const std::string url = "http://127.0.0.1:" + std::to_string(serve.port);
  std::optional<stagelog::test::ScopedEnv> env;
  env.emplace("STAGELOG_TOKEN", "slg_not_a_token");  // The token when there is no --token-file.
  Tail wrong({"--plain", "--server", url}, false, true);
  int status = wrong.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(wrong.output().find("stagelog: " + url + " refused the token (401: unknown token)"),
            std::string::npos)
      << wrong.output();

  env.reset();
  env.emplace("STAGELOG_TOKEN", nullptr);
  Tail none({"--plain", "--server", url}, false, true);
  status = none.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(none.output().find("refused to stream without a token (401: missing token"),
            std::string::npos)
      << none.output();
  EXPECT_NE(none.output().find("give --token-file FILE or set STAGELOG_TOKEN"), std::string::npos);
}

}  // namespace
