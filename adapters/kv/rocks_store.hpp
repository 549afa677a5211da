// The embedded backend of kv_store.hpp (its contract holds): one RocksDB database in
// storage.data_dir: the keys in the default column family (bytewise), the change sequence in
// the column family "changes" (key: a write's last number as 20 decimal digits; value:
// change_log.hpp's body; and the key "sequence": the sequence's id), so that scans and
// `migrate` never see it. A data dir that has it cannot be opened by a tessera from before the
// change sequence (RocksDB refuses a column family it is not told about).
//
// A write returns once RocksDB has appended its batch to the WAL (and fsynced it when opened
// with `sync`), so an acknowledged write survives kill -9 (and, with sync, power loss).
// RocksDB statuses become errc::storage_failure with RocksDB's message as detail.
// A write and its numbers are taken under one mutex, held across the write (and its fsync with
// sync): the group committer writes nearly everything, so it is rarely contended; the other
// writers (a task's log deletion, the task directory's sweep, the first-start marker) are
// rare. The numbering continues from the newest kept write after a restart, and after a write
// that failed (it may have landed) from the newest one found. Every storage.change_retention/8
// changes past the retention, the oldest writes are dropped with one range delete. Ownership: the
// store owns the rocksdb::DB; share it by std::shared_ptr.
#pragma once

#include <atomic>
#include <caf/expected.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/kv/kv_store.hpp"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Snapshot;
struct ReadOptions;
}  // namespace rocksdb

namespace tessera::adapters {

class rocks_store final : public kv_store, public std::enable_shared_from_this<rocks_store> {
 public:
  struct options {
    std::string path;
    bool sync = false;
    // Called after each write with its duration (for the write-latency histogram).
    std::function<void(std::chrono::nanoseconds)> on_write;
    uint64_t change_retention = 1'000'000;  // changes kept at least
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
  caf::expected<change_page> changes_after(uint64_t after, size_t limit) const override;
  // A RocksDB snapshot.
  caf::expected<std::shared_ptr<kv_store>> read_view() const override;

  // Flushes memtables and syncs the WAL; used at shutdown.
  caf::error flush() override;

  // True while the database is open and answers a read.
  bool healthy() const override;

 private:
  rocks_store(options opts, std::unique_ptr<rocksdb::DB> db,
              std::vector<rocksdb::ColumnFamilyHandle*> families);
  class view;
  caf::expected<std::optional<std::string>> get_at(const rocksdb::ReadOptions& ro,
                                                   std::string_view key) const;
  caf::expected<kv_rows> scan_at(const rocksdb::ReadOptions& ro, std::string_view prefix,
                                 std::string_view after, size_t limit) const;
  caf::expected<kv_rows> range_at(const rocksdb::ReadOptions& ro, std::string_view from,
                                  std::string_view to, size_t limit, bool reverse) const;
  caf::expected<change_page> changes_at(const rocksdb::ReadOptions& ro, uint64_t after,
                                        size_t limit, std::optional<uint64_t> newest) const;
  caf::error load_sequence();
  caf::error load_last();  // under write_mutex_ or before serving
  options opts_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;  // default, changes
  std::mutex write_mutex_;
  std::atomic<uint64_t> last_seq_{0};  // the newest number written
  uint64_t first_kept_ = 1;            // the oldest number kept (under write_mutex_)
  std::string sequence_;               // the sequence's id (set at open)
};

}  // namespace tessera::adapters
