#include "engine/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

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
    const std::string text = redact(std::string_view(msg.payload.data(), msg.payload.size()));
    std::string line;
    if (format_ == log_format::json) {
      line = "{\"ts\":\"" + iso_time(msg.time) + "\",\"level\":\"" + std::string(level_name(msg.level)) +
             "\",\"logger\":\"" + json_escape(std::string_view(msg.logger_name.data(), msg.logger_name.size())) +
             "\",\"msg\":\"" + json_escape(text) + "\"}\n";
    } else {
      line = iso_time(msg.time) + " " + std::string(level_name(msg.level)) + " [" +
             std::string(msg.logger_name.data(), msg.logger_name.size()) + "] " + text + "\n";
    }
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

spdlog::sink_ptr make_sink(log_format f) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_formatter(std::make_unique<redacting_formatter>(f));
  return sink;
}

}  // namespace

log_format parse_log_format(std::string_view s) {
  const std::string l = lower(s);
  if (l == "text") return log_format::text;
  if (l == "json") return log_format::json;
  throw std::invalid_argument("unknown log format '" + std::string(s) + "' (expected text or json)");
}

void init_logging(const log_config& cfg) {
  const std::string l = lower(cfg.level);
  auto level = spdlog::level::from_str(l == "warning" ? "warn" : l);
  if (level == spdlog::level::off && l != "off")
    throw std::invalid_argument("unknown log level '" + cfg.level +
                                "' (expected trace, debug, info, warn, error, critical or off)");
  auto& s = state();
  std::lock_guard lock(s.mu);
  s.sink = make_sink(cfg.format);
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
  return out;
}

bool is_secret_field_name(std::string_view key) {
  const std::string l = lower(key);
  static constexpr std::array<std::string_view, 9> exact = {
      "authorization", "proxy-authorization", "api_key", "apikey", "secret", "password", "token", "x-api-key",
      "cookie"};
  if (std::find(exact.begin(), exact.end(), l) != exact.end()) return true;
  return l.ends_with("_api_key") || l.ends_with("_secret") || l.ends_with("_token") || l.ends_with("_password");
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
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
