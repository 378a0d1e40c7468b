#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "stagelog/result.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::store {

struct PostgresStoreOptions {
  // Connections the store opens at most; calls beyond that wait for one to be free. Opened
  // when first needed, kept open.
  std::size_t pool_size = 4;
};

// The shared Store (stagelog::store_postgres): one PostgreSQL database that any number of
// `stagelog serve` processes may use at once. `conninfo` is libpq's: a URL
// ("postgresql://stagelog@db.internal/stagelog") or "key=value" words; what it leaves out
// comes from libpq's environment (PGHOST, PGUSER, PGPASSFILE ...). The schema is created or
// migrated when the store opens, under an advisory lock, so that replicas starting together
// do it once. A write returns after its transaction is committed. Every method may be called
// from any thread; calls run concurrently on a bounded pool of connections, and a connection
// lost (a server restart, a failover) fails the call that finds it, and is opened again by the
// next one. Throws stagelog::Error saying what failed (libpq's message): the server cannot be
// reached or refuses the login, or the database holds a newer stagelog schema.
std::unique_ptr<Store> open_postgres_store(std::string_view conninfo,
                                           PostgresStoreOptions options = {});

// Whether `conninfo` is one libpq reads and holds no password, for a command line (where any
// user of the machine may read it): the error says what is wrong ("... holds a password: leave
// it out and put it in ~/.pgpass (or PGPASSFILE)"). Nothing is connected to.
Result<void> check_postgres_conninfo(std::string_view conninfo);

}  // namespace stagelog::store
