#include "stagelog/recorder.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>
#include <typeinfo>

#include "core/core.hpp"
#include "stagelog/error.hpp"
#include "stagelog/stage.hpp"

namespace stagelog {

namespace {

// "worker" -> "WORKER_LOG_LEVEL"; "gpu-agent" -> "GPU_AGENT_LOG_LEVEL".
std::string level_variable(std::string_view component) {
  std::string name;
  for (char c : component) {
    name += std::isalnum(static_cast<unsigned char>(c)) != 0
                ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                : '_';
  }
  return name + "_LOG_LEVEL";
}

constexpr std::string_view kValidLevels = "TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL, OFF";

}  // namespace

Recorder::Recorder(Options options)
    : core_(std::make_unique<detail::Core>(this, std::move(options))) {
  default_logger_ = component("app");
  core_->start_backend();
  detail::register_core(core_.get(), core_->options().install_crash_handlers);
}

Recorder::~Recorder() {
  core_->emit_closed();
  detail::unregister_core(core_.get());
  core_->stop_backend();
}

void Recorder::add_sink(std::shared_ptr<Sink> sink) { core_->add_sink(std::move(sink)); }

Logger Recorder::component(std::string_view name) {
  if (name.empty()) throw Error("component name is empty");
  bool created = false;
  detail::Component* c = core_->component(name, &created);
  Logger logger(this, c);
  if (!created) return logger;  // Its level was resolved, and may since have been set in code.
  std::string variable = level_variable(name);
  const char* value = std::getenv(variable.c_str());
  if (value == nullptr || *value == '\0') {
    variable = "STAGELOG_LEVEL";
    value = std::getenv(variable.c_str());
  }
  if (value != nullptr && *value != '\0') {
    if (auto level = parse_level(value)) {
      c->level.store(*level, std::memory_order_relaxed);
    } else {
      c->level.store(Level::Info, std::memory_order_relaxed);
      std::string message = variable + "=" + value +
                            " is not a log level (valid: " + std::string(kValidLevels) +
                            "); using INFO";
      Logger internal(this, core_->component("stagelog"));
      internal.log(Level::Warning, message);
    }
  }
  return logger;
}

void Recorder::set_worker(std::string_view worker) noexcept {
  core_->set_context(detail::ContextKey::Worker, worker);
}
void Recorder::set_run(std::string_view run) noexcept {
  core_->set_context(detail::ContextKey::Run, run);
}
void Recorder::flush() { core_->flush(); }
std::uint64_t Recorder::dropped() const noexcept { return core_->dropped(); }
std::int64_t Recorder::pid() const noexcept { return core_->pid(); }
const std::string& Recorder::host() const noexcept { return core_->host(); }

// --- StageScope ---

void StageScope::begin(std::string_view name, std::span<const Kv> fields) noexcept {
  name_len_ = static_cast<std::uint8_t>(std::min(name.size(), sizeof name_));
  std::memcpy(name_, name.data(), name_len_);
  auto [id, ts] =
      logger_.recorder().core().emit_stage_begin(logger_.component_, this->name(), fields);
  id_ = id;
  begin_ts_ = ts;
}

StageScope::~StageScope() {
  if (ended_) return;
  if (std::uncaught_exceptions() > uncaught_) {
    end(Status::Failed, "exception thrown", {});
  } else {
    end(Status::Completed, {}, {});
  }
}

void StageScope::end(Status status, std::string_view message, std::span<const Kv> fields) noexcept {
  if (ended_) return;
  ended_ = true;
  logger_.recorder().core().emit_stage_end(logger_.component_, id_, begin_ts_, name(), status,
                                           message, fields);
}

double StageScope::elapsed_seconds() const noexcept {
  auto& core = logger_.recorder().core();
  return core.ticks_to_seconds(core.now() - begin_ts_);
}

// --- RunScope ---

RunScope::RunScope(const Logger& logger, std::string_view run_id) noexcept : logger_(logger) {
  auto& core = logger_.recorder().core();
  std::string_view prev = core.current_run();
  prev_len_ = static_cast<std::uint8_t>(std::min(prev.size(), sizeof prev_run_));
  std::memcpy(prev_run_, prev.data(), prev_len_);
  core.set_context(detail::ContextKey::Run, run_id);
  begin_ts_ = core.emit_run_begin(logger_.component_);
}

RunScope::~RunScope() {
  if (ended_) return;
  if (std::uncaught_exceptions() > uncaught_) {
    end(Status::Failed, "exception thrown");
  } else {
    end(Status::Completed, {});
  }
}

void RunScope::end(Status status, std::string_view message) noexcept {
  if (ended_) return;
  ended_ = true;
  auto& core = logger_.recorder().core();
  core.emit_run_end(logger_.component_, begin_ts_, status, message);
  core.set_context(detail::ContextKey::Run, std::string_view(prev_run_, prev_len_));
}

namespace detail {

void describe_current_exception(char* out, std::size_t size) noexcept {
  if (size == 0) return;
  out[0] = '\0';
  auto put = [&](const char* type, const char* what) {
    std::snprintf(out, size, "%s%s%s", type, *type != '\0' && *what != '\0' ? ": " : "", what);
  };
  try {
    throw;
  } catch (const std::exception& e) {
    int status = 0;
    char* name = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
    put(status == 0 && name != nullptr ? name : typeid(e).name(), e.what());
    std::free(name);
  } catch (...) {
    std::type_info* type = abi::__cxa_current_exception_type();
    int status = 0;
    char* name =
        type != nullptr ? abi::__cxa_demangle(type->name(), nullptr, nullptr, &status) : nullptr;
    put(name != nullptr ? name : "unknown exception", "");
    std::free(name);
  }
}

}  // namespace detail

}  // namespace stagelog
