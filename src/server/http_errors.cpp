#include "server/http_errors.hpp"

namespace stagelog::detail {

namespace {

int status_of(ApiErrorKind kind) {
  switch (kind) {
    case ApiErrorKind::BadRequest:
      return 400;
    case ApiErrorKind::Unauthorized:
      return 401;
    case ApiErrorKind::Forbidden:
      return 403;
    case ApiErrorKind::NotFound:
      return 404;
    case ApiErrorKind::MethodNotAllowed:
      return 405;
    case ApiErrorKind::PayloadTooLarge:
      return 413;
    case ApiErrorKind::UnsupportedMediaType:
      return 415;
    case ApiErrorKind::HeaderTooLarge:
      return 431;
    case ApiErrorKind::Unavailable:
      return 503;
    case ApiErrorKind::InsufficientStorage:
      return 507;
    case ApiErrorKind::StoreFailure:
    case ApiErrorKind::Internal:
      break;
  }
  return 500;
}

}  // namespace

std::string dump_json(const nlohmann::ordered_json& json) {
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

HttpAnswer to_http(const ApiError& error) {
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  body["success"] = false;
  body["error"] = error.message;
  if (error.extra.is_object()) {
    for (const auto& [key, value] : error.extra.items()) body[key] = value;
  }
  return HttpAnswer{status_of(error.kind), dump_json(body)};
}

}  // namespace stagelog::detail
