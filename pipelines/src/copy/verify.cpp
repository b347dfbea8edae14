// verify_copy: the source's expected rows (after the transform, as the sink stores them) against the
// rows read back from the sink, field hash by field hash (pipelines/copy/verify.hpp).
#include "pipelines/copy/verify.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <ostream>
#include <unordered_map>
#include <vector>

namespace ferry::pipelines::copy {

namespace json = boost::json;

namespace {

void canon(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      std::vector<std::pair<std::string_view, const json::value*>> fields;
      for (const auto& [k, x] : v.get_object()) fields.emplace_back(k, &x);
      std::sort(fields.begin(), fields.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out += ',';
        out += json::serialize(json::string(fields[i].first));
        out += ':';
        canon(*fields[i].second, out);
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& x : v.get_array()) {
        if (!first) out += ',';
        first = false;
        canon(x, out);
      }
      out += ']';
      return;
    }
    case json::kind::double_: {
      const double d = v.get_double();
      if (std::trunc(d) == d && std::fabs(d) < 9007199254740992.0) {
        out += std::to_string(static_cast<std::int64_t>(d));
        return;
      }
      out += json::serialize(v);
      return;
    }
    default: out += json::serialize(v);
  }
}

/// The value of a field the sink holds, in the type the expected value has where the sink has none.
json::value as_expected(const json::value* got, json::kind want) {
  if (!got) return nullptr;
  if ((want == json::kind::object || want == json::kind::array) && got->is_string()) {
    try {
      auto v = parse_json(got->get_string(), "");
      if (v.kind() == want) return v;
    } catch (const copy_error&) {
    }
  }
  if (want == json::kind::bool_ && (got->is_int64() || got->is_uint64())) {
    const auto n = got->to_number<std::int64_t>();
    if (n == 0 || n == 1) return n == 1;
  }
  return *got;
}

std::uint64_t hash_value(const json::value& v) {
  std::string s;
  canon(v, s);
  return std::hash<std::string>{}(s);
}

json::kind kind_of(const json::value& v) {
  return v.is_int64() || v.is_uint64() ? json::kind::double_ : v.kind();  // numbers are one kind here
}

struct expected_row {
  std::size_t signature = 0;           // index of its field list
  std::vector<std::uint64_t> hashes;   // per field, in the signature's order
  bool seen = false;
};

using signature = std::vector<std::pair<std::string, json::kind>>;

/// Reads every row of `s`, page after page, passing each to `fn`.
template <class Fn>
void read_all(source& s, std::size_t page_rows, Fn&& fn) {
  std::string cursor;
  for (;;) {
    auto p = s.read_after(cursor, page_rows);
    if (!p.rows.empty()) cursor = p.after.empty() ? p.rows.back().cursor : p.after;
    for (auto& r : p.rows) fn(r);
    if (p.end) return;
  }
}

}  // namespace

verify_counts verify_copy(source& src, const transform* tf, const sink& dst, source& back, std::size_t page_rows,
                          std::ostream& out) {
  const std::string key = back.key_field();
  std::vector<signature> sigs;
  std::map<signature, std::size_t> sig_index;
  std::unordered_map<std::string, expected_row> expected;
  std::size_t index = 0;
  read_all(src, page_rows, [&](row& r) {
    if (tf && !tf->apply(r)) return;
    auto stored = dst.as_stored(std::move(r.fields));
    const auto k = key_text(stored, key, "verify: the source (after the transform)", index++);
    signature sig;
    expected_row e;
    for (const auto& [name, v] : stored) {
      sig.emplace_back(std::string(name), kind_of(v));
    }
    std::sort(sig.begin(), sig.end());
    for (const auto& [name, kind] : sig) e.hashes.push_back(hash_value(stored.at(name)));
    auto [it, fresh] = sig_index.try_emplace(sig, sigs.size());
    if (fresh) sigs.push_back(std::move(sig));
    e.signature = it->second;
    expected[k] = std::move(e);  // a key read twice: the sink keeps the later row
  });

  verify_counts c;
  c.expected = expected.size();
  read_all(back, page_rows, [&](row& r) {
    ++c.read_back;
    auto it = expected.find(r.source_id);
    if (it == expected.end()) {
      out << "DIFF " << key << "=" << r.source_id << ": only in the sink\n";
      ++c.differences;
      return;
    }
    auto& e = it->second;
    if (e.seen) {
      out << "DIFF " << key << "=" << r.source_id << ": twice in the sink\n";
      ++c.differences;
      return;
    }
    e.seen = true;
    std::string differ;
    const auto& sig = sigs[e.signature];
    for (std::size_t i = 0; i < sig.size(); ++i) {
      const auto got = as_expected(r.fields.if_contains(sig[i].first), sig[i].second);
      if (hash_value(got) != e.hashes[i]) differ += (differ.empty() ? "" : ", ") + sig[i].first;
    }
    if (!differ.empty()) {
      out << "DIFF " << key << "=" << r.source_id << ": fields differ: " << differ << "\n";
      ++c.differences;
    }
  });
  std::vector<std::string> missing;
  for (const auto& [k, e] : expected)
    if (!e.seen) missing.push_back(k);
  std::sort(missing.begin(), missing.end());
  for (const auto& k : missing) out << "DIFF " << key << "=" << k << ": missing in the sink\n";
  c.differences += missing.size();
  return c;
}

}  // namespace ferry::pipelines::copy
