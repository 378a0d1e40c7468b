// Executions folded from recorder events (ExecutionFolder): stages, nodes and runs become the
// steps of seed 004's execution log.

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <variant>

#include "base/time.hpp"
#include "execution/document_json.hpp"
#include "format/format.hpp"
#include "stagelog/execution.hpp"

namespace stagelog {

namespace detail {

namespace {

using Json = ExecutionJson;

// ---- Folding ---------------------------------------------------------------------------------

Json field_json(const FieldValue& value) {
  return std::visit(
      [](const auto& v) -> Json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          return valid_utf8(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return std::isfinite(v) ? Json(v) : Json(nullptr);
        } else {
          return v;
        }
      },
      value);
}

std::optional<std::string_view> step_status(Status status) {
  switch (status) {
    case Status::Starting:
    case Status::InProgress:
      return "in_progress";
    case Status::Completed:
      return "completed";
    case Status::Failed:
      return "failed";
    case Status::Skipped:
      return "skipped";
    case Status::None:
    case Status::Running:  // A "still running" update: the in_progress step already says so.
      break;
  }
  return std::nullopt;
}

// Whether the fields can be written as a JSON object one by one, as dump() writes them: no two
// keys alike (an object keeps one of each) and every key valid UTF-8 (so two keys stay two).
bool plain_keys(std::span<const Field> fields) {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (invalid_utf8_at(fields[i].key) != std::string_view::npos) return false;
    for (std::size_t j = 0; j < i; ++j) {
      if (fields[j].key == fields[i].key) return false;
    }
  }
  return true;
}

// A field's value as dump() writes it: integers and booleans in decimal and as words, without
// building a JSON value (every step of every run writes a few).
void append_field_value(std::string& out, const FieldValue& value) {
  if (const auto* text = std::get_if<std::string_view>(&value)) {
    append_json_string(out, valid_utf8(*text));
  } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
    out += std::to_string(*i);
  } else if (const auto* u = std::get_if<std::uint64_t>(&value)) {
    out += std::to_string(*u);
  } else if (const auto* b = std::get_if<bool>(&value)) {
    out += *b ? "true" : "false";
  } else {
    out += dump(field_json(value));
  }
}

// A step from a stage, node, nested run or log event: error_details from the field of that
// name, else a failure's message; the other fields are the step's custom fields.
Step make_step(const Event& event, std::string_view name, std::string_view status) {
  Step step;
  step.step = valid_utf8(name);
  step.timestamp_ns = document_ns(event.ts_ns);
  step.status = std::string(status);
  step.message = valid_utf8(event.message);
  bool ends_or_starts = event.status == Status::Starting || event.status == Status::Completed ||
                        event.status == Status::Failed || event.status == Status::Skipped;
  if (step.message.empty() && event.kind == Kind::Stage && ends_or_starts) {
    // A stage event carries no text of its own: say what the seed's stage line says after
    // "Stage: NAME - ", so that a step reads "Complete (13.2s)" rather than nothing.
    detail::append_stage_status(event, step.message);
  }
  auto error_details = [&](const Field& f) {
    const auto* text = std::get_if<std::string_view>(&f.value);
    step.error_details = text != nullptr ? valid_utf8(*text) : dump(field_json(f.value));
  };
  // Who ran the step and, at its end, how long it took: the step index's worker filter and
  // stage statistics read these (an event field of the same name wins).
  bool named_alike = false;
  for (const Field& f : event.fields) named_alike |= f.key == "worker" || f.key == "duration_ms";
  const bool duration = event.elapsed_ns && status != "in_progress";
  if (!named_alike && plain_keys(event.fields)) {
    // Written as text, as dump() would write the object: ingest folds every stage event here.
    std::string& json = step.custom_json;
    json.assign(1, '{');  // Not = "{": GCC 12 warns falsely (-Wrestrict) once inlined.
    if (!event.worker.empty()) {
      json += R"("worker":)";
      detail::append_json_string(json, valid_utf8(event.worker));
    }
    if (duration) {
      if (json.size() > 1) json += ',';
      json += R"("duration_ms":)" + std::to_string(*event.elapsed_ns / 1'000'000);
    }
    for (const Field& f : event.fields) {
      if (f.key == "error_details") {
        error_details(f);
      } else if (!contains(kStepKeys, f.key)) {
        if (json.size() > 1) json += ',';
        detail::append_json_string(json, f.key);
        json += ':';
        append_field_value(json, f.value);
      }
    }
    json += '}';
  } else {
    // Keys alike: the object keeps the first position of each and the last value.
    Json custom = Json::object();
    if (!event.worker.empty()) custom["worker"] = valid_utf8(event.worker);
    if (duration) custom["duration_ms"] = *event.elapsed_ns / 1'000'000;
    for (const Field& f : event.fields) {
      if (f.key == "error_details") {
        error_details(f);
      } else if (!contains(kStepKeys, f.key)) {
        custom[valid_utf8(f.key)] = field_json(f.value);
      }
    }
    step.custom_json = dump(custom);
  }
  if (!step.error_details && status == "failed" && !event.message.empty()) {
    step.error_details = step.message;
  }
  return step;
}

void add_metadata(Execution& execution, const Event& event) {
  if (event.fields.empty()) return;
  if (plain_keys(event.fields)) {
    // The fields as dump() would write them alone.
    std::string json = "{";
    for (const Field& f : event.fields) {
      if (contains(kDocumentKeys, f.key)) continue;
      if (json.size() > 1) json += ',';
      detail::append_json_string(json, f.key);
      json += ':';
      append_field_value(json, f.value);
    }
    json += '}';
    // Nothing to merge with; or the same keys in the same order with the same values, as a
    // run's end repeats its start's fields: merging them changes nothing.
    if (execution.metadata_json == "{}" || execution.metadata_json == json) {
      execution.metadata_json = std::move(json);
      return;
    }
  }
  Json metadata = object_of(execution.metadata_json);
  for (const Field& f : event.fields) {
    if (!contains(kDocumentKeys, f.key)) metadata[valid_utf8(f.key)] = field_json(f.value);
  }
  execution.metadata_json = dump(metadata);
}

}  // namespace

}  // namespace detail

// ---- ExecutionFolder -------------------------------------------------------------------------

ExecutionFolder::Entry& ExecutionFolder::entry_for(const Event& event) {
  auto it = executions_.find(event.run);
  if (it != executions_.end()) return it->second;
  // Never started (set_run() without a RunScope, or the start was missed): it began when this
  // event's span did.
  std::int64_t began = event.ts_ns;
  if (event.elapsed_ns && *event.elapsed_ns > 0 &&
      __builtin_sub_overflow(event.ts_ns, *event.elapsed_ns, &began)) {
    began = event.ts_ns;
  }
  Entry entry;
  entry.execution.tracking_id = detail::valid_utf8(event.run);
  entry.execution.execution_id = new_execution_id(began);
  entry.execution.started_at_ns = detail::document_ns(began);
  return executions_.emplace(std::string(event.run), std::move(entry)).first->second;
}

const Execution* ExecutionFolder::add(const Event& event) {
  if (event.run.empty()) return nullptr;
  switch (event.kind) {
    case Kind::Run: {
      if (event.status == Status::Starting || event.status == Status::InProgress) {
        auto it = executions_.find(event.run);
        if (it != executions_.end() && it->second.open_runs > 0) {  // Nested.
          ++it->second.open_runs;
          it->second.execution.steps.push_back(
              detail::make_step(event, event.stage, "in_progress"));
          return &it->second.execution;
        }
        Entry fresh;
        fresh.open_runs = 1;
        fresh.execution.tracking_id = detail::valid_utf8(event.run);
        fresh.execution.execution_id = new_execution_id(event.ts_ns);
        fresh.execution.started_at_ns = detail::document_ns(event.ts_ns);
        detail::add_metadata(fresh.execution, event);
        auto [pos, inserted] =
            executions_.insert_or_assign(std::string(event.run), std::move(fresh));
        return &pos->second.execution;
      }
      auto status = detail::step_status(event.status);
      if (!status || *status == "in_progress") return nullptr;
      Entry& entry = entry_for(event);
      Execution& execution = entry.execution;
      if (entry.open_runs > 1) {  // A nested run's end.
        --entry.open_runs;
        execution.steps.push_back(detail::make_step(event, event.stage, *status));
        return &execution;
      }
      entry.open_runs = 0;
      execution.completed_at_ns = detail::document_ns(event.ts_ns);
      execution.duration_ms =
          event.elapsed_ns
              ? std::max<std::int64_t>(0, *event.elapsed_ns / detail::kNsPerMs)
              : std::max<std::int64_t>(0, detail::floor_ms(*execution.completed_at_ns) -
                                              detail::floor_ms(execution.started_at_ns));
      detail::add_metadata(execution, event);
      if (*status == "failed" &&
          (execution.steps.empty() || execution.steps.back().status != "failed")) {
        std::string_view name = event.component.empty() ? std::string_view("run") : event.component;
        execution.steps.push_back(detail::make_step(event, name, "failed"));
      }
      return &execution;
    }
    case Kind::Stage:
    case Kind::Node: {
      auto status = detail::step_status(event.status);
      if (!status) return nullptr;
      Execution& execution = entry_for(event).execution;
      execution.steps.push_back(detail::make_step(event, event.stage, *status));
      return &execution;
    }
    case Kind::Log: {
      if (event.level < Level::Error || event.level == Level::Off) return nullptr;
      std::string_view name = event.component.empty() ? std::string_view("log") : event.component;
      Execution& execution = entry_for(event).execution;
      execution.steps.push_back(detail::make_step(event, name, "failed"));
      return &execution;
    }
    default:
      return nullptr;
  }
}

const Execution* ExecutionFolder::find(std::string_view tracking_id) const {
  auto it = executions_.find(tracking_id);
  return it == executions_.end() ? nullptr : &it->second.execution;
}

const Execution* ExecutionFolder::restore(Execution execution) {
  Entry entry;
  entry.open_runs = execution.completed_at_ns ? 0 : 1;
  std::string key = execution.tracking_id;
  entry.execution = std::move(execution);
  auto [pos, inserted] = executions_.insert_or_assign(std::move(key), std::move(entry));
  return &pos->second.execution;
}

std::size_t ExecutionFolder::drop_steps(std::string_view tracking_id, std::size_t keep) {
  auto it = executions_.find(tracking_id);
  if (it == executions_.end()) return 0;
  std::vector<Step>& steps = it->second.execution.steps;
  if (steps.size() <= keep) return 0;
  std::size_t dropped = steps.size() - keep;
  steps.erase(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(dropped));
  return dropped;
}

bool ExecutionFolder::finished(std::string_view tracking_id) const {
  auto it = executions_.find(tracking_id);
  return it != executions_.end() && it->second.open_runs == 0 &&
         it->second.execution.completed_at_ns.has_value();
}

bool ExecutionFolder::erase(std::string_view tracking_id) {
  auto it = executions_.find(tracking_id);
  if (it == executions_.end()) return false;
  executions_.erase(it);
  return true;
}

}  // namespace stagelog
