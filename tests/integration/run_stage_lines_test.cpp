// `stagelog run` reads the stage lines its command prints (any format `stagelog parse` reads)
// as stage events of the worker they name, nested in the run's own stage; other lines stay
// log lines.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli_run.hpp"
#include "stagelog/parse.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

TEST(RunStageLinesTest, ChildStageLinesBecomeStagesOfTheirWorker) {
  test::TempDir dir;
  auto jsonl = (dir.path() / "run.jsonl").string();
  auto run = test::run_stagelog(
      dir,
      {"run", "--quiet", "--worker", "gpu-1", "--stage", "JOB", "--jsonl", jsonl, "--", "sh", "-c",
       "echo 'INFO:job:2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting'; "
       "echo 'plain [x] Stage words'; "
       "echo '2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Done (13.2s)' >&2"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::vector<OwnedEvent> agent;
  std::vector<std::string> logs;
  for (const auto& line : test::read_lines(jsonl)) {
    std::string error;
    auto e = parse_json_event(line, &error);
    ASSERT_TRUE(e) << line << ": " << error;
    if (e->stage == "AGENT") agent.push_back(std::move(*e));
    if (e->kind == Kind::Log && (e->component == "stdout" || e->component == "stderr")) {
      logs.push_back(e->message);
    }
  }
  ASSERT_EQ(agent.size(), 2u);
  EXPECT_EQ(agent[0].kind, Kind::Stage);
  EXPECT_EQ(agent[0].worker, "T0_00");
  EXPECT_EQ(agent[0].status, Status::Starting);
  ASSERT_NE(agent[0].field("parent_stage"), nullptr);
  EXPECT_EQ(std::get<std::string_view>(*agent[0].field("parent_stage")), "JOB");
  EXPECT_EQ(std::get<std::string_view>(*agent[0].field("parent_worker")), "gpu-1");
  EXPECT_EQ(agent[1].status, Status::Completed);
  ASSERT_TRUE(agent[1].elapsed_ns.has_value());
  EXPECT_NEAR(static_cast<double>(*agent[1].elapsed_ns), 13.2e9, 0.01e9);
  ASSERT_NE(agent[1].field("status_text"), nullptr);
  EXPECT_EQ(std::get<std::string_view>(*agent[1].field("status_text")), "Done");
  EXPECT_EQ(logs, std::vector<std::string>{"plain [x] Stage words"});
}

}  // namespace
}  // namespace stagelog
