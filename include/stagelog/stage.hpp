#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include "stagelog/field.hpp"
#include "stagelog/recorder.hpp"

namespace stagelog {

namespace detail {

// Compile-time enum value names, read from __PRETTY_FUNCTION__: for `enum class Stage
// { AGENT }`, enum_value_name<Stage, Stage::AGENT>() is "AGENT". Values outside
// [0, kMaxEnumValue] or without a name give "".
inline constexpr int kMaxEnumValue = 127;

template <typename E, E V>
constexpr std::string_view enum_value_name() noexcept {
  std::string_view f = __PRETTY_FUNCTION__;  // "... [with E = ns::Stage; E V = ns::Stage::AGENT]"
  auto start = f.rfind("V = ");
  if (start == std::string_view::npos) return {};
  start += 4;
  auto end = f.find_first_of(";]", start);
  std::string_view v = f.substr(start, end - start);
  if (v.empty() || v[0] == '(') return {};  // "(ns::Stage)5": not a named enumerator.
  auto colon = v.rfind(':');
  return colon == std::string_view::npos ? v : v.substr(colon + 1);
}

template <typename E, std::size_t... I>
constexpr auto enum_names(std::index_sequence<I...>) noexcept {
  return std::array<std::string_view, sizeof...(I)>{enum_value_name<E, static_cast<E>(I)>()...};
}

template <typename E>
inline constexpr auto kEnumNames =
    enum_names<E>(std::make_index_sequence<static_cast<std::size_t>(kMaxEnumValue) + 1>());

}  // namespace detail

// The name of an enumerator known at compile time ("AGENT"), or "" if it has none.
template <typename E>
requires std::is_enum_v<E>
constexpr std::string_view enum_name(E value) noexcept {
  auto index = static_cast<std::int64_t>(static_cast<std::underlying_type_t<E>>(value));
  if (index < 0 || index > detail::kMaxEnumValue) return {};
  return detail::kEnumNames<E>[static_cast<std::size_t>(index)];
}

// One stage of a worker's pipeline. Creating it records "Stage: AGENT - Starting"; leaving it
// records "Complete (13.2s)", or "Failed (13.2s): <message>" after fail() or when an exception
// escapes the scope, or "Skipped" after skip(). Use it on one thread: the one that created it.
//
// Stage names are free strings ("orchestrator_execution") or enumerators whose names the
// compiler knows ("to prevent typos", seed 000); names longer than 63 bytes are cut.
class StageScope {
 public:
  template <typename... F>
  StageScope(const Logger& logger, std::string_view name, const F&... fields) noexcept
      : logger_(logger) {
    const Kv list[] = {fields..., Kv{}};
    begin(name, std::span<const Kv>(list, sizeof...(F)));
  }
  template <typename E, typename... F>
  requires std::is_enum_v<E> StageScope(const Logger& logger, E stage, const F&... fields)
  noexcept : StageScope(logger, enum_name(stage), fields...) {}
  template <typename S, typename... F>
  requires(std::is_enum_v<S> || std::is_convertible_v<const S&, std::string_view>)
      StageScope(Recorder& recorder, const S& stage, const F&... fields)
  noexcept : StageScope(recorder.logger(), stage, fields...) {}

  // The fields as a span, for callers that know their number only at run time (the Python
  // binding).
  StageScope(const Logger& logger, std::string_view name, std::span<const Kv> fields) noexcept
      : logger_(logger) {
    begin(name, fields);
  }

  ~StageScope();
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;

  // Ends the stage now as completed, failed or skipped; later calls and the destructor do
  // nothing. Fields go on the end event.
  template <typename... F>
  void complete(const F&... fields) noexcept {
    const Kv list[] = {fields..., Kv{}};
    end(Status::Completed, {}, std::span<const Kv>(list, sizeof...(F)));
  }
  template <typename... F>
  void fail(std::string_view message, const F&... fields) noexcept {
    const Kv list[] = {fields..., Kv{}};
    end(Status::Failed, message, std::span<const Kv>(list, sizeof...(F)));
  }
  template <typename... F>
  void skip(std::string_view reason, const F&... fields) noexcept {
    const Kv list[] = {fields..., Kv{}};
    end(Status::Skipped, reason, std::span<const Kv>(list, sizeof...(F)));
  }

  // The same with the fields as a span.
  void complete(std::span<const Kv> fields) noexcept { end(Status::Completed, {}, fields); }
  void fail(std::string_view message, std::span<const Kv> fields) noexcept {
    end(Status::Failed, message, fields);
  }
  void skip(std::string_view reason, std::span<const Kv> fields) noexcept {
    end(Status::Skipped, reason, fields);
  }

  std::string_view name() const noexcept { return {name_, name_len_}; }
  bool ended() const noexcept { return ended_; }
  // Seconds since the stage began, by the recorder's clock.
  double elapsed_seconds() const noexcept;

 private:
  void begin(std::string_view name, std::span<const Kv> fields) noexcept;
  void end(Status status, std::string_view message, std::span<const Kv> fields) noexcept;

  Logger logger_;
  std::uint64_t id_ = 0;
  std::int64_t begin_ts_ = 0;
  int uncaught_ = std::uncaught_exceptions();
  bool ended_ = false;
  std::uint8_t name_len_ = 0;
  char name_[63];
};

// A whole run of one worker's pipeline, e.g. one item through all stages. Sets the calling
// thread's run id for its lifetime (the previous one is restored after), records a run start,
// and at the end "Stage: COMPLETE - All stages complete (20.7s)" — or "Stage: COMPLETE -
// Failed (20.7s): <message>" after fail() or an escaping exception.
class RunScope {
 public:
  RunScope(const Logger& logger, std::string_view run_id) noexcept;
  RunScope(Recorder& recorder, std::string_view run_id) noexcept
      : RunScope(recorder.logger(), run_id) {}
  ~RunScope();
  RunScope(const RunScope&) = delete;
  RunScope& operator=(const RunScope&) = delete;

  void complete() noexcept { end(Status::Completed, {}); }
  void fail(std::string_view message) noexcept { end(Status::Failed, message); }

 private:
  void end(Status status, std::string_view message) noexcept;

  Logger logger_;
  std::int64_t begin_ts_ = 0;
  int uncaught_ = std::uncaught_exceptions();
  bool ended_ = false;
  std::uint8_t prev_len_ = 0;
  char prev_run_[63];
};

// Runs fn() inside a stage and records the exception's type and what() if it throws, then
// rethrows it. Returns what fn returns.
template <typename Fn>
decltype(auto) run_stage(const Logger& logger, std::string_view name, Fn&& fn);

namespace detail {
void describe_current_exception(char* out, std::size_t size) noexcept;
}  // namespace detail

template <typename Fn>
decltype(auto) run_stage(const Logger& logger, std::string_view name, Fn&& fn) {
  StageScope scope(logger, name);
  try {
    return std::forward<Fn>(fn)();
  } catch (...) {
    char what[512];
    detail::describe_current_exception(what, sizeof what);
    scope.fail(what);
    throw;
  }
}

}  // namespace stagelog
