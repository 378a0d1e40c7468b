#pragma once

// What /metrics says about the server itself, beside the live state's families (live.hpp):
// stagelog_build_info, the process (CPU, memory, open descriptors, start time: the names
// Prometheus' client libraries use, so dashboards made for them work) and the HTTP requests
// answered (a counter by route, method and status, a latency histogram by route). And the
// exposition format's pieces, which live.cpp uses too.
//
// Threads: HttpMetrics::record() from every request thread at once, text() from any; one
// mutex.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace stagelog::detail {

// A label value in the exposition format: \, " and newline escaped, in quotes.
void append_label_value(std::string& out, std::string_view value);
void append_number(std::string& out, double v);
void append_number(std::string& out, std::uint64_t v);
// The # HELP and # TYPE lines of a family.
void append_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help);

// stagelog_build_info{version=...} 1 and the process_* families, read from /proc/self now.
std::string build_and_process_metrics();

class HttpMetrics {
 public:
  // One request answered: its route's pattern ("/api/v1/executions/{id}"; "" for a request no
  // route took), method, status, and the time from its headers read to its answer made.
  void record(std::string_view route, std::string_view method, int status,
              std::chrono::nanoseconds took);
  // stagelog_http_requests_total and stagelog_http_request_duration_seconds.
  std::string text() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1,    2.5,   10};
  struct Latency {
    std::array<std::uint64_t, kBuckets.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Latency, std::less<>> latency_;
};

}  // namespace stagelog::detail
