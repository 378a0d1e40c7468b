#include "format/sse.hpp"

#include "stagelog/error.hpp"

namespace stagelog::detail {

void SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      line(line_, out);
      line_.clear();
      continue;
    }
    // The rest of the line, up to its end, at once.
    std::size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) end = bytes.size();
    if (line_.size() + (end - i) > kMaxLine) {
      throw Error("event stream: a line longer than " + std::to_string(kMaxLine) + " bytes");
    }
    line_.append(bytes.substr(i, end - i));
    i = end - 1;
  }
}

void SseParser::line(std::string_view text, std::vector<SseEvent>& out) {
  if (text.empty()) {  // Dispatch.
    last_id_ = id_buffer_;
    if (has_data_) {
      out.push_back(SseEvent{type_.empty() ? "message" : type_, std::move(data_), last_id_});
    }
    type_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (text.front() == ':') return;  // A comment.
  std::size_t colon = text.find(':');
  std::string_view field = text.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = text.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "event") {
    type_ = std::string(value);
  } else if (field == "data") {
    if (has_data_) data_ += '\n';
    data_ += value;
    has_data_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) id_buffer_ = std::string(value);
  }
  // "retry" and anything else: nothing a reader here needs.
}

}  // namespace stagelog::detail
