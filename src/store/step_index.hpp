#pragma once

// What a store derives from stored steps to answer the query side of the API: each failed
// step's error pattern (GET /api/v1/stats/failures groups by it) and duration histograms with
// a stated error bound (GET /api/v1/stats/stages reads percentiles from them). Pure functions
// and values, no storage: the SQLite store's step index (sqlite_index.cpp) keeps them.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stagelog/store/store.hpp"

namespace stagelog::detail {

// An error message with what varies between occurrences of one failure masked, so that those
// occurrences read the same: numbers become <n> ("timeout after 480000ms" and "timeout after
// 300000ms" both read "timeout after <n>ms"), hex strings and UUIDs <hex>, identifiers that mix
// letters and digits with '_' or '-' (exec_1767_ab12, item-13) <id>, paths <path>. Whitespace
// runs become one space; the result is at most 512 bytes (cut at a UTF-8 boundary).
std::string error_pattern(std::string_view message);

// The keys of a step's custom fields (Step::custom_json) or an attempt's metadata that the step
// index reads: "worker" when it is a string, "duration_ms" when it is a number >= 0 (rounded
// to a whole millisecond). Anything else, a text that is not a JSON object included, is absent.
struct StepKeys {
  std::optional<std::string> worker;
  std::optional<std::int64_t> duration_ms;
};
StepKeys read_step_keys(std::string_view json_object);

// Durations in milliseconds, counted in logarithmic buckets: bucket 0 holds 0 ms, bucket i >= 1
// holds [g^(i-1), g^i) with g = 1.02. A percentile is read as its bucket's geometric middle, so
// it is within 1% of the exact nearest-rank value; the maximum is kept exactly. Counts may be
// subtracted (a replaced step leaves its bucket), never below 0.
class DurationHistogram {
 public:
  static constexpr double kGrowth = 1.02;
  // What percentile() may be off by, relative to the exact value.
  static constexpr double kRelativeError = 0.01;

  void add(std::int64_t duration_ms, std::int64_t times = 1);
  void merge(const DurationHistogram& other);

  std::int64_t count() const noexcept { return count_; }
  // The nearest-rank percentile (p in (0, 1]): the value at rank ceil(p * count), within
  // kRelativeError of it. 0 when empty.
  double percentile(double p) const;

  // Varints: (bucket - previous bucket, count) for each non-empty bucket. decode() returns
  // false (and leaves *this empty) for bytes encode() did not write.
  std::string encode() const;
  bool decode(std::string_view bytes);

  static int bucket_of(std::int64_t duration_ms) noexcept;

 private:
  std::map<int, std::int64_t> buckets_;
  std::int64_t count_ = 0;
};

inline constexpr std::int64_t kHourNs = 3'600'000'000'000;
inline constexpr std::int64_t kDayNs = 24 * kHourNs;

// ns rounded down to a whole unit (an hour, a day), times before the epoch too.
std::int64_t floor_to(std::int64_t ns, std::int64_t unit);

// Whether stage statistics count a step of this status with its duration (completed, failed).
bool has_duration(std::string_view status);

// The steps of one stage (or stage and worker) over some time, as stage statistics sum them.
struct DurationTally {
  std::int64_t count = 0;  // Completed and failed.
  std::int64_t failures = 0;
  std::int64_t skipped = 0;
  std::int64_t max_ms = 0;
  DurationHistogram histogram;

  void add(const DurationTally& other);
  // Percentiles from the histogram, none past the exact maximum.
  store::DurationStats stats() const;
};

// Stage statistics summed from hourly tallies (the SQLite store's rollups, the PostgreSQL
// store's grouped steps), so that both stores answer alike: one row per stage (and worker, with
// by_worker), its total and a point per hour (or day, with daily), rows in (stage, worker)
// order, points oldest first.
class StageStatsSum {
 public:
  StageStatsSum(bool by_worker, bool daily) : by_worker_(by_worker), daily_(daily) {}

  void add(std::int64_t hour_ns, const std::string& stage, const std::string& worker,
           const DurationTally& tally);
  std::vector<store::StageStats> rows() const;

 private:
  struct Row {
    DurationTally total;
    std::map<std::int64_t, DurationTally> points;
  };
  bool by_worker_;
  bool daily_;
  std::map<std::pair<std::string, std::string>, Row> rows_;
};

}  // namespace stagelog::detail
