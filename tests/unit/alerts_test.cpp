#include "stagelog/server/alerts.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "line_mutator.hpp"
#include "stagelog/error.hpp"
#include "temp_dir.hpp"

namespace stagelog::server {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

TEST(AlertConfigTest, ReadsEveryRuleTypeWithItsDefaults) {
  AlertConfig c = parse_alert_config(R"({
    "webhooks": [{"name": "ops", "url": "http://127.0.0.1:9000/hook",
                  "headers": {"Authorization": "Bearer abc"}},
                 {"name": "chat", "url": "http://chat.example:80"}],
    "rules": [
      {"name": "judge", "type": "repeated_failures", "stage": "JUDGE", "count": 3,
       "window": "5m", "cooldown": "1h", "webhooks": ["ops"]},
      {"name": "stuck", "type": "stuck"},
      {"name": "silent", "type": "silent", "cooldown": "0"},
      {"name": "crashed", "type": "crashed"},
      {"name": "slow", "type": "slow_stage", "factor": 1.5, "min_count": 50}],
    "retry": {"attempts": 3, "first_delay": "250ms"},
    "evaluate_every": "30s"})");
  ASSERT_EQ(c.webhooks.size(), 2u);
  EXPECT_EQ(c.webhooks[0].headers.at(0).second, "Bearer abc");
  ASSERT_EQ(c.rules.size(), 5u);
  EXPECT_EQ(c.rules[0].type, AlertType::RepeatedFailures);
  EXPECT_EQ(c.rules[0].stage, "JUDGE");
  EXPECT_EQ(c.rules[0].count, 3);
  EXPECT_EQ(c.rules[0].window, 5min);
  EXPECT_EQ(c.rules[0].cooldown, 1h);
  EXPECT_EQ(c.rules[0].webhooks, std::vector<std::string>{"ops"});
  EXPECT_EQ(c.rules[1].type, AlertType::Stuck);
  EXPECT_EQ(c.rules[1].cooldown, 30min);  // The default.
  EXPECT_EQ(c.rules[2].cooldown, 0ns);
  EXPECT_EQ(c.rules[4].type, AlertType::SlowStage);
  EXPECT_EQ(c.rules[4].stage, "");  // Every stage.
  EXPECT_EQ(c.rules[4].factor, 1.5);
  EXPECT_EQ(c.rules[4].min_count, 50);
  EXPECT_EQ(c.attempts, 3);
  EXPECT_EQ(c.first_delay, 250ms);
  EXPECT_EQ(c.evaluate_every, 30s);
  EXPECT_EQ(alert_type_name(AlertType::SlowStage), "slow_stage");
}

TEST(AlertConfigTest, BadInputNamesTheKeyAndWhatIsWrong) {
  auto error = [](const std::string& json) {
    try {
      parse_alert_config(json);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string hook = R"("webhooks":[{"name":"ops","url":"http://127.0.0.1:1/h"}])";
  EXPECT_THAT(error("{"), HasSubstr("not valid JSON"));
  EXPECT_THAT(error("[]"), HasSubstr("expected a JSON object"));
  EXPECT_THAT(error("{}"), HasSubstr("rules: missing"));
  EXPECT_THAT(error(R"({"rules":[],"rulez":1})"), HasSubstr("(top).rulez: unknown key"));
  EXPECT_THAT(error(R"({"rules":[{"type":"stuck"}]})"),
              HasSubstr("rules[0].name: expected a non-empty string"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"flaky"}]})"),
              HasSubstr("rules[0].type: expected repeated_failures, stuck"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"repeated_failures","count":0}]})"),
              HasSubstr("rules[0].count: expected a whole number from 1"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"repeated_failures","window":"soon"}]})"),
              HasSubstr("rules[0].window: expected a duration"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"repeated_failures","window":"0"}]})"),
              HasSubstr("above 0"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"stuck","count":3}]})"),
              HasSubstr("rules[0].count: unknown key"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"slow_stage","factor":1}]})"),
              HasSubstr("rules[0].factor: expected a number above 1"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"stuck"},{"name":"a","type":"silent"}]})"),
              HasSubstr("rules[1].name: \"a\" is used twice"));
  EXPECT_THAT(error(R"({"rules":[{"name":"a","type":"stuck","webhooks":["ops"]}]})"),
              HasSubstr("rules[0].webhooks: no webhook is named \"ops\""));
  EXPECT_THAT(error(R"({"webhooks":[{"name":"x","url":"https://h/x"}],"rules":[]})"),
              HasSubstr("no error"));
  EXPECT_THAT(
      error(R"({"webhooks":[{"name":"x","url":"http://h/x","ca_file":"ca.pem"}],"rules":[]})"),
      HasSubstr("webhooks[0].ca_file: needs an https:// url"));
  EXPECT_THAT(error(R"({"webhooks":[{"name":"x","url":"https://h/x","ca_file":"/no/such.pem"}],)"
                    R"("rules":[]})"),
              HasSubstr("webhooks[0].ca_file: cannot read the CA file /no/such.pem"));
  EXPECT_THAT(error(R"({"webhooks":[{"name":"x","url":"ftp://h"}],"rules":[]})"),
              HasSubstr("webhooks[0].url:"));
  EXPECT_THAT(error(R"({"webhooks":[{"name":"x","url":"http://h","headers":{"A B":"1"}}],)"
                    R"("rules":[]})"),
              HasSubstr("is not a header name"));
  EXPECT_THAT(error(R"({"webhooks":[{"name":"x","url":"http://h","headers":{"A":"1\r\nB: 2"}}],)"
                    R"("rules":[]})"),
              HasSubstr("may not break lines"));
  EXPECT_THAT(error("{" + hook + R"(,"webhooks2":1,"rules":[]})"), HasSubstr("unknown key"));
  EXPECT_THAT(error(R"({"rules":[],"retry":{"attempts":21}})"),
              HasSubstr("retry.attempts: expected a whole number from 1 to 20"));
  EXPECT_THAT(error(R"({"rules":[],"evaluate_every":"0"})"), HasSubstr("evaluate_every"));
}

TEST(AlertConfigTest, AFileThatCannotBeReadOrParsedIsNamed) {
  test::TempDir dir;
  auto path = dir.path() / "alerts.json";
  EXPECT_THROW(
      {
        try {
          load_alert_config(path);
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr("cannot read alerts file"));
          throw;
        }
      },
      Error);
  std::ofstream(path) << R"({"rules":[{"name":"a","type":"nope"}]})";
  try {
    load_alert_config(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path.string() + ": alerts: rules[0].type"));
  }
}

// Mutated and random files: a config or an Error naming what is wrong, nothing else.
TEST(AlertConfigTest, FuzzedFilesAreAConfigOrAnError) {
  const std::vector<std::string> seeds = {
      R"({"webhooks":[{"name":"ops","url":"http://127.0.0.1:9000/hook","headers":{"A":"b"}}],)"
      R"("rules":[{"name":"j","type":"repeated_failures","stage":"JUDGE","count":3,)"
      R"("window":"5m","cooldown":"1h","webhooks":["ops"]},{"name":"s","type":"slow_stage",)"
      R"("factor":1.5,"min_count":5}],"retry":{"attempts":3,"first_delay":"1s"},)"
      R"("evaluate_every":"30s"})",
      R"({"rules":[{"name":"a","type":"stuck"},{"name":"b","type":"silent","cooldown":"0"}]})"};
  test::LineMutator mutate(20261130, R"({}[]":,0123456789.-eE\ abcnrstuvwxyz_)");
  int parsed = 0;
  for (int i = 0; i < 20'000; ++i) {
    std::string text = mutate.next(seeds, "{");
    try {
      AlertConfig c = parse_alert_config(text);
      ++parsed;
      for (const AlertRule& r : c.rules) {
        EXPECT_FALSE(r.name.empty()) << text;
        EXPECT_GE(r.count, 1) << text;
      }
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::StartsWith("alerts: ")) << text;
    }
  }
  EXPECT_GT(parsed, 0);  // Some mutations still parse: the seeds reach the checks.
}

}  // namespace
}  // namespace stagelog::server
