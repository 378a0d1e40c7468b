// Latency of one call on the logging thread: stagelog next to spdlog's async logger, in the
// same binary and run.
//
// Each call is timed on its own with the time-stamp counter (fenced rdtsc / rdtscp), converted
// to ns by a calibration against steady_clock. Every figure therefore includes the timer's own
// cost; bm_timer_overhead reports that cost so it can be subtracted by eye, and its step_ns
// counter the smallest step the counter advances by (percentiles are no finer than that).
//
// Calls come in bursts of kBurst, far below either library's queue capacity. Between bursts,
// outside the timed region, the threads line up and the backend writes out everything logged so
// far, so what is measured is the call, not a full queue. Both libraries use the same scheme.
// Before measuring, each thread logs kWarmupCalls events: stagelog's ring buffer is created on a
// thread's first event and its pages are first touched as it fills, while spdlog preallocates
// and touches its queue up front; warming both keeps page faults out of the tail.
//
// Counters, over the calls of all threads: mean_ns, p50_ns, p99_ns, p999_ns, max_ns. Under
// ->Threads(2) Google Benchmark divides the Time column by the thread count (it treats threads
// as throughput), so read mean_ns for the per-call mean.

#include <benchmark/benchmark.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/sink.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bench_support.hpp"
#include "stagelog/stagelog.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace {

constexpr std::int64_t kCallsPerThread = 400'000;
constexpr std::size_t kBurst = 256;
constexpr std::size_t kStagelogQueueBytes = std::size_t{1} << 20;
constexpr std::size_t kWarmupCalls = 32768;  // Wraps the 1 MiB ring about three times.
constexpr int kMaxThreads = 2;
constexpr std::size_t kSpdlogQueueSlots = 8192;  // spdlog's default; a burst needs 2 * kBurst.
constexpr const char* kSpdlogPattern = "%Y-%m-%dT%H:%M:%S.%eZ [%t] %l %n: %v";

// --- Timer -----------------------------------------------------------------------------------

#if defined(__x86_64__) || defined(__i386__)
// The fences keep the timed call from moving across the reads of the counter.
inline std::uint64_t timer_start() noexcept {
  _mm_lfence();
  std::uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
inline std::uint64_t timer_stop() noexcept {
  unsigned aux;
  std::uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}
#else
inline std::uint64_t timer_start() noexcept {
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}
inline std::uint64_t timer_stop() noexcept { return timer_start(); }
#endif

double g_ns_per_tick = 1.0;
double g_timer_step_ns = 0.0;

void calibrate_timer() {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const std::uint64_t c0 = timer_start();
  while (Clock::now() - t0 < std::chrono::milliseconds(100)) {
  }
  const std::uint64_t c1 = timer_stop();
  const auto t1 = Clock::now();
  g_ns_per_tick =
      std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(c1 - c0);
  // Back-to-back reads are further apart than one step, so the step is the gcd of their gaps.
  std::uint64_t step = 0;
  std::uint64_t prev = timer_start();
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t now = timer_start();
    step = std::gcd(step, now - prev);
    prev = now;
  }
  g_timer_step_ns = static_cast<double>(step) * g_ns_per_tick;
}

// --- Environment shared by all benchmarks ----------------------------------------------------

using stagelog::bench::FlushCountingSink;
using stagelog::bench::TempDir;

struct Env {
  explicit Env(const std::filesystem::path& dir)
      : recorder(stagelog_options()),
        spdlog_pool(std::make_shared<spdlog::details::thread_pool>(kSpdlogQueueSlots, 1)),
        spdlog_sink(std::make_shared<FlushCountingSink>((dir / "spdlog.log").string())),
        spdlog_logger(std::make_shared<spdlog::async_logger>(
            "worker", spdlog_sink, spdlog_pool, spdlog::async_overflow_policy::block)) {
    recorder.add_sink(std::make_shared<stagelog::TextSink>(dir / "stagelog.log"));
    log = recorder.component("worker");
    log.set_level(stagelog::Level::Info);
    spdlog_logger->set_pattern(kSpdlogPattern, spdlog::pattern_time_type::utc);
    spdlog_logger->set_level(spdlog::level::info);
  }

  static stagelog::Options stagelog_options() {
    stagelog::Options options;
    options.queue_capacity = kStagelogQueueBytes;
    options.full_policy = stagelog::FullPolicy::Block;
    return options;
  }

  stagelog::Recorder recorder;
  stagelog::Logger log;
  std::shared_ptr<spdlog::details::thread_pool> spdlog_pool;
  std::shared_ptr<FlushCountingSink> spdlog_sink;
  std::shared_ptr<spdlog::async_logger> spdlog_logger;
};

Env* g_env = nullptr;

// --- Measurement -----------------------------------------------------------------------------

// One slot of samples per thread: a thread writes only its own; thread 0 reads them all after
// the benchmark loop, whose end is a barrier for every thread of the run.
std::array<std::vector<std::uint64_t>, kMaxThreads> g_samples;
// Lines up the bursts of the two threads under ->Threads(2), so that they produce together.
std::barrier<> g_pair(2);

void set_percentiles(benchmark::State& state) {
  std::vector<std::uint64_t> all;
  for (int t = 0; t < state.threads(); ++t) {
    const auto& samples = g_samples[static_cast<std::size_t>(t)];
    all.insert(all.end(), samples.begin(), samples.end());
  }
  if (all.empty()) return;
  std::sort(all.begin(), all.end());
  auto at = [&](double q) {
    auto rank = static_cast<std::size_t>(q * static_cast<double>(all.size()));
    return static_cast<double>(all[std::min(rank, all.size() - 1)]) * g_ns_per_tick;
  };
  const double sum = std::accumulate(all.begin(), all.end(), 0.0, [](double s, std::uint64_t v) {
    return s + static_cast<double>(v);
  });
  state.counters["mean_ns"] = sum / static_cast<double>(all.size()) * g_ns_per_tick;
  state.counters["p50_ns"] = at(0.50);
  state.counters["p99_ns"] = at(0.99);
  state.counters["p999_ns"] = at(0.999);
  state.counters["max_ns"] = static_cast<double>(all.back()) * g_ns_per_tick;
}

// Times `call(i)` once per iteration. Every kBurst calls, outside the timed region, all threads
// stop and `drain()` (run by thread 0) waits until the backend has written everything.
template <typename Drain, typename Call>
void measure(benchmark::State& state, Drain&& drain, Call&& call) {
  if (state.threads() > kMaxThreads) {
    state.SkipWithError("at most 2 threads");
    return;
  }
  const bool paired = state.threads() == 2;
  const bool leader = state.thread_index() == 0;
  std::vector<std::uint64_t>& mine = g_samples[static_cast<std::size_t>(state.thread_index())];
  mine.assign(static_cast<std::size_t>(state.max_iterations), 0);
  std::size_t i = 0;
  for (auto _ : state) {
    if (i % kBurst == 0) {
      if (paired) g_pair.arrive_and_wait();
      if (leader) drain();
      if (paired) g_pair.arrive_and_wait();
    }
    const std::uint64_t t0 = timer_start();
    call(i);
    const std::uint64_t t1 = timer_stop();
    mine[i++] = t1 - t0;
    state.SetIterationTime(static_cast<double>(t1 - t0) * g_ns_per_tick * 1e-9);
  }
  mine.resize(i);
  if (leader) set_percentiles(state);
}

double ratio_for(std::size_t i) { return static_cast<double>(i & 1023) / 1024.0; }

constexpr std::string_view kName = "abc";

void stagelog_log(const stagelog::Logger& log, std::size_t i) {
  log.info("processed", stagelog::kv("n", static_cast<std::int64_t>(i)),
           stagelog::kv("ratio", ratio_for(i)), stagelog::kv("name", kName));
}

void spdlog_log(spdlog::logger& logger, std::size_t i) {
  logger.info("processed n={} ratio={} name={}", static_cast<std::int64_t>(i), ratio_for(i), kName);
}

void no_drain() {}
void stagelog_drain() { g_env->recorder.flush(); }
void spdlog_drain() { g_env->spdlog_sink->wait_written(*g_env->spdlog_logger); }

void stagelog_thread_setup(benchmark::State& state) {
  g_env->recorder.set_worker(state.thread_index() == 0 ? "T0_00" : "T0_01");
  for (std::size_t i = 0; i < kWarmupCalls; ++i) stagelog_log(g_env->log, i);
}

void spdlog_thread_setup() {
  for (std::size_t i = 0; i < kWarmupCalls; ++i) spdlog_log(*g_env->spdlog_logger, i);
}

// --- Benchmarks ------------------------------------------------------------------------------

void bm_timer_overhead(benchmark::State& state) {
  measure(state, no_drain, [](std::size_t i) { benchmark::DoNotOptimize(i); });
  if (state.thread_index() == 0) state.counters["step_ns"] = g_timer_step_ns;
}

void bm_stagelog_stage(benchmark::State& state) {
  stagelog_thread_setup(state);
  const stagelog::Logger log = g_env->log;
  measure(state, stagelog_drain, [&](std::size_t) { stagelog::StageScope stage(log, "AGENT"); });
}

// What a spdlog user writes for the same start and end lines, timing the stage itself.
void bm_spdlog_stage(benchmark::State& state) {
  spdlog_thread_setup();
  spdlog::async_logger& logger = *g_env->spdlog_logger;
  measure(state, spdlog_drain, [&](std::size_t) {
    const auto begin = std::chrono::steady_clock::now();
    logger.info("Stage: AGENT - Starting");
    logger.info("Stage: AGENT - Complete ({:.1f}s)",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  });
}

void bm_stagelog_log(benchmark::State& state) {
  stagelog_thread_setup(state);
  const stagelog::Logger log = g_env->log;
  measure(state, stagelog_drain, [&](std::size_t i) { stagelog_log(log, i); });
}

void bm_spdlog_log(benchmark::State& state) {
  spdlog_thread_setup();
  spdlog::async_logger& logger = *g_env->spdlog_logger;
  measure(state, spdlog_drain, [&](std::size_t i) { spdlog_log(logger, i); });
}

// Goal: one relaxed atomic load, <= 2 ns.
void bm_stagelog_below_level(benchmark::State& state) {
  stagelog::Logger log = g_env->recorder.component("filtered");
  log.set_level(stagelog::Level::Warning);
  std::int64_t n = 42;
  double ratio = 0.5;
  for (auto _ : state) {
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(ratio);
    log.debug("processed", stagelog::kv("n", n), stagelog::kv("ratio", ratio),
              stagelog::kv("name", kName));
  }
}

void bm_spdlog_below_level(benchmark::State& state) {
  spdlog::async_logger& logger = *g_env->spdlog_logger;
  std::int64_t n = 42;
  double ratio = 0.5;
  for (auto _ : state) {
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(ratio);
    logger.debug("processed n={} ratio={} name={}", n, ratio, kName);
  }
}

void latency_args(benchmark::internal::Benchmark* b) {
  b->Iterations(kCallsPerThread)->UseManualTime()->Threads(1)->Threads(2);
}

BENCHMARK(bm_timer_overhead)->Apply(latency_args);
BENCHMARK(bm_stagelog_stage)->Apply(latency_args);
BENCHMARK(bm_spdlog_stage)->Apply(latency_args);
BENCHMARK(bm_stagelog_log)->Apply(latency_args);
BENCHMARK(bm_spdlog_log)->Apply(latency_args);
BENCHMARK(bm_stagelog_below_level)->MinTime(0.2);
BENCHMARK(bm_spdlog_below_level)->MinTime(0.2);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  calibrate_timer();
  try {
    TempDir dir;
    Env env(dir.path());
    g_env = &env;
    benchmark::RunSpecifiedBenchmarks();
    g_env = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hot_path_latency: %s\n", e.what());
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
