#include "store/step_chunk.hpp"

#include <cstdint>
#include <utility>

#include "format/format.hpp"
#include "format/json_reader.hpp"

namespace stagelog::detail {

void encode_steps(std::span<const Step> steps, std::string& out) {
  out += '[';
  for (const Step& s : steps) {
    if (out.size() > 1) out += ',';
    out += R"({"step":)";
    append_json_string(out, s.step);
    out += R"(,"ts":)";
    out += std::to_string(s.timestamp_ns);
    out += R"(,"status":)";
    append_json_string(out, s.status);
    out += R"(,"message":)";
    append_json_string(out, s.message);
    if (s.error_details) {
      out += R"(,"error":)";
      append_json_string(out, *s.error_details);
    }
    if (s.custom_json != "{}") {
      out += R"(,"custom":)";
      append_json_string(out, s.custom_json);
    }
    out += '}';
  }
  out += ']';
}

namespace {

// Reads what encode_steps writes: an array of flat objects. Anything else stops the read.
class ChunkReader {
 public:
  explicit ChunkReader(std::vector<Step>& out) : out_(out) {}

  bool start_array() { return depth_++ == 0; }
  bool end_array() { return --depth_ == 0; }
  bool start_object() {
    if (depth_ != 1) return false;
    ++depth_;
    out_.emplace_back();
    seen_ = 0;
    return true;
  }
  bool end_object() {
    --depth_;
    return (seen_ & kRequired) == kRequired;
  }
  bool key(std::string_view k) {
    if (k == "step") {
      key_ = kStep;
    } else if (k == "ts") {
      key_ = kTs;
    } else if (k == "status") {
      key_ = kStatus;
    } else if (k == "message") {
      key_ = kMessage;
    } else if (k == "error") {
      key_ = kError;
    } else if (k == "custom") {
      key_ = kCustom;
    } else {
      return false;
    }
    seen_ |= key_;
    return true;
  }
  bool string(std::string_view v) {
    Step& s = out_.back();
    switch (key_) {
      case kStep:
        s.step = v;
        return true;
      case kStatus:
        s.status = v;
        return true;
      case kMessage:
        s.message = v;
        return true;
      case kError:
        s.error_details = std::string(v);
        return true;
      case kCustom:
        s.custom_json = v;
        return true;
      default:
        return false;
    }
  }
  bool number_unsigned(std::uint64_t v) {
    if (key_ != kTs || v > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out_.back().timestamp_ns = static_cast<std::int64_t>(v);
    return true;
  }
  bool number_integer(std::int64_t v) {
    if (key_ != kTs) return false;
    out_.back().timestamp_ns = v;
    return true;
  }
  bool number_float(double, std::string_view) { return false; }
  bool null() { return false; }
  bool boolean(bool) { return false; }

 private:
  enum Key : unsigned { kStep = 1, kTs = 2, kStatus = 4, kMessage = 8, kError = 16, kCustom = 32 };
  static constexpr unsigned kRequired = kStep | kTs | kStatus | kMessage;

  std::vector<Step>& out_;
  int depth_ = 0;
  unsigned key_ = 0;
  unsigned seen_ = 0;
};

}  // namespace

bool decode_steps(std::string_view chunk, std::vector<Step>& out) {
  std::size_t before = out.size();
  ChunkReader reader(out);
  if (read_json(chunk, reader, nullptr)) return true;
  out.resize(before);
  return false;
}

}  // namespace stagelog::detail
