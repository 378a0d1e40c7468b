#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "net/http_client.hpp"

namespace stagelog::detail {

// How one request with a batch ended, hence what the sender does with the batch.
struct PostOutcome {
  enum Kind {
    Sent,      // 2xx: done; `rejected` of its lines were refused in the answer.
    Rejected,  // A 4xx other than 408, 413 (several lines) and 429: never retried.
    Split,     // 413 on a batch of several lines: send fewer at a time.
    Retry,     // No answer, 5xx, 408, 429 or an answer we cannot act on: keep it, try later.
  } kind = Retry;
  std::uint64_t rejected = 0;
  std::string message;  // Why, for the report.
  std::chrono::milliseconds retry_after{0};
};

// The sender's HTTP leg: one keep-alive connection to `stagelog serve`, posting NDJSON batches
// to <url>/api/v1/events with the Authorization header, and sorting each answer into a
// PostOutcome. The sender thread's only (close(): once it has stopped).
class NetworkTransport {
 public:
  using Clock = HttpClient::Clock;

  // `tls` checks an https server (nullptr: the system's CAs); `auth` is the Authorization
  // value ("Bearer ..."), or empty for none.
  NetworkTransport(Url url, std::shared_ptr<const TlsConfig> tls, std::string auth);

  // One request for `lines` lines in `body` with the batch's Idempotency-Key (none when
  // empty), given up at `deadline`. Never throws HttpError: a request without an answer is a
  // Retry.
  PostOutcome post(std::string_view body, std::uint64_t lines, std::string_view key,
                   Clock::time_point deadline);
  void close() noexcept;
  // In a forked child, whose sender thread is gone (perhaps inside the client): closes this
  // process's copy of the socket, leaves the old client as it is, and starts a new one.
  void restart_after_fork();

 private:
  const Url url_;
  const std::shared_ptr<const TlsConfig> tls_;
  const std::string auth_;
  std::unique_ptr<HttpClient> client_;
};

}  // namespace stagelog::detail
