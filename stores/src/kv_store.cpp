// kv_store: big-endian helpers, the default multi_get, and the in-memory implementation.
#include "stores/kv_store.hpp"

#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

namespace ferry::stores {

std::string be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
  return out;
}

std::uint64_t from_be64(std::string_view s) {
  if (s.size() != 8) throw store_error("be64: expected 8 bytes, got " + std::to_string(s.size()));
  std::uint64_t v = 0;
  for (char c : s) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

std::vector<std::optional<std::string>> kv_store::multi_get(std::string_view cf,
                                                            const std::vector<std::string>& keys) const {
  std::vector<std::optional<std::string>> out;
  out.reserve(keys.size());
  for (const auto& k : keys) out.push_back(get(cf, k));
  return out;
}

namespace {

/// std::map per column family under one shared_mutex. Writers take the lock exclusively, readers
/// shared; scans copy chunks of entries under the shared lock and call `visit` without it, so a
/// visitor may write to the store without deadlocking.
class memory_store final : public kv_store {
 public:
  explicit memory_store(const std::vector<std::string>& cfs) {
    cfs_["default"];
    for (const auto& cf : cfs) cfs_[cf];
  }

  std::optional<std::string> get(std::string_view cf, std::string_view key) const override {
    std::shared_lock lock(mu_);
    const auto& m = table(cf);
    auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    return it->second;
  }

  std::vector<std::optional<std::string>> multi_get(std::string_view cf,
                                                    const std::vector<std::string>& keys) const override {
    std::shared_lock lock(mu_);
    const auto& m = table(cf);
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (const auto& k : keys) {
      auto it = m.find(k);
      out.push_back(it == m.end() ? std::nullopt : std::optional<std::string>(it->second));
    }
    return out;
  }

  void put(std::string_view cf, std::string_view key, std::string_view value, bool /*sync*/) override {
    std::unique_lock lock(mu_);
    auto& m = table(cf);
    auto it = m.find(key);
    if (it == m.end())
      m.emplace(std::string(key), std::string(value));
    else
      it->second.assign(value);
  }

  void del(std::string_view cf, std::string_view key, bool /*sync*/) override {
    std::unique_lock lock(mu_);
    auto& m = table(cf);
    auto it = m.find(key);
    if (it != m.end()) m.erase(it);
  }

  void write(const write_batch& batch, bool /*sync*/) override {
    std::unique_lock lock(mu_);
    // Validate every column family first so that a bad batch changes nothing (atomicity).
    for (const auto& op : batch.ops()) (void)table(op.cf);
    for (const auto& op : batch.ops()) {
      auto& m = table(op.cf);
      if (op.value)
        m.insert_or_assign(op.key, *op.value);
      else if (auto it = m.find(op.key); it != m.end())
        m.erase(it);
    }
  }

  void scan(std::string_view cf, std::string_view from, std::string_view to,
            const std::function<bool(std::string_view, std::string_view)>& visit) const override {
    std::string cursor(from);
    bool inclusive = true;
    std::vector<std::pair<std::string, std::string>> chunk;
    for (;;) {
      chunk.clear();
      {
        std::shared_lock lock(mu_);
        const auto& m = table(cf);
        auto it = inclusive ? m.lower_bound(cursor) : m.upper_bound(cursor);
        for (; it != m.end() && chunk.size() < kChunk; ++it) {
          if (!to.empty() && std::string_view(it->first) >= to) break;
          chunk.emplace_back(it->first, it->second);
        }
      }
      for (const auto& [k, v] : chunk)
        if (!visit(k, v)) return;
      if (chunk.size() < kChunk) return;
      cursor = chunk.back().first;
      inclusive = false;
    }
  }

  void scan_reverse(std::string_view cf, std::string_view from, std::string_view to,
                    const std::function<bool(std::string_view, std::string_view)>& visit) const override {
    std::string cursor(from);  // exclusive upper bound; empty = end
    bool at_end = from.empty();
    std::vector<std::pair<std::string, std::string>> chunk;
    for (;;) {
      chunk.clear();
      {
        std::shared_lock lock(mu_);
        const auto& m = table(cf);
        auto it = at_end ? m.end() : m.lower_bound(cursor);
        while (it != m.begin() && chunk.size() < kChunk) {
          --it;
          if (!to.empty() && std::string_view(it->first) < to) break;
          chunk.emplace_back(it->first, it->second);
        }
      }
      for (const auto& [k, v] : chunk)
        if (!visit(k, v)) return;
      if (chunk.size() < kChunk) return;
      cursor = chunk.back().first;
      at_end = false;
    }
  }

 private:
  using map_t = std::map<std::string, std::string, std::less<>>;
  static constexpr std::size_t kChunk = 256;

  const map_t& table(std::string_view cf) const {
    auto it = cfs_.find(cf);
    if (it == cfs_.end()) throw store_error("memory store: unknown column family '" + std::string(cf) + "'");
    return it->second;
  }
  map_t& table(std::string_view cf) {
    auto it = cfs_.find(cf);
    if (it == cfs_.end()) throw store_error("memory store: unknown column family '" + std::string(cf) + "'");
    return it->second;
  }

  mutable std::shared_mutex mu_;
  std::map<std::string, map_t, std::less<>> cfs_;  // the set of cfs is fixed after construction
};

}  // namespace

std::unique_ptr<kv_store> kv_store::open_memory(const std::vector<std::string>& cfs) {
  return std::make_unique<memory_store>(cfs);
}

}  // namespace ferry::stores
