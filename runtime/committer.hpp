// The group committer: one detached actor that turns many concurrent commits into one RocksDB
// write batch and one fsync.
//
// Every storage write goes through it: an fsync (storage.sync) takes milliseconds and must not
// block the shared scheduler, grouping lets throughput scale with concurrency instead of being
// one fsync per write, and one writer thread avoids contention inside RocksDB.
//
// Protocol:
//   (commit_atom, std::vector<write_op>) -> ok_atom once the ops are durable | storage_failure
//       All ops of one message are atomic. Commits that arrive while a batch is being written
//       form the next batch (at most `max_batch` messages); a failed batch fails every commit in
//       it and writes none of them, except a conflict (a conditional write whose key changed,
//       kv_store.hpp): then each commit of the batch is written on its own, so only the one
//       whose condition fails gets `conflict`. Replies come in arrival order.
//   (stop_atom) -> finishes the batch at hand, then quits; later commits get
//       request_receiver_down.
// Not safe to repeat blindly: a commit that timed out at the requester may still have landed.
#pragma once

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <memory>
#include <vector>

#include "adapters/kv/kv_store.hpp"

namespace tessera::runtime {

using commit_atom = caf::atom_constant<caf::atom("commit")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;

void committer(caf::blocking_actor* self, std::shared_ptr<adapters::kv_store> store,
               size_t max_batch = 1024);

// The committer as its clients hold it. CAF 0.17 cannot type a blocking actor's receive loop,
// so the type is checked where the handle is used (every request and reply), not inside it.
using committer_actor = caf::typed_actor<
    caf::replies_to<commit_atom, std::vector<adapters::write_op>>::with<caf::ok_atom>,
    caf::reacts_to<stop_atom>>;

// Spawns the committer on a thread of its own.
committer_actor spawn_committer(caf::actor_system& sys, std::shared_ptr<adapters::kv_store> store,
                                size_t max_batch = 1024);

void add_committer_messages(caf::actor_system_config& cfg);

}  // namespace tessera::runtime
