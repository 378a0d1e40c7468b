#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/event.hpp"

namespace stagelog {

// The execution model: seed 004's execution logs, and executions folded from recorder events.
// The store keeps them and the server serves them; neither the model nor the store knows HTTP
// (the seed's response shape is stagelog/server/execution_log.hpp).

// One step of an execution, as seed 004's worker pushes it: {step, timestamp, status,
// message, error_details?, any custom fields}.
struct Step {
  std::string step;
  std::int64_t timestamp_ns = 0;
  std::string status;  // completed | failed | in_progress | skipped
  std::string message;
  std::optional<std::string> error_details;
  std::string custom_json = "{}";  // The step's other keys as a JSON object, in document order.

  friend bool operator==(const Step&, const Step&) = default;
};

// One attempt of one tracked job (seed 004's executionLog): every attempt has its own
// execution_id ("exec_<ms>_<random>").
struct Execution {
  std::string tracking_id;
  std::string execution_id;
  std::int64_t started_at_ns = 0;
  std::optional<std::int64_t> completed_at_ns;
  std::optional<std::int64_t> duration_ms;
  std::string metadata_json = "{}";  // Other top-level keys (company, tier ...), in document order.
  std::vector<Step> steps;

  friend bool operator==(const Execution&, const Execution&) = default;
};

// A seed-004 execution-log document, verbatim as the seed's JavaScript worker builds it. Required:
// tracking_id (a non-empty string) and steps (an array, may be empty); started_at defaults to
// the first step's timestamp; execution_id, when absent, is made up as exec_<ms>_<random>.
// Each step needs step, timestamp and a status from the four above. On failure: nullopt and
// a reason naming the key ("steps[2].status: unknown status \"done\"").
// Timestamps are kept to the millisecond (a finer fraction is cut, as the document prints
// milliseconds), so parse_execution(execution_document(x)) == x for every x it returns.
// Duplicate keys, nesting deeper than 64 and timestamps before 1970 are rejected.
std::optional<Execution> parse_execution(std::string_view json, std::string* error = nullptr);
// The same, but a document without tracking_id takes `default_tracking_id` (when not empty):
// the server's PUT /api/v1/executions/{tracking_id} names it in the URL.
std::optional<Execution> parse_execution(std::string_view json,
                                         std::string_view default_tracking_id,
                                         std::string* error = nullptr);

// The document again (what PUT stored), keys in seed order, metadata after execution_id.
std::string execution_document(const Execution& execution);

// The last step's status, or "unknown" without steps.
std::string_view final_status(const Execution& execution);

// A new execution id: "exec_<ms since the epoch>_<9 random base-36 characters>".
std::string new_execution_id(std::int64_t now_ns);

// Folds recorder events into executions by run id (an event without one is ignored): a run
// start opens an execution (its fields become metadata), a stage start adds an in_progress
// step, a stage end a completed / failed / skipped one (error_details from the field of that
// name, else a failure's message), a run end closes it (completed_at, duration_ms). Log events
// at ERROR and above become failed steps named by their component.
// Also: workflow node events fold like stages. A run start while that run is open (a Workflow
// inside a RunScope) is a nested run: an in_progress step named by its stage, whose end is a
// step too. A run start on a closed execution starts a fresh one (seed 004: every attempt its
// own log). An event for a run never started opens the execution implicitly. A failed run end
// adds a failed step named by its component unless the last step already failed; a run end's
// fields join the metadata. Fields named like the document's own keys are dropped; strings
// are made valid UTF-8. Timestamps are cut to the millisecond, as in parse_execution.
// Not thread-safe: one thread (a sink's backend thread, the server's ingest) calls it. It
// keeps every execution until erase(): retention is the store's job.
class ExecutionFolder {
 public:
  // Returns the execution the event changed, or nullptr. The pointer stays valid until the
  // folder dies or erase() forgets the run id; later add() and restore() calls for the same
  // run id change what it points to.
  const Execution* add(const Event& event);
  const Execution* find(std::string_view tracking_id) const;

  // For a folder that holds only some executions while the rest are kept elsewhere (the
  // server keeps them all in its store and only the open ones here):
  //
  // Puts back an execution read from there, replacing what the folder had for its tracking
  // id, so that later events continue it instead of opening a new attempt. It is open (as
  // after one run start) unless it has completed_at. How deeply runs were nested is not part
  // of an execution, so a restored one is never nested. Returns the folder's copy.
  const Execution* restore(Execution execution);
  // Drops all but the last `keep` steps of the tracking id's execution (add() looks at no
  // step but the last), once they are kept elsewhere. Returns how many it dropped.
  std::size_t drop_steps(std::string_view tracking_id, std::size_t keep);
  // True when a run end closed the execution and no run of it is open: only a new run start
  // would change it, and that starts a fresh attempt.
  bool finished(std::string_view tracking_id) const;
  // Forgets the tracking id; pointers to its execution become invalid. False if unknown.
  bool erase(std::string_view tracking_id);
  std::size_t size() const noexcept { return executions_.size(); }

 private:
  struct Entry {
    Execution execution;
    int open_runs = 0;  // Run starts not yet ended: 0 closed, 1 open, more for nested runs.
  };
  Entry& entry_for(const Event& event);

  std::map<std::string, Entry, std::less<>> executions_;
};

}  // namespace stagelog
