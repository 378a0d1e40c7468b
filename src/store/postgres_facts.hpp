#pragma once

// What the PostgreSQL store derives from what it stores, in C++ so that its answers are the
// SQLite store's: the words full-text search matches (FTS5's unicode61 tokenizer with
// remove_diacritics, as SQLite applies it), and metadata values as ExecutionQuery::metadata
// compares them (SQLite's json_extract and CAST AS TEXT), and the step facts of an attempt.
// Pure functions, no SQL: the store computes them before its write transaction begins.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/execution.hpp"

namespace stagelog::detail {

// The words of a text, in order, folded as unicode61 folds them: ASCII letters and digits,
// and letters of other scripts (UTF-8), lower-cased, Latin letters without their diacritics
// ("Zürich" → "zurich"). Punctuation, symbols and spaces separate words; so do bytes that are
// not UTF-8. Each word at most 255 bytes (cut at a character).
std::vector<std::string> search_words(std::string_view text);

// The words of a text as a space-separated list (each word once, up to 256 KiB of them: a
// tsvector holds 1 MB at most), for array_to_tsvector(string_to_array(..., ' ')).
std::string search_word_list(std::string_view text);

// ExecutionQuery::text as a tsquery that holds only words: 'w1' & 'w2':* ('*' right after a
// word makes it a prefix). "" when the text has no word (then it matches nothing).
std::string search_tsquery(std::string_view text);

// "key\0value" for each member of a metadata JSON object whose key passes
// is_filterable_metadata_key (the first of repeated keys): a string value as it is, true,
// false and null as those words, a number as SQLite's CAST(json_extract(...) AS TEXT) writes
// it (3, 2.5, 100.0, 1.0e+20). Objects and arrays are left out. Empty when the text is not a
// JSON object.
std::vector<std::string> metadata_pairs(std::string_view metadata_json);

// One step's row of step_facts but its attempt's id (PostgresStore writes that).
struct StepFact {
  std::int64_t ts_ns = 0;
  std::string stage;
  std::string worker;
  std::string status;
  std::optional<std::int64_t> duration_ms;
  bool whole_job = false;
  std::optional<std::string> pattern;        // Failed steps but the whole job's.
  std::optional<std::string> message;        // Failed steps.
  std::optional<std::string> error_details;  // Failed steps.
  std::string words;                         // search_word_list of message and error details.
  // The duration is the time since the step before, which was taken to be the attempt's
  // start: with_previous() sets it from the step before's time when that one is stored.
  bool duration_from_previous = false;

  void with_previous(std::int64_t previous_ts_ns);
};

// The facts of the attempt's steps, in order. A step's duration is its "duration_ms" key,
// else the time since the step before (the attempt's start for the first). A step named like
// its tracking id stands for the whole job.
std::vector<StepFact> step_facts(const Execution& execution);

}  // namespace stagelog::detail
