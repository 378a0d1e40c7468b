#include "sinks/network_sender.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <optional>
#include <system_error>
#include <utility>

#include "format/format.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {

namespace {

// write() hands its buffer to the spool at this size (or batch_events events, or flush()).
constexpr std::size_t kSpillBytes = 64 * 1024;
constexpr std::size_t kMaxQueuedReports = 32;

}  // namespace

NetworkSinkImpl::NetworkSinkImpl(NetworkSinkOptions opts, Url parsed_url,
                                 std::shared_ptr<const TlsConfig> tls, std::string auth,
                                 std::filesystem::path base)
    : options(std::move(opts)),
      url(std::move(parsed_url)),
      transport_(url, std::move(tls), std::move(auth)),
      spool_(std::move(base), options.spool_max_bytes,
             [this](std::string message) { report_locked(std::move(message)); }),
      rng_(std::random_device{}()),
      backoff_(options.retry_initial),
      batch_limit_(options.batch_events),
      pid_(::getpid()) {}

void NetworkSinkImpl::report_locked(std::string message) {
  if (reports_.size() >= kMaxQueuedReports) {
    ++reports_omitted_;
    return;
  }
  reports_.push_back(std::move(message));
  has_reports_.store(true, std::memory_order_release);
}

// With on_error: calls it for every queued report, without the lock.
void NetworkSinkImpl::deliver_reports(std::unique_lock<std::mutex>& lock) {
  if (!options.on_error || reports_.empty()) return;
  std::deque<std::string> out;
  out.swap(reports_);
  if (reports_omitted_ > 0) {
    out.push_back("network sink: " + std::to_string(reports_omitted_) + " more reports left out");
    reports_omitted_ = 0;
  }
  has_reports_.store(false, std::memory_order_relaxed);
  ++delivering_;
  lock.unlock();
  for (const auto& m : out) {
    try {
      options.on_error(m);
    } catch (...) {
    }
  }
  lock.lock();
  if (--delivering_ == 0) done_cv_.notify_all();
}

void NetworkSinkImpl::take_reports_or_throw() {
  if (!has_reports_.load(std::memory_order_acquire)) return;
  std::unique_lock lock(mu);
  if (options.on_error) {
    deliver_reports(lock);
    return;
  }
  if (reports_.empty()) {
    has_reports_.store(false, std::memory_order_relaxed);
    return;
  }
  std::string message = std::move(reports_.front());
  reports_.pop_front();
  if (reports_.empty() && reports_omitted_ > 0) {
    report_locked("network sink: " + std::to_string(reports_omitted_) + " more reports left out");
    reports_omitted_ = 0;
  }
  if (reports_.empty()) has_reports_.store(false, std::memory_order_relaxed);
  throw Error(message);
}

void NetworkSinkImpl::open_own_locked() {
  const std::uint64_t replayed = spool_.open_own(pid_);
  if (replayed > 0) {
    stats_.replayed += replayed;
    first_unsent_ = Clock::time_point{};  // Old: send at once.
  }
}

void NetworkSinkImpl::start() {
  spool_.make_directory();
  std::lock_guard lock(mu);
  open_own_locked();
  stats_.replayed += spool_.adopt_orphans();
  sender_ = std::make_unique<std::thread>([this] { sender_main(); });
}

void NetworkSinkImpl::start_gap_locked(std::string reason) {
  gap_ = true;
  gap_reason_ = std::move(reason);
  gap_dropped_ = 0;
  report_locked("network sink: " + gap_reason_ + ": dropping events until the server catches up");
}

// Ends a run of drops with the line that tells the server about it, once the spool has room
// again (half the bound free), or at once when forced (close()).
void NetworkSinkImpl::try_end_gap_locked(bool force) {
  if (!gap_) return;
  if (!force && !spool_.under_half(pending_.size())) return;
  gap_ = false;
  std::string message =
      "network sink dropped " + std::to_string(gap_dropped_) + " events (" + gap_reason_ + ")";
  report_locked(message);
  if (gap_dropped_ == 0) return;
  std::string spool = spool_.path().string();
  Field fields[] = {{"dropped", FieldValue{gap_dropped_}},
                    {"spool", FieldValue{std::string_view(spool)}},
                    {"spool_max_bytes", FieldValue{options.spool_max_bytes}}};
  Event e;
  e.ts_ns = gap_ts_;
  e.kind = Kind::Log;
  e.level = Level::Warning;
  e.component = "stagelog";
  e.run = gap_run_;
  e.message = message;
  e.fields = fields;
  e.pid = gap_pid_;
  e.host = gap_host_;
  if (pending_.empty()) pending_since_ = Clock::now();
  format_json(e, pending_);
  ++pending_events_;
}

// Appends the buffered lines to the own spool file.
void NetworkSinkImpl::spill_locked() {
  if (pending_.empty()) return;
  bool was_empty = false;
  try {
    if (!spool_.is_open()) open_own_locked();
    was_empty = spool_.append(pending_, pending_events_);
  } catch (const Error& e) {
    stats_.dropped += pending_events_;
    report_locked(std::string("network sink: ") + e.what() + "; dropped " +
                  std::to_string(pending_events_) + " events");
    pending_.clear();
    pending_events_ = 0;
    return;
  }
  if (down_) stats_.spooled += pending_events_;
  if (was_empty) first_unsent_ = Clock::now();
  pending_.clear();
  pending_events_ = 0;
  if (was_empty || spool_.waiting() >= options.batch_events || closing_ || urgent_ > 0) {
    cv_.notify_all();
  }
}

void NetworkSinkImpl::write(const Event& event) {
  std::lock_guard lock(mu);
  try_end_gap_locked(false);
  if (!gap_) {
    std::size_t before = pending_.size();
    format_json(event, pending_);
    if (spool_.over_limit(pending_.size())) {
      pending_.resize(before);
      start_gap_locked("spool full: " + spool_.path().string() + ", " +
                       std::to_string(options.spool_max_bytes) + " bytes");
    } else {
      if (before == 0) pending_since_ = Clock::now();
      ++pending_events_;
    }
  }
  if (gap_) {
    ++gap_dropped_;
    ++stats_.dropped;
    gap_ts_ = event.ts_ns;
    gap_pid_ = event.pid;
    if (gap_run_ != event.run) gap_run_.assign(event.run);
    if (gap_host_ != event.host) gap_host_.assign(event.host);
  }
  if (pending_events_ >= options.batch_events || pending_.size() >= kSpillBytes || closed_) {
    spill_locked();
  }
}

void NetworkSinkImpl::flush() {
  {
    std::lock_guard lock(mu);
    spill_locked();
  }
  take_reports_or_throw();
}

void NetworkSinkImpl::tick() {
  {
    std::lock_guard lock(mu);
    // A backend that never idles never calls flush(): do not let lines wait past the interval.
    if (!pending_.empty() && Clock::now() - pending_since_ >= options.flush_interval) {
      spill_locked();
    }
  }
  take_reports_or_throw();
}

void NetworkSinkImpl::apply_locked(const PostOutcome& outcome, const SpoolRange& range,
                                   const SpoolBatch& batch) {
  const auto now = Clock::now();
  switch (outcome.kind) {
    case PostOutcome::Sent:
    case PostOutcome::Rejected: {
      std::uint64_t rejected = outcome.kind == PostOutcome::Rejected
                                   ? batch.lines
                                   : std::min(outcome.rejected, batch.lines);
      stats_.sent += batch.lines - rejected;
      stats_.rejected += rejected;
      if (rejected > 0) {
        report_locked("network sink: " + url.text + " rejected " + std::to_string(rejected) +
                      " of " + std::to_string(batch.lines) + " events" +
                      (outcome.message.empty() ? std::string() : ": " + outcome.message));
      }
      spool_.consume(range, batch.lines, batch.body.size());
      if (down_) {
        down_ = false;
        report_locked("network sink: " + url.text + " is reachable again; sending the " +
                      std::to_string(spool_.waiting()) + " events still in the spool");
      }
      backoff_ = options.retry_initial;
      retry_at_ = {};
      batch_limit_ = std::min<std::uint64_t>(options.batch_events, batch_limit_ * 2);
      try_end_gap_locked(false);
      spill_locked();
      done_cv_.notify_all();
      break;
    }
    case PostOutcome::Split:
      batch_limit_ = std::max<std::uint64_t>(1, batch.lines / 2);
      spool_.abandon_batch(range);  // Nothing stored: smaller batches, new keys.
      break;
    case PostOutcome::Retry: {
      ++stats_.failed_requests;
      if (!down_) {
        down_ = true;
        stats_.spooled += spool_.waiting();
        report_locked("network sink: cannot deliver to " + url.text + ": " + outcome.message +
                      "; keeping events in " + spool_.path().string() + " and retrying");
      }
      if (closing_ && close_one_try_) close_gave_up_ = true;
      auto delay = backoff_;
      backoff_ = std::min(backoff_ * 2, options.retry_max);
      std::uniform_real_distribution<double> jitter(0.75, 1.25);
      delay = std::chrono::milliseconds(
          static_cast<std::int64_t>(static_cast<double>(delay.count()) * jitter(rng_)));
      delay = std::clamp(std::max(delay, outcome.retry_after), std::chrono::milliseconds(1),
                         options.retry_max);
      retry_at_ = now + delay;
      break;
    }
  }
}

void NetworkSinkImpl::sender_main() {
  std::unique_lock lock(mu);
  SpoolBatch batch;
  for (;;) {
    deliver_reports(lock);
    const auto now = Clock::now();
    std::optional<SpoolRange> range = spool_.next();
    if (closing_ && (!range || now >= close_deadline_ || close_gave_up_)) break;
    if (!range) {
      cv_.wait(lock);
      continue;
    }
    if (now < retry_at_) {
      cv_.wait_until(lock, closing_ ? std::min(retry_at_, close_deadline_) : retry_at_);
      continue;
    }
    const auto due = first_unsent_ + options.flush_interval;
    bool ready = closing_ || urgent_ > 0 || range->adopted ||
                 spool_.waiting() >= options.batch_events || now >= due;
    if (!ready) {
      cv_.wait_until(lock, due);
      continue;
    }
    const std::uint64_t limit = batch_limit_;
    auto deadline = now + options.request_timeout;
    if (closing_) deadline = std::min(deadline, close_deadline_);
    lock.unlock();
    std::string read_error;
    PostOutcome outcome;
    try {
      if (range->batch_end != 0) {  // Sent before without an answer: the same lines again.
        SpoolRange same = *range;
        same.end = range->batch_end;
        NetworkSpool::read(same, UINT64_MAX, SIZE_MAX, batch);
      } else {
        NetworkSpool::read(*range, limit, options.max_batch_bytes, batch);
      }
    } catch (const std::system_error& e) {
      read_error = e.code().message();
    }
    if (read_error.empty() && batch.lines == 0) read_error = "no whole line where one should be";
    if (read_error.empty()) {
      if (range->batch_end == 0) {
        // The batch and its key are in the spool before the request goes out.
        lock.lock();
        spool_.begin_batch(*range, batch.body.size());
        lock.unlock();
      }
      outcome = transport_.post(batch.body, batch.lines, range->key, deadline);
    }
    lock.lock();
    if (!read_error.empty()) {
      // Unreadable: what is left of the file cannot be sent.
      stats_.dropped += spool_.drop_unreadable(*range, read_error);
      done_cv_.notify_all();
      continue;
    }
    apply_locked(outcome, *range, batch);
  }
  deliver_reports(lock);
}

void NetworkSinkImpl::close() {
  std::lock_guard close_lock(close_mu_);
  {
    std::unique_lock lock(mu);
    if (closed_) return;
    spill_locked();
    closing_ = true;
    close_one_try_ = down_;
    close_gave_up_ = false;
    close_deadline_ = Clock::now() + options.shutdown_timeout;
    cv_.notify_all();
  }
  if (sender_ && sender_->joinable()) sender_->join();
  sender_.reset();
  transport_.close();
  std::unique_lock lock(mu);
  closing_ = false;
  closed_ = true;
  try_end_gap_locked(true);
  spill_locked();
  std::uint64_t left = spool_.waiting();
  if (left > 0) {
    report_locked("network sink: " + std::to_string(left) + " events not delivered to " + url.text +
                  " stay in the spool for the next process: " + spool_.path().string());
  } else {
    spool_.remove_own();  // Nothing to keep; a later write() opens a new one.
  }
  done_cv_.notify_all();
  deliver_reports(lock);
}

bool NetworkSinkImpl::wait_sent(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu);
  spill_locked();
  ++urgent_;
  cv_.notify_all();
  bool done = done_cv_.wait_until(lock, deadline,
                                  [&] { return pending_.empty() && spool_.waiting() == 0; });
  --urgent_;
  // Reports about what was sent may be on their way to on_error from the sender thread: they
  // are handed over before this returns, so a caller sees every report about its events.
  done_cv_.wait_until(lock, deadline, [&] { return delivering_ == 0; });
  deliver_reports(lock);
  return done;
}

NetworkSinkStats NetworkSinkImpl::current_stats() const {
  std::lock_guard lock(mu);
  NetworkSinkStats s = stats_;
  s.queued = spool_.waiting() + pending_events_;
  return s;
}

std::filesystem::path NetworkSinkImpl::spool_path() const {
  std::lock_guard lock(mu);
  return spool_.path();
}

// The sender thread is gone; the parent still holds the spool files, their locks and
// everything queued: start over with a spool of our own and a new sender.
void NetworkSinkImpl::after_fork_child() noexcept {
  pid_ = ::getpid();
  (void)sender_.release();  // No thread to join; its handle is leaked on purpose.
  new (&cv_) std::condition_variable();
  new (&done_cv_) std::condition_variable();
  new (&close_mu_) std::mutex();
  spool_.forget_after_fork();
  pending_.clear();
  pending_events_ = 0;
  stats_ = NetworkSinkStats{};
  reports_.clear();
  reports_omitted_ = 0;
  has_reports_.store(false, std::memory_order_relaxed);
  gap_ = false;
  down_ = false;
  retry_at_ = {};
  backoff_ = options.retry_initial;
  batch_limit_ = options.batch_events;
  urgent_ = 0;
  try {
    transport_.restart_after_fork();
    if (closing_ || closed_) {
      closing_ = false;
      closed_ = true;  // The parent was closing: the child writes to a spool only.
      return;
    }
    open_own_locked();
    sender_ = std::make_unique<std::thread>([this] { sender_main(); });
  } catch (const std::exception& e) {
    closed_ = true;
    report_locked(std::string("network sink: after fork: ") + e.what());
  } catch (...) {
    closed_ = true;
  }
}

}  // namespace stagelog::detail
