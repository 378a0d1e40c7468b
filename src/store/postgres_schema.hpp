#pragma once

// The PostgreSQL store's schema: created, or migrated from an older version, when a store
// opens; and the daily partitions of its events, made ahead and dropped when their day has
// expired (postgres_schema.cpp says why events alone are partitioned).

#include <cstddef>
#include <cstdint>

#include "store/postgres.hpp"

namespace stagelog::detail {

// In a transaction of its own, under a transaction-scoped advisory lock, so that servers
// starting at once against one database create it once and the others wait and find it. Also
// makes the events partitions of the coming days, by this machine's clock.
// Throws PgError, also when the database holds a newer schema than this stagelog's.
void pg_create_or_migrate(PgConnection& c);

// The retention pass over the events partitions, in a transaction of its own under the schema's
// lock: makes the partitions of the days after now_ns's (moving rows of those days out of the
// default partition), and drops the partitions of days that ended at or before now_ns. Returns
// how many events the dropped partitions held. Expired rows of the default partition are the
// caller's to delete. Throws PgError, also when a lock is not had within 2 s (inserts would
// queue behind it): the next pass tries again.
std::size_t pg_partition_events(PgConnection& c, std::int64_t now_ns);

}  // namespace stagelog::detail
