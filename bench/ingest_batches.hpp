#pragma once

// The NDJSON batches the ingest benchmarks post (bench/ingest.cpp on SQLite,
// bench/postgres_ingest.cpp on PostgreSQL): runs of a pipeline with stages, log lines and run
// ends, fresh run ids per batch as new jobs keep arriving.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/time_text.hpp"

namespace stagelog::bench {

inline constexpr int kBatchEvents = 1000;
inline constexpr std::int64_t kStart = 1767555015234000000;  // 2026-01-04T19:30:15.234Z
inline constexpr std::int64_t kDay = 86'400'000'000'000;

inline void append_event(std::string& out, std::int64_t ts, const char* kind, const char* level,
                         const std::string& run, const std::string& worker, const char* stage,
                         const char* status, std::int64_t elapsed, const char* message) {
  out += R"({"ts":")";
  stagelog::detail::append_iso_timestamp(out, ts);
  out += R"(","ts_ns":)" + std::to_string(ts) + R"(,"kind":")" + kind + R"(","level":")" + level +
         R"(","run":")" + run + R"(","worker":")" + worker +
         R"(","component":"pipeline","stage":")" + stage + '"';
  if (status != nullptr) out += R"(,"status":")" + std::string(status) + '"';
  if (elapsed >= 0) out += R"(,"elapsed_ns":)" + std::to_string(elapsed);
  out += R"(,"message":")" + std::string(message) +
         R"(","fields":{"tokens":1247,"model":"llama-3-8b"},"pid":4242,"host":"gpu-box"})";
  out += '\n';
}

// A batch number as run ids carry it: fixed width, so a batch's text can be made from another's
// by overwriting digits.
inline std::string batch_digits(std::uint64_t batch) {
  std::string digits = std::to_string(batch);
  return std::string(10 - std::min<std::size_t>(digits.size(), 10), '0') + digits;
}

// Batch n's events are n seconds after batch 0's: later jobs start later. (Until 2026-12-04
// every batch repeated batch 0's times, which no fleet does: each batch's 100 runs then went
// into the middle of the executions' time index, 100 index pages written per batch where
// arriving jobs append to one or two.)
inline constexpr std::int64_t kBatchSpacing = 1'000'000'000;

inline std::int64_t batch_start(std::uint64_t batch) {
  return kStart + static_cast<std::int64_t>(batch) * kBatchSpacing;
}

// 1000 events: 100 runs, each a run start, three stages started and ended, a log line and a
// run end (+ 100 more log lines). Run ids are fresh per batch, as new jobs keep arriving.
inline std::string make_batch(std::uint64_t batch, const std::string& client) {
  static const char* const kStages[] = {"WORKTREE", "AGENT", "JUDGE"};
  std::string out;
  out.reserve(kBatchEvents * 300);
  std::int64_t ts = batch_start(batch);
  for (int r = 0; r < 100; ++r) {
    std::string run = client + "-" + batch_digits(batch) + "-" + std::to_string(r);
    std::string worker = "w";
    worker += std::to_string(r % 8);  // Not "w" + ...: GCC 12 warns falsely (-Wrestrict).
    append_event(out, ts++, "run", "info", run, worker, "", "starting", -1, "");
    for (const char* stage : kStages) {
      append_event(out, ts++, "stage", "info", run, worker, stage, "starting", -1, "");
      append_event(out, ts++, "stage", "info", run, worker, stage, "completed", 1'500'000'000, "");
    }
    append_event(out, ts++, "log", "info", run, worker, "AGENT", nullptr, -1,
                 "generated 1247 tokens in 13.2s");
    append_event(out, ts++, "log", "debug", run, worker, "AGENT", nullptr, -1, "cache hit");
    append_event(out, ts++, "run", "info", run, worker, "", "completed", 4'500'000'000, "");
  }
  return out;
}

// A client's batches: make_batch's text once, then each batch by overwriting the batch
// number in its run ids and its events' times, so that what the clients spend building bodies
// (a worker's sink spreads that over the events it writes) does not take the server's CPU in
// this run. next() gives make_batch(n, client) for n = 1, 2, ...
class Batches {
 public:
  explicit Batches(const std::string& client) : text_(make_batch(0, client)) {
    std::string marker = client + "-" + batch_digits(0) + "-";
    for (std::size_t at = text_.find(marker); at != std::string::npos;
         at = text_.find(marker, at + 1)) {
      digits_at_.push_back(at + client.size() + 1);
    }
    // Each event's "ts" text and "ts_ns" digits, both of fixed width for these times.
    const std::string ts_key = R"("ts":")", ts_ns_key = R"("ts_ns":)";
    for (std::size_t at = text_.find(ts_key); at != std::string::npos;
         at = text_.find(ts_key, at + 1)) {
      std::size_t ns_at = text_.find(ts_ns_key, at) + ts_ns_key.size();
      times_.push_back(
          Time{at + ts_key.size(), ns_at, std::stoll(text_.substr(ns_at, 19)) - batch_start(0)});
    }
  }
  const std::string& next() {
    std::string digits = batch_digits(++batch_);
    for (std::size_t at : digits_at_) text_.replace(at, digits.size(), digits);
    std::string iso;
    for (const Time& t : times_) {
      std::int64_t ts = batch_start(batch_) + t.offset;
      iso.clear();
      stagelog::detail::append_iso_timestamp(iso, ts);
      text_.replace(t.iso_at, iso.size(), iso);
      std::string ns = std::to_string(ts);
      text_.replace(t.ns_at, ns.size(), ns);
    }
    return text_;
  }
  [[nodiscard]] std::uint64_t count() const noexcept { return batch_; }

 private:
  struct Time {
    std::size_t iso_at;   // The "ts" text.
    std::size_t ns_at;    // The "ts_ns" digits.
    std::int64_t offset;  // From the batch's start.
  };
  std::string text_;
  std::vector<std::size_t> digits_at_;
  std::vector<Time> times_;
  std::uint64_t batch_ = 0;
};

}  // namespace stagelog::bench
