// Events out of logs that already exist: stage lines found anywhere in a line, the prefixes
// loggers and container runtimes put before them, seed 002's trace JSONL, user regexes.

#include "format/line_reader.hpp"

#include <array>
#include <boost/regex.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/time_text.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::detail {

namespace {

enum class Family { Auto, Text, Jsonl, Trace, Regex };

constexpr std::string_view kFormatNames =
    "auto, seed, python, worker, stagelog, docker, kubectl, journald, jsonl, trace, re:REGEX";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::optional<OwnedEvent> fail(std::string* error, std::string_view why) {
  if (error != nullptr) *error = std::string(why);
  return std::nullopt;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_space(std::string_view s) {
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) return true;
  }
  return false;
}

// What stood before a stage line (or a log line's body): the layers a logger or a container
// runtime put there.
struct Prefix {
  std::optional<std::int64_t> ts_ns;  // The innermost time found (the logger's, if any).
  std::string ts_text;
  std::string logger;
  std::optional<Level> level;
  std::string level_text;
  std::string host;
  std::string ident;
  std::int64_t pid = 0;
  std::string worker;  // Seed 003's "Worker 3".
  std::string rest;    // Anything not understood.
};

// "Jan 04 19:30:15 " (syslog's time, no year) at the front: its length, or 0.
std::size_t syslog_time(std::string_view s) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (s.size() < 16) return 0;
  bool month = false;
  for (auto m : kMonths) month = month || s.substr(0, 3) == m;
  int v = 0;
  if (!month || s[3] != ' ' || !(is_digit(s[4]) || s[4] == ' ') || !is_digit(s[5]) || s[6] != ' ' ||
      !read_digits(s, 7, 2, v) || s[9] != ':' || !read_digits(s, 10, 2, v) || s[12] != ':' ||
      !read_digits(s, 13, 2, v) || s[15] != ' ') {
    return 0;
  }
  return 16;
}

// "host ident[pid]: " or "host ident: " at the front (journald's short formats): its length,
// or 0.
std::size_t journald_source(std::string_view s, Prefix& out) {
  auto space = s.find(' ');
  if (space == 0 || space == std::string_view::npos) return 0;
  std::string_view host = s.substr(0, space);
  std::string_view rest = s.substr(space + 1);
  auto colon = rest.find(": ");
  if (colon == 0 || colon == std::string_view::npos) return 0;
  std::string_view ident = rest.substr(0, colon);
  if (has_space(ident)) return 0;
  std::int64_t pid = 0;
  if (ident.back() == ']') {
    auto open = ident.find('[');
    if (open == 0 || open == std::string_view::npos) return 0;
    std::string_view number = ident.substr(open + 1, ident.size() - open - 2);
    auto r = std::from_chars(number.data(), number.data() + number.size(), pid);
    if (r.ec != std::errc() || r.ptr != number.data() + number.size()) return 0;
    ident = ident.substr(0, open);
  }
  out.host = std::string(host);
  out.ident = std::string(ident);
  out.pid = pid;
  return space + 1 + colon + 2;
}

// Peels the outer layers at the front of s: a `docker logs -t` / `kubectl logs --timestamps`
// time, journald's "Jan 04 19:30:15 host ident[pid]: " (or short-iso's). Leaves s after them.
void peel_outer(std::string_view& s, Prefix& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  std::size_t used = 0;
  if (auto ts = read_iso_time(s, &used); ts && used < s.size() && s[used] == ' ' &&
                                         s.substr(used, 3) != " - " && s.substr(used, 2) != " [") {
    out.ts_ns = ts;
    out.ts_text = std::string(s.substr(0, used));
    s.remove_prefix(used + 1);
    if (auto n = journald_source(s, out)) s.remove_prefix(n);
    return;
  }
  if (auto n = syslog_time(s)) {
    std::string_view after = s.substr(n);
    Prefix probe;
    if (auto m = journald_source(after, probe)) {
      probe.ts_text = std::string(trim(s.substr(0, n)));
      probe.ts_ns = out.ts_ns;  // No year: not a time we can place.
      out = std::move(probe);
      s.remove_prefix(n + m);
    }
  }
}

// Python logging's "%(asctime)s - %(name)s - %(levelname)s - " at the front of s, or seed
// 003's "%(asctime)s - Worker N - %(name)s - %(levelname)s - ". Leaves s after it.
bool peel_asctime(std::string_view& s, Prefix& out) {
  std::size_t used = 0;
  auto ts = read_iso_time(s, &used);
  if (!ts || s.substr(used, 3) != " - ") return false;
  std::string_view rest = s.substr(used + 3);
  std::vector<std::string_view> parts;
  for (int i = 0; i < 3; ++i) {
    auto dash = rest.find(" - ");
    if (dash == std::string_view::npos) break;
    parts.push_back(rest.substr(0, dash));
    rest.remove_prefix(dash + 3);
    if (parse_level(parts.back()) && parts.back() == trim(parts.back())) break;
  }
  if (parts.size() < 2 || !parse_level(parts.back())) return false;
  if (parts.size() == 3) {
    if (!parts[0].starts_with("Worker ")) return false;
    out.worker = std::string(trim(parts[0].substr(7)));
    if (out.worker.empty() || has_space(out.worker)) return false;
  }
  out.ts_ns = ts;
  out.ts_text = std::string(s.substr(0, used));
  out.logger = std::string(parts[parts.size() - 2]);
  out.level_text = std::string(parts.back());
  out.level = parse_level(parts.back());
  s = rest;
  return true;
}

// Python logging's basicConfig default "%(levelname)s:%(name)s:" as the whole of s.
bool read_basic(std::string_view s, Prefix& out) {
  auto colon = s.find(':');
  if (colon == 0 || colon == std::string_view::npos || s.size() < colon + 3 || s.back() != ':') {
    return false;
  }
  std::string_view level = s.substr(0, colon);
  if (!parse_level(level) || has_space(level)) return false;
  out.level = parse_level(level);
  out.level_text = std::string(level);
  out.logger = std::string(s.substr(colon + 1, s.size() - colon - 2));
  return true;
}

// The whole text before a stage line's own time.
void read_prefix(std::string_view s, Prefix& out) {
  peel_outer(s, out);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  if (!peel_asctime(s, out)) {
    if (read_basic(trim(s), out)) s = {};
  }
  s = trim(s);
  if (!s.empty()) out.rest = std::string(s);
}

// " (13.2s)" at the front of s: the seconds, consumed.
std::optional<double> take_duration(std::string_view& s) {
  if (!s.starts_with(" (")) return std::nullopt;
  auto close = s.find("s)");
  if (close == std::string_view::npos || close > 40) return std::nullopt;
  std::string_view number = s.substr(2, close - 2);
  if (number.empty()) return std::nullopt;
  double value = 0;
  auto r = std::from_chars(number.data(), number.data() + number.size(), value);
  if (r.ec != std::errc() || r.ptr != number.data() + number.size() || !(value >= 0) ||
      value > 9e9) {
    return std::nullopt;
  }
  s.remove_prefix(close + 2);
  return value;
}

bool set_elapsed(OwnedEvent& e, double seconds) {
  if (!(seconds >= 0) || seconds > 9e9) return false;
  e.elapsed_ns = static_cast<std::int64_t>(std::round(seconds * 1e9));
  return true;
}

bool canonical_status_word(std::string_view text) {
  return text == "Starting" || text == "Running" || text == "Complete" || text == "Completed" ||
         text == "Failed" || text == "Skipped" || text == "InProgress";
}

// "AGENT - Complete (13.2s): message", the part after "Stage: ".
bool read_stage_body(std::string_view s, OwnedEvent& e, std::string* error) {
  auto dash = s.find(" - ");
  if (dash == std::string_view::npos || dash == 0) {
    if (error) *error = "expected 'Stage: NAME - status'";
    return false;
  }
  e.stage = std::string(s.substr(0, dash));
  std::string_view rest = s.substr(dash + 3);
  constexpr int kMaxStatusWords = 6;
  std::size_t end = 0;
  std::size_t i = 0;
  for (int words = 0; words < kMaxStatusWords && i < rest.size(); ++words) {
    auto j = rest.find(' ', i);
    if (j == std::string_view::npos) j = rest.size();
    std::string_view word = rest.substr(i, j - i);
    if (word.empty() || word.front() == '(' || word.find('=') != std::string_view::npos) break;
    if (word.back() == ':') {
      end = j - 1;  // "Failed: why".
      break;
    }
    end = j;
    i = j + 1;
  }
  std::string_view status_text = rest.substr(0, end);
  if (status_text.empty()) {
    if (error) *error = "expected a status after 'Stage: " + e.stage + " - '";
    return false;
  }
  rest.remove_prefix(end);
  if (auto seconds = take_duration(rest)) set_elapsed(e, *seconds);
  std::string_view message;
  if (rest.starts_with(": ")) {
    message = rest.substr(2);
  } else if (rest.starts_with(":")) {
    message = rest.substr(1);
  } else {
    message = rest;
  }
  message = trim(message);
  auto status = status_from_text(status_text);
  e.kind = e.stage == "COMPLETE" ? Kind::Run : Kind::Stage;
  e.status = status.value_or(Status::Running);
  if (e.kind == Kind::Run && e.status != Status::Failed) e.status = Status::Completed;
  e.message = std::string(message);
  if (e.kind == Kind::Run && e.message.empty()) {
    e.message = std::string(status_text);
  } else if (!canonical_status_word(status_text)) {
    e.add_field("status_text", status_text);
  }
  if (e.status == Status::Failed && e.level < Level::Error) e.level = Level::Error;
  return true;
}

void apply_prefix(const Prefix& p, OwnedEvent& e) {
  if (p.level) e.level = *p.level;
  if (!p.logger.empty()) e.add_field("logger", p.logger);
  if (!p.level_text.empty()) e.add_field("log_level", p.level_text);
  if (!p.ts_text.empty()) e.add_field("prefix_ts", p.ts_text);
  if (!p.ident.empty()) e.add_field("syslog_identifier", p.ident);
  if (!p.host.empty()) e.host = p.host;
  if (p.pid != 0) e.pid = p.pid;
  if (!p.rest.empty()) e.add_field("prefix", p.rest);
}

// The worker id between '[' and ']': no whitespace, not empty.
bool valid_worker(std::string_view w) { return !w.empty() && !has_space(w); }

// A text line holding "[worker] Stage: " somewhere: nullopt when it holds none.
std::optional<OwnedEvent> read_stage_line(std::string_view line, std::string* error, bool* found) {
  *found = false;
  std::size_t from = 0;
  for (int tries = 0; tries < 4; ++tries) {
    auto marker = line.find("] Stage: ", from);
    if (marker == std::string_view::npos) return std::nullopt;
    from = marker + 1;
    auto open = line.rfind('[', marker);
    if (open == std::string_view::npos || !valid_worker(line.substr(open + 1, marker - open - 1))) {
      continue;
    }
    *found = true;
    OwnedEvent e;
    e.worker = std::string(line.substr(open + 1, marker - open - 1));
    // The time right before " [": the last ISO time in the word before it.
    std::string_view before = line.substr(0, open);
    Prefix prefix;
    std::optional<std::int64_t> ts;
    std::size_t ts_start = open;
    if (before.ends_with(' ')) {
      std::string_view head = before.substr(0, before.size() - 1);
      auto word_start = head.rfind(' ');
      word_start = word_start == std::string_view::npos ? 0 : word_start + 1;
      for (std::size_t p = word_start; p + 19 <= head.size() && !ts; ++p) {
        if (!is_digit(head[p]) || (p > word_start && is_digit(head[p - 1]))) continue;
        std::size_t used = 0;
        auto t = read_iso_time(head.substr(p), &used);
        if (t && p + used == head.size()) {
          ts = t;
          ts_start = p;
        }
      }
    }
    read_prefix(line.substr(0, ts_start), prefix);
    if (!ts) ts = prefix.ts_ns;
    if (!ts)
      return fail(error, "a stage line without a time (expected '<ISO-8601 time> [" + e.worker +
                             "] Stage: ...')");
    e.ts_ns = *ts;
    if (!read_stage_body(line.substr(marker + 9), e, error)) return std::nullopt;
    apply_prefix(prefix, e);
    return e;
  }
  return std::nullopt;
}

// Nesting deeper than this is refused before a DOM is built (its destruction recurses).
constexpr int kMaxJsonDepth = 64;

bool shallow_json(std::string_view s) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

// Seed 002's trace JSONL: {"timestamp", "epoch_seconds", "event_type", "pid", "workflow_id",
// "node_id", "node_index", "message", details...}.
std::optional<OwnedEvent> read_trace(std::string_view line, std::string* error) {
  if (!shallow_json(line)) return fail(error, "JSON nested too deep");
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail(error, "not a JSON object");
  auto type_it = j.find("event_type");
  if (type_it == j.end() || !type_it->is_string()) {
    return fail(error, "not a trace event (no \"event_type\")");
  }
  std::string type = type_it->get<std::string>();
  OwnedEvent e;
  auto epoch = j.find("epoch_seconds");
  auto ts = j.find("timestamp");
  if (epoch != j.end() && epoch->is_number() && std::isfinite(epoch->get<double>()) &&
      std::abs(epoch->get<double>()) < 9e9) {
    // time.time() as a double holds microseconds at best: rounded there, 0.123 stays .123000.
    e.ts_ns = static_cast<std::int64_t>(std::llround(epoch->get<double>() * 1e6)) * 1000;
  } else if (ts != j.end() && ts->is_string()) {
    std::size_t used = 0;
    std::string text = ts->get<std::string>();
    auto ns = read_iso_time(text, &used);
    if (!ns || used != text.size()) return fail(error, "trace \"timestamp\" is not ISO-8601");
    e.ts_ns = *ns;
  } else {
    return fail(error, "trace event without \"epoch_seconds\" or \"timestamp\"");
  }
  auto text = [&](const char* key) -> std::string {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  e.run = text("workflow_id");
  e.message = text("message");
  if (e.message.empty()) e.message = text("error");
  if (auto pid = j.find("pid"); pid != j.end() && pid->is_number_integer()) {
    e.pid = pid->get<std::int64_t>();
  }
  bool node = type.starts_with("node_");
  bool workflow = type.starts_with("workflow_");
  e.kind = node ? Kind::Node : workflow ? Kind::Run : Kind::Log;
  e.stage = node ? text("node_id") : workflow ? e.run : std::string();
  if (type.ends_with("_start")) {
    e.status = Status::Starting;
  } else if (type.ends_with("_success") || type.ends_with("_complete")) {
    e.status = Status::Completed;
  } else if (type.ends_with("_failure") || type.ends_with("_error")) {
    e.status = Status::Failed;
    e.level = Level::Error;
  } else if (e.kind != Kind::Log) {
    e.status = Status::Running;
  }
  if (e.kind == Kind::Log) e.component = type;
  if (auto d = j.find("duration_seconds"); d != j.end() && d->is_number()) {
    set_elapsed(e, d->get<double>());
  }
  e.add_field("event_type", type);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "timestamp" || key == "epoch_seconds" || key == "event_type" || key == "pid" ||
        key == "workflow_id" || key == "message" || key == "duration_seconds") {
      continue;
    }
    const auto& v = it.value();
    if (v.is_boolean()) {
      e.add_field(key, v.get<bool>());
    } else if (v.is_number_unsigned()) {
      e.add_field(key, v.get<std::uint64_t>());
    } else if (v.is_number_integer()) {
      e.add_field(key, v.get<std::int64_t>());
    } else if (v.is_number_float()) {
      e.add_field(key, v.get<double>());
    } else if (v.is_string()) {
      e.add_field(key, std::string_view(v.get_ref<const std::string&>()));
    } else if (!v.is_null()) {
      std::string dumped = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      e.add_field(key, std::string_view(dumped));
    }
  }
  return e;
}

std::optional<OwnedEvent> read_json_line(std::string_view line, Family family, std::string* error) {
  if (family != Family::Trace) {
    std::string jsonl_error;
    if (auto e = parse_json_event(line, &jsonl_error)) return e;
    if (family == Family::Jsonl) return fail(error, jsonl_error);
    std::string trace_error;
    if (auto e = read_trace(line, &trace_error)) return e;
    return fail(error, jsonl_error);
  }
  return read_trace(line, error);
}

// A line that holds no stage line: a stagelog text log line, a Python asctime or seed-003
// worker line (which may carry a stage body without "[worker]"), a JSON event.
std::optional<OwnedEvent> read_other_line(std::string_view line, Family family,
                                          std::string* error) {
  Prefix prefix;
  std::string_view s = line;
  peel_outer(s, prefix);
  std::string_view body = s;
  while (!body.empty() && body.front() == ' ') body.remove_prefix(1);
  if (!body.empty() && body.front() == '{' && family != Family::Text) {
    auto e = read_json_line(body, family, error);
    if (e && prefix.ts_ns && !prefix.ts_text.empty()) e->add_field("prefix_ts", prefix.ts_text);
    return e;
  }
  if (family == Family::Jsonl || family == Family::Trace) {
    return fail(error, "expected a JSON object");
  }
  if (!body.empty() && body.front() == '{') {
    return fail(error, "a JSON line, and the format named reads text (--format jsonl or trace)");
  }
  if (peel_asctime(body, prefix)) {
    OwnedEvent e;
    e.ts_ns = *prefix.ts_ns;
    e.worker = prefix.worker;
    if (body.starts_with("Stage: ")) {
      if (!read_stage_body(body.substr(7), e, error)) return std::nullopt;
    } else {
      e.kind = Kind::Log;
      e.message = std::string(body);
    }
    std::string logger = std::move(prefix.logger);
    prefix.logger.clear();
    prefix.ts_text.clear();  // It is the event's own time.
    apply_prefix(prefix, e);
    if (e.component.empty()) e.component = logger;
    return e;
  }
  std::string strict_error;
  if (auto e = parse_event(body, &strict_error)) {
    if (!prefix.ts_text.empty()) e->add_field("prefix_ts", prefix.ts_text);
    if (!prefix.host.empty()) e->host = prefix.host;
    if (prefix.pid != 0) e->pid = prefix.pid;
    return e;
  }
  return fail(error,
              "neither a stage line ('<time> [worker] Stage: NAME - status') nor a log line: " +
                  strict_error);
}

// Named groups in a regex's text: "(?<name>" and "(?P<name>".
std::vector<std::string> group_names(std::string_view re) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i + 3 < re.size(); ++i) {
    if (re[i] == '\\') {
      ++i;
      continue;
    }
    if (re.substr(i, 3) != "(?<" && re.substr(i, 4) != "(?P<") continue;
    std::size_t start = re[i + 2] == 'P' ? i + 4 : i + 3;
    if (start < re.size() && (re[start] == '=' || re[start] == '!')) continue;  // Lookbehind.
    auto close = re.find('>', start);
    if (close == std::string_view::npos) break;
    names.emplace_back(re.substr(start, close - start));
    i = close;
  }
  return names;
}

}  // namespace

struct LineReader::Impl {
  Family family = Family::Auto;
  std::optional<boost::regex> regex;
  std::vector<std::string> groups;
};

LineReader::LineReader(std::string_view format) : impl_(std::make_unique<Impl>()) {
  if (format.starts_with("re:")) {
    std::string_view text = format.substr(3);
    try {
      impl_->regex.emplace(std::string(text), boost::regex::perl);
    } catch (const std::exception& e) {
      throw Error("--format: the regex does not compile: " + std::string(e.what()));
    }
    impl_->groups = group_names(text);
    bool has_ts = false;
    for (const auto& g : impl_->groups) has_ts = has_ts || g == "ts";
    if (!has_ts) throw Error("--format: the regex needs a named group (?<ts>...) for the time");
    impl_->family = Family::Regex;
    return;
  }
  if (format == "auto") {
    impl_->family = Family::Auto;
  } else if (format == "seed" || format == "python" || format == "worker" || format == "stagelog" ||
             format == "docker" || format == "kubectl" || format == "journald") {
    impl_->family = Family::Text;
  } else if (format == "jsonl") {
    impl_->family = Family::Jsonl;
  } else if (format == "trace") {
    impl_->family = Family::Trace;
  } else {
    throw Error("--format: unknown format '" + std::string(format) + "' (expected one of " +
                std::string(kFormatNames) + ")");
  }
}

LineReader::~LineReader() = default;
LineReader::LineReader(LineReader&&) noexcept = default;
LineReader& LineReader::operator=(LineReader&&) noexcept = default;

std::string_view LineReader::format_names() { return kFormatNames; }

std::optional<OwnedEvent> LineReader::read(std::string_view line, std::string* error) const {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  try {
    if (impl_->family == Family::Regex) {
      boost::match_results<std::string_view::const_iterator> m;
      if (!boost::regex_search(line.begin(), line.end(), m, *impl_->regex)) {
        return fail(error, "the --format regex does not match");
      }
      OwnedEvent e;
      auto group = [&](const std::string& name) -> std::string_view {
        const auto& sub = m[name];
        if (!sub.matched) return {};
        return {&*sub.first, static_cast<std::size_t>(sub.second - sub.first)};
      };
      std::size_t used = 0;
      std::string_view ts = group("ts");
      auto ns = read_iso_time(ts, &used);
      if (!ns || used != ts.size()) return fail(error, "group ts is not an ISO-8601 time");
      e.ts_ns = *ns;
      e.kind = Kind::Log;
      for (const auto& name : impl_->groups) {
        std::string_view v = group(name);
        if (name == "ts") continue;
        if (name == "worker") {
          e.worker = std::string(v);
        } else if (name == "stage") {
          e.stage = std::string(v);
          if (!v.empty()) e.kind = Kind::Stage;
        } else if (name == "status") {
          auto status = status_from_text(v);
          e.status = status.value_or(v.empty() ? Status::None : Status::Running);
          if (!v.empty() && !canonical_status_word(v)) e.add_field("status_text", v);
        } else if (name == "elapsed") {
          double seconds = 0;
          auto r = std::from_chars(v.data(), v.data() + v.size(), seconds);
          if (!v.empty() && (r.ec != std::errc() || !set_elapsed(e, seconds))) {
            return fail(error, "group elapsed is not a number of seconds");
          }
        } else if (name == "message") {
          e.message = std::string(v);
        } else if (name == "level") {
          if (auto level = parse_level(v)) e.level = *level;
        } else if (name == "component") {
          e.component = std::string(v);
        } else if (name == "run") {
          e.run = std::string(v);
        } else if (m[name].matched) {
          e.add_field(name, v);
        }
      }
      if (e.kind == Kind::Stage && e.status == Status::None) e.status = Status::Running;
      return e;
    }
    if (impl_->family != Family::Jsonl && impl_->family != Family::Trace) {
      bool found = false;
      auto e = read_stage_line(line, error, &found);
      if (found) return e;
    }
    return read_other_line(line, impl_->family, error);
  } catch (const std::exception& e) {  // Out of memory, a regex too complex for the line.
    return fail(error, e.what());
  }
}

std::optional<std::int64_t> read_iso_time(std::string_view t, std::size_t* used) noexcept {
  auto civil = read_civil_seconds(t, /*space_too=*/true);
  if (!civil) return std::nullopt;
  std::size_t pos = 19;
  std::int64_t frac_ns = 0;
  if (pos + 1 < t.size() && (t[pos] == '.' || t[pos] == ',') && is_digit(t[pos + 1])) {
    ++pos;
    std::int64_t scale = 100'000'000;
    std::size_t start = pos;
    while (pos < t.size() && is_digit(t[pos])) {
      if (pos - start >= 9) return std::nullopt;
      frac_ns += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
  }
  std::int64_t offset_s = 0;
  if (pos < t.size() && t[pos] == 'Z') {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    int sign = t[pos] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    if (!read_digits(t, pos + 1, 2, oh) || oh > 23) return std::nullopt;
    pos += 3;
    if (pos < t.size() && t[pos] == ':') {
      if (!read_digits(t, pos + 1, 2, om)) return std::nullopt;
      pos += 3;
    } else if (read_digits(t, pos, 2, om)) {
      pos += 2;
    }
    if (om > 59) return std::nullopt;
    offset_s = sign * (oh * 3600 + om * 60);
  }
  std::int64_t seconds = *civil - offset_s;
  std::int64_t ns;
  if (__builtin_mul_overflow(seconds, std::int64_t{1'000'000'000}, &ns) ||
      __builtin_add_overflow(ns, frac_ns, &ns)) {
    return std::nullopt;
  }
  *used = pos;
  return ns;
}

std::optional<Status> status_from_text(std::string_view text) noexcept {
  if (text == "InProgress") return Status::InProgress;  // What format_text writes.
  struct Word {
    std::string_view word;
    Status status;
  };
  static constexpr Word kWords[] = {
      {"starting", Status::Starting},    {"start", Status::Starting},
      {"started", Status::Starting},     {"begin", Status::Starting},
      {"beginning", Status::Starting},   {"launching", Status::Starting},
      {"running", Status::Running},      {"inprogress", Status::Running},
      {"progress", Status::Running},     {"retrying", Status::Running},
      {"retry", Status::Running},        {"resuming", Status::Running},
      {"resumed", Status::Running},      {"waiting", Status::Running},
      {"processing", Status::Running},   {"stillrunning", Status::Running},
      {"complete", Status::Completed},   {"completed", Status::Completed},
      {"done", Status::Completed},       {"finished", Status::Completed},
      {"success", Status::Completed},    {"succeeded", Status::Completed},
      {"successful", Status::Completed}, {"ok", Status::Completed},
      {"passed", Status::Completed},     {"allstagescomplete", Status::Completed},
      {"failed", Status::Failed},        {"fail", Status::Failed},
      {"failure", Status::Failed},       {"error", Status::Failed},
      {"errored", Status::Failed},       {"aborted", Status::Failed},
      {"crashed", Status::Failed},       {"timeout", Status::Failed},
      {"timedout", Status::Failed},      {"cancelled", Status::Failed},
      {"canceled", Status::Failed},      {"killed", Status::Failed},
      {"skipped", Status::Skipped},      {"skip", Status::Skipped},
      {"skipping", Status::Skipped},
  };
  auto lookup = [](std::string_view s) -> std::optional<Status> {
    char buf[32];
    std::size_t n = 0;
    for (char c : s) {
      if (std::isalpha(static_cast<unsigned char>(c)) == 0) continue;
      if (n == sizeof buf) return std::nullopt;
      buf[n++] = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    std::string_view key(buf, n);
    for (const auto& w : kWords) {
      if (w.word == key) return w.status;
    }
    return std::nullopt;
  };
  if (auto s = lookup(text)) return s;
  auto space = text.find(' ');
  if (space != std::string_view::npos) return lookup(text.substr(0, space));
  return std::nullopt;
}

}  // namespace stagelog::detail
