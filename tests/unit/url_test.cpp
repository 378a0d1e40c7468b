// parse_url (src/net/url.hpp): the URLs of the network sink, `stagelog tail --server` and the
// alert webhooks.

#include "net/url.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "stagelog/error.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::string& url) {
  try {
    detail::parse_url(url);
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(UrlTest, SplitsHostPortAndPrefix) {
  auto u = detail::parse_url("http://logs.example.com:8080/stagelog/");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "logs.example.com");
  EXPECT_EQ(u.port, 8080);
  EXPECT_EQ(u.base_path, "/stagelog");
  EXPECT_EQ(u.host_header, "logs.example.com:8080");
  EXPECT_EQ(u.text, "http://logs.example.com:8080/stagelog");
  auto v6 = detail::parse_url("HTTP://[::1]:9000");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.host_header, "[::1]:9000");
  EXPECT_EQ(v6.text, "http://[::1]:9000");
}

TEST(UrlTest, HttpsIsTlsWithPort443ByDefault) {
  auto u = detail::parse_url("HTTPS://logs.example.com/base");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.scheme(), "https");
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.host_header, "logs.example.com:443");
  EXPECT_EQ(u.text, "https://logs.example.com:443/base");
  EXPECT_EQ(detail::parse_url("https://[2001:db8::1]").host, "2001:db8::1");
  EXPECT_EQ(detail::parse_url("https://10.0.0.1:8443").port, 8443);
  EXPECT_EQ(detail::parse_url("http://box").port, 80);
}

TEST(UrlTest, RefusesMalformedUrlsWithTheReason) {
  EXPECT_THAT(error_of("localhost:8080"), HasSubstr("expected http://host:port"));
  EXPECT_THAT(error_of("ftp://x"),
              HasSubstr("unsupported scheme 'ftp', expected http:// or https://"));
  EXPECT_THAT(error_of("https://u:p@h"), HasSubstr("user info"));
  EXPECT_THAT(error_of("https://h/x?y=1"), HasSubstr("query or fragment"));
  EXPECT_THAT(error_of("https://h/x#top"), HasSubstr("query or fragment"));
  EXPECT_THAT(error_of("https://::1:80"), HasSubstr("in brackets"));
  EXPECT_THAT(error_of("https://[::1"), HasSubstr("unterminated '['"));
  EXPECT_THAT(error_of("https://h:70000"), HasSubstr("invalid port '70000'"));
  for (const char* bad : {"", "http://", "https://", "http://:80", "http://h:0", "http://h:8x",
                          "http://h:", "https://[::1]x", "http://h o"}) {
    EXPECT_NE(error_of(bad), "accepted") << bad;
  }
}

TEST(UrlTest, TellsIpLiteralsFromNames) {
  EXPECT_TRUE(detail::is_ip_literal("127.0.0.1"));
  EXPECT_TRUE(detail::is_ip_literal("::1"));
  EXPECT_FALSE(detail::is_ip_literal("localhost"));
  EXPECT_FALSE(detail::is_ip_literal("127.0.0.1.example"));
}

}  // namespace
}  // namespace stagelog
