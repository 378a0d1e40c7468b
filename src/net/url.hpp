#pragma once

// The server URLs stagelog talks to — the network sink's, `stagelog tail --server`'s, alert
// webhooks' — parsed in one place.

#include <cstdint>
#include <string>
#include <string_view>

namespace stagelog::detail {

// "http[s]://host[:port][/prefix]" split up. IPv6 literals are written "[::1]:8080".
struct Url {
  bool tls = false;  // https://
  std::string host;  // Without brackets: "127.0.0.1", "::1", "logs.example.com".
  std::uint16_t port = 80;
  std::string base_path;    // "" or "/prefix" (no trailing slash): prepended to request paths.
  std::string host_header;  // "host:port" as sent in Host (brackets kept for IPv6).
  std::string text;         // "https://host:port/prefix", normalised: for messages.

  std::string_view scheme() const noexcept { return tls ? "https" : "http"; }
};

// Parses an http:// or https:// URL (the port defaults to 80 or 443). Throws Error "<reason>"
// (callers add what the value was): another scheme, user info, a query or a fragment, an IPv6
// address without brackets, a port outside 1-65535.
Url parse_url(std::string_view url);

// Whether `host` is an IPv4 or IPv6 address rather than a name.
bool is_ip_literal(const std::string& host) noexcept;

// `text` with every byte but RFC 3986's unreserved ones (letters, digits, - _ . ~) written as
// %XX: safe in a query value and in a URL fragment.
std::string percent_encode(std::string_view text);

}  // namespace stagelog::detail
