#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "stagelog/event.hpp"
#include "stagelog/sink.hpp"

namespace stagelog::test {

// An event with its own storage, as MemorySink keeps it.
struct OwnedEvent {
  std::int64_t ts_ns = 0;
  Kind kind = Kind::Log;
  Level level = Level::Info;
  Status status = Status::None;
  std::string run, worker, component, stage, message, host;
  std::optional<std::int64_t> elapsed_ns;
  std::vector<
      std::pair<std::string, std::variant<std::int64_t, std::uint64_t, double, bool, std::string>>>
      fields;
  std::int64_t pid = 0;
  bool fields_in_message = false;

  // The library's owning event with the same contents, for feeding a recorded event to what
  // takes an Event (its view()), as a replay does.
  stagelog::OwnedEvent owned() const {
    stagelog::OwnedEvent o;
    o.ts_ns = ts_ns;
    o.kind = kind;
    o.level = level;
    o.status = status;
    o.run = run;
    o.worker = worker;
    o.component = component;
    o.stage = stage;
    o.message = message;
    o.host = host;
    o.elapsed_ns = elapsed_ns;
    o.pid = pid;
    o.fields_in_message = fields_in_message;
    for (const auto& [key, value] : fields) {
      std::visit(
          [&](const auto& x) {
            if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::string>) {
              o.add_field(key, std::string_view(x));
            } else {
              o.add_field(key, x);
            }
          },
          value);
    }
    return o;
  }

  // The field's value as text ("1247", "true", "abc"), or "" if absent.
  std::string field(const std::string& key) const {
    for (const auto& [k, v] : fields) {
      if (k != key) continue;
      return std::visit(
          [](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string>) {
              return x;
            } else if constexpr (std::is_same_v<T, bool>) {
              return x ? "true" : "false";
            } else {
              return std::to_string(x);
            }
          },
          v);
    }
    return {};
  }
};

// Keeps copies of every event it is given. Read events() after Recorder::flush().
class MemorySink : public Sink {
 public:
  using Sink::Sink;

  void write(const Event& e) override {
    OwnedEvent o;
    o.ts_ns = e.ts_ns;
    o.kind = e.kind;
    o.level = e.level;
    o.status = e.status;
    o.run = e.run;
    o.worker = e.worker;
    o.component = e.component;
    o.stage = e.stage;
    o.message = e.message;
    o.host = e.host;
    o.elapsed_ns = e.elapsed_ns;
    o.pid = e.pid;
    o.fields_in_message = e.fields_in_message;
    for (const auto& f : e.fields) {
      std::variant<std::int64_t, std::uint64_t, double, bool, std::string> v;
      switch (f.value.index()) {
        case 0:
          v = std::get<0>(f.value);
          break;
        case 1:
          v = std::get<1>(f.value);
          break;
        case 2:
          v = std::get<2>(f.value);
          break;
        case 3:
          v = std::get<3>(f.value);
          break;
        case 4:
          v = std::string(std::get<4>(f.value));
          break;
      }
      o.fields.emplace_back(std::string(f.key), std::move(v));
    }
    std::lock_guard lock(mu_);
    events_.push_back(std::move(o));
  }
  void flush() override {
    std::lock_guard lock(mu_);
    ++flushes_;
  }

  std::vector<OwnedEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  int flushes() const {
    std::lock_guard lock(mu_);
    return flushes_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<OwnedEvent> events_;
  int flushes_ = 0;
};

}  // namespace stagelog::test
