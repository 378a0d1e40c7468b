#include "stagelog/agent.hpp"

#include <execinfo.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "base/python_text.hpp"
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
  Line& operator<<(const Kv& f) noexcept {
    switch (f.type) {
      case Kv::Type::Int: {
        char digits[24];
        int n = std::snprintf(digits, sizeof digits, "%lld", static_cast<long long>(f.i));
        return *this << std::string_view(digits, static_cast<std::size_t>(n));
      }
      case Kv::Type::Uint:
        return *this << f.u;
      case Kv::Type::Double: {
        char digits[64];
        auto r = std::to_chars(digits, digits + sizeof digits, f.d);
        return *this << std::string_view(digits, static_cast<std::size_t>(r.ptr - digits));
      }
      case Kv::Type::Bool:
        return *this << detail::python_bool(f.b);
      case Kv::Type::String:
        return *this << f.s;
    }
    return *this;
  }
  // For the detail::append_python_* helpers.
  void append(const char* data, std::size_t n) noexcept { *this << std::string_view(data, n); }
  std::string_view view() const noexcept { return {buf_, len_}; }

 private:
  char buf_[1024];
  std::size_t len_ = 0;
};

void copy_id(char* out, std::uint8_t& len, std::string_view id) noexcept {
  len = static_cast<std::uint8_t>(std::min<std::size_t>(id.size(), 63));
  std::memcpy(out, id.data(), len);
}

// A line's text without its fields: the Python renderings carry them.
constexpr bool kFieldsInMessage = true;

const Kv* find_kv(std::span<const Kv> fields, std::string_view key) noexcept {
  for (const auto& f : fields) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

}  // namespace

Agent::Agent(Recorder& recorder, std::string_view name, std::string_view component)
    : Agent(recorder, name, AgentOptions{.component = component}) {}

Agent::Agent(Recorder& recorder, std::string_view name, AgentOptions options)
    : log_(recorder.component(options.component)), name_(name), options_(std::move(options)) {
  recorder.set_worker(name);
  last_task_end_.store(log_.now_ticks());
}

Agent::~Agent() { shutdown(); }

void Agent::lifecycle(std::string_view what, Status status, std::span<const Kv> fields) noexcept {
  const Kv* gpu = find_kv(fields, "gpu");
  if (gpu != nullptr) gpu_.store(true);
  if (!options_.seed_wording) {
    log_.event(Kind::Lifecycle, status == Status::Failed ? Level::Error : Level::Info, status, {},
               what, fields);
    return;
  }
  // Seed 001: f"GPU agent initialized: {self.name} (GPU {self.gpu_id}), port {self.port},
  // model {self.model}"; other attributes follow the same way.
  Line line;
  line << (gpu != nullptr ? "GPU agent " : "Worker ") << what << ": " << name_;
  if (gpu != nullptr) line << " (GPU " << *gpu << ")";
  for (const auto& f : fields) {
    if (&f != gpu) line << ", " << f.key << " " << f;
  }
  log_.event(Kind::Lifecycle, Level::Info, status, {}, line.view(), fields, 0, kFieldsInMessage);
}

void Agent::starting() noexcept {
  if (!options_.seed_wording) {
    lifecycle("starting", Status::Running, {});
    return;
  }
  Line line;
  line << (gpu_.load() ? "GPU agent " : "Worker ") << name_ << " starting";
  log_.event(Kind::Lifecycle, Level::Info, Status::Running, {}, line.view());
}

void Agent::crashed(std::string_view exception_type, std::string_view message,
                    std::string_view stack) noexcept {
  Line line;
  if (options_.seed_wording) {
    // Seed 001: f"GPU agent crashed: {e}" with repr(e), KeyError('model_name'); a worker's
    // main loop says "Worker crashed in main loop: ...".
    line << (gpu_.load() ? "GPU agent crashed: " : "Worker crashed in main loop: ")
         << exception_type << "(";
    if (!message.empty()) detail::append_python_repr(line, message);
    line << ")";
  } else {
    line << "crashed: " << exception_type << (message.empty() ? "" : ": ") << message;
  }
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
  if (!options_.seed_wording) {
    line << "shutting down - completed " << completed_.load() << ", failed " << failed_.load();
  } else if (gpu_.load()) {
    line << "GPU " << name_ << " shutting down - completed " << completed_.load() << ", failed "
         << failed_.load();
  } else {
    line << "Worker shutting down - completed " << completed_.load() << " tasks";
  }
  const Kv fields[] = {kv("tasks_completed", completed_.load()),
                       kv("tasks_failed", failed_.load())};
  log_.event(Kind::Lifecycle, Level::Info, Status::Completed, {}, line.view(), fields, 0, true);
}

void Agent::beat(std::span<const Kv> extra) noexcept {
  bool processing = processing_.load();
  double idle = processing ? 0.0 : log_.seconds_since(last_task_end_.load());
  // Rounded as Python's f"{idle_time:.0f}s" is, so the field and the line agree.
  auto idle_s = static_cast<std::int64_t>(std::nearbyint(idle));
  Kv fields[64];
  std::size_t n = 0;
  fields[n++] = kv("status", processing ? "processing" : "idle");
  fields[n++] = kv("idle_s", idle_s);
  fields[n++] = kv("tasks_completed", completed_.load());
  fields[n++] = kv("model_loaded", model_loaded_.load());
  for (const auto& f : extra) {
    if (n == std::size(fields)) break;
    fields[n++] = f;
  }
  if (!options_.seed_wording) {
    log_.event(Kind::Heartbeat, Level::Debug, Status::Running, {}, "heartbeat",
               std::span<const Kv>(fields, n), 0, false, name_);
    return;
  }
  // Seed 001: f"Heartbeat sent - status: {status}, idle: {idle_time:.0f}s"; GPU stats and
  // other given fields follow as key=value.
  Line line;
  line << "Heartbeat sent - status: " << (processing ? "processing" : "idle") << ", idle: ";
  detail::append_python_fixed(line, idle, 0);
  line << "s";
  for (const auto& f : extra) line << " " << f.key << "=" << f;
  log_.event(Kind::Heartbeat, Level::Debug, Status::Running, {}, line.view(),
             std::span<const Kv>(fields, n), 0, kFieldsInMessage, name_);
}

bool Agent::meta(std::string_view task_class) const noexcept {
  for (const auto& m : options_.meta_classes) {
    if (m == task_class) return true;
  }
  return false;
}

void Agent::claimed(std::string_view task_id, std::string_view task_class,
                    std::string_view task_name) noexcept {
  copy_id(task_id_, task_id_len_, task_id);
  copy_id(task_class_, task_class_len_, task_class);
  claim_ticks_ = log_.now_ticks();
  processing_.store(true);
  Line line;
  line << (options_.seed_wording && meta(task_class) ? "Claimed meta task: " : "Claimed task: ")
       << task_id << " (" << task_class << ")";
  const Kv fields[] = {kv("task", task_id), kv("class", task_class), kv("name", task_name)};
  log_.event(Kind::Task, Level::Info, Status::InProgress, task_class, line.view(),
             std::span<const Kv>(fields, task_name.empty() ? 2 : 3), 0, true);
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
  // "llm:125, cpu:4": the watchdog's queue by class (seed 001's task_summary).
  Line summary;
  for (const auto& [cls, count] : queue) {
    if (count <= 0) continue;
    summary << (summary.view().empty() ? "" : ", ") << cls << ":"
            << static_cast<std::uint64_t>(count);
  }
  const Kv fields[] = {
      kv("queue", summary.view().empty() ? std::string_view("empty") : summary.view())};
  if (summary.view().empty()) {
    log_.event(Kind::Log, Level::Debug, Status::None, {}, "Queue empty", fields, 0, true);
    return;
  }
  Line line;
  line << "No suitable tasks - Queue: [" << summary.view() << "], Preferred: ";
  if (options_.seed_wording) {
    detail::append_python_list(line, preferred);
  } else {
    line << "[";
    for (std::size_t i = 0; i < preferred.size(); ++i) {
      line << (i == 0 ? "" : ", ") << preferred[i];
    }
    line << "]";
  }
  line << ", Model loaded: "
       << (options_.seed_wording ? detail::python_bool(model_loaded)
                                 : std::string_view(model_loaded ? "true" : "false"));
  log_.event(Kind::Log, Level::Debug, Status::None, {}, line.view(), fields, 0, true);
}

void Agent::all_claimed_by_others(std::uint64_t available,
                                  std::span<const std::string_view> preferred) noexcept {
  Line line;
  line << "Claim attempt: " << available << " tasks available in ";
  detail::append_python_list(line, preferred);
  line << ", all claimed by others";
  Line count;
  count << available;
  const Kv fields[] = {kv("queue", count.view())};
  log_.event(Kind::Log, Level::Debug, Status::None, {}, line.view(), fields, 0, true);
}

void Agent::request_event(std::string_view id, std::string_view what,
                          std::span<const std::string_view> waiting_workers,
                          std::string_view message) noexcept {
  Line waiting;
  for (std::size_t i = 0; i < waiting_workers.size(); ++i) {
    waiting << (i == 0 ? "" : ",") << waiting_workers[i];
  }
  const Kv fields[] = {kv("request", id), kv("what", what), kv("waiting", waiting.view())};
  log_.event(Kind::Request, Level::Info, Status::InProgress, what, message, fields, 0, true);
}

void Agent::request(std::string_view id, std::string_view what,
                    std::span<const std::string_view> waiting_workers) noexcept {
  Line line;
  line << "Request " << id << " (" << what << ") for workers [";
  for (std::size_t i = 0; i < waiting_workers.size(); ++i) {
    line << (i == 0 ? "" : ", ") << waiting_workers[i];
  }
  line << "]";
  request_event(id, what, waiting_workers, line.view());
}

void Agent::request(std::string_view id, std::string_view what,
                    std::span<const std::string_view> waiting_workers, std::uint64_t tasks_waiting,
                    std::string_view task_class) noexcept {
  if (!options_.seed_wording) {
    request(id, what, waiting_workers);
    return;
  }
  // Seed 001: f"LLM tasks waiting ({llm_tasks}) but no models loaded - inserting load_llm task".
  Line line;
  for (char c : task_class) {
    char upper = c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    line << std::string_view(&upper, 1);
  }
  line << " tasks waiting (" << tasks_waiting << ") but no models loaded - inserting " << what
       << " task";
  request_event(id, what, waiting_workers, line.view());
}

void Agent::fulfilled(std::string_view id) noexcept {
  Line line;
  line << "Request " << id << " fulfilled";
  const Kv fields[] = {kv("request", id)};
  log_.event(Kind::Request, Level::Info, Status::Completed, {}, line.view(), fields, 0, true);
}

}  // namespace stagelog
