#pragma once

// The HTTP edge's one translation of errors into a status and a JSON body (STYLE.md: "edges
// translate"). Handlers describe what went wrong as an ApiError; to_http() alone decides how
// that looks on the wire.

#include <nlohmann/json.hpp>
#include <string>

namespace stagelog::detail {

enum class ApiErrorKind {
  BadRequest,            // 400: a body, a line, a parameter or a path that does not parse.
  Unauthorized,          // 401: no token, or one the tokens file does not hold.
  Forbidden,             // 403: a token without the scope the route needs.
  NotFound,              // 404: no such route, or nothing stored under that id.
  MethodNotAllowed,      // 405: the route exists, not with this method.
  PayloadTooLarge,       // 413: a body over ServerOptions::max_body_bytes (decompressed).
  UnsupportedMediaType,  // 415: a Content-Encoding or Content-Type we do not read.
  HeaderTooLarge,        // 431: headers over ServerOptions::max_header_bytes or _fields.
  StoreFailure,          // 500: the store failed, not for its health (ErrorKind::Other).
  InsufficientStorage,   // 507: a write the store refused for a full disk; try again later.
  Internal,              // 500: anything else (a bug, out of memory).
  Unavailable,           // 503: busy (every stream slot, or the store), the store failing or
                         // not reached, or stopping; try later.
};

struct ApiError {
  ApiErrorKind kind = ApiErrorKind::Internal;
  std::string message;  // The body's "error".
  // More keys for the body, after "success" and "error" (seed 004's "tracking_id" and
  // "details", ingest's "accepted" and "rejected"). An object, or null for none.
  nlohmann::ordered_json extra = nullptr;
};

struct HttpAnswer {
  int status = 500;
  std::string body;  // JSON: {"success": false, "error": message, <extra>}.
};

HttpAnswer to_http(const ApiError& error);

// JSON text for responses: compact, invalid UTF-8 (from a percent-decoded id) replaced.
std::string dump_json(const nlohmann::ordered_json& json);

}  // namespace stagelog::detail
