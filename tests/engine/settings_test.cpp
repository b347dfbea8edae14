#include "engine/settings.hpp"

#include "engine/log.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace ferry::engine;
using namespace std::chrono_literals;

namespace {

std::vector<setting_binding> schema() {
  return {
      {"dest.url", {"BT_DEST_URL"}, false, "destination API URL"},
      {"dest.api_key", {"BT_DEST_API_KEY", "BRAINTRUST_API_KEY"}, true, "destination API key"},
      {"max_concurrent_requests", {"MIGRATION_MAX_CONCURRENT_REQUESTS"}, false, ""},
      {"timeout", {"FERRY_TIMEOUT"}, false, ""},
      {"batch_bytes", {"FERRY_BATCH_BYTES"}, false, ""},
      {"verify", {"FERRY_VERIFY"}, false, ""},
      {"projects", {"FERRY_PROJECTS"}, false, ""},
  };
}

std::string write(const ferry::test::temp_dir& dir, const std::string& name, const std::string& text) {
  const auto p = dir.path() / name;
  std::ofstream(p) << text;
  return p.string();
}

std::function<const char*(const char*)> env_of(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* n) -> const char* {
    auto it = shared->find(n);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

}  // namespace

TEST_CASE("settings: precedence flag > env > .env > file > default in every order of loading") {
  ferry::test::temp_dir dir;
  const std::string dotenv = write(dir, ".env", "BT_DEST_URL=dotenv-v\n");
  const std::string file = write(dir, "ferry.yaml", "dest:\n  url: file-v\n");
  struct layer {
    setting_source source;
    std::string value;
    std::function<void(settings&)> load;
  };
  const std::vector<layer> layers = {
      {setting_source::flag, "flag-v", [](settings& s) { s.set("dest.url", "flag-v", setting_source::flag, "--dest-url"); }},
      {setting_source::env, "env-v", [](settings& s) { s.load_env(env_of({{"BT_DEST_URL", "env-v"}})); }},
      {setting_source::dotenv, "dotenv-v", [&](settings& s) { s.load_dotenv(dotenv); }},
      {setting_source::file, "file-v", [&](settings& s) { s.load_file(file); }},
  };
  int combinations = 0;
  for (unsigned mask = 0; mask < 16; ++mask) {
    std::vector<int> chosen;
    for (int i = 0; i < 4; ++i)
      if (mask & (1u << i)) chosen.push_back(i);
    std::sort(chosen.begin(), chosen.end());
    do {
      settings s(schema());
      for (int i : chosen) layers[i].load(s);
      ++combinations;
      if (chosen.empty()) {
        CHECK(s.get_string("dest.url", "default-v") == "default-v");
        CHECK(s.where("dest.url") == "default");
        continue;
      }
      const auto& want = layers[*std::min_element(chosen.begin(), chosen.end())];  // index order = precedence
      INFO("mask=" << mask);
      CHECK(s.get_string("dest.url") == want.value);
      CHECK(s.find("dest.url")->source == want.source);
    } while (std::next_permutation(chosen.begin(), chosen.end()));
  }
  CHECK(combinations == 65);  // 1 + 4 + 12 + 24 + 24
}

TEST_CASE("settings: errors name the key and the source") {
  settings s(schema());
  s.load_env(env_of({{"MIGRATION_MAX_CONCURRENT_REQUESTS", "lots"}, {"FERRY_TIMEOUT", "soon"}}));
  CHECK_THROWS_WITH_AS(s.get_int("max_concurrent_requests", 10, 1, 200),
                       "invalid max_concurrent_requests from env MIGRATION_MAX_CONCURRENT_REQUESTS: expected an "
                       "integer from 1 to 200, got 'lots'",
                       config_error);
  CHECK_THROWS_WITH_AS(s.get_duration("timeout", 1s), doctest::Contains("env FERRY_TIMEOUT"), config_error);
  s.set("max_concurrent_requests", "500", setting_source::flag, "--max-concurrent-requests");
  CHECK_THROWS_WITH_AS(s.get_int("max_concurrent_requests", 10, 1, 200),
                       doctest::Contains("from --max-concurrent-requests"), config_error);
  CHECK_THROWS_WITH_AS(s.set("nope", "1", setting_source::flag, "--nope"), doctest::Contains("'nope'"), config_error);
}

TEST_CASE("settings: config files reject unknown keys and accept env names, YAML and JSON") {
  ferry::test::temp_dir dir;
  SUBCASE("unknown key") {
    const auto f = write(dir, "bad.yaml", "dest:\n  url: x\n  urll: y\n");
    CHECK_THROWS_WITH_AS(settings(schema()).load_file(f), doctest::Contains("unknown key 'dest.urll'"), config_error);
  }
  SUBCASE("JSON with an env-name key and a list") {
    const auto f = write(dir, "c.json",
                         R"({"dest": {"url": "https://api.example"}, "MIGRATION_MAX_CONCURRENT_REQUESTS": 12,
                             "projects": ["a", "b"], "verify": true})");
    settings s(schema());
    s.load_file(f);
    CHECK(s.get_string("dest.url") == "https://api.example");
    CHECK(s.get_int("max_concurrent_requests", 1, 1, 200) == 12);
    CHECK(s.get_list("projects") == std::vector<std::string>{"a", "b"});
    CHECK(s.get_bool("verify", false));
    CHECK(s.where("dest.url") == f);
  }
  SUBCASE("comments and document markers only: no settings, no error") {
    const auto f = write(dir, "empty.yaml", "# nothing yet\n---\n\n...\n");
    settings s(schema());
    CHECK_NOTHROW(s.load_file(f));
    CHECK(s.where("dest.url") == "default");
  }
  SUBCASE("a file that loads as nothing but is not empty is refused (a '%' directive line, NUL bytes)") {
    const auto d = write(dir, "directive.yaml", "%s not a config\n");
    CHECK_THROWS_WITH_AS(settings(schema()).load_file(d), doctest::Contains("expected a map of settings"), config_error);
    const auto b = write(dir, "binary.yaml", std::string("a: 1\n\0\xff", 7));
    CHECK_THROWS_WITH_AS(settings(schema()).load_file(b), doctest::Contains("not a text file"), config_error);
  }
  SUBCASE("syntax error names the file and line") {
    const auto f = write(dir, "broken.yaml", "dest:\n  url: [unclosed\n");
    CHECK_THROWS_WITH_AS(settings(schema()).load_file(f), doctest::Contains("broken.yaml: syntax error"), config_error);
  }
  SUBCASE("missing config file is an error, missing .env is not") {
    CHECK_THROWS_AS(settings(schema()).load_file((dir.path() / "none.yaml").string()), config_error);
    settings s(schema());
    s.load_dotenv((dir.path() / "none.env").string());
    CHECK_FALSE(s.has("dest.url"));
  }
  SUBCASE("a null value leaves lower layers in charge, a later file of the same rank wins") {
    const auto a = write(dir, "a.yaml", "dest:\n  url: from-a\ntimeout: 5s\n");
    const auto b = write(dir, "b.yaml", "dest:\n  url:\ntimeout: 7s\n");
    settings s(schema());
    s.load_file(a);
    s.load_file(b);
    CHECK(s.get_string("dest.url") == "from-a");
    CHECK(s.get_duration("timeout", 1s) == 7s);
  }
}

TEST_CASE("settings: .env syntax") {
  ferry::test::temp_dir dir;
  const auto f = write(dir, ".env",
                       "# comment\n\nexport BT_DEST_URL=\"https://x\"\nFERRY_TIMEOUT=30s # inline\n"
                       "FERRY_PROJECTS='a, b,,c '\nOTHER_TOOL_VAR=ignored\n");
  settings s(schema());
  s.load_dotenv(f);
  CHECK(s.get_string("dest.url") == "https://x");
  CHECK(s.where("dest.url") == f + ":3");
  CHECK(s.get_duration("timeout", 1s) == 30s);
  CHECK(s.get_list("projects") == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("settings: secret values never appear in error messages") {
  ferry::test::temp_dir dir;
  SUBCASE("invalid value of a secret key") {
    settings s(schema());
    s.load_env(env_of({{"BRAINTRUST_API_KEY", "sk-very-secret-1234"}}));
    try {
      (void)s.get_int("dest.api_key", 0, 0, 10);
      FAIL("expected config_error");
    } catch (const config_error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("sk-very-secret-1234") == std::string::npos);
      CHECK(msg.find("dest.api_key") != std::string::npos);
      CHECK(msg.find("env BRAINTRUST_API_KEY") != std::string::npos);
    }
    CHECK(redact("x sk-very-secret-1234") == "x [REDACTED]");  // registered with the log redactor
  }
  SUBCASE("malformed .env line holding a secret") {
    const auto f = write(dir, ".env", "BT_DEST_URL=https://x\nBT_DEST_API_KEY sk-unregistered-5678\n");
    try {
      settings(schema()).load_dotenv(f);
      FAIL("expected config_error");
    } catch (const config_error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("sk-unregistered-5678") == std::string::npos);
      CHECK(msg.find(":2") != std::string::npos);
    }
  }
}

TEST_CASE("settings: typed getters and parsers") {
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("1.5") == 1500ms);
  CHECK(parse_duration("30s") == 30s);
  CHECK(parse_duration("5m") == 5min);
  CHECK(parse_duration("1h") == 1h);
  CHECK_FALSE(parse_duration("-1s"));
  CHECK_FALSE(parse_duration("5 parsecs"));
  CHECK_FALSE(parse_duration(""));
  CHECK(parse_bytes("6MiB") == 6u * 1024 * 1024);
  CHECK(parse_bytes("64KiB") == 65536u);
  CHECK(parse_bytes("1GB") == 1000000000u);
  CHECK(parse_bytes("1.5MB") == 1500000u);
  CHECK(parse_bytes("512") == 512u);
  CHECK_FALSE(parse_bytes("12x"));
  CHECK_FALSE(parse_bytes("-1"));
  for (const char* t : {"1", "true", "YES", "y", "On"}) CHECK(parse_bool(t) == true);
  for (const char* f : {"0", "false", "No", "n", "OFF"}) CHECK(parse_bool(f) == false);
  CHECK_FALSE(parse_bool("maybe"));

  settings s(schema());
  s.set("batch_bytes", "8MiB", setting_source::flag, "--batch-bytes");
  CHECK(s.get_bytes("batch_bytes", 0, 1, 64u << 20) == 8u << 20);
  CHECK_THROWS_WITH_AS(s.get_bytes("batch_bytes", 0, 1, 1u << 20), doctest::Contains("--batch-bytes"), config_error);
  s.set("verify", "perhaps", setting_source::flag, "--verify");
  CHECK_THROWS_WITH_AS(s.get_bool("verify", false), doctest::Contains("got 'perhaps'"), config_error);
  CHECK(s.get_double("timeout", 2.5, 0, 10) == 2.5);
}

TEST_CASE("settings: durations have a range and never overflow") {
  settings s(schema());
  s.set("timeout", "99999999h", setting_source::flag, "--timeout");
  CHECK_THROWS_WITH_AS(s.get_duration("timeout", 1s, 100ms, 24h),
                       doctest::Contains("invalid timeout from --timeout: expected a duration from 100ms to 24h"),
                       config_error);
  s.set("timeout", "0", setting_source::flag, "--timeout");
  CHECK_THROWS_AS(s.get_duration("timeout", 1s, 100ms, 24h), config_error);
  s.set("timeout", "90s", setting_source::flag, "--timeout");
  CHECK(s.get_duration("timeout", 1s, 100ms, 24h) == 90s);
  CHECK_FALSE(parse_duration("1e300h"));
  CHECK_FALSE(parse_duration("99999999999h"));
  CHECK(parse_duration("8760h") == std::chrono::hours(8760));
}

TEST_CASE("settings: list items in double quotes keep commas and outer spaces") {
  settings s(schema());
  s.set("projects", "\"a, b\", c ,, \" d \",\"say \"\"hi\"\"\"", setting_source::flag, "--projects");
  CHECK(s.get_list("projects") == std::vector<std::string>{"a, b", "c", " d ", "say \"hi\""});
  for (const std::string name : {"plain", "a, b", " padded ", "q\"uote", ""}) {
    s.set("projects", quote_list_item(name) + ",x", setting_source::flag, "--projects");
    const auto l = s.get_list("projects");
    CHECK_MESSAGE(l == (name.empty() ? std::vector<std::string>{"", "x"} : std::vector<std::string>{name, "x"}), name);
  }
  s.set("projects", "\"open, b", setting_source::flag, "--projects");
  CHECK_THROWS_WITH_AS(s.get_list("projects"), doctest::Contains("--projects"), config_error);
  s.set("projects", "\"a\"b,c", setting_source::flag, "--projects");
  CHECK_THROWS_AS(s.get_list("projects"), config_error);
}

TEST_CASE("settings: a YAML list keeps names with commas; duplicate keys are refused naming the key") {
  ferry::test::temp_dir dir;
  settings s(schema());
  s.load_file(write(dir, "l.yaml", "projects: [\"a, b\", \" c \", d]\n"));
  CHECK(s.get_list("projects") == std::vector<std::string>{"a, b", " c ", "d"});
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {"dest:\n  url: a\ndest:\n  url: b\n", "'dest'"},
           {"dest:\n  url: a\n  url: b\n", "'dest.url'"},
           {"{\"timeout\": 1, \"timeout\": 2}", "'timeout'"},
           {"dest.url: a\nBT_DEST_URL: b\n", "'dest.url'"},
           {"dest:\n  url: a\ndest.url: b\n", "'dest.url'"}}) {
    CAPTURE(text);
    const std::string expected = key + " is given twice";
    CHECK_THROWS_WITH_AS(settings(schema()).load_file(write(dir, "d.yaml", text)),
                         doctest::Contains(expected.c_str()), config_error);
  }
}

TEST_CASE("settings: --env-file must be a readable file; a missing one is fine") {
  ferry::test::temp_dir dir;
  settings s(schema());
  CHECK_NOTHROW(s.load_dotenv((dir.path() / "missing.env").string()));
  CHECK_THROWS_WITH_AS(s.load_dotenv(dir.path().string()), doctest::Contains("is a directory"), config_error);
}

TEST_CASE("settings: a .env value with quotes and an inline comment is the bare value") {
  ferry::test::temp_dir dir;
  settings s(schema());
  s.load_dotenv(write(dir, ".env", "BT_DEST_API_KEY=\"sk-quoted-key-1\" # prod key\nBT_DEST_URL='http://h:1' # c\n"));
  CHECK(s.get_string("dest.api_key") == "sk-quoted-key-1");
  CHECK(s.get_string("dest.url") == "http://h:1");
  CHECK(redact("x sk-quoted-key-1") == "x [REDACTED]");
}

TEST_CASE("settings: a URL's password is a secret and is not shown in errors") {
  settings s(schema());
  s.set("max_concurrent_requests", "http://u:url-password-9@h", setting_source::flag, "--x");
  try {
    (void)s.get_int("max_concurrent_requests", 1, 1, 10);
    FAIL("expected config_error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()).find("url-password-9") == std::string::npos);
  }
  CHECK(redact("url-password-9") == "[REDACTED]");
}
