#pragma once
// `ferry serve`: runs the emulator until SIGINT/SIGTERM. The CLI (apps/) maps its flags onto serve_options.

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ferry::emulator {

struct serve_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = any free port (printed on the first stdout line)
  std::string data_dir;    // empty = in memory
  /// "KEY" (org "emu-org") or "KEY:ORG_NAME"; empty = one key "ferry-emulator-key" for org "emu-org".
  std::vector<std::string> api_keys;
  std::string faults_file;               // YAML/JSON with a `faults:` list (see faults.hpp)
  std::vector<std::string> fault_specs;  // compact `--fault` specs
  std::uint64_t logs3_payload_max_bytes = 6u << 20;
  unsigned threads = 2;
  std::optional<std::uint64_t> fault_seed;  // default: the file's `seed:`, else 1
  std::optional<std::uint64_t> id_seed;     // deterministic ids/timestamps (see emulator_config)
};

/// Starts the emulator on an io_context with `threads` threads, prints ONE line to stdout
/// `ferry serve: listening on http://127.0.0.1:PORT (org <name>, data <dir|memory>)` (flushed), serves
/// until SIGINT/SIGTERM and returns 0. Configuration errors print one line `ferry serve: <what to fix>` to
/// stderr and return 2; a server that cannot start returns 1.
int run_serve(const serve_options& opts);

/// Runs `ioc` on `threads` threads (at least one: the caller's) until SIGINT or SIGTERM; then calls
/// on_signal(sig), which stops the server, and stops `ioc`. (`ferry serve` and `ferry replay`.)
void run_until_signal(boost::asio::io_context& ioc, unsigned threads, const std::function<void(int)>& on_signal);

struct emulator_config;
/// Builds the emulator configuration from serve options (parses keys and faults); throws
/// std::invalid_argument / fault_config_error with a one-line message.
emulator_config make_emulator_config(const serve_options& opts);

}  // namespace ferry::emulator
