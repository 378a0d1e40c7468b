#pragma once

// A TCP connection to a test server that the test drives byte by byte: slow clients, header
// floods, bodies that lie about their length.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace stagelog::test {

class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  // False when the server closed its side (a broken pipe raises no signal).
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Bytes until `end` appears in what was read (included), the server closes, or `limit`.
  std::string read_until(std::string_view end, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (received_.find(end) == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      if (!read_some()) break;
    }
    std::size_t at = received_.find(end);
    std::size_t take = at == std::string::npos ? received_.size() : at + end.size();
    std::string out = received_.substr(0, take);
    received_.erase(0, take);
    return out;
  }

  // One answer's status line and headers, and its body when it has a Content-Length; "" when
  // none came within `limit`.
  std::string answer(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    std::string head = read_until("\r\n\r\n", limit);
    if (head.find("\r\n\r\n") == std::string::npos) return head;
    std::size_t at = head.find("\r\nContent-Length: ");
    if (at == std::string::npos) at = head.find("\r\ncontent-length: ");
    if (at == std::string::npos) return head;
    std::size_t length = std::stoul(head.substr(at + 18));
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (received_.size() < length && std::chrono::steady_clock::now() < deadline) {
      if (!read_some()) break;
    }
    std::string body = received_.substr(0, length);
    received_.erase(0, body.size());
    return head + body;
  }

  // True once the server closed the connection (EOF or reset), waiting at most `limit`.
  // Whatever it answered first is skipped.
  bool closed_within(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (closed_) return true;
      read_some();
    }
    return closed_;
  }

 private:
  // Waits up to 50 ms for bytes; false once the connection is closed.
  bool read_some() {
    if (closed_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) return true;
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    received_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

}  // namespace stagelog::test
