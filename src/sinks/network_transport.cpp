#include "sinks/network_transport.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <span>
#include <utility>

namespace stagelog::detail {

namespace {

constexpr std::string_view kEventsPath = "/api/v1/events";
constexpr std::string_view kContentType = "application/x-ndjson";

// The answer's {"accepted": N, "rejected": [{"line": L, "error": "..."}]}: how many it
// refused and a short account of the first few.
std::uint64_t read_rejections(std::string_view body, std::string& detail) {
  auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object()) return 0;
  auto it = json.find("rejected");
  if (it == json.end() || !it->is_array()) {
    auto error = json.find("error");
    if (error != json.end() && error->is_string()) detail = error->get<std::string>();
    return 0;
  }
  std::uint64_t n = 0;
  for (const auto& r : *it) {
    if (n < 3 && r.is_object()) {
      if (!detail.empty()) detail += "; ";
      auto line = r.find("line");
      if (line != r.end() && line->is_number_integer()) {
        detail += "line " + std::to_string(line->get<std::int64_t>()) + ": ";
      }
      auto error = r.find("error");
      detail += error != r.end() && error->is_string() ? error->get<std::string>() : "rejected";
    }
    ++n;
  }
  if (n > 3) detail += "; ...";
  return n;
}

std::string snippet(std::string_view body) {
  std::string out(body.substr(0, 200));
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

std::chrono::milliseconds retry_after(const HttpResponse& response) {
  std::string_view value = response.header("retry-after");
  unsigned seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size()) return {};
  return std::chrono::milliseconds(std::uint64_t{std::min(seconds, 3600u)} * 1000);
}

}  // namespace

NetworkTransport::NetworkTransport(Url url, std::shared_ptr<const TlsConfig> tls, std::string auth)
    : url_(std::move(url)),
      tls_(std::move(tls)),
      auth_(std::move(auth)),
      client_(std::make_unique<HttpClient>(url_, tls_)) {}

PostOutcome NetworkTransport::post(std::string_view body, std::uint64_t lines, std::string_view key,
                                   Clock::time_point deadline) {
  PostOutcome out;
  HttpClient::Header headers[2];
  std::size_t n = 0;
  if (!auth_.empty()) headers[n++] = {"Authorization", auth_};
  if (!key.empty()) headers[n++] = {"Idempotency-Key", key};
  HttpResponse response;
  try {
    response = client_->post(kEventsPath, kContentType, body,
                             std::span<const HttpClient::Header>(headers, n), deadline);
  } catch (const HttpError& e) {
    out.kind = PostOutcome::Retry;
    out.message = e.what();
    return out;
  }
  const int status = response.status;
  std::string status_text = "HTTP " + std::to_string(status);
  if (!response.reason.empty()) status_text += " " + response.reason;
  if (status >= 200 && status < 300) {
    out.kind = PostOutcome::Sent;
    out.rejected = read_rejections(response.body, out.message);
    return out;
  }
  if (status == 413 && lines > 1) {
    out.kind = PostOutcome::Split;
    return out;
  }
  if (status >= 400 && status < 500 && status != 408 && status != 429) {
    out.kind = PostOutcome::Rejected;
    std::string detail;
    read_rejections(response.body, detail);
    out.message = status_text + ": " + (detail.empty() ? snippet(response.body) : detail);
    return out;
  }
  // 5xx, 408, 429, and answers we cannot act on (1xx, 3xx): keep the data and try again.
  out.kind = PostOutcome::Retry;
  out.message = status_text;
  if (!response.body.empty()) out.message += ": " + snippet(response.body);
  out.retry_after = retry_after(response);
  return out;
}

void NetworkTransport::close() noexcept {
  if (client_) client_->close();
}

void NetworkTransport::restart_after_fork() {
  if (client_) {
    if (client_->fd() >= 0) ::close(client_->fd());  // Our copy; the parent's stays open.
    (void)client_.release();                         // The dead sender may have been inside it.
  }
  client_ = std::make_unique<HttpClient>(url_, tls_);
}

}  // namespace stagelog::detail
