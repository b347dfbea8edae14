#pragma once
// Layered settings: each value remembers the source it came from, and a value from a source of higher
// precedence replaces one of lower precedence, never the other way round:
//
//     command-line flag  >  environment  >  .env file  >  config file (YAML or JSON)  >  default
//
// The schema (which keys exist, which environment variables feed them, which hold secrets) is given by
// the caller; every error is a one-line `config_error` that names the offending key and its source,
// e.g. "invalid max_concurrent_requests from env MIGRATION_MAX_CONCURRENT_REQUESTS: expected an integer
// from 1 to 200, got 'lots'". Values of secret keys are registered with the log redactor on load.
//
// Not thread-safe: build it once at start-up, then read it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::engine {

enum class setting_source { default_value = 0, file = 1, dotenv = 2, env = 3, flag = 4 };

class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One known setting: its canonical key (used in config files), the environment variables that feed
/// it (first one set wins), whether its value is a secret, and its help text.
struct setting_binding {
  setting_binding(std::string k, std::vector<std::string> envs, bool is_secret = false, std::string help_text = {},
                  std::string default_shown = {})
      : key(std::move(k)), env_names(std::move(envs)), secret(is_secret), help(std::move(help_text)),
        default_text(std::move(default_shown)) {}
  std::string key;
  std::vector<std::string> env_names;
  bool secret = false;
  std::string help;
  std::string default_text;  // the documented default as `--show-config` prints it ("" = none)
};

class settings {
 public:
  struct entry {
    std::string value;
    setting_source source = setting_source::default_value;
    std::string where;  // "--dest-url", "env BT_DEST_URL", "config.yaml", ".env:4"
  };

  explicit settings(std::vector<setting_binding> schema);

  /// Sets `key` unless it already holds a value from a source of higher precedence.
  /// Throws config_error for a key outside the schema.
  void set(std::string_view key, std::string value, setting_source source, std::string where);

  /// Reads every bound environment variable through `getenv` (defaults to ::getenv).
  void load_env(const std::function<const char*(const char*)>& getenv = {});
  /// Reads a `.env` file as python-dotenv does (engine/dotenv.hpp: quotes, escapes, comments,
  /// `export`, multi-line values, ${VAR} expansion against `getenv`). A missing file is not an error (it
  /// is optional by nature); a directory, an unreadable file or a statement that does not parse is,
  /// naming the file (and line).
  void load_dotenv(const std::string& path, const std::function<const char*(const char*)>& getenv = {});
  /// Reads a YAML or JSON config file. Nested maps flatten to dotted keys (`source: {url: x}` is
  /// `source.url`); an environment variable name is accepted as a key too. Unknown keys, a key given
  /// twice (also as `a: {b: }` and `a.b`, or under its environment name), unreadable files and syntax
  /// errors throw config_error naming the file and key. A YAML list becomes a list value (get_list).
  void load_file(const std::string& path);

  const entry* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  /// "env BT_DEST_URL", "--dest-url", "default"... for messages.
  std::string where(std::string_view key) const;

  std::string get_string(std::string_view key, std::string def = {}) const;
  std::optional<std::string> get_optional(std::string_view key) const;
  std::int64_t get_int(std::string_view key, std::int64_t def, std::int64_t min, std::int64_t max) const;
  double get_double(std::string_view key, double def, double min, double max) const;
  /// true for 1/true/yes/y/on, false for 0/false/no/n/off (case-insensitive), as the reference tool.
  bool get_bool(std::string_view key, bool def) const;
  /// "250ms", "30s", "5m", "1h", or a plain number of seconds (fractions allowed), within [min, max].
  std::chrono::milliseconds get_duration(std::string_view key, std::chrono::milliseconds def,
                                         std::chrono::milliseconds min = std::chrono::milliseconds(0),
                                         std::chrono::milliseconds max = std::chrono::hours(24 * 366)) const;
  /// "6MiB", "64KiB", "1GB", "1.5MB" or a plain number of bytes.
  std::uint64_t get_bytes(std::string_view key, std::uint64_t def, std::uint64_t min, std::uint64_t max) const;
  /// Comma-separated list: items are trimmed and empty ones dropped, except that an item written in
  /// double quotes is taken exactly as quoted (commas and outer spaces kept; `""` inside is one `"`):
  /// `"a, b", c,"  d "` is [`a, b`, `c`, `  d `]. A quote left open is a config_error.
  std::vector<std::string> get_list(std::string_view key) const;

  const std::vector<setting_binding>& schema() const { return schema_; }

 private:
  const setting_binding* binding(std::string_view key) const;
  [[noreturn]] void fail(std::string_view key, const entry& e, std::string_view expected) const;

  std::vector<setting_binding> schema_;
  std::map<std::string, entry, std::less<>> values_;
};

/// One item of a get_list value, quoted when get_list would otherwise change it (a comma, a quote,
/// outer spaces): join items with "," to build a list value.
std::string quote_list_item(std::string_view item);

/// "min 1ms to max 24h" style text of a duration, for messages: "250ms", "30s", "5m", "2h".
std::string format_duration(std::chrono::milliseconds d);

/// Parsers shared with other inputs (flags given as strings); return nullopt on malformed input
/// (a duration above ~100 years is malformed: it would overflow clocks).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);
std::optional<std::uint64_t> parse_bytes(std::string_view s);
std::optional<bool> parse_bool(std::string_view s);

}  // namespace ferry::engine
