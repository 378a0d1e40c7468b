#include "net/http_client.hpp"

#include <algorithm>
#include <charconv>
#include <string>

#include "base/ascii.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kMaxHeaderLine = 64 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Whether a comma-separated header value holds `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    if (iequals_ascii(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string_view HttpResponse::header(std::string_view name) const noexcept {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return {};
}

HttpClient::HttpClient(Url url, std::shared_ptr<const TlsConfig> tls)
    : url_(std::move(url)), tls_(std::move(tls)) {
  if (url_.tls && !tls_) tls_ = std::make_shared<const TlsConfig>();
}

HttpClient::~HttpClient() { close(); }

void HttpClient::close() noexcept {
  stream_.close();
  in_.clear();
}

bool HttpClient::read_some(Clock::time_point deadline) {
  char buf[16 * 1024];
  for (;;) {
    long n = stream_.read(buf, sizeof buf, deadline);
    if (n > 0) {
      received_ += static_cast<std::size_t>(n);
      if (received_ > kMaxResponseBytes) {
        close();
        throw HttpError("the answer from " + url_.host_header + " is larger than " +
                        std::to_string(kMaxResponseBytes) + " bytes");
      }
      in_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (Clock::now() >= deadline) {
      close();
      throw HttpError("timed out waiting for the answer from " + url_.host_header);
    }
  }
}

std::string HttpClient::read_line(std::size_t& pos, Clock::time_point deadline) {
  for (;;) {
    std::size_t nl = in_.find('\n', pos);
    if (nl != std::string::npos) {
      std::string line = in_.substr(pos, nl - pos);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      pos = nl + 1;
      return line;
    }
    if (in_.size() - pos > kMaxHeaderLine) {
      close();
      throw HttpError("a header line from " + url_.host_header + " is too long");
    }
    if (!read_some(deadline)) {
      close();
      throw HttpError("connection closed by " + url_.host_header +
                      " before the answer was complete");
    }
  }
}

void HttpClient::read_exactly(std::size_t& pos, std::size_t n, std::string& out,
                              Clock::time_point deadline) {
  while (in_.size() - pos < n) {
    if (!read_some(deadline)) {
      close();
      throw HttpError("connection closed by " + url_.host_header +
                      " before the answer was complete");
    }
  }
  out.append(in_, pos, n);
  pos += n;
}

HttpResponse HttpClient::read_response(Clock::time_point deadline, bool* keep_alive) {
  std::size_t pos = 0;
  HttpResponse response = read_head(pos, deadline, keep_alive);
  read_body(pos, response, deadline, keep_alive);
  in_.erase(0, pos);
  return response;
}

HttpResponse HttpClient::read_head(std::size_t& pos, Clock::time_point deadline, bool* keep_alive) {
  for (;;) {
    HttpResponse response;
    std::string status_line = read_line(pos, deadline);
    // "HTTP/1.1 200 OK"
    if (status_line.size() < 12 || status_line.compare(0, 5, "HTTP/") != 0 ||
        status_line[8] != ' ') {
      close();
      throw HttpError("not an HTTP answer from " + url_.host_header + ": '" +
                      status_line.substr(0, 80) + "'");
    }
    bool http10 = status_line.compare(5, 3, "1.0") == 0;
    int status = 0;
    auto [end, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
    if (ec != std::errc() || end != status_line.data() + 12 || status < 100 || status > 999) {
      close();
      throw HttpError("bad status line from " + url_.host_header + ": '" +
                      status_line.substr(0, 80) + "'");
    }
    response.status = status;
    response.reason = status_line.size() > 13 ? status_line.substr(13) : std::string();
    for (;;) {
      std::string line = read_line(pos, deadline);
      if (line.empty()) break;
      std::size_t colon = line.find(':');
      if (colon == std::string::npos || colon == 0) {
        close();
        throw HttpError("bad header line from " + url_.host_header);
      }
      response.headers.emplace_back(lower(std::string_view(line).substr(0, colon)),
                                    std::string(trim(std::string_view(line).substr(colon + 1))));
      if (response.headers.size() > 200) {
        close();
        throw HttpError("too many headers from " + url_.host_header);
      }
    }
    if (status >= 100 && status < 200) continue;  // 100 Continue and friends: the real one follows.

    std::string_view connection = response.header("connection");
    *keep_alive = http10 ? has_token(connection, "keep-alive") : !has_token(connection, "close");
    return response;
  }
}

void HttpClient::read_body(std::size_t& pos, HttpResponse& response, Clock::time_point deadline,
                           bool* keep_alive) {
  const int status = response.status;
  std::string_view te = response.header("transfer-encoding");
  std::string_view length = response.header("content-length");
  if (status == 204 || status == 304) {
    // No body.
  } else if (!te.empty()) {
    if (!has_token(te, "chunked")) {
      close();
      throw HttpError("unsupported Transfer-Encoding '" + std::string(te) + "' from " +
                      url_.host_header);
    }
    for (;;) {
      std::string size_line = read_line(pos, deadline);
      std::string_view digits = trim(std::string_view(size_line).substr(0, size_line.find(';')));
      std::size_t size = 0;
      auto [e, err] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
      if (digits.empty() || err != std::errc() || e != digits.data() + digits.size() ||
          size > kMaxResponseBytes) {
        close();
        throw HttpError("bad chunk size '" + size_line.substr(0, 40) + "' from " +
                        url_.host_header);
      }
      if (size == 0) {
        while (!read_line(pos, deadline).empty()) {  // Trailers, ignored.
        }
        break;
      }
      read_exactly(pos, size, response.body, deadline);
      if (!read_line(pos, deadline).empty()) {
        close();
        throw HttpError("missing CRLF after a chunk from " + url_.host_header);
      }
    }
  } else if (!length.empty()) {
    std::size_t n = 0;
    auto [e, err] = std::from_chars(length.data(), length.data() + length.size(), n);
    if (err != std::errc() || e != length.data() + length.size() || n > kMaxResponseBytes) {
      close();
      throw HttpError("bad Content-Length '" + std::string(length) + "' from " + url_.host_header);
    }
    read_exactly(pos, n, response.body, deadline);
  } else {
    // Neither: the body runs to the end of the connection.
    while (read_some(deadline)) {
    }
    response.body.append(in_, pos, std::string::npos);
    pos = in_.size();
    *keep_alive = false;
  }
}

std::string HttpClient::request_head(std::string_view method, std::string_view path,
                                     std::string_view own_lines,
                                     std::span<const Header> headers) const {
  std::string head;
  head.reserve(256);
  head += method;
  head += ' ';
  head += url_.base_path;
  head += path;
  head += " HTTP/1.1\r\nHost: ";
  head += url_.host_header;
  head += "\r\n";
  head += own_lines;
  for (const auto& [name, value] : headers) {
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  head += "\r\n";
  return head;
}

HttpResponse HttpClient::post(std::string_view path, std::string_view content_type,
                              std::string_view body, std::span<const Header> headers,
                              Clock::time_point deadline) {
  std::string own = "User-Agent: stagelog-network-sink\r\nContent-Type: ";
  own += content_type;
  own += "\r\nContent-Length: ";
  own += std::to_string(body.size());
  own += "\r\n";
  const std::string head = request_head("POST", path, own, headers);

  for (int attempt = 0;; ++attempt) {
    bool reused = stream_.is_open();
    if (!reused) stream_.connect(url_, tls_.get(), deadline);
    in_.clear();
    received_ = 0;
    try {
      stream_.write_all(head, deadline);
      stream_.write_all(body, deadline);
      bool keep_alive = false;
      HttpResponse response = read_response(deadline, &keep_alive);
      if (!keep_alive) close();
      return response;
    } catch (const HttpError&) {
      close();
      // A kept-alive connection the server had already closed: one fresh try. Only when not a
      // byte of the answer came back and time remains.
      if (reused && attempt == 0 && received_ == 0 && Clock::now() < deadline) continue;
      throw;
    }
  }
}

HttpResponse HttpClient::get_stream(std::string_view path, std::span<const Header> headers,
                                    Clock::time_point deadline) {
  const std::string head = request_head("GET", path, "User-Agent: stagelog\r\n", headers);
  close();
  stream_.connect(url_, tls_.get(), deadline);  // A stream has its connection to itself.
  received_ = 0;
  body_ = Body::None;
  stream_.write_all(head, deadline);
  std::size_t pos = 0;
  bool keep_alive = false;
  HttpResponse response = read_head(pos, deadline, &keep_alive);
  if (response.status < 200 || response.status > 299) {
    read_body(pos, response, deadline, &keep_alive);
    close();
    return response;
  }
  in_.erase(0, pos);
  std::string_view te = response.header("transfer-encoding");
  std::string_view length = response.header("content-length");
  if (response.status == 204) {
    body_ = Body::None;
  } else if (!te.empty()) {
    if (!has_token(te, "chunked")) {
      close();
      throw HttpError("unsupported Transfer-Encoding '" + std::string(te) + "' from " +
                      url_.host_header);
    }
    body_ = Body::Chunked;
    chunk_ = Chunk::Size;
  } else if (!length.empty()) {
    auto [e, err] = std::from_chars(length.data(), length.data() + length.size(), left_);
    if (err != std::errc() || e != length.data() + length.size()) {
      close();
      throw HttpError("bad Content-Length '" + std::string(length) + "' from " + url_.host_header);
    }
    body_ = Body::Length;
  } else {
    body_ = Body::ToClose;
  }
  return response;
}

bool HttpClient::decode_stream(std::string& out) {
  auto take_line = [&](std::string& line) {
    std::size_t nl = in_.find('\n');
    if (nl == std::string::npos) {
      if (in_.size() > kMaxHeaderLine) {
        close();
        throw HttpError("a chunk header from " + url_.host_header + " is too long");
      }
      return false;
    }
    line.assign(in_, 0, nl);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    in_.erase(0, nl + 1);
    return true;
  };
  auto take_data = [&] {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in_.size()));
    out.append(in_, 0, n);
    in_.erase(0, n);
    left_ -= n;
  };
  switch (body_) {
    case Body::None:
      return true;
    case Body::ToClose:
      out += in_;
      in_.clear();
      return false;
    case Body::Length:
      take_data();
      return left_ == 0;
    case Body::Chunked:
      break;
  }
  std::string line;
  for (;;) {
    switch (chunk_) {
      case Chunk::Size: {
        if (!take_line(line)) return false;
        std::string_view digits = trim(std::string_view(line).substr(0, line.find(';')));
        auto [e, err] = std::from_chars(digits.data(), digits.data() + digits.size(), left_, 16);
        if (digits.empty() || err != std::errc() || e != digits.data() + digits.size()) {
          close();
          throw HttpError("bad chunk size '" + line.substr(0, 40) + "' from " + url_.host_header);
        }
        chunk_ = left_ == 0 ? Chunk::Trailers : Chunk::Data;
        break;
      }
      case Chunk::Data:
        take_data();
        if (left_ > 0) return false;
        chunk_ = Chunk::DataEnd;
        break;
      case Chunk::DataEnd:
        if (!take_line(line)) return false;
        if (!line.empty()) {
          close();
          throw HttpError("missing CRLF after a chunk from " + url_.host_header);
        }
        chunk_ = Chunk::Size;
        break;
      case Chunk::Trailers:
        if (!take_line(line)) return false;
        if (line.empty()) return true;
        break;
    }
  }
}

bool HttpClient::read_stream(std::string& out, Clock::time_point until) {
  for (;;) {
    if (!stream_.is_open()) return false;
    std::size_t before = out.size();
    if (decode_stream(out)) {
      close();
      body_ = Body::None;
      return false;
    }
    if (out.size() > before) return true;
    char buf[16 * 1024];
    long n = stream_.read(buf, sizeof buf, until);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0) return true;  // Nothing yet.
    bool to_close = body_ == Body::ToClose;
    close();
    body_ = Body::None;
    if (to_close) return false;
    throw HttpError("connection closed by " + url_.host_header + " in the middle of the stream");
  }
}

}  // namespace stagelog::detail
