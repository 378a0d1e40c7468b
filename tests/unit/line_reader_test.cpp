// LineReader: the golden corpus under tests/data/logs (every format, with other lines between
// stage lines), the rules a stage line is read by, and a bounded fuzz of random and mutated
// lines.

#include "format/line_reader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "format/format.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"

namespace stagelog {
namespace {

using detail::LineReader;
using ::testing::HasSubstr;

const std::filesystem::path kCorpus = std::filesystem::path(STAGELOG_TEST_DATA) / "data" / "logs";

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::string json_of(const OwnedEvent& e) {
  std::string out;
  detail::format_json(e.view(), out);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<std::filesystem::path> corpus_logs() {
  std::vector<std::filesystem::path> logs;
  for (const auto& entry : std::filesystem::directory_iterator(kCorpus)) {
    auto ext = entry.path().extension();
    if (ext == ".log" || ext == ".jsonl") logs.push_back(entry.path());
  }
  std::sort(logs.begin(), logs.end());
  return logs;
}

// Each log's NAME.expected lists "<line number>\t<event JSON>" for every line that must yield
// an event; every other non-blank line must be refused with a reason. NAME.format, when
// present, holds the --format to read it with.
TEST(LineReaderTest, CorpusYieldsItsGoldenRecords) {
  auto logs = corpus_logs();
  ASSERT_GE(logs.size(), 10u);
  for (const auto& log : logs) {
    SCOPED_TRACE(log.filename().string());
    auto format_file = std::filesystem::path(log).replace_extension(".format");
    std::string format = "auto";
    if (std::filesystem::exists(format_file)) format = read_lines(format_file).at(0);
    LineReader reader(format);
    std::map<std::size_t, std::string> expected;
    for (const auto& row : read_lines(std::filesystem::path(log).replace_extension(".expected"))) {
      auto tab = row.find('\t');
      ASSERT_NE(tab, std::string::npos) << row;
      expected[std::stoul(row.substr(0, tab))] = row.substr(tab + 1);
    }
    ASSERT_FALSE(expected.empty());
    auto lines = read_lines(log);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].empty()) continue;
      std::string error;
      auto event = reader.read(lines[i], &error);
      auto it = expected.find(i + 1);
      if (it == expected.end()) {
        EXPECT_FALSE(event) << "line " << i + 1 << " read as " << json_of(*event);
        EXPECT_FALSE(error.empty()) << "line " << i + 1;
        continue;
      }
      ASSERT_TRUE(event) << "line " << i + 1 << ": " << error;
      EXPECT_EQ(json_of(*event), it->second) << "line " << i + 1;
      // What parse prints, the server's ingest reads back as the same event.
      std::string back_error;
      auto back = parse_json_event(json_of(*event), &back_error);
      ASSERT_TRUE(back) << back_error;
      EXPECT_EQ(json_of(*back), it->second);
    }
  }
}

OwnedEvent read_ok(std::string_view line) {
  std::string error;
  auto e = LineReader().read(line, &error);
  EXPECT_TRUE(e) << line << ": " << error;
  return e.value_or(OwnedEvent{});
}

std::string field_text(const OwnedEvent& e, std::string_view key) {
  const FieldValue* v = e.field(key);
  if (v == nullptr || !std::holds_alternative<std::string_view>(*v)) return "<none>";
  return std::string(std::get<std::string_view>(*v));
}

TEST(LineReaderTest, FindsTheStageLineBehindAnyPrefix) {
  auto e =
      read_ok("some prefix: INFO:app:2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
  EXPECT_EQ(e.kind, Kind::Stage);
  EXPECT_EQ(e.worker, "T0_00");
  EXPECT_EQ(e.stage, "AGENT");
  EXPECT_EQ(e.status, Status::Starting);
  EXPECT_EQ(e.ts_ns, *parse_timestamp("2026-01-04T19:30:15.234Z"));
  EXPECT_EQ(field_text(e, "prefix"), "some prefix: INFO:app:");
}

TEST(LineReaderTest, ReadsOffsetsAndCommaMillis) {
  auto base = *parse_timestamp("2026-01-04T19:30:15.234Z");
  EXPECT_EQ(read_ok("2026-01-04T19:30:15.234+00:00 [w] Stage: A - Starting").ts_ns, base);
  EXPECT_EQ(read_ok("2026-01-04T21:30:15,234+02:00 [w] Stage: A - Starting").ts_ns, base);
  EXPECT_EQ(read_ok("2026-01-04T14:30:15.234-0500 [w] Stage: A - Starting").ts_ns, base);
  EXPECT_EQ(read_ok("2026-01-04T19:30:15.234 [w] Stage: A - Starting").ts_ns, base);
}

TEST(LineReaderTest, KeepsFreeStatusTextAndMapsIt) {
  auto e = read_ok("2026-01-04T19:30:15.234Z [w] Stage: A - In progress");
  EXPECT_EQ(e.status, Status::Running);
  EXPECT_EQ(field_text(e, "status_text"), "In progress");
  e = read_ok("2026-01-04T19:30:15.234Z [w] Stage: A - Retrying: HTTP 429");
  EXPECT_EQ(e.status, Status::Running);
  EXPECT_EQ(field_text(e, "status_text"), "Retrying");
  EXPECT_EQ(e.message, "HTTP 429");
  e = read_ok("2026-01-04T19:30:15.234Z [w] Stage: A - Polishing the widgets");
  EXPECT_EQ(e.status, Status::Running);  // No known status fits: the stage is under way.
  EXPECT_EQ(field_text(e, "status_text"), "Polishing the widgets");
  e = read_ok("2026-01-04T19:30:15.234Z [w] Stage: A - Complete (13.2s)");
  EXPECT_EQ(e.status, Status::Completed);
  EXPECT_EQ(e.elapsed_ns, 13'200'000'000);
  EXPECT_EQ(field_text(e, "status_text"), "<none>");
}

TEST(LineReaderTest, RefusesUnknownFormatsAndBadRegexes) {
  EXPECT_THROW(LineReader("syslog-ng"), Error);
  EXPECT_THROW(LineReader("re:(unclosed"), Error);
  EXPECT_THROW(LineReader("re:(?<worker>\\w+)"), Error);  // No ts group.
}

TEST(LineReaderTest, NamedFormatsReadOnlyTheirFamily) {
  std::string error;
  EXPECT_FALSE(
      LineReader("jsonl").read("2026-01-04T19:30:15.234Z [w] Stage: A - Starting", &error));
  EXPECT_THAT(error, HasSubstr("JSON"));
  EXPECT_FALSE(
      LineReader("seed").read(R"({"ts":"2026-01-04T19:30:15.234Z","kind":"log"})", &error));
}

// Random bytes, and corpus lines with bytes flipped, cut, repeated or spliced: the reader never
// crashes, every event it returns formats as JSON the ingest reads back, and a long line of
// repeated markers is read in one pass. Bounded by a fixed count; seeded, so a failure repeats.
TEST(LineReaderTest, SurvivesRandomAndMutatedLines) {
  std::vector<std::string> seeds;
  for (const auto& log : corpus_logs()) {
    for (auto& line : read_lines(log)) seeds.push_back(line);
  }
  ASSERT_FALSE(seeds.empty());
  const std::string alphabet = " -[]:{}\"\\()+,.ZT0123456789aSstage=\t\x1b\n\r\xff";
  std::mt19937_64 rng(20260104);
  LineReader reader;
  LineReader regex_reader("re:^(?<ts>\\S+) (?<worker>\\w+)(?: (?<stage>\\w+))?.*$");
  std::size_t read = 0;
  constexpr int kIterations = 20000;
  for (int i = 0; i < kIterations; ++i) {
    std::string line = seeds[rng() % seeds.size()];
    switch (rng() % 5) {
      case 0: {  // Random text over a hostile alphabet.
        line.clear();
        std::size_t n = rng() % 200;
        for (std::size_t k = 0; k < n; ++k) line += alphabet[rng() % alphabet.size()];
        break;
      }
      case 1:  // Flip bytes.
        for (int k = 0; k < 4 && !line.empty(); ++k) {
          line[rng() % line.size()] = alphabet[rng() % alphabet.size()];
        }
        break;
      case 2:  // Cut.
        line.resize(line.empty() ? 0 : rng() % line.size());
        break;
      case 3:  // Splice two lines.
        line = line.substr(0, line.size() / 2) + seeds[rng() % seeds.size()];
        break;
      default:  // Repeat a piece.
        if (!line.empty()) {
          std::string piece = line.substr(rng() % line.size(), 12);
          for (int k = 0; k < 50; ++k) line += piece;
        }
        break;
    }
    std::string error;
    for (const LineReader* r : {&reader, &regex_reader}) {
      auto e = r->read(line, &error);
      if (!e) {
        EXPECT_FALSE(error.empty()) << line;
        continue;
      }
      ++read;
      std::string back_error;
      ASSERT_TRUE(parse_json_event(json_of(*e), &back_error)) << line << ": " << back_error;
    }
  }
  EXPECT_GT(read, 0u);
  std::string markers;
  for (int k = 0; k < 100000; ++k) markers += "[x] Stage: ";
  std::string error;
  EXPECT_FALSE(reader.read(markers, &error));
  markers = "2026-01-04T19:30:15.234Z [w] Stage: A - Starting " + std::string(1 << 20, '(');
  EXPECT_TRUE(reader.read(markers, &error)) << error;
}

}  // namespace
}  // namespace stagelog
