// Built against the installed package's server and store_sqlite components, from the installed
// files alone: opens a SQLite store in the folder given, serves it on a free loopback port and
// stops. Prints "served on <port>".
#include <cstdio>
#include <filesystem>
#include <stagelog/server/server.hpp>
#include <stagelog/store/sqlite_store.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto store = stagelog::store::open_sqlite_store(std::filesystem::path(argv[1]) / "s.db");
  stagelog::server::ServerOptions options;
  options.require_auth = false;
  stagelog::server::Server server(*store, stagelog::server::TokenFile(), options);
  server.start();
  std::printf("served on %d\n", server.port());
  server.stop();
  return server.port() > 0 ? 0 : 1;
}
