#pragma once

#include <chrono>
#include <filesystem>
#include <memory>

#include "stagelog/store/store.hpp"

namespace stagelog::store {

struct SqliteStoreOptions {
  // How long a write waits for another process's write transaction on the same file.
  std::chrono::milliseconds busy_timeout{5000};
  // false: synchronous=NORMAL. Still consistent after any crash, but a power cut may lose the
  // last acknowledged writes. For benchmarks and throwaway stores.
  bool synchronous_full = true;
};

// The embedded Store (stagelog::store_sqlite): one SQLite file in WAL mode, created with its
// schema when missing. A write returns after its transaction is committed and (with
// synchronous_full) fsynced. Every method may be called from any thread. Throws
// stagelog::Error naming the path: its folder does not exist, the file is not a stagelog
// store, its schema is newer than this stagelog's, or SQLite cannot open it.
std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& path,
                                         SqliteStoreOptions options = {});

}  // namespace stagelog::store
