#pragma once

// The server's ingest: NDJSON batches checked line by line, and the one writer thread that
// folds events into executions and stores both, sharing one commit among concurrent requests.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "stagelog/execution.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

// A line of a batch that was not stored, and why ("not valid JSON: ...").
struct RejectedLine {
  std::size_t line = 0;  // 1-based.
  std::string error;
};

struct ParsedBatch {
  std::vector<OwnedEvent> events;
  std::vector<RejectedLine> rejected;  // At most kMaxRejectedListed, in line order.
  std::size_t rejected_count = 0;      // All of them.
  std::size_t lines = 0;               // Lines read, blank ones included.
};

// Listing more rejected lines than this helps nobody and would let a bad batch of tiny lines
// make an answer bigger than the request.
constexpr std::size_t kMaxRejectedListed = 1000;

// Splits an NDJSON body (lines end in "\n" or "\r\n"; blank lines are skipped) and checks
// each line on its own: at most max_event_bytes, valid UTF-8, one event as parse_json_event
// reads it (so a known kind, level and status, and a "ts" that parses), a timestamp not
// before 1970 and an elapsed_ns that is not negative. Rejected lines are numbered from
// first_line (a piece of a larger body numbers its lines as the body does). Never throws but
// std::bad_alloc.
ParsedBatch parse_batch(std::string_view body, std::size_t max_event_bytes,
                        std::size_t first_line = 1);

// Bodies longer than this are parsed and stored in pieces of about this size, cut after a
// line's end (ingest_piece), so that a request holds its body and one piece's events at a
// time, not the events of the whole body (about twice its size).
inline constexpr std::size_t kIngestPieceBytes = std::size_t{1} << 20;

// Takes the next piece off the front of `body`: at least `size` bytes (the whole body when
// shorter) up to and including the end of the line they end in.
std::string_view take_piece(std::string_view& body, std::size_t size = kIngestPieceBytes);

// The one thread that writes what requests bring in (events, and PUT documents), so that
//  - concurrent requests share a commit: while one store write runs, the requests that
//    arrive queue up, and the next write takes all of them in one transaction (group
//    commit: one fsync for many batches);
//  - events fold into executions (ExecutionFolder: stage transitions become steps of the
//    execution of their run id) in the order the requests arrived, and each changed
//    execution is stored in the same transaction as the events that changed it.
//
// Memory stays bounded: a run whose execution a run end closed is dropped from memory once
// stored (a later event for it reads it back from the store); open runs are capped at
// max_open_runs, the least recently used dropped first (read back the same way); and only
// the last stored step of each open execution stays in memory, the next write appending the
// new steps after it (ExecutionWrite::steps_from) instead of rewriting them all.
//
// Restarts: a run not in memory is first looked up in the store (Store::latest), so the
// events of a run that was open when the server stopped, or that was dropped from memory,
// continue the same stored execution instead of starting a new attempt. What is lost is only
// how deeply runs were nested (ExecutionFolder::restore).
//
// Two threads, a pipeline: the fold thread folds the queued requests into one store write
// while the store thread writes the previous one, so folding never waits for a commit (nor a
// commit for folding). The fold thread treats a write it handed over as done; when the store
// thread reports it failed, the fold thread drops everything it holds in memory (it may have
// folded later events onto what was not stored) and every write folded before it learned so
// fails with the same error: the next events read back what the store really holds. A run
// read from the store waits for the writes in flight first.
//
// Durability: a submit call returns only after the store write that holds its data
// returned.
//
// Batch keys (add_batch): the fold thread looks each key up, in the write being built (a
// repeat there follows the first: its answer, or its error), among the keys of the writes in
// flight (then it waits for them, which only a repeat sent while its first is being written
// costs), and in the store (Store::batch). Being the store's one writer, it needs no more to
// store a batch once.
//
// Threads: submit calls come from any thread (the HTTP pool) and block. The Store must
// outlive the IngestWriter.
class IngestWriter {
 public:
  struct Options {
    std::size_t max_open_runs = 10'000;
    std::function<std::int64_t()> clock;  // ns since the epoch, for Store::latest.
  };

  IngestWriter(store::Store& store, Options options);
  ~IngestWriter();  // stop().
  IngestWriter(const IngestWriter&) = delete;
  IngestWriter& operator=(const IngestWriter&) = delete;

  // Stores the events (and the executions they change) expiring at expires_at_ns. Blocks
  // until stored; the error of the store, or "stopping" after stop(). The events stay the
  // caller's: they are read, not copied.
  stagelog::Result<void> add_events(std::span<const OwnedEvent> events, std::int64_t expires_at_ns);
  // The same for an ingest batch with a key (an Idempotency-Key), stored once: the key goes
  // into the transaction of the events (Store::write), and a batch whose key is stored, or
  // on its way to the store from an earlier call, is not stored again. Returns nullopt when
  // this call stored the batch, else the record of the call that did (after its write
  // succeeded; its error when it failed). `batch` must outlive the call.
  stagelog::Result<std::optional<store::BatchRecord>> add_batch(std::span<const OwnedEvent> events,
                                                                std::int64_t expires_at_ns,
                                                                const store::BatchRecord& batch);
  // Stores a document (Store::put_execution semantics) in order with the events.
  stagelog::Result<void> put_execution(Execution execution, std::int64_t expires_at_ns);

  // Writes what is queued, then stops the thread. Later calls fail. Idempotent.
  void stop();

  // How many runs are held in memory (for tests of the bound).
  std::size_t runs_in_memory() const;
  // Whether a folded write waits for the store thread (for tests of the pipeline).
  bool write_waiting() const;
  // Requests queued and not yet taken by the fold thread (for tests of the grouping).
  std::size_t queued() const;

 private:
  struct Request;
  struct Run {
    std::size_t offset = 0;  // The attempt's step number of the folder's steps[0].
    std::size_t stored = 0;  // Steps of the current attempt stored (or in the write being built).
    std::optional<std::size_t> slot;  // Its ExecutionWrite in the write being built.
    std::list<std::string>::iterator lru;
  };
  struct Group;
  struct Batch;

  stagelog::Result<void> submit(Request& request);
  void fold_loop();
  void store_loop();
  void fold_group(std::vector<Request*>& requests, Group& group);
  // Whether the request's batch key is known: stored (then request.repeat is set), in the
  // group (request.leader), or unreadable (request.error). Else it joins the group's keys.
  bool known(Request& request, Group& group);
  // Drops every run held in memory.
  void clear();
  // Until the store thread has written everything handed over.
  void drain();
  // Looks the run up in the store when it is not in memory. False (with the error in the
  // request) when the store cannot be read.
  bool load(const std::string& run, Group& group, Request& request);
  Run& remember(const std::string& run, Group& group);
  void flush(const std::string& run, Run& state, Group& group);
  void forget(const std::string& run);

  store::Store& store_;
  Options options_;

  // Guards queue_, stopping_, the requests' results and the hand-over between the threads.
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<Request*> queue_;
  bool stopping_ = false;

  std::condition_variable store_wake_;  // A batch is pending, or the fold thread ended.
  std::condition_variable handed_;      // The store thread took a batch or finished one.
  std::unique_ptr<Batch> pending_;      // Folded, not yet taken by the store thread.
  // Written batches, freed by the fold thread: freeing is not the store thread's work.
  std::vector<std::unique_ptr<Batch>> spent_;
  bool writing_ = false;       // The store thread is writing a batch.
  bool folding_done_ = false;  // The fold thread ended: nothing more comes.
  // A write failed: the fold thread must drop its memory. Batches folded in failed_epoch_ or
  // before fail without being written.
  bool poisoned_ = false;
  std::optional<std::uint64_t> failed_epoch_;
  std::optional<Error> failed_error_;
  // The batch keys of the batches handed to the store thread and not yet written.
  std::set<std::string, std::less<>> keys_in_flight_;

  // The fold thread's own state.
  std::uint64_t epoch_ = 0;  // Counts the times memory was dropped.
  ExecutionFolder folder_;
  std::map<std::string, Run, std::less<>> runs_;
  std::list<std::string> lru_;  // Most recently used first.
  std::size_t runs_count_ = 0;  // runs_.size(), readable under mutex_.

  std::thread thread_;        // Folds.
  std::thread store_thread_;  // Writes.
};

}  // namespace stagelog::detail
