#include "store/step_index.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "format/json_reader.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kMaxPattern = 512;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
// Characters that end a word besides whitespace: quotes, brackets and list punctuation.
bool is_separator(char c) {
  return std::string_view("\"'`()[]{}<>,;=:").find(c) != std::string_view::npos;
}

bool looks_like_path(std::string_view word) {
  auto slashes = std::count(word.begin(), word.end(), '/');
  return slashes > 0 && (word[0] == '/' || word[0] == '.' || word[0] == '~' || slashes >= 2);
}

// 0x1f, deadbeef01, a UUID, a SHA: hex digits (and '-') only, with a digit and a letter in
// them, 8 characters or more; or anything after "0x".
bool looks_like_hex(std::string_view word) {
  if (word.size() > 2 && word[0] == '0' && (word[1] == 'x' || word[1] == 'X')) {
    return std::all_of(word.begin() + 2, word.end(), is_hex);
  }
  if (word.size() < 8) return false;
  bool digit = false;
  bool letter = false;
  for (char c : word) {
    if (c == '-') continue;
    if (!is_hex(c)) return false;
    (is_digit(c) ? digit : letter) = true;
  }
  return digit && letter;
}

bool looks_like_id(std::string_view word) {
  bool digit = std::any_of(word.begin(), word.end(), is_digit);
  bool letter = std::any_of(word.begin(), word.end(), is_letter);
  bool joined = word.find_first_of("_-") != std::string_view::npos;
  return digit && letter && joined;
}

// The word with each number (digits, with a decimal part) as <n>.
void append_masking_numbers(std::string& out, std::string_view word) {
  for (std::size_t i = 0; i < word.size();) {
    if (!is_digit(word[i])) {
      out += word[i++];
      continue;
    }
    while (i < word.size() && is_digit(word[i])) ++i;
    if (i + 1 < word.size() && word[i] == '.' && is_digit(word[i + 1])) {
      for (++i; i < word.size() && is_digit(word[i]);) ++i;
    }
    out += "<n>";
  }
}

void append_word(std::string& out, std::string_view word) {
  if (looks_like_path(word)) {
    out += "<path>";
  } else if (looks_like_hex(word)) {
    out += "<hex>";
  } else if (looks_like_id(word)) {
    out += "<id>";
  } else {
    append_masking_numbers(out, word);
  }
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

bool get_varint(std::string_view& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// Takes "worker" and "duration_ms" from the top level of an object, skips everything else.
class StepKeysReader {
 public:
  explicit StepKeysReader(StepKeys& out) : out_(out) {}

  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(std::int64_t) { return value(); }
  bool number_unsigned(std::uint64_t v) {
    if (depth_ == 1 && key_ == Key::Duration && v <= kMaxMs) {
      out_.duration_ms = static_cast<std::int64_t>(v);
    }
    return value();
  }
  bool number_float(double v, std::string_view) {
    if (depth_ == 1 && key_ == Key::Duration && v >= 0 && v <= static_cast<double>(kMaxMs)) {
      out_.duration_ms = static_cast<std::int64_t>(std::llround(v));
    }
    return value();
  }
  bool string(std::string_view s) {
    if (depth_ == 1 && key_ == Key::Worker) out_.worker = std::string(s);
    return value();
  }
  bool key(std::string_view k) {
    if (depth_ == 1) {
      key_ = k == "worker" ? Key::Worker : k == "duration_ms" ? Key::Duration : Key::Other;
    }
    return true;
  }
  bool start_object() {
    if (depth_ == 0) object_ = true;
    ++depth_;
    return object_;
  }
  bool end_object() { return end(); }
  bool start_array() {
    ++depth_;
    return depth_ > 1;  // A top-level array is not an object: stop.
  }
  bool end_array() { return end(); }

 private:
  static constexpr std::uint64_t kMaxMs = std::uint64_t{1} << 53;
  enum class Key : std::uint8_t { Other, Worker, Duration };

  bool value() {
    if (depth_ == 1) key_ = Key::Other;
    return depth_ > 0;
  }
  bool end() {
    --depth_;
    if (depth_ == 1) key_ = Key::Other;
    return true;
  }

  StepKeys& out_;
  int depth_ = 0;
  bool object_ = false;
  Key key_ = Key::Other;
};

}  // namespace

StepKeys read_step_keys(std::string_view json_object) {
  StepKeys keys;
  if (json_object.size() <= 2) return keys;  // "{}" and the like.
  StepKeysReader reader(keys);
  if (!read_json(json_object, reader, nullptr)) return StepKeys{};
  return keys;
}

std::string error_pattern(std::string_view message) {
  std::string out;
  std::size_t i = 0;
  bool pending_space = false;
  while (i < message.size() && out.size() < kMaxPattern) {
    char c = message[i];
    if (is_space(c)) {
      pending_space = !out.empty();
      ++i;
      continue;
    }
    if (pending_space) {
      out += ' ';
      pending_space = false;
    }
    if (is_separator(c)) {
      out += c;
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < message.size() && !is_space(message[end]) && !is_separator(message[end])) ++end;
    append_word(out, message.substr(i, end - i));
    i = end;
  }
  if (out.size() > kMaxPattern) {
    std::size_t cut = kMaxPattern;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

int DurationHistogram::bucket_of(std::int64_t duration_ms) noexcept {
  if (duration_ms <= 0) return 0;
  return 1 + static_cast<int>(
                 std::floor(std::log(static_cast<double>(duration_ms)) / std::log(kGrowth)));
}

void DurationHistogram::add(std::int64_t duration_ms, std::int64_t times) {
  int bucket = bucket_of(duration_ms);
  auto it = buckets_.find(bucket);
  std::int64_t had = it == buckets_.end() ? 0 : it->second;
  std::int64_t now = std::max<std::int64_t>(0, had + times);
  count_ += now - had;
  if (now == 0) {
    if (it != buckets_.end()) buckets_.erase(it);
  } else {
    buckets_[bucket] = now;
  }
}

void DurationHistogram::merge(const DurationHistogram& other) {
  for (const auto& [bucket, n] : other.buckets_) buckets_[bucket] += n;
  count_ += other.count_;
}

double DurationHistogram::percentile(double p) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<std::int64_t>(std::ceil(p * static_cast<double>(count_)));
  rank = std::clamp<std::int64_t>(rank, 1, count_);
  std::int64_t seen = 0;
  for (const auto& [bucket, n] : buckets_) {
    seen += n;
    if (seen < rank) continue;
    if (bucket == 0) return 0;
    double lo = std::pow(kGrowth, bucket - 1);
    double hi = std::pow(kGrowth, bucket);
    // A bucket that holds one whole number of milliseconds (all of them up to about 50 ms)
    // holds only that duration: say it exactly.
    double first = std::ceil(lo);
    if (first < hi && first + 1 >= hi) return first;
    return std::sqrt(lo * hi);
  }
  return 0;  // Unreachable: count_ is the sum of the buckets.
}

std::string DurationHistogram::encode() const {
  std::string out;
  int previous = 0;
  for (const auto& [bucket, n] : buckets_) {
    put_varint(out, static_cast<std::uint64_t>(bucket - previous));
    put_varint(out, static_cast<std::uint64_t>(n));
    previous = bucket;
  }
  return out;
}

bool DurationHistogram::decode(std::string_view bytes) {
  buckets_.clear();
  count_ = 0;
  std::uint64_t bucket = 0;
  bool first = true;
  while (!bytes.empty()) {
    std::uint64_t delta = 0;
    std::uint64_t n = 0;
    if (!get_varint(bytes, delta) || !get_varint(bytes, n) || n == 0 || (!first && delta == 0) ||
        delta > 100'000 || bucket + delta > 100'000 ||
        n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() - count_)) {
      buckets_.clear();
      count_ = 0;
      return false;
    }
    bucket += delta;
    first = false;
    buckets_[static_cast<int>(bucket)] = static_cast<std::int64_t>(n);
    count_ += static_cast<std::int64_t>(n);
  }
  return true;
}

std::int64_t floor_to(std::int64_t ns, std::int64_t unit) {
  std::int64_t q = ns / unit;
  if (ns % unit != 0 && ns < 0) --q;
  return q * unit;
}

bool has_duration(std::string_view status) { return status == "completed" || status == "failed"; }

void DurationTally::add(const DurationTally& other) {
  count += other.count;
  failures += other.failures;
  skipped += other.skipped;
  max_ms = std::max(max_ms, other.max_ms);
  histogram.merge(other.histogram);
}

store::DurationStats DurationTally::stats() const {
  store::DurationStats s;
  s.count = count;
  s.failures = failures;
  s.skipped = skipped;
  // A bucket's middle may lie past the exact maximum; no percentile does.
  const auto max = static_cast<double>(max_ms);
  s.p50_ms = std::min(histogram.percentile(0.50), max);
  s.p95_ms = std::min(histogram.percentile(0.95), max);
  s.p99_ms = std::min(histogram.percentile(0.99), max);
  s.max_ms = max_ms;
  return s;
}

void StageStatsSum::add(std::int64_t hour_ns, const std::string& stage, const std::string& worker,
                        const DurationTally& tally) {
  Row& row = rows_[{stage, by_worker_ ? worker : std::string()}];
  row.total.add(tally);
  row.points[daily_ ? floor_to(hour_ns, kDayNs) : hour_ns].add(tally);
}

std::vector<store::StageStats> StageStatsSum::rows() const {
  std::vector<store::StageStats> out;
  out.reserve(rows_.size());
  for (const auto& [key, row] : rows_) {
    store::StageStats& stats = out.emplace_back();
    stats.stage = key.first;
    stats.worker = key.second;
    stats.stats = row.total.stats();
    for (const auto& [start, point] : row.points) {
      stats.series.push_back(store::StageStatsPoint{start, point.stats()});
    }
  }
  return out;
}

}  // namespace stagelog::detail
