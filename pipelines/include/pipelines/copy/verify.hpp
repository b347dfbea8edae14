#pragma once
// `ferry copy --from A --to B --verify`: after the copy, both sides are read again independently and
// compared row by row. The source is read to its end through the transform (rows a filter drops are
// not expected) and each row is put in the form the sink stores it (sink::as_stored): per key, a hash
// of each of its fields is kept. The sink is then read back as a source (its own URI, its own key
// field) and each row's fields are hashed the same way and compared:
//   DIFF key=K: missing in the sink | only in the sink | twice in the sink | fields differ: a, b
// One line per difference, the missing keys last and sorted. Only the fields of the expected row are
// compared (the sink's own fields, e.g. a Braintrust row's _xact_id or a table's other columns, are
// not); a field absent in the sink equals null. Values are compared canonically (object keys in any
// order, 2 and 2.0 equal), and through the sink's representation where it has no such type: an
// object or array the sink holds as JSON text, a boolean held as 0/1.
// Memory: one entry per expected key (its text and 8 bytes per field).

#include "pipelines/copy/connector.hpp"
#include "pipelines/copy/transform.hpp"

#include <cstdint>
#include <iosfwd>

namespace ferry::pipelines::copy {

struct verify_counts {
  std::uint64_t expected = 0;     // source rows after the transform (distinct keys)
  std::uint64_t read_back = 0;    // rows read from the sink
  std::uint64_t differences = 0;  // DIFF lines printed
};

/// `back` reads what `dst` holds (the sink's URI opened as a source). DIFF lines go to `out`.
verify_counts verify_copy(source& src, const transform* tf, const sink& dst, source& back, std::size_t page_rows,
                          std::ostream& out);

}  // namespace ferry::pipelines::copy
