// How fast the backend formats and writes: kEvents log calls (an int, a double and a short
// string) from one thread, timed from the first call until everything is in the file (stagelog:
// Recorder::flush() returns; spdlog: a flush queued after the last message has run). The same
// for spdlog's async logger writing to a file, for the ratio.
//
// items_per_second is events per second; bytes_per_second is bytes of file written per second;
// producer_ns is the mean time per call on the logging thread (the last call returning), to
// show whether the producer or the backend bounds the run.
//
// stagelog's ring buffer is allocated on a thread's first event and its pages are touched for
// the first time as it fills, while spdlog allocates and touches its queue when the thread pool
// is built. So that both runs measure a warm queue, stagelog first logs kEvents untimed events
// (more than the ring holds); the text_cold_ring case skips that and shows the first-fill cost.

#include <benchmark/benchmark.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/sink.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "bench_support.hpp"
#include "stagelog/stagelog.hpp"

namespace {

constexpr std::int64_t kEvents = 1'000'000;
constexpr std::size_t kStagelogQueueBytes = std::size_t{64} << 20;
// About 50 MB of preallocated slots, comparable to stagelog's 64 MiB ring.
constexpr std::size_t kSpdlogQueueSlots = std::size_t{1} << 17;
constexpr const char* kSpdlogPattern = "%Y-%m-%dT%H:%M:%S.%eZ [%t] %l %n: %v";
constexpr std::string_view kName = "abc";

using Clock = std::chrono::steady_clock;
using stagelog::bench::FlushCountingSink;
using stagelog::bench::TempDir;

const TempDir* g_dir = nullptr;

double ratio_for(std::int64_t i) { return static_cast<double>(i & 1023) / 1024.0; }

enum class SinkKind { Text, Jsonl };

struct Run {
  Clock::duration producer;  // First call to the last call returning.
  Clock::duration total;     // First call to everything written.
  std::uintmax_t bytes;      // File bytes written by the timed events.
};

// Times `run(path)` once per iteration, each time into a fresh file.
template <typename RunOnce>
void measure(benchmark::State& state, const std::string& file_name, RunOnce&& run) {
  const std::filesystem::path path = g_dir->path() / file_name;
  std::uintmax_t bytes = 0;
  double producer_s = 0;
  for (auto _ : state) {
    const Run r = run(path);
    state.SetIterationTime(std::chrono::duration<double>(r.total).count());
    producer_s += std::chrono::duration<double>(r.producer).count();
    bytes += r.bytes;
    std::filesystem::remove(path);
  }
  const auto events = static_cast<double>(state.iterations() * kEvents);
  state.SetItemsProcessed(state.iterations() * kEvents);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["producer_ns"] = producer_s * 1e9 / events;
  state.counters["bytes_per_event"] = static_cast<double>(bytes) / events;
}

void stagelog_log(const stagelog::Logger& log, std::int64_t i) {
  log.info("processed", stagelog::kv("n", i), stagelog::kv("ratio", ratio_for(i)),
           stagelog::kv("name", kName));
}

// watchdog: the default in-process watchdog folds every event; without it, its cost shows.
void bm_stagelog_backend(benchmark::State& state, SinkKind kind, bool warm_ring, bool watchdog) {
  const std::string file_name = kind == SinkKind::Text ? "stagelog.log" : "stagelog.jsonl";
  measure(state, file_name, [kind, warm_ring, watchdog](const std::filesystem::path& path) {
    stagelog::Options options;
    options.queue_capacity = kStagelogQueueBytes;
    options.full_policy = stagelog::FullPolicy::Block;
    if (!watchdog) options.watchdog = std::nullopt;
    stagelog::Recorder recorder(options);
    if (kind == SinkKind::Text) {
      recorder.add_sink(std::make_shared<stagelog::TextSink>(path));
    } else {
      recorder.add_sink(std::make_shared<stagelog::JsonlSink>(path));
    }
    recorder.set_worker("T0_00");
    const stagelog::Logger log = recorder.component("worker");
    log.info("warm-up");  // Creates this thread's ring buffer.
    if (warm_ring) {
      for (std::int64_t i = 0; i < kEvents; ++i) stagelog_log(log, i);
    }
    recorder.flush();
    const std::uintmax_t before = std::filesystem::file_size(path);

    const auto t0 = Clock::now();
    for (std::int64_t i = 0; i < kEvents; ++i) stagelog_log(log, i);
    const auto t1 = Clock::now();
    recorder.flush();
    const auto t2 = Clock::now();

    return Run{t1 - t0, t2 - t0, std::filesystem::file_size(path) - before};
  });
}

void bm_spdlog_backend(benchmark::State& state) {
  measure(state, "spdlog.log", [](const std::filesystem::path& path) {
    auto pool = std::make_shared<spdlog::details::thread_pool>(kSpdlogQueueSlots, 1);
    auto sink = std::make_shared<FlushCountingSink>(path.string());
    auto logger = std::make_shared<spdlog::async_logger>("worker", sink, pool,
                                                         spdlog::async_overflow_policy::block);
    logger->set_pattern(kSpdlogPattern, spdlog::pattern_time_type::utc);
    logger->info("warm-up");
    sink->wait_written(*logger);
    const std::uintmax_t before = std::filesystem::file_size(path);

    const auto t0 = Clock::now();
    for (std::int64_t i = 0; i < kEvents; ++i) {
      logger->info("processed n={} ratio={} name={}", i, ratio_for(i), kName);
    }
    const auto t1 = Clock::now();
    sink->wait_written(*logger);
    const auto t2 = Clock::now();

    return Run{t1 - t0, t2 - t0, std::filesystem::file_size(path) - before};
  });
}

void throughput_args(benchmark::internal::Benchmark* b) {
  b->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(bm_stagelog_backend, text, SinkKind::Text, true, true)->Apply(throughput_args);
BENCHMARK_CAPTURE(bm_stagelog_backend, text_no_watchdog, SinkKind::Text, true, false)
    ->Apply(throughput_args);
BENCHMARK_CAPTURE(bm_stagelog_backend, jsonl, SinkKind::Jsonl, true, true)->Apply(throughput_args);
BENCHMARK_CAPTURE(bm_stagelog_backend, text_cold_ring, SinkKind::Text, false, true)
    ->Apply(throughput_args);
BENCHMARK(bm_spdlog_backend)->Apply(throughput_args);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    TempDir dir;
    g_dir = &dir;
    benchmark::RunSpecifiedBenchmarks();
    g_dir = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "backend_throughput: %s\n", e.what());
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
