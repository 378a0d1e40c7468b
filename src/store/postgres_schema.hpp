#pragma once

// The PostgreSQL store's schema: created, or migrated from an older version, when a store
// opens.

#include "store/postgres.hpp"

namespace stagelog::detail {

// In a transaction of its own, under a transaction-scoped advisory lock, so that servers
// starting at once against one database create it once and the others wait and find it.
// Throws PgError, also when the database holds a newer schema than this stagelog's.
void pg_create_or_migrate(PgConnection& c);

}  // namespace stagelog::detail
