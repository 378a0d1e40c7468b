// The server's ingest and read paths, each beside the limit it is measured against:
//
//   http_ingest      events/s through POST /api/v1/events: 2 and 256 keep-alive clients on
//                    loopback, batches of 1000 NDJSON events (runs with stages, so they also fold
//                    into executions), into a SQLite store. A 200 means committed. sync_full:1
//                    is the store's default (synchronous=FULL: survives a power cut), sync_full:0
//                    is synchronous=NORMAL (survives kill -9 of the server, not a power cut).
//   sqlite_raw       the engine's limit: the same rows inserted by one writer straight into a
//                    SQLite table of the same shape, one transaction per batch, same setting
//                    (synchronous, 20 rows per INSERT, a checkpoint every 4000 WAL pages, done
//                    here by the writer itself), nothing else stored.
//   execution_log    GET /api/execution-logs/{id} with 100k executions stored: p50 / p99 in
//                    the counters (µs), over random ids. fleet:1 reads while 2000 idle
//                    keep-alive connections are held and a client ingests batches all along.
//   body_memory      peak resident memory of a fresh server process (forked) taking one NDJSON
//                    body of 8 or 63 MiB, per byte of body: the counter peak_rss_per_body_byte.
//                    It includes what any first request fills once (SQLite's page cache, the
//                    live stream's history); body_memory_slope separates the two: the growth
//                    of two fresh servers (8 and 63 MiB) as fixed_MiB + per_body_byte × body.
//
// Goals (issue 17): http_ingest ≥ 60% of sqlite_raw with 2 and with 256 clients; execution_log
// fleet:1 p99 ≤ 10 ms; body_memory ≤ 3 bytes per byte of body. Machines are shared: compare the
// ratios of one run, not absolute figures.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <httplib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "format/format.hpp"
#include "ingest_batches.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/server/server.hpp"
#include "store/sqlite_store.hpp"

namespace {

using stagelog::bench::Batches;
using stagelog::bench::kBatchEvents;
using stagelog::bench::kDay;
using stagelog::bench::kStart;
using stagelog::bench::make_batch;
using stagelog::bench::TempDir;

struct IngestFixture {
  TempDir dir;
  std::unique_ptr<stagelog::store::SqliteStore> store;
  std::unique_ptr<stagelog::server::Server> server;
};
std::unique_ptr<IngestFixture> ingest_fixture;

// Argument 1: synchronous=FULL (an acknowledged write survives a power cut, the store's
// default); 0: NORMAL (it survives kill -9 of the server, not a power cut).
stagelog::store::SqliteStore::Options store_options(std::int64_t full) {
  stagelog::store::SqliteStore::Options options;
  options.synchronous_full = full != 0;
  return options;
}

void start_ingest_server(const benchmark::State& state) {
  ingest_fixture = std::make_unique<IngestFixture>();
  ingest_fixture->store = std::make_unique<stagelog::store::SqliteStore>(
      ingest_fixture->dir.path() / "stagelog.db", store_options(state.range(0)));
  stagelog::server::ServerOptions options;
  options.require_auth = false;  // Not what is measured.
  ingest_fixture->server = std::make_unique<stagelog::server::Server>(
      *ingest_fixture->store, stagelog::server::TokenFile{}, options);
  ingest_fixture->server->start();
}

void stop_ingest_server(const benchmark::State&) { ingest_fixture.reset(); }

// CPU time of this process's threads, from /proc/self/task/*/schedstat (nanoseconds on a
// CPU): the store's writer thread, and all the server's threads (every thread but the
// benchmark's clients, named bench-client). Their growth per batch says what a batch costs the
// server and how close its one writer thread is to being the limit.
struct ServerCpu {
  std::int64_t store_ns = 0;
  std::int64_t server_ns = 0;
};
ServerCpu server_cpu() {
  ServerCpu cpu;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::string name;
    std::int64_t ns = 0;
    std::ifstream(task.path() / "comm") >> name;
    std::ifstream(task.path() / "schedstat") >> ns;
    if (name == "bench-client") continue;
    cpu.server_ns += ns;
    if (name == "stagelog-store") cpu.store_ns += ns;
  }
  return cpu;
}

// A client as the network sink is one: it waits for its answer as long as the sink does
// (10 s), and a 503 (bytes in flight over the cap while 256 clients post at once) sends the same
// batch again after the Retry-After the server asked for, with its Idempotency-Key.
void bm_http_ingest(benchmark::State& state) {
  httplib::Client client("127.0.0.1", ingest_fixture->server->port());
  client.set_keep_alive(true);
  client.set_read_timeout(std::chrono::seconds(10));
  Batches batches("c" + std::to_string(state.thread_index()));
  std::int64_t refused = 0;
  char producer[33];  // 32 lowercase hex digits, one producer per client thread.
  std::snprintf(producer, sizeof producer, "%032x", state.thread_index() + 1);
  pthread_setname_np(pthread_self(), "bench-client");
  const ServerCpu cpu_before = server_cpu();
  for (auto _ : state) {
    const std::string& body = batches.next();
    httplib::Headers headers = {
        {"Idempotency-Key", std::string(producer) + "-" + std::to_string(batches.count())}};
    auto response = client.Post("/api/v1/events", headers, body, "application/x-ndjson");
    for (int again = 0; again < 100 && response && response->status == 503; ++again) {
      ++refused;
      int seconds = std::max(1, std::atoi(response->get_header_value("Retry-After").c_str()));
      std::this_thread::sleep_for(std::chrono::seconds(std::min(seconds, 5)));
      response = client.Post("/api/v1/events", headers, body, "application/x-ndjson");
    }
    if (!response || response->status != 200) {
      const std::string why =
          response ? "POST /api/v1/events: status " + std::to_string(response->status)
                   : "POST /api/v1/events: " + httplib::to_string(response.error());
      state.SkipWithError(why.c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(batches.count()) * kBatchEvents);
  state.counters["refused_503"] = benchmark::Counter(static_cast<double>(refused));
  if (state.thread_index() == 0) {
    // Every client posts about as many batches as this one.
    const ServerCpu cpu_after = server_cpu();
    const double all_batches = static_cast<double>(batches.count()) * state.threads();
    state.counters["store_us_per_batch"] =
        static_cast<double>(cpu_after.store_ns - cpu_before.store_ns) / 1e3 / all_batches;
    state.counters["server_us_per_batch"] =
        static_cast<double>(cpu_after.server_ns - cpu_before.server_ns) / 1e3 / all_batches;
  }
  pthread_setname_np(pthread_self(), "ingest");
}
BENCHMARK(bm_http_ingest)
    ->ArgName("sync_full")
    ->Arg(1)
    ->Arg(0)
    ->Setup(start_ingest_server)
    ->Teardown(stop_ingest_server)
    ->Threads(2)
    ->Threads(256)
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMillisecond);

// One SQLite row per event, the columns of the store's events table.
void bm_sqlite_raw(benchmark::State& state) {
  TempDir dir;
  auto path = (dir.path() / "raw.db").string();
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("sqlite3_open");
  sqlite3_exec(db, state.range(0) != 0 ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
               nullptr, nullptr, nullptr);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=4000;"
               "CREATE TABLE events (id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, kind TEXT "
               "NOT NULL, level TEXT NOT NULL, status TEXT, run TEXT NOT NULL, worker TEXT NOT "
               "NULL, component TEXT NOT NULL, stage TEXT NOT NULL, message TEXT NOT NULL, "
               "elapsed_ns INTEGER, fields_json TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT "
               "NOT NULL, fields_in_message INTEGER NOT NULL, expires_at_ns INTEGER NOT NULL);"
               "CREATE INDEX events_by_run ON events (run, ts_ns, id);"
               "CREATE INDEX events_by_expiry ON events (expires_at_ns);",
               nullptr, nullptr, nullptr);
  // Rows inserted as the store inserts them, kRowsPerInsert to a statement (a statement's own
  // cost paid once for them: 1.4x the rate of one row per statement here), the rest one by one.
  constexpr int kRowsPerInsert = 20;
  auto prepare = [&](int rows) {
    std::string sql =
        "INSERT INTO events (ts_ns, kind, level, status, run, worker, component, stage, "
        "message, elapsed_ns, fields_json, pid, host, fields_in_message, expires_at_ns) VALUES ";
    for (int r = 0; r < rows; ++r) {
      sql += r == 0 ? "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)" : ",(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    }
    sqlite3_stmt* statement = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr);
    return statement;
  };
  sqlite3_stmt* insert_many = prepare(kRowsPerInsert);
  sqlite3_stmt* insert_one = prepare(1);

  // The rows of the batches the HTTP benchmark sends (fresh run ids each time, as there: the
  // index on run sees the same locality), parsed with the clock stopped: only inserting counts.
  auto parse_batch = [](std::uint64_t b) {
    std::string text = make_batch(b, "raw");
    std::vector<stagelog::OwnedEvent> events;
    std::size_t begin = 0;
    while (begin < text.size()) {
      std::size_t end = text.find('\n', begin);
      events.push_back(
          *stagelog::parse_json_event(std::string_view(text).substr(begin, end - begin)));
      begin = end + 1;
    }
    return events;
  };
  const std::string fields = R"({"tokens":1247,"model":"llama-3-8b"})";
  auto text = [](sqlite3_stmt* insert, int column, std::string_view s) {
    sqlite3_bind_text(insert, column, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
  };
  // Binds `e` as the row whose first parameter is `p`.
  auto bind = [&](sqlite3_stmt* insert, int p, const stagelog::OwnedEvent& e) {
    sqlite3_bind_int64(insert, p, e.ts_ns);
    text(insert, p + 1, stagelog::kind_name(e.kind));
    text(insert, p + 2, stagelog::level_json_name(e.level));
    if (e.status == stagelog::Status::None) {
      sqlite3_bind_null(insert, p + 3);
    } else {
      text(insert, p + 3, stagelog::status_name(e.status));
    }
    text(insert, p + 4, e.run);
    text(insert, p + 5, e.worker);
    text(insert, p + 6, e.component);
    text(insert, p + 7, e.stage);
    text(insert, p + 8, e.message);
    if (e.elapsed_ns) {
      sqlite3_bind_int64(insert, p + 9, *e.elapsed_ns);
    } else {
      sqlite3_bind_null(insert, p + 9);
    }
    text(insert, p + 10, fields);
    sqlite3_bind_int64(insert, p + 11, e.pid);
    text(insert, p + 12, e.host);
    sqlite3_bind_int(insert, p + 13, e.fields_in_message ? 1 : 0);
    sqlite3_bind_int64(insert, p + 14, kStart + kDay);
  };

  std::int64_t rows = 0;
  std::uint64_t next = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<stagelog::OwnedEvent> batch = parse_batch(next++);
    state.ResumeTiming();
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    std::size_t i = 0;
    bool ok = true;
    while (ok && i < batch.size()) {
      bool many = batch.size() - i >= kRowsPerInsert;
      sqlite3_stmt* insert = many ? insert_many : insert_one;
      int count = many ? kRowsPerInsert : 1;
      for (int r = 0; r < count; ++r) bind(insert, r * 15 + 1, batch[i + r]);
      ok = sqlite3_step(insert) == SQLITE_DONE;
      sqlite3_reset(insert);
      i += static_cast<std::size_t>(count);
    }
    if (!ok) {
      state.SkipWithError(sqlite3_errmsg(db));
      break;
    }
    rows += static_cast<std::int64_t>(batch.size());
    if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      state.SkipWithError(sqlite3_errmsg(db));
      break;
    }
  }
  state.SetItemsProcessed(rows);
  sqlite3_finalize(insert_many);
  sqlite3_finalize(insert_one);
  sqlite3_close(db);
}
BENCHMARK(bm_sqlite_raw)
    ->ArgName("sync_full")
    ->Arg(1)
    ->Arg(0)
    ->UseRealTime()
    ->MinTime(3.0)
    ->Unit(benchmark::kMillisecond);

// `n` TCP connections to the server that connect and then say nothing: idle keep-alive clients.
std::vector<int> hold_connections(int port, int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (fd >= 0) ::close(fd);
      break;
    }
    fds.push_back(fd);
  }
  return fds;
}

// 100k executions of six steps each, stored in batches (synchronous=NORMAL: only the reads
// are measured), then read back through the seed's API.
void bm_execution_log(benchmark::State& state) {
  constexpr int kExecutions = 100'000;
  TempDir dir;
  auto path = dir.path() / "stagelog.db";
  {
    stagelog::store::SqliteStore::Options fast;
    fast.synchronous_full = false;
    stagelog::store::SqliteStore fill(path, fast);
    std::vector<stagelog::store::ExecutionWrite> writes;
    for (int i = 0; i < kExecutions; ++i) {
      stagelog::Execution e;
      e.tracking_id = "T" + std::to_string(i);
      e.execution_id = "exec_1767555015234_" + std::to_string(i);
      e.started_at_ns = kStart + std::int64_t{i} * 1'000'000;
      e.completed_at_ns = e.started_at_ns + 150'000'000'000;
      e.duration_ms = 150'000;
      e.metadata_json = R"({"tier":"comprehensive","company":"Acme Corp"})";
      static const char* const kSteps[] = {
          "initialization",         "status_update", "orchestrator_execution",
          "orchestrator_execution", "storage",       "error_handling"};
      for (int s = 0; s < 6; ++s) {
        stagelog::Step step;
        step.step = kSteps[s];
        step.timestamp_ns = e.started_at_ns + std::int64_t{s} * 30'000'000'000;
        step.status = s == 5 ? "failed" : (s == 2 ? "in_progress" : "completed");
        step.message = "Processing step " + std::to_string(s) + " for Acme Corp";
        if (s == 5) step.error_details = "Error: AI generation timeout after 480000ms";
        e.steps.push_back(std::move(step));
      }
      writes.push_back({std::move(e), kStart + 365 * kDay, 0});
      if (writes.size() == 1000) {
        fill.write({}, writes).value();
        writes.clear();
      }
    }
  }
  stagelog::store::SqliteStore store(path);
  stagelog::server::ServerOptions options;
  options.require_auth = false;
  options.clock = [] { return kStart + kDay; };
  const bool fleet = state.range(0) != 0;
  if (fleet) {  // The idle connections stay for the whole run.
    options.read_timeout = std::chrono::minutes(10);
    options.keep_alive_timeout = std::chrono::minutes(10);
  }
  stagelog::server::Server server(store, stagelog::server::TokenFile{}, options);
  server.start();
  std::vector<int> idle;
  std::atomic<bool> stop_ingest{false};
  std::thread ingest;
  if (fleet) {
    idle = hold_connections(server.port(), 2000);
    ingest = std::thread([&, port = server.port()] {
      httplib::Client writer("127.0.0.1", port);
      writer.set_keep_alive(true);
      Batches batches("fleet");
      while (!stop_ingest) writer.Post("/api/v1/events", batches.next(), "application/x-ndjson");
    });
  }
  httplib::Client client("127.0.0.1", server.port());
  client.set_keep_alive(true);

  std::mt19937 random(42);
  std::uniform_int_distribution<int> pick(0, kExecutions - 1);
  std::vector<double> micros;
  for (auto _ : state) {
    std::string url = "/api/execution-logs/T" + std::to_string(pick(random));
    auto begin = std::chrono::steady_clock::now();
    auto response = client.Get(url);
    auto end = std::chrono::steady_clock::now();
    if (!response || response->status != 200) {
      state.SkipWithError("GET /api/execution-logs failed");
      break;
    }
    micros.push_back(std::chrono::duration<double, std::micro>(end - begin).count());
  }
  stop_ingest = true;
  if (ingest.joinable()) ingest.join();
  for (int fd : idle) ::close(fd);
  if (!micros.empty()) {
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) { return micros[static_cast<std::size_t>(q * (micros.size() - 1))]; };
    state.counters["p50_us"] = at(0.50);
    state.counters["p99_us"] = at(0.99);
    state.counters["max_us"] = micros.back();
  }
  state.counters["idle_connections"] = static_cast<double>(idle.size());
}
BENCHMARK(bm_execution_log)
    ->ArgName("fleet")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(20'000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// VmHWM of process `pid`, in bytes (0 when it cannot be read).
std::int64_t peak_rss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// A fresh server in a child process (its memory apart from the client's), fed one NDJSON body
// of about `body_bytes`: how much its peak resident memory grew (bytes), beside the body's size.
// Nothing is excluded: the growth holds the body, the events of the piece being stored, and
// what the server keeps whatever the request: SQLite's page cache filling (64 MiB at most) and
// the live stream's history (the last 10,000 events).
struct BodyMemory {
  std::size_t body = 0;
  std::int64_t growth = 0;
};

BodyMemory body_memory(std::size_t body_bytes) {
  TempDir dir;
  int ports[2];
  if (::pipe(ports) != 0) throw std::runtime_error("pipe");
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(ports[0]);
    stagelog::store::SqliteStore store(dir.path() / "stagelog.db");
    stagelog::server::ServerOptions options;
    options.require_auth = false;
    options.max_body_bytes = body_bytes + (std::size_t{1} << 20);
    options.max_inflight_bytes = std::max(options.max_inflight_bytes, options.max_body_bytes);
    stagelog::server::Server server(store, stagelog::server::TokenFile{}, options);
    server.bind();
    int port = server.port();
    if (::write(ports[1], &port, sizeof port) != sizeof port) ::_exit(1);
    server.run();  // Until killed.
    ::_exit(0);
  }
  ::close(ports[1]);
  int port = 0;
  if (::read(ports[0], &port, sizeof port) != sizeof port) throw std::runtime_error("no port");
  ::close(ports[0]);

  std::string body;
  Batches batches("mem");
  while (body.size() < body_bytes) body += batches.next();
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(300, 0);
  client.set_write_timeout(300, 0);
  // One small batch first: the server's threads, store and caches are up before the baseline.
  auto warm = client.Post("/api/v1/events", Batches("warm").next(), "application/x-ndjson");
  const std::int64_t before = peak_rss(child);
  auto response = client.Post("/api/v1/events", body, "application/x-ndjson");
  const std::int64_t after = peak_rss(child);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  if (!warm || !response || response->status != 200) {
    throw std::runtime_error("POST /api/v1/events failed");
  }
  return BodyMemory{body.size(), after - before};
}

// peak_rss_per_body_byte: the growth over the body's size, for a body of range(0) MiB.
void bm_body_memory(benchmark::State& state) {
  const std::size_t body_bytes = static_cast<std::size_t>(state.range(0)) << 20;
  BodyMemory m;
  for (auto _ : state) {
    try {
      m = body_memory(body_bytes);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  state.counters["body_MiB"] = static_cast<double>(m.body) / (1 << 20);
  state.counters["peak_rss_per_body_byte"] =
      static_cast<double>(m.growth) / static_cast<double>(m.body);
}
BENCHMARK(bm_body_memory)
    ->ArgName("MiB")
    ->Arg(8)
    ->Arg(63)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// What each further byte of body costs, apart from what any request fills once: the growth of
// two fresh servers, fed 8 and 63 MiB, as a line (fixed_MiB + per_body_byte × body).
void bm_body_memory_slope(benchmark::State& state) {
  BodyMemory small;
  BodyMemory large;
  for (auto _ : state) {
    try {
      small = body_memory(std::size_t{8} << 20);
      large = body_memory(std::size_t{63} << 20);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  const double slope = static_cast<double>(large.growth - small.growth) /
                       static_cast<double>(large.body - small.body);
  state.counters["per_body_byte"] = slope;
  state.counters["fixed_MiB"] =
      (static_cast<double>(small.growth) - slope * static_cast<double>(small.body)) / (1 << 20);
}
BENCHMARK(bm_body_memory_slope)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
