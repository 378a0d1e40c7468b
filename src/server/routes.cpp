#include "server/routes.hpp"

#include <optional>
#include <utility>
#include <vector>

#include "server/http.hpp"

namespace stagelog::detail {

namespace {

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> parts;
  for (;;) {
    std::size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return parts;
    path.remove_prefix(slash + 1);
  }
}

// Whether the decoded segments match the pattern; the capture goes to `match.id`.
bool matches(std::string_view pattern, const std::vector<std::string>& segments,
             RouteMatch& match) {
  std::vector<std::string_view> want = split(pattern.substr(1));
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].starts_with("{*")) {
      std::string rest;
      for (std::size_t k = i; k < segments.size(); ++k) {
        if (k > i) rest += '/';
        rest += segments[k];
      }
      match.id = std::move(rest);
      return true;
    }
    if (i >= segments.size()) return false;
    if (want[i].starts_with('{')) {
      if (segments[i].empty()) return false;
      match.id = segments[i];
    } else if (want[i] != segments[i]) {
      return false;
    }
  }
  return want.size() == segments.size();
}

std::string method_list(unsigned methods) {
  std::string out;
  for (auto [bit, name] : {std::pair{kGet, "GET"}, std::pair{kHead, "HEAD"},
                           std::pair{kPost, "POST"}, std::pair{kPut, "PUT"}}) {
    if ((methods & bit) == 0) continue;
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

}  // namespace

unsigned method_bit(std::string_view method) {
  if (method == "GET") return kGet;
  if (method == "HEAD") return kHead;
  if (method == "POST") return kPost;
  if (method == "PUT") return kPut;
  return 0;
}

Result<Routed, RouteError> route(std::span<const Route> table, std::string_view method,
                                 std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  auto not_found = [&] {
    return RouteError{
        ApiError{ApiErrorKind::NotFound, "no such route: " + std::string(path), nullptr}, {}};
  };
  if (!path.starts_with('/')) return not_found();
  std::vector<std::string> segments;
  for (std::string_view part : split(path.substr(1))) {
    auto decoded = percent_decode(part);
    if (!decoded) {
      return RouteError{ApiError{ApiErrorKind::BadRequest,
                                 "bad percent-encoding in the path (a '%' must be followed by "
                                 "two hex digits)",
                                 nullptr},
                        {}};
    }
    segments.push_back(std::move(*decoded));
  }
  const unsigned bit = method_bit(method);
  for (const Route& row : table) {
    RouteMatch match;
    if (!matches(row.pattern, segments, match)) continue;
    if (row.handler == nullptr) return not_found();
    unsigned allowed = 0;
    for (const Route& same : table) {
      if (same.pattern != row.pattern) continue;
      if ((same.methods & bit) != 0) return Routed{&same, std::move(match)};
      allowed |= same.methods;
    }
    std::string allow = method_list(allowed);
    return RouteError{
        ApiError{ApiErrorKind::MethodNotAllowed,
                 std::string(method) + " is not allowed here (allowed: " + allow + ")", nullptr},
        allow};
  }
  return not_found();
}

}  // namespace stagelog::detail
