// The durable state of a tessera server as ordered keys and values: storages, panels, tasks,
// their runs and logs, and the server's metadata (the key layout: docs/architecture.md,
// "Durable state"). Every actor and route reaches durable state through this interface only;
// the backends are rocks_store.hpp (embedded RocksDB, the default) and pg_store.hpp
// (PostgreSQL, shared by many servers).
//
// Contract (every backend):
// - Keys compare bytewise (memcmp, shorter first on a tie), as RocksDB's default comparator.
// - `write` applies all its ops atomically, or none of them, and returns once they are
//   durable as the backend is configured. Its ops' conditions (write_op::expect) are checked
//   in the same atomic step, against every writer of the store (other servers included), so
//   a write made from a state read earlier fails with errc::conflict rather than overwrite a
//   change made meanwhile (the WAL, fsync with storage.sync, PostgreSQL's
//   commit); an acknowledged write survives kill -9 of the server.
// - Reads see every write acknowledged before them.
// - Every function is thread-safe and blocking, and none is called on a CAF scheduler worker:
//   writes go through the group committer (runtime/committer.hpp) on its own thread; short
//   reads (a storage's load, a page of a task's runs and its trimming, a page of the change
//   feed) on the readers' pool (runtime/blocking_pool.hpp); the storage listing and /readyz's
//   probe on the storage directory's catalog thread; a scan of a whole prefix on a thread of
//   its own (runtime/off_scheduler.hpp), as the task directory's (itself detached), the panel
//   directory's load at start and first-start check, the panel list's and a task's history
//   deletion do; a panel actor restarted after a crash reads its record the same way, its
//   requests waiting in its mailbox.
// - Failures are errc::storage_failure (the backend's message as detail, never a password),
//   or errc::unavailable when the backend cannot be reached now and nothing was written (a
//   shared backend; the caller may retry). A write failed with storage_failure may or may not
//   have landed. A missing key is not an error (empty optional).
//
// The change sequence: every op of every committed write gets a number, consecutive within
// the write and rising in commit order across writes (on PostgreSQL across every server of
// the database), so a reader that has seen number n has seen every change up to n and can
// follow from any point with `changes_after`. A change is the key written and whether it was
// deleted (read the key for its value). The newest storage.change_retention changes are kept
// (at least); asking from before them is errc::gone, and the reader starts again from the
// current state. A sequence has a random id, made with it and returned with every page: a
// store made anew (a migrate's target, which numbers its own writes) has another, so a
// reader that notes it can tell its numbers no longer apply.
#pragma once

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::adapters {

struct write_op {
  // What the key must be for the write to apply (a conditional write): anything, absent, or
  // present with a value starting with `prefix` (a record's header holds its version, e.g.
  // "v1 7 "). When an op's condition does not hold, no op of the write is applied and the
  // write fails with errc::conflict.
  static constexpr uint8_t any = 0, absent = 1, has_prefix = 2;

  std::string key;
  std::string value;
  bool erase = false;  // delete `key` instead of writing `value`
  uint8_t expect = any;
  std::string prefix{};  // with expect == has_prefix
  friend bool operator==(const write_op&, const write_op&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_op& x) {
  return f(caf::meta::type_name("write_op"), x.key, x.value, x.erase, x.expect, x.prefix);
}

// One change of the change sequence.
struct change {
  uint64_t seq = 0;
  std::string key;
  bool erase = false;
  friend bool operator==(const change&, const change&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, change& x) {
  return f(caf::meta::type_name("change"), x.seq, x.key, x.erase);
}

// Changes in order, the newest number committed when they were read, and the sequence's id.
struct change_page {
  std::vector<change> changes;
  uint64_t last = 0;
  std::string sequence{};
  friend bool operator==(const change_page&, const change_page&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, change_page& x) {
  return f(caf::meta::type_name("change_page"), x.changes, x.last, x.sequence);
}

using kv_pair = std::pair<std::string, std::string>;
using kv_rows = std::vector<kv_pair>;

class kv_store {
 public:
  virtual ~kv_store() = default;

  virtual caf::expected<std::optional<std::string>> get(std::string_view key) const = 0;

  // Applies all ops atomically (see the contract).
  virtual caf::error write(const std::vector<write_op>& ops) = 0;

  // Up to `limit` (key, value) pairs with keys starting with `prefix` and greater than
  // `prefix + after` (all of them when `after` is empty), in key order.
  virtual caf::expected<kv_rows> scan(std::string_view prefix, std::string_view after,
                                      size_t limit) const = 0;

  // Up to `limit` pairs with `from <= key < to`, in key order, or in reverse key order
  // (largest first) when `reverse`.
  virtual caf::expected<kv_rows> range(std::string_view from, std::string_view to, size_t limit,
                                       bool reverse) const = 0;

  // Up to `limit` changes numbered after `after`, in order (see the change sequence); gone
  // when the first of them is no longer kept.
  virtual caf::expected<change_page> changes_after(uint64_t after, size_t limit) const = 0;

  // A read view: a store whose reads all see this one as it is now, whatever is written to it
  // meanwhile (a RocksDB snapshot; a PostgreSQL REPEATABLE READ READ ONLY transaction on a
  // connection of its own). It takes no writes (invalid_argument). Hold it briefly: it keeps
  // old versions alive in the backend.
  virtual caf::expected<std::shared_ptr<kv_store>> read_view() const = 0;

  // Makes everything written durable on the backend's own storage; used at shutdown.
  virtual caf::error flush() = 0;

  // True while the backend answers a read.
  virtual bool healthy() const = 0;
};

}  // namespace tessera::adapters
