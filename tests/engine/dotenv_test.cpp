#include "engine/dotenv.hpp"

#include "engine/settings.hpp"

#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace ferry::engine;

namespace {

const char* fake_env(const char* name) {
  static const std::map<std::string, std::string> env = {{"FROM_ENV", "env-value"}, {"SHADOWED", "env-wins"},
                                                         {"EMPTY_ENV", ""}};
  auto it = env.find(name);
  return it == env.end() ? nullptr : it->second.c_str();
}

// The values a file sets, later lines winning (as python-dotenv's dict does).
std::map<std::string, std::string> values_of(std::string_view text) {
  std::map<std::string, std::string> out;
  for (auto& e : parse_dotenv(text, "t.env", fake_env)) out[e.name] = e.value;
  return out;
}

struct dotenv_case {
  const char* text;
  const char* key;
  std::optional<std::string> expected;  // nullopt: the key is not set
};

}  // namespace

// Each expectation is what python-dotenv's load_dotenv()/dotenv_values() gives for the same text
// (parser.py and variables.py of python-dotenv 1.x; override=False: the environment wins in ${...}).
TEST_CASE("dotenv: python-dotenv's rules, case by case") {
  const std::vector<dotenv_case> cases = {
      {"A=plain", "A", "plain"},
      {"A = spaced  ", "A", "spaced"},
      {"export A=x", "A", "x"},
      {"export \t A=x", "A", "x"},
      {"A=\"double quoted\"", "A", "double quoted"},
      {"A='single quoted'", "A", "single quoted"},
      {"A=\"value\" # comment", "A", "value"},
      {"A=\"value\"# comment", "A", "value"},
      {"A='value' # comment", "A", "value"},
      {"A=value # comment", "A", "value"},
      {"A=value\t# comment", "A", "value"},
      {"A=value#not-a-comment", "A", "value#not-a-comment"},
      {"A= # only a comment", "A", ""},
      {"A=#hash", "A", "#hash"},
      {"A=a  b", "A", "a  b"},
      {"A=\"  padded  \"", "A", "  padded  "},
      {"A=\"with # hash\"", "A", "with # hash"},
      {"A='with # hash' # and a comment", "A", "with # hash"},
      {"A=\"a\\nb\\tc\"", "A", "a\nb\tc"},
      {"A='a\\nb'", "A", "a\\nb"},
      {"A=a\\nb", "A", "a\\nb"},
      {"A=\"say \\\"hi\\\"\"", "A", "say \"hi\""},
      {"A='it\\'s'", "A", "it's"},
      {"A=\"back\\\\slash\"", "A", "back\\slash"},
      {"A='back\\\\slash'", "A", "back\\slash"},
      {"A=\"\\q stays\"", "A", "\\q stays"},
      {"A=\"first\nsecond\"\nB=after", "A", "first\nsecond"},
      {"A=\"first\nsecond\"\nB=after", "B", "after"},
      {"A='multi\nline' # c\nB=2", "A", "multi\nline"},
      {"# comment\n\n   # indented comment\nA=1\n", "A", "1"},
      {"A=", "A", ""},
      {"A=\"\"", "A", ""},
      {"A", "A", std::nullopt},
      {"A # a name alone sets nothing", "A", std::nullopt},
      {"'A'=quoted key", "A", "quoted key"},
      {"A=1\r\nB=2\r\n", "A", "1"},
      {"A=1\r\nB=2\r\n", "B", "2"},
      {"\xEF\xBB\xBF" "A=bom", "A", "bom"},
      {"A=1\nA=2", "A", "2"},
      {"B=file\nA=${B}/x", "A", "file/x"},
      {"A=\"${FROM_ENV}\"", "A", "env-value"},
      {"SHADOWED=file\nA=${SHADOWED}", "A", "env-wins"},
      {"A=${MISSING:-fallback}", "A", "fallback"},
      {"A=${MISSING}", "A", ""},
      {"A=${EMPTY_ENV:-fallback}", "A", ""},
      {"A=$FROM_ENV", "A", "$FROM_ENV"},
      {"A='${FROM_ENV}'", "A", "env-value"},
      {"A=${B}\nB=later", "A", ""},
      {"A=pa$$word#1", "A", "pa$$word#1"},
      {"BT_DEST_API_KEY=\"sk-abc\" # the destination key", "BT_DEST_API_KEY", "sk-abc"},
  };
  for (const auto& c : cases) {
    CAPTURE(std::string(c.text));
    const auto v = values_of(c.text);
    const auto it = v.find(c.key);
    if (!c.expected) {
      CHECK(it == v.end());
    } else {
      REQUIRE(it != v.end());
      CHECK(it->second == *c.expected);
    }
  }
}

TEST_CASE("dotenv: statements python-dotenv cannot parse are errors naming the line, not the text") {
  for (const char* text : {"OK=1\nA=\"unterminated", "OK=1\nA=\"x\" trailing", "OK=1\n=x", "OK=1\nA='x'y",
                           "OK=1\nA B"}) {
    CAPTURE(std::string(text));
    try {
      (void)parse_dotenv(text, "t.env", fake_env);
      FAIL("expected config_error");
    } catch (const config_error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("t.env:2:") == 0);
      CHECK(msg.find("trailing") == std::string::npos);
      CHECK(msg.find("unterminated") == std::string::npos);
    }
  }
}

TEST_CASE("dotenv: line numbers are where each statement starts") {
  const auto entries = parse_dotenv("# c\nA=\"x\ny\"\n\nexport B=2\n", "t.env", fake_env);
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].line == 2);
  CHECK(entries[1].line == 5);
}
