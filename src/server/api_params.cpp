#include "server/api_params.hpp"

#include <algorithm>
#include <charconv>
#include <span>
#include <system_error>
#include <vector>

#include "base/ascii.hpp"
#include "base/duration.hpp"
#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "format/format.hpp"
#include "server/api.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kMaxMetadataFilters = 16;
constexpr std::size_t kMaxFilterText = 1000;  // Bytes of q, worker or stage.

std::string query_hash(std::string_view canonical) {
  auto digest = sha256(canonical);
  return to_hex(std::span<const unsigned char>(digest.data(), 8));
}

// A word of full text: what the store's search matches (ASCII letters and digits, and every
// character beyond ASCII, which the store's tokenizer sorts out).
bool has_word(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u >= 0x80;
  });
}

}  // namespace

Result<std::size_t, ApiError> parse_limit(const ApiRequest& req) {
  if (!req.has_param("limit")) return kDefaultLimit;
  std::string text = *req.param("limit");
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < 1) {
    return bad_request("limit: expected a whole number from 1 to " + std::to_string(kMaxLimit) +
                       ", got \"" + text + "\"");
  }
  if (n > kMaxLimit) {
    return bad_request("limit: " + text + " is over the maximum of " + std::to_string(kMaxLimit));
  }
  return n;
}

Result<std::int64_t, ApiError> parse_time(std::string_view name, const std::string& text,
                                          std::int64_t now_ns) {
  if (auto ns = parse_timestamp(text)) return *ns;
  if (auto ago = parse_duration(text)) return now_ns - ago->count();
  return bad_request(std::string(name) + ": expected a UTC timestamp like " +
                     "2026-01-04T19:30:15.234Z or a duration before now like 7d, got \"" + text +
                     "\"");
}

std::string make_cursor(const store::Position& at, std::string_view canonical) {
  return "v1." + std::to_string(at.ns) + "." + std::to_string(at.seq) + "." + query_hash(canonical);
}

Result<store::Position, ApiError> parse_cursor(const std::string& text,
                                               std::string_view canonical) {
  auto bad = [&] { return bad_request("cursor: \"" + text + "\" is not a cursor of this API"); };
  std::vector<std::string_view> parts;
  std::string_view rest = text;
  for (std::size_t dot; (dot = rest.find('.')) != std::string_view::npos;) {
    parts.push_back(rest.substr(0, dot));
    rest.remove_prefix(dot + 1);
  }
  parts.push_back(rest);
  if (parts.size() != 4 || parts[0] != "v1") return bad();
  store::Position at;
  for (auto [part, out] : {std::pair{parts[1], &at.ns}, std::pair{parts[2], &at.seq}}) {
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), *out);
    if (ec != std::errc() || end != part.data() + part.size() || part.empty()) return bad();
  }
  if (parts[3] != query_hash(canonical)) {
    return bad_request("cursor: it continues another query (its filters differ from these)");
  }
  return at;
}

std::optional<ApiError> check_params(const ApiRequest& req,
                                     std::initializer_list<std::string_view> supported) {
  for (const auto& [name, value] : req.params) {
    if (std::find(supported.begin(), supported.end(), name) == supported.end()) {
      std::string list;
      for (std::string_view s : supported) {
        if (!list.empty()) list += ", ";
        list += s;
      }
      return bad_request("unknown parameter \"" + name + "\" (" +
                         (list.empty() ? "this route takes none" : "supported: " + list) + ")");
    }
    if (req.params.count(name) > 1) return bad_request(name + ": given more than once");
  }
  return std::nullopt;
}

Result<std::pair<std::int64_t, std::int64_t>, ApiError> parse_range(const ApiRequest& req,
                                                                    std::int64_t now_ns) {
  std::pair<std::int64_t, std::int64_t> range{now_ns - 7 * kDayNs, now_ns};
  for (auto [name, out] : {std::pair{"since", &range.first}, std::pair{"until", &range.second}}) {
    if (!req.has_param(name)) continue;
    auto t = parse_time(name, *req.param(name), now_ns);
    if (!t) return t.error();
    *out = *t;
  }
  if (range.first >= range.second) return bad_request("since must be before until");
  return range;
}

Result<Filters, ApiError> parse_filters(const ApiRequest& req, std::int64_t now_ns, bool paging) {
  const std::string supported =
      std::string("status, q, worker, stage, since, until, metadata.<key>") +
      (paging ? ", limit, cursor" : "");
  Filters f;
  std::vector<std::string> canonical;
  for (const auto& [name, value] : req.params) {
    if (req.params.count(name) > 1 && !name.starts_with("metadata.")) {
      return bad_request(name + ": given more than once");
    }
    if (paging && (name == "cursor" || name == "limit")) continue;
    canonical.push_back(name + "=" + value);
    if (name == "status") {
      static const std::vector<std::string_view> kStatuses = {"completed", "failed", "in_progress",
                                                              "skipped", "unknown"};
      if (std::find(kStatuses.begin(), kStatuses.end(), value) == kStatuses.end()) {
        return bad_request(
            "status: expected completed, failed, in_progress, skipped or "
            "unknown, got \"" +
            value + "\"");
      }
      f.query.final_status = value;
    } else if (name == "since" || name == "until") {
      auto t = parse_time(name, value, now_ns);
      if (!t) return t.error();
      (name == "since" ? f.query.since_ns : f.query.until_ns) = *t;
    } else if (name.starts_with("metadata.")) {
      std::string key = name.substr(9);
      if (!store::is_filterable_metadata_key(key)) {
        return bad_request("metadata." + key +
                           ": a metadata key may hold only letters, digits, '_' and '-'");
      }
      if (f.query.metadata.size() == kMaxMetadataFilters) {
        return bad_request("at most " + std::to_string(kMaxMetadataFilters) + " metadata filters");
      }
      f.query.metadata.emplace_back(std::move(key), value);
    } else if (name == "q" || name == "worker" || name == "stage") {
      if (value.empty() || value.size() > kMaxFilterText) {
        return bad_request(name + ": expected 1 to " + std::to_string(kMaxFilterText) +
                           " bytes, got " + std::to_string(value.size()));
      }
      if (invalid_utf8_at(value) != std::string_view::npos) {
        return bad_request(name + ": not valid UTF-8");
      }
      if (name == "q" && !has_word(value)) {
        return bad_request("q: \"" + value + "\" holds no word to search for (letters or digits)");
      }
      (name == "q" ? f.query.text : name == "worker" ? f.query.worker : f.query.stage) = value;
    } else {
      return bad_request("unknown parameter \"" + name + "\" (supported: " + supported + ")");
    }
  }
  if (f.query.since_ns && f.query.until_ns && *f.query.since_ns >= *f.query.until_ns) {
    return bad_request("since must be before until");
  }
  std::sort(canonical.begin(), canonical.end());
  f.canonical = "executions";
  for (const std::string& c : canonical) f.canonical += "&" + c;
  return f;
}

std::optional<BatchKey> parse_batch_key(std::string_view text) {
  if (text.size() < kBatchProducerDigits + 2 || text[kBatchProducerDigits] != '-') {
    return std::nullopt;
  }
  std::string_view producer = text.substr(0, kBatchProducerDigits);
  bool hex = std::all_of(producer.begin(), producer.end(),
                         [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (!hex) return std::nullopt;
  std::string_view seq = text.substr(kBatchProducerDigits + 1);
  if (seq.size() > 1 && seq[0] == '0') return std::nullopt;
  BatchKey key;
  auto [end, ec] = std::from_chars(seq.data(), seq.data() + seq.size(), key.seq);
  if (ec != std::errc() || end != seq.data() + seq.size()) return std::nullopt;
  key.producer = std::string(producer);
  return key;
}

Result<std::optional<BatchKey>, ApiError> batch_key(const ApiRequest& req) {
  constexpr std::string_view kName = "Idempotency-Key";
  const std::string* value = nullptr;
  for (const auto& [name, v] : req.headers) {
    if (!iequals_ascii(name, kName)) continue;
    if (value != nullptr) return bad_request("Idempotency-Key: given twice; a batch has one key");
    value = &v;
  }
  if (value == nullptr) return std::optional<BatchKey>();
  auto key = parse_batch_key(*value);
  if (!key) {
    std::string shown = value->size() > 100 ? value->substr(0, 100) + "..." : *value;
    return bad_request(
        "Idempotency-Key: expected <producer>-<seq>, producer being 32 lowercase hex digits and "
        "seq a decimal number without leading zeros (like "
        "0123456789abcdef0123456789abcdef-42), got \"" +
        shown + "\"");
  }
  return std::optional<BatchKey>(std::move(*key));
}

}  // namespace stagelog::detail
