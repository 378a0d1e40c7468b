#include "server/server_metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "stagelog/version.hpp"

namespace stagelog::detail {

void append_label_value(std::string& out, std::string_view value) {
  out += '"';
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '"';
}

void append_number(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_number(std::string& out, std::uint64_t v) { out += std::to_string(v); }

void append_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

namespace {

// /proc/self/stat's fields after the command (which may hold spaces and parentheses): field 3
// (state) is [0]; utime, stime are [11], [12]; starttime [19]; vsize [20]; rss pages [21].
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> fields;
  std::size_t close = line.rfind(')');
  if (close == std::string::npos) return fields;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  while (rest >> field) fields.push_back(field);
  return fields;
}

double number(const std::vector<std::string>& fields, std::size_t i) {
  if (i >= fields.size()) return 0;
  double v = 0;
  std::from_chars(fields[i].data(), fields[i].data() + fields[i].size(), v);
  return v;
}

// The boot time, seconds since the epoch (/proc/stat's btime): process start times count from it.
double boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime") {
      in >> value;
      return value;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

std::uint64_t open_fds() {
  std::uint64_t n = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n > 0 ? n - 1 : 0;  // Less the descriptor reading the folder.
}

void gauge(std::string& out, std::string_view name, std::string_view type, std::string_view help,
           double value) {
  append_family(out, name, type, help);
  out += name;
  out += ' ';
  append_number(out, value);
  out += '\n';
}

}  // namespace

std::string build_and_process_metrics() {
  std::string out;
  append_family(out, "stagelog_build_info", "gauge",
                "Always 1; the version of stagelog serving, in its label.");
  out += "stagelog_build_info{version=";
  append_label_value(out, STAGELOG_VERSION_STRING);
  out += "} 1\n";

  const std::vector<std::string> stat = stat_fields();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  gauge(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent, seconds.",
        (number(stat, 11) + number(stat, 12)) / ticks);
  gauge(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
        number(stat, 21) * page);
  gauge(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
        number(stat, 20));
  gauge(out, "process_start_time_seconds", "gauge",
        "Start time of the process since the epoch, seconds.",
        boot_time() + number(stat, 19) / ticks);
  gauge(out, "process_open_fds", "gauge", "Open file descriptors.",
        static_cast<double>(open_fds()));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    gauge(out, "process_max_fds", "gauge", "The most file descriptors the process may open.",
          static_cast<double>(limit.rlim_cur));
  }
  return out;
}

void HttpMetrics::record(std::string_view route, std::string_view method, int status,
                         std::chrono::nanoseconds took) {
  const double seconds = std::chrono::duration<double>(took).count();
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(route), std::string(method), status}];
  auto it = latency_.find(route);
  if (it == latency_.end()) it = latency_.emplace(std::string(route), Latency{}).first;
  Latency& l = it->second;
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      ++l.buckets[i];
      break;
    }
  }
  ++l.count;
  l.sum += seconds;
}

std::string HttpMetrics::text() const {
  std::lock_guard lock(mutex_);
  std::string out;
  append_family(out, "stagelog_http_requests_total", "counter",
                "HTTP requests answered, by route pattern (\"\" when none matched), method and "
                "status.");
  for (const auto& [key, n] : requests_) {
    const auto& [route, method, status] = key;
    out += "stagelog_http_requests_total{route=";
    append_label_value(out, route);
    out += ",method=";
    append_label_value(out, method);
    out += ",status=\"" + std::to_string(status) + "\"} ";
    append_number(out, n);
    out += '\n';
  }
  append_family(out, "stagelog_http_request_duration_seconds", "histogram",
                "Time from a request's headers read to its answer made (a stream: to its "
                "first byte), by route pattern.");
  for (const auto& [route, l] : latency_) {
    std::string labels = "route=";
    append_label_value(labels, route);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kBuckets.size(); ++i) {
      out += "stagelog_http_request_duration_seconds_bucket{" + labels + ",le=\"";
      if (i < kBuckets.size()) {
        cumulative += l.buckets[i];
        append_number(out, kBuckets[i]);
      } else {
        cumulative = l.count;
        out += "+Inf";
      }
      out += "\"} ";
      append_number(out, cumulative);
      out += '\n';
    }
    out += "stagelog_http_request_duration_seconds_sum{" + labels + "} ";
    append_number(out, l.sum);
    out += "\nstagelog_http_request_duration_seconds_count{" + labels + "} ";
    append_number(out, l.count);
    out += '\n';
  }
  return out;
}

}  // namespace stagelog::detail
