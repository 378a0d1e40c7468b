#include "server/ingest.hpp"

#include <pthread.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <new>
#include <set>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "format/format.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {

namespace {

bool blank(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

// Why a line is not an event we store, or nullopt (and the event) when it is one.
std::optional<std::string> check_line(std::string_view line, std::size_t max_event_bytes,
                                      std::optional<OwnedEvent>& event) {
  if (line.size() > max_event_bytes) {
    return "event of " + std::to_string(line.size()) + " bytes is over the limit of " +
           std::to_string(max_event_bytes) + " bytes";
  }
  std::string error;
  event = parse_json_event(line, &error);
  if (!event) {
    // The JSON parser refuses invalid UTF-8 too, but says where only in its own terms: the
    // line is scanned again for that only when it failed, not for every event.
    if (std::size_t at = invalid_utf8_at(line); at != std::string_view::npos) {
      return "invalid UTF-8 at byte " + std::to_string(at + 1);
    }
    return error;
  }
  if (event->ts_ns < 0) return std::string("timestamp before 1970-01-01T00:00:00Z");
  if (event->elapsed_ns && *event->elapsed_ns < 0) {
    return std::string("\"elapsed_ns\" is negative");
  }
  return std::nullopt;
}

}  // namespace

std::string_view take_piece(std::string_view& body, std::size_t size) {
  std::size_t end = size >= body.size() ? std::string_view::npos : body.find('\n', size - 1);
  std::string_view piece = body.substr(0, end == std::string_view::npos ? body.size() : end + 1);
  body.remove_prefix(piece.size());
  return piece;
}

ParsedBatch parse_batch(std::string_view body, std::size_t max_event_bytes,
                        std::size_t first_line) {
  ParsedBatch out;
  // Room for every line at once: a vector that doubles as it goes holds up to three times its
  // events while it moves them, the peak of a large body.
  out.events.reserve(static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n')) + 1);
  std::size_t number = first_line - 1;
  while (!body.empty()) {
    std::size_t end = body.find('\n');
    std::string_view line = body.substr(0, end);
    body.remove_prefix(end == std::string_view::npos ? body.size() : end + 1);
    ++number;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (blank(line)) continue;
    std::optional<OwnedEvent> event;
    if (auto error = check_line(line, max_event_bytes, event)) {
      ++out.rejected_count;
      if (out.rejected.size() < kMaxRejectedListed) {
        out.rejected.push_back(RejectedLine{number, std::move(*error)});
      }
      continue;
    }
    out.events.push_back(std::move(*event));
  }
  out.lines = number - (first_line - 1);
  return out;
}

// ---- IngestWriter ----------------------------------------------------------------------------

struct IngestWriter::Request {
  std::span<const OwnedEvent> events;
  std::optional<Execution> execution;  // A PUT, instead of events.
  std::int64_t expires_at_ns = 0;
  const store::BatchRecord* batch = nullptr;  // The events' key (add_batch).
  // The request with the same key earlier in the same write: this one is its repeat.
  const Request* leader = nullptr;
  std::optional<store::BatchRecord> repeat;  // Set with done: the key was stored before.
  std::optional<Error> error;                // Set with done.
  bool done = false;
};

// The store write being built from the queued requests.
struct IngestWriter::Group {
  std::vector<store::EventsWrite> events;
  std::vector<store::ExecutionWrite> executions;
  std::vector<std::string> touched;  // Runs loaded or changed, each once.
  std::set<std::string, std::less<>> touched_set;
  std::map<std::string_view, Request*, std::less<>> keys;  // Batch keys, each stored once.
  std::int64_t now_ns = 0;
};

// A folded group on its way to the store thread.
struct IngestWriter::Batch {
  std::vector<Request*> requests;
  Group group;
  std::uint64_t epoch = 0;
};

IngestWriter::IngestWriter(store::Store& store, Options options)
    : store_(store), options_(std::move(options)) {
  store_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-store");  // For top -H and debuggers.
    store_loop();
  });
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-ingest");
    fold_loop();
  });
}

IngestWriter::~IngestWriter() { stop(); }

void IngestWriter::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();  // It hands over what is queued, then ends.
  if (store_thread_.joinable()) store_thread_.join();
}

std::size_t IngestWriter::runs_in_memory() const {
  std::lock_guard lock(mutex_);
  return runs_count_;
}

bool IngestWriter::write_waiting() const {
  std::lock_guard lock(mutex_);
  return pending_ != nullptr;
}

std::size_t IngestWriter::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

stagelog::Result<void> IngestWriter::add_events(std::span<const OwnedEvent> events,
                                                std::int64_t expires_at_ns) {
  Request request;
  request.events = events;
  request.expires_at_ns = expires_at_ns;
  return submit(request);
}

stagelog::Result<std::optional<store::BatchRecord>> IngestWriter::add_batch(
    std::span<const OwnedEvent> events, std::int64_t expires_at_ns,
    const store::BatchRecord& batch) {
  Request request;
  request.events = events;
  request.expires_at_ns = expires_at_ns;
  request.batch = &batch;
  auto stored = submit(request);
  if (!stored) return stored.error();
  return std::move(request.repeat);
}

stagelog::Result<void> IngestWriter::put_execution(Execution execution,
                                                   std::int64_t expires_at_ns) {
  Request request;
  request.execution = std::move(execution);
  request.expires_at_ns = expires_at_ns;
  return submit(request);
}

stagelog::Result<void> IngestWriter::submit(Request& request) {
  std::unique_lock lock(mutex_);
  if (stopping_) return Error("the server is stopping");
  queue_.push_back(&request);
  wake_.notify_one();
  done_.wait(lock, [&] { return request.done; });
  if (request.error) return *request.error;
  return {};
}

void IngestWriter::fold_loop() {
  for (;;) {
    auto batch = std::make_unique<Batch>();
    std::vector<std::unique_ptr<Batch>> spent;  // Freed at the end of this iteration.
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // Stopping, and nothing left to write.
      batch->requests.swap(queue_);
      spent.swap(spent_);
      if (poisoned_) {  // A write failed: what is in memory may not be what is stored.
        poisoned_ = false;
        clear();
        ++epoch_;
      }
    }
    batch->epoch = epoch_;
    try {
      fold_group(batch->requests, batch->group);
    } catch (const std::exception& e) {
      // Out of memory: fail the group and keep serving. What is in memory may be half
      // folded: drop it all; the store has everything handed over before.
      clear();
      ++epoch_;
      {
        std::lock_guard lock(mutex_);
        for (Request* r : batch->requests) {
          if (!r->error) r->error = Error(std::string("cannot ingest: ") + e.what());
          r->done = true;
        }
      }
      done_.notify_all();
      continue;
    }
    std::unique_lock lock(mutex_);
    runs_count_ = runs_.size();
    handed_.wait(lock, [&] { return pending_ == nullptr; });
    for (const auto& [key, request] : batch->group.keys) keys_in_flight_.emplace(key);
    pending_ = std::move(batch);
    store_wake_.notify_one();
  }
  {
    std::lock_guard lock(mutex_);
    folding_done_ = true;
  }
  store_wake_.notify_one();
}

void IngestWriter::store_loop() {
  for (;;) {
    std::unique_ptr<Batch> batch;
    std::optional<Error> error;
    {
      std::unique_lock lock(mutex_);
      store_wake_.wait(lock, [&] { return pending_ != nullptr || folding_done_; });
      if (pending_ == nullptr) return;
      batch = std::move(pending_);
      writing_ = true;
      if (failed_epoch_ && batch->epoch <= *failed_epoch_) error = failed_error_;
    }
    handed_.notify_all();
    if (!error) {
      auto written = store_.write(batch->group.events, batch->group.executions);
      if (!written) {
        error = written.error();
        std::lock_guard lock(mutex_);
        failed_epoch_ = batch->epoch;
        failed_error_ = error;
        poisoned_ = true;
      }
    }
    {
      std::lock_guard lock(mutex_);
      for (Request* r : batch->requests) {
        // A repeat comes after its leader, whose outcome is known by then.
        if (r->leader != nullptr && !r->error) {
          if (r->leader->error) {
            r->error = r->leader->error;
          } else {
            r->repeat = *r->leader->batch;
          }
        }
        if (!r->error && error) r->error = *error;
        r->done = true;
      }
      for (const auto& [key, request] : batch->group.keys) {
        if (auto it = keys_in_flight_.find(key); it != keys_in_flight_.end()) {
          keys_in_flight_.erase(it);
        }
      }
      writing_ = false;
      spent_.push_back(std::move(batch));
    }
    done_.notify_all();
    handed_.notify_all();
  }
}

bool IngestWriter::known(Request& request, Group& group) {
  const std::string& key = request.batch->key;
  if (auto it = group.keys.find(key); it != group.keys.end()) {
    request.leader = it->second;
    return true;
  }
  bool in_flight = false;
  {
    std::lock_guard lock(mutex_);
    in_flight = keys_in_flight_.contains(key);
  }
  if (in_flight) drain();  // Sent again while being written: wait for the first's outcome.
  auto found = store_.batch(key, group.now_ns);
  if (!found) {
    request.error = found.error();
    return true;
  }
  if (*found) {
    request.repeat = std::move(**found);
    return true;
  }
  group.keys.emplace(key, &request);
  return false;
}

void IngestWriter::clear() {
  folder_ = ExecutionFolder();
  runs_.clear();
  lru_.clear();
}

void IngestWriter::drain() {
  std::unique_lock lock(mutex_);
  handed_.wait(lock, [&] { return pending_ == nullptr && !writing_; });
}

IngestWriter::Run& IngestWriter::remember(const std::string& run, Group& group) {
  auto it = runs_.find(run);
  if (it == runs_.end()) {
    lru_.push_front(run);
    it = runs_.emplace(run, Run{}).first;
    it->second.lru = lru_.begin();
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  if (group.touched_set.insert(run).second) group.touched.push_back(run);
  return it->second;
}

bool IngestWriter::load(const std::string& run, Group& group, Request& request) {
  if (runs_.contains(run)) return true;
  drain();  // The run's last changes may still be on their way to the store.
  auto latest = store_.latest(run, group.now_ns);
  if (!latest) {
    request.error = latest.error();
    return false;
  }
  Run& state = remember(run, group);
  if (*latest) {
    std::size_t steps = (*latest)->steps.size();
    folder_.restore(std::move(**latest));
    state.stored = steps;
    state.offset = folder_.drop_steps(run, 1);
  }
  return true;
}

// Puts the run's current execution into its slot of the write: its columns, and the steps
// not stored yet.
void IngestWriter::flush(const std::string& run, Run& state, Group& group) {
  if (!state.slot) return;
  const Execution* current = folder_.find(run);
  store::ExecutionWrite& w = group.executions[*state.slot];
  state.slot.reset();
  if (current == nullptr) return;  // Cannot happen: a slot is made for a folded event.
  w.execution.tracking_id = current->tracking_id;
  w.execution.execution_id = current->execution_id;
  w.execution.started_at_ns = current->started_at_ns;
  w.execution.completed_at_ns = current->completed_at_ns;
  w.execution.duration_ms = current->duration_ms;
  w.execution.metadata_json = current->metadata_json;
  std::size_t first_new = state.stored - state.offset;
  w.execution.steps.assign(current->steps.begin() + static_cast<std::ptrdiff_t>(first_new),
                           current->steps.end());
  w.steps_from = state.stored;
  state.stored = state.offset + current->steps.size();
}

void IngestWriter::forget(const std::string& run) {
  auto it = runs_.find(run);
  if (it == runs_.end()) return;
  lru_.erase(it->second.lru);
  runs_.erase(it);
  folder_.erase(run);
}

void IngestWriter::fold_group(std::vector<Request*>& requests, Group& group) {
  group.now_ns = options_.clock();
  for (Request* r : requests) {
    if (r->execution) {  // A PUT.
      const Execution& doc = *r->execution;
      if (!load(doc.tracking_id, group, *r)) continue;
      Run& state = remember(doc.tracking_id, group);
      flush(doc.tracking_id, state, group);
      // Later events continue the document when it is the tracking id's latest attempt, as
      // Store::latest would say: no other, the same one, or one that started no later.
      const Execution* current = folder_.find(doc.tracking_id);
      bool latest = current == nullptr || current->execution_id == doc.execution_id ||
                    doc.started_at_ns >= current->started_at_ns;
      group.executions.push_back(store::ExecutionWrite{doc, r->expires_at_ns, 0});
      if (latest) {
        folder_.restore(doc);
        state.offset = 0;
        state.stored = doc.steps.size();
      }
      continue;
    }
    if (r->batch != nullptr && known(*r, group)) continue;
    // Every run of the request is looked up before any of its events folds, so that a store
    // that cannot be read fails the request without leaving half of it in memory. A run whose
    // first event here is its start is not: a run start opens a fresh attempt whatever is
    // stored (a retry after a worker died must not fold into the dead attempt as a nested
    // run), and not reading the store for every new job is most of what ingest would spend.
    bool loaded = true;
    std::unordered_set<std::string_view> seen;
    for (const OwnedEvent& e : r->events) {
      if (e.run.empty() || !seen.insert(e.run).second) continue;
      if (e.kind == Kind::Run && e.status == Status::Starting && !runs_.contains(e.run)) continue;
      if (!load(e.run, group, *r)) {
        loaded = false;
        break;
      }
    }
    if (!loaded) continue;
    for (const OwnedEvent& e : r->events) {
      if (e.run.empty()) continue;
      Run& state = remember(e.run, group);
      // A run start may replace a finished execution with a fresh attempt: the old one's
      // last changes go into the write first.
      if (e.kind == Kind::Run && (e.status == Status::Starting || e.status == Status::InProgress)) {
        flush(e.run, state, group);
      }
      const Execution* before = folder_.find(e.run);
      std::string before_id = before != nullptr ? before->execution_id : std::string();
      const Execution* changed = folder_.add(e.view());
      if (changed == nullptr) continue;
      if (changed->execution_id != before_id) {  // A new attempt: nothing of it is stored.
        state.offset = 0;
        state.stored = 0;
      }
      if (state.slot) {
        group.executions[*state.slot].expires_at_ns = r->expires_at_ns;
      } else {
        state.slot = group.executions.size();
        group.executions.push_back(store::ExecutionWrite{{}, r->expires_at_ns, 0});
      }
    }
    group.events.push_back(store::EventsWrite{r->events, r->expires_at_ns, r->batch});
  }
  for (const std::string& run : group.touched) {
    auto it = runs_.find(run);
    if (it != runs_.end()) flush(run, it->second, group);
  }

  // What the write will store counts as stored from here on (a failed write makes the fold
  // thread drop it all, see fold_loop).
  for (const std::string& run : group.touched) {
    if (folder_.find(run) == nullptr || folder_.finished(run)) {
      forget(run);
    } else if (auto it = runs_.find(run); it != runs_.end()) {
      it->second.offset += folder_.drop_steps(run, 1);
    }
  }
  while (runs_.size() > options_.max_open_runs && !lru_.empty()) {
    std::string oldest = lru_.back();
    forget(oldest);
  }
}

}  // namespace stagelog::detail
