#include "store/postgres_facts.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <set>

#include "format/format.hpp"
#include "format/json_reader.hpp"
#include "stagelog/store/store.hpp"
#include "store/step_index.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kMaxWord = 255;
// A tsvector holds at most 1 MB: the words of a step past 256 KiB are not indexed.
constexpr std::size_t kMaxWordList = 256 * 1024;

// The next code point of a UTF-8 text at `i`, and its length; 0 length for a byte that does
// not start a valid sequence.
char32_t decode(std::string_view s, std::size_t i, std::size_t& length) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  length = 0;
  int n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + static_cast<std::size_t>(n) > s.size()) return 0;
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; ++k) {
    unsigned char cc = b(i + static_cast<std::size_t>(k));
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  length = static_cast<std::size_t>(n);
  return cp;
}

// Separators beyond ASCII: Latin-1 punctuation and symbols, general punctuation, arrows, math,
// technical symbols, box drawing, dingbats, CJK punctuation, emoji. Letters and digits of
// every script are word characters.
bool is_separator(char32_t cp) {
  if (cp < 0x80) {
    return !((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'));
  }
  if (cp >= 0x80 && cp <= 0xBF) {
    return !(cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA ||
             (cp >= 0xBC && cp <= 0xBE));
  }
  return cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
         (cp >= 0x20A0 && cp <= 0x20CF) || (cp >= 0x2190 && cp <= 0x23FF) ||
         (cp >= 0x2500 && cp <= 0x27BF) || (cp >= 0x2900 && cp <= 0x2BFF) ||
         (cp >= 0x2E00 && cp <= 0x2E7F) || (cp >= 0x3000 && cp <= 0x3004) ||
         (cp >= 0x3008 && cp <= 0x303F) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
         (cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0x1F000 && cp <= 0x1FAFF);
}

// Combining diacritical marks: dropped from words (remove_diacritics).
bool is_diacritic(char32_t cp) { return cp >= 0x300 && cp <= 0x36F; }

// Latin-1 letters without their diacritics, lower case (0 where the letter has none).
constexpr char kLatin1[64 + 1] =
    "aaaaaa\0ceeeeiiii\0nooooo\0\0uuuuy\0\0aaaaaa\0ceeeeiiii\0nooooo\0\0uuuuy\0y";

// Latin Extended-A (U+0100 to U+017F) without diacritics, lower case ('\0': kept as it is).
constexpr char kLatinA[128 + 1] =
    "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii\0\0jjkk\0llllllllll"
    "nnnnnn\0\0\0oooooo\0\0rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzz\0";

char32_t fold(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  if (cp >= 0xC0 && cp <= 0xFF) {
    char base = kLatin1[cp - 0xC0];
    if (base != '\0') return static_cast<char32_t>(base);
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 0x20;  // Æ Ð Ø Þ
    return cp;
  }
  if (cp >= 0x100 && cp <= 0x17F) {
    char base = kLatinA[cp - 0x100];
    if (base != '\0') return static_cast<char32_t>(base);
    if (cp == 0x132 || cp == 0x14A || cp == 0x152) return cp + 1;  // Ĳ Ŋ Œ
    return cp;
  }
  if ((cp >= 0x391 && cp <= 0x3A9) || (cp >= 0x410 && cp <= 0x42F)) return cp + 0x20;
  if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
  return cp;
}

// Calls word(begin, end, folded) for each word of the text.
template <typename F>
void each_word(std::string_view text, F&& word) {
  std::string current;
  std::size_t begin = 0;
  auto flush = [&](std::size_t end) {
    if (!current.empty()) word(begin, end, current);
    current.clear();
  };
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t length = 0;
    char32_t cp = decode(text, i, length);
    if (length == 0 || is_separator(cp)) {
      flush(i);
      i += length == 0 ? 1 : length;
      continue;
    }
    if (current.empty()) begin = i;
    if (!is_diacritic(cp)) {
      std::string folded;
      append_utf8(folded, fold(cp));
      if (current.size() + folded.size() <= kMaxWord) current += folded;
    }
    i += length;
  }
  flush(i);
}

// Metadata members as search pairs: the top level of one object, the first of each key.
class MetadataReader {
 public:
  explicit MetadataReader(std::vector<std::string>& out) : out_(out) {}

  bool null() { return value("null"); }
  bool boolean(bool b) { return value(b ? "true" : "false"); }
  bool number_integer(std::int64_t v) { return value(std::to_string(v)); }
  bool number_unsigned(std::uint64_t v) {
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return real(static_cast<double>(v));
    return value(std::to_string(v));
  }
  bool number_float(double v, std::string_view raw) {
    // SQLite reads an integer literal that fits in 64 bits as an integer.
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), n);
    if (ec == std::errc() && end == raw.data() + raw.size()) return value(std::to_string(n));
    return real(v);
  }
  bool string(std::string_view s) { return value(std::string(s)); }
  bool key(std::string_view k) {
    key_ = std::string(k);
    return true;
  }
  bool start_object() {
    ++depth_;
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array() {
    ++depth_;
    return depth_ > 1;
  }
  bool end_array() {
    --depth_;
    return true;
  }

 private:
  // SQLite's "%!.15g": 15 significant digits, always with a decimal point.
  bool real(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.15g", v);
    std::string s = buf;
    if (s.find_first_of(".ein") == std::string::npos) {
      s += ".0";
    } else if (s.find('.') == std::string::npos && s.find('e') != std::string::npos) {
      s.insert(s.find('e'), ".0");
    }
    return value(s);
  }
  bool value(std::string v) {
    if (depth_ != 1 || !store::is_filterable_metadata_key(key_)) return true;
    std::string pair = key_ + '\0';
    for (const std::string& p : out_) {
      if (p.compare(0, pair.size(), pair) == 0) return true;  // The first one counts.
    }
    out_.push_back(pair + v);
    return true;
  }

  std::vector<std::string>& out_;
  std::string key_;
  int depth_ = 0;
};

}  // namespace

std::vector<std::string> search_words(std::string_view text) {
  std::vector<std::string> out;
  each_word(text, [&](std::size_t, std::size_t, const std::string& w) { out.push_back(w); });
  return out;
}

std::string search_word_list(std::string_view text) {
  std::set<std::string> seen;
  std::string out;
  each_word(text, [&](std::size_t, std::size_t, const std::string& w) {
    if (out.size() >= kMaxWordList || !seen.insert(w).second) return;
    if (!out.empty()) out += ' ';
    out += w;
  });
  return out;
}

std::string search_tsquery(std::string_view text) {
  std::string out;
  each_word(text, [&](std::size_t, std::size_t end, const std::string& w) {
    if (!out.empty()) out += " & ";
    out += '\'';
    out += w;  // Letters and digits only: nothing to escape.
    out += '\'';
    if (end < text.size() && text[end] == '*') out += ":*";
  });
  return out;
}

void StepFact::with_previous(std::int64_t previous_ts_ns) {
  if (duration_from_previous) {
    duration_ms = std::max<std::int64_t>(0, (ts_ns - previous_ts_ns) / 1'000'000);
  }
}

std::vector<StepFact> step_facts(const Execution& execution) {
  std::vector<StepFact> out;
  out.reserve(execution.steps.size());
  const std::optional<std::string> attempt_worker = read_step_keys(execution.metadata_json).worker;
  std::int64_t previous_ts = execution.started_at_ns;
  for (const Step& step : execution.steps) {
    StepFact& f = out.emplace_back();
    StepKeys keys = read_step_keys(step.custom_json);
    f.ts_ns = step.timestamp_ns;
    if (has_duration(step.status)) {
      f.duration_from_previous = !keys.duration_ms.has_value();
      f.duration_ms = keys.duration_ms.value_or(
          std::max<std::int64_t>(0, (step.timestamp_ns - previous_ts) / 1'000'000));
    }
    previous_ts = step.timestamp_ns;
    // A step named like its tracking id stands for the whole job (a workflow node or a
    // nested run of that name), not a stage: searchable, but no stage statistics and no
    // failure pattern (its failure repeats the stage's that caused it).
    f.whole_job = step.step == execution.tracking_id;
    const bool failed = step.status == "failed";
    if (failed && !f.whole_job) {
      f.pattern = error_pattern(step.error_details.value_or(step.message));
    }
    if (failed) {
      f.message = step.message;
      f.error_details = step.error_details;
    }
    f.stage = step.step;
    f.worker = keys.worker ? *keys.worker : attempt_worker.value_or("");
    f.status = step.status;
    f.words = search_word_list(step.message + ' ' + step.error_details.value_or(""));
  }
  return out;
}

std::vector<std::string> metadata_pairs(std::string_view metadata_json) {
  std::vector<std::string> out;
  if (metadata_json.size() <= 2) return out;
  MetadataReader reader(out);
  read_json(metadata_json, reader, nullptr);  // A member read before an error stays.
  return out;
}

}  // namespace stagelog::detail
