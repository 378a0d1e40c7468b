// `stagelog parse` prints what `POST /api/v1/events` takes as it is: every file of the log
// corpus (tests/data/logs), parsed by the real binary, is accepted by a real `stagelog serve`,
// every event of it.

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "serve_process.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

namespace fs = std::filesystem;

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST(ParseIngestTest, ServerAcceptsParseOutputOfEveryCorpusFile) {
  test::TempDir dir;
  test::ServeProcess serve(dir.path() / "data");
  ASSERT_TRUE(serve.wait_until_listening());
  ASSERT_FALSE(serve.token.empty());
  httplib::Client client("127.0.0.1", serve.port);
  httplib::Headers auth = {{"Authorization", "Bearer " + serve.token}};

  const fs::path corpus = fs::path(STAGELOG_TEST_DATA) / "data" / "logs";
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    auto ext = entry.path().extension();
    if (ext != ".log" && ext != ".jsonl") continue;
    SCOPED_TRACE(entry.path().filename().string());
    std::vector<std::string> args = {"parse", "-q"};
    auto format_file = fs::path(entry.path()).replace_extension(".format");
    if (fs::exists(format_file)) {
      std::ifstream in(format_file);
      std::string format;
      std::getline(in, format);
      args.push_back("--format");
      args.push_back(format);
    }
    args.push_back(entry.path().string());
    auto run = test::run_stagelog(dir, args);
    ASSERT_TRUE(run.status == 0 || run.status == 1) << run.err;
    std::ifstream expected(fs::path(entry.path()).replace_extension(".expected"));
    std::size_t rows = 0;
    for (std::string row; std::getline(expected, row);) ++rows;
    ASSERT_EQ(count_lines(run.out), rows);
    auto r = client.Post("/api/v1/events", auth, run.out, "application/x-ndjson");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    ASSERT_EQ(r->status, 200) << r->body;
    auto answer = nlohmann::json::parse(r->body);
    EXPECT_EQ(answer.value("accepted", std::size_t{0}), rows) << r->body;
    ++files;
  }
  EXPECT_GE(files, 10u);
}

}  // namespace
}  // namespace stagelog
