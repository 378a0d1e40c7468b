#pragma once

// The Store conformance suite: what every Store implementation (SQLite, PostgreSQL) must do. A
// store's test file instantiates it with a way to make a fresh, empty backing storage:
//
//   INSTANTIATE_TEST_SUITE_P(SqliteStore, StoreConformanceTest,
//                            ::testing::Values(test::StoreBackendFactory{"sqlite", make}),
//                            test::StoreBackendName{});
//
// Include it from one test file per executable: it defines the tests.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "line_mutator.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::test {

// One fresh, empty backing storage (a new SQLite file, an empty PostgreSQL schema). Each open()
// connects a new Store to it; every Store it returns sees what the others wrote, also after
// they are destroyed (the "reopen" test).
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  virtual std::unique_ptr<store::Store> open() = 0;
};

struct StoreBackendFactory {
  std::string name;  // The test-name suffix: letters, digits and '_'.
  std::function<std::unique_ptr<StoreBackend>()> make;
};

struct StoreBackendName {
  std::string operator()(const ::testing::TestParamInfo<StoreBackendFactory>& info) const {
    return info.param.name;
  }
};

inline void PrintTo(const StoreBackendFactory& f, std::ostream* os) { *os << f.name; }

namespace conformance {

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kT0 = 1'767'555'015'234'000'000;  // 2026-01-04T19:30:15.234Z
constexpr std::int64_t kDay = 86'400 * kSecond;

// Seed 004's example: three completed steps and a failure with a stack trace.
inline Execution seed_execution(std::string tracking_id = "60B3RNTB",
                                std::string execution_id = "exec_1703123456789_xyz123abc",
                                std::int64_t started_at_ns = kT0) {
  Execution e;
  e.tracking_id = std::move(tracking_id);
  e.execution_id = std::move(execution_id);
  e.started_at_ns = started_at_ns;
  e.completed_at_ns = started_at_ns + 150 * kSecond;
  e.duration_ms = 150000;
  e.metadata_json = R"({"tier":"comprehensive","company":"Acme Corp"})";
  e.steps = {
      {"initialization", started_at_ns, "completed",
       "Started processing for Acme Corp (comprehensive tier)", std::nullopt, "{}"},
      {"status_update", started_at_ns + kSecond, "completed", "Updated status to processing",
       std::nullopt, "{}"},
      {"orchestrator_execution", started_at_ns + 2 * kSecond, "in_progress",
       "Starting orchestrator execution...", std::nullopt, R"({"retry_attempt":2})"},
      {"error_handling", started_at_ns + 150 * kSecond, "failed",
       "Processing failed: AI generation timeout after 480000ms",
       "Error: AI generation timeout after 480000ms\n at AIService.generateContent "
       "(worker.js:1234:56)",
       R"({"error_code":"E_TIMEOUT","retry_possible":true,"operation_params":{"a":[1,2]}})"},
  };
  return e;
}

inline void expect_same(const Execution& got, const Execution& want) {
  EXPECT_EQ(got.tracking_id, want.tracking_id);
  EXPECT_EQ(got.execution_id, want.execution_id);
  EXPECT_EQ(got.started_at_ns, want.started_at_ns);
  EXPECT_EQ(got.completed_at_ns, want.completed_at_ns);
  EXPECT_EQ(got.duration_ms, want.duration_ms);
  EXPECT_EQ(got.metadata_json, want.metadata_json);
  ASSERT_EQ(got.steps.size(), want.steps.size());
  for (std::size_t i = 0; i < got.steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    EXPECT_EQ(got.steps[i].step, want.steps[i].step);
    EXPECT_EQ(got.steps[i].timestamp_ns, want.steps[i].timestamp_ns);
    EXPECT_EQ(got.steps[i].status, want.steps[i].status);
    EXPECT_EQ(got.steps[i].message, want.steps[i].message);
    EXPECT_EQ(got.steps[i].error_details, want.steps[i].error_details);
    EXPECT_EQ(got.steps[i].custom_json, want.steps[i].custom_json);
  }
}

inline OwnedEvent event(std::string run, std::int64_t ts_ns, std::string stage = "load",
                        Status status = Status::Completed) {
  OwnedEvent e;
  e.ts_ns = ts_ns;
  e.kind = Kind::Stage;
  e.level = Level::Info;
  e.status = status;
  e.run = std::move(run);
  e.worker = "T0_00";
  e.component = "app";
  e.stage = std::move(stage);
  e.message = "done";
  e.elapsed_ns = 13'200'000'000;
  e.pid = 4242;
  e.host = "gpu-node-1";
  return e;
}

inline void expect_same(const OwnedEvent& got, const OwnedEvent& want) {
  EXPECT_EQ(got.ts_ns, want.ts_ns);
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.level, want.level);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.run, want.run);
  EXPECT_EQ(got.worker, want.worker);
  EXPECT_EQ(got.component, want.component);
  EXPECT_EQ(got.stage, want.stage);
  EXPECT_EQ(got.message, want.message);
  EXPECT_EQ(got.elapsed_ns, want.elapsed_ns);
  EXPECT_EQ(got.pid, want.pid);
  EXPECT_EQ(got.host, want.host);
  EXPECT_EQ(got.fields_in_message, want.fields_in_message);
  ASSERT_EQ(got.fields().size(), want.fields().size());
  for (std::size_t i = 0; i < got.fields().size(); ++i) {
    EXPECT_EQ(got.fields()[i].key, want.fields()[i].key);
    EXPECT_EQ(got.fields()[i].value, want.fields()[i].value) << "field " << i;
  }
}

}  // namespace conformance

class StoreConformanceTest : public ::testing::TestWithParam<StoreBackendFactory> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    store_ = backend_->open();
  }

  // Unwraps a Result, failing the test with its error.
  template <typename T>
  static T ok(stagelog::Result<T> r) {
    if (!r) {
      ADD_FAILURE() << r.error().what();
      throw std::runtime_error(r.error().what());
    }
    return std::move(*r);
  }
  static void ok(stagelog::Result<void> r) {
    if (!r) {
      ADD_FAILURE() << r.error().what();
      throw std::runtime_error(r.error().what());
    }
  }

  std::unique_ptr<StoreBackend> backend_;
  std::unique_ptr<store::Store> store_;
};

namespace conformance {
using ::testing::ElementsAre;
}  // namespace conformance

TEST_P(StoreConformanceTest, PutThenLatestKeepsEveryField) {
  using namespace conformance;
  Execution e = seed_execution();
  ok(store_->put_execution(e, kT0 + 7 * kDay));
  auto got = ok(store_->latest(e.tracking_id, kT0));
  ASSERT_TRUE(got.has_value());
  expect_same(*got, e);
}

TEST_P(StoreConformanceTest, KeepsOptionalFieldsAbsentAndEmptyStepLists) {
  using namespace conformance;
  Execution e;
  e.tracking_id = "running";
  e.execution_id = "exec_1";
  e.started_at_ns = kT0;
  ok(store_->put_execution(e, kT0 + kDay));
  auto got = ok(store_->latest("running", kT0));
  ASSERT_TRUE(got.has_value());
  expect_same(*got, e);
  EXPECT_FALSE(got->completed_at_ns.has_value());
  EXPECT_FALSE(got->duration_ms.has_value());
}

TEST_P(StoreConformanceTest, UnknownTrackingIdIsNotAnError) {
  using namespace conformance;
  EXPECT_FALSE(ok(store_->latest("nobody", kT0)).has_value());
  EXPECT_FALSE(ok(store_->attempt("nobody", 1, kT0)).has_value());
  EXPECT_TRUE(ok(store_->attempts("nobody", kT0)).empty());
  EXPECT_TRUE(ok(store_->events("nobody", kT0, 100)).empty());
}

TEST_P(StoreConformanceTest, KeepsEveryAttemptNumberedFromOne) {
  using namespace conformance;
  Execution first = seed_execution("T1", "exec_a", kT0);
  Execution second = seed_execution("T1", "exec_b", kT0 + 60 * kSecond);
  second.steps.resize(2);
  second.completed_at_ns.reset();
  ok(store_->put_execution(first, kT0 + kDay));
  ok(store_->put_execution(second, kT0 + kDay));
  ok(store_->put_execution(seed_execution("other", "exec_c", kT0), kT0 + kDay));

  auto list = ok(store_->attempts("T1", kT0));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].n, 1);
  EXPECT_EQ(list[0].execution_id, "exec_a");
  EXPECT_EQ(list[0].started_at_ns, kT0);
  EXPECT_EQ(list[0].completed_at_ns, kT0 + 150 * kSecond);
  EXPECT_EQ(list[0].duration_ms, 150000);
  EXPECT_EQ(list[0].final_status, "failed");
  EXPECT_EQ(list[0].step_count, 4u);
  EXPECT_EQ(list[1].n, 2);
  EXPECT_EQ(list[1].execution_id, "exec_b");
  EXPECT_EQ(list[1].completed_at_ns, std::nullopt);
  EXPECT_EQ(list[1].final_status, "completed");
  EXPECT_EQ(list[1].step_count, 2u);

  auto one = ok(store_->attempt("T1", 1, kT0));
  ASSERT_TRUE(one.has_value());
  expect_same(*one, first);
  auto two = ok(store_->attempt("T1", 2, kT0));
  ASSERT_TRUE(two.has_value());
  expect_same(*two, second);
  EXPECT_FALSE(ok(store_->attempt("T1", 3, kT0)).has_value());
  EXPECT_FALSE(ok(store_->attempt("T1", 0, kT0)).has_value());
  EXPECT_EQ(ok(store_->attempts("other", kT0)).size(), 1u);
}

TEST_P(StoreConformanceTest, AttemptWithoutStepsHasUnknownFinalStatus) {
  using namespace conformance;
  Execution e = seed_execution();
  e.steps.clear();
  ok(store_->put_execution(e, kT0 + kDay));
  auto list = ok(store_->attempts(e.tracking_id, kT0));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].final_status, "unknown");
  EXPECT_EQ(list[0].step_count, 0u);
}

TEST_P(StoreConformanceTest, SameExecutionIdReplacesThatAttempt) {
  using namespace conformance;
  Execution a = seed_execution("T1", "exec_a", kT0);
  Execution b = seed_execution("T1", "exec_b", kT0 + kSecond);
  Execution growing = a;
  growing.steps.resize(1);
  growing.completed_at_ns.reset();
  growing.duration_ms.reset();
  ok(store_->put_execution(growing, kT0 + kDay));
  ok(store_->put_execution(b, kT0 + kDay));
  ok(store_->put_execution(a, kT0 + kDay));  // exec_a re-posted with every step.

  auto list = ok(store_->attempts("T1", kT0));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].execution_id, "exec_a");
  EXPECT_EQ(list[0].n, 1);  // Keeps its number.
  EXPECT_EQ(list[0].step_count, 4u);
  EXPECT_EQ(list[1].execution_id, "exec_b");
  auto one = ok(store_->attempt("T1", 1, kT0));
  ASSERT_TRUE(one.has_value());
  expect_same(*one, a);
  // Fewer steps on a later post replace more: the document is the truth.
  ok(store_->put_execution(growing, kT0 + kDay));
  one = ok(store_->attempt("T1", 1, kT0));
  ASSERT_TRUE(one.has_value());
  expect_same(*one, growing);
}

TEST_P(StoreConformanceTest, ReplacingAnAttemptRenewsItsExpiry) {
  using namespace conformance;
  Execution e = seed_execution();
  ok(store_->put_execution(e, kT0 + kSecond));
  ok(store_->put_execution(e, kT0 + kDay));
  EXPECT_TRUE(ok(store_->latest(e.tracking_id, kT0 + 2 * kSecond)).has_value());
  EXPECT_EQ(ok(store_->purge(kT0 + 2 * kSecond)), 0u);
}

TEST_P(StoreConformanceTest, LatestIsTheLatestStartThenTheLaterInsertion) {
  using namespace conformance;
  // Posted out of order: the later start wins, not the later post.
  ok(store_->put_execution(seed_execution("T1", "late", kT0 + 10 * kSecond), kT0 + kDay));
  ok(store_->put_execution(seed_execution("T1", "early", kT0), kT0 + kDay));
  auto got = ok(store_->latest("T1", kT0));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->execution_id, "late");
  // Same start: the later first post wins, and a re-post does not move it.
  ok(store_->put_execution(seed_execution("T2", "x", kT0), kT0 + kDay));
  ok(store_->put_execution(seed_execution("T2", "y", kT0), kT0 + kDay));
  ok(store_->put_execution(seed_execution("T2", "x", kT0), kT0 + kDay));
  got = ok(store_->latest("T2", kT0));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->execution_id, "y");
}

TEST_P(StoreConformanceTest, ExpiredDataIsNeverReturnedEvenBeforePurge) {
  using namespace conformance;
  ok(store_->put_execution(seed_execution("T1", "old", kT0), kT0 + kDay));
  ok(store_->put_execution(seed_execution("T1", "new", kT0 + kSecond), kT0 + kSecond + kDay));
  std::vector<OwnedEvent> events = {event("run-1", kT0)};
  ok(store_->append_events(events, kT0 + kDay));

  // Live until the instant of expiry, gone at it.
  auto got = ok(store_->latest("T1", kT0 + kDay - 1));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->execution_id, "new");
  EXPECT_EQ(ok(store_->attempts("T1", kT0 + kDay - 1)).size(), 2u);
  EXPECT_EQ(ok(store_->events("run-1", kT0 + kDay - 1, 10)).size(), 1u);

  EXPECT_TRUE(ok(store_->attempt("T1", 2, kT0 + kDay)).has_value());
  EXPECT_FALSE(ok(store_->attempt("T1", 1, kT0 + kDay)).has_value());
  auto list = ok(store_->attempts("T1", kT0 + kDay));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].n, 2);  // Numbers stay put when an earlier attempt expires.
  EXPECT_TRUE(ok(store_->events("run-1", kT0 + kDay, 10)).empty());

  // The newest expired too: latest does not fall back to anything.
  EXPECT_FALSE(ok(store_->latest("T1", kT0 + kSecond + kDay)).has_value());
  // A newer-started attempt that expired does not hide an older live one.
  ok(store_->put_execution(seed_execution("T3", "live", kT0), kT0 + 2 * kDay));
  ok(store_->put_execution(seed_execution("T3", "short", kT0 + kSecond), kT0 + kSecond));
  got = ok(store_->latest("T3", kT0 + kDay));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->execution_id, "live");
}

TEST_P(StoreConformanceTest, PurgeRemovesExactlyTheExpiredRows) {
  using namespace conformance;
  ok(store_->put_execution(seed_execution("T1", "a", kT0), kT0 + 10));
  ok(store_->put_execution(seed_execution("T1", "b", kT0 + 1), kT0 + 20));
  ok(store_->put_execution(seed_execution("T2", "c", kT0), kT0 + 30));
  std::vector<OwnedEvent> early = {event("r", kT0), event("r", kT0 + 1)};
  std::vector<OwnedEvent> late = {event("r", kT0 + 2)};
  ok(store_->append_events(early, kT0 + 10));
  ok(store_->append_events(late, kT0 + 30));

  EXPECT_EQ(ok(store_->purge(kT0 + 9)), 0u);
  EXPECT_EQ(ok(store_->purge(kT0 + 10)), 3u);  // Attempt a and two events.
  EXPECT_EQ(ok(store_->purge(kT0 + 10)), 0u);
  // What is left is still there when read at an earlier time: purge removed only those.
  auto list = ok(store_->attempts("T1", kT0));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].execution_id, "b");
  EXPECT_EQ(list[0].n, 2);
  EXPECT_EQ(ok(store_->events("r", kT0, 10)).size(), 1u);
  EXPECT_TRUE(ok(store_->latest("T2", kT0)).has_value());

  EXPECT_EQ(ok(store_->purge(kT0 + 1000)), 3u);
  EXPECT_TRUE(ok(store_->attempts("T1", kT0)).empty());
  EXPECT_TRUE(ok(store_->events("r", kT0, 10)).empty());
}

TEST_P(StoreConformanceTest, TrackingIdsAreOpaqueStrings) {
  using namespace conformance;
  const std::vector<std::string> ids = {
      "a/b",
      "../../etc/passwd",
      "..",
      "it's \"quoted\"",
      "x'; DROP TABLE executions; --",
      "%_*?[]",
      "Ünïcødé ✓ 日本語 🚀",
      " leading and trailing ",
      "execution_log:60B3RNTB",
      std::string("nul\0byte", 8),
      "",
  };
  std::int64_t i = 0;
  for (const std::string& id : ids) {
    ok(store_->put_execution(seed_execution(id, "exec_" + std::to_string(i), kT0 + i), kT0 + kDay));
    std::vector<OwnedEvent> events = {event(id, kT0 + i)};
    ok(store_->append_events(events, kT0 + kDay));
    ++i;
  }
  i = 0;
  for (const std::string& id : ids) {
    SCOPED_TRACE("tracking id \"" + id + "\"");
    auto got = ok(store_->latest(id, kT0));
    ASSERT_TRUE(got.has_value());
    expect_same(*got, seed_execution(id, "exec_" + std::to_string(i), kT0 + i));
    EXPECT_EQ(ok(store_->attempts(id, kT0)).size(), 1u);  // No prefix or pattern matching.
    auto events = ok(store_->events(id, kT0, 10));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].run, id);
    ++i;
  }
  EXPECT_FALSE(ok(store_->latest("nul", kT0)).has_value());
  EXPECT_FALSE(ok(store_->latest("%", kT0)).has_value());
}

TEST_P(StoreConformanceTest, EventsRoundTripEveryField) {
  using namespace conformance;
  OwnedEvent stage = event("run-1", kT0);
  stage.add_field("tokens", FieldValue{std::int64_t{1247}});
  stage.add_field("big", FieldValue{std::uint64_t{18'000'000'000'000'000'000u}});
  stage.add_field("negative", FieldValue{std::int64_t{-5}});
  stage.add_field("ratio", FieldValue{0.1});
  stage.add_field("zero", FieldValue{-0.0});
  stage.add_field("ok", FieldValue{true});
  stage.add_field("path", FieldValue{std::string_view("C:\\tmp\n\"x\" ✓")});
  stage.add_field("tokens", FieldValue{std::int64_t{2}});  // Repeated keys are kept.
  OwnedEvent log;
  log.ts_ns = kT0 + 1;
  log.kind = Kind::Log;
  log.level = Level::Error;
  log.run = "run-1";
  log.component = "worker";
  log.message = "Claimed task: d5de16d7 (load_llm)";
  log.fields_in_message = true;
  log.add_field("task", FieldValue{std::string_view("d5de16d7")});
  std::vector<OwnedEvent> events = {stage, log};
  ok(store_->append_events(events, kT0 + kDay));

  auto got = ok(store_->events("run-1", kT0, 100));
  ASSERT_EQ(got.size(), 2u);
  expect_same(got[0], stage);
  expect_same(got[1], log);
  EXPECT_FALSE(got[1].elapsed_ns.has_value());
  EXPECT_EQ(got[1].status, Status::None);
}

// Events of run "r" (and one of "other") appended in two writes, out of timestamp order:
// stages "c" (ts +30), "a" (+10), then "b1" and "b2" (both +20). Returns the first write.
inline std::vector<OwnedEvent> append_events_out_of_order(store::Store& store) {
  using namespace conformance;
  std::vector<OwnedEvent> first = {event("r", kT0 + 30, "c"), event("r", kT0 + 10, "a")};
  std::vector<OwnedEvent> second = {event("r", kT0 + 20, "b1"), event("r", kT0 + 20, "b2"),
                                    event("other", kT0, "x")};
  EXPECT_TRUE(store.append_events(first, kT0 + kDay));
  EXPECT_TRUE(store.append_events(second, kT0 + kDay));
  return first;
}

TEST_P(StoreConformanceTest, EventsComeInTimestampOrderThenAppendOrderUpToTheLimit) {
  using namespace conformance;
  append_events_out_of_order(*store_);
  ok(store_->append_events({}, kT0 + kDay));

  std::vector<std::string> stages;
  for (const OwnedEvent& e : ok(store_->events("r", kT0, 100))) stages.push_back(e.stage);
  EXPECT_THAT(stages, ElementsAre("a", "b1", "b2", "c"));
  stages.clear();
  for (const OwnedEvent& e : ok(store_->events("r", kT0, 2))) stages.push_back(e.stage);
  EXPECT_THAT(stages, ElementsAre("a", "b1"));
  EXPECT_TRUE(ok(store_->events("r", kT0, 0)).empty());
}

// Enough events in one write for a store that inserts them several to a statement to take
// every path: each one comes back whole, in order.
TEST_P(StoreConformanceTest, ALargeWriteKeepsEveryEventWhole) {
  using namespace conformance;
  // Built piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + string.
  auto numbered = [](const char* prefix, int i) {
    std::string out = prefix;
    out += std::to_string(i);
    return out;
  };
  std::vector<OwnedEvent> events;
  for (int i = 0; i < 47; ++i) {
    OwnedEvent e = event("big", kT0 + i, numbered("stage-", i));
    e.kind = i % 3 == 0 ? Kind::Log : Kind::Stage;
    e.level = i % 2 == 0 ? Level::Info : Level::Warning;
    e.status = i % 3 == 0 ? Status::None : Status::Completed;
    e.worker = numbered("w", i % 5);
    e.component = numbered("c", i);
    e.message = numbered("message ", i);
    if (i % 4 == 0) e.elapsed_ns = std::int64_t{i} * 1000;
    e.pid = 1000 + i;
    e.host = numbered("host-", i);
    e.fields_in_message = i % 2 == 0;
    e.add_field("i", FieldValue{std::int64_t{i}});
    events.push_back(std::move(e));
  }
  std::vector<store::EventsWrite> write = {{events, kT0 + kDay}};
  ok(store_->write(write, {}));
  auto got = ok(store_->events("big", kT0, 100));
  ASSERT_EQ(got.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(i);
    expect_same(got[i], events[i]);
  }
}

// The tracking ids of a listing, in its order.
inline std::vector<std::string> ids(const std::vector<store::ExecutionSummary>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.tracking_id);
  return out;
}

TEST_P(StoreConformanceTest, ListsLiveAttemptsNewestFirstFilteredByStatusTimeAndMetadata) {
  using namespace conformance;
  Execution failed = seed_execution("A", "exec_a", kT0);  // Last step failed.
  Execution done = seed_execution("B", "exec_b", kT0 + kSecond);
  done.steps.resize(2);  // Last step completed.
  done.metadata_json = R"({"tier":"basic","n":3,"ok":true,"ratio":2.5,"none":null})";
  Execution open = seed_execution("C", "exec_c", kT0 + 2 * kSecond);
  open.steps.clear();
  open.completed_at_ns.reset();
  Execution expired = seed_execution("D", "exec_d", kT0 + 3 * kSecond);
  ok(store_->put_execution(failed, kT0 + kDay));
  ok(store_->put_execution(done, kT0 + kDay));
  ok(store_->put_execution(open, kT0 + kDay));
  ok(store_->put_execution(expired, kT0 + 1));

  auto list = [&](const store::ExecutionQuery& q) {
    return ids(ok(store_->list_executions(q, kT0 + 1)));
  };
  store::ExecutionQuery all;
  EXPECT_THAT(list(all), ElementsAre("C", "B", "A"));
  auto rows = ok(store_->list_executions(all, kT0 + 1));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].attempt.execution_id, "exec_b");
  EXPECT_EQ(rows[1].attempt.n, 1);
  EXPECT_EQ(rows[1].attempt.final_status, "completed");
  EXPECT_EQ(rows[1].attempt.step_count, 2u);
  EXPECT_EQ(rows[1].metadata_json, done.metadata_json);
  EXPECT_EQ(rows[0].attempt.final_status, "unknown");

  store::ExecutionQuery q;
  q.final_status = "failed";
  EXPECT_THAT(list(q), ElementsAre("A"));
  q.final_status = "unknown";
  EXPECT_THAT(list(q), ElementsAre("C"));
  q = {};
  q.since_ns = kT0 + kSecond;
  EXPECT_THAT(list(q), ElementsAre("C", "B"));
  q.until_ns = kT0 + 2 * kSecond;
  EXPECT_THAT(list(q), ElementsAre("B"));
  q = {};
  q.metadata = {{"tier", "comprehensive"}};
  EXPECT_THAT(list(q), ElementsAre("C", "A"));
  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"tier", "basic"}, {"n", "3"}, {"ok", "true"}, {"ratio", "2.5"}, {"none", "null"}}) {
    q.metadata = {{key, value}};
    EXPECT_THAT(list(q), ElementsAre("B")) << key;
  }
  q.metadata = {{"tier", "basic"}, {"n", "4"}};
  EXPECT_TRUE(list(q).empty());
  q.metadata = {{"missing", "x"}};
  EXPECT_TRUE(list(q).empty());
  q.metadata = {{"bad\"key", "x"}};
  EXPECT_FALSE(store_->list_executions(q, kT0 + 1));
  q = {};
  q.limit = 2;
  EXPECT_THAT(list(q), ElementsAre("C", "B"));
}

TEST_P(StoreConformanceTest, ListPagesStayStableWhileNewAttemptsArrive) {
  using namespace conformance;
  for (int i = 0; i < 5; ++i) {
    // Two share a start time: insertion order breaks the tie.
    std::int64_t start = kT0 + std::min(i, 3) * kSecond;
    ok(store_->put_execution(
        seed_execution(std::string(1, static_cast<char>('a' + i)), "exec", start), kT0 + kDay));
  }
  store::ExecutionQuery q;
  q.limit = 2;
  auto first = ok(store_->list_executions(q, kT0));
  EXPECT_THAT(ids(first), ElementsAre("e", "d"));
  // A newer attempt arrives between two pages: it does not shift the next one.
  ok(store_->put_execution(seed_execution("new", "exec", kT0 + 9 * kSecond), kT0 + kDay));
  q.after = first.back().position;
  auto second = ok(store_->list_executions(q, kT0));
  EXPECT_THAT(ids(second), ElementsAre("c", "b"));
  q.after = second.back().position;
  auto third = ok(store_->list_executions(q, kT0));
  EXPECT_THAT(ids(third), ElementsAre("a"));
  q.after = third.back().position;
  EXPECT_TRUE(ok(store_->list_executions(q, kT0)).empty());
}

TEST_P(StoreConformanceTest, EventPagesContinueAfterTheLastEventRead) {
  using namespace conformance;
  std::vector<OwnedEvent> first = append_events_out_of_order(*store_);
  std::vector<std::string> stages;
  std::optional<store::Position> after;
  for (int page = 0; page < 10; ++page) {
    auto got = ok(store_->event_page("r", after, 2, kT0));
    if (got.empty()) break;
    for (const auto& e : got) stages.push_back(e.event.stage);
    after = got.back().position;
  }
  EXPECT_THAT(stages, ElementsAre("a", "b1", "b2", "c"));
  auto whole = ok(store_->event_page("r", std::nullopt, 10, kT0));
  ASSERT_EQ(whole.size(), 4u);
  expect_same(whole[3].event, first[0]);
  EXPECT_EQ(whole[1].position.ns, kT0 + 20);
  EXPECT_TRUE(ok(store_->event_page("r", std::nullopt, 10, kT0 + kDay)).empty());  // Expired.
}

TEST_P(StoreConformanceTest, ReopenedStoreHasEverything) {
  using namespace conformance;
  Execution e = seed_execution();
  ok(store_->put_execution(e, kT0 + kDay));
  ok(store_->put_execution(seed_execution(e.tracking_id, "exec_2", kT0 + kSecond), kT0 + kDay));
  std::vector<OwnedEvent> events = {event("run-1", kT0), event("run-1", kT0 + 1)};
  ok(store_->append_events(events, kT0 + kDay));
  store_.reset();

  store_ = backend_->open();
  auto one = ok(store_->attempt(e.tracking_id, 1, kT0));
  ASSERT_TRUE(one.has_value());
  expect_same(*one, e);
  auto latest = ok(store_->latest(e.tracking_id, kT0));
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->execution_id, "exec_2");
  EXPECT_EQ(ok(store_->events("run-1", kT0, 10)).size(), 2u);
  // Numbering carries on after a reopen.
  ok(store_->put_execution(seed_execution(e.tracking_id, "exec_3", kT0 + 2), kT0 + kDay));
  auto list = ok(store_->attempts(e.tracking_id, kT0));
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2].n, 3);
}

TEST_P(StoreConformanceTest, WriteStoresEventsAndAttemptsTogetherEachWithItsExpiry) {
  using namespace conformance;
  std::vector<OwnedEvent> short_lived = {event("r", kT0, "a"), event("r", kT0 + 2, "c")};
  std::vector<OwnedEvent> long_lived = {event("r", kT0 + 1, "b")};
  std::vector<store::EventsWrite> events = {{short_lived, kT0 + kSecond}, {long_lived, kT0 + kDay}};
  std::vector<store::ExecutionWrite> attempts = {
      {seed_execution("T1", "exec_a", kT0), kT0 + kSecond, 0},
      {seed_execution("T1", "exec_b", kT0 + 1), kT0 + kDay, 0},
  };
  ok(store_->write(events, attempts));

  std::vector<std::string> stages;
  for (const OwnedEvent& e : ok(store_->events("r", kT0, 10))) stages.push_back(e.stage);
  EXPECT_THAT(stages, ElementsAre("a", "b", "c"));
  auto got = ok(store_->events("r", kT0 + kSecond, 10));
  ASSERT_EQ(got.size(), 1u);
  expect_same(got[0], long_lived[0]);
  auto list = ok(store_->attempts("T1", kT0));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].execution_id, "exec_a");
  EXPECT_EQ(list[1].execution_id, "exec_b");
  auto one = ok(store_->attempt("T1", 1, kT0));
  ASSERT_TRUE(one.has_value());
  expect_same(*one, attempts[0].execution);
  list = ok(store_->attempts("T1", kT0 + kSecond));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].n, 2);
  ok(store_->write({}, {}));  // Nothing to write is fine.
}

TEST_P(StoreConformanceTest, WriteAppliesAttemptsInOrder) {
  using namespace conformance;
  Execution growing = seed_execution("T1", "exec_a", kT0);
  growing.steps.resize(1);
  std::vector<store::ExecutionWrite> attempts = {
      {growing, kT0 + kDay, 0},
      {seed_execution("T1", "exec_b", kT0 + 1), kT0 + kDay, 0},
      {seed_execution("T1", "exec_a", kT0), kT0 + kDay, 0},  // The later version wins.
  };
  ok(store_->write({}, attempts));
  auto list = ok(store_->attempts("T1", kT0));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].execution_id, "exec_a");  // Numbered by first appearance.
  EXPECT_EQ(list[0].step_count, 4u);
  EXPECT_EQ(list[1].execution_id, "exec_b");
}

TEST_P(StoreConformanceTest, WriteFromAStepKeepsTheStepsBeforeIt) {
  using namespace conformance;
  Execution full = seed_execution();
  Execution first_two = full;
  first_two.steps.resize(2);
  first_two.completed_at_ns.reset();
  first_two.duration_ms.reset();
  ok(store_->put_execution(first_two, kT0 + kDay));

  // Steps 2 and 3 appended, the attempt's other columns replaced.
  Execution rest = full;
  rest.steps.erase(rest.steps.begin(), rest.steps.begin() + 2);
  std::vector<store::ExecutionWrite> append = {{rest, kT0 + kDay, 2}};
  ok(store_->write({}, append));
  auto got = ok(store_->latest(full.tracking_id, kT0));
  ASSERT_TRUE(got.has_value());
  expect_same(*got, full);

  // From step 3: step 3 replaced, a fifth added.
  Execution tail = full;
  tail.steps.erase(tail.steps.begin(), tail.steps.begin() + 3);
  tail.steps[0].message = "replaced";
  tail.steps.push_back(tail.steps[0]);
  std::vector<store::ExecutionWrite> replace = {{tail, kT0 + kDay, 3}};
  ok(store_->write({}, replace));
  got = ok(store_->latest(full.tracking_id, kT0));
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->steps.size(), 5u);
  EXPECT_EQ(got->steps[2].message, full.steps[2].message);
  EXPECT_EQ(got->steps[3].message, "replaced");
  EXPECT_EQ(got->steps[4].message, "replaced");
  auto summary = ok(store_->attempts(full.tracking_id, kT0));
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].step_count, 5u);
  EXPECT_EQ(summary[0].final_status, full.steps[3].status);

  // From step 2 with no steps: the attempt is cut to its first two, and says so.
  Execution none = full;
  none.steps.clear();
  std::vector<store::ExecutionWrite> cut = {{none, kT0 + kDay, 2}};
  ok(store_->write({}, cut));
  got = ok(store_->latest(full.tracking_id, kT0));
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->steps.size(), 2u);
  EXPECT_EQ(got->steps[1], full.steps[1]);
  summary = ok(store_->attempts(full.tracking_id, kT0));
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].step_count, 2u);
  EXPECT_EQ(summary[0].final_status, full.steps[1].status);
}

TEST_P(StoreConformanceTest, AFailedWriteStoresNothing) {
  using namespace conformance;
  Execution stored = seed_execution("T1", "exec_a", kT0);
  stored.steps.resize(2);
  ok(store_->put_execution(stored, kT0 + kDay));

  // The second attempt claims five steps stored where there are two: the whole write fails.
  std::vector<OwnedEvent> batch = {event("r", kT0)};
  std::vector<store::EventsWrite> events = {{batch, kT0 + kDay}};
  Execution gap = seed_execution("T1", "exec_a", kT0);
  std::vector<store::ExecutionWrite> attempts = {
      {seed_execution("T2", "exec_x", kT0), kT0 + kDay, 0},
      {gap, kT0 + kDay, 5},
  };
  EXPECT_FALSE(store_->write(events, attempts));
  EXPECT_TRUE(ok(store_->events("r", kT0, 10)).empty());
  EXPECT_FALSE(ok(store_->latest("T2", kT0)).has_value());
  auto got = ok(store_->latest("T1", kT0));
  ASSERT_TRUE(got.has_value());
  expect_same(*got, stored);
  // steps_from on an attempt not stored at all fails too.
  std::vector<store::ExecutionWrite> missing = {
      {seed_execution("T3", "exec_y", kT0), kT0 + kDay, 1}};
  EXPECT_FALSE(store_->write({}, missing));
  EXPECT_FALSE(ok(store_->latest("T3", kT0)).has_value());
}

TEST_P(StoreConformanceTest, TwoStoresOnOneBackendSeeEachOthersWrites) {
  using namespace conformance;
  auto other = backend_->open();
  ok(other->put_execution(seed_execution("T1", "from_other"), kT0 + kDay));
  auto got = ok(store_->latest("T1", kT0));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->execution_id, "from_other");
}

// ---- Ingest batch keys: a batch is stored once
// ---------------------------------------------------

namespace conformance {

inline store::BatchRecord batch_record(std::string key, std::int64_t stored_at_ns = kT0) {
  return store::BatchRecord{std::move(key), 200, R"({"accepted":1,"rejected":[]})", stored_at_ns};
}

}  // namespace conformance

TEST_P(StoreConformanceTest, WriteKeepsABatchKeyWithItsFirstAnswer) {
  using namespace conformance;
  std::vector<OwnedEvent> batch = {event("r", kT0, "a"), event("r", kT0 + 1, "b")};
  std::vector<OwnedEvent> other = {event("r", kT0 + 2, "c")};
  const std::string key = "0123456789abcdef0123456789abcdef-7";
  const auto record = batch_record(key);
  std::vector<store::EventsWrite> events = {{batch, kT0 + kDay, &record}, {other, kT0 + kDay}};
  EXPECT_FALSE(ok(store_->batch(key, kT0)).has_value());
  ok(store_->write(events, {}));
  auto got = ok(store_->batch(key, kT0 + 5));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, batch_record(key));
  EXPECT_FALSE(ok(store_->batch(key + "0", kT0)).has_value());
  EXPECT_FALSE(ok(store_->batch("", kT0)).has_value());
  EXPECT_EQ(ok(store_->events("r", kT0, 10)).size(), 3u);
  // A key with no events (every line of its batch rejected) is kept as well.
  const auto p1 = batch_record("p-1");
  std::vector<store::EventsWrite> empty = {{{}, kT0 + kDay, &p1}};
  ok(store_->write(empty, {}));
  EXPECT_TRUE(ok(store_->batch("p-1", kT0)).has_value());
}

TEST_P(StoreConformanceTest, ABatchKeyAlreadyStoredFailsTheWholeWriteStoringNothing) {
  using namespace conformance;
  std::vector<OwnedEvent> first = {event("r", kT0, "a")};
  const auto p1 = batch_record("p-1");
  const auto p2 = batch_record("p-2");
  const auto p3 = batch_record("p-3");
  std::vector<store::EventsWrite> once = {{first, kT0 + kDay, &p1}};
  ok(store_->write(once, {}));

  std::vector<OwnedEvent> again = {event("r", kT0 + 1, "b")};
  std::vector<OwnedEvent> fresh = {event("r", kT0 + 2, "c")};
  auto repeat = batch_record("p-1", kT0 + kSecond);
  repeat.body = "{}";
  std::vector<store::EventsWrite> events = {{fresh, kT0 + kDay, &p2}, {again, kT0 + kDay, &repeat}};
  std::vector<store::ExecutionWrite> attempts = {{seed_execution("T1", "x", kT0), kT0 + kDay, 0}};
  auto written = store_->write(events, attempts);
  ASSERT_FALSE(written);
  EXPECT_THAT(written.error().what(), ::testing::HasSubstr("p-1"));
  EXPECT_EQ(ok(store_->events("r", kT0, 10)).size(), 1u);
  EXPECT_FALSE(ok(store_->latest("T1", kT0)).has_value());
  EXPECT_FALSE(ok(store_->batch("p-2", kT0)).has_value());
  EXPECT_EQ(ok(store_->batch("p-1", kT0)), batch_record("p-1"));  // The first answer stays.

  // The same key twice in one write fails it too.
  std::vector<store::EventsWrite> twice = {{fresh, kT0 + kDay, &p3}, {again, kT0 + kDay, &p3}};
  EXPECT_FALSE(store_->write(twice, {}));
  EXPECT_FALSE(ok(store_->batch("p-3", kT0)).has_value());
  EXPECT_EQ(ok(store_->events("r", kT0, 10)).size(), 1u);
}

TEST_P(StoreConformanceTest, BatchKeysExpireWithTheirEventsAndArePurged) {
  using namespace conformance;
  std::vector<OwnedEvent> batch = {event("r", kT0)};
  const auto p1 = batch_record("p-1");
  const auto p2 = batch_record("p-2");
  std::vector<store::EventsWrite> short_lived = {{batch, kT0 + kSecond, &p1}};
  std::vector<store::EventsWrite> long_lived = {{batch, kT0 + kDay, &p2}};
  ok(store_->write(short_lived, {}));
  ok(store_->write(long_lived, {}));
  EXPECT_TRUE(ok(store_->batch("p-1", kT0 + kSecond - 1)).has_value());
  EXPECT_FALSE(ok(store_->batch("p-1", kT0 + kSecond)).has_value());  // Before any purge.

  // An expired key is taken again by a batch first answered after it expired.
  const auto later = batch_record("p-1", kT0 + 2 * kSecond);
  std::vector<store::EventsWrite> reuse = {{batch, kT0 + kDay, &later}};
  ok(store_->write(reuse, {}));
  auto got = ok(store_->batch("p-1", kT0 + 3 * kSecond));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->stored_at_ns, kT0 + 2 * kSecond);

  EXPECT_EQ(ok(store_->purge(kT0 + 2 * kDay)), 3u);  // Three events; keys are not counted.
  EXPECT_FALSE(ok(store_->batch("p-1", kT0)).has_value());
  EXPECT_FALSE(ok(store_->batch("p-2", kT0)).has_value());
  // Once purged, the key can be stored again whatever the time.
  ok(store_->write(long_lived, {}));
  EXPECT_TRUE(ok(store_->batch("p-2", kT0)).has_value());
}

TEST_P(StoreConformanceTest, TwoStoresOnOneBackendShareBatchKeys) {
  using namespace conformance;
  auto other = backend_->open();
  std::vector<OwnedEvent> batch = {event("r", kT0)};
  const auto p1 = batch_record("p-1");
  std::vector<store::EventsWrite> events = {{batch, kT0 + kDay, &p1}};
  ok(other->write(events, {}));
  EXPECT_TRUE(ok(store_->batch("p-1", kT0)).has_value());
  EXPECT_FALSE(store_->write(events, {}));
  EXPECT_EQ(ok(store_->events("r", kT0, 10)).size(), 1u);
}

// ---- The query side: search, stage statistics, failure patterns ------------------------------

namespace conformance {

inline Step step(std::string name, std::int64_t ts_ns, std::string status, std::string message = "",
                 std::optional<std::string> error = std::nullopt, std::string custom = "{}") {
  return Step{std::move(name),  ts_ns, std::move(status), std::move(message), std::move(error),
              std::move(custom)};
}

inline Execution with_steps(std::string tracking_id, std::int64_t started_at_ns,
                            std::vector<Step> steps, std::string metadata = "{}") {
  Execution e;
  e.tracking_id = tracking_id;
  e.execution_id = "exec_" + tracking_id;
  e.started_at_ns = started_at_ns;
  e.metadata_json = std::move(metadata);
  e.steps = std::move(steps);
  return e;
}

// The exact nearest-rank percentile.
inline double nearest_rank(std::vector<std::int64_t> values, double p) {
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  return static_cast<double>(values[std::max<std::size_t>(rank, 1) - 1]);
}

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kHour = 3'600 * kSecond;
// An hour boundary, for statistics that are kept per hour.
constexpr std::int64_t kH0 = kT0 / kHour * kHour;

}  // namespace conformance

TEST_P(StoreConformanceTest, ListFiltersByWorkerStageAndFullText) {
  using namespace conformance;
  ok(store_->put_execution(
      with_steps("A", kT0,
                 {step("fetch", kT0 + kSecond, "completed", "fetched 12 files", std::nullopt,
                       R"({"worker":"gpu-1"})"),
                  step("generate", kT0 + 2 * kSecond, "failed", "Processing failed",
                       "Error: AI generation timeout after 480000ms", R"({"worker":"gpu-1"})")}),
      kT0 + kDay));
  // No worker on its steps: the attempt's metadata says who ran it.
  ok(store_->put_execution(
      with_steps("B", kT0 + kSecond,
                 {step("fetch", kT0 + 2 * kSecond, "completed", "Upload to Zürich done")},
                 R"({"worker":"gpu-2"})"),
      kT0 + kDay));
  ok(store_->put_execution(
      with_steps("C", kT0 + 2 * kSecond,
                 {step("judge", kT0 + 3 * kSecond, "completed", "judged: TIMEOUT-free",
                       std::nullopt, R"({"worker":"gpu-1"})")}),
      kT0 + kDay));

  auto list = [&](store::ExecutionQuery q) { return ids(ok(store_->list_executions(q, kT0))); };
  store::ExecutionQuery q;
  q.worker = "gpu-1";
  EXPECT_THAT(list(q), ElementsAre("C", "A"));
  q.worker = "gpu-2";
  EXPECT_THAT(list(q), ElementsAre("B"));
  q.worker = "gpu";
  EXPECT_TRUE(list(q).empty());
  q = {};
  q.stage = "fetch";
  EXPECT_THAT(list(q), ElementsAre("B", "A"));
  q.worker = "gpu-1";  // Both: an attempt with a fetch step and a step of gpu-1.
  EXPECT_THAT(list(q), ElementsAre("A"));

  q = {};
  q.text = "timeout";  // Error details and messages, any case.
  EXPECT_THAT(list(q), ElementsAre("C", "A"));
  q.text = "generation TIMEOUT";  // Every word.
  EXPECT_THAT(list(q), ElementsAre("A"));
  q.text = "gener*";  // A prefix.
  EXPECT_THAT(list(q), ElementsAre("A"));
  q.text = "zurich";  // Diacritics do not matter.
  EXPECT_THAT(list(q), ElementsAre("B"));
  q.text = "480000ms";
  EXPECT_THAT(list(q), ElementsAre("A"));
  // Query syntax is only text: quotes, OR, NEAR, parentheses and column filters are words or
  // nothing, never an error.
  for (const char* text : {"\"timeout", "timeout OR fetched", "NEAR(timeout", "message:timeout",
                           "timeout)", "*", "-timeout", "^timeout"}) {
    q.text = text;
    auto rows = store_->list_executions(q, kT0);
    EXPECT_TRUE(rows) << text << ": " << (rows ? "" : rows.error().what());
  }
  q.text = "message:timeout";  // "message" is a word here, not a column: no step has both.
  EXPECT_TRUE(list(q).empty());
  q.text = "!!!";  // No word: no match.
  EXPECT_TRUE(list(q).empty());

  // The index follows what is stored: a replaced attempt is found by its new steps only, and
  // steps appended by a write are found at once.
  ok(store_->put_execution(with_steps("A", kT0,
                                      {step("fetch", kT0 + kSecond, "completed", "fetched again",
                                            std::nullopt, R"({"worker":"gpu-3"})")}),
                           kT0 + kDay));
  q = {};
  q.text = "timeout";
  EXPECT_THAT(list(q), ElementsAre("C"));
  q.text = "again";
  EXPECT_THAT(list(q), ElementsAre("A"));
  q = {};
  q.worker = "gpu-1";
  EXPECT_THAT(list(q), ElementsAre("C"));
  store::ExecutionWrite more{
      with_steps("A", kT0,
                 {step("cleanup", kT0 + 5 * kSecond, "completed", "removed the worktree")}),
      kT0 + kDay, 1};
  ok(store_->write({}, std::span<const store::ExecutionWrite>(&more, 1)));
  q = {};
  q.text = "worktree";
  EXPECT_THAT(list(q), ElementsAre("A"));
  q = {};
  q.stage = "cleanup";
  EXPECT_THAT(list(q), ElementsAre("A"));
  // Expired attempts are not found.
  q = {};
  q.text = "judged";
  EXPECT_TRUE(ids(ok(store_->list_executions(q, kT0 + kDay))).empty());
}

// Full text is words only: whatever the text, the listing answers (FTS5 syntax, quotes, NUL,
// invalid UTF-8 included), and finds what holds all its words.
TEST_P(StoreConformanceTest, AnyTextIsSearchedAsWordsNeverAsQuerySyntax) {
  using namespace conformance;
  ok(store_->put_execution(with_steps("A", kT0,
                                      {step("fetch", kT0 + kSecond, "failed", "timeout near x",
                                            "col:value \"quoted\" OR AND NOT")}),
                           kT0 + kDay));
  test::LineMutator mutate(11, "\"*^:()-+ ORNEANDTtimeout ");
  const std::vector<std::string> seeds = {"\"timeout\" OR near", "NEAR(timeout x, 2)", "col:value*",
                                          "-timeout ^near", "(AND) NOT \"\""};
  for (int i = 0; i < 500; ++i) {
    store::ExecutionQuery q;
    q.text = mutate.next(seeds);
    auto rows = store_->list_executions(q, kT0);
    ASSERT_TRUE(rows) << *q.text << ": " << rows.error().what();
  }
  store::ExecutionQuery q;
  q.text = "\"timeout\" NEAR( x";
  EXPECT_THAT(ids(ok(store_->list_executions(q, kT0))), ElementsAre("A"));
  q.text = "col:value OR";  // Words of the error details.
  EXPECT_THAT(ids(ok(store_->list_executions(q, kT0))), ElementsAre("A"));
}

// A store may plan a filter on a worker or stage of many steps differently from one of few (the
// SQLite store does, at 2000): the answer is the same.
TEST_P(StoreConformanceTest, ListFiltersByAWorkerAndStageOfManySteps) {
  using namespace conformance;
  for (int a = 0; a < 4; ++a) {
    std::vector<Step> steps;
    std::string worker = a == 3 ? R"({"worker":"other"})" : R"({"worker":"busy"})";
    for (int i = 0; i < 800; ++i) {
      steps.push_back(step(i == 799 && a == 1 ? "rare" : "common", kT0 + i * kMs, "completed", "",
                           std::nullopt, worker));
    }
    ok(store_->put_execution(with_steps("job-" + std::to_string(a), kT0 + a * kSecond, steps),
                             kT0 + kDay));
  }
  auto list = [&](store::ExecutionQuery q) { return ids(ok(store_->list_executions(q, kT0))); };
  store::ExecutionQuery q;
  q.worker = "busy";
  EXPECT_THAT(list(q), ElementsAre("job-2", "job-1", "job-0"));
  q.limit = 1;
  q.after = ok(store_->list_executions(q, kT0)).back().position;
  EXPECT_THAT(list(q), ElementsAre("job-1"));
  q = {};
  q.stage = "common";
  EXPECT_THAT(list(q), ElementsAre("job-3", "job-2", "job-1", "job-0"));
  q.worker = "other";
  EXPECT_THAT(list(q), ElementsAre("job-3"));
  q = {};
  q.stage = "rare";
  EXPECT_THAT(list(q), ElementsAre("job-1"));
}

TEST_P(StoreConformanceTest, StageStatsGiveCountsFailuresAndPercentilesPerStage) {
  using namespace conformance;
  // 200 agent steps of 37 ms, 74 ms, ... in two hours; durations from "duration_ms".
  std::vector<std::int64_t> agent;
  for (int i = 0; i < 200; ++i) {
    std::int64_t d = 37 * (i + 1) + (i % 7) * 1000;
    agent.push_back(d);
    std::int64_t end = kH0 + (i < 150 ? 10 : 70) * 60 * kSecond + i * kMs;
    std::string custom =
        R"({"worker":"w)" + std::to_string(i % 2) + R"(","duration_ms":)" + std::to_string(d) + "}";
    ok(store_->put_execution(with_steps("agent-" + std::to_string(i), end - d * kMs,
                                        {step("agent", end - d * kMs, "in_progress"),
                                         step("agent", end, i % 10 == 0 ? "failed" : "completed",
                                              "", std::nullopt, custom)}),
                             kH0 + kDay));
  }
  // A seed-004 document: each step ended when it says; its duration is the time since the
  // previous one (since started_at for the first).
  ok(store_->put_execution(with_steps("doc", kH0 + kSecond,
                                      {step("fetch", kH0 + kSecond + 40 * kMs, "completed"),
                                       step("transcribe", kH0 + kSecond + 820 * kMs, "completed"),
                                       step("transcribe", kH0 + 4 * kSecond, "skipped")}),
                           kH0 + kDay));

  store::StageStatsQuery q;
  q.since_ns = kH0;
  q.until_ns = kH0 + 2 * kHour;
  auto stats = ok(store_->stage_stats(q, kH0));
  ASSERT_EQ(stats.size(), 3u);  // By stage name.
  EXPECT_EQ(stats[0].stage, "agent");
  EXPECT_EQ(stats[1].stage, "fetch");
  EXPECT_EQ(stats[2].stage, "transcribe");
  const store::DurationStats a = stats[0].stats;  // A copy: stats is read again below.
  EXPECT_EQ(a.count, 200);
  EXPECT_EQ(a.failures, 20);
  EXPECT_EQ(a.skipped, 0);
  EXPECT_EQ(a.max_ms, *std::max_element(agent.begin(), agent.end()));
  for (auto [got, p] : {std::pair{a.p50_ms, 0.5}, {a.p95_ms, 0.95}, {a.p99_ms, 0.99}}) {
    double want = nearest_rank(agent, p);
    EXPECT_NEAR(got, want, want * 0.01) << "p" << p;
    EXPECT_LE(got, static_cast<double>(a.max_ms)) << "p" << p;
  }
  ASSERT_EQ(stats[0].series.size(), 2u);  // Two hours.
  EXPECT_EQ(stats[0].series[0].start_ns, kH0);
  EXPECT_EQ(stats[0].series[0].stats.count, 150);
  EXPECT_EQ(stats[0].series[1].start_ns, kH0 + kHour);
  EXPECT_EQ(stats[0].series[1].stats.count, 50);
  EXPECT_EQ(stats[1].stats.count, 1);
  EXPECT_EQ(stats[1].stats.max_ms, 40);
  EXPECT_EQ(stats[1].stats.p50_ms, 40);  // Durations up to about 50 ms are exact.
  EXPECT_EQ(stats[1].stats.p99_ms, 40);
  EXPECT_EQ(stats[2].stats.count, 1);
  EXPECT_EQ(stats[2].stats.skipped, 1);
  // 780 ms falls in a bucket whose middle (783.4) is above it: percentiles stop at the max.
  EXPECT_EQ(stats[2].stats.p50_ms, 780);
  EXPECT_EQ(stats[2].stats.p99_ms, 780);
  EXPECT_EQ(stats[2].stats.max_ms, 780);

  q.daily = true;
  stats = ok(store_->stage_stats(q, kH0));
  ASSERT_EQ(stats[0].series.size(), 1u);
  EXPECT_EQ(stats[0].series[0].start_ns % kDay, 0);
  EXPECT_EQ(stats[0].series[0].stats.count, 200);

  q.daily = false;
  q.by_worker = true;
  stats = ok(store_->stage_stats(q, kH0));
  ASSERT_EQ(stats.size(), 4u);
  EXPECT_EQ(stats[0].stage, "agent");
  EXPECT_EQ(stats[0].worker, "w0");
  EXPECT_EQ(stats[0].stats.count, 100);
  EXPECT_EQ(stats[1].worker, "w1");
  EXPECT_EQ(stats[2].worker, "");

  // Only the second hour.
  q = {};
  q.since_ns = kH0 + kHour;
  q.until_ns = kH0 + 2 * kHour;
  stats = ok(store_->stage_stats(q, kH0));
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].stats.count, 50);

  // Replacing an attempt replaces its durations, the longest one included.
  std::int64_t longest = a.max_ms;
  auto slowest = std::max_element(agent.begin(), agent.end()) - agent.begin();
  std::int64_t end = kH0 + 70 * 60 * kSecond + slowest * kMs;
  ok(store_->put_execution(
      with_steps("agent-" + std::to_string(slowest), end - kSecond,
                 {step("agent", end, "completed", "", std::nullopt, R"({"duration_ms":5})")}),
      kH0 + kDay));
  q.since_ns = kH0;
  stats = ok(store_->stage_stats(q, kH0));
  EXPECT_EQ(stats[0].stats.count, 200);
  EXPECT_LT(stats[0].stats.max_ms, longest);
  agent[static_cast<std::size_t>(slowest)] = 5;
  EXPECT_EQ(stats[0].stats.max_ms, *std::max_element(agent.begin(), agent.end()));

  // Gone with the attempts that made them.
  EXPECT_TRUE(ok(store_->stage_stats(q, kH0 + kDay)).empty());
}

// A workflow's node (or a nested run) named like the job is the job, not a stage.
TEST_P(StoreConformanceTest, AStepNamedLikeItsJobIsNoStage) {
  using namespace conformance;
  ok(store_->put_execution(
      with_steps("item-13", kH0 + kSecond,
                 {step("item-13", kH0 + kSecond, "in_progress"),
                  step("JUDGE", kH0 + 2 * kSecond, "failed", "", "timeout after 480000ms"),
                  step("item-13", kH0 + 3 * kSecond, "failed",
                       "Node item-13 failed after 2.0s: JUDGE failed")}),
      kH0 + kDay));
  store::StageStatsQuery q{kH0, kH0 + kHour, false, false};
  auto stats = ok(store_->stage_stats(q, kH0));
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].stage, "JUDGE");
  auto patterns = ok(store_->failure_patterns(store::FailureQuery{kH0, kH0 + kHour, 50}, kH0));
  ASSERT_EQ(patterns.size(), 1u);
  EXPECT_EQ(patterns[0].pattern, "timeout after <n>ms");
  store::ExecutionQuery search;
  search.text = "node failed";
  EXPECT_THAT(ids(ok(store_->list_executions(search, kH0))), ElementsAre("item-13"));
}

TEST_P(StoreConformanceTest, FailurePatternsGroupErrorsThatDifferOnlyInNumbersIdsAndPaths) {
  using namespace conformance;
  int n = 0;
  auto fail = [&](std::string stage, std::string error, std::int64_t at) {
    std::string id = "T" + std::to_string(++n);
    ok(store_->put_execution(
        with_steps(id, at - kSecond,
                   {step("start", at - kSecond, "completed"),
                    step(std::move(stage), at, "failed", "Processing failed", std::move(error))}),
        kT0 + kDay));
  };
  fail("agent", "timeout after 480000ms", kT0);
  fail("judge", "timeout after 300000ms", kT0 + kSecond);
  fail("agent", "timeout after 120ms", kT0 + 2 * kSecond);
  fail("agent", "timeout after 9ms", kT0 + 3 * kSecond);
  fail("fetch", "cannot open /tmp/run-7/input.json: No such file", kT0 + 4 * kSecond);
  fail("fetch", "cannot open /data/x/y.json: No such file", kT0 + 5 * kSecond);
  fail("agent", "worker gpu-3 lost exec_1767_ab12cd34e (0xdeadbeef)", kT0 + 6 * kSecond);
  fail("agent", "old failure", kT0 - kDay);

  store::FailureQuery q;
  q.since_ns = kT0;
  q.until_ns = kT0 + kDay;
  auto patterns = ok(store_->failure_patterns(q, kT0));
  ASSERT_EQ(patterns.size(), 3u);
  EXPECT_EQ(patterns[0].pattern, "timeout after <n>ms");
  EXPECT_EQ(patterns[0].count, 4);
  EXPECT_EQ(patterns[0].first_seen_ns, kT0);
  EXPECT_EQ(patterns[0].last_seen_ns, kT0 + 3 * kSecond);
  EXPECT_THAT(patterns[0].stages, ElementsAre("agent", "judge"));
  EXPECT_THAT(patterns[0].tracking_ids, ElementsAre("T4", "T3", "T2"));
  EXPECT_EQ(patterns[0].example, "timeout after 9ms");
  EXPECT_EQ(patterns[1].pattern, "cannot open <path>: No such file");
  EXPECT_EQ(patterns[1].count, 2);
  EXPECT_THAT(patterns[1].tracking_ids, ElementsAre("T6", "T5"));
  EXPECT_EQ(patterns[2].pattern, "worker <id> lost <id> (<hex>)");

  q.limit = 1;
  EXPECT_EQ(ok(store_->failure_patterns(q, kT0)).size(), 1u);
  q.limit = 50;
  q.until_ns = kT0 + kSecond;
  patterns = ok(store_->failure_patterns(q, kT0));
  ASSERT_EQ(patterns.size(), 1u);
  EXPECT_EQ(patterns[0].count, 1);
  EXPECT_TRUE(ok(store_->failure_patterns(q, kT0 + kDay)).empty());  // Expired.
}

}  // namespace stagelog::test
