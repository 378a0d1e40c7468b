// The seed-000 pipeline: 4 worker threads push 20 items through WORKTREE -> AGENT -> JUDGE ->
// CLEANUP, as a workflow of 20 nodes (seed 002). The terminal shows the progress display (one
// bar, one line per busy worker) with stage lines scrolling above; the same events go to
// demo-out/pipeline.log (text) and demo-out/pipeline.jsonl (JSON lines), and the workflow's own
// files to demo-out/workflow/. Item 13 fails in JUDGE. With STAGELOG_SERVER (and STAGELOG_TOKEN)
// set, the events also go to that `stagelog serve`, where each item becomes an execution log.
//
//   pipeline [OUTPUT_DIR] [--fast]

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stagelog/stagelog.hpp"

namespace {

enum class ExecutionStage { WORKTREE, AGENT, JUDGE, CLEANUP };

constexpr int kWorkers = 4;
constexpr int kItems = 20;
constexpr int kFailingItem = 13;

void work(std::mt19937& rng, int lo_ms, int hi_ms, double scale) {
  std::uniform_int_distribution<int> ms(lo_ms, hi_ms);
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int>(ms(rng) * 1000 * scale)));
}

void worker_main(stagelog::Recorder& recorder, stagelog::Workflow& workflow, int index,
                 std::atomic<int>& next, double scale) {
  char worker[24];
  std::snprintf(worker, sizeof worker, "T0_%02d", index);
  recorder.set_worker(worker);
  stagelog::Logger log = recorder.component("worker");
  std::mt19937 rng(static_cast<unsigned>(index) * 7919u);
  for (int item; (item = next.fetch_add(1)) < kItems;) {
    char run_id[24];
    std::snprintf(run_id, sizeof run_id, "item-%02d", item);
    stagelog::RunScope run(log, run_id);
    auto started = std::chrono::steady_clock::now();
    workflow.node_start(run_id, item);
    {
      stagelog::StageScope stage(log, ExecutionStage::WORKTREE);
      work(rng, 20, 60, scale);
    }
    {
      stagelog::StageScope stage(log, ExecutionStage::AGENT, stagelog::kv("model", "qwen2.5:7b"));
      work(rng, 200, 900, scale);
      stage.complete(stagelog::kv("tokens", 800 + item * 37));
    }
    bool judged = true;
    {
      stagelog::StageScope stage(log, ExecutionStage::JUDGE);
      work(rng, 80, 400, scale);
      if (item == kFailingItem) {
        stage.fail("AI generation timeout after 480000ms", stagelog::kv("retry_attempt", 2));
        judged = false;
      }
    }
    {
      stagelog::StageScope stage(log, ExecutionStage::CLEANUP);
      work(rng, 5, 30, scale);
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (judged) {
      workflow.node_success(run_id, seconds, stagelog::hash_output(run_id));
    } else {
      workflow.node_failure(run_id, "JUDGE failed", seconds);
      run.fail("JUDGE failed");
    }
  }
  log.info("worker finished");
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path out = "demo-out";
  double scale = 1.0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--fast") {
      scale = 0.05;
    } else if (arg == "-h" || arg == "--help") {
      std::puts(
          "usage: pipeline [OUTPUT_DIR] [--fast]\n"
          "4 workers push 20 items through WORKTREE, AGENT, JUDGE and CLEANUP.\n"
          "Writes OUTPUT_DIR/pipeline.log and OUTPUT_DIR/pipeline.jsonl (default demo-out).");
      return 0;
    } else {
      out = arg;
    }
  }
  try {
    std::filesystem::create_directories(out);
    std::filesystem::remove(out / "pipeline.log");
    std::filesystem::remove(out / "pipeline.jsonl");
    stagelog::Recorder recorder;
    recorder.add_sink(std::make_shared<stagelog::ProgressSink>());
    recorder.add_sink(std::make_shared<stagelog::TextSink>(out / "pipeline.log"));
    recorder.add_sink(std::make_shared<stagelog::JsonlSink>(out / "pipeline.jsonl"));
    std::shared_ptr<stagelog::NetworkSink> server = stagelog::network_sink_from_env();
    if (server) recorder.add_sink(server);

    stagelog::WorkflowOptions workflow_options;
    workflow_options.recorder = &recorder;
    stagelog::Workflow workflow("step_01_pipeline", out / "workflow", kItems, workflow_options);
    std::atomic<int> next{0};
    std::vector<std::thread> workers;
    for (int i = 0; i < kWorkers; ++i) {
      workers.emplace_back(worker_main, std::ref(recorder), std::ref(workflow), i, std::ref(next),
                           scale);
    }
    for (auto& t : workers) t.join();
    workflow.complete();
    recorder.flush();
    std::printf("\nwrote %s and %s\n", (out / "pipeline.log").c_str(),
                (out / "pipeline.jsonl").c_str());
    if (server) {
      bool sent = server->wait_sent(std::chrono::seconds(10));
      stagelog::NetworkSinkStats stats = server->stats();
      std::printf("sent %llu events to %s%s\n", static_cast<unsigned long long>(stats.sent),
                  server->url().c_str(), sent ? "" : " (the rest is spooled for the next run)");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline: %s\n", e.what());
    return 1;
  }
  return 0;
}
