// `stagelog serve`'s Server: its options, its parts (the Api, a transport, the background
// threads that purge and tick the watchdog) and their lifecycle.

#include "stagelog/server/server.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "base/time.hpp"
#include "server/api.hpp"
#include "server/token_source.hpp"
#include "server/transport.hpp"
#include "stagelog/error.hpp"

namespace stagelog::server {

namespace {

// How often the watchdog's rules run: a stuck stage is reported within this of its threshold.
constexpr std::chrono::milliseconds kTickInterval{250};
// How long the feed thread waits for other servers' events before it looks whether to stop,
// and how long after a failed read it tries again.
constexpr std::chrono::milliseconds kFeedWait{500};
constexpr std::chrono::seconds kFeedRetry{1};
// How often a server that does not lead tries to take the leader lock (and one that leads
// checks it still holds it): a leader that died is replaced within about this.
constexpr std::chrono::seconds kLeaderInterval{2};
// How often a request looks whether the tokens file changed.
constexpr std::chrono::seconds kTokensCheckInterval{1};

ServerOptions checked(ServerOptions options) {
  if (options.threads == 0) {
    options.threads = std::max<std::size_t>(2, std::thread::hardware_concurrency());
  }
  if (options.max_body_bytes == 0) throw Error("server: max_body_bytes must be above 0");
  if (options.max_inflight_bytes < options.max_body_bytes) {
    throw Error("server: max_inflight_bytes (" + std::to_string(options.max_inflight_bytes) +
                ") must be at least max_body_bytes (" + std::to_string(options.max_body_bytes) +
                "): no body could be read");
  }
  if (options.max_connections == 0) throw Error("server: max_connections must be above 0");
  if (options.max_header_bytes < 256) throw Error("server: max_header_bytes must be 256 or more");
  if (options.max_header_fields == 0) throw Error("server: max_header_fields must be above 0");
  if (options.max_event_bytes == 0) throw Error("server: max_event_bytes must be above 0");
  if (options.max_open_runs == 0) throw Error("server: max_open_runs must be above 0");
  if (options.stream_history == 0) throw Error("server: stream_history must be above 0");
  if (options.stream_keep_alive.count() <= 0) {
    throw Error("server: stream_keep_alive must be above 0");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    throw Error(
        "server: HTTPS needs both a certificate file and its key file (tls_cert_file, "
        "tls_key_file), or neither");
  }
  if (options.retention.count() <= 0) throw Error("server: retention must be above 0");
  if (options.max_retention < options.retention) options.max_retention = options.retention;
  if (options.purge_interval.count() <= 0) throw Error("server: purge_interval must be above 0");
  if (options.port < 0 || options.port > 65535) {
    throw Error("server: port " + std::to_string(options.port) + " is not 0 to 65535");
  }
  if (!options.clock) options.clock = detail::realtime_ns;
  if (!options.on_error) {
    options.on_error = [](std::string_view message) {
      std::fprintf(stderr, "stagelog serve: %.*s\n", static_cast<int>(message.size()),
                   message.data());
    };
  }
  return options;
}

}  // namespace

struct Server::Impl {
  Impl(store::Store& store, std::unique_ptr<detail::TokenSource> tokens, ServerOptions o)
      : options(std::move(o)),
        api(store, std::move(tokens), options),
        transport(api, options),
        feed(store.changes()),
        leader_lock(store.leader_lock()) {
    if (leader_lock) api.set_leading(false);  // Until the lock is taken.
  }

  const ServerOptions options;
  detail::Api api;
  detail::HttpTransport transport;
  // A store shared with other servers: their events, and the lock that elects one of them to
  // purge and alert. Null for a store of this server alone.
  const std::unique_ptr<store::ChangeFeed> feed;
  const std::unique_ptr<store::LeaderLock> leader_lock;

  std::mutex mutex;                    // Guards what follows.
  std::condition_variable purge_wake;  // Also wakes the live thread to stop.
  bool bound = false;
  bool stopping = false;
  bool background_stopped = false;
  std::thread listener;  // start()'s.
  std::thread purger;
  std::thread ticker;   // Runs the watchdog's rules.
  std::thread feeder;   // Reads the feed.
  std::thread elector;  // Takes and keeps the leader lock.
  std::atomic<int> port{0};

  void start_background();
  void purge_loop();
  void tick_loop();
  void feed_loop();
  void leader_loop();
  // Waits `d` or until stop; true when stopping.
  bool wait_stopping(std::chrono::milliseconds d);
  void stop_background();
};

void Server::Impl::start_background() {
  purger = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-purge");
    purge_loop();
  });
  ticker = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-live");
    tick_loop();
  });
  if (feed) {
    feeder = std::thread([this] {
      pthread_setname_np(pthread_self(), "stagelog-feed");
      feed_loop();
    });
  }
  if (leader_lock) {
    elector = std::thread([this] {
      pthread_setname_np(pthread_self(), "stagelog-leader");
      leader_loop();
    });
  }
}

bool Server::Impl::wait_stopping(std::chrono::milliseconds d) {
  std::unique_lock lock(mutex);
  return purge_wake.wait_for(lock, d, [&] { return stopping; });
}

void Server::Impl::feed_loop() {
  std::string failing;  // The error reported last, until a read succeeds.
  while (!wait_stopping(std::chrono::milliseconds(0))) {
    auto events = feed->next(kFeedWait);
    if (!events) {
      std::string why = events.error().what();
      if (why != failing) api.report(why + " (trying again every second)");
      failing = std::move(why);
      wait_stopping(kFeedRetry);
      continue;
    }
    if (!failing.empty()) api.report("change feed: connected again");
    failing.clear();
    api.observe_stored(std::move(*events));
  }
}

void Server::Impl::leader_loop() {
  std::string failing;
  do {
    auto held = leader_lock->hold();
    bool leads = held && *held;
    if (!held && held.error().what() != failing) {
      failing = held.error().what();
      api.report(failing);
    } else if (held) {
      failing.clear();
    }
    if (leads != api.leading()) {
      api.set_leading(leads);
      api.report(leads ? "this server leads now: it purges and sends alerts"
                       : "this server no longer leads");
    }
  } while (!wait_stopping(kLeaderInterval));
}

void Server::Impl::purge_loop() {
  std::unique_lock lock(mutex);
  for (;;) {
    if (purge_wake.wait_for(lock, options.purge_interval, [&] { return stopping; })) return;
    if (!api.leading()) continue;  // Another server sharing the store purges.
    lock.unlock();
    auto removed = api.store().purge(api.now());
    if (!removed) api.report("purge failed: " + std::string(removed.error().what()));
    lock.lock();
  }
}

void Server::Impl::tick_loop() {
  std::unique_lock lock(mutex);
  for (;;) {
    if (purge_wake.wait_for(lock, kTickInterval, [&] { return stopping; })) return;
    lock.unlock();
    api.live().tick(api.now());
    lock.lock();
  }
}

void Server::Impl::stop_background() {
  {
    std::lock_guard lock(mutex);
    if (background_stopped) return;
    background_stopped = true;
    stopping = true;
  }
  purge_wake.notify_all();
  if (feed) feed->wake();
  if (purger.joinable()) purger.join();
  if (ticker.joinable()) ticker.join();
  if (feeder.joinable()) feeder.join();
  if (elector.joinable()) elector.join();
  api.writer().stop();
}

Server::Server(store::Store& store, TokenFile tokens, ServerOptions options)
    : impl_(std::make_unique<Impl>(store, std::make_unique<detail::TokenSource>(std::move(tokens)),
                                   checked(std::move(options)))) {
  impl_->start_background();
}

Server::Server(store::Store& store, const std::filesystem::path& tokens_file,
               ServerOptions options) {
  ServerOptions checked_options = checked(std::move(options));
  auto tokens = std::make_unique<detail::TokenSource>(
      tokens_file,
      detail::TokenSource::Options{{}, checked_options.on_error, kTokensCheckInterval});
  impl_ = std::make_unique<Impl>(store, std::move(tokens), std::move(checked_options));
  impl_->start_background();
}

Server::~Server() {
  stop();
  impl_->stop_background();
}

void Server::bind() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->bound) return;
  if (impl_->stopping) throw Error("server: bind() after stop()");
  impl_->port = impl_->transport.bind();
  impl_->bound = true;
}

int Server::port() const noexcept { return impl_->port.load(); }

void Server::run() {
  bind();
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return;
  }
  impl_->transport.run();
  impl_->stop_background();
}

void Server::start() {
  bind();
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->listener.joinable()) return;
    if (impl_->stopping) throw Error("server: start() after stop()");
    impl_->listener = std::thread([this] { run(); });
  }
  // The socket listens already (connections queue); wait until they are also accepted. The
  // bound keeps a broken start from hanging a test for ever.
  for (int i = 0; i < 10'000 && !impl_->transport.running(); ++i) {
    {
      std::lock_guard lock(impl_->mutex);
      if (impl_->stopping) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!impl_->transport.running()) throw Error("server: did not start accepting connections");
}

void Server::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->purge_wake.notify_all();
  impl_->api.hub().close();  // Open streams end.
  impl_->transport.stop();   // Holds when it comes before the transport's run(), too.
  if (impl_->listener.joinable() && impl_->listener.get_id() != std::this_thread::get_id()) {
    impl_->listener.join();
  }
}

Result<std::size_t> Server::reload_tokens() { return impl_->api.reload_tokens(); }

void Server::reload_alerts(const AlertConfig& alerts) { impl_->api.reload_alerts(alerts); }

Result<std::size_t> Server::purge() { return impl_->api.store().purge(impl_->api.now()); }

}  // namespace stagelog::server
