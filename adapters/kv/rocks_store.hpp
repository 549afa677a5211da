// A RocksDB database opened for tessera: point reads, atomic batches, prefix scans.
//
// Contract: every function is thread-safe (RocksDB's own guarantee) and blocking. Callers on
// the CAF scheduler's workers keep to point operations, small batches and bounded pages (the
// newest runs of a task, a page of storages); a scan of a whole prefix runs on a thread of its
// own (a detached actor, runtime/off_scheduler.hpp), as the task directory's, the panel list's
// and a task's history deletion do. The one exception is the panel directory's load at start,
// before it serves anything. A write returns only once RocksDB
// has appended it to the WAL (and fsynced it when opened with `sync`), so an acknowledged write
// survives kill -9 (and, with sync, power loss). RocksDB statuses become errc::storage_failure
// with RocksDB's message as detail; a missing key is not an error (empty optional).
// Ownership: the store owns the rocksdb::DB; share it by std::shared_ptr.
#pragma once

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rocksdb {
class DB;
}

namespace tessera::adapters {

struct write_op {
  std::string key;
  std::string value;
  bool erase = false;  // delete `key` instead of writing `value`
  friend bool operator==(const write_op&, const write_op&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_op& x) {
  return f(caf::meta::type_name("write_op"), x.key, x.value, x.erase);
}

class rocks_store {
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

  caf::expected<std::optional<std::string>> get(std::string_view key) const;

  // Applies all ops atomically (one WriteBatch).
  caf::error write(const std::vector<write_op>& ops);

  // Up to `limit` (key, value) pairs with keys starting with `prefix` and greater than
  // `prefix + after` (all of them when `after` is empty), in key order.
  caf::expected<std::vector<std::pair<std::string, std::string>>> scan(std::string_view prefix,
                                                                       std::string_view after,
                                                                       size_t limit) const;

  // Up to `limit` pairs with `from <= key < to`, in key order, or in reverse key order
  // (largest first) when `reverse`.
  caf::expected<std::vector<std::pair<std::string, std::string>>> range(std::string_view from,
                                                                        std::string_view to,
                                                                        size_t limit,
                                                                        bool reverse) const;

  // Flushes memtables and syncs the WAL; used at shutdown.
  caf::error flush();

  // True while the database is open and answers a read.
  bool healthy() const;

 private:
  explicit rocks_store(options opts, std::unique_ptr<rocksdb::DB> db);
  options opts_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace tessera::adapters
