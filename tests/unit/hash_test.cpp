#include "stagelog/hash.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "python_run.hpp"
#include "stagelog/error.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;

// ---- Helpers ---------------------------------------------------------------------------------

using test::run_python;
using test::split_lines;

// SHA-256 prefix of arbitrary text, computed independently of hash.cpp's JSON path.
std::string sha_of(std::string_view text) { return hash_output(text); }

// ---- Test vectors and scalars ------------------------------------------------------------------

TEST(HashTest, SeedVectors) {
  EXPECT_EQ(hash_output_json(R"({"b":1,"a":2})"), "21501dbaf73f5223");
  EXPECT_EQ(hash_output("abc"), "ba7816bf8f01cfea");
  EXPECT_EQ(hash_output(std::string_view("abc")), "ba7816bf8f01cfea");
  EXPECT_EQ(hash_output(std::string("abc")), "ba7816bf8f01cfea");
  EXPECT_EQ(python_json_dumps_sorted(R"({"b":1,"a":2})"), R"({"a": 2, "b": 1})");
  // The empty string: SHA-256 of nothing.
  EXPECT_EQ(hash_output(""), "e3b0c44298fc1c14");
}

TEST(HashTest, ScalarsHashTheirPythonStr) {
  EXPECT_EQ(hash_output(std::int64_t{42}), sha_of("42"));
  EXPECT_EQ(hash_output(42), sha_of("42"));  // int goes through the integral template.
  EXPECT_EQ(hash_output(-7), sha_of("-7"));
  EXPECT_EQ(hash_output(42U), sha_of("42"));
  EXPECT_EQ(hash_output(std::numeric_limits<std::int64_t>::min()), sha_of("-9223372036854775808"));
  EXPECT_EQ(hash_output(std::numeric_limits<std::uint64_t>::max()), sha_of("18446744073709551615"));
  EXPECT_EQ(hash_output(true), sha_of("True"));
  EXPECT_EQ(hash_output(false), sha_of("False"));
  EXPECT_EQ(hash_output(1.5), sha_of("1.5"));
  EXPECT_EQ(hash_output(1.5F), sha_of("1.5"));
  EXPECT_EQ(hash_output(100.0), sha_of("100.0"));
  EXPECT_EQ(hash_output(static_cast<const char*>(nullptr)), sha_of("None"));
}

TEST(HashTest, FloatReprFollowsPython) {
  EXPECT_EQ(python_float_repr(1.5), "1.5");
  EXPECT_EQ(python_float_repr(1e20), "1e+20");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(1.5e-7), "1.5e-07");
  EXPECT_EQ(python_float_repr(100.0), "100.0");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(python_float_repr(123456789.0), "123456789.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(9999999999999998.0), "9999999999999998.0");
  EXPECT_EQ(python_float_repr(1e100), "1e+100");
  EXPECT_EQ(python_float_repr(5e-324), "5e-324");
  EXPECT_EQ(python_float_repr(-2.5e-5), "-2.5e-05");
  EXPECT_EQ(python_float_repr(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(python_float_repr(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::quiet_NaN()), "nan");
}

// ---- Serialisation -----------------------------------------------------------------------------

TEST(HashTest, KeysSortedIncludingNestedObjects) {
  EXPECT_EQ(python_json_dumps_sorted(R"({"z":{"y":1,"x":{"b":[{"d":1,"c":2}],"a":null}},"a":[]})"),
            R"({"a": [], "z": {"x": {"a": null, "b": [{"c": 2, "d": 1}]}, "y": 1}})");
  // Upper case before lower case before non-ASCII, as Python's code point order.
  EXPECT_EQ(python_json_dumps_sorted(R"({"b":1,"B":2,"_":3,"é":4,"e":5,"":6})"),
            R"({"": 6, "B": 2, "_": 3, "b": 1, "e": 5, "\u00e9": 4})");
  // Code point order, not UTF-16 order: U+1F600 sorts after U+E000 and U+FFFF.
  EXPECT_EQ(
      python_json_dumps_sorted("{\"\xF0\x9F\x98\x80\":1,\"\xEF\xBF\xBF\":2,\"\xEE\x80\x80\":3}"),
      R"({"\ue000": 3, "\uffff": 2, "\ud83d\ude00": 1})");
  // Arrays keep their order; duplicate keys keep the last value, as json.loads.
  EXPECT_EQ(python_json_dumps_sorted(R"({"a":[3,1,2],"k":1,"k":2})"),
            R"({"a": [3, 1, 2], "k": 2})");
  EXPECT_EQ(python_json_dumps_sorted("{}"), "{}");
  EXPECT_EQ(python_json_dumps_sorted(" {\n\t\"a\" : [ ] , \"b\" : { } }\r\n"),
            R"({"a": [], "b": {}})");
}

TEST(HashTest, UnicodeEscapedAsPythonEnsureAscii) {
  EXPECT_EQ(python_json_dumps_sorted(R"({"k":"café 中 😀"})"),
            R"({"k": "caf\u00e9 \u4e2d \ud83d\ude00"})");
  // Escapes in the input come out the same way (uppercase hex in, lowercase out).
  EXPECT_EQ(python_json_dumps_sorted(R"({"k":"\u00E9\uD83D\uDE00\u4E2D"})"),
            R"({"k": "\u00e9\ud83d\ude00\u4e2d"})");
  EXPECT_EQ(python_json_dumps_sorted(R"({"中":{"é":"x"}})"), R"({"\u4e2d": {"\u00e9": "x"}})");
  EXPECT_EQ(hash_output_json(R"({"k":"😀"})"), sha_of(R"({"k": "\ud83d\ude00"})"));
}

TEST(HashTest, ControlCharactersEscapedAsPython) {
  EXPECT_EQ(python_json_dumps_sorted(R"({"k":"a\nb\rc\td\be\ff\u0001\u001f\u0000\u007f"})"),
            R"({"k": "a\nb\rc\td\be\ff\u0001\u001f\u0000\u007f"})");
  EXPECT_EQ(python_json_dumps_sorted(R"({"k":"\"q\" \\ \/ / ~"})"), R"({"k": "\"q\" \\ / / ~"})");
  EXPECT_EQ(python_json_dumps_sorted("{\"k\":\"\x7f\"}"), R"({"k": "\u007f"})");
}

TEST(HashTest, NumbersAsPythonIntAndFloat) {
  EXPECT_EQ(python_json_dumps_sorted(
                R"({"f":[0.1,1e16,1e-5,123456789.0,-0.0,1.0,1,-0,1E2,2.50,1e15,5e-324]})"),
            R"({"f": [0.1, 1e+16, 1e-05, 123456789.0, -0.0, 1.0, 1, 0, 100.0, 2.5, )"
            R"(1000000000000000.0, 5e-324]})");
  // Integers keep every digit, also beyond 64 bits (Python ints are unbounded).
  EXPECT_EQ(
      python_json_dumps_sorted(R"({"a":18446744073709551615,"b":-9223372036854775808,)"
                               R"("c":-9223372036854775809,"d":123456789012345678901234567890})"),
      R"({"a": 18446744073709551615, "b": -9223372036854775808, )"
      R"("c": -9223372036854775809, "d": 123456789012345678901234567890})");
  EXPECT_EQ(hash_output_json(R"({"x":1.0})"), sha_of(R"({"x": 1.0})"));
  EXPECT_NE(hash_output_json(R"({"x":1.0})"), hash_output_json(R"({"x":1})"));
}

TEST(HashTest, TopLevelValuesOtherThanObjectsHashTheirPythonStr) {
  EXPECT_EQ(python_json_dumps_sorted(R"([1,{"b":0,"a":1}])"), R"([1, {"a": 1, "b": 0}])");
  EXPECT_EQ(python_json_dumps_sorted("\"x\""), "\"x\"");
  EXPECT_EQ(python_json_dumps_sorted("null"), "null");
  // The seed hashes str(data) for anything but a dict: a list's repr, a string's own text.
  EXPECT_EQ(hash_output_json("[1,2]"), sha_of("[1, 2]"));
  EXPECT_EQ(hash_output_json(R"([1,{"b":0,"a":1},"x",null,true,1.0])"),
            sha_of("[1, {'b': 0, 'a': 1}, 'x', None, True, 1.0]"));
  EXPECT_EQ(hash_output_json("\"abc\""), hash_output("abc"));
  EXPECT_EQ(hash_output_json("\"a\\nb\""), hash_output("a\nb"));
  EXPECT_EQ(hash_output_json("42"), hash_output(42));
  EXPECT_EQ(hash_output_json("1.5"), hash_output(1.5));
  EXPECT_EQ(hash_output_json("true"), hash_output(true));
  EXPECT_EQ(hash_output_json("null"), sha_of("None"));
  EXPECT_EQ(hash_output_json("[]"), sha_of("[]"));
}

TEST(HashTest, StrOfListsIsTheirRepr) {
  EXPECT_EQ(python_str_of_json(R"([1,[2,[3,[]]],{}])"), "[1, [2, [3, []]], {}]");
  // Dicts inside keep the order their keys came in; of duplicates the last value, first place.
  EXPECT_EQ(python_str_of_json(R"([{"k":1,"a":2,"k":3}])"), "[{'k': 3, 'a': 2}]");
  EXPECT_EQ(python_str_of_json(R"({"z":[1],"a":"x"})"), "{'z': [1], 'a': 'x'}");
  EXPECT_EQ(python_str_of_json(R"(["it's","say \"hi\"","both ' \"","a\\b"])"),
            R"(["it's", 'say "hi"', 'both \' "', 'a\\b'])");
  EXPECT_EQ(python_str_of_json(R"(["\n\r\t\u0000\u001f\u007f"])"), R"(['\n\r\t\x00\x1f\x7f'])");
  // Printable non-ASCII passes through; what Python's isprintable() refuses is escaped.
  EXPECT_EQ(
      python_str_of_json(R"(["café 中 😀","\u0085\u00a0\u00ad\u200b\u2028\ue000\udb40\udc01"])"),
      R"(['café 中 😀', '\x85\xa0\xad\u200b\u2028\ue000\U000e0001'])");
  EXPECT_EQ(python_str_of_json(R"([1e16,-0.0,-0,0.1,123456789012345678901234567890])"),
            "[1e+16, -0.0, 0, 0.1, 123456789012345678901234567890]");
  EXPECT_EQ(python_str_of_json(R"("raw\ntext")"), "raw\ntext");
  EXPECT_EQ(python_str_of_json("false"), "False");
}

TEST(HashTest, NanAndInfinityReadAsJsonLoadsReadsThem) {
  EXPECT_EQ(python_json_dumps_sorted(R"({"b":[Infinity,-Infinity],"a":NaN})"),
            R"({"a": NaN, "b": [Infinity, -Infinity]})");
  EXPECT_EQ(hash_output_json(R"({"a":NaN})"), sha_of(R"({"a": NaN})"));
  EXPECT_EQ(python_str_of_json("[NaN, Infinity,-Infinity ,1]"), "[nan, inf, -inf, 1]");
  EXPECT_EQ(hash_output_json("[NaN]"), sha_of("[nan]"));
  EXPECT_EQ(hash_output_json("NaN"), hash_output(std::numeric_limits<double>::quiet_NaN()));
  EXPECT_EQ(hash_output_json("-Infinity"), hash_output(-std::numeric_limits<double>::infinity()));
  // Only outside strings, and each one in its place among the other numbers.
  EXPECT_EQ(python_json_dumps_sorted(R"({"NaN":"NaN Infinity \"NaN\"","x":[1,NaN,-2,Infinity,3]})"),
            R"({"NaN": "NaN Infinity \"NaN\"", "x": [1, NaN, -2, Infinity, 3]})");
  EXPECT_EQ(python_str_of_json(R"([{"a":NaN,"b":"\\",  "c":[-Infinity]}])"),
            R"([{'a': nan, 'b': '\\', 'c': [-inf]}])");
}

TEST(HashTest, InvalidJsonThrows) {
  // Also what json.loads accepts beyond strict JSON but we do not (a lone surrogate, 1e400 as
  // inf): see the header. Raw control characters and invalid UTF-8 are rejected by both, and so
  // is what only looks like NaN or Infinity (json.loads refuses those too).
  const std::vector<std::string> texts = {"",
                                          "{",
                                          R"({"a":})",
                                          R"({"a":1,})",
                                          "{'a':1}",
                                          R"({"a":1} x)",
                                          R"({"a":nan})",
                                          R"({"a":inf})",
                                          R"({"a":-NaN})",
                                          R"({"a":+Infinity})",
                                          R"({"a":1NaN})",
                                          R"({"a":NaN1})",
                                          R"({"a":NaNNaN})",
                                          R"({"a":Infinityx})",
                                          R"({"a":-Infinit})",
                                          R"([NaN,])",
                                          R"({"a":01})",
                                          R"({"a":1e400})",
                                          R"({"a":"\ud800"})",
                                          std::string(R"({"a":")") + '\x01' + R"("})",
                                          std::string(R"({"a":")") + '\xff' + R"("})"};
  for (const std::string& text : texts) {
    try {
      hash_output_json(text);
      ADD_FAILURE() << "no Error for " << text;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("hash_output_json: invalid JSON: ")) << text;
    }
    EXPECT_THROW(python_json_dumps_sorted(text), Error) << text;
  }
}

TEST(HashTest, NestingLimit) {
  auto nested = [](int depth) {
    std::string text;
    for (int i = 0; i < depth; ++i) text += "{\"a\":";
    text += "1";
    for (int i = 0; i < depth; ++i) text += "}";
    return text;
  };
  EXPECT_EQ(hash_output_json(nested(1000)).size(), 16U);
  try {
    hash_output_json(nested(1001));
    ADD_FAILURE() << "no Error at depth 1001";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nested deeper than 1000 levels"));
  }
  EXPECT_THROW(hash_output_json(std::string(100000, '[')), Error);
}

// ---- Agreement with Python ---------------------------------------------------------------------

// The JSON texts checked against Python. Raw UTF-8 and escapes both appear.
std::vector<std::string> python_cases() {
  std::string deep;
  for (int i = 0; i < 60; ++i) {
    deep += i % 2 == 0 ? R"({"z":1,"k)" + std::to_string(i) + R"(":)" : "[0,";
  }
  deep += "{\"end\":[true,false,null]}";
  for (int i = 59; i >= 0; --i) deep += i % 2 == 0 ? "}" : "]";
  std::vector<std::string> cases;
  cases.emplace_back(R"({"b":1,"a":2})");
  cases.emplace_back(
      R"({"name":"café","中文":{"z":"😀","a":"naïve","A":"Ω"},"emoji😀":1,"é":2,"e":3,"\ue000":4})");
  cases.push_back(
      std::string(
          R"({"f":[0.1,1e16,1e-5,123456789.0,-0.0,1.0,1E2,2.5e-3,1e15,1.7976931348623157e308,)") +
      R"(5e-324,0.30000000000000004,1e22,1e23,-1.5e-7,3.141592653589793]})");
  cases.emplace_back(R"({"list":[3,1,2,[{"b":1,"a":0}],[],[[]],"s"],"nums":[1,-1,0,-0]})");
  cases.emplace_back(R"({"t":true,"f":false,"n":null,"arr":[true,false,null]})");
  cases.emplace_back(R"({})");
  cases.push_back(deep);
  cases.push_back(std::string(R"({"ctl":"a\nb\tc\u0001\u001f\u007f\b\f\r\"\\\/ ~\u0000","raw":")") +
                  '\x7f' + R"("})");
  cases.push_back(
      std::string(R"({"big":123456789012345678901234567890,"neg":-9223372036854775809,)") +
      R"("u":18446744073709551615,"i":-9223372036854775808,"j":9223372036854775807})");
  cases.emplace_back(R"({"a":1,"a":2,"b":{"x":1,"x":[1]},"B":0})");
  cases.emplace_back(
      "  {\n \"k\" : [ 1 , 2 ] ,\"\\u00e9\\uD83D\\uDE00\":\"\\u2028\\u2029\\uFEFF\"}\t");
  cases.push_back(
      std::string(R"({"workflow_id":"wf-1","node_times":{"agent":13.2,"brain":0.25},"pid":4242,)") +
      R"("status":"ok","outputs":{"text":"Héllo, wörld!","score":0.987,"tokens":512}})");
  return cases;
}

// Python's hash (the expression the brief gives) and json.dumps output for each case, from one
// python3 run per case (stdin redirected from a temp file), shared by the two tests below.
struct PythonResult {
  std::string hash;
  std::string dumps;
};

const std::vector<PythonResult>& python_results() {
  static const std::vector<PythonResult> results = [] {
    std::vector<PythonResult> out;
    for (const std::string& text : python_cases()) {
      std::string output = run_python(
          "import json,hashlib,sys; d=json.loads(sys.stdin.read()); "
          "print(hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]); "
          "sys.stdout.write(json.dumps(d, sort_keys=True))",
          text);
      auto newline = output.find('\n');
      if (newline == std::string::npos) newline = output.size();
      out.push_back(
          {output.substr(0, newline), output.substr(std::min(newline + 1, output.size()))});
    }
    return out;
  }();
  return results;
}

TEST(HashTest, HashAgreesWithPython) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  const auto& expected = python_results();
  std::vector<std::string> cases = python_cases();
  ASSERT_EQ(expected.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(expected[i].hash.size(), 16U) << cases[i];
    EXPECT_EQ(hash_output_json(cases[i]), expected[i].hash) << cases[i];
  }
}

TEST(HashTest, DumpsAgreesWithPythonExactly) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  const auto& expected = python_results();
  std::vector<std::string> cases = python_cases();
  ASSERT_EQ(expected.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(python_json_dumps_sorted(cases[i]), expected[i].dumps) << cases[i];
  }
}

// Values of every kind, mostly not objects, as JSON texts: the seed hashes str() of those.
std::vector<std::string> python_value_cases() {
  return {// Lists, nested, with dicts in them (repr keeps their key order).
          "[]", "[1,2,3]", R"(["a","b"])", "[[],[[]],[[[1]]]]",
          R"([1,[2,[3,[4,{"x":[NaN,"y\u0000"]}]]]])", R"([{"b":1,"a":2}])",
          R"([{"k":1,"k":2,"a":0}])", R"([{"":""},{},[{}]])", R"([{"é":{"中":["😀"]}}])",
          R"([["a",["b'c",["d\"e"]]]])", "[true,false,null]",
          // Floats: NaN, infinities, signed zeros, shortest repr.
          "[NaN]", "[Infinity,-Infinity,NaN]", "[-0.0,0.0,-0,0]", "[1e16,1e-5,0.1,1.5e300,5e-324]",
          "[0.1,0.2,0.30000000000000004]", "[1.0,100.0,1e15,1e16,123456789.0]",
          "[-1.5e-7,1e22,1e23]", "[1.7976931348623157e308,2.2250738585072014e-308,4.35,-2.5e-5]",
          // Big integers.
          "[123456789012345678901234567890,-9223372036854775809,18446744073709551615]",
          "[9223372036854775807,-9223372036854775808,-0,0e0,1E+2]",
          // Quotes, backslashes, control characters.
          R"(["it's"])", R"(["say \"hi\""])", R"(["both ' and \""])", R"(["back\\slash","/"])",
          R"(["\n\r\t\b\f\u0000\u0001\u001f\u007f"])", R"([" ","~","\u0020"])",
          // Unicode: printable, and each kind of character Python's isprintable() refuses.
          R"(["café","中文","😀","𝄞","e\u0301","\ud800\udc00","\ud83c\udffb"])",
          R"(["\u0080\u0085\u009f","\u00a0\u00ad"])", R"(["\u200b\u200e\u2028\u2029\u3000\ufeff"])",
          R"(["\ue000\uf8ff","\udb80\udc00","\udbff\udffd"])", R"(["\u0378","\u0380","\u08ff"])",
          R"(["\ufffe\uffff","\udbff\udfff","\ud83f\udffe"])", R"(["\udb40\udc01","\udb40\udc7f"])",
          R"(["\u061c\u0600\u06dd\u070f","\u180e\u2060\u2066\u2069\ufff9\ufffb"])",
          R"(["\u1680\u2000\u200a\u202f\u205f"])", R"(["\u00e9\u00ff\u0100\uffff\ud800\udc00"])",
          R"(["mixed \u0085 'quote' and \u200b \"both\" \n"])",
          // Top-level strings hash their own text, not a repr.
          R"("plain")", R"("with\nnewline and 'quote'")", R"("")", R"("\u0085\u200b😀")",
          // Top-level scalars.
          "42", "-0", "-0.0", "1.5", "1e16", "NaN", "Infinity", "-Infinity", "true", "false",
          "null", "12345678901234567890123",
          // Dicts: json.dumps with sort_keys, NaN and Infinity written as JSON's words.
          R"({"a":NaN,"b":[Infinity,-Infinity]})", R"({"list":[NaN,-0.0],"z":{"y":Infinity}})",
          R"({"NaN":"Infinity"})", R"({"k":"\u0085\u200b","é":["\udb40\udc01"]})", "{}"};
}

// For each JSON text on stdin, one line: the seed's hash of json.loads(text), then the str it
// hashes, as a JSON string (ASCII, one line).
constexpr const char* kSeedHashScript =
    "import json,hashlib,sys\n"
    "def hash_output(data):\n"
    "    if isinstance(data, dict):\n"
    "        data_str = json.dumps(data, sort_keys=True)\n"
    "    else:\n"
    "        data_str = str(data)\n"
    "    return data_str, hashlib.sha256(data_str.encode()).hexdigest()[:16]\n"
    "for line in sys.stdin.buffer.read().split(b\"\\n\")[:-1]:\n"
    "    s, h = hash_output(json.loads(line))\n"
    "    print(h, json.dumps(s))";

void expect_python_agrees(const std::vector<std::string>& texts) {
  std::string input;
  for (const std::string& text : texts) input += text + "\n";
  std::vector<std::string> lines = split_lines(run_python(kSeedHashScript, input));
  ASSERT_EQ(lines.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    ASSERT_GT(lines[i].size(), 17U) << texts[i];
    std::string expected_str = nlohmann::json::parse(lines[i].substr(17)).get<std::string>();
    bool object = texts[i].front() == '{';
    EXPECT_EQ(object ? python_json_dumps_sorted(texts[i]) : python_str_of_json(texts[i]),
              expected_str)
        << texts[i];
    EXPECT_EQ(hash_output_json(texts[i]), lines[i].substr(0, 16)) << texts[i];
  }
}

TEST(HashTest, AnyValueHashesAsTheSeedInPython) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  std::vector<std::string> texts = python_value_cases();
  EXPECT_GE(texts.size(), 50U);
  expect_python_agrees(texts);
}

// Random documents, one per line, checked in one Python run: random keys (ASCII, Latin-1, CJK,
// emoji, control characters, escapes), numbers spelt in several ways, nesting.
std::string random_json(std::mt19937_64& rng, int depth) {
  auto pick = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  static const std::vector<std::string> pieces = {"a",
                                                  "B",
                                                  "z",
                                                  "_",
                                                  " ",
                                                  "~",
                                                  "é",
                                                  "ß",
                                                  "中",
                                                  "文",
                                                  "😀",
                                                  "𝄞",
                                                  "\\n",
                                                  "\\t",
                                                  "\\u0001",
                                                  "\\u001F",
                                                  "\\\"",
                                                  "\\\\",
                                                  "\\/",
                                                  "\\u00e9",
                                                  "\\uD834\\uDD1E",
                                                  "\x7f",
                                                  "\xEE\x80\x80",
                                                  "0",
                                                  "'",
                                                  "\\u0085",
                                                  "\\u00a0",
                                                  "\\u00ad",
                                                  "\\u200b",
                                                  "\\u2028",
                                                  "\\uDB40\\uDC01",
                                                  "\\u0378",
                                                  "\xEF\xBB\xBF"};
  auto random_string = [&] {
    std::string s = "\"";
    for (std::size_t n = pick(6); n > 0; --n) s += pieces[pick(pieces.size())];
    return s + "\"";
  };
  static const std::vector<std::string> numbers = {"0",
                                                   "-0",
                                                   "7",
                                                   "-12",
                                                   "1.0",
                                                   "-0.0",
                                                   "0.5",
                                                   "1e5",
                                                   "1E-7",
                                                   "2.50",
                                                   "1e16",
                                                   "123456789012",
                                                   "9223372036854775807",
                                                   "9223372036854775808",
                                                   "-9223372036854775809",
                                                   "100000000000000000000000000001",
                                                   "0.1",
                                                   "1.7976931348623157e308",
                                                   "4.9e-324",
                                                   "1e-4",
                                                   "12345.678e3",
                                                   "NaN",
                                                   "Infinity",
                                                   "-Infinity"};
  std::size_t kind = depth > 4 ? pick(5) : pick(8);
  switch (kind) {
    case 0:
      return random_string();
    case 1:
      return numbers[pick(numbers.size())];
    case 2: {
      // A random finite double written with 17 significant digits.
      double d = 0;
      do {
        std::uint64_t bits = rng();
        std::memcpy(&d, &bits, sizeof d);
      } while (!std::isfinite(d));
      std::array<char, 64> buffer{};
      std::snprintf(buffer.data(), buffer.size(), "%.17g", d);
      return buffer.data();
    }
    case 3:
      return std::vector<std::string>{"true", "false", "null"}[pick(3)];
    case 4:
      return std::to_string(static_cast<std::int64_t>(rng()));
    case 5: {
      std::string s = "[";
      for (std::size_t n = pick(4); n > 0; --n) {
        s += random_json(rng, depth + 1);
        if (n > 1) s += ",";
      }
      return s + "]";
    }
    default: {
      std::string s = "{";
      for (std::size_t n = pick(5); n > 0; --n) {
        s += random_string() + ":" + random_json(rng, depth + 1);
        if (n > 1) s += ",";
      }
      return s + "}";
    }
  }
}

TEST(HashTest, RandomDocumentsAgreeWithPython) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  std::mt19937_64 rng(20260104);
  std::vector<std::string> docs;
  std::string input;
  for (int i = 0; i < 300; ++i) {
    std::string doc;
    do {
      doc = random_json(rng, 0);
    } while (doc.front() != '{');
    docs.push_back(doc);
    input += doc + "\n";
  }
  std::string output = run_python(
      "import json,hashlib,sys\n"
      "for line in sys.stdin.read().splitlines():\n"
      "    s = json.dumps(json.loads(line), sort_keys=True)\n"
      "    print(hashlib.sha256(s.encode()).hexdigest()[:16], s)",
      input);
  std::vector<std::string> lines = split_lines(output);
  ASSERT_EQ(lines.size(), docs.size());
  for (std::size_t i = 0; i < docs.size(); ++i) {
    EXPECT_EQ(python_json_dumps_sorted(docs[i]), lines[i].substr(17)) << docs[i];
    EXPECT_EQ(hash_output_json(docs[i]), lines[i].substr(0, 16)) << docs[i];
  }
}

// Random lists and scalars (objects inside), whose hash is of their str().
TEST(HashTest, RandomValuesAgreeWithPython) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  std::mt19937_64 rng(20261203);
  std::vector<std::string> texts;
  while (texts.size() < 300) {
    std::string text = random_json(rng, 0);
    if (text.front() != '{') texts.push_back(text);
  }
  expect_python_agrees(texts);
}

TEST(HashTest, FloatReprAgreesWithPython) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  std::vector<double> values = {0.1,
                                0.1 + 0.2,
                                1.0,
                                -0.0,
                                0.0,
                                1.5,
                                100.0,
                                1e16,
                                1e15,
                                9999999999999998.0,
                                1234567890123456.0,
                                12345678901234567.0,
                                1e-4,
                                1e-5,
                                0.00012345,
                                1.5e-7,
                                1e20,
                                1e22,
                                1e23,
                                5e-324,
                                std::numeric_limits<double>::max(),
                                std::numeric_limits<double>::min(),
                                9007199254740992.0,
                                123456789.0,
                                1.0 / 3.0,
                                2.0 / 3.0,
                                -1.5,
                                3.141592653589793,
                                1e100,
                                4.35,
                                0.5,
                                123.456,
                                -2.5e-5,
                                std::numeric_limits<double>::infinity(),
                                -std::numeric_limits<double>::infinity(),
                                std::numeric_limits<double>::quiet_NaN()};
  std::mt19937_64 rng(42);
  for (int i = 0; i < 300; ++i) {
    double d = 0;
    std::uint64_t bits = rng();
    std::memcpy(&d, &bits, sizeof d);
    values.push_back(d);
  }
  std::uniform_real_distribution<double> exponent(-8.0, 20.0);
  for (int i = 0; i < 200; ++i) values.push_back(std::pow(10.0, exponent(rng)));
  for (int i = 0; i < 100; ++i) values.push_back(static_cast<double>(rng() % 100000) / 1000.0);

  // Hex floats carry the exact double to Python.
  std::string input;
  for (double d : values) {
    std::array<char, 64> buffer{};
    if (std::isnan(d)) {
      std::snprintf(buffer.data(), buffer.size(), "nan");
    } else {
      std::snprintf(buffer.data(), buffer.size(), "%a", d);
    }
    input += std::string(buffer.data()) + "\n";
  }
  std::string output = run_python(
      "import sys\n"
      "for line in sys.stdin.read().split():\n"
      "    print(str(float.fromhex(line)))",
      input);
  std::vector<std::string> lines = split_lines(output);
  ASSERT_EQ(lines.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(python_float_repr(values[i]), lines[i]) << "value #" << i;
    EXPECT_EQ(hash_output(values[i]), sha_of(lines[i])) << lines[i];
  }
}

}  // namespace
}  // namespace stagelog
