#pragma once

// The HTTP API's routes as data: each row a path pattern, the methods it answers, who may call
// it and the function that answers. api.cpp holds the table; route() finds a request's row.

#include <span>
#include <string>
#include <string_view>

#include "server/http.hpp"
#include "stagelog/result.hpp"

namespace stagelog::detail {

class Api;

// Methods as bits, so that a row can answer several. HEAD is answered wherever GET is.
enum Method : unsigned { kGet = 1, kHead = 2, kPost = 4, kPut = 8 };
inline constexpr unsigned kGetHead = kGet | kHead;

// Who may call a route: anyone, or a token with that scope (an admin token may call all).
enum class Access { Public, Read, Ingest };

// What a request's path gave the route: the {id} segment, percent-decoded (any bytes: ids are
// keys in the store, never paths), or the {*rest} segments joined by '/'.
struct RouteMatch {
  std::string id;
};

// A handler may take the request's body (a write frees it before it waits for the store).
using Handler = ApiResponse (Api::*)(ApiRequest&, const RouteMatch&);

// A pattern's segments are literal, "{id}" (one segment, not empty) or, last, "{*rest}" (what
// is left, maybe nothing). Rows are tried in order: the first pattern that matches decides,
// and every row with that same pattern offers its methods. A row without a handler ends the
// search: its paths are not found.
struct Route {
  std::string_view pattern;
  unsigned methods;
  Access access;
  Handler handler;
};

struct Routed {
  const Route* route;
  RouteMatch match;
};

// A request no route answers: 400 (bad percent-encoding), 404, or 405 with the methods the
// path allows ("GET, HEAD") for the Allow header.
struct RouteError {
  ApiError error;
  std::string allow;
};

// The row for a method and target ("/api/v1/executions/a%2Fb?attempt=2"). The path is split
// at '/' before each segment is decoded, so an encoded '/' (or "..") is part of a segment.
Result<Routed, RouteError> route(std::span<const Route> table, std::string_view method,
                                 std::string_view target);

// "GET" -> kGet ...; 0 for a method no route answers.
unsigned method_bit(std::string_view method);

}  // namespace stagelog::detail
