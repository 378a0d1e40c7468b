#pragma once

// The query parameters the API's listings and statistics share: limit, since/until, cursors,
// the execution filters, and the check that a route got no parameter it does not know.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "server/http.hpp"
#include "stagelog/result.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

inline constexpr std::size_t kDefaultLimit = 50;
inline constexpr std::size_t kMaxLimit = 1000;
inline constexpr std::int64_t kDayNs = std::int64_t{86'400} * 1'000'000'000;

// limit=N: 1 to kMaxLimit, kDefaultLimit when absent.
Result<std::size_t, ApiError> parse_limit(const ApiRequest& req);

// A point in time: a UTC timestamp (2026-01-04T19:30:15.234Z) or a duration before now (7d).
Result<std::int64_t, ApiError> parse_time(std::string_view name, const std::string& text,
                                          std::int64_t now_ns);

// Cursors: "v1.<ns>.<seq>.<query>", query being the first 16 hex digits of the SHA-256 of
// what the listing was asked (`canonical`), so a cursor cannot continue another query.
std::string make_cursor(const store::Position& at, std::string_view canonical);
Result<store::Position, ApiError> parse_cursor(const std::string& text, std::string_view canonical);

// A 400 for a parameter not in `supported` or given twice.
std::optional<ApiError> check_params(const ApiRequest& req,
                                     std::initializer_list<std::string_view> supported);

// since (default: 7 days before now) and until (default: now), since before until.
Result<std::pair<std::int64_t, std::int64_t>, ApiError> parse_range(const ApiRequest& req,
                                                                    std::int64_t now_ns);

// The filters of a listing (JSON or CSV) and what they were, in one order whatever the order
// of the parameters (the cursor's query hash).
struct Filters {
  store::ExecutionQuery query;
  std::string canonical;
};

// status, q, worker, stage, since, until and metadata.<key>; `paging` also lets limit and
// cursor through (the caller reads them). Anything else is a 400 that says what is supported.
Result<Filters, ApiError> parse_filters(const ApiRequest& req, std::int64_t now_ns, bool paging);

// The Idempotency-Key of an ingest batch: "<producer>-<seq>", producer being 32 lowercase hex
// digits (random, one per sender: a network sink's spool file) and seq a decimal number from 0
// to 2^64-1 without leading zeros. A repeat of a key is a repeat of its batch.
struct BatchKey {
  std::string producer;
  std::uint64_t seq = 0;

  std::string text() const { return producer + "-" + std::to_string(seq); }
};

inline constexpr std::size_t kBatchProducerDigits = 32;

// The key as a sender writes it, or nullopt when `text` is not one.
std::optional<BatchKey> parse_batch_key(std::string_view text);

// The request's Idempotency-Key: nullopt without one, a 400 that says what a key looks like
// for one that does not parse or for two of them.
Result<std::optional<BatchKey>, ApiError> batch_key(const ApiRequest& req);

}  // namespace stagelog::detail
