// detail::read_json, the JSONL event reader's parser: what it accepts and refuses, where it says
// the fault is, and that it reads every document exactly as nlohmann's SAX parser does (the
// parser it replaced), call for call, over mutated and random input.

#include "format/json_reader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "line_mutator.hpp"

namespace stagelog::detail {
namespace {

using ::testing::ElementsAre;

std::string number_text(double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return buf;
}

// read_json's calls as lines of text.
struct Trace {
  std::vector<std::string> calls;
  bool null() { return add("null"); }
  bool boolean(bool v) { return add(v ? "true" : "false"); }
  bool number_integer(std::int64_t v) { return add("int", std::to_string(v)); }
  bool number_unsigned(std::uint64_t v) { return add("uint", std::to_string(v)); }
  bool number_float(double v, std::string_view raw) {
    return add("float", number_text(v) + " " + std::string(raw));
  }
  bool string(std::string_view v) { return add("string", v); }
  bool key(std::string_view v) { return add("key", v); }
  bool start_object() { return add("{"); }
  bool end_object() { return add("}"); }
  bool start_array() { return add("["); }
  bool end_array() { return add("]"); }
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) about "literal" + string.
  bool add(std::string_view what, std::string_view value) {
    std::string call(what);
    call += ' ';
    call += value;
    return add(std::move(call));
  }
  bool add(std::string call) {
    calls.push_back(std::move(call));
    return true;
  }
};

// nlohmann's SAX calls as the same lines.
struct NlohmannTrace : nlohmann::json_sax<nlohmann::json> {
  Trace trace;
  bool null() override { return trace.null(); }
  bool boolean(bool v) override { return trace.boolean(v); }
  bool number_integer(number_integer_t v) override { return trace.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) override { return trace.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& raw) override {
    return trace.number_float(v, raw);
  }
  bool string(string_t& v) override { return trace.string(v); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return trace.start_object(); }
  bool key(string_t& v) override { return trace.key(v); }
  bool end_object() override { return trace.end_object(); }
  bool start_array(std::size_t) override { return trace.start_array(); }
  bool end_array() override { return trace.end_array(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }
};

// An input in a failure message: JSON-quoted, ASCII only, bad bytes as U+FFFD.
std::string shown(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string error_of(std::string_view text) {
  Trace trace;
  std::string error;
  EXPECT_FALSE(read_json(text, trace, &error)) << text;
  return error;
}

TEST(JsonReaderTest, ReadsAnObjectInOrderWithRepeatedKeys) {
  Trace t;
  std::string error;
  ASSERT_TRUE(read_json(R"( {"b":1,"a":[true,false,null],"b":"x","o":{}} )", t, &error)) << error;
  EXPECT_THAT(t.calls, ElementsAre("{", "key b", "uint 1", "key a", "[", "true", "false", "null",
                                   "]", "key b", "string x", "key o", "{", "}", "}"));
}

TEST(JsonReaderTest, NumbersKeepTheirKindAndText) {
  Trace t;
  std::string error;
  ASSERT_TRUE(
      read_json("[0,-0,-1,9223372036854775807,18446744073709551615,18446744073709551616,"
                "-9223372036854775808,-9223372036854775809,1.5,-2e3,1E-400]",
                t, &error))
      << error;
  EXPECT_THAT(
      t.calls,
      ElementsAre("[", "uint 0", "int 0", "int -1", "uint 9223372036854775807",
                  "uint 18446744073709551615", "float 1.8446744073709552e+19 18446744073709551616",
                  "int -9223372036854775808", "float -9.2233720368547758e+18 -9223372036854775809",
                  "float 1.5 1.5", "float -2000 -2e3", "float 0 1E-400", "]"));
}

TEST(JsonReaderTest, UnescapesStringsAndKeepsUtf8) {
  Trace t;
  std::string error;
  ASSERT_TRUE(read_json(R"(["a\"b\\c\/d\b\f\n\r\t", "\u00e9\ud83d\ude00", "héllo ✓", "\u0000"])", t,
                        &error))
      << error;
  ASSERT_EQ(t.calls.size(), 6u);
  EXPECT_EQ(t.calls[1], "string a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(t.calls[2], "string \xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ(t.calls[3], "string h\xC3\xA9llo \xE2\x9C\x93");
  EXPECT_EQ(t.calls[4], std::string("string \0", 8));
}

TEST(JsonReaderTest, SaysWhatIsWrongAndAtWhichByte) {
  EXPECT_EQ(error_of(""), "unexpected end of input");
  EXPECT_EQ(error_of("{"), "unexpected end of input");
  EXPECT_EQ(error_of(R"({"a":1,})"), "unexpected '}' at byte 8");
  EXPECT_EQ(error_of(R"({"a":1} x)"), "unexpected 'x' at byte 9");
  EXPECT_EQ(error_of(R"({'a':1})"), "unexpected ''' at byte 2");
  EXPECT_EQ(error_of(R"({"a" 1})"), "unexpected '1' at byte 6");
  EXPECT_EQ(error_of("[tru]"), "unexpected ']' at byte 5");
  EXPECT_EQ(error_of("[01]"), "unexpected '1' at byte 3");
  EXPECT_EQ(error_of("[1.]"), "unexpected ']' at byte 4");
  EXPECT_EQ(error_of("[NaN]"), "unexpected 'N' at byte 2");
  EXPECT_EQ(error_of("[1e400]"), "number out of range: 1e400 at byte 2");
  EXPECT_EQ(error_of(R"(["abc)"), "unterminated string at byte 2");
  EXPECT_EQ(error_of("[\"a\tb\"]"), "control character U+0009 in a string at byte 4");
  EXPECT_EQ(error_of("[\"a\xff\"]"), "invalid UTF-8 at byte 4");
  EXPECT_EQ(error_of("[\"\xED\xA0\x80\"]"), "invalid UTF-8 at byte 3");  // A surrogate.
  EXPECT_EQ(error_of("[\"\xC0\x80\"]"), "invalid UTF-8 at byte 3");      // Overlong.
  EXPECT_EQ(error_of(R"(["\x"])"), "invalid escape at byte 3");
  EXPECT_EQ(error_of(R"(["\u12"])"), "invalid \\u escape at byte 3");
  EXPECT_EQ(error_of(R"(["\udc00"])"), "lone low surrogate in a \\u escape at byte 3");
  EXPECT_EQ(error_of(R"(["\ud800x"])"),
            "high surrogate without its low surrogate in a \\u escape at byte 3");
  EXPECT_EQ(error_of("[\x01]"), "unexpected byte 0x01 at byte 2");
}

TEST(JsonReaderTest, RefusesNulBytes) {
  EXPECT_EQ(error_of(std::string("{}\0x", 4)), "unexpected byte 0x00 at byte 3");
  EXPECT_EQ(error_of(std::string("[\"a\0\"]", 6)),
            "control character U+0000 in a string at byte 4");
}

TEST(JsonReaderTest, DeepNestingNeedsNoStack) {
  std::string deep = std::string(200000, '[') + std::string(200000, ']');
  Trace t;
  std::string error;
  EXPECT_TRUE(read_json(deep, t, &error)) << error;
  EXPECT_EQ(t.calls.size(), 400000u);
}

// Every input: the same verdict as nlohmann's parser and, when accepted, the same calls.
TEST(JsonReaderTest, ReadsMutatedAndRandomInputExactlyAsNlohmann) {
  const std::vector<std::string> seeds = {
      R"j({"ts":"2026-01-04T19:30:15.234Z","ts_ns":1767555015234000000,"kind":"stage","level":"info","run":"item-13","worker":"T0_00","component":"pipeline","stage":"AGENT","status":"completed","elapsed_ns":13200000000,"message":"Complete (13.2s)","fields":{"tokens":1247,"model":"llama-3-8b","ratio":0.25,"ok":true,"none":null,"tags":["a",{"b":[1,-2.5e-3]}]},"pid":4242,"host":"gpu-box"})j",
      R"({"a":"\u00e9\ud83d\ude00\n\t\"\\","b":[0,-0,1e5,1E+2,-1.0e-2,18446744073709551616],"c":{}})",
      "[\"h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x98\x80\", true, false, null, [], {}]",
      R"(  {"x" : [ 1 , 2 ] ,"y":"z"}  )",
  };
  // Bytes that make JSON go wrong: NUL, DEL, and pieces of valid and invalid UTF-8.
  constexpr char kBytes[] = "\0\x7f\xff\xC0\x80\xC3\xA9\xE2\xED\xA0\xF0\x9F";
  const std::string alphabet = std::string("{}[]:,\"\\/ 0123456789-+.eEtrufalsnbx\t\r\n") +
                               std::string(kBytes, sizeof kBytes - 1);
  test::LineMutator mutator(20261130, alphabet);
  int accepted = 0;
  int refused = 0;
  int failures = 0;
  for (int iteration = 0; iteration < 30000 && failures < 10; ++iteration) {
    std::string text = mutator.next(seeds, "{");
    Trace ours;
    std::string error;
    bool ours_ok = read_json(text, ours, &error);
    if (!ours_ok && error.empty()) {
      ++failures;
      ADD_FAILURE() << "refused without a reason: " << shown(text);
    }
    (ours_ok ? accepted : refused)++;
    // nlohmann stops reading at a NUL byte and accepts what came before ("1\0x" is 1): the
    // verdicts differ there by design (a NUL is never valid JSON), see RefusesNulBytes.
    if (text.find('\0') != std::string::npos) {
      EXPECT_FALSE(ours_ok) << shown(text);
      continue;
    }
    NlohmannTrace theirs;
    bool theirs_ok = nlohmann::json::sax_parse(text, &theirs);
    bool same = ours_ok == theirs_ok && (!ours_ok || ours.calls == theirs.trace.calls);
    if (!same) {
      ++failures;
      ADD_FAILURE() << "read_json " << (ours_ok ? "accepted" : "refused (" + error + ")")
                    << ", nlohmann " << (theirs_ok ? "accepted" : "refused") << ": " << shown(text);
    }
  }
  // Both verdicts were exercised many times.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(refused, 1000);
}

}  // namespace
}  // namespace stagelog::detail
