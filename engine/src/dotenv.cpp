#include "engine/dotenv.hpp"

#include "engine/settings.hpp"

#include <cstdlib>
#include <map>
#include <optional>

namespace ferry::engine {
namespace {

bool horizontal_space(char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\v'; }
bool any_space(char c) { return horizontal_space(c) || c == '\n' || c == '\r'; }

class parse_failure {};

// A cursor over the text that knows its line; mirrors python-dotenv's Reader.
class reader {
 public:
  explicit reader(std::string_view s) : s_(s) {}
  bool at_end() const { return pos_ >= s_.size(); }
  char peek(std::size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }
  int line() const { return line_; }
  void advance(std::size_t n) {
    for (std::size_t i = 0; i < n && pos_ < s_.size(); ++i) {
      const char c = s_[pos_++];
      // \r\n is one line break; a lone \r or \n is one too.
      if (c == '\n' || (c == '\r' && peek() != '\n')) ++line_;
    }
  }
  std::size_t skip_horizontal() {
    std::size_t n = 0;
    while (!at_end() && horizontal_space(peek())) advance(1), ++n;
    return n;
  }
  void skip_all_space() {
    while (!at_end() && any_space(peek())) advance(1);
  }
  std::string_view rest() const { return s_.substr(pos_); }
  void skip_rest_of_line() {
    while (!at_end() && peek() != '\n' && peek() != '\r') advance(1);
    if (peek() == '\r') advance(1);
    if (peek() == '\n') advance(1);
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
  int line_ = 1;
};

// A quoted value's body: up to the closing quote, where `\<quote>` does not close. Without an unescaped
// closing quote, python-dotenv's regex backtracks to the last escaped one and closes there.
std::string read_quoted(reader& r, char quote) {
  const std::string_view rest = r.rest();
  std::optional<std::size_t> close, last_escaped;
  for (std::size_t i = 1; i < rest.size(); ++i) {
    if (rest[i] == '\\' && i + 1 < rest.size() && rest[i + 1] == quote) {
      last_escaped = i + 1;
      ++i;
    } else if (rest[i] == quote) {
      close = i;
      break;
    }
  }
  if (!close) close = last_escaped;
  if (!close) throw parse_failure{};
  std::string body(rest.substr(1, *close - 1));
  r.advance(*close + 1);
  return body;
}

std::string decode_escapes(std::string_view s, bool double_quoted) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char n = s[i + 1];
    char decoded = 0;
    if (n == '\\' || n == '\'') decoded = n;
    else if (double_quoted) {
      switch (n) {
        case '"': decoded = '"'; break;
        case 'a': decoded = '\a'; break;
        case 'b': decoded = '\b'; break;
        case 'f': decoded = '\f'; break;
        case 'n': decoded = '\n'; break;
        case 'r': decoded = '\r'; break;
        case 't': decoded = '\t'; break;
        case 'v': decoded = '\v'; break;
        default: break;
      }
    }
    if (decoded == 0) {
      out += s[i];
      continue;
    }
    out += decoded;
    ++i;
  }
  return out;
}

std::string unquoted_value(reader& r, bool preceded_by_space) {
  std::string_view rest = r.rest();
  const auto eol = rest.find_first_of("\r\n");
  std::string_view part = rest.substr(0, eol);
  r.advance(part.size());
  if (preceded_by_space && !part.empty() && part.front() == '#') return {};
  for (std::size_t i = 1; i < part.size(); ++i)
    if (part[i] == '#' && any_space(part[i - 1])) {
      part = part.substr(0, i);
      break;
    }
  while (!part.empty() && (any_space(part.back()))) part.remove_suffix(1);
  return std::string(part);
}

// One statement; nullopt value when the statement sets nothing (a comment, a bare name).
struct statement {
  std::optional<std::string> name;
  std::optional<std::string> value;
  int line = 0;
};

statement parse_statement(reader& r) {
  statement st;
  st.line = r.line();
  if (r.rest().starts_with("export") && horizontal_space(r.peek(6))) {
    r.advance(6);
    r.skip_horizontal();
  }
  if (r.peek() == '\'') {
    const std::string_view rest = r.rest();
    const auto close = rest.find('\'', 1);
    if (close == std::string_view::npos || close == 1) throw parse_failure{};
    st.name = std::string(rest.substr(1, close - 1));
    r.advance(close + 1);
  } else if (r.peek() != '#') {
    std::size_t n = 0;
    const std::string_view rest = r.rest();
    while (n < rest.size() && rest[n] != '=' && rest[n] != '#' && !any_space(rest[n])) ++n;
    if (n == 0) throw parse_failure{};
    st.name = std::string(rest.substr(0, n));
    r.advance(n);
  }
  if (st.name) {
    r.skip_horizontal();
    if (r.peek() == '=') {
      r.advance(1);
      const bool spaced = r.skip_horizontal() > 0;
      const char c = r.peek();
      if (c == '\'') st.value = decode_escapes(read_quoted(r, '\''), false);
      else if (c == '"') st.value = decode_escapes(read_quoted(r, '"'), true);
      else if (c == '\0' || c == '\n' || c == '\r') st.value = std::string();
      else st.value = unquoted_value(r, spaced);
    }
  }
  // An optional comment, then the end of the line.
  std::size_t ws = 0;
  while (horizontal_space(r.peek(ws))) ++ws;
  if (r.peek(ws) == '#') r.skip_rest_of_line();
  else {
    r.skip_horizontal();
    if (!r.at_end() && r.peek() != '\n' && r.peek() != '\r') throw parse_failure{};
    r.skip_rest_of_line();
  }
  return st;
}

// ${NAME} and ${NAME:-default}: the environment first, then earlier values of the file.
std::string expand(std::string_view v, const std::map<std::string, std::string, std::less<>>& earlier,
                   const std::function<const char*(const char*)>& getenv) {
  std::string out;
  for (std::size_t i = 0; i < v.size();) {
    const auto start = v.find("${", i);
    const auto close = start == std::string_view::npos ? start : v.find('}', start + 2);
    if (close == std::string_view::npos) {
      out.append(v.substr(i));
      break;
    }
    out.append(v.substr(i, start - i));
    std::string_view inner = v.substr(start + 2, close - start - 2);
    std::optional<std::string_view> def;
    const auto colon = inner.find(':');
    if (colon != std::string_view::npos) {
      if (!inner.substr(colon).starts_with(":-")) {  // not a variable in python-dotenv's grammar
        out.append(v.substr(start, 2));
        i = start + 2;
        continue;
      }
      def = inner.substr(colon + 2);
      inner = inner.substr(0, colon);
    }
    const std::string name(inner);
    if (const char* e = getenv(name.c_str())) out += e;
    else if (auto it = earlier.find(name); it != earlier.end()) out += it->second;
    else if (def) out.append(*def);
    i = close + 1;
  }
  return out;
}

}  // namespace

std::vector<dotenv_entry> parse_dotenv(std::string_view text, std::string_view origin,
                                       const std::function<const char*(const char*)>& getenv_fn) {
  auto get = getenv_fn ? getenv_fn : [](const char* n) -> const char* { return std::getenv(n); };
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  reader r(text);
  std::vector<dotenv_entry> out;
  std::map<std::string, std::string, std::less<>> earlier;
  for (;;) {
    r.skip_all_space();
    if (r.at_end()) break;
    const int line = r.line();
    statement st;
    try {
      st = parse_statement(r);
    } catch (const parse_failure&) {
      // The statement is not echoed: it may hold a secret that was never registered.
      throw config_error(std::string(origin) + ":" + std::to_string(line) +
                         ": cannot parse this statement (expected KEY=value, KEY='value' or KEY=\"value\" with "
                         "closed quotes and nothing but a # comment after them)");
    }
    if (!st.name || !st.value) continue;
    std::string value = expand(*st.value, earlier, get);
    earlier[*st.name] = value;
    out.push_back({*st.name, std::move(value), st.line});
  }
  return out;
}

}  // namespace ferry::engine
