#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "net/http_client.hpp"
#include "sinks/network_spool.hpp"
#include "sinks/network_transport.hpp"
#include "stagelog/sinks/network_sink.hpp"

namespace stagelog::detail {

// NetworkSink's workings (the public header names them NetworkSinkImpl): events -> spool
// (write-ahead log) -> sender thread -> HTTP POST.
//
// Who touches what. `mu` guards everything but `transport_`, which only the sender thread uses
// (and close(), after joining it). The backend thread (write, flush, tick) formats into
// `pending_` and appends it to the spool; the sender reads batches from the spool without the
// lock (NetworkSpool says why that is safe), posts them without the lock, and takes it again
// to mark them sent.
struct NetworkSinkImpl {
  using Clock = std::chrono::steady_clock;

  // `options` checked; `tls` for an https url (else nullptr); `auth` the Authorization value
  // or empty; `base` the spool path asked for. Starts nothing: start() does.
  NetworkSinkImpl(NetworkSinkOptions options, Url url, std::shared_ptr<const TlsConfig> tls,
                  std::string auth, std::filesystem::path base);

  // Opens the spool (replaying what earlier processes left) and starts the sender thread.
  // Throws Error naming the spool path.
  void start();
  // Backend thread. flush() and tick() throw the oldest trouble report when there is no
  // on_error to hand it to.
  void write(const Event& event);
  void flush();
  void tick();
  // Any thread.
  void close();
  bool wait_sent(std::chrono::milliseconds timeout);
  NetworkSinkStats current_stats() const;
  std::filesystem::path spool_path() const;
  // In the child of fork(), with mu held by this (the only) thread.
  void after_fork_child() noexcept;

  const NetworkSinkOptions options;
  const Url url;
  mutable std::mutex mu;  // The fork hooks hold it across fork().

 private:
  // --- under mu ---
  void open_own_locked();
  void spill_locked();
  void start_gap_locked(std::string reason);
  void try_end_gap_locked(bool force);
  void report_locked(std::string message);
  void apply_locked(const PostOutcome& outcome, const SpoolRange& range, const SpoolBatch& batch);
  void deliver_reports(std::unique_lock<std::mutex>& lock);
  // Backend thread: hands reports to on_error, or throws the oldest for the recorder's handler.
  void take_reports_or_throw();

  // --- sender thread ---
  void sender_main();

  std::mutex close_mu_;              // One close() at a time.
  std::condition_variable cv_;       // Wakes the sender.
  std::condition_variable done_cv_;  // Wakes wait_sent().
  std::unique_ptr<std::thread> sender_;
  NetworkTransport transport_;  // Sender thread only.

  // --- under mu ---
  NetworkSpool spool_;
  std::string pending_;  // Formatted lines not yet in the spool (backend side).
  std::uint64_t pending_events_ = 0;
  Clock::time_point pending_since_{};
  Clock::time_point first_unsent_{};  // When the own file last went from empty to not.
  int urgent_ = 0;                    // wait_sent() callers: do not wait for flush_interval.
  int delivering_ = 0;                // Threads calling on_error (unlocked) right now.
  bool closing_ = false;
  bool closed_ = false;
  bool close_one_try_ = false;  // The server was down when close() began.
  bool close_gave_up_ = false;
  Clock::time_point close_deadline_{};
  Clock::time_point retry_at_{};
  bool down_ = false;

  // A run of dropped events (spool full), reported as one line when it ends.
  bool gap_ = false;
  std::string gap_reason_;
  std::uint64_t gap_dropped_ = 0;
  std::int64_t gap_ts_ = 0;
  std::int64_t gap_pid_ = 0;
  std::string gap_run_;
  std::string gap_host_;

  NetworkSinkStats stats_;
  std::deque<std::string> reports_;
  std::uint64_t reports_omitted_ = 0;
  std::atomic<bool> has_reports_{false};

  std::minstd_rand rng_;
  std::chrono::milliseconds backoff_;
  std::uint64_t batch_limit_;
  pid_t pid_;
};

}  // namespace stagelog::detail
