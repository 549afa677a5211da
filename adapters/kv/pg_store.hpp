// The shared backend of kv_store.hpp (its contract holds): the same keys and values as the
// RocksDB layout, in one PostgreSQL table, so that many tessera servers can share one database
// (storage.backend = "postgres", storage.postgres_url).
//
// Schema (versioned in tessera_schema; see docs/architecture.md, "Durable state"):
//   tessera_schema(version integer)                 -- one row: the schema's version
//   tessera_kv(key bytea primary key, value bytea)  -- bytea compares bytewise, as RocksDB
//   tessera_seq(last bigint)                        -- one row: the newest change number (v2)
//   tessera_changes(last_seq bigint primary key, ops integer, body bytea)
//                                                   -- a write's changes (change_log.hpp) (v2)
//   tessera_members(generation, name, state, address, http, joined_at, heartbeat_at)
//                                                   -- the cluster's members (member_table.hpp)
//                                                   (v3)
//   tessera_leases(key text primary key, owner, generation, epoch, claimed_at)
//                                                   -- who holds each actor (member_table.hpp)
//                                                   (v4)
// `open` creates the schema in an empty database and upgrades an older one, under an advisory
// lock (servers starting together do it once); it refuses a schema newer than it knows, naming
// both versions.
//
// Contract, beyond kv_store's:
// - A write is one pipeline of statements (one round trip) in one implicit transaction,
//   acknowledged once PostgreSQL committed it (durable with the default synchronous_commit).
//   The group committer makes each of its batches one such write. Its last statement takes
//   the write's numbers by updating tessera_seq's row, whose lock then orders the numbers of
//   concurrent writers (other servers) as their commits; every 256th write of a server also
//   drops the writes more than `change_retention` changes behind.
// - A bounded pool of `pool` connections serves every call; a call waits at most `pool_wait`
//   for one, then fails. A connection found broken is reconnected on its next use, so the store
//   serves again by itself once PostgreSQL is back.
// - With `notify` (a cluster), each write's commit also sends NOTIFY on `change_channel` with
//   the payload "<origin> <last> <ops>": this store's origin(), the write's last number and
//   its number of ops (its numbers are last - ops + 1 .. last). PostgreSQL delivers them in
//   commit order, which is the numbers' order (the tessera_seq row's lock orders both), so a
//   listener (runtime/cluster/change_feed.hpp) follows every server's writes as they commit
//   and tells its own from the others'.
// - No error, log line or metric holds the password of the connection string.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adapters/kv/kv_store.hpp"

namespace tessera::adapters {

namespace pg {
class connection;
}

class pg_store final : public kv_store, public std::enable_shared_from_this<pg_store> {
 public:
  static constexpr int schema_version = 4;
  static constexpr const char* change_channel = "tessera_changes";

  struct options {
    std::string conninfo;  // a libpq connection string or postgres:// URL
    size_t pool = 8;
    std::chrono::milliseconds pool_wait{5000};
    uint64_t change_retention = 1'000'000;  // changes kept at least
    bool notify = false;                    // NOTIFY every commit (see the contract)
    // Metrics hooks: after each write (its duration and number of ops); whenever the
    // connections lent or the callers waiting change (called under the pool's lock: keep it
    // to a gauge); at each reconnect of a broken connection.
    std::function<void(std::chrono::nanoseconds, size_t)> on_write;
    std::function<void(size_t in_use, size_t waiting)> on_pool;
    std::function<void()> on_reconnect;
  };

  static caf::expected<std::shared_ptr<pg_store>> open(options opts);
  // The same with only a connection string and a pool size (no metrics hooks).
  static caf::expected<std::shared_ptr<pg_store>> open(std::string conninfo, size_t pool = 8);

  ~pg_store() override;

  caf::expected<std::optional<std::string>> get(std::string_view key) const override;
  caf::error write(const std::vector<write_op>& ops) override;
  caf::expected<kv_rows> scan(std::string_view prefix, std::string_view after,
                              size_t limit) const override;
  caf::expected<kv_rows> range(std::string_view from, std::string_view to, size_t limit,
                               bool reverse) const override;
  caf::expected<change_page> changes_after(uint64_t after, size_t limit) const override;
  // A REPEATABLE READ READ ONLY transaction on a connection of its own (not the pool's).
  caf::expected<std::shared_ptr<kv_store>> read_view() const override;
  caf::error flush() override;
  // Never waits for the pool: with a connection idle it pings through it; with all of them
  // lent it answers what the last call found (reachable or not).
  bool healthy() const override;

  // This store's random id (16 hex digits), in the NOTIFY payload of its writes.
  const std::string& origin() const { return origin_; }

  // Connections lent now, and callers waiting for one (metrics).
  size_t in_use() const;
  size_t waiting() const;
  uint64_t reconnects() const;

 private:
  class lease;
  explicit pg_store(options opts);
  caf::expected<lease> acquire(bool wait = true) const;
  void note(const caf::error& err) const;  // remembers whether PostgreSQL answered
  void give_back(std::unique_ptr<pg::connection> c) const;
  void pool_changed() const;  // under mutex_
  caf::expected<kv_rows> select(std::string_view lower, bool lower_inclusive,
                                std::optional<std::string> upper, size_t limit, bool reverse) const;

  options opts_;
  std::string origin_;
  mutable std::mutex mutex_;
  mutable std::condition_variable freed_;
  mutable std::vector<std::unique_ptr<pg::connection>> idle_;
  mutable size_t open_ = 0;  // connections made (idle or lent)
  mutable size_t lent_ = 0;
  mutable size_t waiting_ = 0;
  mutable uint64_t reconnects_ = 0;
  mutable std::atomic<bool> reachable_{true};
  std::atomic<uint64_t> writes_{0};
  bool view_ = false;  // a read view (read_view): one pinned connection in a transaction
};

}  // namespace tessera::adapters
