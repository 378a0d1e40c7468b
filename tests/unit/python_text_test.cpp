#include "base/python_text.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "python_run.hpp"

namespace stagelog::detail {
namespace {

std::string repr(std::string_view text) {
  std::string out;
  append_python_repr(out, text);
  return out;
}

TEST(PythonTextTest, PrintableTableIsPythons) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  // The version line, then every code point for which str.isprintable() is false.
  std::string output = test::run_python(
      "import sys, unicodedata\n"
      "print(unicodedata.unidata_version)\n"
      "print(\"\\n\".join(str(c) for c in range(0x110000) if not chr(c).isprintable()))",
      "");
  std::vector<std::string> lines = test::split_lines(output);
  ASSERT_FALSE(lines.empty());
  if (lines[0] != kPythonUnicodeVersion) {
    GTEST_SKIP() << "python3 has Unicode " << lines[0] << ", the table is for "
                 << kPythonUnicodeVersion << " (Python 3.11)";
  }
  std::vector<bool> printable(0x110000, true);
  for (std::size_t i = 1; i < lines.size(); ++i) printable[std::stoul(lines[i])] = false;
  std::size_t differences = 0;
  for (char32_t cp = 0; cp < 0x110000; ++cp) {
    if (python_printable(cp) != printable[cp] && ++differences <= 10) {
      ADD_FAILURE() << "U+" << std::hex << static_cast<unsigned>(cp) << ": Python says "
                    << (printable[cp] ? "printable" : "not printable");
    }
  }
  EXPECT_EQ(differences, 0U);
  EXPECT_GT(lines.size(), 800000U);  // Mostly unassigned and private-use planes.
}

TEST(PythonTextTest, ReprEscapesWhatIsNotPrintable) {
  EXPECT_EQ(repr("gpu-1"), "'gpu-1'");
  EXPECT_EQ(repr("it's"), "\"it's\"");
  EXPECT_EQ(repr("it's \"x\""), R"('it\'s "x"')");
  EXPECT_EQ(repr("a\nb\r\t\\"), R"('a\nb\r\t\\')");
  EXPECT_EQ(repr(std::string_view("\0\x1f\x7f", 3)), R"('\x00\x1f\x7f')");
  EXPECT_EQ(repr("café 中 😀 e\u0301"), "'café 中 😀 e\u0301'");
  // C1 controls, no-break space, soft hyphen, zero-width space, line separator, BOM, private
  // use, an unassigned code point, a tag character, a noncharacter.
  EXPECT_EQ(repr("\u0085\u00a0\u00ad\u200b\u2028\ufeff\ue000\u0378\U000e0001\U0010ffff"),
            R"('\x85\xa0\xad\u200b\u2028\ufeff\ue000\u0378\U000e0001\U0010ffff')");
}

TEST(PythonTextTest, InvalidUtf8ShowsAsSurrogateEscapes) {
  // As Python shows bytes decoded with errors="surrogateescape" (file names, argv).
  EXPECT_EQ(repr("a\xff"), R"('a\udcff')");
  EXPECT_EQ(repr("\xc3"), R"('\udcc3')");                                // Truncated.
  EXPECT_EQ(repr("\xc0\x80"), R"('\udcc0\udc80')");                      // Overlong.
  EXPECT_EQ(repr("\xed\xa0\x80"), R"('\udced\udca0\udc80')");            // A surrogate.
  EXPECT_EQ(repr("\xf4\x90\x80\x80"), R"('\udcf4\udc90\udc80\udc80')");  // Above U+10FFFF.
  EXPECT_EQ(repr("\xe2\x82x"), R"('\udce2\udc82x')");
}

TEST(PythonTextTest, DecodeUtf8) {
  char32_t cp = 0;
  EXPECT_EQ(decode_utf8("a", cp), 1U);
  EXPECT_EQ(cp, U'a');
  EXPECT_EQ(decode_utf8("\u00e9x", cp), 2U);
  EXPECT_EQ(cp, U'\u00e9');
  EXPECT_EQ(decode_utf8("\u4e2d", cp), 3U);
  EXPECT_EQ(cp, U'\u4e2d');
  EXPECT_EQ(decode_utf8("\U0001f600", cp), 4U);
  EXPECT_EQ(cp, U'\U0001f600');
  EXPECT_EQ(decode_utf8("", cp), 0U);
  EXPECT_EQ(decode_utf8("\x80", cp), 0U);
  EXPECT_EQ(decode_utf8("\xf0\x9f\x98", cp), 0U);
  EXPECT_EQ(decode_utf8("\xf8\x88\x80\x80\x80", cp), 0U);
}

// repr() of strings with the characters a seed program's names and messages can hold, against
// python3's own repr: one run, the strings given and read back as JSON lines.
TEST(PythonTextTest, ReprAgreesWithPython) {
  STAGELOG_SKIP_WITHOUT_PYTHON();
  std::vector<std::string> texts = {"",
                                    "plain",
                                    "it's",
                                    "say \"hi\"",
                                    "both ' and \"",
                                    "back\\slash",
                                    std::string("\0\x01\x1f\x7f\n\r\t\b\f", 9),
                                    "café 中文 😀 𝄞 e\u0301",
                                    "\u0080\u0085\u009f\u00a0\u00ad\u00ff\u0100",
                                    "\u200b\u200e\u2028\u2029\u3000\ufeff\u2060\u2066",
                                    "\ue000\uf8ff\U000f0000\U0010fffd",
                                    "\u0378\u0380\u08ff\ufffe\uffff\U0001fffe",
                                    "\U000e0001\U000e007f\U0001f3fb\u061c\u0600\u180e",
                                    "\u1680\u2000\u200a\u202f\u205f",
                                    "mixed \u0085 'quote' and \u200b \"both\"\n"};
  std::string input;
  for (const std::string& text : texts) input += nlohmann::json(text).dump() + "\n";
  std::vector<std::string> lines = test::split_lines(
      test::run_python("import json, sys\n"
                       "for line in sys.stdin.buffer.read().split(b\"\\n\")[:-1]:\n"
                       "    print(json.dumps(repr(json.loads(line))))",
                       input));
  ASSERT_EQ(lines.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(repr(texts[i]), nlohmann::json::parse(lines[i]).get<std::string>()) << lines[i];
  }
}

}  // namespace
}  // namespace stagelog::detail
