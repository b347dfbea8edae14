#include "engine/log.hpp"

#include "engine/json_scan.hpp"
#include "engine/progress.hpp"
#include "engine/url.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <vector>

namespace ferry::engine {
namespace {

struct secret_registry {
  std::shared_mutex mu;
  std::vector<std::string> secrets;  // longest first, so a secret containing another is replaced whole
};

secret_registry& registry() {
  static secret_registry r;
  return r;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

void replace_all(std::string& text, std::string_view needle, std::string_view repl) {
  if (needle.empty()) return;
  std::size_t pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    text.replace(pos, needle.size(), repl);
    pos += repl.size();
  }
}

// Replaces the token after "Bearer " (case-insensitive) up to whitespace or a quote.
void redact_bearer(std::string& text) {
  const std::string l = lower(text);
  std::size_t pos = 0;
  std::string out;
  std::size_t copied = 0;
  while ((pos = l.find("bearer ", pos)) != std::string::npos) {
    std::size_t start = pos + 7;
    std::size_t end = start;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end])) && text[end] != '"' &&
           text[end] != '\'' && text[end] != ',')
      ++end;
    if (end > start && text.compare(start, end - start, "[REDACTED]") != 0) {
      out.append(text, copied, start - copied);
      out.append("[REDACTED]");
      copied = end;
    }
    pos = end;
  }
  if (copied == 0) return;
  out.append(text, copied, std::string::npos);
  text = std::move(out);
}

// Replaces the value of every query parameter that signs a URL (S3, GCS, our emulator's `sig`): a
// signed attachment URL is a bearer credential until it expires.
void redact_signed_query(std::string& text) {
  static constexpr std::array<std::string_view, 7> names = {"sig=",  "signature=", "x-amz-signature=",
                                                            "x-amz-credential=", "x-amz-security-token=",
                                                            "x-goog-signature=", "x-goog-credential="};
  const auto starts_with_ci = [&](std::size_t at, std::string_view n) {
    if (at + n.size() > text.size()) return false;
    for (std::size_t k = 0; k < n.size(); ++k)
      if (std::tolower(static_cast<unsigned char>(text[at + k])) != n[k]) return false;
    return true;
  };
  std::string out;
  std::size_t copied = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '?' && text[i] != '&') continue;
    for (auto n : names) {
      if (!starts_with_ci(i + 1, n)) continue;
      const std::size_t start = i + 1 + n.size();
      std::size_t end = start;
      while (end < text.size() && text[end] != '&' && text[end] != '#' && text[end] != '"' && text[end] != '\'' &&
             text[end] != '\\' && !std::isspace(static_cast<unsigned char>(text[end])))
        ++end;
      if (end == start || text.compare(start, end - start, "[REDACTED]") == 0) break;
      out.append(text, copied, start - copied);
      out.append("[REDACTED]");
      copied = end;
      i = end - 1;
      break;
    }
  }
  if (copied == 0) return;
  out.append(text, copied, std::string::npos);
  text = std::move(out);
}

std::string_view level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

std::string iso_time(spdlog::log_clock::time_point tp) {
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(tp);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tp - secs).count();
  const std::time_t t = spdlog::log_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::array<char, 96> buf{};
  std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf.data();
}

// Formats one record, after redaction, as text or as a JSON object per line.
class redacting_formatter final : public spdlog::formatter {
 public:
  explicit redacting_formatter(log_format f) : format_(f) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string line =
        format_record(format_, std::string_view(msg.logger_name.data(), msg.logger_name.size()), msg.level,
                      msg.time, std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<redacting_formatter>(format_);
  }

 private:
  log_format format_;
};

struct logging_state {
  std::mutex mu;
  spdlog::sink_ptr sink;
  log_format format = log_format::text;
  spdlog::level::level_enum level = spdlog::level::info;
};

logging_state& state() {
  static logging_state s;
  return s;
}

// stderr, or above the TTY status area while one is shown (engine/progress.hpp): the area is erased,
// the line written, the area drawn again, so a log line never lands on a status row.
class terminal_sink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    const std::string_view text(buf.data(), buf.size());
    if (print_above_active_area(text)) return;
    std::fwrite(buf.data(), 1, buf.size(), stderr);
    std::fflush(stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

spdlog::sink_ptr make_sink(log_format f) {
  auto sink = std::make_shared<terminal_sink>();
  sink->set_formatter(std::make_unique<redacting_formatter>(f));
  return sink;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid too).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  std::size_t len = 0;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3;
  else if (c >= 0xF0 && c <= 0xF4) len = 4;
  else return 0;
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k)
    if ((b(k) & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
  if (c == 0xED && b(1) > 0x9F) return 0;  // surrogates
  if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
  if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
  return len;
}

}  // namespace

std::string format_record(log_format format, std::string_view logger_name, spdlog::level::level_enum level,
                          std::chrono::system_clock::time_point ts, std::string_view message) {
  const std::string text = redact(message);
  const auto when = std::chrono::time_point_cast<spdlog::log_clock::duration>(ts);
  if (format == log_format::json) {
    return "{\"ts\":\"" + iso_time(when) + "\",\"level\":\"" + std::string(level_name(level)) +
           "\",\"logger\":\"" + json_escape(logger_name) + "\",\"msg\":\"" + json_escape(text) + "\"}\n";
  }
  return iso_time(when) + " " + std::string(level_name(level)) + " [" + std::string(logger_name) + "] " + text + "\n";
}

log_format parse_log_format(std::string_view s) {
  const std::string l = lower(s);
  if (l == "text") return log_format::text;
  if (l == "json") return log_format::json;
  throw std::invalid_argument("unknown log format '" + std::string(s) + "' (expected text or json)");
}

void init_logging(const log_config& cfg) { init_logging(cfg, nullptr); }

void init_logging(const log_config& cfg, spdlog::sink_ptr sink) {
  const std::string l = lower(cfg.level);
  auto level = spdlog::level::from_str(l == "warning" ? "warn" : l);
  if (level == spdlog::level::off && l != "off")
    throw std::invalid_argument("unknown log level '" + cfg.level +
                                "' (expected trace, debug, info, warn, error, critical or off)");
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (sink) {
    sink->set_formatter(std::make_unique<redacting_formatter>(cfg.format));
    s.sink = std::move(sink);
  } else {
    s.sink = make_sink(cfg.format);
  }
  s.format = cfg.format;
  s.level = level;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& lg) {
    lg->sinks().clear();
    lg->sinks().push_back(s.sink);
    lg->set_level(level);
  });
}

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  if (auto existing = spdlog::get(component)) return existing;
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (auto existing = spdlog::get(component)) return existing;
  if (!s.sink) s.sink = make_sink(s.format);
  auto lg = std::make_shared<spdlog::logger>(component, s.sink);
  lg->set_level(s.level);
  lg->flush_on(spdlog::level::warn);
  spdlog::register_logger(lg);
  return lg;
}

void register_secret(std::string_view secret) {
  if (secret.size() < 4) return;
  auto& r = registry();
  std::unique_lock lock(r.mu);
  if (std::find(r.secrets.begin(), r.secrets.end(), secret) != r.secrets.end()) return;
  r.secrets.emplace_back(secret);
  std::sort(r.secrets.begin(), r.secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

std::string redact(std::string_view text) {
  std::string out(text);
  {
    auto& r = registry();
    std::shared_lock lock(r.mu);
    for (const auto& s : r.secrets) replace_all(out, s, "[REDACTED]");
  }
  redact_bearer(out);
  redact_signed_query(out);
  if (out.find("://") != std::string::npos) out = redact_url_passwords(out);
  return out;
}

redacting_streambuf::~redacting_streambuf() {
  std::lock_guard lock(mu_);
  emit_locked(true);
}

redacting_streambuf::int_type redacting_streambuf::overflow(int_type ch) {
  if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
  const char c = traits_type::to_char_type(ch);
  xsputn(&c, 1);
  return ch;
}

std::streamsize redacting_streambuf::xsputn(const char* s, std::streamsize n) {
  std::lock_guard lock(mu_);
  pending_.append(s, static_cast<std::size_t>(n));
  emit_locked(false);
  return n;
}

int redacting_streambuf::sync() {
  std::lock_guard lock(mu_);
  emit_locked(true);
  return target_->pubsync();
}

void redacting_streambuf::emit_locked(bool flush_partial) {
  const auto nl = pending_.rfind('\n');
  const std::size_t upto = flush_partial ? pending_.size() : (nl == std::string::npos ? 0 : nl + 1);
  if (upto == 0) return;
  const std::string out = redact(std::string_view(pending_).substr(0, upto));
  target_->sputn(out.data(), static_cast<std::streamsize>(out.size()));
  pending_.erase(0, upto);
}

std::string shorten_middle(std::string_view text, std::size_t max) {
  constexpr std::string_view gap = " ... ";
  if (text.size() <= max) return std::string(text);
  if (max <= gap.size() + 2) return std::string(text.substr(0, max));
  const std::size_t keep = max - gap.size();
  const std::size_t head = keep / 2;
  std::size_t start = head, end = text.size() - (keep - head);
  // At a word boundary when one is near, and never inside a UTF-8 sequence.
  if (const auto sp = text.rfind(' ', start); sp != std::string_view::npos && start - sp < 20) start = sp;
  if (const auto sp = text.find(' ', end); sp != std::string_view::npos && sp - end < 20) end = sp + 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
  return std::string(text.substr(0, start)) + std::string(gap) + std::string(text.substr(end));
}

bool is_secret_field_name(std::string_view key) {
  const std::string l = lower(key);
  static constexpr std::array<std::string_view, 9> exact = {
      "authorization", "proxy-authorization", "api_key", "apikey", "secret", "password", "token", "x-api-key",
      "cookie"};
  if (std::find(exact.begin(), exact.end(), l) != exact.end()) return true;
  return l.ends_with("_api_key") || l.ends_with("_secret") || l.ends_with("_token") || l.ends_with("_password");
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (const std::size_t j = json_special_byte(s, i, /*stop_at_non_ascii=*/true); j > i) {
      out.append(s.substr(i, j - i));  // a clean run, copied at once
      if (j == s.size()) break;
      i = j;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(s, i);
      if (len == 0) {
        out += "\\ufffd";
      } else {
        out.append(s.substr(i, len));
        i += len - 1;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          std::array<char, 8> buf{};
          std::snprintf(buf.data(), buf.size(), "\\u%04x", c);
          out += buf.data();
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace ferry::engine
