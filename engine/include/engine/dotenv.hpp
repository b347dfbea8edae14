#pragma once
// `.env` files read as python-dotenv reads them (the reference tool calls load_dotenv(), which does not
// override variables already in the environment), so one `.env` serves both tools:
//
//   - blank lines and lines starting with `#` are skipped; a line may start with `export `;
//   - `KEY=value`, spaces around `=` ignored; a key is unquoted (`[^=#\s]+`) or single-quoted;
//   - unquoted values end at the line's end, lose a ` # comment` (a `#` after whitespace) and
//     trailing spaces; `KEY=a#b` keeps `a#b`, `KEY= #x` is empty;
//   - 'single quoted' values are literal but for \\ and \'; "double quoted" values decode
//     \\ \' \" \a \b \f \n \r \t \v; both may span lines; a `# comment` may follow the closing quote;
//   - `${NAME}` and `${NAME:-default}` expand (in every value, as python-dotenv does) to the variable
//     from the environment, else from an earlier line of the file, else the default, else empty;
//     `$NAME` without braces stays as written;
//   - a name without `=` (`KEY`) sets nothing.
// A statement python-dotenv cannot parse (an unterminated quote, text after a closing quote, `=x`) is
// an error here (python-dotenv skips it with a warning): a key silently dropped would be worse.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::engine {

struct dotenv_entry {
  std::string name;
  std::string value;
  int line = 0;  // 1-based line where the statement starts
};

/// Parses `text` (the contents of `origin`, used in errors as "<origin>:<line>: ..."). `getenv`
/// resolves `${NAME}` from the environment (nullptr = not set); empty = ::getenv. Throws config_error.
std::vector<dotenv_entry> parse_dotenv(std::string_view text, std::string_view origin,
                                       const std::function<const char*(const char*)>& getenv = {});

}  // namespace ferry::engine
