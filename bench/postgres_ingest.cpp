// The PostgreSQL store's ingest and read paths, each beside its limit or its SQLite figure,
// on a PostgreSQL this program starts (initdb + pg_ctl in a temporary folder, Unix socket,
// fsync on; skipped with a message when PostgreSQL's server programs are not installed):
//
//   copy_raw        the engine's limit: the rows of the same batches sent with COPY ... FROM
//                   STDIN (PQputCopyData) by one client into a table shaped like the store's
//                   events table (same columns and indexes), one transaction per batch of 1000.
//   http_ingest     events/s through POST /api/v1/events: 2 and 32 keep-alive clients on
//                   loopback, batches of 1000 NDJSON events shaped as bench/ingest.cpp's (runs
//                   with stages, so they also fold into executions), into a PostgresStore. A
//                   200 means committed. The counter vs_copy is this rate / copy_raw's rate.
//   execution_log   GET /api/execution-logs/{id}: p50 / p99 (µs) over random ids, store:0
//                   SQLite, store:1 PostgreSQL, holding the same executions (the counter
//                   executions says how many: 100k, or what PostgreSQL took in 60 s of filling).
//   list, search    GET /api/v1/executions?limit=50 (the newest page) and ?q=timeout: p50 / p99.
//
// Goal (issue 18): http_ingest ≥ 50% of copy_raw. Machines are shared: compare the ratios of
// one run, not absolute figures.

#include <benchmark/benchmark.h>
#include <httplib.h>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "ingest_batches.hpp"
#include "postgres_server.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/server/server.hpp"
#include "stagelog/store/postgres_store.hpp"
#include "stagelog/store/sqlite_store.hpp"

namespace {

using stagelog::bench::Batches;
using stagelog::bench::kBatchEvents;
using stagelog::bench::kDay;
using stagelog::bench::kStart;
using stagelog::bench::make_batch;
using stagelog::bench::TempDir;
using stagelog::test::PostgresOptions;
using stagelog::test::PostgresServer;
using Clock = std::chrono::steady_clock;

constexpr int kExecutions = 100'000;
constexpr auto kFillBudget = std::chrono::seconds(60);
// Attempts per Store::write while filling: each write is a few statements whatever its size.
constexpr int kFillBatch = 5000;

std::unique_ptr<PostgresServer> postgres;

std::string new_database() { return postgres->conninfo(postgres->create_database()); }

void exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string error = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  if (!ok) throw std::runtime_error(sql.substr(0, 40) + ": " + error);
}

double copy_rate = 0;  // Events/s of copy_raw, for http_ingest's vs_copy.

// A batch's rows in COPY's text format (tab-separated, \N for NULL).
std::string copy_rows(std::uint64_t b) {
  std::string text = make_batch(b, "raw");
  std::string rows;
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    auto e = *stagelog::parse_json_event(std::string_view(text).substr(begin, end - begin));
    begin = end + 1;
    rows += std::to_string(e.ts_ns) + '\t' + std::string(stagelog::kind_name(e.kind)) + '\t' +
            std::string(stagelog::level_json_name(e.level)) + '\t' +
            (e.status == stagelog::Status::None ? std::string("\\N")
                                                : std::string(stagelog::status_name(e.status))) +
            '\t' + e.run + '\t' + e.worker + '\t' + e.component + '\t' + e.stage + '\t' +
            e.message + '\t' + (e.elapsed_ns ? std::to_string(*e.elapsed_ns) : "\\N") +
            "\t{\"tokens\":1247,\"model\":\"llama-3-8b\"}\t" + std::to_string(e.pid) + '\t' +
            e.host + "\tf\t" + std::to_string(kStart + kDay) + '\n';
  }
  return rows;
}

void bm_copy_raw(benchmark::State& state) {
  PGconn* c = PQconnectdb(new_database().c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    state.SkipWithError(PQerrorMessage(c));
    PQfinish(c);
    return;
  }
  exec(c,
       "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, ts_ns BIGINT NOT NULL, kind TEXT NOT "
       "NULL, level TEXT NOT NULL, status TEXT, run BYTEA NOT NULL, worker BYTEA NOT NULL, "
       "component BYTEA NOT NULL, stage BYTEA NOT NULL, message BYTEA NOT NULL, elapsed_ns "
       "BIGINT, fields_json BYTEA NOT NULL, pid BIGINT NOT NULL, host BYTEA NOT NULL, "
       "fields_in_message BOOLEAN NOT NULL, expires_at_ns BIGINT NOT NULL);"
       "CREATE INDEX events_by_run ON events (run, ts_ns, id);"
       "CREATE INDEX events_by_expiry ON events (expires_at_ns);");
  std::int64_t rows = 0;
  std::uint64_t next = 0;
  for (auto _ : state) {
    state.PauseTiming();  // Parsing and formatting rows is not the engine's work.
    std::string data = copy_rows(next++);
    state.ResumeTiming();
    exec(c, "BEGIN");
    PGresult* r = PQexec(c,
                         "COPY events (ts_ns, kind, level, status, run, worker, component, "
                         "stage, message, elapsed_ns, fields_json, pid, host, fields_in_message, "
                         "expires_at_ns) FROM STDIN");
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    ok = ok && PQputCopyData(c, data.data(), static_cast<int>(data.size())) == 1 &&
         PQputCopyEnd(c, nullptr) == 1;
    r = PQgetResult(c);
    ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    while ((r = PQgetResult(c)) != nullptr) PQclear(r);
    if (!ok) {
      state.SkipWithError(PQerrorMessage(c));
      break;
    }
    exec(c, "COMMIT");
    rows += kBatchEvents;
  }
  state.SetItemsProcessed(rows);
  PQfinish(c);
}
BENCHMARK(bm_copy_raw)->UseRealTime()->MinTime(3.0)->Unit(benchmark::kMillisecond);

// Takes copy_raw's rate from its report: items_per_second, as Google Benchmark computes it.
class CopyRateReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.benchmark_name().starts_with("bm_copy_raw") && !run.error_occurred) {
        auto it = run.counters.find("items_per_second");
        if (it != run.counters.end()) copy_rate = it->second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

struct IngestFixture {
  std::unique_ptr<stagelog::store::Store> store;
  std::unique_ptr<stagelog::server::Server> server;
};
std::unique_ptr<IngestFixture> ingest_fixture;

void start_ingest_server(const benchmark::State&) {
  ingest_fixture = std::make_unique<IngestFixture>();
  ingest_fixture->store = stagelog::store::open_postgres_store(new_database());
  stagelog::server::ServerOptions options;
  options.require_auth = false;  // Not what is measured.
  ingest_fixture->server = std::make_unique<stagelog::server::Server>(
      *ingest_fixture->store, stagelog::server::TokenFile{}, options);
  ingest_fixture->server->start();
}

void stop_ingest_server(const benchmark::State&) { ingest_fixture.reset(); }

void bm_http_ingest(benchmark::State& state) {
  httplib::Client client("127.0.0.1", ingest_fixture->server->port());
  client.set_keep_alive(true);
  client.set_read_timeout(std::chrono::seconds(60));
  Batches batches("c" + std::to_string(state.thread_index()));
  std::int64_t refused = 0;
  const auto begin = Clock::now();
  for (auto _ : state) {
    const std::string& body = batches.next();
    auto response = client.Post("/api/v1/events", body, "application/x-ndjson");
    // 503: the server's in-flight body budget is spent; a client sends the batch again, as
    // the network sink does (without waiting out Retry-After here: the rate is what counts).
    for (int retry = 0; retry < 1000 && response && response->status == 503; ++retry) {
      ++refused;
      response = client.Post("/api/v1/events", body, "application/x-ndjson");
    }
    if (!response || response->status != 200) {
      std::string error = "POST /api/v1/events failed: ";
      error += response ? std::to_string(response->status) + " " + response->body
                        : httplib::to_string(response.error());
      state.SkipWithError(error.c_str());
      break;
    }
  }
  state.counters["refused_503"] = static_cast<double>(refused);
  const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  const double events = static_cast<double>(batches.count()) * kBatchEvents;
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  // Summed over the clients: the total rate over copy_raw's.
  if (copy_rate > 0 && seconds > 0) state.counters["vs_copy"] = events / seconds / copy_rate;
}
BENCHMARK(bm_http_ingest)
    ->Setup(start_ingest_server)
    ->Teardown(stop_ingest_server)
    ->Threads(2)
    ->Threads(32)
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMillisecond);

stagelog::Execution make_execution(int i) {
  static const char* const kSteps[] = {
      "initialization",         "status_update", "orchestrator_execution",
      "orchestrator_execution", "storage",       "error_handling"};
  stagelog::Execution e;
  e.tracking_id = "T" + std::to_string(i);
  e.execution_id = "exec_1767555015234_" + std::to_string(i);
  e.started_at_ns = kStart + std::int64_t{i} * 1'000'000;
  e.completed_at_ns = e.started_at_ns + 150'000'000'000;
  e.duration_ms = 150'000;
  e.metadata_json = R"({"tier":"comprehensive","company":"Acme Corp"})";
  bool fails = i % 33 == 0;
  for (int s = 0; s < 6; ++s) {
    stagelog::Step step;
    step.step = kSteps[s];
    step.timestamp_ns = e.started_at_ns + std::int64_t{s} * 30'000'000'000;
    step.status = s == 5 ? (fails ? "failed" : "completed") : "completed";
    step.message = "Processing step " + std::to_string(s) + " for Acme Corp";
    if (s == 5 && fails) step.error_details = "Error: AI generation timeout after 480000ms";
    e.steps.push_back(std::move(step));
  }
  return e;
}

// Both stores holding the same executions, each behind a server; made by the first read
// benchmark, kept for the others.
struct ReadFixture {
  TempDir dir;
  std::unique_ptr<stagelog::store::Store> stores[2];
  std::unique_ptr<stagelog::server::Server> servers[2];
  int executions = 0;
};
std::unique_ptr<ReadFixture> reads;

void fill(stagelog::store::Store& store, int from, int to) {
  std::vector<stagelog::store::ExecutionWrite> writes;
  for (int i = from; i < to; ++i) writes.push_back({make_execution(i), kStart + 365 * kDay, 0});
  store.write({}, writes).value();
}

void start_read_servers(const benchmark::State&) {
  if (reads) return;
  reads = std::make_unique<ReadFixture>();
  stagelog::store::SqliteStoreOptions fast;
  fast.synchronous_full = false;  // Only reads are measured.
  reads->stores[0] = stagelog::store::open_sqlite_store(reads->dir.path() / "stagelog.db", fast);
  reads->stores[1] = stagelog::store::open_postgres_store(new_database());
  const auto begin = Clock::now();
  int n = 0;
  while (n < kExecutions && Clock::now() - begin < kFillBudget) {
    fill(*reads->stores[1], n, n + kFillBatch);
    n += kFillBatch;
  }
  const double pg_seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  const auto sqlite_begin = Clock::now();
  for (int i = 0; i < n; i += kFillBatch) fill(*reads->stores[0], i, i + kFillBatch);
  // SQLite indexes steps on a thread of its own, and a query first indexes what it has not
  // yet: this one waits for all of it (PostgreSQL indexes them in the write's transaction).
  stagelog::store::FailureQuery all;
  all.until_ns = kStart + 8 * kDay;
  reads->stores[0]->failure_patterns(all, kStart).value();
  std::fprintf(stderr,
               "postgres_ingest: %d executions of 6 steps stored (PostgreSQL in %.1f s, SQLite "
               "in %.1f s, with its step index)%s\n",
               n, pg_seconds, std::chrono::duration<double>(Clock::now() - sqlite_begin).count(),
               n < kExecutions ? ", fewer than 100k: filling PostgreSQL took past 60 s" : "");
  reads->executions = n;
  for (int s = 0; s < 2; ++s) {
    stagelog::server::ServerOptions options;
    options.require_auth = false;
    options.clock = [] { return kStart + kDay; };
    reads->servers[s] = std::make_unique<stagelog::server::Server>(
        *reads->stores[s], stagelog::server::TokenFile{}, options);
    reads->servers[s]->start();
  }
}

// GETs `url(i)` once per iteration on the store of state.range(0): p50 / p99 in µs.
template <typename Url>
void measure_reads(benchmark::State& state, Url&& url) {
  httplib::Client client("127.0.0.1", reads->servers[state.range(0)]->port());
  client.set_keep_alive(true);
  std::mt19937 random(42);
  std::uniform_int_distribution<int> pick(0, reads->executions - 1);
  std::vector<double> micros;
  for (auto _ : state) {
    std::string target = url(pick(random));
    auto begin = Clock::now();
    auto response = client.Get(target);
    auto end = Clock::now();
    if (!response || response->status != 200) {
      std::string error = "GET " + target + " failed: ";
      error += response ? std::to_string(response->status) + " " + response->body
                        : httplib::to_string(response.error());
      state.SkipWithError(error.c_str());
      break;
    }
    micros.push_back(std::chrono::duration<double, std::micro>(end - begin).count());
  }
  if (!micros.empty()) {
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) { return micros[static_cast<std::size_t>(q * (micros.size() - 1))]; };
    state.counters["p50_us"] = at(0.50);
    state.counters["p99_us"] = at(0.99);
  }
  state.counters["executions"] = reads->executions;
}

void bm_execution_log(benchmark::State& state) {
  measure_reads(state, [](int i) { return "/api/execution-logs/T" + std::to_string(i); });
}
void bm_list(benchmark::State& state) {
  measure_reads(state, [](int) { return std::string("/api/v1/executions?limit=50"); });
}
void bm_search(benchmark::State& state) {
  measure_reads(state, [](int) { return std::string("/api/v1/executions?limit=50&q=timeout"); });
}
BENCHMARK(bm_execution_log)
    ->ArgName("store")
    ->Arg(0)
    ->Arg(1)
    ->Setup(start_read_servers)
    ->Iterations(5000)
    ->UseRealTime();
BENCHMARK(bm_list)
    ->ArgName("store")
    ->Arg(0)
    ->Arg(1)
    ->Setup(start_read_servers)
    ->Iterations(500)
    ->UseRealTime();
BENCHMARK(bm_search)
    ->ArgName("store")
    ->Arg(0)
    ->Arg(1)
    ->Setup(start_read_servers)
    ->Iterations(500)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  auto bindir = PostgresServer::find_bindir();
  if (!bindir) {
    std::fprintf(stderr,
                 "postgres_ingest: skipped: PostgreSQL's server programs (initdb, pg_ctl) are not "
                 "installed: run scripts/setup (Debian's postgresql package), or set "
                 "STAGELOG_PG_BINDIR to the folder holding initdb\n");
    return 0;
  }
  try {
    postgres = std::make_unique<PostgresServer>(
        *bindir, PostgresOptions{.fsync = true, .settings = " -c shared_buffers=256MB"});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "postgres_ingest: cannot start PostgreSQL: %s\n", e.what());
    return 1;
  }
  CopyRateReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reads.reset();
  ingest_fixture.reset();
  postgres.reset();
  benchmark::Shutdown();
  return 0;
}
