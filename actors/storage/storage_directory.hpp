// The storage directory: the one address for all storages. It activates the actor owning an id
// on first use, forwards (delegates) each request to it, and passivates it when it is idle, so
// memory holds only storages in use while any number live in RocksDB.
//
// Protocol (typed: storage::directory_actor in messages.hpp is what clients hold, directory_impl
// adds the storage actors' passivation; replies come from the owning actor, see storage_actor.hpp):
//   (read_atom|create_atom|replace_atom|merge_atom|erase_atom, id, ...) -> as storage_actor;
//       an id that is not 1-128 of [A-Za-z0-9_.-] -> invalid_argument, nothing activated
//   (list_atom, std::string after, uint32_t limit) -> storage_page, ids in byte order after
//       `after` (exclusive), at most `limit` (1..1000); served by a detached catalog actor
//       reading RocksDB directly, which is exact because every acknowledged write is on disk
//   (prepare_atom, id, expected, data, lease_ms), (lock_atom, id, lease_ms) -> as storage_actor
//   (transaction
//       steps; a bad id is refused with invalid_argument)
//   (watch_atom, change_sink sink) -> no reply; storage actors activated afterwards tell `sink`
//       (changed_atom, id, version) after each change. Send it before serving requests.
//   (ready_atom) -> bool: the store answers a read (probed on the directory's own thread)
//   (refresh_atom, id) -> no reply; another node changed the storage (the change feed,
//       runtime/cluster/change_feed.hpp): its live actor reads it again (and tells the watcher
//       when the version moved); with none live, the watcher is told (changed_atom, id, -1)
//   (refresh_atom) -> no reply; the same for every live storage (the feed lost changes)
//   (passivate_atom, id, uint64_t handled) from a storage actor -> no reply; retires it when
//       `handled` equals the number of messages delegated to it, so no request is ever lost or
//       served by a stale instance (the retire message is the last one it gets)
//   Over env.max_live (storage.max_live) live actors, each activation asks the least recently
//   used one to passivate at once ((passivate_atom) to it; it answers with the handshake above
//   once idle), so the live count stays near the limit under any number of storages.
// Shutdown: send it an exit (user_shutdown); it stops every storage actor (they are monitored,
// not linked) and its catalog, then quits.
// Ordering: requests for one id are delivered in the order the directory received them.
#pragma once

#include <caf/fwd.hpp>

#include "actors/storage/storage_actor.hpp"
#include "runtime/actor_metrics.hpp"

namespace tessera::storage {

directory_impl::behavior_type storage_directory(directory_impl::pointer self, storage_env env,
                                                runtime::actor_kind_metrics metrics);

}  // namespace tessera::storage
