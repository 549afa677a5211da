// The backends of kv_store.hpp as the store's tests use them: a RocksDB in a temp dir and a
// fresh database of the throwaway PostgreSQL (tests/support/throwaway_postgres.hpp).
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "tests/support/throwaway_postgres.hpp"

namespace tessera::adapters::testing {

using tessera::testing::throwaway_postgres;

// A store that passes every call to `inner`: a test's store decorator overrides only the calls
// it changes (holding a write, failing reads).
struct forwarding_store : kv_store {
  std::shared_ptr<kv_store> inner;
  explicit forwarding_store(std::shared_ptr<kv_store> s) : inner(std::move(s)) {}
  caf::expected<std::optional<std::string>> get(std::string_view key) const override {
    return inner->get(key);
  }
  caf::error write(const std::vector<write_op>& ops) override { return inner->write(ops); }
  caf::expected<kv_rows> scan(std::string_view p, std::string_view a, size_t n) const override {
    return inner->scan(p, a, n);
  }
  caf::expected<kv_rows> range(std::string_view f, std::string_view t, size_t n,
                               bool r) const override {
    return inner->range(f, t, n, r);
  }
  caf::expected<change_page> changes_after(uint64_t a, size_t n) const override {
    return inner->changes_after(a, n);
  }
  caf::expected<std::shared_ptr<kv_store>> read_view() const override { return inner->read_view(); }
  caf::error flush() override { return inner->flush(); }
  bool healthy() const override { return inner->healthy(); }
};

// A temp dir, removed with its contents when the guard goes.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static std::atomic<int> n = 0;
    path = std::filesystem::temp_directory_path() /
           ("tessera-kv-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
    std::filesystem::remove_all(path);
  }
  ~temp_dir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  temp_dir(temp_dir&& o) noexcept : path(std::move(o.path)) { o.path.clear(); }
};

struct backend {
  std::string name;
  std::shared_ptr<kv_store> store;
  std::shared_ptr<temp_dir> dir;  // RocksDB's, outliving nothing but the store
  backend(std::string n, std::shared_ptr<kv_store> s, std::shared_ptr<temp_dir> d = nullptr)
      : name(std::move(n)), store(std::move(s)), dir(std::move(d)) {}
  ~backend() { store.reset(); }  // the database closes before its dir is removed
};

inline std::shared_ptr<pg_store> fresh_pg(size_t pool = 4, uint64_t retention = 1'000'000,
                                          std::string url = {}) {
  pg_store::options o;
  o.conninfo = url.empty() ? throwaway_postgres::shared().fresh_database() : std::move(url);
  o.pool = pool;
  o.change_retention = retention;
  auto s = pg_store::open(std::move(o));
  REQUIRE_MESSAGE(s, detail_of(s.error()));
  return *s;
}

// The same store contract, checked on every backend.
inline std::vector<backend> backends(uint64_t retention = 1'000'000) {
  auto dir = std::make_shared<temp_dir>();
  auto rocks = rocks_store::open({dir->path.string(), false, nullptr, retention});
  REQUIRE(rocks);
  std::vector<backend> out;
  out.emplace_back("rocksdb", *rocks, dir);
  out.emplace_back("postgres", fresh_pg(4, retention));
  return out;
}

}  // namespace tessera::adapters::testing
