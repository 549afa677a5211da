// The actor owning one storage: {id, data, version, created_at, updated_at}.
//
// Activation: spawned by the storage directory on the first message for its id; loads its
// state from the store at start, off the scheduler on env.readers (storage_owner.hpp; an id
// with no record is "absent": reads answer not_found, create makes it), and serves what
// arrived meanwhile once it has. A load that failed (the store unreachable, say) answers its
// error and is tried again by the next request. Every change is written to RocksDB before it is
// acknowledged, and nothing is read while a change is on its way to disk. Messages are served
// in arrival order: writes to one storage are serialized, so concurrent PATCHes of distinct keys
// all land and exactly one of two writers holding the same If-Match wins. Writes that arrive
// while a batch is being committed wait and then go together: each is computed on the state
// the ones before it left, all go to the group committer as one batch (one WriteBatch, one
// fsync under --sync), and each is acknowledged once that batch is durable. A batch that fails
// fails each of its writes, answers what waits `unavailable`, and the actor quits (the next
// activation reads what RocksDB holds).
//
// Protocol (all replies are storage_record unless said; errors are tessera errc):
//   (read_atom, id)                                  -> record | not_found
//   (create_atom, id, data)                          -> record | conflict
//       version 1, or for an id erased before, the erased version + 1 (its tombstone):
//       versions never repeat, so no If-Match or transaction takes a re-created storage for
//       the one it read
//   (replace_atom, id, data, version_list if_match)  -> record | not_found | precondition_failed
//   (replace_atom, id, data, version_list if_match, int64_t within_ms) -> the same | timeout
//       a replace with a deadline: if its turn comes more than within_ms after it arrived (a
//       locked transaction or slow batches ahead of it), it writes nothing and answers
//       timeout. A requester that waits longer than within_ms (plus the commit's own time)
//       thus never sees `timeout` for a write that lands later.
//   (merge_atom, id, patch, version_list if_match)   -> record | not_found | precondition_failed
//       shallow merge of top-level keys; a key set to null is removed
//   (erase_atom, id, version_list if_match)          -> the erased record | not_found |
//                                                       precondition_failed
//       removes the record and writes its tombstone in one batch (storage_codec.hpp)
//   (prepare_atom, id, int64_t expected, data, int64_t lease_ms) -> no reply; a step of a
//   transaction
//       (transaction.hpp) sent by the transaction actor T. If the storage is not at `expected`
//       (0: absent) it sends T (refused_atom, id, error). Otherwise it requests
//       (prepared_atom, id, std::vector<write_op>) from T (the ops are empty when `data` is
//       empty: validate only) and handles nothing else until T answers: true (T committed the
//       ops: the change becomes current) or false (aborted: nothing changes). An error
//       (T died, or no answer within commit_timeout) leaves the outcome unknown: the actor
//       quits, so the next activation reads what RocksDB holds.
//   (lock_atom, id, int64_t lease_ms)                -> no reply; a step of a locked
//       transaction: requests (locked_atom, storage_record) from T (version 0 when absent) and
//       handles nothing else until T answers with the storage_record it committed for this
//       storage (version 0: unchanged). An error leaves the outcome unknown: the actor quits.
//   (refresh_atom, id)                               -> no reply; another node changed it:
//       in its turn (after what is in flight or waiting), the record is read again and, when
//       its version moved, the watchers are told (changed_atom)
//   (retire_atom)                                    -> quits (from the directory only)
// A step waits for its transaction at least lease_ms + 5 s (the transaction's own deadline is
// lease_ms), so it never gives up a lock the transaction may still commit over; an error
// other than request_receiver_down (the transaction was gone before it got anything) makes
// the actor quit, as the outcome is unknown.
// After every change it sends (changed_atom, id, int64_t version) to env.changes when set
// (version 0: erased); the directory sets env.changes on (watch_atom, actor).
// Any write may also fail with storage_failure (RocksDB refused it; state unchanged) or
// invalid_argument (data is not a JSON object). Writes go through the group committer; while a
// batch or a transaction step is in flight, everything else waits its turn; a commit that
// times out (env.commit_timeout) fails its writes and the actor quits, so the next activation
// reads what RocksDB really holds. Reads are safe to
// repeat; writes are not idempotent except replace and erase with If-Match. Idle: after
// `idle_passivate` without messages it sends (passivate_atom, id, handled) to the directory,
// repeating every idle period until retired; (passivate_atom) from the directory (too many live
// storages) asks for the same at once, answered only when nothing is in flight or waiting.
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "actors/storage/messages.hpp"
#include "adapters/kv/kv_store.hpp"
#include "config/settings.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/cluster/placement.hpp"
#include "runtime/committer.hpp"

namespace prometheus {
class Counter;
}

namespace tessera::storage {

struct storage_env {
  std::shared_ptr<adapters::kv_store> store;
  std::chrono::milliseconds idle_passivate{0};
  prometheus::Counter* commits = nullptr;  // optional
  // runtime/committer.hpp's group committer: every write goes through it (writing inline from
  // many scheduler threads contends inside RocksDB, and an fsync would block the scheduler).
  runtime::committer_actor committer;
  std::chrono::milliseconds commit_timeout{0};
  change_sink changes;  // optional: told (changed_atom, id, version) after every change
  size_t max_live = 0;  // the directory passivates the least recently used beyond it (0: none)
  // Where the load runs (runtime/blocking_pool.hpp); without one, on a one-shot thread.
  std::shared_ptr<runtime::blocking_pool> readers = nullptr;
  // In a cluster: where each storage's owner is (the directory forwards to it), and the
  // forwarding's metrics. None: every storage is served here.
  std::shared_ptr<runtime::cluster::placement> placement = nullptr;
  runtime::cluster::forward_metrics::kind forwarded{};

  // storage.idle_passivate_ms, storage.max_live, config::actor_wait; the store, the committer
  // and the metrics are the caller's to set.
  static storage_env from_settings(const config::settings& s) {
    storage_env e;
    e.idle_passivate = s.idle_passivate;
    e.commit_timeout = config::actor_wait(s);
    e.max_live = static_cast<size_t>(s.max_live);
    return e;
  }
};

caf::behavior storage_actor(caf::event_based_actor* self, storage_env env, directory_impl directory,
                            std::string id);

}  // namespace tessera::storage
