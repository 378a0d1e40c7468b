// Exactly-once ingest end to end: worker processes, each with a NetworkSink, post to the real
// `stagelog serve`; the server is killed with SIGKILL in the middle of ingest and restarted on
// the same data folder while the sinks retry. Every event a worker had acknowledged (all of
// them: each worker waits until its sink has sent everything) is stored exactly once.
//
// The 64 workers, bounded by rows rather than by time (its 10 s): each sends batches of
// 20 events and waits for each to be acknowledged, until the store holds 20,000 rows (then the
// kill) and 20,000 more after the restart; about 41,000 events in 1 to 2 s on 2 cores.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "eventually.hpp"
#include "serve_process.hpp"
#include "stagelog/event.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int kWorkers = 64;
constexpr int kPerBatch = 20;
constexpr std::int64_t kRowsBeforeKill = 20000;
constexpr std::int64_t kRowsAfterRestart = 20000;  // More than were stored before the kill.

// A worker process: batches of events until `stop` reads end-of-file, each batch waited for;
// then everything sent. Writes how many events it made to `count_file`. Never returns.
[[noreturn]] void worker_main(int index, int port, const std::string& token, const fs::path& dir,
                              int stop) {
  int made = 0;
  bool sent = false;
  try {
    NetworkSinkOptions o;
    o.url = "http://127.0.0.1:" + std::to_string(port);
    o.token = token;
    o.spool_path = dir / ("w" + std::to_string(index) + ".spool");
    o.batch_events = kPerBatch;
    o.flush_interval = 10ms;
    o.retry_initial = 20ms;
    o.retry_max = 200ms;
    o.request_timeout = 5s;
    o.on_error = [](std::string_view) {};
    NetworkSink sink(o);
    const std::string run = "w" + std::to_string(index);
    for (bool stopping = false; !stopping;) {
      for (int i = 0; i < kPerBatch; ++i, ++made) {
        std::string message = run + "-" + std::to_string(made);
        Event e;
        e.ts_ns = 1'767'555'015'234'000'000 + made;
        e.kind = Kind::Log;
        e.level = Level::Info;
        e.run = run;
        e.worker = run;
        e.component = "worker";
        e.message = message;
        e.pid = ::getpid();
        sink.write(e);
      }
      sink.flush();
      // Acknowledged before the next batch: the server's pace, also while it is down.
      while (!sink.wait_sent(200ms)) {
        pollfd p{stop, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) break;
      }
      pollfd p{stop, POLLIN, 0};
      stopping = poll(&p, 1, 0) > 0;
    }
    sent = sink.wait_sent(60s);
    sink.close();
  } catch (...) {
    sent = false;
  }
  std::ofstream(dir / ("w" + std::to_string(index) + ".count")) << made << "\n";
  ::_exit(sent ? 0 : 1);
}

std::int64_t count(detail::Database& db, const char* sql) {
  detail::Statement s(db, sql);
  return s.step() ? s.int64(0) : -1;
}

TEST(ExactlyOnceServeTest, WorkersRetryingThroughAKillDashNineStoreEveryEventOnce) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  std::optional<ServeProcess> serve(std::in_place, data);
  ASSERT_TRUE(serve->wait_until_listening());
  ASSERT_FALSE(serve->token.empty());
  const std::string token = serve->token;
  const int port = serve->port;

  int stop[2];
  ASSERT_EQ(pipe2(stop, O_CLOEXEC), 0);
  std::vector<pid_t> workers;
  for (int i = 0; i < kWorkers; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(stop[1]);
      worker_main(i, port, token, dir.path(), stop[0]);
    }
    workers.push_back(pid);
  }
  ::close(stop[0]);
  struct StopAtExit {
    int& fd;
    std::vector<pid_t>& pids;
    ~StopAtExit() {
      if (fd >= 0) ::close(fd);
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
    }
  } stop_at_exit{stop[1], workers};

  detail::Database db((data / "stagelog.db").string(), /*create=*/false);
  sqlite3_busy_timeout(db.get(), 5000);
  auto rows = [&] { return count(db, "SELECT COUNT(*) FROM events"); };
  ASSERT_TRUE(eventually([&] { return rows() >= kRowsBeforeKill; }, 120s)) << rows() << " rows";
  serve->kill_hard();  // Mid-ingest: 64 sinks have batches in flight or about to be.
  const std::int64_t at_kill = rows();
  serve.emplace(data, "127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(serve->wait_until_listening());
  ASSERT_EQ(serve->port, port);
  ASSERT_TRUE(eventually([&] { return rows() >= at_kill + kRowsAfterRestart; }, 120s))
      << rows() << " rows, " << at_kill << " at the kill";

  ::close(stop[1]);  // The workers finish their batch, send everything and exit.
  stop[1] = -1;
  std::int64_t made = 0;
  for (int i = 0; i < kWorkers; ++i) {
    int status = 0;
    ASSERT_EQ(::waitpid(workers[i], &status, 0), workers[i]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "worker " << i << " did not send everything (status " << status << ")";
    std::ifstream in(dir.path() / ("w" + std::to_string(i) + ".count"));
    std::int64_t n = 0;
    in >> n;
    made += n;
  }
  workers.clear();

  const std::int64_t stored = rows();
  const std::int64_t distinct = count(db, "SELECT COUNT(DISTINCT message) FROM events");
  const std::int64_t keys = count(db, "SELECT COUNT(*) FROM batches");
  std::printf(
      "%d workers: %lld events made, %lld rows stored (%lld at the kill), %lld distinct, "
      "%lld batch keys\n",
      kWorkers, static_cast<long long>(made), static_cast<long long>(stored),
      static_cast<long long>(at_kill), static_cast<long long>(distinct),
      static_cast<long long>(keys));
  EXPECT_EQ(distinct, made) << "events lost";
  EXPECT_EQ(stored, made) << "events stored twice";
  int status = serve->terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

}  // namespace
}  // namespace stagelog::test
