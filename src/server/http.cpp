#include "server/http.hpp"

#include "base/ascii.hpp"

namespace stagelog::detail {

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
