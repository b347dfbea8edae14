#include "engine/json_parse.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>
#include <boost/throw_exception.hpp>

#include <charconv>
#include <string>

namespace ferry::engine {

namespace json = boost::json;

namespace {

// boost::json::detail::handler (the one boost::json::parser uses), except on_double: the double the
// parser computed is replaced by std::from_chars of the number's text. A number split across writes
// arrives in parts (on_number_part) before its last part (on_double's text); parse_json writes once,
// but the parts are kept so the handler is right for any caller.
struct exact_handler {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  json::value_stack st;
  std::string number;  // the parts of a number seen so far

  exact_handler(json::storage_ptr sp, unsigned char* buf, std::size_t size) : st(std::move(sp), buf, size) {}

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) { return true; }
  bool on_object_end(std::size_t n, json::error_code&) {
    st.push_object(n);
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    st.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    st.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    st.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view s, json::error_code&) {
    number.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    number.clear();
    st.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    number.clear();
    st.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view s, json::error_code&) {
    const char* first = s.data();
    const char* last = s.data() + s.size();
    if (!number.empty()) {
      number.append(s.data(), s.size());
      first = number.data();
      last = number.data() + number.size();
    }
    // from_chars takes no leading '+' (JSON has none) and reports out of range for overflow and
    // underflow; Boost.JSON's own value (inf-free: the parser already refused what JSON cannot hold) is
    // kept then.
    double exact = 0;
    const auto r = std::from_chars(first, last, exact);
    if (r.ec == std::errc() && r.ptr == last) d = exact;
    number.clear();
    st.push_double(d);
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    st.push_bool(b);
    return true;
  }
  bool on_null(json::error_code&) {
    st.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

}  // namespace

json::value parse_json(std::string_view text, boost::system::error_code& ec, json::storage_ptr sp,
                       const json::parse_options& opt) {
  unsigned char temp[BOOST_JSON_STACK_BUFFER_SIZE];
  json::basic_parser<exact_handler> p(opt, json::storage_ptr(), temp, sizeof temp);
  p.handler().st.reset(std::move(sp));
  ec = {};
  const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
  if (!ec && n < text.size()) ec = json::error::extra_data;
  if (ec) return nullptr;
  return p.handler().st.release();
}

json::value parse_json(std::string_view text, std::error_code& ec, json::storage_ptr sp, const json::parse_options& opt) {
  boost::system::error_code bec;
  auto v = parse_json(text, bec, std::move(sp), opt);
  ec = bec;
  return v;
}

json::value parse_json(std::string_view text, json::storage_ptr sp, const json::parse_options& opt) {
  boost::system::error_code ec;
  auto v = parse_json(text, ec, std::move(sp), opt);
  if (ec) boost::throw_exception(boost::system::system_error(ec), BOOST_CURRENT_LOCATION);
  return v;
}

}  // namespace ferry::engine
