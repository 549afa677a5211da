// The embedded backend of kv_store.hpp (its contract holds): one RocksDB database in
// storage.data_dir, default column family, bytewise keys.
//
// A write returns once RocksDB has appended its batch to the WAL (and fsynced it when opened
// with `sync`), so an acknowledged write survives kill -9 (and, with sync, power loss).
// RocksDB statuses become errc::storage_failure with RocksDB's message as detail.
// Ownership: the store owns the rocksdb::DB; share it by std::shared_ptr.
#pragma once

#include <caf/expected.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/kv/kv_store.hpp"

namespace rocksdb {
class DB;
}

namespace tessera::adapters {

class rocks_store final : public kv_store {
 public:
  struct options {
    std::string path;
    bool sync = false;
    // Called after each write with its duration (for the write-latency histogram).
    std::function<void(std::chrono::nanoseconds)> on_write;
  };

  static caf::expected<std::shared_ptr<rocks_store>> open(options opts);

  ~rocks_store();
  rocks_store(const rocks_store&) = delete;
  rocks_store& operator=(const rocks_store&) = delete;

  caf::expected<std::optional<std::string>> get(std::string_view key) const override;

  // Applies all ops atomically (one WriteBatch).
  caf::error write(const std::vector<write_op>& ops) override;

  caf::expected<kv_rows> scan(std::string_view prefix, std::string_view after,
                              size_t limit) const override;
  caf::expected<kv_rows> range(std::string_view from, std::string_view to, size_t limit,
                               bool reverse) const override;

  // Flushes memtables and syncs the WAL; used at shutdown.
  caf::error flush() override;

  // True while the database is open and answers a read.
  bool healthy() const override;

 private:
  explicit rocks_store(options opts, std::unique_ptr<rocksdb::DB> db);
  options opts_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace tessera::adapters
