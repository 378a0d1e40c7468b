#include "stagelog/agent.hpp"

#include <execinfo.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "stagelog/stage.hpp"

namespace stagelog {

namespace {

// A fixed buffer to compose a message in without allocating.
class Line {
 public:
  Line& operator<<(std::string_view s) noexcept {
    std::size_t n = std::min(s.size(), sizeof buf_ - 1 - len_);
    std::memcpy(buf_ + len_, s.data(), n);
    len_ += n;
    return *this;
  }
  Line& operator<<(std::uint64_t v) noexcept {
    char digits[24];
    int n = std::snprintf(digits, sizeof digits, "%llu", static_cast<unsigned long long>(v));
    return *this << std::string_view(digits, static_cast<std::size_t>(n));
  }
  std::string_view view() const noexcept { return {buf_, len_}; }

 private:
  char buf_[1024];
  std::size_t len_ = 0;
};

void copy_id(char* out, std::uint8_t& len, std::string_view id) noexcept {
  len = static_cast<std::uint8_t>(std::min<std::size_t>(id.size(), 63));
  std::memcpy(out, id.data(), len);
}

}  // namespace

Agent::Agent(Recorder& recorder, std::string_view name, std::string_view component)
    : log_(recorder.component(component)), name_(name) {
  recorder.set_worker(name);
  last_task_end_.store(log_.now_ticks());
}

Agent::~Agent() { shutdown(); }

void Agent::lifecycle(std::string_view what, Status status, std::span<const Kv> fields) noexcept {
  log_.event(Kind::Lifecycle, status == Status::Failed ? Level::Error : Level::Info, status, {},
             what, fields);
}

void Agent::starting() noexcept { lifecycle("starting", Status::Running, {}); }

void Agent::crashed(std::string_view exception_type, std::string_view message,
                    std::string_view stack) noexcept {
  Line line;
  line << "crashed: " << exception_type << (message.empty() ? "" : ": ") << message;
  if (!stack.empty()) line << " | stack: " << stack;
  const Kv fields[] = {kv("exception", exception_type), kv("error", message), kv("stack", stack)};
  log_.event(Kind::Lifecycle, Level::Error, Status::Failed, {}, line.view(),
             std::span<const Kv>(fields, stack.empty() ? 2 : 3), 0, true);
}

void Agent::crashed(std::exception_ptr error) noexcept {
  char what[512] = "unknown exception";
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (...) {
      detail::describe_current_exception(what, sizeof what);
    }
  }
  std::string_view described(what);
  auto colon = described.find(": ");
  std::string_view type = described.substr(0, colon);
  std::string_view message = colon == std::string_view::npos ? "" : described.substr(colon + 2);
  // The stack of the handler, which is inside the frames the exception came through.
  void* frames[32];
  int depth = backtrace(frames, 32);
  char** symbols = backtrace_symbols(frames, depth);
  Line stack;
  for (int i = 1; symbols != nullptr && i < depth; ++i) stack << symbols[i] << "\n";
  std::free(symbols);
  crashed(type, message, stack.view());
}

void Agent::shutdown() noexcept {
  if (shut_down_) return;
  shut_down_ = true;
  Line line;
  line << "shutting down - completed " << completed_.load() << ", failed " << failed_.load();
  const Kv fields[] = {kv("tasks_completed", completed_.load()),
                       kv("tasks_failed", failed_.load())};
  log_.event(Kind::Lifecycle, Level::Info, Status::Completed, {}, line.view(), fields, 0, true);
}

void Agent::beat(std::span<const Kv> extra) noexcept {
  bool processing = processing_.load();
  double idle = processing ? 0.0 : log_.seconds_since(last_task_end_.load());
  Kv fields[64];
  std::size_t n = 0;
  fields[n++] = kv("status", processing ? "processing" : "idle");
  fields[n++] = kv("idle_s", static_cast<std::int64_t>(idle));
  fields[n++] = kv("tasks_completed", completed_.load());
  for (const auto& f : extra) {
    if (n == std::size(fields)) break;
    fields[n++] = f;
  }
  log_.event(Kind::Heartbeat, Level::Debug, Status::Running, {}, "heartbeat",
             std::span<const Kv>(fields, n), 0, false, name_);
}

void Agent::claimed(std::string_view task_id, std::string_view task_class) noexcept {
  copy_id(task_id_, task_id_len_, task_id);
  copy_id(task_class_, task_class_len_, task_class);
  claim_ticks_ = log_.now_ticks();
  processing_.store(true);
  Line line;
  line << "Claimed task: " << task_id << " (" << task_class << ")";
  const Kv fields[] = {kv("task", task_id), kv("class", task_class)};
  log_.event(Kind::Task, Level::Info, Status::InProgress, task_class, line.view(), fields, 0, true);
}

void Agent::task_end(std::string_view task_id, Status status, std::string_view error) noexcept {
  bool current = task_id == std::string_view(task_id_, task_id_len_);
  std::string_view task_class = current ? std::string_view(task_class_, task_class_len_) : "";
  (status == Status::Completed ? completed_ : failed_).fetch_add(1);
  processing_.store(false);
  last_task_end_.store(log_.now_ticks());
  Line line;
  line << (status == Status::Completed ? "Completed task: " : "Failed task: ") << task_id;
  if (!error.empty()) line << ": " << error;
  const Kv fields[] = {kv("task", task_id), kv("class", task_class), kv("error", error)};
  log_.event(Kind::Task, status == Status::Failed ? Level::Error : Level::Info, status, task_class,
             line.view(), std::span<const Kv>(fields, error.empty() ? 2 : 3),
             current ? claim_ticks_ : 0, true);
  if (current) task_id_len_ = 0;
}

void Agent::completed(std::string_view task_id) noexcept {
  task_end(task_id, Status::Completed, {});
}

void Agent::failed(std::string_view task_id, std::string_view error) noexcept {
  task_end(task_id, Status::Failed, error);
}

void Agent::claim_loop(std::string_view message, std::string_view task_id) noexcept {
  const Kv fields[] = {kv("task", task_id)};
  log_.event(Kind::Log, Level::Debug, Status::None, {}, message, fields, 0, true);
}

void Agent::attempt(std::string_view task_id) noexcept {
  if (!log_.enabled(Level::Debug)) return;
  Line line;
  line << "Attempting claim: " << task_id;
  claim_loop(line.view(), task_id);
}

void Agent::lost_race(std::string_view task_id) noexcept {
  if (!log_.enabled(Level::Debug)) return;
  Line line;
  line << "Lost race: " << task_id << " (claimed by another worker)";
  claim_loop(line.view(), task_id);
}

void Agent::lock_timeout(std::string_view task_id) noexcept {
  if (!log_.enabled(Level::Debug)) return;
  Line line;
  line << "Lock timeout: " << task_id << " (another worker has it)";
  claim_loop(line.view(), task_id);
}

void Agent::nothing_claimed(std::span<const std::pair<std::string_view, int>> queue,
                            std::span<const std::string_view> preferred,
                            bool model_loaded) noexcept {
  if (!log_.enabled(Level::Debug)) return;
  Line line;
  bool any = false;
  for (const auto& [cls, count] : queue) any = any || count > 0;
  if (!any) {
    log_.log(Level::Debug, "Queue empty");
    return;
  }
  line << "No suitable tasks - Queue: [";
  bool first = true;
  for (const auto& [cls, count] : queue) {
    if (count <= 0) continue;
    line << (first ? "" : ", ") << cls << ":" << static_cast<std::uint64_t>(count);
    first = false;
  }
  line << "], Preferred: [";
  for (std::size_t i = 0; i < preferred.size(); ++i) line << (i == 0 ? "" : ", ") << preferred[i];
  line << "], Model loaded: " << (model_loaded ? "true" : "false");
  log_.log(Level::Debug, line.view());
}

void Agent::request(std::string_view id, std::string_view what,
                    std::span<const std::string_view> waiting_workers) noexcept {
  Line line;
  line << "Request " << id << " (" << what << ") for workers [";
  for (std::size_t i = 0; i < waiting_workers.size(); ++i) {
    line << (i == 0 ? "" : ", ") << waiting_workers[i];
  }
  line << "]";
  Line waiting;
  for (std::size_t i = 0; i < waiting_workers.size(); ++i) {
    waiting << (i == 0 ? "" : ",") << waiting_workers[i];
  }
  const Kv fields[] = {kv("request", id), kv("what", what), kv("waiting", waiting.view())};
  log_.event(Kind::Request, Level::Info, Status::InProgress, what, line.view(), fields, 0, true);
}

void Agent::fulfilled(std::string_view id) noexcept {
  Line line;
  line << "Request " << id << " fulfilled";
  const Kv fields[] = {kv("request", id)};
  log_.event(Kind::Request, Level::Info, Status::Completed, {}, line.view(), fields, 0, true);
}

}  // namespace stagelog
