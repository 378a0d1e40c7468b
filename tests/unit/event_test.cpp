#include "stagelog/event.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "stagelog/stage.hpp"

namespace stagelog {
namespace {

enum class Stage { WORKTREE, AGENT, JUDGE };
enum class Sparse : std::uint8_t { First = 0, Ten = 10, Last = 127 };
enum class Negative : int { Minus = -1, Zero = 0 };
enum Plain { kAlpha, kBeta };

TEST(EventTest, ParseLevelAcceptsEveryName) {
  EXPECT_EQ(parse_level("TRACE"), Level::Trace);
  EXPECT_EQ(parse_level("DEBUG"), Level::Debug);
  EXPECT_EQ(parse_level("INFO"), Level::Info);
  EXPECT_EQ(parse_level("WARNING"), Level::Warning);
  EXPECT_EQ(parse_level("ERROR"), Level::Error);
  EXPECT_EQ(parse_level("CRITICAL"), Level::Critical);
  EXPECT_EQ(parse_level("OFF"), Level::Off);
}

TEST(EventTest, ParseLevelIsCaseInsensitive) {
  EXPECT_EQ(parse_level("trace"), Level::Trace);
  EXPECT_EQ(parse_level("Debug"), Level::Debug);
  EXPECT_EQ(parse_level("iNfO"), Level::Info);
  EXPECT_EQ(parse_level("warning"), Level::Warning);
  EXPECT_EQ(parse_level("error"), Level::Error);
  EXPECT_EQ(parse_level("Critical"), Level::Critical);
  EXPECT_EQ(parse_level("off"), Level::Off);
}

TEST(EventTest, ParseLevelAcceptsWarn) {
  EXPECT_EQ(parse_level("WARN"), Level::Warning);
  EXPECT_EQ(parse_level("warn"), Level::Warning);
  EXPECT_EQ(parse_level("Warn"), Level::Warning);
}

TEST(EventTest, ParseLevelTrimsWhitespace) {
  EXPECT_EQ(parse_level(" info"), Level::Info);
  EXPECT_EQ(parse_level("debug\n"), Level::Debug);
  EXPECT_EQ(parse_level("\t WARN \r\n"), Level::Warning);
}

TEST(EventTest, ParseLevelRejectsEverythingElse) {
  EXPECT_EQ(parse_level(""), std::nullopt);
  EXPECT_EQ(parse_level("   "), std::nullopt);
  EXPECT_EQ(parse_level("verbose"), std::nullopt);
  EXPECT_EQ(parse_level("INF"), std::nullopt);
  EXPECT_EQ(parse_level("INFOO"), std::nullopt);
  EXPECT_EQ(parse_level("WARNINGS"), std::nullopt);
  EXPECT_EQ(parse_level("in fo"), std::nullopt);
  EXPECT_EQ(parse_level("2"), std::nullopt);
  EXPECT_EQ(parse_level(std::string_view("INFO\0", 5)), std::nullopt);
}

TEST(EventTest, LevelNamesAreUpperCaseForText) {
  EXPECT_EQ(level_name(Level::Trace), "TRACE");
  EXPECT_EQ(level_name(Level::Debug), "DEBUG");
  EXPECT_EQ(level_name(Level::Info), "INFO");
  EXPECT_EQ(level_name(Level::Warning), "WARNING");
  EXPECT_EQ(level_name(Level::Error), "ERROR");
  EXPECT_EQ(level_name(Level::Critical), "CRITICAL");
  EXPECT_EQ(level_name(Level::Off), "OFF");
}

TEST(EventTest, LevelJsonNamesAreLowerCase) {
  EXPECT_EQ(level_json_name(Level::Trace), "trace");
  EXPECT_EQ(level_json_name(Level::Debug), "debug");
  EXPECT_EQ(level_json_name(Level::Info), "info");
  EXPECT_EQ(level_json_name(Level::Warning), "warning");
  EXPECT_EQ(level_json_name(Level::Error), "error");
  EXPECT_EQ(level_json_name(Level::Critical), "critical");
  EXPECT_EQ(level_json_name(Level::Off), "off");
}

TEST(EventTest, LevelNamesParseBack) {
  for (int i = 0; i <= static_cast<int>(Level::Off); ++i) {
    auto level = static_cast<Level>(i);
    EXPECT_EQ(parse_level(level_name(level)), level);
    EXPECT_EQ(parse_level(level_json_name(level)), level);
  }
}

TEST(EventTest, OutOfRangeLevelHasAFallbackName) {
  EXPECT_EQ(level_name(static_cast<Level>(200)), "UNKNOWN");
  EXPECT_EQ(level_json_name(static_cast<Level>(200)), "unknown");
}

TEST(EventTest, StatusNames) {
  EXPECT_EQ(status_name(Status::None), "");
  EXPECT_EQ(status_name(Status::Starting), "starting");
  EXPECT_EQ(status_name(Status::Running), "running");
  EXPECT_EQ(status_name(Status::Completed), "completed");
  EXPECT_EQ(status_name(Status::Failed), "failed");
  EXPECT_EQ(status_name(Status::Skipped), "skipped");
  EXPECT_EQ(status_name(Status::InProgress), "in_progress");
  EXPECT_EQ(status_name(static_cast<Status>(99)), "unknown");
}

TEST(EventTest, StatusNamesParseBack) {
  for (int i = 1; i <= static_cast<int>(Status::InProgress); ++i) {
    auto status = static_cast<Status>(i);
    EXPECT_EQ(parse_status(status_name(status)), status);
  }
  EXPECT_EQ(parse_status("COMPLETED"), Status::Completed);
  EXPECT_EQ(parse_status(""), std::nullopt);
  EXPECT_EQ(parse_status("complete"), std::nullopt);
}

TEST(EventTest, KindNamesParseBack) {
  EXPECT_EQ(kind_name(Kind::Stage), "stage");
  EXPECT_EQ(kind_name(Kind::Log), "log");
  EXPECT_EQ(kind_name(Kind::Heartbeat), "heartbeat");
  EXPECT_EQ(kind_name(Kind::Lifecycle), "lifecycle");
  EXPECT_EQ(kind_name(Kind::Node), "node");
  EXPECT_EQ(kind_name(Kind::Run), "run");
  for (int i = 0; i <= static_cast<int>(Kind::Run); ++i) {
    auto kind = static_cast<Kind>(i);
    EXPECT_EQ(parse_kind(kind_name(kind)), kind);
  }
  EXPECT_EQ(parse_kind("bogus"), std::nullopt);
}

TEST(EventTest, EventDefaults) {
  Event e;
  EXPECT_EQ(e.ts_ns, 0);
  EXPECT_EQ(e.kind, Kind::Log);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.status, Status::None);
  EXPECT_FALSE(e.elapsed_ns.has_value());
  EXPECT_TRUE(e.fields.empty());
}

TEST(EventTest, EnumNameGivesEnumeratorNames) {
  EXPECT_EQ(enum_name(Stage::WORKTREE), "WORKTREE");
  EXPECT_EQ(enum_name(Stage::AGENT), "AGENT");
  EXPECT_EQ(enum_name(Stage::JUDGE), "JUDGE");
  EXPECT_EQ(enum_name(kBeta), "kBeta");
  EXPECT_EQ(enum_name(Level::Warning), "Warning");
}

TEST(EventTest, EnumNameIsACompileTimeConstant) {
  static_assert(enum_name(Stage::AGENT) == "AGENT");
  static_assert(enum_name(static_cast<Stage>(3)).empty());
  SUCCEED();
}

TEST(EventTest, EnumNameIsEmptyForValuesWithoutAName) {
  EXPECT_EQ(enum_name(static_cast<Stage>(3)), "");
  EXPECT_EQ(enum_name(static_cast<Stage>(127)), "");
  EXPECT_EQ(enum_name(static_cast<Stage>(128)), "");
  EXPECT_EQ(enum_name(static_cast<Stage>(100000)), "");
  EXPECT_EQ(enum_name(static_cast<Stage>(-1)), "");
  EXPECT_EQ(enum_name(static_cast<Sparse>(5)), "");
  EXPECT_EQ(enum_name(static_cast<Sparse>(200)), "");
}

TEST(EventTest, EnumNameCoversZeroToOneHundredTwentySeven) {
  EXPECT_EQ(enum_name(Sparse::First), "First");
  EXPECT_EQ(enum_name(Sparse::Ten), "Ten");
  EXPECT_EQ(enum_name(Sparse::Last), "Last");
  EXPECT_EQ(enum_name(Negative::Zero), "Zero");
  EXPECT_EQ(enum_name(Negative::Minus), "");  // Negative values are outside the range.
}

}  // namespace
}  // namespace stagelog
