// Text written by the recorder's text sink parses back to the same events, through the
// library and through `stagelog parse`.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "fake_clock.hpp"
#include "memory_sink.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "stagelog/stage.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using namespace std::chrono_literals;

TEST(ParseRoundTripTest, TextSinkOutputParsesBackToTheSameEvents) {
  test::TempDir dir;
  test::FakeClock clock;
  auto memory = std::make_shared<test::MemorySink>();
  {
    Options options;
    options.clock = clock.fn();
    Recorder recorder(std::move(options));
    recorder.add_sink(memory);
    recorder.add_sink(std::make_shared<TextSink>(dir.path() / "run.log"));
    std::mt19937 rng(7);
    const char* workers[] = {"T0_00", "gpu-1", "w.3", "rank7"};
    const char* stages[] = {"WORKTREE", "AGENT", "orchestrator_execution", "pdf_generation"};
    for (int item = 0; item < 40; ++item) {
      recorder.set_worker(workers[item % 4]);
      RunScope run(recorder, "item-" + std::to_string(item));
      for (const char* name : stages) {
        StageScope stage(recorder.component("worker"), name);
        clock.advance(std::chrono::microseconds(rng() % 30'000'000));
        if (item % 7 == 3 && name[0] == 'o') stage.fail("timeout after 480000ms");
        if (item % 11 == 5 && name[0] == 'p') stage.skip("no template for tier");
      }
      recorder.component("worker").warning("queue low", kv("depth", item));
    }
  }
  auto events = memory->events();
  std::vector<test::OwnedEvent> written;
  for (const auto& e : events) {
    // A run's start and the recorder's close have no text form.
    if (!(e.kind == Kind::Run && e.status == Status::Starting) &&
        e.field("recorder_closed").empty()) {
      written.push_back(e);
    }
  }
  auto lines = test::read_lines(dir.path() / "run.log");
  ASSERT_EQ(lines.size(), written.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string error;
    auto parsed = parse_line(lines[i], &error);
    ASSERT_TRUE(parsed) << lines[i] << ": " << error;
    const auto& e = written[i];
    EXPECT_EQ(parsed->ts_ns, e.ts_ns / 1'000'000 * 1'000'000) << lines[i];
    EXPECT_EQ(parsed->worker, e.worker);
    EXPECT_EQ(parsed->kind, e.kind) << lines[i];
    if (e.kind == Kind::Log) {
      EXPECT_EQ(parsed->level, e.level);
      EXPECT_EQ(parsed->component, e.component);
      // The watchdog's MONITOR lines (the clock jumps minutes) say their fields in the message.
      EXPECT_EQ(parsed->message,
                e.fields_in_message ? e.message : e.message + " depth=" + e.field("depth"));
      continue;
    }
    EXPECT_EQ(parsed->stage, e.stage);
    EXPECT_EQ(parsed->status, e.status) << lines[i];
    EXPECT_EQ(parsed->message, e.message) << lines[i];
    ASSERT_EQ(parsed->duration.has_value(), e.elapsed_ns.has_value()) << lines[i];
    if (e.elapsed_ns) {
      double seconds = static_cast<double>(*e.elapsed_ns) / 1e9;
      double tolerance = 0.05;  // One decimal, as seed 001's f"{elapsed:.1f}s" prints it.
      EXPECT_NEAR(*parsed->duration, seconds, tolerance + 1e-9) << lines[i];
    }
  }

  // The CLI reads the same file without skipping a line.
  std::string command = std::string(STAGELOG_CLI) + " parse " + (dir.path() / "run.log").string();
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::size_t count = 0;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) {
    auto j = nlohmann::json::parse(buffer);
    ASSERT_LT(count, lines.size());
    // The server's ingest shape (docs/EVENTS.md): the line's own time, and a kind.
    EXPECT_EQ(j.value("ts", ""), lines[count].substr(0, lines[count].find(' ')));
    EXPECT_TRUE(j.contains("kind"));
    ++count;
  }
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_EQ(count, lines.size());
}

}  // namespace
}  // namespace stagelog
