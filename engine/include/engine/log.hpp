#pragma once
// Logging: one named spdlog logger per component, text or JSON output, and redaction of secrets.
//
// Every message passes through the redactor before it is formatted, so an API key or AI secret value
// that was registered with `register_secret` can never reach a log line, whatever the caller wrote.
// Loggers are created on first use and are thread-safe (spdlog's _mt sinks).

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <streambuf>
#include <string>
#include <string_view>

namespace ferry::engine {

enum class log_format { text, json };

struct log_config {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  log_format format = log_format::text;
};

/// Parses "text"/"json" (case-insensitive); throws std::invalid_argument naming the bad value.
log_format parse_log_format(std::string_view s);

/// Installs the sink (stderr) and formatter for all component loggers, existing and future.
/// Throws std::invalid_argument on an unknown level.
void init_logging(const log_config& cfg);
/// As above with a caller-provided sink (a file sink, or a capturing sink in tests); the sink gets
/// the redacting formatter of `cfg.format`.
void init_logging(const log_config& cfg, spdlog::sink_ptr sink);

/// One log line (with its trailing newline) exactly as the sinks write it: the message is redacted,
/// and in JSON form it is one object {"ts","level","logger","msg"} with every string escaped.
std::string format_record(log_format format, std::string_view logger_name, spdlog::level::level_enum level,
                          std::chrono::system_clock::time_point ts, std::string_view message);

/// The logger of a component: "engine", "http", "store", "pipeline", "emulator", "app".
std::shared_ptr<spdlog::logger> logger(const std::string& component);

/// Registers a secret value (API key, AI secret value). From now on every occurrence of it in a log
/// message, and in anything passed to `redact`, is replaced by "[REDACTED]". Values shorter than 4
/// characters are ignored (they would redact ordinary words). Thread-safe.
void register_secret(std::string_view secret);

/// Returns `text` with every registered secret and every `Bearer <token>` credential replaced.
std::string redact(std::string_view text);

/// A stream buffer that passes each line written to it through `redact` before it reaches `target`
/// (partial lines at a flush too). Installed over std::cout and std::cerr by the `ferry` binary, so
/// nothing a command prints can carry a registered secret or a URL password. Thread-safe.
class redacting_streambuf final : public std::streambuf {
 public:
  explicit redacting_streambuf(std::streambuf* target) : target_(target) {}
  ~redacting_streambuf() override;

 protected:
  int_type overflow(int_type ch) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override;

 private:
  void emit_locked(bool flush_partial);
  std::streambuf* target_;
  std::mutex mu_;
  std::string pending_;
};

/// `text` if it has at most `max` characters, else its start and its end joined by " ... " in `max`
/// characters: an error line keeps the object it names (first) and the cause (last).
std::string shorten_middle(std::string_view text, std::size_t max);

/// True when `key` names a field that holds a credential (authorization, api_key, secret, password,
/// token...), compared case-insensitively; reports and recordings drop or mask such fields.
bool is_secret_field_name(std::string_view key);

/// Escapes `s` as the contents of a JSON string (without the surrounding quotes). Invalid UTF-8
/// bytes become U+FFFD, so the result is always valid JSON whatever bytes a message carried.
std::string json_escape(std::string_view s);

/// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace ferry::engine
