#include "server/http.hpp"

#include "base/ascii.hpp"
#include "base/hex.hpp"

namespace stagelog::detail {

std::optional<std::string> percent_decode(std::string_view text, bool plus_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+' && plus_space) {
      out += ' ';
      continue;
    }
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    int hi = hex_value(text[i + 1]);
    int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Params parse_query(std::string_view target) {
  Params params;
  std::size_t question = target.find('?');
  if (question == std::string_view::npos) return params;
  std::string_view query = target.substr(question + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    auto decoded_name = percent_decode(name, true);
    auto decoded_value = percent_decode(value, true);
    params.emplace(decoded_name ? std::move(*decoded_name) : std::string(name),
                   decoded_value ? std::move(*decoded_value) : std::string(value));
  }
  return params;
}

const std::string* ApiRequest::param(std::string_view name) const {
  auto it = params.find(std::string(name));
  return it == params.end() ? nullptr : &it->second;
}

std::string_view ApiRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals_ascii(key, name)) return value;
  }
  return {};
}

bool ApiRequest::has_header(std::string_view name) const {
  for (const auto& header : headers) {
    if (iequals_ascii(header.first, name)) return true;
  }
  return false;
}

bool has_body(const ApiRequest& request) {
  if (request.has_header("Transfer-Encoding")) return true;
  std::string_view length = request.header("Content-Length");
  return !length.empty() && length != "0";
}

ApiResponse json_response(std::string body, int status) {
  ApiResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = std::move(body);
  return response;
}

ApiResponse error_response(const ApiError& error) {
  HttpAnswer answer = to_http(error);
  ApiResponse response = json_response(std::move(answer.body), answer.status);
  if (answer.status == 401) response.set_header("WWW-Authenticate", "Bearer");
  return response;
}

}  // namespace stagelog::detail
