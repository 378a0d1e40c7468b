#pragma once

// A request and its response as the routes see them, whatever transport carried them: the
// transport reads the request (the body too, decompressed and within the limits) into an
// ApiRequest, and writes the ApiResponse a route returns.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/http_errors.hpp"

namespace stagelog::detail {

// The query's parameters, percent-decoded, in name order (a name may repeat).
using Params = std::multimap<std::string, std::string>;

// Percent-decoded text; nullopt for a '%' not followed by two hex digits. With `plus_space`
// (query strings) a '+' is a space; in a path segment it stays '+'.
std::optional<std::string> percent_decode(std::string_view text, bool plus_space = false);
// The parameters of a target's query ("/a?x=1&y=%20&z" gives x "1", y " ", z ""). A name or
// value that does not decode is kept as sent.
Params parse_query(std::string_view target);

struct ApiRequest {
  std::string method;  // "GET", "HEAD", "POST", "PUT" ...
  std::string target;  // As sent: "/api/v1/executions/a%2Fb?attempt=2".
  Params params;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // Read only for the routes that take one.

  // The first value of a parameter, or nullptr.
  const std::string* param(std::string_view name) const;
  bool has_param(std::string_view name) const { return param(name) != nullptr; }
  // The first value of a header, any case of its name; "" when absent.
  std::string_view header(std::string_view name) const;
  bool has_header(std::string_view name) const;
};

// What a streamed body's producer says after appending to `piece`, which the transport sends
// in each case: then it calls again (More), ends the body (Done), or drops the connection
// without ending the body, which cannot be finished (Abort). Idle: nothing to send now; the
// transport calls again when the response's `subscribe` wakes it or after its `idle_wait`,
// holding no thread meanwhile (an open event stream).
enum class StreamStep { More, Done, Abort, Idle };
using BodyProducer = std::function<StreamStep(std::string& piece)>;

struct ApiResponse {
  int status = 200;
  std::string content_type;  // Empty: no body (304).
  std::string body;
  // Besides Content-Type and Content-Length, which the transport writes.
  std::vector<std::pair<std::string, std::string>> headers;
  // Set: the body is made as it is sent, with chunked encoding, and `body` is ignored. The
  // transport calls it from one thread at a time until it says Done or Abort.
  BodyProducer producer;
  // For a producer that says Idle: registers `wake` (callable from any thread, never blocks)
  // for as long as the returned handle lives; and the longest wait before it is called anyway.
  std::function<std::shared_ptr<void>(std::function<void()> wake)> subscribe;
  std::chrono::milliseconds idle_wait{1000};
  // Close the connection after this answer: the request's body was not read.
  bool close = false;

  void set_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
};

// Whether the request came with a body (Transfer-Encoding, or a Content-Length above 0).
bool has_body(const ApiRequest& request);

// 200 (or `status`) with a JSON body.
ApiResponse json_response(std::string body, int status = 200);
// The error as its status and JSON body (to_http), with WWW-Authenticate on a 401.
ApiResponse error_response(const ApiError& error);

}  // namespace stagelog::detail
