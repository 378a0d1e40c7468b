// NetworkSink's public face: the options checked, the fork and exit hooks every live sink is
// registered with, the default spool path and the sink from the environment. The workings are
// in network_sender (the backend side and the sender thread), network_spool (the files) and
// network_transport (the HTTP requests).

#include "stagelog/sinks/network_sink.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "net/http_client.hpp"
#include "sinks/network_sender.hpp"
#include "stagelog/error.hpp"

namespace stagelog {

namespace detail {

namespace {

bool has_control_char(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

Url checked_url(const std::string& url) {
  try {
    return parse_url(url);
  } catch (const Error& e) {
    throw Error("network sink: bad server URL '" + url + "': " + e.what());
  }
}

// Throws Error saying what is wrong with the options; clamps spool_max_bytes.
std::unique_ptr<NetworkSinkImpl> make_impl(NetworkSinkOptions options) {
  Url url = checked_url(options.url);
  std::shared_ptr<const TlsConfig> tls;
  if (!options.ca_file.empty() && !url.tls) {
    throw Error("network sink: ca_file needs an https:// server URL, not " + url.text);
  }
  if (url.tls) {
    try {
      tls = std::make_shared<const TlsConfig>(options.ca_file);
    } catch (const Error& e) {
      throw Error(std::string("network sink: ") + e.what());
    }
  }
  if (has_control_char(options.token)) {
    throw Error("network sink: the token holds a control character");
  }
  std::string auth = options.token.empty() ? std::string() : "Bearer " + options.token;
  std::filesystem::path base =
      options.spool_path.empty() ? default_spool_path(options.url) : options.spool_path;
  if (options.batch_events == 0) throw Error("network sink: batch_events must be at least 1");
  if (options.max_batch_bytes == 0) {
    throw Error("network sink: max_batch_bytes must be at least 1");
  }
  if (options.flush_interval.count() < 0) {
    throw Error("network sink: flush_interval must not be negative");
  }
  if (options.retry_initial.count() <= 0 || options.retry_max < options.retry_initial) {
    throw Error("network sink: need 0 < retry_initial <= retry_max");
  }
  if (options.request_timeout.count() <= 0 || options.shutdown_timeout.count() < 0) {
    throw Error("network sink: request_timeout must be positive, shutdown_timeout not negative");
  }
  if (options.spool_max_bytes == 0) {
    throw Error("network sink: spool_max_bytes must be at least 1");
  }
  if (options.spool_max_bytes > (std::uint64_t{1} << 62)) {
    options.spool_max_bytes = std::uint64_t{1} << 62;  // No overflow in the spool's arithmetic.
  }
  return std::make_unique<NetworkSinkImpl>(std::move(options), std::move(url), std::move(tls),
                                           std::move(auth), std::move(base));
}

std::filesystem::path state_dir() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::filesystem::path(xdg) / "stagelog";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') {
    return std::filesystem::path(home) / ".local" / "state" / "stagelog";
  }
  return std::filesystem::path("/tmp") / ("stagelog-" + std::to_string(::getuid()));
}

// Every live sink, for the fork and exit hooks.
std::mutex g_sinks_mu;
std::vector<NetworkSinkImpl*> g_sinks;

// Registered before main() (g_hooks_installed below), hence before any Recorder's: the prepare
// handler runs after the recorder's (which parks the backend, flushed), the child handler
// before the recorder's (which starts a new backend that may call write()).
void fork_prepare() {
  g_sinks_mu.lock();
  for (NetworkSinkImpl* s : g_sinks) s->mu.lock();
}

void fork_parent() {
  for (NetworkSinkImpl* s : g_sinks) s->mu.unlock();
  g_sinks_mu.unlock();
}

void fork_child() {
  for (NetworkSinkImpl* s : g_sinks) {
    s->after_fork_child();
    s->mu.unlock();
  }
  g_sinks_mu.unlock();
}

// exit() runs no destructor of a recorder on main()'s stack: deliver what the sinks hold.
// Registered before any recorder's exit hook, so it runs after that hook flushed the
// recorders into their sinks.
void close_all_at_exit() {
  std::lock_guard lock(g_sinks_mu);
  for (NetworkSinkImpl* s : g_sinks) {
    try {
      s->close();
    } catch (...) {
    }
  }
}

[[maybe_unused]] const bool g_hooks_installed = [] {
  ::pthread_atfork(fork_prepare, fork_parent, fork_child);
  std::atexit(close_all_at_exit);
  return true;
}();

void register_sink(NetworkSinkImpl* s) {
  std::lock_guard lock(g_sinks_mu);
  g_sinks.push_back(s);
}

void unregister_sink(NetworkSinkImpl* s) noexcept {
  std::lock_guard lock(g_sinks_mu);
  std::erase(g_sinks, s);
}

}  // namespace

}  // namespace detail

NetworkSink::NetworkSink(NetworkSinkOptions options)
    : Sink(options.level), impl_(detail::make_impl(std::move(options))) {
  impl_->start();
  detail::register_sink(impl_.get());
}

NetworkSink::~NetworkSink() {
  detail::unregister_sink(impl_.get());
  try {
    impl_->close();
  } catch (...) {
  }
}

void NetworkSink::write(const Event& event) { impl_->write(event); }

void NetworkSink::flush() { impl_->flush(); }

void NetworkSink::tick(std::int64_t /*now_ns*/) { impl_->tick(); }

void NetworkSink::close() { impl_->close(); }

bool NetworkSink::wait_sent(std::chrono::milliseconds timeout) { return impl_->wait_sent(timeout); }

NetworkSinkStats NetworkSink::stats() const { return impl_->current_stats(); }

std::filesystem::path NetworkSink::spool_path() const { return impl_->spool_path(); }

const std::string& NetworkSink::url() const noexcept { return impl_->url.text; }

std::filesystem::path default_spool_path(std::string_view url) {
  detail::Url parsed = detail::checked_url(std::string(url));
  // An http spool keeps the name it had before https existed, so that an upgrade replays it.
  std::string name = parsed.tls ? "https_" + parsed.host : parsed.host;
  for (char& c : name) {
    if (c == ':' || c == '/') c = '_';
  }
  return detail::state_dir() / "spool" / (name + "_" + std::to_string(parsed.port) + ".spool");
}

std::shared_ptr<NetworkSink> network_sink_from_env(NetworkSinkOptions options) {
  const char* server = std::getenv("STAGELOG_SERVER");
  if (server == nullptr || server[0] == '\0') return nullptr;
  bool tls = false;
  try {
    tls = detail::parse_url(server).tls;
  } catch (const Error& e) {
    throw Error(std::string("STAGELOG_SERVER=") + server + ": " + e.what());
  }
  options.url = server;
  if (const char* ca = std::getenv("STAGELOG_CA_FILE"); ca != nullptr && ca[0] != '\0') {
    if (!tls) {
      throw Error(std::string("STAGELOG_CA_FILE needs an https:// STAGELOG_SERVER, not ") + server);
    }
    options.ca_file = ca;
  }
  if (const char* token = std::getenv("STAGELOG_TOKEN")) {
    options.token = token;
    if (detail::has_control_char(options.token)) {  // Never echo the token itself.
      throw Error("STAGELOG_TOKEN holds a control character");
    }
  }
  if (const char* spool = std::getenv("STAGELOG_SPOOL"); spool != nullptr && spool[0] != '\0') {
    options.spool_path = spool;
  }
  return std::make_shared<NetworkSink>(std::move(options));
}

}  // namespace stagelog
