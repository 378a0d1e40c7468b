// stagelog serve: the HTTP server over a SQLite store in a data folder, or over a PostgreSQL
// database that several servers share (the execution-log API, ingest, retention, auth). SIGINT
// and SIGTERM stop it cleanly: requests in progress finish and what they wrote is committed
// before it exits. SIGHUP re-reads the tokens file and the alert rules. Its own messages go to
// stderr with a timestamp and a level (--log-format text or json), requests to --access-log.

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "base/fd_io.hpp"
#include "base/time.hpp"
#include "base/time_text.hpp"
#include "commands.hpp"
#include "duration.hpp"
#include "format/format.hpp"
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
  std::string log_format = "text";
  std::string access_log;  // A file, "-" for stdout, or none.
};

// serve's own log: one line per message on stderr, "2026-12-03T19:12:15.123Z warning <text>"
// or as JSON ({"ts":...,"level":...,"message":...}) for a log collector; and the access log,
// one line per request, in the same format, to a file (appended, 0600) or stdout. Any thread.
class ServeLog {
 public:
  ServeLog(bool json, const std::string& access_log) : json_(json) {
    if (access_log == "-") {
      access_fd_ = STDOUT_FILENO;
    } else if (!access_log.empty()) {
      access_fd_ = ::open(access_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (access_fd_ < 0) {
        throw Error("--access-log: cannot open " + access_log + ": " + std::strerror(errno));
      }
      owns_access_ = true;
    }
  }
  ~ServeLog() {
    if (owns_access_) ::close(access_fd_);
  }
  ServeLog(const ServeLog&) = delete;
  ServeLog& operator=(const ServeLog&) = delete;

  bool access_logged() const { return access_fd_ >= 0; }

  void log(std::string_view level, std::string_view message) {
    std::string line = start(level);
    if (json_) {
      line += ",\"message\":";
      detail::append_json_string(line, message);
      line += "}\n";
    } else {
      line += message;
      line += '\n';
    }
    write(STDERR_FILENO, line);
  }

  // Text: TIME info METHOD TARGET STATUS BYTES|- SECONDS REMOTE.
  void access(const server::RequestRecord& r) {
    std::string line = start("info");
    const double seconds = std::chrono::duration<double>(r.duration).count();
    char took[32];
    std::snprintf(took, sizeof took, "%.6f", seconds);
    if (json_) {
      line += ",\"method\":";
      detail::append_json_string(line, r.method);
      line += ",\"target\":";
      detail::append_json_string(line, r.target);
      line += ",\"route\":";
      detail::append_json_string(line, r.route);
      line += ",\"status\":" + std::to_string(r.status) + ",\"bytes\":";
      line += r.body_bytes ? std::to_string(*r.body_bytes) : "null";
      line += ",\"seconds\":";
      line += took;
      line += ",\"remote\":";
      detail::append_json_string(line, r.remote);
      line += "}\n";
    } else {
      line += std::string(r.method) + " " + std::string(r.target) + " " + std::to_string(r.status) +
              " " + (r.body_bytes ? std::to_string(*r.body_bytes) : "-") + " " + took + " " +
              std::string(r.remote.empty() ? "-" : r.remote) + "\n";
    }
    write(access_fd_, line);
  }

 private:
  std::string start(std::string_view level) const {
    std::string line;
    if (json_) {
      line = "{\"ts\":\"";
      detail::append_iso_timestamp(line, detail::realtime_ns());
      line += "\",\"level\":\"";
      line += level;
      line += '"';
    } else {
      detail::append_iso_timestamp(line, detail::realtime_ns());
      line += ' ';
      line += level;
      line += ' ';
    }
    return line;
  }
  // One write() per line, under a lock: lines of different threads never interleave.
  void write(int fd, const std::string& line) {
    std::lock_guard lock(mutex_);
    std::string_view rest = line;
    while (!rest.empty()) {
      ssize_t n = ::write(fd, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // A log that cannot be written is not worth stopping the server.
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  const bool json_;
  int access_fd_ = -1;
  bool owns_access_ = false;
  std::mutex mutex_;
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
// the alerts file (a bad one leaves the rules in force as they were) and logs how it went;
// SIGINT or SIGTERM stops the server.
void wait_for_stop(server::Server& server, const sigset_t& signals, const std::string& alerts,
                   ServeLog& log) {
  for (;;) {
    int signal = 0;
    if (sigwait(&signals, &signal) != 0) continue;
    if (signal != SIGHUP) {
      log.log("info", std::string(signal == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
      server.stop();
      return;
    }
    auto reloaded = server.reload_tokens();
    if (reloaded) {
      log.log("info", "SIGHUP, re-read the tokens file: " + std::to_string(*reloaded) +
                          (*reloaded == 1 ? " token" : " tokens"));
    }  // Else the server said why (on_error).
    if (alerts.empty()) continue;
    try {
      server::AlertConfig config = server::load_alert_config(alerts);
      const std::size_t rules = config.rules.size();
      server.reload_alerts(config);
      log.log("info", "SIGHUP, re-read the alerts file " + alerts + ": " + std::to_string(rules) +
                          (rules == 1 ? " rule" : " rules"));
    } catch (const std::exception& e) {
      log.log("error", "SIGHUP: the alerts file was not taken, the rules before stay: " +
                           std::string(e.what()));
    }
  }
}

// The first admin token, in a file of its own beside the tokens file (0600, replaced if there),
// so that it is not left in a journal or a container's log; printed too when stdout is a
// terminal, where a person reads it.
void hand_over_admin_token(const std::filesystem::path& tokens_path, const std::string& token) {
  const std::filesystem::path file = tokens_path.parent_path() / "admin-token";
  std::error_code ec;
  std::filesystem::remove(file, ec);
  detail::create_private_file(file);
  int fd = ::open(file.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + file.string() + ": " + std::strerror(errno));
  try {
    detail::write_all(fd, token + "\n", file.string());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  print_line("created " + tokens_path.string() + " with an admin token, written to " +
             file.string() + " (mode 0600; the tokens file keeps only its hash)");
  if (isatty(STDOUT_FILENO)) print_line("admin token: " + token);
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
  ServeLog log(o.log_format == "json", o.access_log);
  options.on_error = [&log](std::string_view message) { log.log("warning", message); };
  if (log.access_logged()) {
    options.on_request = [&log](const server::RequestRecord& r) { log.access(r); };
  }
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
    hand_over_admin_token(tokens_path, token);
  }

  // The tokens file is re-read when it changes, and on SIGHUP.
  server::Server server(*store, tokens_path, options);
  server.bind();
  const bool tls = !options.tls_cert_file.empty();
  print_line(std::string("listening on ") + (tls ? "https://" : "http://") +
             url_host(options.host) + ":" + std::to_string(server.port()));
  log.log("info", std::string("listening on ") + (tls ? "https://" : "http://") +
                      url_host(options.host) + ":" + std::to_string(server.port()));
  if (!tls && !is_loopback(options.host)) {
    log.log("warning", "listening on " + options.host +
                           " without TLS: tokens and events cross the network in clear text "
                           "(--tls-cert and --tls-key serve HTTPS)");
  }

  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    wait_for_stop(server, signals, o.alerts, log);
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
      "GET /api/execution-logs/{trackingId} with the worker's execution-log document, and\n"
      "show it all in a web UI at http://HOST:PORT/.\n"
      "Every API route needs a bearer token (the UI asks for one): with no tokens file, one is\n"
      "created with an admin token, written to admin-token beside it (0600; also printed\n"
      "when stdout is a terminal).\n"
      "Every option can also be set by an environment variable, STAGELOG_ and its name:\n"
      "STAGELOG_DATA, STAGELOG_LISTEN, STAGELOG_LOG_FORMAT ... (the option wins).");
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
  cmd->add_option("--log-format", o->log_format,
                  "Its own messages on stderr, each with a UTC timestamp and a level (info,\n"
                  "warning, error): text lines, or json (one object a line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--access-log", o->access_log,
                  "One line per request answered (method, target, status, body bytes,\n"
                  "seconds, client) in the --log-format, appended to this file (created\n"
                  "0600), or - for stdout; none by default");
  // STAGELOG_<OPTION> for every option: a service manager or a container sets them.
  for (CLI::Option* opt : cmd->get_options()) {
    if (opt->get_lnames().empty() || opt->get_lnames()[0] == "help") continue;
    std::string env = "STAGELOG_" + opt->get_lnames()[0];
    for (char& c : env) c = c == '-' ? '_' : static_cast<char>(std::toupper(c));
    opt->envname(env);
  }
  cmd->footer(
      "Prints \"listening on http://HOST:PORT\" (https with --tls-cert) once it accepts\n"
      "connections. SIGINT or SIGTERM stops it after the requests in progress. SIGHUP re-reads\n"
      "the tokens file (a change to it is also taken within a second) and the alerts file.\n"
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
