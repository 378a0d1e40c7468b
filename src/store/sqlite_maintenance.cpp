#include "store/sqlite_maintenance.hpp"

#include <pthread.h>
#include <signal.h>

namespace stagelog::detail {

Checkpointer::Checkpointer(Database& writer, const std::string& path,
                           std::chrono::milliseconds busy_timeout)
    : writer_(writer), db_(path, /*create=*/false) {
  sqlite3_busy_timeout(db_.get(), static_cast<int>(busy_timeout.count()));
  // A connection checkpoints only once it has opened the WAL, which a first read does.
  db_.exec("SELECT 1 FROM sqlite_schema LIMIT 1");
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "stagelog-ckpt");
    sigset_t all;  // Process signals are for the application's threads, not this one.
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    loop();
  });
  sqlite3_wal_hook(writer_.get(), &Checkpointer::on_commit, this);
}

Checkpointer::~Checkpointer() {
  sqlite3_wal_hook(writer_.get(), nullptr, nullptr);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

int Checkpointer::on_commit(void* self, sqlite3* db, const char* schema, int pages) {
  if (pages >= kWriterCheckpointPages) {
    sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else if (pages >= kCheckpointPages) {
    static_cast<Checkpointer*>(self)->request();
  }
  return SQLITE_OK;  // A checkpoint that could not run is tried again at a later commit.
}

void Checkpointer::request() {
  {
    std::lock_guard lock(mutex_);
    wanted_ = true;
  }
  wake_.notify_one();
}

void Checkpointer::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || wanted_; });
    if (stopping_) return;
    wanted_ = false;
    lock.unlock();
    sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    lock.lock();
  }
}

Purger::Purger(Database& db)
    : db_(db),
      executions_(db, "DELETE FROM executions WHERE expires_at_ns <= ?1"),
      events_(db, "DELETE FROM events WHERE expires_at_ns <= ?1"),
      batches_(db, "DELETE FROM batches WHERE expires_at_ns <= ?1") {}

std::size_t Purger::purge(std::int64_t now_ns) {
  std::size_t removed = 0;
  for (Statement* s : {&executions_, &events_}) {
    ScopedReset reset(*s);
    s->bind(1, now_ns).run();
    removed += static_cast<std::size_t>(db_.changes());  // Cascaded rows not counted.
  }
  ScopedReset reset(batches_);
  batches_.bind(1, now_ns).run();
  return removed;
}

}  // namespace stagelog::detail
