#include "server/stream.hpp"

#include <algorithm>
#include <charconv>
#include <random>
#include <utility>

#include "format/format.hpp"

namespace stagelog::detail {

namespace {

// A piece of the response is cut after this much text (the rest follows in the next one).
constexpr std::size_t kMaxPiece = std::size_t{1} << 20;

std::string random_epoch() {
  std::random_device random;
  std::uint64_t value = (std::uint64_t{random()} << 32) ^ random();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) out[static_cast<std::size_t>(i)] = kHex[value & 15];
  return out;
}

std::string_view string_field(const Event& e, std::string_view key) {
  for (const Field& f : e.fields) {
    if (f.key != key) continue;
    if (const auto* s = std::get_if<std::string_view>(&f.value)) return *s;
  }
  return {};
}

template <typename T, typename U>
bool contains(const std::vector<T>& items, const U& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// "a,b,c" split at commas.
std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> out;
  for (;;) {
    std::size_t comma = text.find(',');
    out.push_back(text.substr(0, comma));
    if (comma == std::string_view::npos) return out;
    text.remove_prefix(comma + 1);
  }
}

// "<16 hex digits>-<n>".
std::optional<StreamQuery::Resume> parse_id(std::string_view text) {
  if (text.size() < 18 || text[16] != '-') return std::nullopt;
  StreamQuery::Resume out;
  out.epoch = std::string(text.substr(0, 16));
  for (char c : out.epoch) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  std::string_view n = text.substr(17);
  auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), out.id);
  if (ec != std::errc() || end != n.data() + n.size()) return std::nullopt;
  return out;
}

}  // namespace

std::string_view stream_type_name(StreamType type) noexcept {
  switch (type) {
    case StreamType::Event:
      return "event";
    case StreamType::Warning:
      return "warning";
    case StreamType::Worker:
      return "worker";
    case StreamType::Alert:
      return "alert";
  }
  return "event";
}

StreamEntry alert_entry(std::string alert_json) {
  StreamEntry entry;
  entry.type = StreamType::Alert;
  entry.data = std::move(alert_json);
  return entry;
}

StreamEntry event_entry(std::shared_ptr<const std::vector<OwnedEvent>> batch, std::size_t index) {
  StreamEntry entry;
  entry.type = StreamType::Event;
  entry.kind = (*batch)[index].kind;
  entry.batch = std::move(batch);
  entry.index = index;
  return entry;
}

void StreamEntry::append_data(std::string& out) const {
  if (!batch) {
    out += data;
    return;
  }
  format_json((*batch)[index].view(), out);
  out.pop_back();  // Its newline.
}

std::string_view StreamEntry::worker_name() const {
  return batch ? std::string_view((*batch)[index].worker) : std::string_view(worker);
}
std::string_view StreamEntry::stage_name() const {
  return batch ? std::string_view((*batch)[index].stage) : std::string_view(stage);
}
std::string_view StreamEntry::run_name() const {
  return batch ? std::string_view((*batch)[index].run) : std::string_view(run);
}

std::size_t StreamEntry::bytes() const {
  if (!batch) return data.size();
  const OwnedEvent& e = (*batch)[index];
  std::size_t n = 160 + e.run.size() + e.worker.size() + e.component.size() + e.stage.size() +
                  e.message.size() + e.host.size();
  for (const Field& f : e.fields()) {
    n += f.key.size() + 8;
    if (const auto* text = std::get_if<std::string_view>(&f.value)) n += text->size();
  }
  return n;
}

std::optional<StreamEntry> warning_entry(const Event& report) {
  std::string_view rule = string_field(report, "rule");
  if (rule.empty() || rule == "running" || rule == "monitor") return std::nullopt;
  StreamEntry entry;
  entry.type = StreamType::Warning;
  entry.data = R"({"rule":)";
  append_json_string(entry.data, rule);
  entry.data += ',';
  std::size_t at = entry.data.size();
  format_json(report, entry.data);
  entry.data.erase(at, 1);  // The object's '{': its members follow "rule".
  entry.data.pop_back();    // Its newline.
  entry.worker = std::string(string_field(report, "worker"));
  entry.stage = std::string(report.stage);
  entry.run = std::string(report.run);
  return entry;
}

// ---- StreamHub -------------------------------------------------------------------------------

StreamHub::StreamHub(std::size_t max_entries, std::size_t max_bytes)
    : max_entries_(std::max<std::size_t>(1, max_entries)),
      max_bytes_(max_bytes),
      epoch_(random_epoch()) {}

void StreamHub::publish(std::vector<StreamEntry> entries) {
  if (entries.empty()) return;
  std::vector<std::shared_ptr<StreamEntry>> made;
  made.reserve(entries.size());
  for (StreamEntry& e : entries) made.push_back(std::make_shared<StreamEntry>(std::move(e)));
  {
    std::lock_guard lock(mutex_);
    for (auto& e : made) {
      e->id = ++last_;
      bytes_ += e->bytes();
      entries_.push_back(std::move(e));
    }
    while (entries_.size() > max_entries_ || (bytes_ > max_bytes_ && entries_.size() > 1)) {
      bytes_ -= entries_.front()->bytes();
      entries_.pop_front();
    }
  }
  wake_.notify_all();
  wake_all();
}

void StreamHub::wake_all() {
  std::lock_guard lock(wakers_mutex_);
  for (const auto& [id, wake] : wakers_) wake();
}

std::shared_ptr<void> StreamHub::subscribe(Waker wake) {
  std::lock_guard lock(wakers_mutex_);
  const std::uint64_t id = next_waker_++;
  wakers_.emplace(id, std::move(wake));
  return std::shared_ptr<void>(nullptr, [this, id](void*) {
    std::lock_guard unsubscribe(wakers_mutex_);
    wakers_.erase(id);
  });
}

StreamHub::Read StreamHub::read(std::uint64_t after, std::size_t max,
                                std::chrono::steady_clock::time_point until) const {
  std::unique_lock lock(mutex_);
  wake_.wait_until(lock, until, [&] { return closed_ || last_ > after; });
  Read r;
  if (closed_) {
    r.closed = true;
    return r;
  }
  if (last_ <= after) return r;
  const std::uint64_t oldest = last_ - entries_.size() + 1;
  if (after + 1 < oldest) {
    r.missed = oldest - 1 - after;
    after = oldest - 1;
  }
  for (auto i = static_cast<std::size_t>(after + 1 - oldest);
       i < entries_.size() && r.entries.size() < max; ++i) {
    r.entries.push_back(entries_[i]);
  }
  return r;
}

StreamHub::Span StreamHub::span() const {
  std::lock_guard lock(mutex_);
  return Span{last_ - entries_.size() + 1, last_};
}

void StreamHub::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  wake_.notify_all();
  wake_all();
}

bool StreamHub::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

StreamHub::Slot StreamHub::acquire(std::size_t max) {
  std::lock_guard lock(mutex_);
  if (open_streams_ >= max) return nullptr;
  ++open_streams_;
  return Slot(static_cast<void*>(this), [this](void*) {
    std::lock_guard release(mutex_);
    --open_streams_;
  });
}

// ---- Queries ---------------------------------------------------------------------------------

bool StreamQuery::matches(const StreamEntry& e) const {
  if (!types.empty() && !contains(types, e.type)) return false;
  if (!workers.empty() && !contains(workers, e.worker_name())) return false;
  if (!stages.empty() && !contains(stages, e.stage_name())) return false;
  if (!runs.empty() && !contains(runs, e.run_name())) return false;
  if (!kinds.empty() && (!e.kind || !contains(kinds, *e.kind))) return false;
  return true;
}

Result<StreamQuery, std::string> parse_stream_query(
    const std::multimap<std::string, std::string>& params, std::string_view last_event_id) {
  static constexpr const char* kSupported = "worker, stage, run, kind, types, from, last_event_id";
  StreamQuery q;
  std::string id_text(last_event_id);
  std::string id_source = "Last-Event-ID";
  for (const auto& [name, value] : params) {
    if (name == "worker" || name == "stage" || name == "run") {
      if (value.empty()) return name + ": empty value (give a name, or leave the filter out)";
      (name == "worker" ? q.workers : name == "stage" ? q.stages : q.runs).push_back(value);
    } else if (name == "kind") {
      for (std::string_view item : split_list(value)) {
        auto kind = parse_kind(item);
        if (!kind) {
          return "kind: unknown kind \"" + std::string(item) +
                 "\" (known: stage, log, heartbeat, lifecycle, node, run, task, request)";
        }
        q.kinds.push_back(*kind);
      }
    } else if (name == "types") {
      for (std::string_view item : split_list(value)) {
        if (item == "event") {
          q.types.push_back(StreamType::Event);
        } else if (item == "warning") {
          q.types.push_back(StreamType::Warning);
        } else if (item == "worker") {
          q.types.push_back(StreamType::Worker);
        } else if (item == "alert") {
          q.types.push_back(StreamType::Alert);
        } else {
          return "types: unknown type \"" + std::string(item) +
                 "\" (known: event, warning, worker, alert)";
        }
      }
    } else if (name == "from") {
      if (value != "oldest" && value != "now") {
        return "from: expected oldest or now, got \"" + value + "\"";
      }
      q.from_oldest = value == "oldest";
    } else if (name == "last_event_id") {
      if (id_text.empty()) {  // The header, which a reconnecting EventSource sends, wins.
        id_text = value;
        id_source = "last_event_id";
      }
    } else {
      return "unknown parameter \"" + name + "\" (supported: " + kSupported + ")";
    }
  }
  if (!id_text.empty()) {
    q.resume = parse_id(id_text);
    if (!q.resume) {
      return id_source + ": \"" + id_text.substr(0, 80) +
             "\" is not an id of this stream (expected <16 hex digits>-<number>, as sent in its "
             "id: lines)";
    }
  }
  return q;
}

// ---- StreamSession ---------------------------------------------------------------------------

Result<StreamSession, std::string> StreamSession::open(const StreamHub& hub, StreamQuery query) {
  StreamSession s(hub, std::move(query));
  const StreamHub::Span span = hub.span();
  if (s.query_.resume && s.query_.resume->epoch != hub.epoch()) {
    s.append_reset(s.opening_, "restarted", 0);
    s.position_ = span.oldest - 1;
  } else if (s.query_.resume) {
    const std::uint64_t id = s.query_.resume->id;
    if (id > span.last) {
      return "Last-Event-ID: " + s.id_text(id) + " is past this stream's latest id, " +
             s.id_text(span.last);
    }
    s.position_ = std::max(id, span.oldest - 1);
    if (id < s.position_) s.append_reset(s.opening_, "behind", s.position_ - id);
  } else {
    s.position_ = s.query_.from_oldest ? span.oldest - 1 : span.last;
  }
  s.opening_ += "id: " + s.id_text(s.position_) + "\nevent: hello\ndata: {\"epoch\":\"" +
                hub.epoch() + "\",\"id\":\"" + s.id_text(s.position_) + "\"}\n\n";
  return s;
}

std::string StreamSession::id_text(std::uint64_t n) const {
  return hub_->epoch() + "-" + std::to_string(n);
}

void StreamSession::append_reset(std::string& out, std::string_view reason,
                                 std::uint64_t missed) const {
  out += "event: reset\ndata: {\"reason\":\"";
  out += reason;
  out += "\",\"missed\":";
  if (reason == "restarted") {
    out +=
        "null,\"message\":\"the server restarted since the last id: what it streamed before is "
        "gone\"}\n\n";
  } else {
    out += std::to_string(missed) + ",\"message\":\"" + std::to_string(missed) +
           " entries were dropped before this stream read them\"}\n\n";
  }
}

bool StreamSession::collect(std::string& out, std::chrono::steady_clock::time_point until) {
  StreamHub::Read r = hub_->read(position_, kBatch, until);
  if (r.closed) {
    ended_ = true;
    return false;
  }
  if (r.missed > 0) {
    append_reset(out, "behind", r.missed);
    position_ += r.missed;
  }
  for (const auto& e : r.entries) {
    if (out.size() >= kMaxPiece) break;
    position_ = e->id;
    if (!query_.matches(*e)) continue;
    out += "id: " + id_text(e->id) + "\nevent: ";
    out += stream_type_name(e->type);
    out += "\ndata: ";
    e->append_data(out);
    out += "\n\n";
  }
  return true;
}

std::string StreamSession::keep_alive_text() const {
  return ": keep-alive\nid: " + id_text(position_) + "\n\n";
}

std::string StreamSession::next(std::chrono::milliseconds keep_alive) {
  if (ended_) return {};
  if (!opening_.empty()) return std::exchange(opening_, {});
  const auto until = std::chrono::steady_clock::now() + keep_alive;
  std::string out;
  while (collect(out, until)) {
    if (!out.empty()) return out;
    if (std::chrono::steady_clock::now() >= until) return keep_alive_text();
  }
  return out;
}

std::string StreamSession::poll(std::chrono::milliseconds keep_alive) {
  if (ended_) return {};
  const auto now = std::chrono::steady_clock::now();
  std::string out = std::exchange(opening_, {});
  // Entries the filter skips move the position without text: read on until something is
  // to be sent or nothing is left.
  for (;;) {
    const std::uint64_t before = position_;
    if (!collect(out, now)) break;
    if (!out.empty() || position_ == before) break;
  }
  if (out.empty() && !ended_ && now - last_sent_ >= keep_alive) out = keep_alive_text();
  if (!out.empty()) last_sent_ = now;
  return out;
}

}  // namespace stagelog::detail
