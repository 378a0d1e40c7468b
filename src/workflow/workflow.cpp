#include "stagelog/workflow.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <regex>
#include <system_error>

#include "base/fd_io.hpp"
#include "base/time.hpp"
#include "stagelog/error.hpp"
#include "stagelog/field.hpp"
#include "workflow/py_json.hpp"

namespace stagelog {

namespace {

const std::string kSeparator(80, '=');

// "2026-02-08T12:34:56.789012": Python's datetime.isoformat() of a naive local time.
std::string iso_local(std::int64_t ns) {
  std::time_t seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lld",
                static_cast<long long>((ns / 1000) % 1'000'000));
  return buf;
}

std::string local_format(std::int64_t ns, const char* format) {
  std::time_t seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

double epoch_seconds(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// "out/" as "out", as Python's Path does, so the summary's paths come out the same.
std::filesystem::path without_trailing_slash(const std::filesystem::path& dir) {
  std::string s = dir.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::filesystem::path make_dirs(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create " + dir.string() + ": " + ec.message());
  return dir;
}

}  // namespace

// A JSON object written with json.dumps' default separators; keys keep the order they were
// first set in, and setting a key again replaces its value (Python's dict.update).
class Workflow::Obj {
 public:
  Obj& raw(std::string_view key, std::string_view json) {
    for (auto& [k, v] : items_) {
      if (k == key) {
        v = json;
        return *this;
      }
    }
    items_.emplace_back(std::string(key), std::string(json));
    return *this;
  }
  Obj& str(std::string_view key, std::string_view v) {
    std::string s;
    detail::append_py_string(s, v);
    return raw(key, s);
  }
  Obj& num(std::string_view key, double v) {
    std::string s;
    detail::append_py_float(s, v);
    return raw(key, s);
  }
  Obj& integer(std::string_view key, std::int64_t v) { return raw(key, std::to_string(v)); }
  Obj& update(const Obj& other) {
    for (const auto& [k, v] : other.items_) raw(k, v);
    return *this;
  }
  bool empty() const { return items_.empty(); }
  std::string done() const {
    std::string out = "{";
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (i != 0) out += ", ";
      detail::append_py_string(out, items_[i].first);
      out += ": " + items_[i].second;
    }
    return out + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// The four files a run appends to. A failed write is counted and reported once.
class Workflow::Files {
 public:
  Files(const std::filesystem::path& log, const std::filesystem::path& trace,
        const std::filesystem::path& audit_log, const std::filesystem::path& audit_trace,
        std::function<void(std::string_view)> on_error)
      : on_error_(std::move(on_error)) {
    try {
      for (const auto& p : {log, trace, audit_log, audit_trace}) {
        fds_.push_back(detail::open_append(p));
        paths_.push_back(p);
      }
    } catch (...) {
      for (int fd : fds_) ::close(fd);  // No destructor runs when a constructor throws.
      throw;
    }
  }
  ~Files() {
    for (int fd : fds_) ::close(fd);
  }
  void log(std::string_view text) {
    put(0, text);
    put(2, text);
  }
  void trace(std::string_view line) {
    put(1, line);
    put(3, line);
  }
  std::uint64_t failures() const { return failures_; }
  void report(const std::string& message) {
    ++failures_;
    if (failures_ > 1) return;
    if (on_error_) {
      on_error_(message);
    } else {
      std::fprintf(stderr, "stagelog: %s (the workflow goes on; its log will be incomplete)\n",
                   message.c_str());
    }
  }

 private:
  void put(std::size_t i, std::string_view text) {
    try {
      detail::write_all(fds_[i], text, paths_[i].string());
    } catch (const Error& e) {
      report(e.what());
    }
  }
  std::vector<int> fds_;
  std::vector<std::filesystem::path> paths_;
  std::function<void(std::string_view)> on_error_;
  std::uint64_t failures_ = 0;
};

std::string Workflow::extract_step_number(std::string_view workflow_id) {
  static const std::regex kStep(R"(step_(\d+))");
  std::string id(workflow_id);
  std::smatch m;
  return std::regex_search(id, m, kStep) ? m[1].str() : "00";
}

Workflow::Workflow(std::string workflow_id, const std::filesystem::path& output_dir,
                   int total_nodes, WorkflowOptions options)
    : id_(std::move(workflow_id)),
      output_dir_(without_trailing_slash(output_dir)),
      total_(total_nodes),
      options_(std::move(options)),
      step_(extract_step_number(id_)),
      pid_(getpid()),
      start_wall_ns_(detail::realtime_ns()),
      start_steady_ns_(detail::steady_ns()) {
  if (id_.empty()) throw Error("workflow id is empty");
  if (total_ < 0) throw Error("total_nodes must be 0 or more, got " + std::to_string(total_));
  std::string stamp = local_format(start_wall_ns_, "%Y%m%d_%H%M%S");
  auto logs = make_dirs(output_dir_ / "logs");
  auto traces = make_dirs(output_dir_ / "traces");
  audit_dir_ = make_dirs(output_dir_ / "audit" / ("step_" + step_));
  log_path_ = logs / ("execution_" + id_ + "_" + stamp + ".log");
  trace_path_ = traces / ("trace_step_" + step_ + "_" + stamp + ".jsonl");
  audit_log_path_ = audit_dir_ / ("log_" + step_ + ".log");
  audit_trace_path_ = audit_dir_ / ("trace_" + step_ + ".jsonl");
  files_ = std::make_unique<Files>(log_path_, trace_path_, audit_log_path_, audit_trace_path_,
                                   options_.on_error);
  if (options_.recorder != nullptr) {
    log_ = options_.recorder->component("workflow");
    const Kv fields[] = {kv("workflow_id", id_), kv("total_nodes", total_)};
    log_.event(Kind::Run, Level::Info, Status::Starting, id_, "Workflow execution started", fields);
  }

  std::string header;
  for (const auto& line : {std::string(), kSeparator, "[RUN] Executing: " + id_,
                           "[DIR] Output: " + std::filesystem::absolute(output_dir_).string(),
                           " PID: " + std::to_string(pid_),
                           " Started: " + local_format(start_wall_ns_, "%Y-%m-%d %H:%M:%S"),
                           kSeparator, std::string()}) {
    header += line;
    header += '\n';
  }
  if (options_.print) std::fwrite(header.data(), 1, header.size(), stdout);
  files_->log(header);
  record("workflow_start", "Workflow execution started: " + id_, {}, 0, false,
         Obj()
             .str("workflow_id", id_)
             .integer("pid", pid_)
             .str("timestamp", iso_local(start_wall_ns_))
             .integer("total_nodes", total_));
}

Workflow::~Workflow() = default;

double Workflow::elapsed_seconds() const {
  return static_cast<double>(detail::steady_ns() - start_steady_ns_) / 1e9;
}

void Workflow::record(std::string_view event_type, std::string_view message,
                      std::string_view node_id, int node_index, bool has_index,
                      const Obj& details) {
  std::int64_t now = detail::realtime_ns();
  std::string timestamp = iso_local(now);
  Obj entry;
  entry.str("timestamp", timestamp)
      .num("epoch_seconds", epoch_seconds(now))
      .str("event_type", event_type)
      .integer("pid", pid_)
      .str("workflow_id", id_);
  if (!node_id.empty()) entry.str("node_id", node_id);
  if (has_index) entry.integer("node_index", node_index);  // Unlike the seed, 0 is kept.
  if (!message.empty()) entry.str("message", message);
  std::string line = entry.update(details).done();  // Details at top level: entry.update().
  line += '\n';
  files_->trace(line);

  std::string text = "[" + timestamp + "] ";
  for (char c : event_type) text += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!node_id.empty()) text += " " + std::string(node_id);
  if (!message.empty()) text += ": " + std::string(message);
  if (!details.empty()) text += " | " + details.done();
  text += '\n';
  files_->log(text);
}

void Workflow::node_start(std::string_view node_id, int node_index) {
  std::lock_guard lock(mu_);
  if (options_.recorder != nullptr) {
    node_begin_ticks_[std::string(node_id)] = log_.now_ticks();
    const Kv fields[] = {kv("node_index", node_index), kv("total_nodes", total_)};
    std::string message = "Node " + std::string(node_id) + " started [" +
                          std::to_string(node_index) + "/" + std::to_string(total_) + "]";
    log_.event(Kind::Node, Level::Info, Status::Starting, node_id, message, fields, 0, true);
  }
  record("node_start", {}, node_id, node_index, true,
         Obj().num("epoch_seconds", epoch_seconds(detail::realtime_ns())));
}

void Workflow::set_node_time(std::string_view node_id, double seconds) {
  auto it = std::find_if(node_times_.begin(), node_times_.end(),
                         [&](const auto& p) { return p.first == node_id; });
  if (it == node_times_.end()) {
    node_times_.emplace_back(std::string(node_id), seconds);
  } else {
    it->second = seconds;  // A retried node keeps its place, as a dict key does.
  }
}

void Workflow::node_success(std::string_view node_id, double duration_seconds,
                            std::string_view output_hash, std::string_view output_summary) {
  std::string summary = output_summary.empty() ? "null" : detail::py_dumps(output_summary, false);
  std::lock_guard lock(mu_);
  ++completed_;
  set_node_time(node_id, duration_seconds);
  if (options_.recorder != nullptr) {
    const Kv fields[] = {kv("nodes_completed", completed_), kv("nodes_failed", failed_),
                         kv("total_nodes", total_), kv("duration_seconds", duration_seconds),
                         kv("output_hash", output_hash)};
    std::string message = "Node " + std::string(node_id) + " completed in " +
                          fixed(duration_seconds, 2) + "s [" +
                          std::to_string(completed_ + failed_) + "/" + std::to_string(total_) + "]";
    log_.event(Kind::Node, Level::Info, Status::Completed, node_id, message,
               std::span<const Kv>(fields, output_hash.empty() ? 4 : 5), 0, true);
  }
  std::string hash_json = "null";
  if (!output_hash.empty()) {
    hash_json.clear();
    detail::append_py_string(hash_json, output_hash);
  }
  record("node_success", {}, node_id, 0, false,
         Obj()
             .num("duration_seconds", duration_seconds)
             .raw("output_hash", hash_json)
             .num("epoch_seconds", epoch_seconds(detail::realtime_ns()))
             .raw("output_summary", summary));
  progress_snapshot(false);
}

void Workflow::node_failure(std::string_view node_id, std::string_view error,
                            double duration_seconds) {
  std::lock_guard lock(mu_);
  ++failed_;
  set_node_time(node_id, duration_seconds);
  if (options_.recorder != nullptr) {
    const Kv fields[] = {kv("nodes_completed", completed_), kv("nodes_failed", failed_),
                         kv("total_nodes", total_), kv("duration_seconds", duration_seconds),
                         kv("error", error)};
    std::string message = "Node " + std::string(node_id) + " failed after " +
                          fixed(duration_seconds, 2) + "s: " + std::string(error);
    log_.event(Kind::Node, Level::Error, Status::Failed, node_id, message, fields, 0, true);
  }
  record("node_failure", {}, node_id, 0, false,
         Obj()
             .num("duration_seconds", duration_seconds)
             .str("error", error)
             .num("epoch_seconds", epoch_seconds(detail::realtime_ns())));
  progress_snapshot(false);
}

void Workflow::progress_snapshot(bool force) {
  std::int64_t now = detail::steady_ns();
  if (!force && now - last_snapshot_ns_ < options_.log_progress_interval.count() * 1'000'000) {
    return;
  }
  last_snapshot_ns_ = now;
  int done = completed_ + failed_;
  double elapsed = elapsed_seconds();
  double rate = elapsed > 0 ? done / elapsed : 0;
  std::string line =
      "Executing " + id_ + " [" + std::to_string(done) + "/" + std::to_string(total_) + "] " +
      std::to_string(total_ > 0 ? done * 100 / total_ : 100) + "% " + fixed(rate, 1) + " nodes/s";
  if (failed_ > 0) line += ", " + std::to_string(failed_) + " failed";
  files_->log(line + "\n");
}

void Workflow::complete(double cumulative_cost_usd) { finish(true, {}, cumulative_cost_usd); }

void Workflow::error(std::string_view message) { finish(false, message, 0.0); }

void Workflow::finish(bool ok, std::string_view error, double cost) {
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  progress_snapshot(true);
  double elapsed = elapsed_seconds();
  std::filesystem::path base = std::filesystem::absolute(output_dir_).parent_path();
  // Lexically, as Python's relative_to: a symlinked folder keeps its own name.
  std::string trace_rel = std::filesystem::absolute(trace_path_).lexically_relative(base).string();
  std::string log_rel = std::filesystem::absolute(log_path_).lexically_relative(base).string();

  if (options_.recorder != nullptr) {
    // First, so the progress display draws its last bar before the summary is printed.
    const Kv fields[] = {kv("nodes_completed", completed_), kv("nodes_failed", failed_),
                         kv("total_nodes", total_)};
    std::string message = ok ? std::to_string(completed_) + " of " + std::to_string(total_) +
                                   " nodes completed, " + std::to_string(failed_) + " failed"
                             : std::string(error);
    log_.event(Kind::Run, ok ? Level::Info : Level::Error, ok ? Status::Completed : Status::Failed,
               id_, message, fields, 0, true);
    options_.recorder->flush();
  }
  std::vector<std::string> lines = {std::string(), kSeparator};
  if (ok) {
    lines.push_back(" Workflow completed: " + id_);
    lines.push_back(" Nodes executed: " + std::to_string(completed_) + "/" +
                    std::to_string(total_));
    if (failed_ > 0) lines.push_back(" Nodes failed: " + std::to_string(failed_));
    lines.push_back(" Total time: " + fixed(elapsed, 2) + "s (" + fixed(elapsed / 60, 2) + "m)");
    if (cost > 0) lines.push_back(" Cost: $" + fixed(cost, 4));
    lines.push_back(" Trace file: " + trace_rel);
    lines.push_back(" Log file: " + log_rel);
  } else {
    lines.push_back(" Workflow failed: " + id_);
    lines.push_back(" Error: " + std::string(error));
    lines.push_back(" Time: " + fixed(elapsed, 2) + "s");
    lines.push_back(" Trace: " + trace_rel);
  }
  if (files_->failures() > 0) {
    lines.push_back(" Log incomplete: " + std::to_string(files_->failures()) +
                    " writes failed (see the first error above)");
  }
  lines.push_back(kSeparator);
  lines.push_back(std::string());
  std::string block;
  for (const auto& l : lines) block += l + "\n";
  if (options_.print) {
    std::fwrite(block.data(), 1, block.size(), stdout);
    std::fflush(stdout);
  }
  files_->log(block);

  std::string node_times = "{";
  for (std::size_t i = 0; i < node_times_.size(); ++i) {
    if (i != 0) node_times += ", ";
    detail::append_py_string(node_times, node_times_[i].first);
    node_times += ": ";
    detail::append_py_float(node_times, node_times_[i].second);
  }
  node_times += "}";
  double now = epoch_seconds(detail::realtime_ns());
  if (ok) {
    record("workflow_complete", {}, {}, 0, false,
           Obj()
               .str("workflow_id", id_)
               .integer("nodes_completed", completed_)
               .integer("nodes_failed", failed_)
               .num("total_time_seconds", elapsed)
               .num("cumulative_cost_usd", cost)
               .str("trace_file", trace_path_.string())
               .str("log_file", log_path_.string())
               .raw("node_times", node_times)
               .num("epoch_seconds", now));
  } else {
    record("workflow_error", {}, {}, 0, false,
           Obj()
               .str("workflow_id", id_)
               .str("error", error)
               .num("total_time_seconds", elapsed)
               .integer("nodes_completed", completed_)
               .integer("nodes_failed", failed_)
               .num("epoch_seconds", now));
  }

  // metadata_<NN>.json, as json.dump(indent=2), written to a temporary file and renamed.
  std::string meta = "{\n";
  auto item = [&](std::string_view key, const std::string& json, bool last = false) {
    meta += "  ";
    detail::append_py_string(meta, key);
    meta += ": " + json + (last ? "\n" : ",\n");
  };
  auto quoted = [](std::string_view s) {
    std::string out;
    detail::append_py_string(out, s);
    return out;
  };
  auto number = [](double v) {
    std::string out;
    detail::append_py_float(out, v);
    return out;
  };
  item("workflow_id", quoted(id_));
  item("step_number", quoted(step_));
  item("start_time", quoted(iso_local(start_wall_ns_)));
  item("end_time", quoted(iso_local(detail::realtime_ns())));
  item("pid", std::to_string(pid_));
  item("total_nodes", std::to_string(total_));
  item("nodes_completed", std::to_string(completed_));
  item("nodes_failed", std::to_string(failed_));
  item("total_time_seconds", number(elapsed));
  if (ok) {
    item("cumulative_cost_usd", number(cost));
  } else {
    item("error", quoted(error));
  }
  std::string times_block = "{";
  for (std::size_t i = 0; i < node_times_.size(); ++i) {
    times_block += i == 0 ? "\n    " : ",\n    ";
    detail::append_py_string(times_block, node_times_[i].first);
    times_block += ": " + number(node_times_[i].second);
  }
  times_block += node_times_.empty() ? "}" : "\n  }";
  item("node_times", times_block);
  item("log_file", quoted(audit_log_path_.string()));
  item("trace_file", quoted(audit_trace_path_.string()), true);
  meta += "}";
  try {
    detail::write_file_atomically(metadata_file(), meta);
  } catch (const Error& e) {
    files_->report(e.what());
  }
}

int Workflow::nodes_completed() const {
  std::lock_guard lock(mu_);
  return completed_;
}

int Workflow::nodes_failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

std::uint64_t Workflow::failed_writes() const {
  std::lock_guard lock(mu_);
  return files_->failures();
}

}  // namespace stagelog
