// stagelog serve: the HTTP server over a SQLite store in a data folder, or over a PostgreSQL
// database that several servers share (seed 004's API, ingest, retention, auth). SIGINT and SIGTERM
// stop it cleanly: requests in progress finish and what they wrote is committed before it exits.
// SIGHUP re-reads the tokens file.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "base/fd_io.hpp"
#include "commands.hpp"
#include "duration.hpp"
#include "stagelog/error.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/server.hpp"
#include "stagelog/store/postgres_store.hpp"
#include "stagelog/store/sqlite_store.hpp"

namespace stagelog::cli {

namespace {

struct ServeOptions {
  std::string data;
  std::string store;  // A PostgreSQL connection string; empty: DATA/stagelog.db.
  std::string listen = "127.0.0.1:8080";
  std::string retention = "7d";
  std::string max_retention = "365d";
  std::string tokens;  // Default: <data>/tokens.
  std::string max_body = "8MiB";
  std::size_t threads = 0;  // The number of cores, at least 2.
  std::size_t max_connections = 10'000;
  std::string tls_cert;
  std::string tls_key;
  std::string alerts;   // An alerts file, or none.
  std::string web_dir;  // The UI's files from this folder instead of the embedded ones.
};

struct Address {
  std::string host;
  int port = 0;
};

// "127.0.0.1:8080", "0.0.0.0:0", "[::1]:8080", "localhost:9000".
std::optional<Address> parse_listen(std::string_view text) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']') || host.size() < 3) return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // An IPv6 address needs brackets.
  }
  int n = -1;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || n < 0 || n > 65535) {
    return std::nullopt;
  }
  return Address{std::string(host), n};
}

std::string check_listen(const std::string& text) {
  if (parse_listen(text)) return {};
  return "'" + text + "' is not HOST:PORT (examples: 127.0.0.1:8080, 0.0.0.0:0, [::1]:8080)";
}

// "65536", "512KiB", "64MiB", "1GiB" (K, M and G mean the same: powers of 1024).
std::optional<std::size_t> parse_size(std::string_view text) {
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K" || unit == "KiB") {
    shift = 10;
  } else if (unit == "M" || unit == "MiB") {
    shift = 20;
  } else if (unit == "G" || unit == "GiB") {
    shift = 30;
  } else {
    return std::nullopt;
  }
  if (n == 0 || n > (std::numeric_limits<std::size_t>::max() >> shift)) return std::nullopt;
  return n << shift;
}

std::string check_size(const std::string& text) {
  if (parse_size(text)) return {};
  return "'" + text + "' is not a size above 0 (examples: 65536, 512KiB, 64MiB, 1GiB)";
}

std::string check_positive_duration(const std::string& text) {
  std::string error = check_duration(text);
  if (error.empty() && parse_duration(text)->count() <= 0) {
    error = "'" + text + "' must be above zero";
  }
  return error;
}

std::string url_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// Whether a listen host is reachable from this machine only: localhost, 127.0.0.0/8, ::1.
bool is_loopback(const std::string& host) {
  return host == "localhost" || host.starts_with("127.") || host == "::1";
}

void print_line(const std::string& line) {
  std::string text = line + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// Takes the blocked signals until one stops the server: SIGHUP re-reads the tokens file and
// says how it went on stderr; SIGINT or SIGTERM stops the server.
void wait_for_stop(server::Server& server, const sigset_t& signals) {
  for (;;) {
    int signal = 0;
    if (sigwait(&signals, &signal) != 0) continue;
    if (signal != SIGHUP) {
      std::fprintf(stderr, "stagelog serve: %s, stopping\n",
                   signal == SIGINT ? "SIGINT" : "SIGTERM");
      server.stop();
      return;
    }
    auto reloaded = server.reload_tokens();
    if (reloaded) {
      std::fprintf(stderr, "stagelog serve: SIGHUP, re-read the tokens file: %zu token%s\n",
                   *reloaded, *reloaded == 1 ? "" : "s");
    }  // Else the server said why (on_error).
  }
}

int serve(const ServeOptions& o) {
  namespace fs = std::filesystem;
  // A password on the command line or in the environment is readable by any user of the
  // machine: refused before anything starts. libpq reads it from ~/.pgpass or PGPASSFILE.
  if (!o.store.empty()) {
    if (auto checked = store::check_postgres_conninfo(o.store); !checked) {
      throw Error("--store: " + std::string(checked.error().what()));
    }
  }
  if (o.data.empty() && (o.store.empty() || o.tokens.empty())) {
    throw Error(o.store.empty() ? "--data is required: the folder of the store and the tokens file"
                                : "--data or --tokens is required: where the tokens file is");
  }
  const fs::path data(o.data);
  std::error_code ec;
  // A folder made here is the server's alone (0700); one that exists keeps the mode its owner
  // gave it. The files in it are made 0600 (the store, the tokens file).
  if (!o.data.empty()) detail::create_private_folder(data);
  const fs::path tokens_path = o.tokens.empty() ? data / "tokens" : fs::path(o.tokens);

  server::ServerOptions options;
  Address address = *parse_listen(o.listen);
  options.host = address.host;
  options.port = address.port;
  options.retention = *parse_duration(o.retention);
  options.max_retention = std::max(options.retention, *parse_duration(o.max_retention));
  options.max_body_bytes = *parse_size(o.max_body);
  options.threads = o.threads;
  options.max_connections = o.max_connections;
  options.tls_cert_file = o.tls_cert;
  options.tls_key_file = o.tls_key;
  options.web_dir = o.web_dir;
  // Read before anything starts: a bad file stops serve with the key that is wrong.
  if (!o.alerts.empty()) options.alerts = server::load_alert_config(o.alerts);

  // Signals are taken by one thread with sigwait(), so they are blocked before any thread
  // starts (the store's and the Server's threads inherit the mask) and never interrupt a
  // request.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<store::Store> store = o.store.empty()
                                            ? store::open_sqlite_store(data / "stagelog.db")
                                            : store::open_postgres_store(o.store);
  // Only once the store opened: a store that cannot be opened leaves no new tokens file (and
  // no admin token printed for a server that never ran).
  if (!fs::exists(tokens_path, ec)) {
    std::string token =
        server::TokenFile::create_token(tokens_path, server::Scope::Admin, "stagelog serve");
    print_line("created " + tokens_path.string() +
               " with an admin token; it is shown once, here (the file keeps only its hash):");
    print_line("admin token: " + token);
  }

  // The tokens file is re-read when it changes, and on SIGHUP.
  server::Server server(*store, tokens_path, options);
  server.bind();
  const bool tls = !options.tls_cert_file.empty();
  print_line(std::string("listening on ") + (tls ? "https://" : "http://") +
             url_host(options.host) + ":" + std::to_string(server.port()));
  if (!tls && !is_loopback(options.host)) {
    std::fprintf(stderr,
                 "stagelog serve: warning: listening on %s without TLS: tokens and events cross "
                 "the network in clear text (--tls-cert and --tls-key serve HTTPS)\n",
                 options.host.c_str());
  }

  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    wait_for_stop(server, signals);
    signalled = true;
  });
  server.run();
  if (!signalled) pthread_kill(waiter.native_handle(), SIGTERM);  // Wakes its sigwait().
  waiter.join();
  return 0;
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve the HTTP API: ingest events and execution logs, keep them for the retention\n"
      "period in a SQLite file under the data folder (or in PostgreSQL with --store), answer\n"
      "seed 004's GET /api/execution-logs/{trackingId}, and show it all in a web UI at\n"
      "http://HOST:PORT/.\n"
      "Every API route needs a bearer token (the UI asks for one): with no tokens file, one is\n"
      "created and an admin token printed once.");
  cmd->add_option("--data", o->data,
                  "Data folder (created 0700 if missing): stagelog.db, tokens. Required, but\n"
                  "with --store and --tokens");
  cmd->add_option("--store", o->store,
                  "Keep the data in PostgreSQL instead: a libpq connection string\n"
                  "(postgresql://USER@HOST/DB); no password in it: libpq reads it from\n"
                  "~/.pgpass or PGPASSFILE, and PGHOST, PGUSER... fill in what it leaves out.\n"
                  "Servers on one database are replicas: they share live events, and one\n"
                  "of them (stagelog_leader 1 in /metrics) purges and sends alerts")
      ->envname("STAGELOG_STORE");
  cmd->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->check(CLI::Validator(check_listen, "HOST:PORT"))
      ->capture_default_str();
  cmd->add_option("--retention", o->retention,
                  "How long data is kept; a request may ask for its own with ?retention=")
      ->check(CLI::Validator(check_positive_duration, "DURATION"))
      ->capture_default_str();
  cmd->add_option("--max-retention", o->max_retention, "The most a request may ask for")
      ->check(CLI::Validator(check_positive_duration, "DURATION"))
      ->capture_default_str();
  cmd->add_option("--tokens", o->tokens, "Tokens file (default: DATA/tokens)");
  cmd->add_option("--max-body", o->max_body,
                  "Largest request body, after decompression (413 beyond)")
      ->check(CLI::Validator(check_size, "SIZE"))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads,
                  "Threads that answer requests (0: one per core, at least 2); connections\n"
                  "are read and written by one more thread and cost no thread each")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--max-connections", o->max_connections,
                  "Connections open at once; past it, 503 with Retry-After")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  auto* cert = cmd->add_option("--tls-cert", o->tls_cert,
                               "Serve HTTPS: the certificate (PEM, with its chain)")
                   ->check(CLI::ExistingFile);
  auto* key = cmd->add_option("--tls-key", o->tls_key, "Serve HTTPS: the certificate's key (PEM)")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  cmd->add_option("--alerts", o->alerts,
                  "Alert rules and webhooks, a JSON file (README: Alerts); none by default");
  cmd->add_option("--web-dir", o->web_dir,
                  "Serve the web UI from this folder, read on every request, instead of the\n"
                  "copy built in (for working on web/)")
      ->check(CLI::ExistingDirectory);
  cmd->footer(
      "Prints \"listening on http://HOST:PORT\" (https with --tls-cert) once it accepts\n"
      "connections. SIGINT or SIGTERM stops it after the requests in progress. SIGHUP re-reads\n"
      "the tokens file (a change to it is also taken within a second).\n"
      "Examples:\n"
      "  stagelog serve --data /var/lib/stagelog\n"
      "  stagelog serve --data ./data --listen 0.0.0.0:8080 --retention 30d\n"
      "  stagelog serve --data ./data --alerts alerts.json\n"
      "  PGPASSFILE=/etc/stagelog/pgpass stagelog serve --tokens /etc/stagelog/tokens \\\n"
      "      --store postgresql://stagelog@db.internal/stagelog --listen 0.0.0.0:8080\n"
      "  stagelog serve --data ./data --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key "
      "key.pem\n");
  return [o]() -> int { return serve(*o); };
}

}  // namespace stagelog::cli
