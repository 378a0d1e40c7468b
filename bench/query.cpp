// The server's query side with a million steps stored (issue 7), over HTTP on loopback:
//
//   list          GET /api/v1/executions?<filter>&limit=50: p50 / p99 (µs) over random time
//                 windows' worth of pages, per filter: status, worker, stage, full text,
//                 metadata, a combination, and a worker no step has (the whole table scanned).
//   stats_stages  GET /api/v1/stats/stages?since=7d (group=stage, then worker): p50 / p99.
//   failures      GET /api/v1/stats/failures?since=7d: p50 / p99.
//   csv_export    GET /api/v1/executions.csv, all 1M rows: bytes/s.
//
// The store is filled once (synchronous=NORMAL: only reads are measured) with 125k attempts of
// 8 steps over 7 days, 8 workers, 4 stages, 3% failing with one of four error shapes; the
// index is then built (its rate is reported as index_steps_per_s) before anything is read.
//
// Goals (issue 7): list with a filter p99 <= 50 ms; stats over 7 days <= 200 ms; CSV >= 100
// MB/s. Machines are shared: read the figures of one run side by side.

#include <benchmark/benchmark.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "stagelog/server/server.hpp"
#include "store/sqlite_store.hpp"

namespace {

using stagelog::bench::TempDir;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kStart = 1767555015234000000;  // 2026-01-04T19:30:15.234Z
constexpr std::int64_t kDay = 86'400'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr int kAttempts = 125'000;
constexpr int kStepsPerAttempt = 8;

stagelog::Execution make_attempt(int i) {
  static const char* const kStages[] = {"WORKTREE", "AGENT", "JUDGE", "CLEANUP"};
  static const char* const kTiers[] = {"gold", "basic", "comprehensive"};
  stagelog::Execution e;
  e.tracking_id = "item-" + std::to_string(i);
  e.execution_id = "exec_1767555015234_" + std::to_string(i);
  e.started_at_ns = kStart + static_cast<std::int64_t>(i) * (7 * kDay / kAttempts);
  e.metadata_json = std::string(R"({"tier":")") + kTiers[i % 3] + R"(","company":"Acme Corp"})";
  std::string worker = "gpu-" + std::to_string(i % 8);
  bool fails = i % 33 == 0;  // 3%
  std::int64_t t = e.started_at_ns;
  for (int s = 0; s < 4; ++s) {
    const char* stage = kStages[s];
    stagelog::Step start;
    start.step = stage;
    start.timestamp_ns = t;
    start.status = "in_progress";
    start.message = std::string("Stage ") + stage + " started";
    start.custom_json = R"({"worker":")" + worker + R"("})";
    e.steps.push_back(start);
    std::int64_t ms = 200 + (i * 7919 + s * 104729) % (s == 1 ? 30'000 : 3'000);
    t += ms * kMs;
    stagelog::Step end = start;
    end.timestamp_ns = t;
    end.custom_json = R"({"worker":")" + worker + R"(","duration_ms":)" + std::to_string(ms) + "}";
    if (fails && s == 2) {
      end.status = "failed";
      end.message = "Judge failed";
      switch (i % 4) {
        case 0:
          end.error_details = "timeout after " + std::to_string(ms * 100) + "ms";
          break;
        case 1:
          end.error_details = "cannot open /data/run-" + std::to_string(i) + "/out.json";
          break;
        case 2:
          end.error_details = "worker " + worker + " lost exec_" + std::to_string(i) + "_x";
          break;
        default:
          end.error_details = "CUDA out of memory: tried to allocate 2.5 GiB";
      }
      e.steps.push_back(end);
      break;
    }
    end.status = "completed";
    end.message = "Complete (" + std::to_string(ms / 1000) + "." + std::to_string(ms / 100 % 10) +
                  "s) after generating " + std::to_string(ms % 977) + " tokens";
    e.steps.push_back(end);
  }
  e.completed_at_ns = t;
  e.duration_ms = (t - e.started_at_ns) / kMs;
  return e;
}

struct QueryFixture {
  TempDir dir;
  std::unique_ptr<stagelog::store::SqliteStore> store;
  std::unique_ptr<stagelog::server::Server> server;
  std::int64_t steps = 0;
  double fill_s = 0;
  double index_s = 0;
};

QueryFixture& fixture() {
  static std::unique_ptr<QueryFixture> f = [] {
    auto q = std::make_unique<QueryFixture>();
    stagelog::store::SqliteStore::Options fast;
    fast.synchronous_full = false;
    q->store = std::make_unique<stagelog::store::SqliteStore>(q->dir.path() / "stagelog.db", fast);
    auto begin = Clock::now();
    std::vector<stagelog::store::ExecutionWrite> writes;
    for (int i = 0; i < kAttempts; ++i) {
      writes.push_back({make_attempt(i), kStart + 365 * kDay, 0});
      q->steps += static_cast<std::int64_t>(writes.back().execution.steps.size());
      if (writes.size() == 1000 || i + 1 == kAttempts) {
        q->store->write({}, writes).value();
        writes.clear();
      }
    }
    auto filled = Clock::now();
    // A query indexes whatever the indexer thread has not yet: this one waits for all of it.
    stagelog::store::FailureQuery all;
    all.until_ns = kStart + 8 * kDay;
    q->store->failure_patterns(all, kStart).value();
    auto indexed = Clock::now();
    q->fill_s = std::chrono::duration<double>(filled - begin).count();
    q->index_s = std::chrono::duration<double>(indexed - filled).count();
    stagelog::server::ServerOptions options;
    options.require_auth = false;
    options.clock = [] { return kStart + 7 * kDay; };
    q->server = std::make_unique<stagelog::server::Server>(*q->store, stagelog::server::TokenFile{},
                                                           options);
    q->server->start();
    return q;
  }();
  return *f;
}

void report_latency(benchmark::State& state, std::vector<double>& micros) {
  if (micros.empty()) return;
  std::sort(micros.begin(), micros.end());
  auto at = [&](double q) { return micros[static_cast<std::size_t>(q * (micros.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = micros.back();
}

// GETs `path` each iteration (a page continued with its next_cursor, then from the top again),
// timing each answer.
void get_repeatedly(benchmark::State& state, const std::string& path) {
  QueryFixture& f = fixture();
  state.counters["steps"] = static_cast<double>(f.steps);
  state.counters["index_steps_per_s"] = static_cast<double>(f.steps) / f.index_s;
  httplib::Client client("127.0.0.1", f.server->port());
  client.set_keep_alive(true);
  client.set_read_timeout(60, 0);
  std::vector<double> micros;
  for (auto _ : state) {
    auto begin = Clock::now();
    auto response = client.Get(path);
    auto end = Clock::now();
    if (!response || response->status != 200) {
      state.SkipWithError(("GET " + path + " failed").c_str());
      break;
    }
    micros.push_back(std::chrono::duration<double, std::micro>(end - begin).count());
  }
  report_latency(state, micros);
}

void bm_list(benchmark::State& state, const char* filter) {
  get_repeatedly(state, std::string("/api/v1/executions?limit=50&") + filter);
}
BENCHMARK_CAPTURE(bm_list, status, "status=failed")->Iterations(200)->UseRealTime();
BENCHMARK_CAPTURE(bm_list, worker, "worker=gpu-3")->Iterations(200)->UseRealTime();
BENCHMARK_CAPTURE(bm_list, stage, "stage=JUDGE&status=completed")->Iterations(200)->UseRealTime();
BENCHMARK_CAPTURE(bm_list, text, "q=timeout")->Iterations(200)->UseRealTime();
BENCHMARK_CAPTURE(bm_list, text_prefix, "q=alloc*")->Iterations(200)->UseRealTime();
BENCHMARK_CAPTURE(bm_list, metadata, "metadata.tier=gold&since=3d")->Iterations(200)->UseRealTime();
BENCHMARK_CAPTURE(bm_list, combined, "worker=gpu-3&status=failed&since=5d")
    ->Iterations(200)
    ->UseRealTime();
BENCHMARK_CAPTURE(bm_list, no_match, "worker=gpu-99")->Iterations(20)->UseRealTime();

void bm_stats_stages(benchmark::State& state, const char* query) {
  get_repeatedly(state, std::string("/api/v1/stats/stages?since=7d") + query);
}
BENCHMARK_CAPTURE(bm_stats_stages, by_stage, "")->Iterations(100)->UseRealTime();
BENCHMARK_CAPTURE(bm_stats_stages, by_worker_hourly, "&group=worker&interval=hour")
    ->Iterations(100)
    ->UseRealTime();

void bm_failures(benchmark::State& state) {
  get_repeatedly(state, "/api/v1/stats/failures?since=7d");
}
BENCHMARK(bm_failures)->Iterations(100)->UseRealTime();

// Every step of every attempt as CSV, streamed: bytes/s and rows.
void bm_csv_export(benchmark::State& state) {
  QueryFixture& f = fixture();
  httplib::Client client("127.0.0.1", f.server->port());
  client.set_read_timeout(600, 0);
  std::int64_t bytes = 0;
  std::int64_t rows = 0;
  for (auto _ : state) {
    std::int64_t lines = 0;
    auto response = client.Get("/api/v1/executions.csv", [&](const char* data, std::size_t n) {
      bytes += static_cast<std::int64_t>(n);
      lines += std::count(data, data + n, '\n');
      return true;
    });
    if (!response || response->status != 200) {
      state.SkipWithError("GET /api/v1/executions.csv failed");
      break;
    }
    rows += lines - 1;  // The header.
  }
  state.SetBytesProcessed(bytes);
  state.counters["rows"] = static_cast<double>(rows) / static_cast<double>(state.iterations());
}
BENCHMARK(bm_csv_export)->Iterations(2)->UseRealTime()->Unit(benchmark::kSecond);

}  // namespace

BENCHMARK_MAIN();
