// The PostgreSQL store's query side: step facts, derived from each write's steps before its
// transaction and stored in it (the SQLite store derives the same facts on an indexer thread),
// and the listings, statistics and failure patterns read from them. Statistics are counted as the
// SQLite store counts them: per hour, stage and worker, with the same duration histogram
// (store/step_index.hpp), so that percentiles are the same numbers, not percentile_cont's.

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "store/postgres_facts.hpp"
#include "store/postgres_store.hpp"
#include "store/step_index.hpp"
#include "store/store_common.hpp"

namespace stagelog::store {

using detail::floor_to;
using detail::has_duration;
using detail::kHourNs;
using detail::PgConnection;
using detail::PgParams;
using detail::PgResult;
using detail::PgTransaction;

void PostgresStore::send_facts(detail::PgPipeline& pipe,
                               std::span<PreparedExecution* const> executions) {
  using detail::PgArray;
  PgArray execution(PgArray::Type::Int8), n(PgArray::Type::Int8), ts(PgArray::Type::Int8),
      stage(PgArray::Type::Bytea), worker(PgArray::Type::Bytea), status(PgArray::Type::Bytea),
      duration(PgArray::Type::Int8), whole_job(PgArray::Type::Bool), pattern(PgArray::Type::Bytea),
      message(PgArray::Type::Bytea), error_details(PgArray::Type::Bytea),
      words(PgArray::Type::Text);
  for (const PreparedExecution* e : executions) {
    std::int64_t step = e->first;
    for (const detail::StepFact& f : e->facts) {
      execution.int64(e->id);
      n.int64(step++);
      ts.int64(f.ts_ns);
      stage.bytes(f.stage);
      worker.bytes(f.worker);
      status.bytes(f.status);
      duration.int64(f.duration_ms);
      whole_job.boolean(f.whole_job);
      pattern.bytes(f.pattern);
      message.bytes(f.message);
      error_details.bytes(f.error_details);
      words.bytes(f.words);
    }
  }
  if (execution.size() == 0) return;
  pipe.send(
      "INSERT INTO step_facts (execution, n, ts_ns, stage, worker, status, duration_ms, "
      "whole_job, pattern, message, error_details, words) SELECT execution, n, ts_ns, stage, "
      "worker, status, duration_ms, whole_job, pattern, message, error_details, "
      "array_to_tsvector(string_to_array(words, ' ')) FROM unnest($1::int8[], $2::int8[], "
      "$3::int8[], $4::bytea[], $5::bytea[], $6::bytea[], $7::int8[], $8::bool[], $9::bytea[], "
      "$10::bytea[], $11::bytea[], $12::text[]) AS d(execution, n, ts_ns, stage, worker, "
      "status, duration_ms, whole_job, pattern, message, error_details, words)",
      PgParams()
          .array(execution)
          .array(n)
          .array(ts)
          .array(stage)
          .array(worker)
          .array(status)
          .array(duration)
          .array(whole_job)
          .array(pattern)
          .array(message)
          .array(error_details)
          .array(words));
}

Result<std::vector<ExecutionSummary>> PostgresStore::list_executions(const ExecutionQuery& query,
                                                                     std::int64_t now_ns) {
  if (auto why = detail::query_error(query)) {
    return Error("postgres store " + where_ + ": cannot list executions: " + *why);
  }
  std::string words = query.text ? detail::search_tsquery(*query.text) : std::string();
  if (query.text && words.empty()) return std::vector<ExecutionSummary>{};  // No word: no match.

  // What the row reading below reads, in order. Every value of the query is a parameter.
  PgParams p;
  std::string sql =
      "SELECT id, tracking_id, attempt, execution_id, started_at_ns, completed_at_ns, "
      "duration_ms, final_status, steps_count, metadata_json FROM executions "
      "WHERE expires_at_ns > ";
  sql += p.int64(now_ns).last();
  if (query.final_status) {
    sql += *query.final_status == detail::kUnknownFinalStatus
               ? " AND final_status IS NULL"
               : " AND final_status = " + p.bytes(*query.final_status).last();
  }
  if (query.since_ns) sql += " AND started_at_ns >= " + p.int64(*query.since_ns).last();
  if (query.until_ns) sql += " AND started_at_ns < " + p.int64(*query.until_ns).last();
  if (query.worker) {
    sql +=
        " AND EXISTS (SELECT 1 FROM step_facts f WHERE f.execution = executions.id AND "
        "f.worker = " +
        p.bytes(*query.worker).last() + ")";
  }
  if (query.stage) {
    sql +=
        " AND EXISTS (SELECT 1 FROM step_facts f WHERE f.execution = executions.id AND "
        "f.stage = " +
        p.bytes(*query.stage).last() + ")";
  }
  if (query.text) {
    sql += " AND id IN (SELECT execution FROM step_facts WHERE words @@ " + p.text(words).last() +
           "::tsquery)";
  }
  for (const auto& [key, value] : query.metadata) {
    sql += " AND metadata_pairs @> ARRAY[" + p.bytes(key + '\0' + value).last() + "]";
  }
  if (query.after) {
    std::string ns = p.int64(query.after->ns).last();
    std::string seq = p.int64(query.after->seq).last();
    sql += " AND (started_at_ns, id) < (" + ns + ", " + seq + ")";
  }
  sql += " ORDER BY started_at_ns DESC, id DESC LIMIT " +
         p.int64(detail::row_limit(query.limit)).last();

  return call<std::vector<ExecutionSummary>>("cannot list executions", [&](PgConnection& c) {
    // The attempts and their steps from one snapshot.
    PgTransaction tx(c, PgTransaction::Mode::Snapshot);
    PgResult r = c.exec(sql, p);
    std::vector<ExecutionSummary> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      ExecutionSummary& e = out.emplace_back();
      e.position = Position{r.int64(i, 4), r.int64(i, 0)};
      e.tracking_id = r.bytes(i, 1);
      e.attempt.n = static_cast<int>(r.int64(i, 2));
      e.attempt.execution_id = r.bytes(i, 3);
      e.attempt.started_at_ns = r.int64(i, 4);
      e.attempt.completed_at_ns = r.opt_int64(i, 5);
      e.attempt.duration_ms = r.opt_int64(i, 6);
      e.attempt.final_status =
          r.is_null(i, 7) ? std::string(detail::kUnknownFinalStatus) : r.bytes(i, 7);
      e.attempt.step_count = static_cast<std::size_t>(r.int64(i, 8));
      e.metadata_json = r.bytes(i, 9);
    }
    if (query.with_steps) {
      for (ExecutionSummary& e : out) {
        read_steps(c, e.position.seq, e.attempt.execution_id, e.steps);
      }
    }
    tx.commit();
    return out;
  });
}

Result<std::vector<StageStats>> PostgresStore::stage_stats(const StageStatsQuery& query,
                                                           std::int64_t now_ns) {
  return call<std::vector<StageStats>>("cannot read stage statistics", [&](PgConnection& c) {
    // Steps by hour, stage, worker, status and duration: what the SQLite store's hourly
    // rollups hold. An hour's row of a stage and worker counts while one of the attempts that
    // add to it is live, as a rollup does.
    // Hours from since's to the last that starts before until: steps from since's hour to
    // the end of that one.
    const std::int64_t from = floor_to(query.since_ns, kHourNs);
    const std::int64_t last_hour = floor_to(query.until_ns - 1, kHourNs);
    const std::int64_t to = last_hour > INT64_MAX - kHourNs ? INT64_MAX : last_hour + kHourNs;
    PgResult r = c.exec(
        "SELECT f.ts_ns - ((f.ts_ns % 3600000000000) + 3600000000000) % 3600000000000, "
        "f.stage, f.worker, f.status, f.duration_ms, COUNT(*), MAX(e.expires_at_ns) "
        "FROM step_facts f JOIN executions e ON e.id = f.execution WHERE NOT f.whole_job "
        "AND f.ts_ns >= $1 AND f.ts_ns < $2 GROUP BY 1, 2, 3, 4, 5",
        PgParams().int64(from).int64(to));
    struct Group {
      detail::DurationTally tally;
      std::int64_t expires = 0;
    };
    std::map<std::tuple<std::int64_t, std::string, std::string>, Group> hours;
    for (int i = 0; i < r.rows(); ++i) {
      Group& g = hours[{r.int64(i, 0), r.bytes(i, 1), r.bytes(i, 2)}];
      std::string status = r.bytes(i, 3);
      std::int64_t n = r.int64(i, 5);
      g.expires = std::max(g.expires, r.int64(i, 6));
      if (status == "skipped") g.tally.skipped += n;
      if (!has_duration(status)) continue;
      g.tally.count += n;
      if (status == "failed") g.tally.failures += n;
      std::int64_t d = r.opt_int64(i, 4).value_or(0);
      g.tally.histogram.add(d, n);
      g.tally.max_ms = std::max(g.tally.max_ms, d);
    }
    detail::StageStatsSum sum(query.by_worker, query.daily);
    for (const auto& [key, g] : hours) {
      if (g.expires <= now_ns || (g.tally.count == 0 && g.tally.skipped == 0)) continue;
      const auto& [start, stage, worker] = key;
      sum.add(start, stage, worker, g.tally);
    }
    return sum.rows();
  });
}

Result<std::vector<FailurePattern>> PostgresStore::failure_patterns(const FailureQuery& query,
                                                                    std::int64_t now_ns) {
  return call<std::vector<FailurePattern>>("cannot read failure patterns", [&](PgConnection& c) {
    PgTransaction tx(c, PgTransaction::Mode::Snapshot);
    // The failed steps of live attempts in the query's range ($1 to $2, $3 now).
    const std::string failed =
        " FROM step_facts f JOIN executions e ON e.id = f.execution WHERE f.pattern IS NOT NULL "
        "AND f.ts_ns >= $1 AND f.ts_ns < $2 AND e.expires_at_ns > $3";
    PgResult groups = c.exec(
        "SELECT f.pattern, COUNT(*), MIN(f.ts_ns), MAX(f.ts_ns)" + failed +
            " GROUP BY f.pattern ORDER BY COUNT(*) DESC, MAX(f.ts_ns) DESC, f.pattern LIMIT $4",
        PgParams()
            .int64(query.since_ns)
            .int64(query.until_ns)
            .int64(now_ns)
            .int64(static_cast<std::int64_t>(std::min<std::size_t>(query.limit, 1'000'000))));
    std::vector<FailurePattern> out;
    for (int i = 0; i < groups.rows(); ++i) {
      FailurePattern& p = out.emplace_back();
      p.pattern = groups.bytes(i, 0);
      p.count = groups.int64(i, 1);
      p.first_seen_ns = groups.int64(i, 2);
      p.last_seen_ns = groups.int64(i, 3);
    }
    for (FailurePattern& p : out) {
      auto params = [&] {
        return PgParams()
            .int64(query.since_ns)
            .int64(query.until_ns)
            .int64(now_ns)
            .bytes(p.pattern);
      };
      PgResult stages = c.exec(
          "SELECT DISTINCT f.stage" + failed + " AND f.pattern = $4 ORDER BY f.stage", params());
      for (int i = 0; i < stages.rows(); ++i) p.stages.push_back(stages.bytes(i, 0));
      PgResult examples = c.exec("SELECT e.tracking_id, f.error_details, f.message" + failed +
                                     " AND f.pattern = $4 ORDER BY f.ts_ns DESC, f.id DESC "
                                     "LIMIT 100",
                                 params());
      for (int i = 0; i < examples.rows() && p.tracking_ids.size() < 3; ++i) {
        if (p.example.empty()) {
          p.example = examples.is_null(i, 1) ? examples.bytes(i, 2) : examples.bytes(i, 1);
        }
        std::string id = examples.bytes(i, 0);
        if (std::find(p.tracking_ids.begin(), p.tracking_ids.end(), id) == p.tracking_ids.end()) {
          p.tracking_ids.push_back(std::move(id));
        }
      }
    }
    tx.commit();
    return out;
  });
}

}  // namespace stagelog::store
