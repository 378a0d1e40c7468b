#pragma once

// A real PostgreSQL for tests and benchmarks: Debian's postgresql package's initdb and pg_ctl in
// a temporary folder, listening only on a Unix socket in that folder, as an unprivileged user
// (nobody when run as root: PostgreSQL refuses root). No system service, no TCP port. Tests
// take it through PostgresEnvironment (postgres_environment.hpp); it needs no GoogleTest.

#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace stagelog::test {

struct PostgresOptions {
  // Tests turn fsync off (nothing they check needs it); a benchmark keeps it on, to measure
  // what a deployment would see.
  bool fsync = false;
  std::string settings;  // More server settings: " -c name=value ...".
};

class PostgresServer {
 public:
  // The folder of initdb and pg_ctl: $STAGELOG_PG_BINDIR, else the highest version's
  // /usr/lib/postgresql/<version>/bin (pg_config --bindir names the client's, not these).
  static std::optional<std::filesystem::path> find_bindir() {
    namespace fs = std::filesystem;
    if (const char* dir = std::getenv("STAGELOG_PG_BINDIR"); dir != nullptr && *dir != '\0') {
      if (fs::exists(fs::path(dir) / "initdb")) return fs::path(dir);
      return std::nullopt;
    }
    std::error_code ec;
    std::optional<fs::path> best;
    int best_version = -1;
    for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
      int version = std::atoi(entry.path().filename().c_str());
      if (version > best_version && fs::exists(entry.path() / "bin" / "initdb")) {
        best_version = version;
        best = entry.path() / "bin";
      }
    }
    return best;
  }

  // Runs initdb and starts the server. Throws std::runtime_error with the log's tail.
  explicit PostgresServer(const std::filesystem::path& bindir, PostgresOptions config = {})
      : bindir_(bindir), options_(std::move(config)) {
    namespace fs = std::filesystem;
    root_ = geteuid() == 0;
    // As root, under /tmp: nobody must be able to reach the folder.
    fs::path base = root_ ? fs::path("/tmp") : fs::temp_directory_path();
    std::string pattern = (base / "stagelog-pg-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    if (root_ && std::system(("chown nobody:nogroup " + dir_.string()).c_str()) != 0) {
      throw std::runtime_error("cannot chown " + dir_.string() + " to nobody");
    }
    run("initdb", "-D " + data() + " -U stagelog --auth=trust -E UTF8 --locale=C -N");
    start();
  }

  ~PostgresServer() {
    if (started_) {
      try {
        run("pg_ctl", "-D " + data() + " -w -m immediate stop");
      } catch (const std::exception&) {  // Removing its folder stops it as surely.
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // A libpq conninfo for a database of this server.
  std::string conninfo(const std::string& database) const {
    return "host=" + dir_.string() + " port=5432 user=stagelog dbname=" + database;
  }

  // A new, empty database; its name.
  std::string create_database() {
    static std::atomic<int> next{0};
    std::string name = "stagelog_test_" + std::to_string(++next);
    PGconn* c = PQconnectdb(conninfo("postgres").c_str());
    std::string error;
    if (PQstatus(c) != CONNECTION_OK) {
      error = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, ("CREATE DATABASE " + name).c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK) error = PQresultErrorMessage(r);
      PQclear(r);
    }
    PQfinish(c);
    if (!error.empty()) throw std::runtime_error("cannot create database " + name + ": " + error);
    return name;
  }

  // pg_ctl restart: every connection to it is cut; it listens again when this returns.
  void restart() { run("pg_ctl", "-D " + data() + " -w -t 60 -m fast " + options() + " restart"); }

  // pg_ctl stop -m fast: every connection is cut (57P01), and none is taken until start(); the
  // data folder and the socket's folder stay. Idempotent.
  void stop() {
    if (!started_) return;
    run("pg_ctl", "-D " + data() + " -w -t 60 -m fast stop");
    started_ = false;
  }
  // Starts it again after stop(), on the same data and socket: it listens when this returns.
  void start() {
    if (started_) return;
    run("pg_ctl", "-D " + data() + " -l " + (dir_ / "server.log").string() + " -w -t 60 " +
                      options() + " start");
    started_ = true;
  }

  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  std::string data() const { return (dir_ / "data").string(); }
  std::string options() const {
    return "-o \"-c listen_addresses='' -c unix_socket_directories='" + dir_.string() + "'" +
           (options_.fsync ? "" : " -c fsync=off") + options_.settings + "\"";
  }

  // Runs a PostgreSQL program as the unprivileged user; throws with its output on failure.
  void run(const std::string& program, const std::string& args) const {
    std::string log = (dir_ / (program + ".out")).string();
    std::string command = "cd " + dir_.string() + " && ";
    if (root_) command += "setpriv --reuid=nobody --regid=nogroup --clear-groups ";
    command += (bindir_ / program).string() + " " + args + " > " + log + " 2>&1";
    if (std::system(command.c_str()) != 0) {
      std::ifstream in(log);
      std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::ifstream server_log(dir_ / "server.log");
      std::string server((std::istreambuf_iterator<char>(server_log)),
                         std::istreambuf_iterator<char>());
      if (server.size() > 2000) server = server.substr(server.size() - 2000);
      throw std::runtime_error(program + " failed: " + command + "\n" + out + "\n" + server);
    }
  }

  std::filesystem::path bindir_;
  PostgresOptions options_;
  std::filesystem::path dir_;
  bool root_ = false;
  bool started_ = false;
};

}  // namespace stagelog::test
