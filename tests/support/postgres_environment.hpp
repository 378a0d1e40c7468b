#pragma once

// The test executable's one PostgreSQL (postgres_server.hpp): a test file registers
//   const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);
// and each test takes a fresh database of its own (create_database()).

#include <gtest/gtest.h>

#include <exception>
#include <memory>

#include "postgres_server.hpp"

namespace stagelog::test {

// Starts the executable's one server before its first test, stops it after the last; skips
// every test when PostgreSQL is not installed.
class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto bindir = PostgresServer::find_bindir();
    if (!bindir) {
      GTEST_SKIP() << "PostgreSQL's server programs (initdb, pg_ctl) are not installed: run "
                      "scripts/setup (it installs Debian's postgresql package), or set "
                      "STAGELOG_PG_BINDIR to the folder holding initdb";
    }
    try {
      server_ = std::make_unique<PostgresServer>(*bindir);
    } catch (const std::exception& e) {
      FAIL() << "cannot start PostgreSQL: " << e.what();
    }
  }
  void TearDown() override { server_.reset(); }

  // The running server; nullptr when SetUp skipped or failed.
  static PostgresServer* server() noexcept { return server_.get(); }

 private:
  static inline std::unique_ptr<PostgresServer> server_;
};

}  // namespace stagelog::test
