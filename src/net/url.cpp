#include "net/url.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "base/ascii.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {

Url parse_url(std::string_view url) {
  Url out;
  std::string_view rest = url;
  auto scheme_end = rest.find("://");
  if (scheme_end == std::string_view::npos) {
    throw Error("expected http://host:port or https://host:port");
  }
  std::string_view scheme = rest.substr(0, scheme_end);
  if (iequals_ascii(scheme, "https")) {
    out.tls = true;
    out.port = 443;
  } else if (!iequals_ascii(scheme, "http")) {
    throw Error("unsupported scheme '" + std::string(scheme) + "', expected http:// or https://");
  }
  rest.remove_prefix(scheme_end + 3);
  std::size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view path =
      authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    throw Error("user info in the URL is not supported (use a token)");
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    throw Error("a query or fragment is not allowed in the server URL");
  }
  std::string_view host;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw Error("unterminated '[' in the host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw Error("expected ':port' after ']'");
      port_text = after.substr(1);
      if (port_text.empty()) throw Error("empty port");
    }
  } else {
    std::size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) throw Error("empty port");
    }
    if (host.find(':') != std::string_view::npos) {
      throw Error("an IPv6 address must be written in brackets: http://[::1]:8080");
    }
  }
  if (host.empty()) throw Error("no host");
  for (char c : host) {
    if (c <= ' ' || c == '/' || c == '\\' || c == '%' || c == '"' || c == 0x7f) {
      throw Error("invalid character in the host");
    }
  }
  if (!port_text.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      throw Error("invalid port '" + std::string(port_text) + "'");
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  for (char c : path) {
    if (c <= ' ' || c == 0x7f) throw Error("invalid character in the path");
  }
  out.host = std::string(host);
  out.base_path = std::string(path);
  bool v6 = out.host.find(':') != std::string::npos;
  out.host_header = (v6 ? "[" + out.host + "]" : out.host) + ":" + std::to_string(out.port);
  out.text = std::string(out.scheme()) + "://" + out.host_header + out.base_path;
  return out;
}

bool is_ip_literal(const std::string& host) noexcept {
  unsigned char addr[16];
  return ::inet_pton(AF_INET, host.c_str(), addr) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), addr) == 1;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    bool plain = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                 c == '-' || c == '_' || c == '.' || c == '~';
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace stagelog::detail
