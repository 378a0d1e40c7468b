#pragma once

// A real PostgreSQL for benchmarks, started as tests/support/postgres_server.hpp starts one for
// tests (that header needs GoogleTest): Debian's initdb and pg_ctl in a temporary folder,
// listening only on a Unix socket there, as nobody when run as root. Unlike the tests' server,
// fsync stays on: what is measured is what a deployment would see.

#include <libpq-fe.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace stagelog::bench {

class PostgresServer {
 public:
  // The folder of initdb and pg_ctl ($STAGELOG_PG_BINDIR, else the highest installed version's),
  // or nullopt when PostgreSQL's server programs are not installed.
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

  // initdb and pg_ctl start; throws std::runtime_error with the programs' output.
  explicit PostgresServer(const std::filesystem::path& bindir) : bindir_(bindir) {
    root_ = geteuid() == 0;
    std::string pattern = "/tmp/stagelog-bench-pg-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    if (root_ && std::system(("chown nobody:nogroup " + dir_.string()).c_str()) != 0) {
      throw std::runtime_error("cannot chown " + dir_.string() + " to nobody");
    }
    run("initdb", "-D " + data() + " -U stagelog --auth=trust -E UTF8 --locale=C -N");
    run("pg_ctl", "-D " + data() + " -l " + (dir_ / "server.log").string() +
                      " -w -t 60 -o \"-c listen_addresses='' -c unix_socket_directories='" +
                      dir_.string() + "' -c shared_buffers=256MB\" start");
    started_ = true;
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

  std::string conninfo(const std::string& database) const {
    return "host=" + dir_.string() + " port=5432 user=stagelog dbname=" + database;
  }

  // A new, empty database: its conninfo.
  std::string create_database(const std::string& name) {
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
    return conninfo(name);
  }

 private:
  std::string data() const { return (dir_ / "data").string(); }

  void run(const std::string& program, const std::string& args) const {
    std::string log = (dir_ / (program + ".out")).string();
    std::string command = "cd " + dir_.string() + " && ";
    if (root_) command += "setpriv --reuid=nobody --regid=nogroup --clear-groups ";
    command += (bindir_ / program).string() + " " + args + " > " + log + " 2>&1";
    if (std::system(command.c_str()) != 0) {
      std::ifstream in(log);
      std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      throw std::runtime_error(program + " failed: " + command + "\n" + out);
    }
  }

  std::filesystem::path bindir_;
  std::filesystem::path dir_;
  bool root_ = false;
  bool started_ = false;
};

}  // namespace stagelog::bench
