#pragma once
// Shared pieces of the bench executables: a realistic BTQL page generator (rows shaped like what the
// emulator returns for `ferry seed` logs: span fields, nested input/output/metadata/metrics, ~2 KB),
// a tiny flag parser, timing helpers (wall + process CPU), medians, and the one-line/JSON result output.
// Header-only; single-threaded helpers (each bench owns its objects).

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::bench {

// ---- flags: --name value | --name=value | --switch ------------------------------------------------
class flags {
 public:
  flags(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument '" + a + "' (flags are --name value)");
      a = a.substr(2);
      if (auto eq = a.find('='); eq != std::string::npos) {
        values_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        values_[a] = argv[++i];
      } else {
        values_[a] = "true";
      }
    }
  }
  std::string str(const std::string& k, std::string def = "") const {
    auto it = values_.find(k);
    return it == values_.end() ? def : it->second;
  }
  double num(const std::string& k, double def) const {
    auto it = values_.find(k);
    if (it == values_.end()) return def;
    try {
      return std::stod(it->second);
    } catch (const std::exception&) {
      throw std::invalid_argument("--" + k + " expects a number, got '" + it->second + "'");
    }
  }
  bool has(const std::string& k) const { return values_.count(k) != 0; }

 private:
  std::map<std::string, std::string> values_;
};

// ---- timing ---------------------------------------------------------------------------------------
inline double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline double cpu_s() {  // user+sys of the whole process (all threads)
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
inline double thread_cpu_s() {  // user+sys of the calling thread only
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
inline std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Defeats dead-code elimination of benchmarked results.
inline void keep(std::uint64_t v) {
  static volatile std::uint64_t sink;
  sink = sink + v;
}

// ---- output ---------------------------------------------------------------------------------------
/// Writes `result` (adding "load") to the --json path when given, and prints `line` to stdout.
inline void emit(const flags& f, boost::json::object result, const std::string& line) {
  result["load"] = loadavg();
  if (auto path = f.str("json"); !path.empty()) {
    std::ofstream out(path);
    if (!out) throw std::runtime_error("cannot write " + path);
    out << boost::json::serialize(result) << "\n";
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// ---- realistic rows -------------------------------------------------------------------------------
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {  // splitmix64
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) { return lo + next() % (hi - lo + 1); }

 private:
  std::uint64_t s_;
};

inline std::string hex(std::uint64_t v, int digits) {
  static const char* d = "0123456789abcdef";
  std::string s(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = d[v & 15];
  return s;
}
inline std::string uuid(rng& r) {
  auto a = hex(r.next(), 16), b = hex(r.next(), 16);
  return a.substr(0, 8) + "-" + a.substr(8, 4) + "-4" + a.substr(13, 3) + "-8" + b.substr(1, 3) + "-" + b.substr(4, 12);
}
inline std::string words(rng& r, std::size_t chars) {
  static const char* vocab[] = {"the",    "model",   "answer", "question", "context", "token", "latency", "user",
                                "prompt", "retrieval", "score", "function", "tool",   "call",  "result",  "span",
                                "trace",  "dataset", "eval",   "ground",   "truth",   "Ä",     "naïve",   "\"quoted\""};
  std::string s;
  s.reserve(chars + 16);
  while (s.size() < chars) {
    if (!s.empty()) s.push_back(' ');
    s += vocab[r.next() % (sizeof(vocab) / sizeof(vocab[0]))];
  }
  return s;
}

/// The `_pagination_key` of row n: fixed width so byte order == numeric order.
inline std::string pagination_key(std::uint64_t n) {
  char b[32];
  std::snprintf(b, sizeof b, "p%019llu", static_cast<unsigned long long>(n));
  return b;
}

/// One BTQL `spans`-shaped project log row as the source API returns it (~2 KB with payload 1800).
inline boost::json::object make_row(rng& r, std::uint64_t n, const std::string& project_id, std::size_t payload = 1800) {
  namespace json = boost::json;
  const std::uint64_t trace = n / 4;
  json::object row;
  row["id"] = uuid(r);
  row["_xact_id"] = std::to_string(1000000000000ull + n);
  row["_pagination_key"] = pagination_key(n);
  row["created"] = "2024-02-01T00:" + std::to_string(10 + n % 50) + ":00.000Z";
  row["org_id"] = "0b9f5a6e-1111-4222-8333-444455556666";
  row["project_id"] = project_id;
  row["log_id"] = "g";
  row["span_id"] = hex(r.next(), 16);
  row["root_span_id"] = hex(r.next(), 16) + hex(r.next(), 16);
  if (n % 4) row["span_parents"] = json::array{json::value(hex(r.next(), 16))};
  row["is_root"] = n % 4 == 0;
  row["span_attributes"] = json::object{{"name", n % 4 ? "llm-call" : "request"}, {"type", n % 4 ? "llm" : "task"}};
  row["input"] = json::object{{"question", words(r, payload / 2)}};
  row["output"] = words(r, payload / 2);
  row["expected"] = nullptr;
  row["error"] = nullptr;
  row["scores"] = n % 10 == 0 ? json::value(json::object{{"Helpfulness", 0.25 * static_cast<double>(n % 5)}})
                              : json::value(nullptr);
  row["metadata"] = json::object{{"user", "u" + std::to_string(r.range(1, 50))}, {"trace", trace}};
  row["metrics"] = json::object{{"start", 1706745600 + trace}, {"end", 1706745601 + trace},
                                {"tokens", r.range(10, 2000)}};
  row["tags"] = n % 5 == 0 ? json::value(json::array{"needs-review"}) : json::value(nullptr);
  row["context"] = nullptr;
  row["origin"] = nullptr;
  row["comments"] = nullptr;
  return row;
}

/// A BTQL page `{"data":[...rows...],"cursor":null}` of `rows` rows starting at row number `first`.
inline std::string make_page(std::size_t rows, std::uint64_t first, std::uint64_t seed, const std::string& project_id,
                             std::size_t payload = 1800) {
  rng r(seed);
  boost::json::array data;
  data.reserve(rows);
  for (std::size_t i = 0; i < rows; ++i) data.push_back(make_row(r, first + i, project_id, payload));
  boost::json::object page{{"data", std::move(data)}, {"cursor", nullptr}};
  return boost::json::serialize(page);
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string fmt(double v, int prec = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

}  // namespace ferry::bench
